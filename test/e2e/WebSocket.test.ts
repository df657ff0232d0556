/**
 * WebSocket through a real gateway with the `ws` package on both ends: messages both ways
 * (text, binary, 4 MiB in 64 KiB frames with their order kept), the route's middlewares and
 * rewrite applied to the handshake, an upstream's refusal passed on, wss to an https upstream
 * and on an https listener, the idle timeout, a reload that keeps the route, and a drain that
 * closes both sides with 1001. Metrics and the access log count the tunnels.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Exit, Fiber, Layer, References, Scope, type Scope as ScopeType } from "effect"
import { readFileSync } from "node:fs"
import { createServer, type IncomingMessage, type Server } from "node:http"
import { createServer as createHttpsServer } from "node:https"
import { connect as connectNet, type AddressInfo } from "node:net"
import { WebSocket, WebSocketServer } from "ws"
import * as Gateway from "../../src/gateway/Gateway.ts"
import { Listeners } from "../../src/listener/Listeners.ts"
import { captureAccessLog } from "../support/accessLog.ts"
import { makeCa, makeCert } from "../support/certs.ts"
import { request, simpleConfig, startGateway } from "../support/harness.ts"
import { httpsConfig, scopedCertDir } from "../support/https.ts"
import { eventually } from "../support/liveGateway.ts"
import { growth, scrapeAdmin, series } from "../support/prometheus.ts"
import { startWsUpstream } from "../support/webSocket.ts"
import { unansweredPort } from "../support/blackhole.ts"

/** A connected client; fails the test when the handshake does not succeed. */
const connect = (url: string, options: ConstructorParameters<typeof WebSocket>[2] = {}) =>
  Effect.acquireRelease(
    Effect.promise(() => new Promise<WebSocket>((resolve, reject) => {
      const ws = new WebSocket(url, options)
      ws.once("open", () => resolve(ws))
      ws.once("error", reject)
    })),
    (ws) => Effect.sync(() => ws.terminate())
  )

/** The handshake's failure message (e.g. "Unexpected server response: 403"). */
const refusal = (url: string, options: ConstructorParameters<typeof WebSocket>[2] = {}) =>
  Effect.promise(() => new Promise<string>((resolve) => {
    const ws = new WebSocket(url, options)
    ws.once("open", () => {
      ws.terminate()
      resolve("opened")
    })
    ws.once("error", (e) => resolve(e.message))
  }))

/** Sends `data` and waits for its echo. */
const roundTrip = (ws: WebSocket, data: string | Buffer) =>
  Effect.promise(() => new Promise<{ data: Buffer; binary: boolean }>((resolve, reject) => {
    ws.once("message", (reply, binary) => resolve({ data: reply as Buffer, binary }))
    ws.once("error", reject)
    ws.send(data)
  }))

const closed = (ws: WebSocket) =>
  Effect.promise(() => new Promise<number>((resolve) => {
    if (ws.readyState === WebSocket.CLOSED) resolve(-1)
    ws.once("close", (code) => resolve(code))
  }))

const wsUrl = (gatewayUrl: string) => gatewayUrl.replace(/^http/, "ws")

describe("WebSocket", () => {
  it.live("text and binary messages go both ways; 4 MiB in 64 KiB frames arrives whole and in order; the handshake is rewritten and forwarded", () =>
    Effect.gen(function*() {
      const upstream = yield* startWsUpstream()
      const gateway = yield* startGateway(simpleConfig([upstream.url], { match: { path: { prefix: "/ws" } }, rewrite: { strip_prefix: "/ws" } }))
      const ws = yield* connect(wsUrl(gateway.url("/ws/chat?room=1")))
      const text = yield* roundTrip(ws, "hello")
      assert.deepStrictEqual([text.data.toString(), text.binary], ["hello", false])
      const bin = yield* roundTrip(ws, Buffer.from([0, 1, 2, 255]))
      assert.deepStrictEqual([[...bin.data], bin.binary], [[0, 1, 2, 255], true])
      const frames = 64
      const received: Array<Buffer> = []
      const all = Effect.promise(() => new Promise<void>((resolve) => {
        ws.on("message", (d) => {
          received.push(d as Buffer)
          if (received.length === frames) resolve()
        })
      }))
      for (let i = 0; i < frames; i++) ws.send(Buffer.alloc(64 * 1024, i))
      yield* all
      assert.isTrue(received.every((b, i) => b.length === 64 * 1024 && b[0] === i && b[b.length - 1] === i))
      const seen = upstream.handshakes[0]
      assert.strictEqual(seen.url, "/chat?room=1")
      assert.strictEqual(seen.headers["x-forwarded-for"], "127.0.0.1")
      assert.strictEqual(seen.headers["x-forwarded-proto"], "http")
    }))

  it.live("the tunnels are counted open and in total, and logged with status 101 once closed", () =>
    Effect.gen(function*() {
      const capture = yield* captureAccessLog
      const upstream = yield* startWsUpstream()
      const config = simpleConfig([upstream.url])
      const gateway = yield* startGateway({ ...config, log: { level: "none", access_log: true, format: "json" } })
      const before = yield* scrapeAdmin(gateway.adminPort)
      const ws = yield* connect(wsUrl(gateway.url("/live")))
      yield* roundTrip(ws, "x".repeat(100))
      const open = yield* scrapeAdmin(gateway.adminPort)
      assert.strictEqual(series(open, "fibergate_websocket_connections", { listener: "web", route: "all" }), 1)
      assert.strictEqual(growth(before, open, "fibergate_websocket_connections_total", { listener: "web", route: "all" }), 1)
      ws.close(1000)
      yield* eventually(
        scrapeAdmin(gateway.adminPort).pipe(Effect.map((s) => series(s, "fibergate_websocket_connections", { listener: "web", route: "all" }) === 0)),
        "the tunnel counted closed"
      )
      yield* eventually(Effect.sync(() => capture.lines.length >= 1), "the access-log line")
      const line = capture.lines[0]
      assert.deepStrictEqual([line.status, line.route, line.path, line.upstream], [101, "all", "/live", upstream.url])
      // The client's frames are masked: 6 bytes of header for 100 bytes, plus its Close.
      assert.isAtLeast(Number(line.bytes_in), 106)
      assert.isAtLeast(Number(line.bytes_out), 102)
    }))

  it.live("a route's middleware refuses the handshake itself; an upstream's refusal reaches the client as it came", () =>
    Effect.gen(function*() {
      const upstream = yield* startWsUpstream()
      const keyHash = "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b" // sha256("secret")
      const guarded = yield* startGateway(simpleConfig([upstream.url], { middlewares: [{ api_key: { keys: [{ name: "ci", sha256: keyHash }] } }] }))
      assert.strictEqual(yield* refusal(wsUrl(guarded.url("/"))), "Unexpected server response: 401")
      assert.strictEqual(upstream.handshakes.length, 0)
      const ws = yield* connect(wsUrl(guarded.url("/")), { headers: { "x-api-key": "secret" } })
      assert.strictEqual((yield* roundTrip(ws, "in")).data.toString(), "in")
      assert.isUndefined(upstream.handshakes[0].headers["x-api-key"])
      const refusing = yield* startWsUpstream({ refuse: true })
      const gateway = yield* startGateway(simpleConfig([refusing.url]))
      assert.strictEqual(yield* refusal(wsUrl(gateway.url("/"))), "Unexpected server response: 403")
      const down = yield* startGateway(simpleConfig(["http://127.0.0.1:1"]))
      assert.strictEqual(yield* refusal(wsUrl(down.url("/"))), "Unexpected server response: 502")
    }))

  it.live("an upstream's refusal reaches an HTTP/1.1 client with its status line and body, then the connection closes; it is logged with its status and bytes", () =>
    Effect.gen(function*() {
      const capture = yield* captureAccessLog
      const refusing = yield* startWsUpstream({ refuse: true })
      const gateway = yield* startGateway({ ...simpleConfig([refusing.url]), log: { level: "none", access_log: true, format: "json" } })
      const socket = connectNet(gateway.port, "127.0.0.1")
      yield* Effect.addFinalizer(() => Effect.sync(() => socket.destroy()))
      let received = ""
      let ended = false
      socket.on("data", (d: Buffer) => (received += d.toString("latin1")))
      socket.on("close", () => (ended = true))
      socket.write("GET /no HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
      yield* eventually(Effect.sync(() => ended), "the connection closed after the refusal")
      assert.match(received, /^HTTP\/1\.1 403 Forbidden\r\n/)
      assert.match(received, /\r\n\r\nForbidden$/)
      yield* eventually(Effect.sync(() => capture.lines.length >= 1), "the access-log line")
      const line = capture.lines[0]
      assert.deepStrictEqual([line.status, line.path, line.bytes_out, line.upstream], [403, "/no", 9, refusing.url])
    }))

  it.live("wss: to an https upstream verified against its CA, and on an https listener", () =>
    Effect.gen(function*() {
      const { dir } = yield* scopedCertDir
      const ca = makeCa(dir)
      const api = makeCert(dir, ca, { cn: "api.internal", names: ["api.internal"] })
      const site = makeCert(dir, ca, { cn: "site.test", names: ["site.test"] })
      const upstream = yield* startWsUpstream({ tls: api })
      const gateway = yield* startGateway(httpsConfig(upstream.url, { certificates: [{ cert: site.cert, key: site.key }] }, {}, {
        tls: { ca: ca.cert, server_name: "api.internal" }
      }))
      const ws = yield* connect(`wss://127.0.0.1:${gateway.port}/secure`, { ca: ca.pem(), servername: "site.test", checkServerIdentity: () => undefined } as ConstructorParameters<typeof WebSocket>[2])
      assert.strictEqual((yield* roundTrip(ws, "over tls")).data.toString(), "over tls")
      assert.strictEqual(upstream.handshakes[0].headers["x-forwarded-proto"], "https")
    }))

  it.live("websocket.idle_timeout closes a tunnel that carried nothing for that long; traffic keeps it open", () =>
    Effect.gen(function*() {
      const upstream = yield* startWsUpstream()
      const gateway = yield* startGateway(simpleConfig([upstream.url], { websocket: { idle_timeout: "300ms" } }))
      const busy = yield* connect(wsUrl(gateway.url("/")))
      const quiet = yield* connect(wsUrl(gateway.url("/")))
      const started = performance.now()
      const quietClosed = closed(quiet)
      for (let i = 0; i < 8; i++) {
        yield* roundTrip(busy, `ping ${i}`)
        yield* Effect.sleep("100 millis")
      }
      yield* quietClosed
      assert.isAtLeast(performance.now() - started, 280)
      assert.strictEqual(busy.readyState, WebSocket.OPEN)
      // 0 turns the timeout off: a quiet tunnel stays.
      const never = yield* startGateway(simpleConfig([upstream.url], { websocket: { idle_timeout: "0s" } }))
      const kept = yield* connect(wsUrl(never.url("/")))
      yield* Effect.sleep("100 millis")
      assert.strictEqual((yield* roundTrip(kept, "still here")).data.toString(), "still here")
    }))

  it.live("a frame sent right behind the handshake, in the same packet, reaches the upstream once the tunnel is joined", () =>
    Effect.gen(function*() {
      const upstream = yield* startWsUpstream()
      const gateway = yield* startGateway(simpleConfig([upstream.url]))
      const socket = connectNet(gateway.port, "127.0.0.1")
      yield* Effect.addFinalizer(() => Effect.sync(() => socket.destroy()))
      const mask = [9, 8, 7, 6]
      const text = Buffer.from("early")
      const frame = Buffer.from([0x81, 0x80 | text.length, ...mask, ...text.map((b, i) => b ^ mask[i % 4])])
      socket.write(Buffer.concat([
        Buffer.from("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", "latin1"),
        frame
      ]))
      let received = Buffer.alloc(0)
      socket.on("data", (d: Buffer) => (received = Buffer.concat([received, d])))
      // The echo: an unmasked text frame "early" after the 101's head.
      yield* eventually(Effect.sync(() => received.includes(Buffer.concat([Buffer.from([0x81, text.length]), text]))), "the echo of the early frame")
      const head = received.toString("latin1").split("\r\n\r\n")[0]
      assert.match(head, /^HTTP\/1\.1 101 Switching Protocols\r\n/)
      // The upstream's fields as they came, and nothing else.
      assert.match(head, /\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK\+xOo=(\r\n|$)/i)
      assert.notInclude(head, "undefined")
      assert.deepStrictEqual(upstream.messages.map((m) => m.toString()), ["early"])
    }))

  it.live("pool.connect_timeout: a handshake to an endpoint that never answers the SYN is a 504; a joined tunnel outlives it", () =>
    Effect.gen(function*() {
      const port = yield* unansweredPort
      const silent = yield* startGateway(simpleConfig([`http://127.0.0.1:${port}`], {}, { pool: { connect_timeout: "200ms" } }))
      const started = performance.now()
      assert.strictEqual(yield* refusal(wsUrl(silent.url("/"))), "Unexpected server response: 504")
      assert.isAtLeast(performance.now() - started, 180)
      const upstream = yield* startWsUpstream()
      const gateway = yield* startGateway(simpleConfig([upstream.url], {}, { pool: { connect_timeout: "200ms" } }))
      const ws = yield* connect(wsUrl(gateway.url("/")))
      yield* Effect.sleep("400 millis")
      assert.strictEqual((yield* roundTrip(ws, "later")).data.toString(), "later")
    }))

  it.live("a tunnel survives a reload that keeps its route and upstream", () =>
    Effect.gen(function*() {
      const upstream = yield* startWsUpstream()
      const config = simpleConfig([upstream.url])
      const gateway = yield* startGateway(config)
      const ws = yield* connect(wsUrl(gateway.url("/")))
      assert.strictEqual((yield* roundTrip(ws, "before")).data.toString(), "before")
      const changed = { ...config, servers: [{ ...config.servers[0], routes: [{ id: "other", match: { path: { exact: "/x" } }, upstream: "app" }, ...config.servers[0].routes] }] }
      const put = yield* request(`http://127.0.0.1:${gateway.adminPort}/config`, { method: "PUT", headers: { "content-type": "application/json" }, body: JSON.stringify(changed) })
      assert.strictEqual(put.status, 200)
      assert.strictEqual((yield* roundTrip(ws, "after")).data.toString(), "after")
    }))

  it.live("a drain closes every tunnel with 1001 on both sides", () =>
    Effect.gen(function*() {
      const upstream = yield* startWsUpstream()
      const scope = yield* Scope.make()
      const context = yield* Layer.buildWithScope(Gateway.layer({ ...simpleConfig([upstream.url]), shutdown: { drain_timeout: "5s" } }), scope).pipe(
        Effect.provideService(References.MinimumLogLevel, "Warn")
      )
      const port = Context.get(context, Listeners).addresses.get("web")!.port
      const ws = yield* connect(`ws://127.0.0.1:${port}/`)
      assert.strictEqual((yield* roundTrip(ws, "hi")).data.toString(), "hi")
      const code = closed(ws)
      const closing = yield* Effect.forkChild(Scope.close(scope, Exit.void))
      assert.strictEqual(yield* code, 1001)
      yield* eventually(Effect.sync(() => upstream.closes.includes(1001)), "the upstream told 1001")
      yield* Fiber.join(closing)
    }))

  it.live("a drain that comes in the middle of a client's frame sends the Close after that frame, which arrives whole, and nothing after it", () =>
    Effect.gen(function*() {
      const upstream = yield* startWsUpstream()
      const scope = yield* Scope.make()
      const context = yield* Layer.buildWithScope(Gateway.layer(simpleConfig([upstream.url])), scope).pipe(
        Effect.provideService(References.MinimumLogLevel, "Warn")
      )
      const port = Context.get(context, Listeners).addresses.get("web")!.port
      const socket = connectNet(port, "127.0.0.1")
      yield* Effect.addFinalizer(() => Effect.sync(() => socket.destroy()))
      socket.write("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
      let received = Buffer.alloc(0)
      socket.on("data", (d: Buffer) => (received = Buffer.concat([received, d])))
      yield* eventually(Effect.sync(() => received.toString("latin1").includes("\r\n\r\n")), "the 101")
      assert.match(received.toString("latin1"), /^HTTP\/1\.1 101 /)
      const headEnd = received.indexOf("\r\n\r\n") + 4
      // A masked binary frame of 1000 bytes, sent in two halves around the drain's start.
      const payload = Buffer.alloc(1000, 7)
      const mask = Buffer.from([1, 2, 3, 4])
      const masked = Buffer.from(payload.map((b, i) => b ^ mask[i % 4]))
      const header = Buffer.from([0x82, 0x80 | 126, 1000 >> 8, 1000 & 0xff, ...mask])
      socket.write(Buffer.concat([header, masked.subarray(0, 500)]))
      yield* Effect.sleep("50 millis")
      const closing = yield* Effect.forkChild(Scope.close(scope, Exit.void))
      yield* Effect.sleep("100 millis")
      // More of the frame, still not its end; then its end with a whole frame behind it in the
      // same chunk: only the bytes up to the boundary go, the frame after the Close is dropped.
      socket.write(masked.subarray(500, 700))
      yield* Effect.sleep("50 millis")
      const after = Buffer.from([0x81, 0x80 | 2, ...mask, 0x61 ^ mask[0], 0x62 ^ mask[1]])
      socket.write(Buffer.concat([masked.subarray(700), after]))
      yield* eventually(Effect.sync(() => upstream.closes.includes(1001)), "the upstream told 1001")
      assert.deepStrictEqual(upstream.closes, [1001])
      assert.strictEqual(upstream.messages.length, 1)
      assert.isTrue(upstream.messages[0].equals(payload))
      // The client got the echo or not, but a Close with 1001 after whole frames.
      yield* eventually(Effect.sync(() => received.subarray(headEnd).includes(Buffer.from([0x88, 0x02, 0x03, 0xe9]))), "the client told 1001")
      yield* Fiber.join(closing)
    }))
})
