/**
 * Test support: WebSocket upstreams (the `ws` package's server, echoing every message) and an
 * HTTP/2 WebSocket client (RFC 8441) that writes and reads its frames by hand: no WebSocket
 * library for Node speaks WebSocket over HTTP/2.
 */
import { Effect, type Scope } from "effect"
import { readFileSync } from "node:fs"
import { createServer, type IncomingMessage, type Server } from "node:http"
import type { ClientHttp2Session, ClientHttp2Stream, IncomingHttpHeaders, OutgoingHttpHeaders } from "node:http2"
import { createServer as createHttpsServer } from "node:https"
import type { AddressInfo } from "node:net"
import { type WebSocket, WebSocketServer } from "ws"

export interface WsUpstream {
  readonly url: string
  /** Each handshake request the upstream accepted. */
  readonly handshakes: Array<IncomingMessage>
  /** Close codes the upstream received, in order. */
  readonly closes: Array<number>
  /** Every message the upstream received. */
  readonly messages: Array<Buffer>
  /** The upstream's side of each open WebSocket, in the order they opened. */
  readonly sockets: Array<WebSocket>
}

export interface WsUpstreamOptions {
  /** Answers every handshake 403. */
  readonly refuse?: boolean
  readonly tls?: { cert: string; key: string }
  /** Subprotocols the server picks from, first match in the client's order. */
  readonly protocols?: ReadonlyArray<string>
}

/**
 * An echo WebSocket server on loopback (over TLS with `tls`). A plain request (no upgrade) is
 * answered 200 "plain".
 */
export const startWsUpstream = (options: WsUpstreamOptions = {}): Effect.Effect<WsUpstream, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.callback<WsUpstream & { server: Server; wss: WebSocketServer }>((resume) => {
      const handshakes: Array<IncomingMessage> = []
      const closes: Array<number> = []
      const messages: Array<Buffer> = []
      const sockets: Array<WebSocket> = []
      const server = options.tls === undefined
        ? createServer()
        : createHttpsServer({ cert: readFileSync(options.tls.cert), key: readFileSync(options.tls.key) })
      server.on("request", (_req, res) => res.end("plain"))
      const wss = new WebSocketServer({
        server,
        verifyClient: (_info, done) => (options.refuse === true ? done(false, 403, "Forbidden") : done(true)),
        handleProtocols: (offered) => options.protocols?.find((p) => offered.has(p)) ?? false
      })
      wss.on("connection", (socket, req) => {
        handshakes.push(req)
        sockets.push(socket)
        socket.on("message", (data, isBinary) => {
          messages.push(data as Buffer)
          socket.send(data, { binary: isBinary })
        })
        socket.on("close", (code) => closes.push(code))
      })
      server.listen(0, "127.0.0.1", () => {
        const port = (server.address() as AddressInfo).port
        resume(Effect.succeed({ url: `${options.tls === undefined ? "http" : "https"}://127.0.0.1:${port}`, handshakes, closes, messages, sockets, server, wss }))
      })
    }),
    (u) => Effect.callback<void>((resume) => {
      for (const c of u.wss.clients) c.terminate()
      u.wss.close()
      u.server.closeAllConnections()
      u.server.close(() => resume(Effect.void))
    })
  )

/** A WebSocket frame (RFC 6455 §5.2), payload unmasked. */
export interface WsFrame {
  readonly fin: boolean
  readonly opcode: number
  readonly payload: Buffer
}

export const OPCODE = { TEXT: 1, BINARY: 2, CLOSE: 8, PING: 9, PONG: 10 } as const

/** A client frame: masked, as RFC 6455 §5.3 requires of a client. */
export const clientFrame = (opcode: number, payload: Buffer | string, fin = true): Buffer => {
  const data = typeof payload === "string" ? Buffer.from(payload) : payload
  const mask = globalThis.crypto.getRandomValues(new Uint8Array(4))
  const length = data.length
  const head = length < 126
    ? Buffer.from([(fin ? 0x80 : 0) | opcode, 0x80 | length])
    : length < 65536
    ? Buffer.from([(fin ? 0x80 : 0) | opcode, 0x80 | 126, length >> 8, length & 0xff])
    : Buffer.concat([Buffer.from([(fin ? 0x80 : 0) | opcode, 0x80 | 127]), bigEndian64(length)])
  const masked = Buffer.allocUnsafe(length)
  for (let i = 0; i < length; i++) masked[i] = data[i] ^ mask[i & 3]
  return Buffer.concat([head, mask, masked])
}

const bigEndian64 = (n: number): Buffer => {
  const b = Buffer.alloc(8)
  b.writeBigUInt64BE(BigInt(n))
  return b
}

/** A Close frame's payload: the code, then the reason. */
export const closePayload = (code: number, reason = ""): Buffer => Buffer.concat([Buffer.from([code >> 8, code & 0xff]), Buffer.from(reason)])

/** The code of a Close frame (1005 when it carries none). */
export const closeCode = (frame: WsFrame): number => (frame.payload.length >= 2 ? frame.payload.readUInt16BE(0) : 1005)

/** Splits a byte stream into frames; `feed` returns the frames that completed. */
export class FrameReader {
  private buffered: Buffer = Buffer.alloc(0)
  feed(chunk: Buffer): Array<WsFrame> {
    this.buffered = this.buffered.length === 0 ? chunk : Buffer.concat([this.buffered, chunk])
    const frames: Array<WsFrame> = []
    for (;;) {
      const b = this.buffered
      if (b.length < 2) break
      const masked = (b[1] & 0x80) !== 0
      let length = b[1] & 0x7f
      let at = 2
      if (length === 126) {
        if (b.length < 4) break
        length = b.readUInt16BE(2)
        at = 4
      } else if (length === 127) {
        if (b.length < 10) break
        length = Number(b.readBigUInt64BE(2))
        at = 10
      }
      const maskAt = at
      if (masked) at += 4
      if (b.length < at + length) break
      const payload = Buffer.from(b.subarray(at, at + length))
      if (masked) for (let i = 0; i < length; i++) payload[i] ^= b[maskAt + (i & 3)]
      frames.push({ fin: (b[0] & 0x80) !== 0, opcode: b[0] & 0x0f, payload })
      this.buffered = b.subarray(at + length)
    }
    return frames
  }
}

/** A WebSocket over an HTTP/2 stream, as a client opens it (RFC 8441 §4). */
export interface H2WebSocket {
  readonly status: number
  readonly headers: IncomingHttpHeaders
  readonly stream: ClientHttp2Stream
  /** Every frame received so far. */
  readonly frames: Array<WsFrame>
  send(opcode: number, payload: Buffer | string, fin?: boolean): boolean
  /** Waits for the `n`th frame received (counting from 1). */
  frame(n: number): Effect.Effect<WsFrame>
  /** Resolves with the stream's RST_STREAM code (0: closed cleanly) once it closes. */
  readonly closed: Promise<number>
  /** Whether the gateway ended its side of the stream (END_STREAM). */
  readonly ended: () => boolean
}

/**
 * Opens a WebSocket on `session` with an extended CONNECT to `path`; answers other than 200
 * resolve too (`status` says), with the stream closed.
 */
export const openH2WebSocket = (
  session: ClientHttp2Session,
  path: string,
  headers: OutgoingHttpHeaders = {}
): Effect.Effect<H2WebSocket, Error, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.callback<H2WebSocket, Error>((resume) => {
      const stream = session.request({
        ":method": "CONNECT",
        ":protocol": "websocket",
        ":scheme": "http",
        ":path": path,
        ":authority": "localhost",
        "sec-websocket-version": "13",
        ...headers
      }, { endStream: false })
      const frames: Array<WsFrame> = []
      const waiters: Array<{ readonly n: number; readonly done: (f: WsFrame) => void }> = []
      const reader = new FrameReader()
      let ended = false
      const closed = new Promise<number>((resolve) => stream.once("close", () => resolve(stream.rstCode ?? 0)))
      stream.on("data", (chunk: Buffer) => {
        for (const f of reader.feed(chunk)) {
          frames.push(f)
          for (let i = waiters.length - 1; i >= 0; i--) {
            const waiter = waiters[i]
            if (waiter.n > frames.length) continue
            waiters.splice(i, 1)
            waiter.done(frames[waiter.n - 1])
          }
        }
      })
      stream.once("end", () => (ended = true))
      stream.once("error", () => {})
      stream.once("response", (h) => {
        resume(Effect.succeed({
          status: Number(h[":status"]),
          headers: h,
          stream,
          frames,
          send: (opcode, payload, fin = true) => stream.write(clientFrame(opcode, payload, fin)),
          frame: (n) => Effect.callback<WsFrame>((done) => {
            if (frames.length >= n) done(Effect.succeed(frames[n - 1]))
            else waiters.push({ n, done: (f) => done(Effect.succeed(f)) })
          }),
          closed,
          ended: () => ended
        }))
      })
      stream.once("close", () => resume(Effect.fail(new Error(`stream closed before a response (${stream.rstCode})`))))
    }),
    (ws) => Effect.sync(() => ws.stream.destroy())
  )
