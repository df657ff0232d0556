import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { connect } from "node:net"
import { simpleConfig, startGateway, startUpstream } from "../support/harness.ts"
import { raw } from "../support/net.ts"
import { converse } from "../support/wire.ts"
import { publishConfig } from "../../src/config/ConfigSource.ts"

const withLimits = (upstream: string, limits: Record<string, unknown>) => {
  const config = simpleConfig([upstream])
  return { ...config, servers: config.servers.map((s) => ({ ...s, limits })) }
}

/** Opens a connection, sends one keep-alive request, and resolves when the server closes it. */
const closedByServer = (port: number) =>
  Effect.callback<{ readonly answered: boolean }>((resume) => {
    const socket = connect({ host: "127.0.0.1", port })
    let data = ""
    socket.on("data", (c: Buffer) => (data += c.toString("latin1")))
    socket.on("connect", () => socket.write("GET /keep HTTP/1.1\r\nHost: t\r\n\r\n"))
    socket.on("close", () => resume(Effect.succeed({ answered: data.startsWith("HTTP/1.1 200") })))
    socket.on("error", () => undefined)
    return Effect.sync(() => socket.destroy())
  }).pipe(Effect.timeout("3 seconds"))

describe("listener limits", () => {
  it.live("max_header_bytes: request headers above the configured size get 431 and never reach the upstream", () =>
    Effect.gen(function*() {
      const upstream = yield* startUpstream("a")
      const gateway = yield* startGateway(withLimits(upstream.url, { max_header_bytes: 1024 }))
      const res = yield* raw(gateway.port, `GET / HTTP/1.1\r\nHost: t\r\nX-Big: ${"a".repeat(2048)}\r\n\r\n`)
      assert.strictEqual(res.status, 431)
      const small = yield* raw(gateway.port, `GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\nX-Small: ${"a".repeat(100)}\r\n\r\n`)
      assert.strictEqual(small.status, 200)
      assert.strictEqual(upstream.seen.length, 1)
    }))

  it.live("idle_timeout: an idle keep-alive client connection is closed by the gateway after the timeout", () =>
    Effect.gen(function*() {
      const upstream = yield* startUpstream("a")
      const gateway = yield* startGateway(withLimits(upstream.url, { idle_timeout: "200ms" }))
      const started = Date.now()
      const result = yield* closedByServer(gateway.port)
      const elapsed = Date.now() - started
      assert.isTrue(result.answered)
      // The configured value is the value: node:http's extra second (keepAliveTimeoutBuffer) is off.
      assert.isAtLeast(elapsed, 150)
      assert.isBelow(elapsed, 450)
    }))

  it.live("header_timeout: a request head that does not finish in time gets 408 RequestTimeout", () =>
    Effect.gen(function*() {
      const upstream = yield* startUpstream("a")
      const gateway = yield* startGateway(withLimits(upstream.url, { header_timeout: "300ms" }))
      const started = Date.now()
      const conversation = yield* converse(gateway.port, (socket) => void socket.write("GET / HTTP/1.1\r\nHost: t\r\nX-Slow: "), { maxMs: 2_000 })
      const elapsed = Date.now() - started
      assert.strictEqual(conversation.responses[0]?.status, 408)
      assert.strictEqual(JSON.parse(conversation.responses[0].body).error, "RequestTimeout")
      assert.isTrue(conversation.closed)
      assert.isAtLeast(elapsed, 280)
      assert.isBelow(elapsed, 800)
      assert.deepStrictEqual(upstream.seen, [])
    }))

  it.live("request_timeout: a body that does not finish in time gets 408 RequestTimeout and the upstream request is cut", () =>
    Effect.gen(function*() {
      let upstreamAborted = false
      const upstream = yield* startUpstream("a", {
        rawHandler: (req) => {
          req.resume()
          req.on("aborted", () => (upstreamAborted = true))
          req.on("close", () => (upstreamAborted ||= !req.complete))
        }
      })
      const gateway = yield* startGateway(withLimits(upstream.url, { request_timeout: "400ms" }))
      const started = Date.now()
      const conversation = yield* converse(
        gateway.port,
        (socket) => void socket.write("POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nab"),
        { responses: 1, maxMs: 2_000 }
      )
      const elapsed = Date.now() - started
      assert.strictEqual(conversation.responses[0]?.status, 408)
      assert.strictEqual(JSON.parse(conversation.responses[0].body).error, "RequestTimeout")
      assert.deepStrictEqual(conversation.responses[0].headers.get("connection"), ["close"])
      assert.isAtLeast(elapsed, 380)
      assert.isBelow(elapsed, 1_000)
      yield* Effect.sleep("50 millis")
      assert.isTrue(upstreamAborted)
    }))

  it.live("a bad chunk inside a body being forwarded gets 400, not a raw status line on top of the exchange", () =>
    Effect.gen(function*() {
      const upstream = yield* startUpstream("a", { rawHandler: (req) => void req.resume() })
      const gateway = yield* startGateway(withLimits(upstream.url, {}))
      const conversation = yield* converse(gateway.port, (socket) => {
        socket.write("POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        setTimeout(() => socket.write("zz\r\nbad\r\n"), 50)
      }, { responses: 1 })
      assert.strictEqual(conversation.responses.length, 1)
      assert.strictEqual(conversation.responses[0].status, 400)
      assert.strictEqual(JSON.parse(conversation.responses[0].body).error, "BadRequest")
      assert.strictEqual(conversation.rest, "")
    }))

  it.live("a bad chunk after the upstream's response has started cuts that response; no status line lands inside it", () =>
    Effect.gen(function*() {
      let upstreamAborted = false
      const upstream = yield* startUpstream("a", {
        rawHandler: (req, res) => {
          // Answers at once while the upload is still coming.
          res.writeHead(200, { "content-length": "40" })
          res.write("0123456789")
          req.on("close", () => (upstreamAborted ||= !req.complete))
          req.resume()
        }
      })
      const gateway = yield* startGateway(withLimits(upstream.url, {}))
      const conversation = yield* converse(gateway.port, (socket, received) => {
        socket.write("POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        const poll = setInterval(() => {
          if (!received().includes("0123456789")) return
          clearInterval(poll)
          socket.write("zz\r\nbad\r\n")
        }, 5)
      }, { maxMs: 2_000 })
      assert.match(conversation.text, /^HTTP\/1\.1 200 /)
      assert.notInclude(conversation.text, "HTTP/1.1 400", "no second status line")
      assert.deepStrictEqual(conversation.responses, [], "the 200 is cut short, never complete-looking")
      assert.isTrue(conversation.closed)
      yield* Effect.sleep("50 millis")
      assert.isTrue(upstreamAborted)
    }))

  it.live("header_timeout changes on reload and applies to the next request", () =>
    Effect.gen(function*() {
      const upstream = yield* startUpstream("a")
      const gateway = yield* startGateway(withLimits(upstream.url, { header_timeout: "30s" }))
      const port = gateway.port
      yield* publishConfig(gateway.services.config, withLimits(upstream.url, { header_timeout: "300ms" }), "test")
      const started = Date.now()
      const conversation = yield* converse(port, (socket) => void socket.write("GET / HTTP/1.1\r\n"), { maxMs: 2_000 })
      assert.strictEqual(conversation.responses[0]?.status, 408)
      assert.isBelow(Date.now() - started, 800)
    }))
})
