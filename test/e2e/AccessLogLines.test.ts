/**
 * The access log's lines from a gateway running in this process (the `fibergate run` test in
 * test/telemetry/AccessLog.e2e.test.ts sees the same lines through a child's stdout, where
 * mutation runs record no coverage): what each kind of request ends as — proxied, with a body,
 * refused before a route, refused by the route, and left by its client.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { simpleConfig, startGateway, startUpstream } from "../support/harness.ts"
import { send } from "../support/http.ts"
import { getRequest, openConnection } from "../support/connection.ts"
import { eventually } from "../support/liveGateway.ts"
import { raw } from "../support/net.ts"
import { captureAccessLog } from "../support/accessLog.ts"
import { awaitSignal, fire, signal } from "../support/signals.ts"

const setup = (upstreamHandler?: Parameters<typeof startUpstream>[1]) =>
  Effect.gen(function*() {
    const capture = yield* captureAccessLog
    const upstream = yield* startUpstream("app", upstreamHandler)
    const config = simpleConfig([upstream.url], { match: { path: { prefix: "/items" } } })
    const gateway = yield* startGateway({
      ...config,
      log: { level: "none", access_log: true, format: "json" },
      servers: [{ ...config.servers[0], limits: { max_body_bytes: 64 } }]
    })
    const next = (n: number) => eventually(Effect.sync(() => capture.lines.length >= n), `${n} access-log line(s)`).pipe(Effect.map(() => capture.lines[n - 1]))
    return { capture, upstream, gateway, next }
  })

describe("access log lines (in process)", () => {
  it.live("a proxied request: route, method, path, status, sizes, the upstream, one attempt, client, user agent and the caller's trace id", () =>
    Effect.gen(function*() {
      const { gateway, upstream, next } = yield* setup()
      const traceId = "4bf92f3577b34da6a3ce929d0e0e4736"
      const res = yield* send(gateway.url("/items/1?q=2"), {
        headers: { "user-agent": "probe/1", traceparent: `00-${traceId}-00f067aa0ba902b7-01` }
      })
      assert.strictEqual(res.status, 200)
      const line = yield* next(1)
      assert.strictEqual(line.listener, "web")
      assert.strictEqual(line.route, "all")
      assert.strictEqual(line.method, "GET")
      assert.strictEqual(line.path, "/items/1")
      assert.strictEqual(line.status, 200)
      assert.strictEqual(line.bytes_in, 0)
      assert.strictEqual(line.bytes_out, Buffer.byteLength(res.body))
      assert.strictEqual(line.upstream, upstream.url)
      assert.strictEqual(line.attempts, 1)
      assert.strictEqual(line.client_ip, "127.0.0.1")
      assert.strictEqual(line.user_agent, "probe/1")
      assert.strictEqual(line.trace_id, traceId)
      assert.notProperty(line, "error")
    }))

  it.live("request bodies are counted: by Content-Length, and chunk by chunk when chunked", () =>
    Effect.gen(function*() {
      const { gateway, next } = yield* setup()
      assert.strictEqual((yield* raw(gateway.port, "POST /items HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello")).status, 200)
      assert.strictEqual((yield* next(1)).bytes_in, 5)
      const chunked = "POST /items HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n4\r\nabcd\r\n6\r\nefghij\r\n0\r\n\r\n"
      assert.strictEqual((yield* raw(gateway.port, chunked)).status, 200)
      assert.strictEqual((yield* next(2)).bytes_in, 10)
    }))

  it.live("refused before a route (no route, no Host): no route, no upstream, no attempt, the error's tag and the bytes of its body", () =>
    Effect.gen(function*() {
      const { gateway, next } = yield* setup()
      const res = yield* send(gateway.url("/elsewhere"))
      assert.strictEqual(res.status, 404)
      const line = yield* next(1)
      assert.deepInclude(line, { route: "-", status: 404, upstream: "-", attempts: 0, bytes_in: 0, error: "RouteNotFound" })
      assert.strictEqual(line.bytes_out, Buffer.byteLength(res.body))
      assert.strictEqual((yield* raw(gateway.port, "GET /items HTTP/1.1\r\n\r\n", { untilClose: true })).status, 400)
      assert.deepInclude(yield* next(2), { route: "-", path: "-", status: 400, error: "BadRequest", attempts: 0 })
    }))

  it.live("refused by the matched route (body over max_body_bytes): the route's id, 413, no attempt", () =>
    Effect.gen(function*() {
      const { gateway, upstream, next } = yield* setup()
      const body = "x".repeat(65)
      const res = yield* raw(gateway.port, `POST /items HTTP/1.1\r\nHost: t\r\nContent-Length: 65\r\n\r\n${body}`, { untilClose: true })
      assert.strictEqual(res.status, 413)
      assert.deepInclude(yield* next(1), { route: "all", status: 413, error: "PayloadTooLarge", upstream: "-", attempts: 0 })
      assert.strictEqual(upstream.seen.length, 0)
    }))

  it.live("a client that leaves before the response: 499 ClientClosed, the upstream it was waiting on", () =>
    Effect.gen(function*() {
      const arrived = signal()
      const { gateway, upstream, next } = yield* setup({ rawHandler: () => fire(arrived, undefined) })
      const connection = yield* openConnection(gateway.port)
      yield* connection.write(getRequest("/items/slow"))
      yield* awaitSignal(arrived)
      connection.socket.destroy()
      assert.deepInclude(yield* next(1), { route: "all", status: 499, error: "ClientClosed", upstream: upstream.url, attempts: 1 })
    }))

  it.live("a client that leaves while its retry waits out the backoff: 499, the endpoint it last tried, the tries so far", () =>
    Effect.gen(function*() {
      const capture = yield* captureAccessLog
      const firstTry = signal()
      const upstream = yield* startUpstream("app", {
        handler: (_req, res) => {
          fire(firstTry, undefined)
          res.writeHead(503, { "content-length": "0" })
          res.end()
        }
      })
      const config = simpleConfig([upstream.url], { retry: { attempts: 2, on: [503], backoff: { base: "5s", max: "5s", jitter: false } } })
      const gateway = yield* startGateway({ ...config, log: { level: "none", access_log: true, format: "json" } })
      const connection = yield* openConnection(gateway.port)
      yield* connection.write(getRequest("/backoff"))
      yield* awaitSignal(firstTry)
      connection.socket.destroy()
      yield* eventually(Effect.sync(() => capture.lines.length >= 1), "the access-log line")
      assert.deepInclude(capture.lines[0], { route: "all", status: 499, error: "ClientClosed", upstream: upstream.url, attempts: 1 })
      assert.strictEqual(upstream.seen.length, 1)
    }))

  it.live("a client that leaves while its body is buffered for retries: 499 with no upstream (\"-\") and no try", () =>
    Effect.gen(function*() {
      const capture = yield* captureAccessLog
      const upstream = yield* startUpstream("app")
      const config = simpleConfig([upstream.url], { retry: { methods: ["PUT"], buffer_bytes: 4096 } })
      const gateway = yield* startGateway({ ...config, log: { level: "none", access_log: true, format: "json" } })
      const connection = yield* openConnection(gateway.port)
      yield* connection.write("PUT /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n0123456789")
      const inFlight = Effect.map(send(`http://127.0.0.1:${gateway.adminPort}/upstreams`), (r) => JSON.parse(r.body).upstreams.app.in_flight === 1)
      yield* eventually(inFlight, "the exchange has started")
      connection.socket.destroy()
      yield* eventually(Effect.sync(() => capture.lines.length >= 1), "the access-log line")
      assert.deepInclude(capture.lines[0], { route: "all", status: 499, error: "ClientClosed", upstream: "-", attempts: 0 })
      assert.strictEqual(upstream.seen.length, 0)
    }))

  it.live("a response the upstream cuts mid-body: the bytes that were sent, not an error body that never was", () =>
    Effect.gen(function*() {
      const { gateway, next } = yield* setup({
        rawHandler: (req, res) => {
          req.resume()
          res.writeHead(200, { "content-length": "100" })
          res.write("0123456789")
          setTimeout(() => res.socket?.destroy(), 20)
        }
      })
      yield* raw(gateway.port, "GET /items/cut HTTP/1.1\r\nHost: t\r\n\r\n", { untilClose: true }).pipe(Effect.ignore)
      const line = yield* next(1)
      assert.deepInclude(line, { error: "UpstreamReset", bytes_out: 10 })
    }))

  it.live("a malformed traceparent with tracing off: proxied as it came, and no trace id in the log", () =>
    Effect.gen(function*() {
      const { gateway, upstream, next } = yield* setup()
      const res = yield* send(gateway.url("/items/tp"), { headers: { traceparent: "00-not-a-trace-01" } })
      assert.strictEqual(res.status, 200)
      assert.strictEqual(upstream.seen[0].headers.traceparent, "00-not-a-trace-01")
      assert.deepInclude(yield* next(1), { path: "/items/tp", status: 200, trace_id: null })
    }))

  it.live("an upstream that cannot be reached: 502 with the error's tag, the endpoint tried, and the bytes of the error body", () =>
    Effect.gen(function*() {
      const capture = yield* captureAccessLog
      const config = simpleConfig(["http://127.0.0.1:1"])
      const gateway = yield* startGateway({ ...config, log: { level: "none", access_log: true, format: "json" } })
      const res = yield* send(gateway.url("/x"))
      assert.strictEqual(res.status, 502)
      yield* eventually(Effect.sync(() => capture.lines.length >= 1), "the access-log line")
      assert.deepInclude(capture.lines[0], { route: "all", status: 502, error: "UpstreamConnectError", upstream: "http://127.0.0.1:1", attempts: 1 })
      assert.strictEqual(capture.lines[0].bytes_out, Buffer.byteLength(res.body))
    }))

  it.live("duration_ms is the time the request took: at least the upstream's delay, not more than the test's bounds", () =>
    Effect.gen(function*() {
      const { gateway, next } = yield* setup({ handler: (_req, res) => void setTimeout(() => res.end("late"), 60) })
      const started = performance.now()
      assert.strictEqual((yield* send(gateway.url("/items/late"))).status, 200)
      const took = performance.now() - started
      const duration = (yield* next(1)).duration_ms as number
      assert.isAtLeast(duration, 55)
      assert.isAtMost(duration, took + 1)
    }))
})
