/**
 * What a reload changes, and what it keeps, seen from the outside:
 * - `POST /reload` re-reads a changed config file (file watching off, so nothing else can apply it);
 * - upstream endpoints that stay keep their pools (the upstream sees no new TCP connection), and
 *   the pools of removed endpoints and upstreams close;
 * - `idle_timeout`, `header_timeout`, `request_timeout` and `max_body_bytes` change in place:
 *   the next request on a keep-alive connection opened before the reload runs under the new
 *   limit, on the same socket (a re-bind would have closed it).
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import type { Socket } from "node:net"
import { join } from "node:path"
import * as Gateway from "../../src/gateway/Gateway.ts"
import { getRequest, openConnection, postRequest, type Connection } from "../support/connection.ts"
import { request, startGateway, startUpstream, type TestGateway, type TestUpstream } from "../support/harness.ts"
import { get, startLiveGateway, tempDir, writeInPlace } from "../support/liveGateway.ts"

const put = (adminPort: number | undefined, config: unknown) =>
  Effect.gen(function*() {
    const res = yield* request(`http://127.0.0.1:${adminPort}/config`, { method: "PUT", body: JSON.stringify(config) })
    assert.strictEqual(res.status, 200, res.body)
    return JSON.parse(res.body)
  })

/** Every TCP connection an upstream accepts, in order. */
const connectionsTo = (upstream: TestUpstream): Array<Socket> => {
  const sockets: Array<Socket> = []
  upstream.server.on("connection", (socket: Socket) => void sockets.push(socket))
  return sockets
}

/** Waits (at most 3 s) until the upstream-side socket closes. */
const socketCloses = (socket: Socket, what: string) =>
  Effect.callback<void>((resume) => {
    if (socket.destroyed) return resume(Effect.void)
    socket.once("close", () => resume(Effect.void))
  }).pipe(Effect.timeoutOrElse({ duration: "3 seconds", orElse: () => Effect.sync(() => assert.fail(`${what} was not closed`)) }))

const upstreamOf = (res: { readonly headers: Headers }) => res.headers.get("x-upstream")

describe("POST /reload", () => {
  it.live("re-reads the config file (watching off): a route added to the file answers after the reload, not before", () =>
    Effect.gen(function*() {
      const a = yield* startUpstream("a")
      const b = yield* startUpstream("b")
      const path = join(yield* tempDir, "fibergate.yaml")
      const fileConfig = (withB: boolean) => ({
        admin: { listen: "127.0.0.1:0" },
        log: { level: "none", access_log: false },
        servers: [{
          name: "web",
          listen: "127.0.0.1:0",
          routes: [...(withB ? [{ id: "to-b", match: { path: { prefix: "/b" } }, upstream: "b" }] : []), { id: "all", upstream: "a" }]
        }],
        upstreams: { a: { endpoints: [{ url: a.url }] }, b: { endpoints: [{ url: b.url }] } }
      })
      yield* writeInPlace(path, fileConfig(false))
      const gateway = yield* startLiveGateway(Gateway.layerFile(path, {}, { watch: false }))
      const url = `http://127.0.0.1:${gateway.port("web")}/b/x`
      assert.strictEqual(upstreamOf(yield* get(url)), "a")

      yield* writeInPlace(path, fileConfig(true))
      assert.strictEqual(upstreamOf(yield* get(url)), "a", "with watching off, a changed file alone changes nothing")
      const res = yield* request(`http://127.0.0.1:${gateway.adminPort}/reload`, { method: "POST" })
      assert.strictEqual(res.status, 200, res.body)
      const body = JSON.parse(res.body)
      assert.isTrue(body.applied)
      assert.strictEqual(body.generation, 2)
      assert.deepStrictEqual(body.changes.routes.added, ["to-b"])
      assert.strictEqual(upstreamOf(yield* get(url)), "b")
      assert.strictEqual(upstreamOf(yield* get(`http://127.0.0.1:${gateway.port("web")}/other`)), "a")
    }))
})

describe("upstream pools across reloads", () => {
  const poolConfig = (endpoints: ReadonlyArray<string>, other: ReadonlyArray<string>, extraRoute = false) => ({
    admin: { listen: "127.0.0.1:0" },
    log: { level: "none", access_log: false },
    servers: [{
      name: "web",
      listen: "127.0.0.1:0",
      routes: [
        ...(extraRoute ? [{ id: "unrelated", match: { path: { exact: "/unrelated" } }, upstream: "app" }] : []),
        ...(other.length > 0 ? [{ id: "to-other", match: { path: { prefix: "/other" } }, upstream: "other" }] : []),
        { id: "all", upstream: "app" }
      ]
    }],
    upstreams: {
      app: { endpoints: endpoints.map((url) => ({ url })) },
      ...(other.length > 0 ? { other: { endpoints: other.map((url) => ({ url })) } } : {})
    }
  })
  const withPorts = (config: ReturnType<typeof poolConfig>, gateway: TestGateway) => ({
    ...config,
    admin: { listen: `127.0.0.1:${gateway.adminPort}` },
    servers: config.servers.map((s) => ({ ...s, listen: `127.0.0.1:${gateway.port}` }))
  })

  it.live("a reload that keeps the endpoint (a route changed elsewhere) keeps its pool: the upstream sees no new connection", () =>
    Effect.gen(function*() {
      const a = yield* startUpstream("a")
      const sockets = connectionsTo(a)
      const gateway = yield* startGateway(poolConfig([a.url], []))
      assert.strictEqual(upstreamOf(yield* request(gateway.url("/first"))), "a")
      assert.strictEqual(sockets.length, 1)
      for (let i = 0; i < 3; i++) {
        const applied = yield* put(gateway.adminPort, withPorts(poolConfig([a.url], [], i % 2 === 0), gateway))
        assert.strictEqual(applied.generation, i + 2)
        assert.strictEqual(upstreamOf(yield* request(gateway.url(`/after-${i}`))), "a")
      }
      assert.strictEqual(upstreamOf(yield* request(gateway.url("/unrelated"))), "a")
      assert.strictEqual(a.seen.length, 5)
      assert.strictEqual(sockets.length, 1, "every request after the reloads went over the connection opened before them")
      assert.isFalse(sockets[0].destroyed)
    }))

  it.live("a reload that removes an endpoint and an upstream closes their pools; the endpoint that stays keeps its connection", () =>
    Effect.gen(function*() {
      const a = yield* startUpstream("a")
      const b = yield* startUpstream("b")
      const c = yield* startUpstream("c")
      const [toA, toB, toC] = [connectionsTo(a), connectionsTo(b), connectionsTo(c)]
      const gateway = yield* startGateway(poolConfig([a.url, b.url], [c.url]))
      // round_robin: one request to each of a and b, one to c.
      const served = [
        upstreamOf(yield* request(gateway.url("/1"))),
        upstreamOf(yield* request(gateway.url("/2"))),
        upstreamOf(yield* request(gateway.url("/other/3")))
      ]
      assert.deepStrictEqual(served.sort(), ["a", "b", "c"])
      assert.deepStrictEqual([toA.length, toB.length, toC.length], [1, 1, 1])

      yield* put(gateway.adminPort, withPorts(poolConfig([a.url], []), gateway))
      yield* socketCloses(toB[0], "the removed endpoint's pool connection")
      yield* socketCloses(toC[0], "the removed upstream's pool connection")
      assert.isFalse(toA[0].destroyed, "the kept endpoint's connection is open")
      assert.strictEqual(upstreamOf(yield* request(gateway.url("/4"))), "a")
      assert.strictEqual(upstreamOf(yield* request(gateway.url("/other/5"))), "a", "the removed route is gone: the catch-all answers")
      assert.strictEqual(toA.length, 1, "the endpoint that stayed kept its pool")
    }))
})

describe("limits that change in place on reload", () => {
  const limitsConfig = (upstream: string, limits: Record<string, unknown>, port = 0, adminPort = 0) => ({
    admin: { listen: `127.0.0.1:${adminPort}` },
    log: { level: "none", access_log: false },
    servers: [{ name: "web", listen: `127.0.0.1:${port}`, limits, routes: [{ id: "all", upstream: "app" }] }],
    upstreams: { app: { endpoints: [{ url: upstream }] } }
  })

  /**
   * A gateway with `before` limits and a keep-alive connection that has had one response; then
   * a reload to `after` limits, and a second request on the same connection answered 200 (the
   * listener was not re-bound: that would have closed this idle connection).
   */
  const reloadedUnder = (before: Record<string, unknown>, after: Record<string, unknown>) =>
    Effect.gen(function*() {
      const app = yield* startUpstream("app")
      const gateway = yield* startGateway(limitsConfig(app.url, before))
      const connection = yield* openConnection(gateway.port)
      yield* connection.write(getRequest("/before"))
      assert.strictEqual((yield* connection.responses(1))[0].status, 200)
      yield* put(gateway.adminPort, limitsConfig(app.url, after, gateway.port, gateway.adminPort))
      yield* connection.write(getRequest("/after"))
      const responses = yield* connection.responses(2)
      assert.strictEqual(responses[1].status, 200, "the connection opened before the reload still serves")
      return { app, gateway, connection }
    })

  const lastResponse = (connection: Connection, n: number) => Effect.map(connection.responses(n), (all) => all[n - 1])

  it.live("max_body_bytes lowered by a reload: a body that was accepted gets 413 on the same connection", () =>
    Effect.gen(function*() {
      const app = yield* startUpstream("app")
      const gateway = yield* startGateway(limitsConfig(app.url, { max_body_bytes: 100 }))
      const connection = yield* openConnection(gateway.port)
      const body = "x".repeat(100)
      yield* connection.write(postRequest("/fits", body))
      assert.strictEqual((yield* lastResponse(connection, 1)).status, 200)
      yield* put(gateway.adminPort, limitsConfig(app.url, { max_body_bytes: 99 }, gateway.port, gateway.adminPort))
      yield* connection.write(getRequest("/still-open"))
      assert.strictEqual((yield* lastResponse(connection, 2)).status, 200, "same connection, not re-bound")
      yield* connection.write(postRequest("/too-big-now", body))
      const refused = yield* lastResponse(connection, 3)
      assert.strictEqual(refused.status, 413)
      assert.strictEqual(JSON.parse(refused.body).error, "PayloadTooLarge")
      assert.deepStrictEqual(app.seen.map((r) => r.url), ["/fits", "/still-open"])
    }))

  it.live("idle_timeout lowered by a reload: the connection is closed that long after its next response", () =>
    Effect.gen(function*() {
      const { connection } = yield* reloadedUnder({ idle_timeout: "30s" }, { idle_timeout: "300ms" })
      const elapsed = yield* connection.closed(3_000)
      assert.isAtLeast(elapsed, 250)
      assert.isBelow(elapsed, 1_500)
    }))

  it.live("header_timeout lowered by a reload: a head that stalls on the same connection gets 408 RequestTimeout", () =>
    Effect.gen(function*() {
      const { app, connection } = yield* reloadedUnder({ header_timeout: "30s" }, { header_timeout: "300ms" })
      const started = performance.now()
      yield* connection.write("GET /stalled HTTP/1.1\r\nHost: t\r\n")
      const timedOut = yield* lastResponse(connection, 3)
      assert.strictEqual(timedOut.status, 408)
      assert.strictEqual(JSON.parse(timedOut.body).error, "RequestTimeout")
      assert.isBelow(performance.now() - started, 1_500)
      yield* connection.closed()
      assert.deepStrictEqual(app.seen.map((r) => r.url), ["/before", "/after"])
    }))

  it.live("request_timeout lowered by a reload: a body that stalls on the same connection gets 408 RequestTimeout", () =>
    Effect.gen(function*() {
      const { connection } = yield* reloadedUnder({ request_timeout: "30s" }, { request_timeout: "400ms" })
      const started = performance.now()
      yield* connection.write("POST /stalled HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nab")
      const timedOut = yield* lastResponse(connection, 3)
      assert.strictEqual(timedOut.status, 408)
      assert.strictEqual(JSON.parse(timedOut.body).error, "RequestTimeout")
      assert.isBelow(performance.now() - started, 1_500)
    }))
})
