/**
 * Active health checks end to end: real upstreams whose /health answer the test controls, the
 * real gateway probing them on small intervals, and the admin API's `GET /upstreams` as the
 * observable state. Waits poll (bounded) instead of sleeping for a fixed time.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Result, SubscriptionRef } from "effect"
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http"
import type { AddressInfo } from "node:net"
import { decodeConfig } from "../../src/config/ConfigLoader.ts"
import { echoHandler, request, startGateway, startUpstream, type TestGateway, type TestUpstream } from "../support/harness.ts"
import { send } from "../support/http.ts"

/** What an upstream answers on /health; changed by the test while it runs. */
interface HealthAnswer {
  status: number
  body: string
  /** Never answer (the probe must time out). */
  hang?: boolean
}

interface HealthUpstream extends TestUpstream {
  readonly health: HealthAnswer
  /** /health requests received. */
  readonly probes: () => ReadonlyArray<IncomingMessage["headers"]>
  /** /health requests answered with a 2xx status. */
  readonly okProbes: () => number
  /** Requests other than /health (proxied traffic). */
  readonly traffic: () => number
}

/** An echo upstream (named, with `x-upstream`) whose `/health` answers `health`. */
const healthUpstream = (name: string, health: HealthAnswer = { status: 200, body: "ok" }) =>
  Effect.gen(function*() {
    let ok = 0
    const echo = echoHandler(name)
    const upstream = yield* startUpstream(name, {
      handler: (req, res, body) => {
        if (req.url !== "/health") return echo(req, res, body)
        if (health.hang === true) return
        if (health.status >= 200 && health.status < 300) ok++
        res.writeHead(health.status, { "content-type": "text/plain", "content-length": Buffer.byteLength(health.body) })
        res.end(health.body)
      }
    })
    const result: HealthUpstream = {
      ...upstream,
      health,
      probes: () => upstream.seen.filter((r) => r.url === "/health").map((r) => r.headers),
      okProbes: () => ok,
      traffic: () => upstream.seen.filter((r) => r.url !== "/health").length
    }
    return result
  })

/** A gateway with the admin API in front of upstream "app" over `endpoints`. */
const gatewayOver = (
  endpoints: ReadonlyArray<{ readonly url: string }>,
  upstream: Record<string, unknown>
) => {
  const config = {
    admin: { listen: "127.0.0.1:0" },
    log: { level: "none", access_log: false },
    servers: [{ name: "web", listen: "127.0.0.1:0", routes: [{ id: "all", upstream: "app" }] }],
    upstreams: { app: { endpoints: endpoints.map((e) => ({ url: e.url })), ...upstream } }
  }
  return Effect.map(startGateway(config), (gateway) => ({ gateway, config }))
}

interface EndpointView {
  readonly url: string
  readonly healthy: boolean
}

/** `GET /upstreams` of the admin API: the endpoints of upstream "app". */
const endpointsOf = (gateway: TestGateway) =>
  Effect.gen(function*() {
    const port = gateway.adminPort ?? assert.fail("admin API not bound")
    const res = yield* request(`http://127.0.0.1:${port}/upstreams`)
    assert.strictEqual(res.status, 200)
    return (JSON.parse(res.body) as { upstreams: Record<string, { endpoints: ReadonlyArray<EndpointView> }> }).upstreams.app.endpoints
  })

const healthOf = (gateway: TestGateway, url: string) =>
  Effect.map(endpointsOf(gateway), (endpoints) => {
    const e = endpoints.find((e) => e.url === url)
    return e === undefined ? assert.fail(`no endpoint ${url} in /upstreams`) : e.healthy
  })

/** Polls `condition` every 20ms until it holds, failing the test after `within` ms. */
const eventually = (what: string, condition: Effect.Effect<boolean>, within = 3000) =>
  Effect.gen(function*() {
    const deadline = Date.now() + within
    while (!(yield* condition)) {
      if (Date.now() > deadline) return assert.fail(`timed out after ${within}ms waiting until ${what}`)
      yield* Effect.sleep("20 millis")
    }
  })

const untilHealth = (gateway: TestGateway, upstream: { readonly url: string; readonly name?: string }, healthy: boolean) =>
  eventually(
    `${upstream.name ?? upstream.url} is ${healthy ? "healthy" : "unhealthy"}`,
    Effect.map(healthOf(gateway, upstream.url), (h) => h === healthy)
  )

/** `n` sequential requests through the gateway; which upstream answered each (or its status). */
const picks = (gateway: TestGateway, n: number) =>
  Effect.gen(function*() {
    const out: Array<string> = []
    for (let i = 0; i < n; i++) {
      const res = yield* send(gateway.url(`/item/${i}`))
      const upstream = res.headers["x-upstream"]
      out.push(typeof upstream === "string" ? upstream : `status ${res.status}`)
    }
    return out
  })

const count = (names: ReadonlyArray<string>): Record<string, number> => {
  const out: Record<string, number> = {}
  for (const n of names) out[n] = (out[n] ?? 0) + 1
  return out
}

/**
 * An echo upstream that can be closed and started again on the same port. Closed for good when
 * the scope closes.
 */
const restartableUpstream = (name: string) =>
  Effect.gen(function*() {
    let server: Server | undefined
    let port = 0
    const start = Effect.callback<void>((resume) => {
      const echo = echoHandler(name)
      const s = createServer((req: IncomingMessage, res: ServerResponse) => {
        const chunks: Array<Buffer> = []
        req.on("data", (c: Buffer) => chunks.push(c))
        req.on("end", () => echo(req, res, Buffer.concat(chunks)))
      })
      s.once("error", (e) => resume(Effect.die(e)))
      s.listen(port, "127.0.0.1", () => {
        port = (s.address() as AddressInfo).port
        server = s
        resume(Effect.void)
      })
    })
    const stop = Effect.callback<void>((resume) => {
      const s = server
      server = undefined
      if (s === undefined) return resume(Effect.void)
      s.closeAllConnections()
      s.close(() => resume(Effect.void))
    })
    yield* Effect.acquireRelease(start, () => stop)
    return { name, url: `http://127.0.0.1:${port}`, port, start, stop }
  })

const httpCheck = (overrides: Record<string, unknown> = {}) => ({
  type: "http",
  path: "/health",
  interval: "50ms",
  timeout: "500ms",
  healthy_threshold: 2,
  unhealthy_threshold: 2,
  ...overrides
})

describe("health checks end to end: http", () => {
  it.live("traffic goes only to A once B's /health answers 500, and back to both once it answers 200 again", () =>
    Effect.gen(function*() {
      const a = yield* healthUpstream("a")
      const b = yield* healthUpstream("b", { status: 500, body: "down" })
      const { gateway } = yield* gatewayOver([a, b], { health_check: httpCheck() })
      yield* untilHealth(gateway, b, false)
      assert.isTrue(yield* healthOf(gateway, a.url))
      const trafficB = b.traffic()
      const names = yield* picks(gateway, 20)
      assert.deepStrictEqual(count(names), { a: 20 })
      assert.strictEqual(b.traffic(), trafficB, "B received proxied traffic while unhealthy")

      // Recovery: B comes back after healthy_threshold (2) successful checks.
      b.health.status = 200
      b.health.body = "ok"
      yield* untilHealth(gateway, b, true)
      assert.isAtLeast(b.okProbes(), 2, "B was marked healthy before two successful checks")
      const after = yield* picks(gateway, 20)
      assert.deepStrictEqual(count(after), { a: 10, b: 10 })
    }))

  it.live("every endpoint unhealthy: the route answers 503 NoHealthyUpstream without contacting any upstream", () =>
    Effect.gen(function*() {
      const a = yield* healthUpstream("a", { status: 500, body: "down" })
      const b = yield* healthUpstream("b", { status: 503, body: "down" })
      const { gateway } = yield* gatewayOver([a, b], { health_check: httpCheck({ unhealthy_threshold: 1 }) })
      yield* untilHealth(gateway, a, false)
      yield* untilHealth(gateway, b, false)
      const before = a.traffic() + b.traffic()
      const res = yield* request(gateway.url("/anything"))
      assert.strictEqual(res.status, 503)
      assert.isTrue(res.body.startsWith("{\"error\":\"NoHealthyUpstream\""), res.body)
      assert.strictEqual(JSON.parse(res.body).error, "NoHealthyUpstream")
      assert.strictEqual(a.traffic() + b.traffic(), before, "an unhealthy upstream was contacted")
    }))

  it.live("panic: fail_closed (explicit) answers 503 too", () =>
    Effect.gen(function*() {
      const a = yield* healthUpstream("a", { status: 500, body: "down" })
      const { gateway } = yield* gatewayOver([a], { health_check: httpCheck({ unhealthy_threshold: 1 }), panic: "fail_closed" })
      yield* untilHealth(gateway, a, false)
      const res = yield* request(gateway.url("/"))
      assert.strictEqual(res.status, 503)
      assert.strictEqual(JSON.parse(res.body).error, "NoHealthyUpstream")
    }))

  it.live("panic: fail_open forwards anyway (over all endpoints) when every endpoint is unhealthy", () =>
    Effect.gen(function*() {
      const a = yield* healthUpstream("a", { status: 500, body: "down" })
      const b = yield* healthUpstream("b", { status: 500, body: "down" })
      const { gateway } = yield* gatewayOver([a, b], { health_check: httpCheck({ unhealthy_threshold: 1 }), panic: "fail_open" })
      yield* untilHealth(gateway, a, false)
      yield* untilHealth(gateway, b, false)
      const names = yield* picks(gateway, 10)
      assert.deepStrictEqual(Object.keys(count(names)).sort(), ["a", "b"])
    }))

  it.live("panic: fail_open still sends nothing to an unhealthy endpoint while a healthy one remains", () =>
    Effect.gen(function*() {
      const a = yield* healthUpstream("a")
      const b = yield* healthUpstream("b", { status: 500, body: "down" })
      const { gateway } = yield* gatewayOver([a, b], { health_check: httpCheck({ unhealthy_threshold: 1 }), panic: "fail_open" })
      yield* untilHealth(gateway, b, false)
      assert.deepStrictEqual(count(yield* picks(gateway, 20)), { a: 20 })
    }))

  it.live("expect_body: a 200 whose body lacks the expected text marks the endpoint unhealthy", () =>
    Effect.gen(function*() {
      const a = yield* healthUpstream("a", { status: 200, body: "{\"status\":\"ok\"}" })
      const b = yield* healthUpstream("b", { status: 200, body: "{\"status\":\"degraded\"}" })
      const { gateway } = yield* gatewayOver([a, b], { health_check: httpCheck({ expect_body: "\"ok\"" }) })
      yield* untilHealth(gateway, b, false)
      // A has been probed as often and stays healthy.
      yield* eventually("A is probed at least 3 times", Effect.sync(() => a.probes().length >= 3))
      assert.isTrue(yield* healthOf(gateway, a.url))
      assert.deepStrictEqual(count(yield* picks(gateway, 20)), { a: 20 })
      // Once the body matches again, B recovers.
      b.health.body = "{\"status\":\"ok\"}"
      yield* untilHealth(gateway, b, true)
    }))

  it.live("expect_status: a status outside the range marks the endpoint unhealthy", () =>
    Effect.gen(function*() {
      const a = yield* healthUpstream("a", { status: 204, body: "" })
      const b = yield* healthUpstream("b", { status: 200, body: "ok" })
      const { gateway } = yield* gatewayOver([a, b], { health_check: httpCheck({ expect_status: "204" }) })
      yield* untilHealth(gateway, b, false)
      yield* eventually("A is probed at least 3 times", Effect.sync(() => a.probes().length >= 3))
      assert.isTrue(yield* healthOf(gateway, a.url))
    }))

  it.live("a /health that never answers is a failure after `timeout`", () =>
    Effect.gen(function*() {
      const a = yield* healthUpstream("a")
      const b = yield* healthUpstream("b", { status: 200, body: "ok", hang: true })
      const { gateway } = yield* gatewayOver([a, b], { health_check: httpCheck({ timeout: "100ms", unhealthy_threshold: 2 }) })
      yield* untilHealth(gateway, b, false)
      assert.isTrue(yield* healthOf(gateway, a.url))
      assert.deepStrictEqual(count(yield* picks(gateway, 10)), { a: 10 })
    }))

  it.live("`host` is sent as the Host header of the probe; without it, the endpoint's host:port", () =>
    Effect.gen(function*() {
      const a = yield* healthUpstream("a")
      const { gateway } = yield* gatewayOver([a], { health_check: httpCheck({ host: "health.internal.example" }) })
      yield* eventually("A is probed", Effect.sync(() => a.probes().length >= 1))
      for (const headers of a.probes()) {
        assert.strictEqual(headers.host, "health.internal.example")
        assert.strictEqual(headers["user-agent"], "fibergate-health-check")
      }
      assert.isTrue(yield* healthOf(gateway, a.url))

      const b = yield* healthUpstream("b")
      yield* gatewayOver([b], { health_check: httpCheck() })
      yield* eventually("B is probed", Effect.sync(() => b.probes().length >= 1))
      assert.strictEqual(b.probes()[0].host, `127.0.0.1:${b.port}`)
    }))

  it.live("a reload that keeps the endpoint and its check keeps it out of rotation", () =>
    Effect.gen(function*() {
      const a = yield* healthUpstream("a")
      const b = yield* healthUpstream("b", { status: 500, body: "down" })
      // A long interval: after the reload no new probe can restore the state in time.
      const { gateway, config } = yield* gatewayOver([a, b], { health_check: httpCheck({ interval: "200ms", unhealthy_threshold: 1 }) })
      yield* untilHealth(gateway, b, false)
      const next = decodeConfig({ ...config, servers: [{ ...config.servers[0], routes: [{ id: "renamed", upstream: "app" }] }] }, "<test>")
      assert.isTrue(Result.isSuccess(next))
      if (Result.isFailure(next)) return
      const generation = (gateway.services.routes.generation())
      yield* SubscriptionRef.set(gateway.services.config.config, next.success)
      yield* eventually("the reload is applied", Effect.sync(() => gateway.services.routes.generation() > generation))
      assert.isFalse(yield* healthOf(gateway, b.url))
      assert.deepStrictEqual(count(yield* picks(gateway, 20)), { a: 20 })
    }))
})

/**
 * An echo upstream whose `/health` probes the test answers one at a time: each probe is held
 * until `answer(status)`, so the test can look at the gateway between probe k's result and
 * probe k+1 (which the gateway sends only after it applied probe k's result).
 */
const steppedHealthUpstream = (name: string) =>
  Effect.gen(function*() {
    const held: Array<ServerResponse> = []
    let arrived = 0
    const echo = echoHandler(name)
    const upstream = yield* startUpstream(name, {
      handler: (req, res, body) => {
        if (req.url !== "/health") return echo(req, res, body)
        arrived++
        held.push(res)
      }
    })
    const answer = (status: number) =>
      Effect.sync(() => {
        const res = held.shift() ?? assert.fail(`no probe of ${name} is waiting for an answer`)
        res.writeHead(status, { "content-type": "text/plain", "content-length": 2 }).end("ok")
      })
    /** Waits until probe `n` has arrived (and is held). */
    const probe = (n: number) => eventually(`probe ${n} of ${name} arrives`, Effect.sync(() => arrived >= n && held.length > 0))
    return { ...upstream, answer, probe, arrived: () => arrived }
  })

describe("health checks end to end: thresholds at the limit and one short of it", () => {
  it.live("unhealthy_threshold 3: two failed probes keep B in rotation, the third takes it out; healthy_threshold 2: one success keeps it out, the second brings it back", () =>
    Effect.gen(function*() {
      const a = yield* healthUpstream("a")
      const b = yield* steppedHealthUpstream("b")
      // A held probe must not time out while the test looks: timeout 10s.
      const { gateway } = yield* gatewayOver([a, b], {
        health_check: httpCheck({ interval: "20ms", timeout: "10s", unhealthy_threshold: 3, healthy_threshold: 2 })
      })
      /** Answers probe n of B with `status` and waits until probe n+1 arrives: probe n's result is applied. */
      const step = (n: number, status: number) =>
        Effect.gen(function*() {
          yield* b.probe(n)
          yield* b.answer(status)
          yield* b.probe(n + 1)
        })
      const inRotation = Effect.gen(function*() {
        const healthy = yield* healthOf(gateway, b.url)
        const served = count(yield* picks(gateway, 4))
        assert.deepStrictEqual(served, healthy ? { a: 2, b: 2 } : { a: 4 }, `healthy: ${healthy}`)
        return healthy
      })
      assert.isTrue(yield* inRotation, "B starts in rotation")
      yield* step(1, 500)
      assert.isTrue(yield* inRotation, "out of rotation after 1 failed probe")
      yield* step(2, 500)
      assert.isTrue(yield* inRotation, "out of rotation after 2 failed probes (unhealthy_threshold 3)")
      yield* step(3, 500)
      assert.isFalse(yield* inRotation, "still in rotation after 3 failed probes")
      yield* step(4, 200)
      assert.isFalse(yield* inRotation, "back after 1 successful probe (healthy_threshold 2)")
      yield* step(5, 200)
      assert.isTrue(yield* inRotation, "still out after 2 successful probes")
      // A failure in a rise starts it over: fail 3 to go out, then success, failure, success stays out.
      for (const [n, status] of [[6, 500], [7, 500], [8, 500], [9, 200], [10, 500], [11, 200]] as const) yield* step(n, status)
      assert.isFalse(yield* inRotation, "a failure between two successes did not restart the rise")
      yield* step(12, 200)
      assert.isTrue(yield* inRotation)
    }), 20_000)
})

describe("health checks end to end: tcp", () => {
  it.live("a closed endpoint is marked unhealthy, and back in rotation once restarted on the same port", () =>
    Effect.gen(function*() {
      const a = yield* healthUpstream("a")
      const b = yield* restartableUpstream("b")
      const { gateway } = yield* gatewayOver([a, b], {
        health_check: { type: "tcp", interval: "50ms", timeout: "500ms", healthy_threshold: 2, unhealthy_threshold: 1 }
      })
      assert.deepStrictEqual(count(yield* picks(gateway, 4)), { a: 2, b: 2 })

      yield* b.stop
      yield* untilHealth(gateway, b, false)
      assert.deepStrictEqual(count(yield* picks(gateway, 20)), { a: 20 })
      // A tcp check opens a connection and nothing else: no HTTP request reaches A's /health.
      assert.strictEqual(a.probes().length, 0)

      yield* b.start
      yield* untilHealth(gateway, b, true)
      assert.deepStrictEqual(count(yield* picks(gateway, 20)), { a: 10, b: 10 })
    }))

  it.live("every endpoint closed (tcp): 503 NoHealthyUpstream", () =>
    Effect.gen(function*() {
      const a = yield* restartableUpstream("a")
      const { gateway } = yield* gatewayOver([a], { health_check: { type: "tcp", interval: "50ms", unhealthy_threshold: 1 } })
      yield* a.stop
      yield* untilHealth(gateway, a, false)
      const res = yield* request(gateway.url("/"))
      assert.strictEqual(res.status, 503)
      assert.strictEqual(JSON.parse(res.body).error, "NoHealthyUpstream")
    }))
})
