/**
 * A WebSocket upgrade proxied to an upstream: the client's `Upgrade: websocket` request goes
 * to the endpoint (ws over http://, wss over https://); a 101 from it joins the two sockets,
 * anything else goes back to the client as the answer. Joined, frames stream both ways with
 * backpressure (a side that cannot keep up pauses the other), unchanged; the tunnel closes
 * when either side closes, or after `idleTimeoutMs` without a byte either way. `goAway`
 * (the listener drains) sends each side a Close with 1001 between two of its frames.
 */
import { request as httpRequest, type IncomingMessage, type ServerResponse } from "node:http"
import { request as httpsRequest } from "node:https"
import type { Socket } from "node:net"
import type { UpstreamTlsOptions } from "../config/CertificateFiles.ts"
import { UpstreamConnectTimeout, type GatewayError } from "../middleware/GatewayError.ts"
import { HOP_BY_HOP } from "../middleware/HopByHop.ts"
import { fromUpstreamError } from "./UpstreamErrors.ts"
import { closeFrame, FrameTracker } from "./WebSocketFrames.ts"

/** Open tunnels of a listener, closed with 1001 when it drains. */
export type Tunnels = Set<Tunnel>

/** How long a side may take to reach a frame boundary once the tunnel goes away. */
const GO_AWAY_WAIT_MS = 1_000
/** How long the peers get to answer the Close before the sockets are cut. */
const CLOSE_LINGER_MS = 2_000

export interface TunnelRequest {
  readonly client: Socket
  /** Bytes the client sent after its request head. */
  readonly head: Buffer
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
  private readonly from: Socket
  private readonly to: Socket
  private readonly closeCode: Buffer
  private readonly onActivity: () => void
  private readonly onStopped: () => void
  constructor(from: Socket, to: Socket, closeCode: Buffer, onActivity: () => void, onStopped: () => void) {
    this.from = from
    this.to = to
    this.closeCode = closeCode
    this.onActivity = onActivity
    this.onStopped = onStopped
    from.on("data", this.onData)
    to.on("drain", () => from.resume())
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

  private closed = false
  private sendClose(): void {
    if (this.closed) return
    this.closed = true
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
    const req = r.origin.startsWith("https:") ? httpsRequest(options) : httpRequest(options)
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
      r.onFailed((error as { code?: string }).code === "UND_ERR_CONNECT_TIMEOUT"
        ? new UpstreamConnectTimeout({ message: "Timed out connecting to the upstream" })
        : fromUpstreamError(error))
    })
    // The client leaving before the upstream answered ends the attempt.
    r.client.once("close", () => {
      if (!answered) req.destroy()
    })
    req.end()
  }

  /** The upstream answered without upgrading: its response is the client's answer. */
  private refused(res: IncomingMessage): void {
    const r = this.request
    const head: Array<string> = []
    const raw = res.rawHeaders
    for (let i = 0; i < raw.length; i += 2) if (!HOP_BY_HOP.has(raw[i].toLowerCase())) head.push(raw[i], raw[i + 1])
    r.res.shouldKeepAlive = false
    r.res.writeHead(res.statusCode ?? 502, res.statusMessage, head)
    let bytes = 0
    res.on("data", (c: Buffer) => (bytes += c.length))
    res.pipe(r.res)
    res.once("end", () => r.onRefused(res.statusCode ?? 502, bytes))
  }

  private join(res: IncomingMessage, upstream: Socket, upstreamHead: Buffer): void {
    const r = this.request
    const client = r.client
    this.upstream = upstream
    const lines = [`HTTP/1.1 101 ${res.statusMessage || "Switching Protocols"}`]
    const raw = res.rawHeaders
    for (let i = 0; i < raw.length; i += 2) lines.push(`${raw[i]}: ${raw[i + 1]}`)
    client.write(`${lines.join("\r\n")}\r\n\r\n`)
    upstream.setNoDelay(true)
    client.setNoDelay(true)
    r.tunnels.add(this)
    r.onOpen()
    const touch = () => {
      this.lastActivity = performance.now()
    }
    this.up = new Pump(client, upstream, closeFrame(1001, true), touch, () => this.afterClose())
    this.down = new Pump(upstream, client, closeFrame(1001, false), touch, () => this.afterClose())
    if (upstreamHead.length > 0) {
      this.down.frames.feed(upstreamHead)
      this.down.bytes += upstreamHead.length
      client.write(upstreamHead)
    }
    if (r.head.length > 0) {
      this.up.frames.feed(r.head)
      this.up.bytes += r.head.length
      upstream.write(r.head)
    }
    const end = () => this.end()
    client.once("close", end)
    upstream.once("close", end)
    client.once("error", end)
    upstream.once("error", end)
    // A side that half-closes has nothing more to send: the other side is told the same.
    client.once("end", () => upstream.end())
    upstream.once("end", () => client.end())
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
    r.client.destroy()
    this.upstream?.destroy()
    r.onClosed(this.up?.bytes ?? 0, this.down?.bytes ?? 0)
  }
}
