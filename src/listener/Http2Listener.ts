/**
 * HTTP/2 on a listener. A node:http2 server that never listens itself takes the connections its
 * listener hands over: on `https` those whose ALPN chose h2, on `h2c` those that open with the
 * HTTP/2 preface. HTTP/1.1 connections stay with the listener's node:http server, so both
 * protocols share one port, one connection limit and one drain. Extended CONNECT is on (RFC
 * 8441), for WebSockets on streams (see WebSocketTunnel.ts).
 *
 * Abuse bounds (each GOAWAY counted in `fibergate_http2_goaways_total{listener,reason}`):
 * - streams past `h2_max_concurrent_streams` are refused by nghttp2 (RST_STREAM REFUSED_STREAM);
 * - a header list past `h2_max_header_list_bytes` resets its stream (ENHANCE_YOUR_CALM);
 * - a CONTINUATION flood, or framing nghttp2 finds broken, ends the connection with its GOAWAY;
 * - a client that resets streams about as fast as it opens them (Rapid Reset, CVE-2023-44487:
 *   each stream starts upstream work the reset throws away) gets GOAWAY ENHANCE_YOUR_CALM once
 *   it has reset RAPID_RESET_MIN streams and they are at least half of those it opened, the
 *   rule Envoy applies to premature resets. A browser cancelling some requests stays far below.
 */
import type * as Context from "effect/Context"
import * as Metric from "effect/Metric"
import type { Server as HttpServer } from "node:http"
import type { Http2ServerRequest, Http2ServerResponse, ServerHttp2Session, ServerHttp2Stream } from "node:http2"
import type { Socket } from "node:net"
import type { Server as TlsServer, TLSSocket } from "node:tls"
import { nodeHttp2 } from "../config/NodeModules.ts"
import type { Server } from "../config/Schema.ts"
import { gatewayReset, Http2Error } from "../proxy/Http2Streams.ts"
import { limitDefaults } from "../proxy/RouteTable.ts"
import { http2Goaways, http2Sessions, registerGauge } from "../telemetry/Metrics.ts"

/** Client resets a connection may make before the Rapid Reset rule applies. */
export const RAPID_RESET_MIN = 100

/** Header fields a request may have: node:http's bound (2000); node:http2's own default, 128, refuses real requests. */
const MAX_HEADER_PAIRS = 2_000

const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1")

/** Why a connection was cut for Rapid Reset (the session's error; not counted again as a protocol error). */
class RapidReset extends Error {
  override readonly name = "RapidReset"
}

interface SessionState {
  readonly session: ServerHttp2Session
  opened: number
  resets: number
  /** Cut for Rapid Reset: streams still in the read being processed are refused unseen. */
  cut: boolean
}

const cutNow = (session: ServerHttp2Session, reason: RapidReset) => session.destroy(reason, Http2Error.ENHANCE_YOUR_CALM)

const stateOf: unique symbol = Symbol("fibergate.http2SessionState")
type Tracked<T> = T & { [stateOf]?: SessionState }

export interface Http2Listener {
  /** Takes a connection over (see routeByAlpn, routeByPreface). */
  take(socket: Socket): void
  /** Takes the limits a reload changed; connections opened from then on get them. */
  apply(server: Server): void
  /** GOAWAY to every connection, and to any opened from now on: they finish their streams, then close. */
  goAway(): void
  /** Cuts every connection left (the drain deadline). */
  destroyAll(): void
  /** Drops the listener's HTTP/2 metrics. */
  close(): void
}

const settingsOf = (server: Server) => ({
  // Extended CONNECT (RFC 8441): WebSockets over HTTP/2 streams.
  enableConnectProtocol: true,
  maxConcurrentStreams: server.limits?.h2_max_concurrent_streams ?? limitDefaults.h2_max_concurrent_streams,
  maxHeaderListSize: server.limits?.h2_max_header_list_bytes ?? limitDefaults.h2_max_header_list_bytes
})

/** The reason label of a session error nghttp2 answered with GOAWAY; undefined for a socket error (no GOAWAY). */
export const goawayReason = (error: Error): string | undefined => {
  const code = (error as { code?: string }).code
  if (code === "ERR_HTTP2_TOO_MANY_INVALID_FRAMES") return "invalid_frames"
  if (code !== "ERR_HTTP2_ERROR") return undefined
  return error.message.includes("CONTINUATION") ? "continuation_flood" : "protocol_error"
}

/** A header list's size as RFC 9113 §6.5.2 counts it: names, values and 32 bytes per field. */
export const headerListBytes = (raw: ReadonlyArray<string>): number => {
  let bytes = 0
  for (let i = 0; i < raw.length; i++) bytes += Buffer.byteLength(raw[i])
  return bytes + 16 * raw.length
}

/**
 * The Rapid Reset rule, per connection: whether `resets` client resets out of `opened` streams
 * end the connection.
 */
export const tooManyResets = (resets: number, opened: number): boolean => resets >= RAPID_RESET_MIN && resets * 2 >= opened

/**
 * Makes the HTTP/2 side of `config`'s listener; `onRequest` gets each stream as a request.
 * `context` holds the metrics registry.
 */
export const makeHttp2Listener = (
  config: Server,
  onRequest: (req: Http2ServerRequest, res: Http2ServerResponse) => void,
  context: Context.Context<never>
): Http2Listener => {
  const listener = config.name
  let idleMs = config.limits?.idle_timeout ?? limitDefaults.idle_timeout
  let draining = false
  let maxHeaderList = settingsOf(config).maxHeaderListSize
  const sessions = new Set<ServerHttp2Session>()
  const server = nodeHttp2().createServer({ settings: settingsOf(config), maxHeaderListPairs: MAX_HEADER_PAIRS })
  const counters = new Map<string, Metric.Metric<number, unknown>>()
  const count = (reason: string) => {
    let counter = counters.get(reason)
    if (counter === undefined) counters.set(reason, counter = Metric.withAttributes(http2Goaways, { listener, reason }))
    counter.updateUnsafe(1, context)
  }
  const gauge = registerGauge(http2Sessions, { listener }, context, () => sessions.size)

  function onIdle(this: ServerHttp2Session) {
    this.close()
  }
  function onSessionClose(this: ServerHttp2Session) {
    sessions.delete(this)
  }
  // One function for every stream: the state rides on the stream. node:http2 emits `aborted`
  // while nghttp2 is still reading the frame that reset the stream ('close' comes a tick later,
  // after the rest of the read is processed), so the bound holds within one read. The GOAWAY
  // goes at once; the connection is destroyed once nghttp2 is done with that read (destroying it
  // inside nghttp2's callback would make nghttp2 send a GOAWAY INTERNAL_ERROR of its own first),
  // and the streams the rest of the read opens are refused without reaching the proxy.
  function onStreamAborted(this: Tracked<ServerHttp2Stream> & { [gatewayReset]?: boolean }) {
    const state = this[stateOf]
    if (state === undefined || state.cut || this[gatewayReset] === true) return
    const session = state.session
    // Streams cut because their connection went (node:http2 cancels them before it marks the
    // session closed) are not the client's resets.
    if (session.closed || session.destroyed) return
    const socket = session.socket as Socket | undefined
    if (socket === undefined || socket.destroyed || socket.readableEnded) return
    state.resets++
    if (tooManyResets(state.resets, state.opened)) {
      state.cut = true
      count("rapid_reset")
      session.goaway(Http2Error.ENHANCE_YOUR_CALM)
      setImmediate(cutNow, session, new RapidReset(`${state.resets} of ${state.opened} streams reset by the client`))
    }
  }

  server.on("session", (session: Tracked<ServerHttp2Session>) => {
    sessions.add(session)
    session[stateOf] = { session, opened: 0, resets: 0, cut: false }
    session.once("close", onSessionClose)
    if (idleMs > 0) session.setTimeout(idleMs, onIdle)
    if (draining) session.close()
  })
  server.on("stream", (stream: Tracked<ServerHttp2Stream>, _headers: unknown, _flags: number, raw: ReadonlyArray<string>) => {
    const session = stream.session as Tracked<ServerHttp2Session> | undefined
    const state = session?.[stateOf]
    if (state === undefined) return
    if (state.cut) {
      stream.close(Http2Error.REFUSED_STREAM)
      return
    }
    // node:http2 holds a stream's header list to SETTINGS_MAX_HEADER_LIST_SIZE only once the
    // client acknowledged that setting (64 KiB before); a client that never does is held here.
    // (Refused before the Rapid Reset count listens to the stream: not a client reset.)
    if (session!.pendingSettingsAck && headerListBytes(raw) > maxHeaderList) {
      stream.close(Http2Error.ENHANCE_YOUR_CALM)
      return
    }
    state.opened++
    stream[stateOf] = state
    stream.once("aborted", onStreamAborted)
  })
  server.on("sessionError", (error: Error) => {
    const reason = goawayReason(error)
    if (reason !== undefined) count(reason)
  })
  // Streams refused above still come here (node:http2's compatibility layer makes them requests).
  const onStreamRequest = (req: Http2ServerRequest, res: Http2ServerResponse) => {
    if (!req.stream.closed) onRequest(req, res)
  }
  server.on("request", onStreamRequest)
  // node:http2 emits CONNECT streams apart; the request handler tells WebSockets from the rest.
  server.on("connect", onStreamRequest)

  return {
    take: (socket) => {
      // node:http's sockets are half-open: a client that ends its side would leave the session
      // open, its socket waiting for an end from the gateway that nghttp2 never writes.
      socket.allowHalfOpen = false
      server.emit("connection", socket)
    },
    apply: (next) => {
      idleMs = next.limits?.idle_timeout ?? limitDefaults.idle_timeout
      const settings = settingsOf(next)
      maxHeaderList = settings.maxHeaderListSize
      server.updateSettings(settings)
    },
    goAway: () => {
      draining = true
      for (const session of sessions) session.close()
    },
    destroyAll: () => {
      for (const session of sessions) session.destroy()
    },
    close: () => gauge.remove()
  }
}

/**
 * Hands the TLS connections whose ALPN chose h2 to `h2`; the others (http/1.1, or no ALPN) go to
 * node:https's own listener as before.
 */
export const routeByAlpn = (tls: TlsServer, h2: Http2Listener): void => {
  const http1 = tls.listeners("secureConnection") as Array<(socket: TLSSocket) => void>
  tls.removeAllListeners("secureConnection")
  tls.on("secureConnection", (socket: TLSSocket) => {
    // Refused after its handshake (an unverified client certificate, see HandshakeFailures.ts).
    if (socket.destroyed) return
    if (socket.alpnProtocol === "h2") h2.take(socket)
    else for (const listener of http1) listener.call(tls, socket)
  })
}

/**
 * `h2c`: a connection that opens with the HTTP/2 preface goes to `h2`, any other to node:http's
 * own listener, with the bytes read to decide put back first. A client that sends nothing is cut
 * after `headerTimeoutMs()` (0: never), as node:http would cut a head that never comes.
 */
export const routeByPreface = (http: HttpServer, h2: Http2Listener, headerTimeoutMs: () => number): void => {
  const http1 = http.listeners("connection") as Array<(socket: Socket) => void>
  http.removeAllListeners("connection")
  http.on("connection", (socket: Socket) => {
    let seen: Buffer | undefined
    const timeout = headerTimeoutMs()
    const onTimeout = () => socket.destroy()
    const onError = () => socket.destroy()
    socket.on("error", onError)
    if (timeout > 0) socket.setTimeout(timeout, onTimeout)
    const onData = (chunk: Buffer) => {
      seen = seen === undefined ? chunk : Buffer.concat([seen, chunk])
      const n = Math.min(seen.length, PREFACE.length)
      const isHttp2 = seen.compare(PREFACE, 0, n, 0, n) === 0
      if (isHttp2 && n < PREFACE.length) return
      socket.removeListener("data", onData)
      socket.removeListener("error", onError)
      if (timeout > 0) {
        socket.setTimeout(0)
        socket.removeListener("timeout", onTimeout)
      }
      socket.pause()
      socket.unshift(seen)
      // node:http2 reads what is buffered itself; node:http needs the socket flowing again.
      if (isHttp2) h2.take(socket)
      else {
        for (const listener of http1) listener.call(http, socket)
        socket.resume()
      }
    }
    socket.on("data", onData)
  })
}
