/**
 * WebSocket over HTTP/2 (RFC 8441) through a real gateway: a client on an h2c or https listener
 * opens its WebSocket with an extended CONNECT stream, the upstream (the `ws` package's server)
 * gets an HTTP/1.1 upgrade with the gateway's key, and frames go both ways on the stream. The
 * client writes its frames by hand (support/webSocket.ts): no Node WebSocket client speaks h2.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Exit, Fiber, Layer, References, Scope } from "effect"
import { constants } from "node:http2"
import { createServer, type AddressInfo, type Socket } from "node:net"
import * as Gateway from "../../src/gateway/Gateway.ts"
import { Listeners } from "../../src/listener/Listeners.ts"
import { acceptFor } from "../../src/proxy/WebSocketHandshake.ts"
import { captureAccessLog } from "../support/accessLog.ts"
import { makeCa, makeCert } from "../support/certs.ts"
import { h2Get, h2Request, h2Session } from "../support/h2.ts"
import { startGateway } from "../support/harness.ts"
import { httpsConfig, scopedCertDir } from "../support/https.ts"
import { eventually, within } from "../support/liveGateway.ts"
import { growth, scrapeAdmin, series } from "../support/prometheus.ts"
import { closeCode, closePayload, FrameReader, OPCODE, openH2WebSocket, startWsUpstream, type H2WebSocket, type WsFrame } from "../support/webSocket.ts"

const h2cConfig = (upstream: string, route: Record<string, unknown> = {}) => ({
  admin: { listen: "127.0.0.1:0" },
  log: { level: "none", access_log: false },
  servers: [{ name: "web", listen: "127.0.0.1:0", protocol: "h2c", routes: [{ id: "ws", upstream: "app", ...route }] }],
  upstreams: { app: { endpoints: [{ url: upstream }] } }
})

/** Sends a text or binary message and waits for its echo, the next frame received. */
const echo = (ws: H2WebSocket, opcode: number, payload: Buffer | string) =>
  Effect.gen(function*() {
    const n = ws.frames.length + 1
    ws.send(opcode, payload)
    return yield* within(ws.frame(n), `the echo of frame ${n}`)
  })

describe("WebSocket over HTTP/2 (RFC 8441)", () => {
  it.live("h2c: an extended CONNECT opens a WebSocket: 200 with the chosen subprotocol and no upgrade fields; frames echo; the upstream gets an HTTP/1.1 upgrade with the gateway's key; WebSockets and requests share the connection", () =>
    Effect.gen(function*() {
      const upstream = yield* startWsUpstream({ protocols: ["chat"] })
      // Routed as the GET of an HTTP/1.1 handshake: a route for GET alone takes it.
      const gateway = yield* startGateway(h2cConfig(upstream.url, { match: { path: { prefix: "/ws" }, methods: ["GET"] }, rewrite: { strip_prefix: "/ws" } }))
      const session = yield* h2Session(gateway.port)
      assert.isTrue(session.remoteSettings.enableConnectProtocol)
      const a = yield* openH2WebSocket(session, "/ws/chat?room=1", { ":authority": "chat.test", "sec-websocket-protocol": "superchat, chat" })
      assert.strictEqual(a.status, 200)
      assert.strictEqual(a.headers["sec-websocket-protocol"], "chat")
      for (const name of ["sec-websocket-accept", "upgrade", "connection"]) assert.isUndefined(a.headers[name], name)

      const text = yield* echo(a, OPCODE.TEXT, "hello")
      assert.deepStrictEqual([text.opcode, text.fin, text.payload.toString()], [OPCODE.TEXT, true, "hello"])
      const b = yield* openH2WebSocket(session, "/ws/other", { ":authority": "chat.test" })
      assert.strictEqual(b.status, 200)
      assert.isUndefined(b.headers["sec-websocket-protocol"])
      const big = Buffer.alloc(1 << 20)
      for (let i = 0; i < big.length; i++) big[i] = (i * 7) & 0xff
      // Two WebSockets at once on one connection, one carrying a 1 MiB frame, and a plain request.
      a.send(OPCODE.BINARY, big)
      const small = yield* echo(b, OPCODE.BINARY, Buffer.from([0, 1, 2, 255]))
      assert.deepStrictEqual([small.opcode, [...small.payload]], [OPCODE.BINARY, [0, 1, 2, 255]])
      const plain = yield* h2Get(session, "/ws/plain", { ":authority": "chat.test" })
      assert.deepStrictEqual([plain.status, plain.body.toString()], [200, "plain"])
      const bigEcho = yield* within(a.frame(2), "the 1 MiB echo")
      assert.strictEqual(bigEcho.opcode, OPCODE.BINARY)
      assert.isTrue(bigEcho.payload.equals(big))

      assert.strictEqual(upstream.handshakes.length, 2)
      const seen = upstream.handshakes[0]
      assert.strictEqual(seen.httpVersion, "1.1")
      assert.strictEqual(seen.url, "/chat?room=1")
      assert.strictEqual(seen.headers.host, "chat.test")
      assert.strictEqual(seen.headers.upgrade, "websocket")
      assert.strictEqual(seen.headers["sec-websocket-version"], "13")
      assert.strictEqual(seen.headers["sec-websocket-protocol"], "superchat, chat")
      assert.strictEqual(seen.headers["x-forwarded-proto"], "http")
      // 16 random bytes, a fresh key for each handshake.
      assert.strictEqual(Buffer.from(String(seen.headers["sec-websocket-key"]), "base64").length, 16)
      assert.notStrictEqual(seen.headers["sec-websocket-key"], upstream.handshakes[1].headers["sec-websocket-key"])
      // The two tunnels' messages reach the upstream in either order.
      assert.deepStrictEqual(upstream.messages.map((m) => m.length).sort((x, y) => x - y), [4, 5, 1 << 20])
    }))

  it.live("a Close from either side ends the stream cleanly (END_STREAM both ways, no reset); the tunnels are counted and logged with 200", () =>
    Effect.gen(function*() {
      const capture = yield* captureAccessLog
      const upstream = yield* startWsUpstream()
      const gateway = yield* startGateway({ ...h2cConfig(upstream.url), log: { level: "none", access_log: true, format: "json" } })
      const session = yield* h2Session(gateway.port)
      const before = yield* scrapeAdmin(gateway.adminPort)
      const ws = yield* openH2WebSocket(session, "/live")
      yield* echo(ws, OPCODE.TEXT, "x".repeat(100))
      const open = yield* scrapeAdmin(gateway.adminPort)
      assert.strictEqual(series(open, "fibergate_websocket_connections", { listener: "web", route: "ws" }), 1)
      assert.strictEqual(growth(before, open, "fibergate_websocket_connections_total", { listener: "web", route: "ws" }), 1)

      // The client closes: the upstream's Close comes back, then END_STREAM; the client ends its side.
      ws.send(OPCODE.CLOSE, closePayload(1000, "done"))
      const reply = yield* within(ws.frame(2), "the upstream's Close")
      assert.deepStrictEqual([reply.opcode, closeCode(reply)], [OPCODE.CLOSE, 1000])
      yield* eventually(Effect.sync(ws.ended), "END_STREAM from the gateway")
      ws.stream.end()
      assert.strictEqual(yield* Effect.promise(() => ws.closed), constants.NGHTTP2_NO_ERROR)
      yield* eventually(Effect.sync(() => upstream.closes.includes(1000)), "the upstream saw the Close")
      yield* eventually(
        scrapeAdmin(gateway.adminPort).pipe(Effect.map((s) => series(s, "fibergate_websocket_connections", { listener: "web", route: "ws" }) === 0)),
        "the tunnel counted closed"
      )
      yield* eventually(Effect.sync(() => capture.lines.length >= 1), "the access-log line")
      const line = capture.lines[0]
      assert.deepStrictEqual([line.status, line.method, line.route, line.path, line.upstream], [200, "CONNECT", "ws", "/live", upstream.url])
      assert.isAtLeast(Number(line.bytes_in), 106)

      // The upstream closes: its Close reaches the client, whose reply reaches the upstream.
      const second = yield* openH2WebSocket(session, "/again")
      yield* echo(second, OPCODE.TEXT, "hi")
      upstream.sockets[1].close(4000, "bye")
      const closing = yield* within(second.frame(2), "the upstream's Close")
      assert.deepStrictEqual([closing.opcode, closeCode(closing), closing.payload.subarray(2).toString()], [OPCODE.CLOSE, 4000, "bye"])
      second.send(OPCODE.CLOSE, closePayload(4000))
      yield* eventually(Effect.sync(second.ended), "END_STREAM after the upstream closed")
      second.stream.end()
      assert.strictEqual(yield* Effect.promise(() => second.closed), constants.NGHTTP2_NO_ERROR)
      yield* eventually(Effect.sync(() => upstream.closes.length === 2), "the upstream's close handshake done")
      assert.strictEqual(upstream.closes[1], 4000)
    }))

  it.live("refusals: plain CONNECT is 405, no route 404, a route's middleware 401, an upstream's refusal as it came, a down upstream 502, a wrong Sec-WebSocket-Accept 502", () =>
    Effect.gen(function*() {
      const upstream = yield* startWsUpstream()
      const keyHash = "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b" // sha256("secret")
      const guarded = yield* startGateway(h2cConfig(upstream.url, { match: { path: { prefix: "/ws" } }, middlewares: [{ api_key: { keys: [{ name: "ci", sha256: keyHash }] } }] }))
      const session = yield* h2Session(guarded.port)
      const tunnel = yield* Effect.promise(() => h2Request(session, { ":method": "CONNECT", ":authority": "example.com:443" }))
      assert.strictEqual(tunnel.status, 405)
      assert.strictEqual((yield* openH2WebSocket(session, "/elsewhere")).status, 404)
      assert.strictEqual((yield* openH2WebSocket(session, "/ws")).status, 401)
      assert.strictEqual(upstream.handshakes.length, 0)
      const allowed = yield* openH2WebSocket(session, "/ws", { "x-api-key": "secret" })
      assert.strictEqual(allowed.status, 200)
      assert.strictEqual((yield* echo(allowed, OPCODE.TEXT, "in")).payload.toString(), "in")
      assert.isUndefined(upstream.handshakes[0].headers["x-api-key"])

      const refusing = yield* startWsUpstream({ refuse: true })
      const refused = yield* openH2WebSocket(yield* h2Session((yield* startGateway(h2cConfig(refusing.url))).port), "/")
      assert.strictEqual(refused.status, 403)
      const down = yield* startGateway(h2cConfig("http://127.0.0.1:1"))
      assert.strictEqual((yield* openH2WebSocket(yield* h2Session(down.port), "/")).status, 502)

      // An upstream that says 101 without answering the gateway's key is not a WebSocket server.
      const liar = yield* rawUpstream((_key, socket) =>
        socket.write("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: wrong\r\n\r\n")
      )
      const lied = yield* startGateway(h2cConfig(liar.url))
      const answer = yield* openH2WebSocket(yield* h2Session(lied.port), "/")
      assert.strictEqual(answer.status, 502)
      assert.strictEqual(liar.sockets.length, 1)
      yield* eventually(Effect.sync(() => liar.sockets[0].destroyed || liar.sockets[0].readableEnded), "the liar's socket closed")
      // The same upstream answering the key properly is joined.
      const honest = yield* rawUpgrader((key) => acceptFor(key))
      const joined = yield* startGateway(h2cConfig(honest))
      assert.strictEqual((yield* openH2WebSocket(yield* h2Session(joined.port), "/")).status, 200)
    }))

  it.live("a frame the upstream sends with its 101 reaches the client first; a client that leaves before the upstream answers ends the upstream's attempt", () =>
    Effect.gen(function*() {
      // The 101 and a first text frame ("welcome", unmasked) in one write.
      const greeting = yield* rawUpstream((key, socket) =>
        socket.write(Buffer.concat([
          // HTTP2-Settings is HTTP/1.1's h2c field, which node:http2 refuses to send: it is dropped.
          Buffer.from(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nHTTP2-Settings: AAMAAABk\r\nX-Greeting: yes\r\nSec-WebSocket-Accept: ${acceptFor(key)}\r\n\r\n`, "latin1"),
          Buffer.from([0x81, 7]),
          Buffer.from("welcome")
        ]))
      )
      const greeted = yield* openH2WebSocket(yield* h2Session((yield* startGateway(h2cConfig(greeting.url))).port), "/")
      assert.strictEqual(greeted.status, 200)
      assert.strictEqual(greeted.headers["x-greeting"], "yes")
      assert.isUndefined(greeted.headers["http2-settings"])
      const first = yield* within(greeted.frame(1), "the upstream's first frame")
      assert.deepStrictEqual([first.opcode, first.payload.toString()], [OPCODE.TEXT, "welcome"])

      // An upstream that never answers; the client resets its stream while the gateway waits.
      const silent = yield* rawUpstream(() => {})
      const session = yield* h2Session((yield* startGateway(h2cConfig(silent.url))).port)
      const stream = session.request({ ":method": "CONNECT", ":protocol": "websocket", ":scheme": "http", ":path": "/", ":authority": "localhost", "sec-websocket-version": "13" }, { endStream: false })
      stream.on("error", () => {})
      yield* eventually(Effect.sync(() => silent.sockets.length === 1), "the upstream's handshake")
      stream.close(constants.NGHTTP2_CANCEL)
      yield* eventually(Effect.sync(() => silent.sockets[0].destroyed || silent.sockets[0].readableEnded), "the upstream's socket closed by the gateway")
    }))

  it.live("FIN and reset map to END_STREAM and RST_STREAM both ways (RFC 8441 §4); a client that never ends its side after the upstream's FIN is reset after the linger", () =>
    Effect.gen(function*() {
      const upstream = yield* rawUpstream((key, socket) =>
        socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${acceptFor(key)}\r\n\r\n`)
      )
      const gateway = yield* startGateway(h2cConfig(upstream.url))
      const session = yield* h2Session(gateway.port)
      const joined = (n: number) => eventually(Effect.sync(() => upstream.sockets.length === n), `upstream connection ${n}`)

      // The upstream's connection is reset: the client's stream is reset with CANCEL.
      const reset = yield* openH2WebSocket(session, "/")
      yield* joined(1)
      upstream.sockets[0].resetAndDestroy()
      assert.strictEqual(yield* Effect.promise(() => reset.closed), constants.NGHTTP2_CANCEL)

      // The client resets its stream: the upstream's connection is closed.
      const cancelled = yield* openH2WebSocket(session, "/")
      yield* joined(2)
      cancelled.stream.close(constants.NGHTTP2_CANCEL)
      yield* eventually(Effect.sync(() => upstream.sockets[1].destroyed), "the upstream's socket closed")

      // The client's END_STREAM is the upstream's FIN; the upstream's FIN back ends the stream cleanly.
      const halfClosed = yield* openH2WebSocket(session, "/")
      yield* joined(3)
      const finSeen = Effect.callback<void>((resume) => {
        upstream.sockets[2].once("end", () => resume(Effect.void))
      })
      halfClosed.stream.end()
      yield* within(finSeen, "the upstream's FIN")
      assert.strictEqual(yield* Effect.promise(() => halfClosed.closed), constants.NGHTTP2_NO_ERROR)

      // The upstream's FIN ends the stream; a client that never ends its side is reset after the linger.
      const lingering = yield* openH2WebSocket(session, "/")
      yield* joined(4)
      const finAt = performance.now()
      upstream.sockets[3].end()
      yield* eventually(Effect.sync(lingering.ended), "END_STREAM after the upstream's FIN")
      assert.strictEqual(yield* Effect.promise(() => lingering.closed), constants.NGHTTP2_CANCEL)
      assert.isAtLeast(performance.now() - finAt, 1_900)
    }))

  it.live("a drain with peers that never answer the Close: each side gets the gateway's own Close with 1001, then the tunnel is cut", () =>
    Effect.gen(function*() {
      const frames: Array<WsFrame> = []
      const reader = new FrameReader()
      const upstream = yield* rawUpstream((key, socket) => {
        socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${acceptFor(key)}\r\n\r\n`)
        socket.on("data", (d: Buffer) => frames.push(...reader.feed(d)))
      })
      const scope = yield* Scope.make()
      const context = yield* Layer.buildWithScope(Gateway.layer({ ...h2cConfig(upstream.url), shutdown: { drain_timeout: "10s" } }), scope).pipe(
        Effect.provideService(References.MinimumLogLevel, "Warn")
      )
      const session = yield* h2Session(Context.get(context, Listeners).addresses.get("web")!.port)
      const ws = yield* openH2WebSocket(session, "/")
      yield* eventually(Effect.sync(() => upstream.sockets.length === 1), "the upstream joined")
      const closing = yield* Effect.forkChild(Scope.close(scope, Exit.void))
      const told = yield* within(ws.frame(1), "the gateway's Close")
      assert.deepStrictEqual([told.opcode, closeCode(told)], [OPCODE.CLOSE, 1001])
      yield* eventually(Effect.sync(() => frames.length === 1), "the upstream's Close")
      assert.deepStrictEqual([frames[0].opcode, closeCode(frames[0])], [OPCODE.CLOSE, 1001])
      // Neither side answers: the tunnel is cut once the linger is over, and the drain ends.
      yield* within(Effect.promise(() => ws.closed), "the stream cut", 6_000)
      yield* eventually(Effect.sync(() => upstream.sockets[0].destroyed), "the upstream's socket cut", 6_000)
      yield* Fiber.join(closing)
    }))

  it.live("on an https listener (ALPN h2) to a wss upstream verified against its CA", () =>
    Effect.gen(function*() {
      const { dir } = yield* scopedCertDir
      const ca = makeCa(dir)
      const api = makeCert(dir, ca, { cn: "api.internal", names: ["api.internal"] })
      const site = makeCert(dir, ca, { cn: "site.test", names: ["site.test"] })
      const upstream = yield* startWsUpstream({ tls: api })
      const gateway = yield* startGateway(httpsConfig(upstream.url, { certificates: [{ cert: site.cert, key: site.key }] }, {}, {
        tls: { ca: ca.cert, server_name: "api.internal" }
      }))
      const session = yield* h2Session(gateway.port, { ca: ca.pem() })
      const ws = yield* openH2WebSocket(session, "/secure", { ":scheme": "https", ":authority": "site.test" })
      assert.strictEqual(ws.status, 200)
      assert.strictEqual((yield* echo(ws, OPCODE.TEXT, "over tls")).payload.toString(), "over tls")
      assert.strictEqual(upstream.handshakes[0].headers["x-forwarded-proto"], "https")
    }))

  it.live("backpressure: a client that stops reading holds the upstream back, and gets every byte in order once it reads again", () =>
    Effect.gen(function*() {
      const upstream = yield* startWsUpstream()
      const gateway = yield* startGateway(h2cConfig(upstream.url))
      const session = yield* h2Session(gateway.port)
      const ws = yield* openH2WebSocket(session, "/flood")
      yield* echo(ws, OPCODE.TEXT, "start")
      ws.stream.pause()
      const frames = 64
      const size = 256 * 1024
      const sender = upstream.sockets[0]
      for (let i = 0; i < frames; i++) sender.send(Buffer.alloc(size, i))
      // 16 MiB cannot all fit in the socket buffers and the stream's window: the upstream holds some.
      yield* Effect.sleep("300 millis")
      assert.isAbove(sender.bufferedAmount, 1 << 20)
      ws.stream.resume()
      yield* within(ws.frame(1 + frames), "every frame", 15_000)
      const got = ws.frames.slice(1)
      assert.strictEqual(got.length, frames)
      for (let i = 0; i < frames; i++) {
        assert.strictEqual(got[i].payload.length, size)
        assert.isTrue(got[i].payload.every((b) => b === i), `frame ${i} intact`)
      }
      yield* eventually(Effect.sync(() => sender.bufferedAmount === 0), "the upstream's queue drained")
    }))

  it.live("websocket.idle_timeout resets a stream that carried nothing for that long with CANCEL; traffic keeps another open", () =>
    Effect.gen(function*() {
      const upstream = yield* startWsUpstream()
      const gateway = yield* startGateway(h2cConfig(upstream.url, { websocket: { idle_timeout: "300ms" } }))
      const session = yield* h2Session(gateway.port)
      const busy = yield* openH2WebSocket(session, "/")
      const quiet = yield* openH2WebSocket(session, "/")
      const started = performance.now()
      for (let i = 0; i < 8; i++) {
        yield* echo(busy, OPCODE.TEXT, `ping ${i}`)
        yield* Effect.sleep("100 millis")
      }
      assert.strictEqual(yield* Effect.promise(() => quiet.closed), constants.NGHTTP2_CANCEL)
      assert.isAtLeast(performance.now() - started, 280)
      assert.isFalse(busy.stream.closed)
      assert.strictEqual((yield* echo(busy, OPCODE.TEXT, "still")).payload.toString(), "still")
    }))

  it.live("a drain sends a Close with 1001 to both sides of a tunnel", () =>
    Effect.gen(function*() {
      const upstream = yield* startWsUpstream()
      const scope = yield* Scope.make()
      const context = yield* Layer.buildWithScope(Gateway.layer({ ...h2cConfig(upstream.url), shutdown: { drain_timeout: "5s" } }), scope).pipe(
        Effect.provideService(References.MinimumLogLevel, "Warn")
      )
      const port = Context.get(context, Listeners).addresses.get("web")!.port
      const session = yield* h2Session(port)
      const ws = yield* openH2WebSocket(session, "/")
      yield* echo(ws, OPCODE.TEXT, "hi")
      const closing = yield* Effect.forkChild(Scope.close(scope, Exit.void))
      const told = yield* within(ws.frame(2), "the gateway's Close")
      assert.deepStrictEqual([told.opcode, closeCode(told)], [OPCODE.CLOSE, 1001])
      yield* eventually(Effect.sync(() => upstream.closes.includes(1001)), "the upstream told 1001")
      yield* Fiber.join(closing)
    }))
})

/** An upstream of raw sockets: `onHandshake` gets each request head's key and the socket to answer on. */
const rawUpstream = (onHandshake: (key: string, socket: Socket) => void) =>
  Effect.acquireRelease(
    Effect.callback<{ url: string; sockets: Array<Socket>; close: () => void }>((resume) => {
      const sockets: Array<Socket> = []
      const server = createServer((socket) => {
        sockets.push(socket)
        let head = ""
        socket.on("data", (d: Buffer) => {
          if (head.includes("\r\n\r\n")) return
          head += d.toString("latin1")
          if (head.includes("\r\n\r\n")) onHandshake(/sec-websocket-key: *([^\r\n]*)/i.exec(head)?.[1] ?? "", socket)
        })
        socket.on("error", () => {})
      })
      server.listen(0, "127.0.0.1", () =>
        resume(Effect.succeed({
          url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
          sockets,
          close: () => {
            for (const s of sockets) s.destroy()
            server.close()
          }
        })))
    }),
    (u) => Effect.sync(u.close)
  )

/** A raw upstream answering every upgrade with a 101 whose Sec-WebSocket-Accept is `accept(key)`, then silent. */
const rawUpgrader = (accept: (key: string) => string) =>
  rawUpstream((key, socket) =>
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept(key)}\r\n\r\n`)
  ).pipe(Effect.map((u) => u.url))
