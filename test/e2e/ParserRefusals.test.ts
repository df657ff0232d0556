/**
 * What the listener answers itself for bytes node:http's parser refuses before a request
 * exists: the exact status line and JSON body of each refusal, that a connection is refused
 * (and counted) once however much it sends after, and that a client resetting its connection
 * mid-head, or sending a bad chunk into a close that lingers, is not counted as a refused request.
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect } from "effect"
import { connect } from "node:net"
import { simpleConfig, startGateway, startUpstream } from "../support/harness.ts"
import { openConnection } from "../support/connection.ts"
import { raw } from "../support/net.ts"
import { growth, scrapeAdmin } from "../support/prometheus.ts"

const setup = Effect.gen(function*() {
  const upstream = yield* startUpstream("a")
  const config = simpleConfig([upstream.url])
  const gateway = yield* startGateway({
    ...config,
    servers: [{ ...config.servers[0], limits: { max_header_bytes: 1024, header_timeout: "400ms", max_body_bytes: 16 } }]
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

  it.live("a client that ends its side in the middle of a head gets 400 (the parser's unexpected end), then the close", () =>
    Effect.gen(function*() {
      const { gateway, upstream } = yield* setup
      const connection = yield* openConnection(gateway.port, { allowHalfOpen: true })
      yield* connection.write("GET / HTTP/1.1\r\nHost: x\r\n")
      connection.socket.end()
      const [res] = yield* connection.responses(1)
      assert.strictEqual(res.status, 400)
      assert.deepStrictEqual(JSON.parse(res.body), { error: "BadRequest", message: "Malformed HTTP request" })
      yield* connection.closed()
      assert.strictEqual(upstream.seen.length, 0)
    }))

  it.live("a refused connection that goes on sending gets one answer and is counted once", () =>
    Effect.gen(function*() {
      const { gateway } = yield* setup
      assert.strictEqual((yield* raw(gateway.port, "GET / HTTP/1.1\nHost: x\n\n", { untilClose: true })).status, 400)
      const before = yield* scrapeAdmin(gateway.adminPort)
      const connection = yield* openConnection(gateway.port, { allowHalfOpen: true })
      yield* connection.write("GET / HTTP/1.1\nHost: x\n\n")
      assert.strictEqual((yield* connection.responses(1))[0].status, 400)
      // The gateway has ended its side; what the client still sends reaches the broken parser.
      yield* connection.write("GET / HTTP/1.1\nHost: x\n\n")
      yield* connection.write("more bytes\r\n\r\n")
      connection.socket.end()
      yield* connection.closed()
      assert.strictEqual(connection.text().split("HTTP/1.1 ").length - 1, 1, connection.text())
      const after = yield* scrapeAdmin(gateway.adminPort)
      assert.strictEqual(growth(before, after, "fibergate_rejected_requests_total", { reason: "BadRequest" }), 1)
    }))

  it.live("a bad chunk sent into the lingering close after a 413 is dropped: no second answer, not counted", () =>
    Effect.gen(function*() {
      const { gateway, upstream } = yield* setup
      assert.strictEqual((yield* raw(gateway.port, "GET / HTTP/1.1\nHost: x\n\n", { untilClose: true })).status, 400)
      const before = yield* scrapeAdmin(gateway.adminPort)
      const connection = yield* openConnection(gateway.port, { allowHalfOpen: true })
      yield* connection.write(`POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n20\r\n${"a".repeat(32)}\r\n`)
      const [res] = yield* connection.responses(1)
      assert.strictEqual(res.status, 413)
      assert.deepStrictEqual(res.headers.get("connection"), ["close"])
      // The body goes on with bytes that are no chunk at all.
      yield* connection.write("zz\r\nnot a chunk\r\n")
      connection.socket.end()
      yield* connection.closed()
      assert.strictEqual(connection.text().split("HTTP/1.1 ").length - 1, 1, connection.text())
      const after = yield* scrapeAdmin(gateway.adminPort)
      assert.strictEqual(growth(before, after, "fibergate_rejected_requests_total", { reason: "BadRequest" }), 0)
      assert.strictEqual(upstream.seen.length, 0)
    }))
})
