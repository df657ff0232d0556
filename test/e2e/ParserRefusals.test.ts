/**
 * What the listener answers itself for bytes node:http's parser refuses before a request
 * exists: the exact status line and JSON body of each refusal, and that a client resetting
 * its connection mid-head is not counted as a refused request.
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect } from "effect"
import { connect } from "node:net"
import { simpleConfig, startGateway, startUpstream } from "../support/harness.ts"
import { raw } from "../support/net.ts"
import { growth, scrapeAdmin } from "../support/prometheus.ts"

const setup = Effect.gen(function*() {
  const upstream = yield* startUpstream("a")
  const config = simpleConfig([upstream.url])
  const gateway = yield* startGateway({
    ...config,
    servers: [{ ...config.servers[0], limits: { max_header_bytes: 1024, header_timeout: "400ms" } }]
  })
  return { gateway, upstream }
})

describe("parser refusals", () => {
  for (const [what, data, statusLine, body] of [
    ["bare LF line endings", "GET / HTTP/1.1\nHost: x\n\n", "HTTP/1.1 400 Bad Request", { error: "BadRequest", message: "Malformed HTTP request" }],
    ["headers over max_header_bytes", `GET / HTTP/1.1\r\nHost: x\r\nX-Big: ${"a".repeat(2048)}\r\n\r\n`, "HTTP/1.1 431 Request Header Fields Too Large", { error: "HeadersTooLarge", message: "Request headers are too large" }],
    ["CONNECT", "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", "HTTP/1.1 405 Method Not Allowed", { error: "MethodNotAllowed", message: "CONNECT is not supported" }],
    ["a head that stops before its end (header_timeout)", "GET / HTTP/1.1\r\nHost: x\r\n", "HTTP/1.1 408 Request Timeout", { error: "RequestTimeout", message: "The request did not arrive in time" }]
  ] as const) {
    it.live(`${what}: ${statusLine} with its JSON error, Connection: close, and nothing forwarded`, () =>
      Effect.gen(function*() {
        const { gateway, upstream } = yield* setup
        const res = yield* raw(gateway.port, data, { untilClose: true })
        assert.strictEqual(res.statusLine, statusLine)
        assert.deepStrictEqual(res.headers.get("connection"), ["close"])
        assert.deepStrictEqual(JSON.parse(res.body), body)
        assert.isTrue(res.closed)
        assert.strictEqual(upstream.seen.length, 0)
      }))
  }

  it.live("a client that resets its connection in the middle of a head is not counted as a refused request", () =>
    Effect.gen(function*() {
      const { gateway } = yield* setup
      const before = yield* scrapeAdmin(gateway.adminPort)
      const closed = yield* Deferred.make<void>()
      const socket = connect(gateway.port, "127.0.0.1")
      socket.on("error", () => undefined)
      socket.on("close", () => Deferred.doneUnsafe(closed, Effect.void))
      socket.write("GET / HTTP/1.1\r\nHo", () => socket.resetAndDestroy())
      yield* Deferred.await(closed).pipe(Effect.timeout("5 seconds"))
      // A refusal after the reset is counted: once it is, the reset has been handled too.
      assert.strictEqual((yield* raw(gateway.port, "GET / HTTP/1.1\nHost: x\n\n", { untilClose: true })).status, 400)
      const after = yield* scrapeAdmin(gateway.adminPort)
      assert.strictEqual(growth(before, after, "fibergate_rejected_requests_total", { reason: "BadRequest" }), 1)
    }))
})
