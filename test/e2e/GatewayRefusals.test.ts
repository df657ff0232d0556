/**
 * What the gateway answers itself once node:http has parsed a request, word for word: the
 * status and JSON body of each refusal (bad percent-encoding, bad Host, an absolute-form target
 * without a host, an unsupported transfer coding, no route, a body over the limit), and the
 * requests that are not refusals (HTTP/1.0 without Host, `OPTIONS *`).
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { simpleConfig, startGateway, startUpstream } from "../support/harness.ts"
import { raw } from "../support/net.ts"
import { getRequest, openConnection } from "../support/connection.ts"
import { send } from "../support/http.ts"
import { eventually } from "../support/liveGateway.ts"

const setup = Effect.gen(function*() {
  const upstream = yield* startUpstream("app")
  const config = simpleConfig([upstream.url], { match: { path: { prefix: "/" }, host: "t" } })
  const gateway = yield* startGateway({ ...config, servers: [{ ...config.servers[0], limits: { max_body_bytes: 8 } }] })
  return { gateway, upstream }
})

describe("the gateway's own answers", () => {
  for (const [what, request, status, body] of [
    ["a bad percent-encoding in the path", "GET /a%zz HTTP/1.1\r\nHost: t\r\n\r\n", 400, { error: "BadRequest", message: "Invalid percent-encoding in the request path" }],
    ["two Host headers", "GET / HTTP/1.1\r\nHost: t\r\nHost: u\r\n\r\n", 400, { error: "BadRequest", message: "Invalid or repeated Host header" }],
    ["an HTTP/1.1 request without Host", "GET / HTTP/1.1\r\n\r\n", 400, { error: "BadRequest", message: "Invalid or repeated Host header" }],
    ["an absolute-form target without a host", "GET http:///x HTTP/1.1\r\nHost: t\r\n\r\n", 400, { error: "BadRequest", message: "Invalid or repeated Host header" }],
    ["a target with a fragment", "GET /a#frag HTTP/1.1\r\nHost: t\r\n\r\n", 400, { error: "BadRequest", message: "Invalid request target" }],
    ["a transfer coding before chunked", "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501, { error: "NotImplemented", message: "Transfer codings other than chunked are not supported" }],
    ["no route for the host", "GET / HTTP/1.1\r\nHost: other\r\n\r\n", 404, { error: "RouteNotFound", message: "No route matches this request" }],
    ["a declared body over max_body_bytes", "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 9\r\n\r\n123456789", 413, { error: "PayloadTooLarge", message: "The request body is too large" }]
  ] as const) {
    it.live(`${what}: ${status} ${body.error}, "${body.message}"`, () =>
      Effect.gen(function*() {
        const { gateway, upstream } = yield* setup
        const res = yield* raw(gateway.port, request, { untilClose: status !== 404 })
        assert.strictEqual(res.status, status)
        assert.deepStrictEqual(JSON.parse(res.body), body)
        assert.deepStrictEqual(res.headers.get("content-type"), ["application/json"])
        assert.deepStrictEqual(res.headers.get("cache-control"), ["no-store"])
        assert.strictEqual(upstream.seen.length, 0)
      }))
  }

  it.live("an HTTP/1.0 request without Host is proxied (Host is required from HTTP/1.1 on)", () =>
    Effect.gen(function*() {
      const upstream = yield* startUpstream("app")
      const gateway = yield* startGateway(simpleConfig([upstream.url]))
      const res = yield* raw(gateway.port, "GET /old HTTP/1.0\r\n\r\n", { untilClose: true })
      assert.strictEqual(res.status, 200)
      assert.strictEqual(upstream.seen.length, 1)
      // No Host came, so none goes on: an empty one, as HTTP/1.1 allows for a request without an authority.
      assert.strictEqual(upstream.seen[0].headers.host, "")
      assert.strictEqual(upstream.seen[0].headers["x-forwarded-host"], "")
    }))

  it.live("OPTIONS * is answered by the gateway: 200, Allow, an empty body", () =>
    Effect.gen(function*() {
      const { gateway, upstream } = yield* setup
      const res = yield* raw(gateway.port, "OPTIONS * HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", { untilClose: true })
      assert.strictEqual(res.status, 200)
      assert.deepStrictEqual(res.headers.get("allow"), ["GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"])
      assert.deepStrictEqual(res.headers.get("content-length"), ["0"])
      assert.strictEqual(res.body, "")
      assert.strictEqual(upstream.seen.length, 0)
    }))

  it.live("refusals that say nothing about the connection leave it open: a GET * (400), no route (404) and no healthy endpoint (503), each followed on the same connection", () =>
    Effect.gen(function*() {
      const upstream = yield* startUpstream("app", { handler: (_req, res) => void res.writeHead(200, { "content-length": "2" }).end("ok") })
      const config = simpleConfig([upstream.url], { match: { host: "t" } })
      const gateway = yield* startGateway({
        ...config,
        servers: [{ ...config.servers[0], routes: [...config.servers[0].routes, { id: "dead", match: { host: "dead" }, upstream: "none" }] }],
        upstreams: {
          ...config.upstreams,
          // An endpoint marked down by its first failed health check: nothing is eligible.
          none: {
            endpoints: [{ url: "http://127.0.0.1:1" }],
            health_check: { path: "/health", interval: "50ms", timeout: "200ms", unhealthy_threshold: 1, healthy_threshold: 1 }
          }
        }
      })
      const admin = `http://127.0.0.1:${gateway.adminPort}/upstreams`
      yield* eventually(Effect.map(send(admin), (r) => JSON.parse(r.body).upstreams.none.endpoints[0].healthy === false), "the dead endpoint is down")
      const connection = yield* openConnection(gateway.port)
      let expected = 0
      for (const [request, status] of [
        ["GET * HTTP/1.1\r\nHost: t\r\n\r\n", 400],
        [getRequest("/nothing").replace("Host: t", "Host: nowhere"), 404],
        [getRequest("/dead").replace("Host: t", "Host: dead"), 503],
        [getRequest("/alive"), 200]
      ] as const) {
        yield* connection.write(request)
        const responses = yield* connection.responses(++expected)
        assert.strictEqual(responses[expected - 1].status, status)
        assert.isFalse(connection.isClosed(), `still open after the ${status}`)
      }
      assert.deepStrictEqual(upstream.seen.map((r) => r.url), ["/alive"])
    }))
})
