/**
 * A WebSocket proxied to an upstream: the client's handshake goes to the endpoint as an
 * HTTP/1.1 `Upgrade: websocket` request (ws over http://, wss over https://); a 101 from it
 * joins the client to the upstream's socket, anything else goes back to the client as the
 * answer. The client is an HTTP/1.1 connection (it gets the 101) or an HTTP/2 stream opened
 * with an extended CONNECT (RFC 8441: it gets a 200, and its stream carries the frames).
 * Joined, frames stream both ways with backpressure (a side that cannot keep up pauses the
 * other), unchanged; the tunnel closes when either side closes, or after `idleTimeoutMs`
 * without a byte either way. `goAway` (the listener drains) sends each side a Close with 1001
 * between two of its frames.
 */
import type { IncomingMessage, ServerResponse } from "node:http"
import type { ServerHttp2Stream } from "node:http2"
import { nodeHttp, nodeHttp2, nodeHttps } from "../config/NodeModules.ts"
import type { Socket } from "node:net"
import type { Readable, Writable } from "node:stream"
import type { UpstreamTlsOptions } from "../config/CertificateFiles.ts"
import { UpstreamProtocolError, type GatewayError } from "../middleware/GatewayError.ts"
import { HOP_BY_HOP } from "../middleware/HopByHop.ts"
import { HTTP2_SETTINGS, Http2Error, resetByGateway } from "./Http2Streams.ts"
import { fromUpstreamError } from "./UpstreamErrors.ts"
import { acceptFor } from "./WebSocketHandshake.ts"
import { closeFrame, FrameTracker } from "./WebSocketFrames.ts"

/** Open tunnels of a listener, closed with 1001 when it drains. */
export type Tunnels = Set<Tunnel>

/** How long a side may take to reach a frame boundary once the tunnel goes away. */
const GO_AWAY_WAIT_MS = 1_000
/** How long the peers get to answer the Close before the sockets are cut. */
const CLOSE_LINGER_MS = 2_000

/** The client's side of a tunnel. */
export type TunnelClient =
  | {
    readonly kind: "http1"
    readonly socket: Socket
    /** Bytes the client sent after its request head. */
    readonly head: Buffer
  }
  | {
    readonly kind: "http2"
    /** The frames from the client: the stream as node:http2's request reads it, like any request body. */
    readonly readable: Readable
    readonly stream: ServerHttp2Stream
    /** The key the gateway sent the upstream, which its Sec-WebSocket-Accept must answer. */
    readonly key: string
  }

export interface TunnelRequest {
  readonly client: TunnelClient
  /** A response on the client's socket, for an answer that is not a 101. */
  readonly res: ServerResponse
  readonly origin: string
  readonly hostname: string
  readonly port: number
  readonly tls: UpstreamTlsOptions | undefined
  readonly path: string
  /** The request headers for the upstream (hop-by-hop ones removed), names and values alternating. */
  readonly headers: Array<string>
  readonly connectTimeoutMs: number
  readonly idleTimeoutMs: number
  readonly tunnels: Tunnels
  /** Whether the listener has started draining (a tunnel joined after that goes away at once). */
  readonly draining: () => boolean
  /** The upstream did not upgrade: `res` has been answered with its response (status given). */
  readonly onRefused: (status: number, bytesOut: number) => void
  /** No answer from the upstream: the caller answers with the error. */
  readonly onFailed: (error: GatewayError) => void
  readonly onOpen: () => void
  /** The tunnel closed, with the bytes it carried each way. */
  readonly onClosed: (bytesIn: number, bytesOut: number) => void
}

/** One way of a tunnel: bytes from `from` to `to`, with frame boundaries tracked for `goAway`. */
class Pump {
  readonly frames = new FrameTracker()
  bytes = 0
  stopping = false
  private readonly from: Readable
  private readonly to: Writable
  private readonly closeCode: Buffer
  private readonly onActivity: () => void
  private readonly onStopped: () => void
  constructor(from: Readable, to: Writable, closeCode: Buffer, onActivity: () => void, onStopped: () => void) {
    this.from = from
    this.to = to
    this.closeCode = closeCode
    this.onActivity = onActivity
    this.onStopped = onStopped
    from.on("data", this.onData)
    to.on("drain", () => from.resume())
  }

  /** Stops reading: nothing more goes to `to` (an HTTP/2 client's stream left to finish). */
  detach(): void {
    this.from.removeListener("data", this.onData)
    this.from.resume()
  }

  private readonly onData = (chunk: Buffer): void => {
    this.onActivity()
    if (!this.stopping) {
      this.frames.feed(chunk)
      this.bytes += chunk.length
      if (!this.to.write(chunk)) this.from.pause()
      return
    }
    // Going away: what completes the frame in progress still goes, then the Close.
    const upTo = this.frames.feed(chunk, true)
    if (upTo < 0) {
      this.bytes += chunk.length
      this.to.write(chunk)
      return
    }
    if (upTo > 0) this.to.write(chunk.subarray(0, upTo))
    this.bytes += upTo
    this.sendClose()
  }

  /** Writes the Close at the next frame boundary (now, when the stream is at one). */
  stop(): void {
    if (this.stopping) return
    this.stopping = true
    if (this.frames.atBoundary) this.sendClose()
  }

  /** Called once: by `stop` at a boundary, else by the chunk that reaches one (then nothing more is read). */
  private sendClose(): void {
    this.from.removeListener("data", this.onData)
    this.to.write(this.closeCode)
    this.onStopped()
  }
}

export class Tunnel {
  private up: Pump | undefined
  private down: Pump | undefined
  private idle: ReturnType<typeof setTimeout> | undefined
  private lastActivity = 0
  private ended = false
  private readonly request: TunnelRequest
  private upstream: Socket | undefined
  constructor(request: TunnelRequest) {
    this.request = request
  }

  start(): void {
    const r = this.request
    const options = {
      host: r.hostname,
      port: r.port,
      path: r.path,
      method: "GET",
      agent: false as const,
      headers: r.headers,
      ...r.tls
    }
    const req = r.origin.startsWith("https:") ? nodeHttps().request(options) : nodeHttp.request(options)
    const timer = setTimeout(() => req.destroy(Object.assign(new Error("connect timeout"), { code: "UND_ERR_CONNECT_TIMEOUT" })), r.connectTimeoutMs)
    let answered = false
    req.once("upgrade", (res: IncomingMessage, socket: Socket, upstreamHead: Buffer) => {
      clearTimeout(timer)
      answered = true
      this.join(res, socket, upstreamHead)
    })
    req.once("response", (res: IncomingMessage) => {
      clearTimeout(timer)
      answered = true
      this.refused(res)
    })
    req.once("error", (error: Error) => {
      clearTimeout(timer)
      if (answered) return
      answered = true
      // The timer's error carries undici's code, so it maps as a pool's connect timeout does.
      r.onFailed(fromUpstreamError(error))
    })
    // The client leaving before the upstream answered ends the attempt.
    this.clientStream.once("close", () => {
      if (!answered) req.destroy()
    })
    req.end()
  }

  /** The upstream answered without upgrading: its response is the client's answer. */
  private refused(res: IncomingMessage): void {
    const r = this.request
    const head = endToEnd(res.rawHeaders)
    if (r.client.kind === "http1") {
      r.res.shouldKeepAlive = false
      r.res.writeHead(res.statusCode ?? 502, res.statusMessage, head)
    } else r.res.writeHead(res.statusCode ?? 502, head)
    let bytes = 0
    res.on("data", (c: Buffer) => (bytes += c.length))
    res.pipe(r.res)
    res.once("end", () => r.onRefused(res.statusCode ?? 502, bytes))
  }

  /** What closes and fails on the client's side: its socket, or its HTTP/2 stream. */
  private get clientStream(): Socket | ServerHttp2Stream {
    const client = this.request.client
    return client.kind === "http1" ? client.socket : client.stream
  }

  private join(res: IncomingMessage, upstream: Socket, upstreamHead: Buffer): void {
    const r = this.request
    const client = r.client
    this.upstream = upstream
    let from: Readable
    let to: Writable
    if (client.kind === "http1") {
      const lines = [`HTTP/1.1 101 ${res.statusMessage || "Switching Protocols"}`]
      const raw = res.rawHeaders
      for (let i = 0; i < raw.length; i += 2) lines.push(`${raw[i]}: ${raw[i + 1]}`)
      client.socket.write(`${lines.join("\r\n")}\r\n\r\n`)
      client.socket.setNoDelay(true)
      from = to = client.socket
    } else {
      // The gateway made the key, so it checks the answer, as the client would have.
      if (res.headers["sec-websocket-accept"] !== acceptFor(client.key)) {
        upstream.destroy()
        r.onFailed(new UpstreamProtocolError({ message: "The upstream's Sec-WebSocket-Accept does not answer the handshake's key" }))
        return
      }
      // RFC 8441 §5: a 200 accepts the stream; the upgrade's own fields stay on the upstream's hop.
      r.res.writeHead(200, endToEnd(res.rawHeaders, "sec-websocket-accept"))
      from = client.readable
      to = client.stream
    }
    upstream.setNoDelay(true)
    r.tunnels.add(this)
    r.onOpen()
    const touch = () => {
      this.lastActivity = performance.now()
    }
    this.up = new Pump(from, upstream, closeFrame(1001, true), touch, () => this.afterClose())
    this.down = new Pump(upstream, to, closeFrame(1001, false), touch, () => this.afterClose())
    if (upstreamHead.length > 0) {
      this.down.frames.feed(upstreamHead)
      this.down.bytes += upstreamHead.length
      to.write(upstreamHead)
    }
    if (client.kind === "http1" && client.head.length > 0) {
      this.up.frames.feed(client.head)
      this.up.bytes += client.head.length
      upstream.write(client.head)
    }
    const end = () => this.end()
    this.clientStream.once("close", end)
    upstream.once("close", end)
    this.clientStream.once("error", end)
    upstream.once("error", end)
    // A side that half-closes has nothing more to send: the other side is told the same
    // (on HTTP/2, END_STREAM stands for the FIN: RFC 8441 §4).
    from.once("end", () => upstream.end())
    upstream.once("end", () => to.end())
    touch()
    this.armIdle()
    // The drain told the open tunnels before this one was joined.
    if (r.draining()) this.goAway()
  }

  private armIdle(): void {
    const ms = this.request.idleTimeoutMs
    if (ms <= 0) return
    const check = () => {
      const quiet = performance.now() - this.lastActivity
      if (quiet >= ms) this.end()
      else this.idle = setTimeout(check, ms - quiet)
    }
    this.idle = setTimeout(check, ms)
  }

  /** The listener drains: each side gets a Close with 1001, between two of its frames. */
  goAway(): void {
    if (this.ended || this.up === undefined || this.down === undefined) return
    this.up.stop()
    this.down.stop()
    // A peer in the middle of a huge frame does not hold the drain up.
    setTimeout(() => this.end(), GO_AWAY_WAIT_MS + CLOSE_LINGER_MS).unref()
  }

  private stopped = 0
  private afterClose(): void {
    if (++this.stopped < 2) return
    setTimeout(() => this.end(), CLOSE_LINGER_MS).unref()
  }

  private end(): void {
    if (this.ended) return
    this.ended = true
    if (this.idle !== undefined) clearTimeout(this.idle)
    const r = this.request
    r.tunnels.delete(this)
    const client = r.client
    if (client.kind === "http1") client.socket.destroy()
    else closeClientStream(client.stream, this.up)
    this.upstream?.destroy()
    r.onClosed(this.up?.bytes ?? 0, this.down?.bytes ?? 0)
  }
}

/**
 * Ends an HTTP/2 client's side of a closed tunnel. When the upstream finished its side, the
 * stream's END_STREAM is queued behind the last frames (a Close, often): it is left to go out,
 * and the stream to close once the client ends its side too, within CLOSE_LINGER_MS. Otherwise
 * (the upstream failed or the tunnel timed out) the stream is reset with CANCEL, what RFC 8441
 * §4 maps a TCP reset to.
 */
const closeClientStream = (stream: ServerHttp2Stream, up: Pump | undefined): void => {
  if (stream.closed || stream.destroyed) return
  if (!stream.writableEnded) {
    resetByGateway(stream, Http2Error.CANCEL)
    return
  }
  up?.detach()
  setTimeout(resetByGateway, CLOSE_LINGER_MS, stream, Http2Error.CANCEL).unref()
}

/** An upstream response's fields that go on to the client: not hop-by-hop, nor `except`. */
const endToEnd = (raw: ReadonlyArray<string>, except?: string): Array<string> => {
  const head: Array<string> = []
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i].toLowerCase()
    if (!HOP_BY_HOP.has(name) && name !== HTTP2_SETTINGS && name !== except) head.push(raw[i], raw[i + 1])
  }
  return head
}
