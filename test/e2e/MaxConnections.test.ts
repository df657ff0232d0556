/**
 * `limits.max_connections`, end to end: up to the limit, connections are served; one past it is
 * closed by the gateway before anything is read from it (node:http's `maxConnections`); a
 * reload changes the limit in place, on the same listening socket, without touching the
 * connections already open.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { getRequest, openConnection, type Connection } from "../support/connection.ts"
import { request, startGateway, startUpstream, type TestGateway } from "../support/harness.ts"
import { eventually } from "../support/liveGateway.ts"
import { scrapeAdmin, series } from "../support/prometheus.ts"

const configWith = (upstream: string, listener: string, maxConnections: number, port = 0) => ({
  admin: { listen: "127.0.0.1:0" },
  log: { level: "none", access_log: false },
  servers: [{ name: listener, listen: `127.0.0.1:${port}`, limits: { max_connections: maxConnections }, routes: [{ id: `${listener}-all`, upstream: "app" }] }],
  upstreams: { app: { endpoints: [{ url: upstream }] } }
})

/** Sends a GET on an open connection and waits for its (n-th) response: 200 expected. */
const served = (c: Connection, n: number, path: string) =>
  Effect.gen(function*() {
    yield* c.write(getRequest(path))
    const responses = yield* c.responses(n)
    assert.strictEqual(responses[n - 1].status, 200, `response ${n} on this connection`)
    assert.strictEqual(JSON.parse(responses[n - 1].body).url, path)
  })

/** A connection past the limit: closed by the gateway with nothing sent back, its request unanswered. */
const refused = (gateway: TestGateway) =>
  Effect.gen(function*() {
    const c = yield* openConnection(gateway.port)
    yield* c.write(getRequest("/past-the-limit"))
    yield* c.closed()
    assert.strictEqual(c.text(), "", "no response on a connection past the limit")
  })

/** Waits until the listener counts `n` open client connections (the gateway has seen a close). */
const openCount = (gateway: TestGateway, listener: string, n: number) =>
  eventually(
    Effect.map(scrapeAdmin(gateway.adminPort), (s) => series(s, "fibergate_client_connections", { listener }) === n),
    `${listener} has ${n} open client connections`
  )

const put = (gateway: TestGateway, config: unknown) =>
  Effect.gen(function*() {
    const res = yield* request(`http://127.0.0.1:${gateway.adminPort}/config`, { method: "PUT", body: JSON.stringify(config) })
    assert.strictEqual(res.status, 200, res.body)
  })

describe("max_connections", () => {
  it.live("at the limit every connection is served; the next one is closed unanswered; a freed slot serves again", () =>
    Effect.gen(function*() {
      const app = yield* startUpstream("app")
      const gateway = yield* startGateway(configWith(app.url, "maxconn", 2))
      const first = yield* openConnection(gateway.port)
      const second = yield* openConnection(gateway.port)
      yield* served(first, 1, "/one")
      yield* served(second, 1, "/two")
      yield* refused(gateway)
      assert.isFalse(first.isClosed())
      assert.isFalse(second.isClosed())
      assert.strictEqual(app.seen.length, 2, "the refused connection's request never reached the upstream")
      // Both kept connections are still served, and a closed one frees its slot.
      yield* served(first, 2, "/one-again")
      first.socket.destroy()
      yield* openCount(gateway, "maxconn", 1)
      const third = yield* openConnection(gateway.port)
      yield* served(third, 1, "/three")
      yield* served(second, 2, "/two-again")
    }))

  it.live("a reload changes max_connections in place: the open connection stays, the new limit applies to the next ones", () =>
    Effect.gen(function*() {
      const app = yield* startUpstream("app")
      const gateway = yield* startGateway(configWith(app.url, "maxconn-reload", 1))
      const kept = yield* openConnection(gateway.port)
      yield* served(kept, 1, "/kept")
      yield* refused(gateway)

      // Raised to 2, on the same port: one more connection is admitted, the next still refused.
      yield* put(gateway, { ...configWith(app.url, "maxconn-reload", 2, gateway.port), admin: { listen: `127.0.0.1:${gateway.adminPort}` } })
      const second = yield* openConnection(gateway.port)
      yield* served(second, 1, "/second")
      yield* refused(gateway)
      yield* served(kept, 2, "/kept-again")

      // Lowered to 1 with two open: both stay (a limit is checked when a connection arrives), a new one is refused.
      yield* put(gateway, { ...configWith(app.url, "maxconn-reload", 1, gateway.port), admin: { listen: `127.0.0.1:${gateway.adminPort}` } })
      yield* refused(gateway)
      yield* served(kept, 3, "/kept-third")
      yield* served(second, 2, "/second-again")
    }))
})
