/**
 * What the gateway accepts on the wire: framing and header syntax (node:http's strict parser
 * plus the handler's own checks), the request-target forms of RFC 9112 §3.2, and path
 * normalisation that cannot route around a route. Raw TCP sockets, so nothing is cleaned up
 * by a client library before it reaches the gateway.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import { request as httpRequest } from "node:http"
import { simpleConfig, startGateway, startUpstream, type TestUpstream } from "../support/harness.ts"
import { raw, type RawResponse } from "../support/net.ts"
import { awaitSignal, fire, onSignal, signal } from "../support/signals.ts"

// ---------------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------------

const errorTag = (res: RawResponse): unknown => JSON.parse(res.body).error

/** A gateway with one catch-all route to one echo upstream. */
const setup = Effect.gen(function*() {
  const upstream = yield* startUpstream("a")
  const gateway = yield* startGateway(simpleConfig([upstream.url]))
  return { upstream, gateway }
})

/** Sends a request that must be refused: asserts the status and that the upstream saw nothing. */
const expectRejected = (data: string, status: number) =>
  Effect.gen(function*() {
    const { gateway, upstream } = yield* setup
    const res = yield* raw(gateway.port, data)
    assert.strictEqual(res.status, status)
    assert.strictEqual(upstream.seen.length, 0)
    return res
  })

const twoUpstreamConfig = (
  a: TestUpstream,
  b: TestUpstream,
  routes: ReadonlyArray<Record<string, unknown>>
) => ({
  log: { level: "none", access_log: false },
  servers: [{ name: "web", listen: "127.0.0.1:0", routes }],
  upstreams: { a: { endpoints: [{ url: a.url }] }, b: { endpoints: [{ url: b.url }] } }
})

// ---------------------------------------------------------------------------------------------
// framing and header syntax
// ---------------------------------------------------------------------------------------------

describe("framing and header syntax", () => {
  it.live("rejects Content-Length together with Transfer-Encoding with 400", () =>
    expectRejected(
      "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
      400
    ))

  it.live("rejects two different Content-Length values with 400", () =>
    expectRejected("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400))

  it.live("rejects an invalid chunk size with 400", () =>
    expectRejected("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", 400))

  it.live("rejects a header line without a colon with 400", () =>
    expectRejected("GET / HTTP/1.1\r\nHost: x\r\nBadHeader\r\n\r\n", 400))

  it.live("answers 431 to headers larger than max_header_bytes", () =>
    Effect.gen(function*() {
      const res = yield* expectRejected(`GET / HTTP/1.1\r\nHost: x\r\nX-Big: ${"a".repeat(20 * 1024)}\r\n\r\n`, 431)
      assert.strictEqual(errorTag(res), "HeadersTooLarge")
    }))

  it.live("rejects a lone LF as a header line ending with 400", () =>
    expectRejected("GET / HTTP/1.1\r\nHost: x\r\nX: a\nY: b\r\n\r\n", 400))

  it.live("rejects a lone LF ending the request line with 400", () =>
    expectRejected("GET / HTTP/1.1\nHost: x\r\n\r\n", 400))

  it.live("rejects an obs-fold header continuation with 400", () =>
    expectRejected("GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n", 400))

  it.live("closes the connection after a malformed request", () =>
    Effect.gen(function*() {
      const { gateway } = yield* setup
      // The second request must not be read: the framing of the connection is no longer trusted.
      const res = yield* raw(gateway.port, "GET / HTTP/1.1\r\nHost: x\r\nBadHeader\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", {
        untilClose: true
      })
      assert.strictEqual(res.status, 400)
      assert.isTrue(res.closed)
      assert.notInclude(res.body, "HTTP/1.1")
    }))
})

// ---------------------------------------------------------------------------------------------
// request-target forms (RFC 9112 §3.2)
// ---------------------------------------------------------------------------------------------

describe("request-target forms", () => {
  it.live("forwards an origin-form request", () =>
    Effect.gen(function*() {
      const { gateway, upstream } = yield* setup
      const res = yield* raw(gateway.port, "GET /x?y=1 HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n")
      assert.strictEqual(res.status, 200)
      assert.strictEqual(upstream.seen.length, 1)
      assert.strictEqual(upstream.seen[0].url, "/x?y=1")
      assert.strictEqual(upstream.seen[0].headers.host, "example.test")
    }))

  it.live("routes an absolute-form request by the target's authority, not the Host header", () =>
    Effect.gen(function*() {
      const a = yield* startUpstream("a")
      const b = yield* startUpstream("b")
      const gateway = yield* startGateway(twoUpstreamConfig(a, b, [
        { id: "example", match: { host: "example.test" }, upstream: "a" },
        { id: "other", upstream: "b" }
      ]))
      const res = yield* raw(gateway.port, "GET http://example.test/x HTTP/1.1\r\nHost: other.test\r\nConnection: close\r\n\r\n")
      assert.strictEqual(res.status, 200)
      assert.strictEqual(b.seen.length, 0)
      assert.strictEqual(a.seen.length, 1)
      assert.strictEqual(a.seen[0].url, "/x")
      assert.strictEqual(a.seen[0].headers.host, "example.test")
    }))

  it.live("answers OPTIONS * with 200 and an Allow header", () =>
    Effect.gen(function*() {
      const { gateway, upstream } = yield* setup
      const res = yield* raw(gateway.port, "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n")
      assert.strictEqual(res.status, 200)
      const allow = res.headers.get("allow")?.[0] ?? ""
      assert.include(allow.split(/,\s*/), "GET")
      assert.include(allow.split(/,\s*/), "OPTIONS")
      assert.strictEqual(upstream.seen.length, 0)
    }))

  it.live("rejects the asterisk form with any method but OPTIONS with 400", () =>
    Effect.gen(function*() {
      const res = yield* expectRejected("GET * HTTP/1.1\r\nHost: x\r\n\r\n", 400)
      assert.strictEqual(errorTag(res), "BadRequest")
    }))

  it.live("answers CONNECT with 405 and closes the connection", () =>
    Effect.gen(function*() {
      const { gateway, upstream } = yield* setup
      const res = yield* raw(gateway.port, "CONNECT example.test:443 HTTP/1.1\r\nHost: example.test:443\r\n\r\n", {
        untilClose: true
      })
      assert.strictEqual(res.status, 405)
      assert.strictEqual(errorTag(res), "MethodNotAllowed")
      assert.isTrue(res.closed)
      assert.strictEqual(upstream.seen.length, 0)
    }))
})

// ---------------------------------------------------------------------------------------------
// Host and path validation
// ---------------------------------------------------------------------------------------------

describe("host and path validation", () => {
  it.live("rejects an HTTP/1.1 request without Host with 400", () =>
    Effect.gen(function*() {
      const res = yield* expectRejected("GET / HTTP/1.1\r\nX: y\r\n\r\n", 400)
      assert.strictEqual(errorTag(res), "BadRequest")
    }))

  it.live("rejects a request with two Host headers with 400", () =>
    Effect.gen(function*() {
      const res = yield* expectRejected("GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n", 400)
      assert.strictEqual(errorTag(res), "BadRequest")
    }))

  it.live("rejects invalid percent-encoding in the path with 400 BadRequest", () =>
    Effect.gen(function*() {
      const res = yield* expectRejected("GET /a%zz HTTP/1.1\r\nHost: x\r\n\r\n", 400)
      assert.strictEqual(errorTag(res), "BadRequest")
    }))

  it.live("rejects %00 in the path with 400", () =>
    Effect.gen(function*() {
      const res = yield* expectRejected("GET /a%00b HTTP/1.1\r\nHost: x\r\n\r\n", 400)
      assert.strictEqual(errorTag(res), "BadRequest")
    }))
})

// ---------------------------------------------------------------------------------------------
// path normalisation cannot escape a route
// ---------------------------------------------------------------------------------------------

describe("path normalisation", () => {
  const routes = [
    { id: "public", match: { path: { prefix: "/public" } }, upstream: "a" },
    { id: "admin", match: { path: { prefix: "/admin" } }, upstream: "b" }
  ]
  const cases: ReadonlyArray<readonly [target: string, upstream: "a" | "b", path: string]> = [
    ["/public/../admin/x", "b", "/admin/x"],
    ["/public/%2e%2e/admin/x", "b", "/admin/x"],
    ["/public/%2E%2E/admin", "b", "/admin"],
    ["//admin/x", "b", "/admin/x"],
    ["/public/./../admin", "b", "/admin"],
    ["/public/%2Fadmin", "a", "/public/%2Fadmin"]
  ]
  for (const [target, expected, path] of cases) {
    it.live(`sends ${target} to upstream ${expected} as ${path}`, () =>
      Effect.gen(function*() {
        const a = yield* startUpstream("a")
        const b = yield* startUpstream("b")
        const gateway = yield* startGateway(twoUpstreamConfig(a, b, routes))
        const res = yield* raw(gateway.port, `GET ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`)
        assert.strictEqual(res.status, 200)
        const [hit, miss] = expected === "a" ? [a, b] : [b, a]
        assert.strictEqual(miss.seen.length, 0)
        assert.deepStrictEqual(hit.seen.map((s) => s.url), [path])
      }))
  }
})

// ---------------------------------------------------------------------------------------------
// isolation between connections
// ---------------------------------------------------------------------------------------------

describe("connection isolation", () => {
  it.live("a malformed request on one connection does not disturb a request in flight on another", () =>
    Effect.gen(function*() {
      const arrived = signal()
      const release = signal()
      const upstream = yield* startUpstream("a", {
        handler: (req, res, _body) => {
          fire(arrived, undefined)
          onSignal(release, () => {
            res.writeHead(200, { "content-length": "4" })
            res.end(req.url === "/slow" ? "slow" : "fast")
          })
        }
      })
      const gateway = yield* startGateway(simpleConfig([upstream.url]))
      const slow = yield* Effect.callback<{ status: number; body: string }, Error>((resume) => {
        const req = httpRequest({ host: "127.0.0.1", port: gateway.port, path: "/slow", agent: false }, (res) => {
          let body = ""
          res.on("data", (c: Buffer) => (body += c.toString()))
          res.on("end", () => resume(Effect.succeed({ status: res.statusCode ?? 0, body })))
        })
        req.on("error", (e) => resume(Effect.fail(e)))
        req.end()
        return Effect.sync(() => void req.destroy())
      }).pipe(Effect.timeout("1500 millis"), Effect.forkScoped)

      yield* awaitSignal(arrived)
      const bad = yield* raw(gateway.port, "GET / HTTP/1.1\r\nHost: x\r\nBadHeader\r\n\r\n")
      assert.strictEqual(bad.status, 400)
      assert.isUndefined(slow.pollUnsafe())
      fire(release, undefined)
      const res = yield* Fiber.join(slow)
      assert.deepStrictEqual(res, { status: 200, body: "slow" })
      assert.deepStrictEqual(upstream.seen.map((s) => s.url), ["/slow"])
    }))
})
