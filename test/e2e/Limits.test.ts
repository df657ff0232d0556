import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { connect } from "node:net"
import { simpleConfig, startGateway, startUpstream } from "../support/harness.ts"
import { raw } from "../support/net.ts"
import { awaitSignal, fire, signal } from "../support/signals.ts"
import { converse } from "../support/wire.ts"
import { publishConfig } from "../../src/config/ConfigSource.ts"

/**
 * A request head whose header bytes total exactly `bytes`, counted as node:http counts them
 * against `max_header_bytes`: the request target and every header name and value (the method,
 * the version, the `: ` separators and the line ends are not counted).
 */
const headOfSize = (bytes: number) => {
  const target = "/h"
  const counted = target.length + "Host".length + "t".length + "X-Pad".length
  return `GET ${target} HTTP/1.1\r\nHost: t\r\nX-Pad: ${"p".repeat(bytes - counted)}\r\n\r\n`
}

/** A chunked POST whose body, in chunks of at most 64 bytes, totals `bytes`. */
const chunkedPost = (bytes: number) => {
  let body = ""
  for (let left = bytes; left > 0; left -= 64) {
    const n = Math.min(64, left)
    body += `${n.toString(16)}\r\n${"c".repeat(n)}\r\n`
  }
  return `POST /chunked HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n${body}0\r\n\r\n`
}

const lengthPost = (bytes: number) => `POST /length HTTP/1.1\r\nHost: t\r\nContent-Length: ${bytes}\r\n\r\n${"l".repeat(bytes)}`

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

  it.live("header_timeout still holds with request_timeout 0 (off): a stalled head gets 408", () =>
    Effect.gen(function*() {
      const upstream = yield* startUpstream("a")
      const gateway = yield* startGateway(withLimits(upstream.url, { header_timeout: "300ms", request_timeout: "0s" }))
      const conversation = yield* converse(gateway.port, (socket) => void socket.write("GET / HTTP/1.1\r\nHost: t\r\nX-Slow: "), { maxMs: 5_000 })
      assert.strictEqual(conversation.responses[0]?.status, 408)
      assert.isTrue(conversation.closed)
      assert.deepStrictEqual(upstream.seen, [])
    }))

  it.live("request_timeout: a body that does not finish in time gets 408 RequestTimeout and the upstream request is cut", () =>
    Effect.gen(function*() {
      const upstreamAborted = signal<boolean>()
      const upstream = yield* startUpstream("a", {
        rawHandler: (req) => {
          req.resume()
          req.on("close", () => fire(upstreamAborted, !req.complete))
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
      assert.isTrue(yield* awaitSignal(upstreamAborted), "the upstream request ends before its body is complete")
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
      const upstreamAborted = signal<boolean>()
      const upstream = yield* startUpstream("a", {
        rawHandler: (req, res) => {
          // Answers at once while the upload is still coming.
          res.writeHead(200, { "content-length": "40" })
          res.write("0123456789")
          req.on("close", () => fire(upstreamAborted, !req.complete))
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
      assert.isTrue(yield* awaitSignal(upstreamAborted), "the upstream request ends before its body is complete")
    }))

  it.live("max_header_bytes: header bytes exactly at the limit pass; one byte more gets 431 HeadersTooLarge", () =>
    Effect.gen(function*() {
      const upstream = yield* startUpstream("a")
      const gateway = yield* startGateway(withLimits(upstream.url, { max_header_bytes: 1024 }))
      const atLimit = yield* raw(gateway.port, headOfSize(1024))
      assert.strictEqual(atLimit.status, 200)
      assert.strictEqual(upstream.seen.length, 1)
      assert.strictEqual(upstream.seen[0].headers["x-pad"]?.length, 1024 - 2 - 4 - 1 - 5)
      const over = yield* raw(gateway.port, headOfSize(1025))
      assert.strictEqual(over.status, 431)
      assert.strictEqual(JSON.parse(over.body).error, "HeadersTooLarge")
      assert.strictEqual(upstream.seen.length, 1, "the oversized head never reaches the upstream")
    }))

  it.live("max_body_bytes with Content-Length: exactly the limit is forwarded; one byte more gets 413", () =>
    Effect.gen(function*() {
      const upstream = yield* startUpstream("a")
      const gateway = yield* startGateway(withLimits(upstream.url, { max_body_bytes: 1000 }))
      const atLimit = yield* raw(gateway.port, lengthPost(1000))
      assert.strictEqual(atLimit.status, 200)
      assert.strictEqual(JSON.parse(atLimit.body).bodyBytes, 1000)
      const over = yield* raw(gateway.port, lengthPost(1001), { untilClose: true })
      assert.strictEqual(over.status, 413)
      assert.strictEqual(JSON.parse(over.body).error, "PayloadTooLarge")
      assert.strictEqual(upstream.seen.length, 1)
    }))

  it.live("max_body_bytes with a chunked body: exactly the limit is forwarded; one byte more gets 413", () =>
    Effect.gen(function*() {
      const upstream = yield* startUpstream("a")
      const gateway = yield* startGateway(withLimits(upstream.url, { max_body_bytes: 1000 }))
      const atLimit = yield* raw(gateway.port, chunkedPost(1000))
      assert.strictEqual(atLimit.status, 200)
      assert.strictEqual(JSON.parse(atLimit.body).bodyBytes, 1000)
      const over = yield* converse(gateway.port, (socket) => void socket.write(chunkedPost(1001)), { responses: 1, maxMs: 2_000 })
      assert.strictEqual(over.responses[0]?.status, 413)
      assert.strictEqual(JSON.parse(over.responses[0].body).error, "PayloadTooLarge")
      assert.strictEqual(upstream.seen.length, 1, "the upstream got only the body within the limit")
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
