/**
 * Listeners follow the config: a reload binds a new server, drains and unbinds a removed one,
 * re-binds one whose address or parser settings changed, and leaves the others alone. A bind
 * that fails keeps the gateway serving and is reported. Configs are published through the
 * library API (`publishConfig`, what `PUT /config` does).
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Metric, Scope } from "effect"
import { Agent, request as httpRequest } from "node:http"
import { publishConfig } from "../../src/config/ConfigSource.ts"
import * as Gateway from "../../src/gateway/Gateway.ts"
import { limitDefaults } from "../../src/proxy/RouteTable.ts"
import { listenerBindFailures } from "../../src/telemetry/Metrics.ts"
import { startUpstream } from "../support/harness.ts"
import { send } from "../support/http.ts"
import { eventually, get, refuses, startLiveGateway, within, type LiveGateway } from "../support/liveGateway.ts"
import { getRequest, openConnection } from "../support/connection.ts"
import { parseResponses } from "../support/wire.ts"
import { freePort, holdPort } from "../support/net.ts"
import { awaitSignal, fire, onSignal, signal } from "../support/signals.ts"

interface ServerSpec {
  readonly name: string
  readonly listen?: string
  readonly limits?: Record<string, unknown>
}

/** Servers routing everything to upstream `app`; each answers with its own route id (`<name>-all`). */
const configFor = (upstream: string, servers: ReadonlyArray<ServerSpec>) => ({
  admin: { listen: "127.0.0.1:0" },
  log: { level: "none", access_log: false },
  servers: servers.map((s) => ({
    name: s.name,
    listen: s.listen ?? "127.0.0.1:0",
    ...(s.limits === undefined ? {} : { limits: s.limits }),
    routes: [{ id: `${s.name}-all`, upstream: "app", headers: { response: { set: { "x-route": `${s.name}-all` } } } }]
  })),
  upstreams: { app: { endpoints: [{ url: upstream }] } }
})

/** Publishes a config as `PUT /config` does; a reload that does not complete within 5 s fails the test. */
const publish = (gateway: LiveGateway, config: unknown) => within(publishConfig(gateway.source, config, "test"), "publishing the config")

const statusOn = (port: number, path = "/") => Effect.map(get(`http://127.0.0.1:${port}${path}`), (res) => res.status)

/** A GET on a keep-alive agent: status, the answering route's `x-route`, and whether it went over a connection opened before. */
const getOn = (agent: Agent, port: number) =>
  Effect.callback<{ readonly status: number; readonly route: string | undefined; readonly reused: boolean }>((resume) => {
    const req = httpRequest({ host: "127.0.0.1", port, path: "/", agent }, (res) => {
      res.resume()
      const route = res.headers["x-route"]
      res.on("end", () => resume(Effect.succeed({ status: res.statusCode ?? 0, route: typeof route === "string" ? route : undefined, reused: req.reusedSocket })))
    })
    req.on("error", (e) => resume(Effect.die(e)))
    req.end()
  }).pipe(Effect.timeout("5 seconds"))

/**
 * A keep-alive agent with one connection to `port`, opened by a first GET and back idle in its
 * pool; `idle` tells whether it still is. Destroyed with the test's scope.
 */
const keptConnection = (port: number) =>
  Effect.gen(function*() {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 })
    yield* Effect.addFinalizer(() => Effect.sync(() => agent.destroy()))
    assert.deepStrictEqual(yield* getOn(agent, port), { status: 200, route: "web-all", reused: false })
    const idle = Effect.sync(() => Object.values(agent.freeSockets).flat().length === 1)
    yield* eventually(idle, "the connection is back in the agent's pool")
    return { agent, idle }
  })

/** `fibergate_client_connections{listener}` as the registry holds it now (undefined: no such series). */
const openConnections = (listener: string) =>
  Metric.snapshot.pipe(Effect.map((all) => {
    const series = all.find((m) => m.id === "fibergate_client_connections" && m.attributes?.listener === listener)
    return series === undefined ? undefined : Number((series.state as { readonly value: number }).value)
  }))

const bindFailures = (listener: string) =>
  Metric.value(Metric.withAttributes(listenerBindFailures, { listener })).pipe(Effect.map((s) => s.count))

describe("listeners follow config reloads", () => {
  it.live("a reload that adds a server binds it, and it serves", () =>
    Effect.gen(function*() {
      const app = yield* startUpstream("app")
      const gateway = yield* startLiveGateway(Gateway.layer(configFor(app.url, [{ name: "web" }])))
      const webPort = gateway.port("web")
      yield* publish(gateway, configFor(app.url, [{ name: "web" }, { name: "extra" }]))
      yield* eventually(Effect.sync(() => gateway.listeners.addresses.has("extra")), "extra is bound")
      const res = yield* get(`http://127.0.0.1:${gateway.port("extra")}/x`)
      assert.strictEqual(res.status, 200)
      assert.strictEqual(res.headers.get("x-route"), "extra-all")
      assert.strictEqual(gateway.port("web"), webPort, "the other listener is untouched")
      assert.isTrue(gateway.logs.some((l) => l.message === `listener extra on http://127.0.0.1:${gateway.port("extra")}`))
      assert.isDefined(yield* openConnections("extra"), "its connections are counted")
    }))

  it.live("a reload that removes a server: new connections are refused, a request in flight on it completes", () =>
    Effect.gen(function*() {
      const arrived = signal()
      const release = signal()
      const app = yield* startUpstream("app", {
        rawHandler: (req, res) => {
          if (req.url !== "/slow") return res.end("fast")
          fire(arrived, undefined)
          onSignal(release, () => res.end("done"))
        }
      })
      const gateway = yield* startLiveGateway(Gateway.layer(configFor(app.url, [{ name: "web" }, { name: "extra" }])))
      // Should the test fail before it releases the response, the gateway's drain must not wait for it.
      yield* Effect.addFinalizer(() => Effect.sync(() => fire(release, undefined)))
      const extraPort = gateway.port("extra")
      const inFlight = yield* Effect.forkChild(send(`http://127.0.0.1:${extraPort}/slow`))
      yield* awaitSignal(arrived)
      assert.strictEqual(yield* openConnections("extra"), 1)

      yield* publish(gateway, configFor(app.url, [{ name: "web" }]))
      yield* eventually(refuses(extraPort), "the removed listener refuses new connections")
      assert.isFalse(gateway.listeners.addresses.has("extra"))
      assert.isUndefined(inFlight.pollUnsafe(), "the request in flight is still running")
      assert.strictEqual(yield* statusOn(gateway.port("web")), 200, "the other listener serves")
      assert.include(gateway.logs.map((l) => l.message), `listener extra removed: stopped accepting on http://127.0.0.1:${extraPort}, draining`)

      fire(release, undefined)
      const res = yield* within(Fiber.join(inFlight), "the request in flight")
      assert.strictEqual(res.status, 200)
      assert.strictEqual(res.body, "done")
      assert.strictEqual(res.headers.connection, "close", "the drained listener closes the connection after the response")
      yield* eventually(Effect.map(openConnections("extra"), (n) => n === undefined), "its connection gauge is removed once drained")
    }))

  it.live("a removed server's pipelined connection: the request running when the drain starts is the last, the one held behind it never runs", () =>
    Effect.gen(function*() {
      const arrived = signal()
      const release = signal()
      const seen: Array<string> = []
      const app = yield* startUpstream("app", {
        rawHandler: (req, res) => {
          seen.push(`${req.method} ${req.url}`)
          req.resume()
          if (req.url !== "/slow") return res.end("fast")
          fire(arrived, undefined)
          onSignal(release, () => res.end("done"))
        }
      })
      const gateway = yield* startLiveGateway(Gateway.layer(configFor(app.url, [{ name: "web" }, { name: "extra" }])))
      yield* Effect.addFinalizer(() => Effect.sync(() => fire(release, undefined)))
      const connection = yield* openConnection(gateway.port("extra"))
      // An unsafe request runs alone: the GET behind it is held until it is answered.
      yield* connection.write("POST /slow HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi" + getRequest("/held"))
      yield* awaitSignal(arrived)
      yield* publish(gateway, configFor(app.url, [{ name: "web" }]))
      fire(release, undefined)
      const [last] = yield* connection.responses(1)
      assert.strictEqual(last.body, "done")
      assert.deepStrictEqual(last.headers.get("connection"), ["close"])
      yield* connection.closed()
      assert.deepStrictEqual(seen, ["POST /slow"])
      assert.strictEqual(parseResponses(connection.text()).responses.length, 1)
    }))

  it.live("a request that comes on a removed server's open connection after the reload is never forwarded, and the connection closes after the response in flight", () =>
    Effect.gen(function*() {
      const arrived = signal()
      const release = signal()
      const seen: Array<string> = []
      const app = yield* startUpstream("app", {
        rawHandler: (req, res) => {
          seen.push(req.url ?? "")
          req.resume()
          if (req.url !== "/slow") return res.end("fast")
          fire(arrived, undefined)
          onSignal(release, () => res.end("done"))
        }
      })
      const gateway = yield* startLiveGateway(Gateway.layer(configFor(app.url, [{ name: "web" }, { name: "extra" }])))
      yield* Effect.addFinalizer(() => Effect.sync(() => fire(release, undefined)))
      const connection = yield* openConnection(gateway.port("extra"))
      yield* connection.write(getRequest("/slow"))
      yield* awaitSignal(arrived)
      yield* publish(gateway, configFor(app.url, [{ name: "web" }]))
      yield* connection.write(getRequest("/late"))
      fire(release, undefined)
      // The response in flight is the last on the connection: it closes, and the late request
      // (refused with the removed listener's empty table) is never answered nor forwarded.
      const [last] = yield* connection.responses(1)
      assert.strictEqual(last.body, "done")
      assert.deepStrictEqual(last.headers.get("connection"), ["close"])
      yield* connection.closed()
      assert.strictEqual(parseResponses(connection.text()).responses.length, 1)
      assert.deepStrictEqual(seen, ["/slow"])
    }))

  it.live("a changed listen address re-binds: the new address serves, the old one refuses", () =>
    Effect.gen(function*() {
      const app = yield* startUpstream("app")
      const gateway = yield* startLiveGateway(Gateway.layer(configFor(app.url, [{ name: "web" }, { name: "other" }])))
      const oldPort = gateway.port("web")
      const otherPort = gateway.port("other")
      const newPort = yield* freePort
      // An idle keep-alive connection to the old address: the old server's drain ends when it is closed.
      const agent = new Agent({ keepAlive: true, maxSockets: 1 })
      yield* Effect.addFinalizer(() => Effect.sync(() => agent.destroy()))
      assert.strictEqual((yield* getOn(agent, oldPort)).status, 200)
      const idle = () => Object.values(agent.freeSockets).flat()
      yield* eventually(Effect.sync(() => idle().length === 1), "the connection is back in the agent's pool")
      const oldConnectionClosed = signal()
      idle()[0]!.once("close", () => fire(oldConnectionClosed, undefined))

      yield* publish(gateway, configFor(app.url, [{ name: "web", listen: `127.0.0.1:${newPort}` }, { name: "other" }]))
      yield* eventually(Effect.sync(() => gateway.listeners.addresses.get("web")?.port === newPort), "web moves")
      assert.strictEqual(yield* statusOn(newPort), 200)
      assert.include(gateway.logs.map((l) => l.message), `listener web moved from http://127.0.0.1:${oldPort} to http://127.0.0.1:${newPort}`)
      yield* eventually(refuses(oldPort), "the old address refuses connections")
      // The old server's drain ends with its last connection (closed as idle); its gauge series must not take the new one's with it.
      yield* awaitSignal(oldConnectionClosed)
      assert.strictEqual(yield* statusOn(newPort), 200)
      assert.isDefined(yield* openConnections("web"))
      assert.strictEqual(gateway.port("other"), otherPort)
      assert.strictEqual(yield* statusOn(otherPort), 200)
    }))

  it.live("a changed max_header_bytes re-binds on the same address with the new limit", () =>
    Effect.gen(function*() {
      const app = yield* startUpstream("app")
      const gateway = yield* startLiveGateway(Gateway.layer(configFor(app.url, [{ name: "web" }])))
      const port = gateway.port("web")
      const big = { "x-big": "v".repeat(6_000) }
      assert.strictEqual((yield* send(`http://127.0.0.1:${port}/slow`, { headers: big })).status, 200)
      yield* publish(gateway, configFor(app.url, [{ name: "web", limits: { max_header_bytes: 4096 } }]))
      yield* eventually(Effect.map(send(`http://127.0.0.1:${port}/slow`, { headers: big }), (r) => r.status === 431), "the new limit applies")
      assert.strictEqual(gateway.port("web"), port, "same port")
      assert.include(gateway.logs.map((l) => l.message), `listener web re-bound on http://127.0.0.1:${port} with new settings`)
      assert.strictEqual((yield* send(`http://127.0.0.1:${port}/slow`)).status, 200)
    }))

  it.live("a bind that fails (address taken) keeps the gateway and its listeners serving, is logged and counted, and is retried on the next reload", () =>
    Effect.gen(function*() {
      const app = yield* startUpstream("app")
      const gateway = yield* startLiveGateway(Gateway.layer(configFor(app.url, [{ name: "web" }, { name: "api" }])))
      const webPort = gateway.port("web")
      const apiPort = gateway.port("api")
      const taken = yield* holdPort
      const takenToo = yield* holdPort
      const failuresBefore = { web: yield* bindFailures("web"), extra: yield* bindFailures("extra") }
      const wanted = configFor(app.url, [
        { name: "web", listen: `127.0.0.1:${taken.port}` },
        { name: "api" },
        { name: "extra", listen: `127.0.0.1:${takenToo.port}` }
      ])
      yield* publish(gateway, wanted)
      yield* eventually(
        Effect.map(bindFailures("extra"), (n) => n === failuresBefore.extra + 1),
        "both failures are counted"
      )
      assert.strictEqual(yield* bindFailures("web"), failuresBefore.web + 1)
      const errors = gateway.logs.filter((l) => l.level === "Error").map((l) => l.message)
      assert.isTrue(
        errors.some((m) =>
          m.startsWith(`listener web cannot listen on 127.0.0.1:${taken.port}: `) &&
          m.endsWith(`; it keeps listening on http://127.0.0.1:${webPort}; the next config change retries`)
        ),
        errors.join("\n")
      )
      assert.isTrue(
        errors.some((m) =>
          m.startsWith(`listener extra cannot listen on 127.0.0.1:${takenToo.port}: `) &&
          m.endsWith("; the listener is not bound; the next config change retries")
        ),
        errors.join("\n")
      )
      // The config is applied; web keeps its old address, extra is not bound, api is untouched.
      assert.strictEqual(gateway.routes.generation(), 2)
      assert.strictEqual(gateway.port("web"), webPort)
      assert.strictEqual(yield* statusOn(webPort), 200)
      assert.strictEqual(yield* statusOn(apiPort), 200)
      assert.isFalse(gateway.listeners.addresses.has("extra"))

      // Once the addresses are free, the next reload binds them.
      yield* taken.release
      yield* takenToo.release
      yield* publish(gateway, wanted)
      yield* eventually(
        Effect.sync(() => gateway.listeners.addresses.get("web")?.port === taken.port && gateway.listeners.addresses.has("extra")),
        "the retry binds both"
      )
      assert.strictEqual(yield* statusOn(taken.port), 200)
      assert.strictEqual(yield* statusOn(takenToo.port), 200)
      yield* eventually(refuses(webPort), "web's old address is released")
    }))

  it.live("reloads that change routes and in-place limits keep the listener, its open connections and readiness", () =>
    Effect.gen(function*() {
      const app = yield* startUpstream("app")
      const gateway = yield* startLiveGateway(Gateway.layer(configFor(app.url, [{ name: "web" }])))
      const port = gateway.port("web")
      const before = gateway.listeners.addresses.get("web")
      const { agent, idle } = yield* keptConnection(port)

      // max_connections 1: with the kept connection open, the listener takes no other.
      const next = configFor(app.url, [{ name: "web", limits: { max_connections: 1, idle_timeout: "5s" } }])
      const renamed = { id: "renamed", upstream: "app", headers: { response: { set: { "x-route": "renamed" } } } }
      yield* publish(gateway, { ...next, servers: [{ ...next.servers[0], routes: [renamed] }] })
      yield* eventually(Effect.sync(() => gateway.routes.generation() === 2), "the reload is applied")
      assert.strictEqual(gateway.listeners.addresses.get("web"), before, "same binding")
      assert.isTrue(yield* idle)
      assert.deepStrictEqual(
        yield* getOn(agent, port),
        { status: 200, route: "renamed", reused: true },
        "the keep-alive connection is still open and the new route answers on it"
      )
      assert.strictEqual(yield* statusOn(port), 0, "the new max_connections applies in place: a second connection is dropped")
      assert.strictEqual(yield* statusOn(gateway.adminPort!, "/ready"), 200)
    }))

  it.live("a reload that spells out the defaults (protocol: http, the default max_header_bytes) keeps the binding and its open connection", () =>
    Effect.gen(function*() {
      const app = yield* startUpstream("app")
      const gateway = yield* startLiveGateway(Gateway.layer(configFor(app.url, [{ name: "web" }])))
      const port = gateway.port("web")
      const before = gateway.listeners.addresses.get("web")
      const { agent } = yield* keptConnection(port)
      const next = configFor(app.url, [{ name: "web", limits: { max_header_bytes: limitDefaults.max_header_bytes } }])
      yield* publish(gateway, { ...next, servers: [{ ...next.servers[0], protocol: "http" }] })
      yield* eventually(Effect.sync(() => gateway.routes.generation() === 2), "the reload is applied")
      assert.strictEqual(gateway.listeners.addresses.get("web"), before, "same binding")
      assert.isFalse(gateway.logs.some((l) => l.message.includes("re-bound")))
      assert.deepStrictEqual(yield* getOn(agent, port), { status: 200, route: "web-all", reused: true })
    }))

  it.live("shutting down right after a reload that adds and moves listeners leaves no port bound", () =>
    Effect.gen(function*() {
      const app = yield* startUpstream("app")
      const [moved, added] = [yield* freePort, yield* freePort]
      const scope = yield* Scope.make()
      const gateway = yield* startLiveGateway(Gateway.layer(configFor(app.url, [{ name: "web" }, { name: "old" }]))).pipe(
        Scope.provide(scope)
      )
      const ports = [gateway.port("web"), gateway.port("old"), moved, added]
      yield* publish(gateway, configFor(app.url, [
        { name: "web", listen: `127.0.0.1:${moved}` },
        { name: "new", listen: `127.0.0.1:${added}` }
      ]))
      // Close once the reconcile has started (its first step retires "old"), while it may still be
      // binding: the shutdown waits for it, then drains all.
      // Polled without sleeping, so the close comes while the reconcile awaits its first bind.
      const started = Date.now()
      while (!gateway.logs.some((l) => l.message.startsWith("listener old removed"))) {
        if (Date.now() - started > 5_000) return assert.fail("the reconcile did not start within 5 s")
        yield* Effect.yieldNow
      }
      yield* Scope.close(scope, Exit.void).pipe(Effect.timeout("10 seconds"))
      for (const port of ports) assert.isTrue(yield* refuses(port), `port ${port} still accepts after shutdown`)
      // The reconcile did run to its end before the shutdown (so these ports were bound, then released).
      const messages = gateway.logs.map((l) => l.message)
      assert.include(messages, `listener new on http://127.0.0.1:${added}`)
      assert.isTrue(messages.some((m) => m.startsWith("listener web moved from ") && m.endsWith(`to http://127.0.0.1:${moved}`)), messages.join("\n"))
    }))

  // The listener's table is gone when these bytes arrive; the refusal is still answered, after the response in flight.
  for (const { what, bytes, status } of [
    { what: "bad bytes", bytes: "GET / HTTP/1.1\nHost: x\n\n", status: 400 },
    { what: "a CONNECT", bytes: "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", status: 405 }
  ]) {
    it.live(`a connection left on a removed listener still has ${what} refused (${status}) once its response is done`, () =>
      Effect.gen(function*() {
        const arrived = signal()
        const release = signal()
        const app = yield* startUpstream("app", {
          rawHandler: (_req, res) => {
            res.writeHead(200, { "content-type": "text/plain", "content-length": "9" })
            res.write("first")
            fire(arrived, undefined)
            onSignal(release, () => res.end("last"))
          }
        })
        const gateway = yield* startLiveGateway(Gateway.layer(configFor(app.url, [{ name: "web" }, { name: "keep" }])))
        const connection = yield* openConnection(gateway.port("web"))
        yield* connection.write(getRequest("/"))
        yield* awaitSignal(arrived)
        yield* eventually(Effect.sync(() => connection.text().includes("first")), "the response's head and first bytes")
        yield* publish(gateway, configFor(app.url, [{ name: "keep" }]))
        yield* eventually(Effect.sync(() => !gateway.listeners.addresses.has("web")), "web is removed")
        yield* connection.write(bytes)
        fire(release, undefined)
        const [ok, refused] = yield* connection.responses(2)
        assert.strictEqual(ok.status, 200)
        assert.strictEqual(ok.body, "firstlast")
        assert.strictEqual(refused.status, status)
        yield* connection.closed()
        assert.strictEqual(yield* statusOn(gateway.port("keep")), 200)
      }))
  }

  it.live("a listener removed and then added back under the same name is bound again and serves", () =>
    Effect.gen(function*() {
      const app = yield* startUpstream("app")
      const gateway = yield* startLiveGateway(Gateway.layer(configFor(app.url, [{ name: "web" }, { name: "keep" }])))
      yield* publish(gateway, configFor(app.url, [{ name: "keep" }]))
      yield* eventually(Effect.sync(() => !gateway.listeners.addresses.has("web")), "web is removed")
      yield* publish(gateway, configFor(app.url, [{ name: "web" }, { name: "keep" }]))
      yield* eventually(Effect.sync(() => gateway.listeners.addresses.has("web")), "web is added back")
      assert.strictEqual(yield* statusOn(gateway.port("web")), 200)
    }))

  it.live("a listener on a fixed port keeps its binding across a reload: no re-bind and no bind failure", () =>
    Effect.gen(function*() {
      const app = yield* startUpstream("app")
      const port = yield* freePort
      const gateway = yield* startLiveGateway(Gateway.layer(configFor(app.url, [{ name: "web", listen: `127.0.0.1:${port}` }])))
      assert.include(gateway.logs.map((l) => l.message), `listener web on http://127.0.0.1:${port}`)
      const before = gateway.listeners.addresses.get("web")
      // "probe", added after web in the same reload, is logged once the reconcile has passed web.
      const next = configFor(app.url, [{ name: "web", listen: `127.0.0.1:${port}`, limits: { idle_timeout: "5s" } }, { name: "probe" }])
      yield* publish(gateway, next)
      yield* eventually(Effect.sync(() => gateway.listeners.addresses.has("probe")), "the reconcile reaches probe")
      assert.strictEqual(gateway.listeners.addresses.get("web"), before)
      assert.deepStrictEqual(gateway.logs.filter((l) => l.level === "Error" || l.message.includes("moved") || l.message.includes("re-bound")), [])
      assert.strictEqual(yield* statusOn(port), 200)
    }))

  it.live("a changed host on the same port re-binds on the new host", () =>
    Effect.gen(function*() {
      const app = yield* startUpstream("app")
      const port = yield* freePort
      const gateway = yield* startLiveGateway(Gateway.layer(configFor(app.url, [{ name: "web", listen: `127.0.0.1:${port}` }])))
      yield* publish(gateway, configFor(app.url, [{ name: "web", listen: `127.0.0.2:${port}` }]))
      yield* eventually(Effect.sync(() => gateway.listeners.addresses.get("web")?.host === "127.0.0.2"), "web moves to 127.0.0.2")
      assert.strictEqual((yield* get(`http://127.0.0.2:${port}/`)).status, 200)
      yield* eventually(refuses(port), "127.0.0.1 refuses connections")
    }))
})
