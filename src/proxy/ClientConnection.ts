/**
 * What the gateway keeps about one client connection across its requests, so that a pipeline
 * behaves as RFC 9112 §9.3 asks:
 *
 * - responses go out in order, and an error the parser finds later waits for the responses
 *   to the requests already taken (never a status line inside another response's body);
 * - once a response that closes the connection is decided, no request behind it runs (nobody
 *   would read its answer);
 * - unsafe requests run one after another, after everything before them has been answered
 *   (only safe methods may run in parallel, §9.3.2);
 * - a close while the client may still be sending lingers: the gateway half-closes and keeps
 *   reading (and dropping) for a bound, as nginx's lingering close does, so the kernel does
 *   not answer unread bytes with a reset that destroys the response before the client reads it.
 *
 * One object per connection, made on its first request; per request it costs a counter, a
 * flag test and one `close` listener.
 */
import type { IncomingMessage, ServerResponse } from "node:http"
import type { Socket } from "node:net"
import type { Duplex } from "node:stream"
import type { GatewayError } from "../middleware/GatewayError.ts"

const state = Symbol("fibergate.clientConnection")

/** RFC 9110 §9.2.1: these may run in parallel within a pipeline. */
const isSafe = (method: string) => method === "GET" || method === "HEAD" || method === "OPTIONS" || method === "TRACE"

/** How long a lingering close waits for the client to stop sending (nginx: lingering_timeout 5s). */
const LINGER_IDLE_MS = 5_000
/** The longest a lingering close reads (nginx: lingering_time 30s). */
const LINGER_MAX_MS = 30_000

interface Held {
  readonly method: string
  readonly req: IncomingMessage
  readonly res: ServerResponse
  readonly run: () => void
}

/** A running request whose body the gateway is still reading (an exchange). */
export interface Receiving {
  readonly req: IncomingMessage
  /** Ends the request with `error`, answered the way any other failure is. */
  interrupt(error: GatewayError): void
}

/** How the parser's refusal is delivered, depending on where it lands. */
export interface Refusal {
  readonly error: GatewayError
  /** Writes the answer straight on the socket and closes (no response is pending). */
  readonly raw: () => void
  /** Answers a request that was taken but never run, through its own response. */
  readonly reply: (res: ServerResponse, error: GatewayError) => void
}

export class ClientConnection {
  /** Requests taken on this connection (held ones included) whose responses are not done. */
  inFlight = 0
  /** A response that ends the connection is decided: requests behind it are not run. */
  closing = false
  /** The parser refused bytes on this connection: it has (or will have) its one answer. */
  refused = false
  /**
   * Requests running (started, responses not done). Responses finish in request order and held
   * requests come last, so a finished response is a running one, or the one the refusal answered.
   */
  private running = 0
  private held: Array<Held> | undefined = undefined
  /**
   * The running request whose body is still coming, if any: a refusal found inside its body
   * (a bad chunk, a timeout) is that request's answer.
   */
  receiving: Receiving | undefined = undefined
  /** An unsafe request is running: it runs alone. */
  private exclusive = false
  /** The parser's refusal, written once the responses in flight are done. */
  private refusal: (() => void) | undefined = undefined
  /** The request whose response closes the connection (see closeAfter). */
  private closer: IncomingMessage | undefined = undefined
  /** The last request taken was answered by the refusal without running. */
  private answered = false
  /** A request was dropped behind the closing one: its bytes may still be coming. */
  private dropped = false
  private lingering = false
  /** The closing response is written; the socket only reads what the client still sends. */
  private drainingRest = false
  readonly socket: Socket
  /** The `close` listener of every response on this connection (one function, made once). */
  readonly responseDone: () => void

  constructor(socket: Socket) {
    this.socket = socket
    this.responseDone = () => this.onResponseDone()
  }

  /** Whether the connection is closing and reading only to let the client's last bytes drain. */
  get lingers(): boolean {
    return this.drainingRest
  }

  /**
   * Takes a request: counts it until its response is done. Returns false when the request
   * must not run at all (a response before it closes the connection); its body is read and
   * dropped, so that the close can linger past it.
   */
  take(req: IncomingMessage, res: ServerResponse): boolean {
    if (this.closing || this.refused) {
      this.dropped = true
      req.resume()
      return false
    }
    this.inFlight++
    // `on`, not `once`: a response closes once, and `once` would wrap the listener per request.
    res.on("close", this.responseDone)
    // node:http detaches `req.socket` once a body has been read; the response keeps its connection.
    ;(res as ServerResponse & { [state]?: ClientConnection })[state] = this
    // The client asked to close (or spoke HTTP/1.0 without keep-alive): this is the last one.
    if (!res.shouldKeepAlive) this.closing = true
    return true
  }

  /**
   * Whether a request with `method` may run now; if not, `hold` it. A safe request runs
   * alongside other safe ones; an unsafe one runs alone, once everything before it is
   * answered; and nothing overtakes a request that waits.
   */
  admits(method: string): boolean {
    if (this.held !== undefined && this.held.length > 0) return false
    if (this.running === 0) {
      this.running = 1
      this.exclusive = !isSafe(method)
      return true
    }
    if (this.exclusive || !isSafe(method)) return false
    this.running++
    return true
  }

  /** Runs `run` once the requests before it allow (see `admits`). */
  hold(method: string, req: IncomingMessage, res: ServerResponse, run: () => void): void {
    ;(this.held ??= []).push({ method, req, res, run })
  }

  /**
   * Delivers the parser's refusal. When it lands in the body of the request being read, it is
   * that request's answer (through its exchange, or its own response if it never ran). Else
   * the responses to the requests already taken go out first, and the refusal is written
   * after them; a connection that already has its closing response gets no second one.
   */
  refuse(refusal: Refusal): void {
    if (this.refused) return
    this.refused = true
    const receiving = this.receiving
    if (receiving !== undefined && !receiving.req.complete) {
      this.receiving = undefined
      this.closing = true
      receiving.interrupt(refusal.error)
      return
    }
    const held = this.held
    const last = held?.[held.length - 1]
    if (last !== undefined && !last.req.complete) {
      // Answered in its turn (node:http queues the response), never run; it is the last
      // request taken, so its response is the last to finish.
      held!.pop()
      this.answered = true
      this.closing = true
      // Its closing response stops nothing: the requests still held came before it.
      const closer = this.closer
      refusal.reply(last.res, refusal.error)
      this.closer = closer
      return
    }
    if (this.closing) {
      // A response that closes the connection is already on its way: it is the last word.
      if (this.inFlight === 0) this.socket.end()
      return
    }
    this.closing = true
    if (this.inFlight === 0) return refusal.raw()
    // Stop reading: nothing after the bad bytes can be trusted, and the responses still to
    // come go out first.
    this.socket.pause()
    this.refusal = refusal.raw
  }

  /**
   * The response to `req` ends the connection: requests behind it are not run. When the
   * client may still be sending once it is written (its request, or one dropped behind it, is
   * not all in), the close lingers (see the module's doc).
   */
  closeAfter(req: IncomingMessage, res: ServerResponse): void {
    res.shouldKeepAlive = false
    this.closing = true
    this.closer ??= req
    if (this.lingering) return
    this.lingering = true
    const socket = this.socket
    const destroySoon = socket.destroySoon
    // node:http ends the connection of a last response with `destroySoon` once the response is
    // written; for this socket that becomes a lingering close if bytes may still be coming (a
    // request without a body is complete only after its 'request' event, so this is decided then).
    socket.destroySoon = () => {
      if (req.complete && !this.dropped) destroySoon.call(socket)
      else {
        this.drainingRest = true
        lingeringClose(socket, req)
      }
    }
  }

  private onResponseDone(): void {
    // The answered request's response comes last of all; any other was running.
    if (--this.inFlight === 0 && this.answered) this.answered = false
    else if (--this.running === 0) this.exclusive = false
    const held = this.held
    if (held !== undefined && held.length > 0) {
      if (this.socket.destroyed) held.length = 0
      while (held.length > 0) {
        // Behind the closing response nothing runs.
        if (this.closer !== undefined) {
          this.dropHeld(held)
          break
        }
        const safe = isSafe(held[0].method)
        if (safe ? this.exclusive : this.running > 0) break
        const next = held.shift()!
        this.running++
        if (!safe) this.exclusive = true
        next.run()
        if (!safe) break
      }
    }
    if (this.inFlight === 0 && this.refusal !== undefined) {
      const answer = this.refusal
      this.refusal = undefined
      // Reading again lets the close be seen (a paused socket never learns that the peer left).
      this.socket.resume()
      answer()
    }
  }

  private dropHeld(held: Array<Held>): void {
    for (const h of held) h.req.resume()
    held.length = 0
    this.dropped = true
  }
}

/** Half-closes, then reads and drops what still comes until the client closes or a bound passes. */
const lingeringClose = (socket: Socket, req: IncomingMessage): void => {
  if (socket.destroyed) return
  socket.end()
  // The rest of the request body goes nowhere; reading it is what keeps the socket draining.
  // A body stream the upstream side already destroyed (an early answer) would stop the socket
  // again on every chunk: node:http's own `_dump` marks it so that the parser drops the bytes.
  const dump = (req as IncomingMessage & { _dump?: () => void })._dump
  if (typeof dump === "function") dump.call(req)
  else req.resume()
  socket.resume()
  // node:http's timeout handler destroys an idle socket.
  socket.setTimeout(LINGER_IDLE_MS)
  const cap = setTimeout(() => socket.destroy(), LINGER_MAX_MS)
  cap.unref()
  socket.once("close", () => clearTimeout(cap))
  socket.once("end", () => socket.destroy())
}

/** The connection `socket` belongs to, made on first use. */
export const connectionOf = (socket: Socket): ClientConnection => {
  const s = socket as Socket & { [state]?: ClientConnection }
  return s[state] ??= new ClientConnection(socket)
}

/**
 * The connection a response belongs to (set when its request was taken). Use this rather than
 * `connectionOf(req.socket)` once a request body may have been read.
 */
export const connectionOfResponse = (res: ServerResponse): ClientConnection | undefined =>
  (res as ServerResponse & { [state]?: ClientConnection })[state]

/**
 * The response to `req` ends its connection (`ClientConnection.closeAfter`); a response whose
 * request was never taken (nothing to order) just says `Connection: close`.
 */
export const closeAfterResponse = (req: IncomingMessage, res: ServerResponse): void => {
  const connection = connectionOfResponse(res)
  if (connection !== undefined) connection.closeAfter(req, res)
  else res.shouldKeepAlive = false
}

/** The connection of `socket` if a request was ever taken on it. */
export const existingConnection = (socket: Duplex): ClientConnection | undefined =>
  (socket as Duplex & { [state]?: ClientConnection })[state]

const upgrade = Symbol("fibergate.upgradeRequested")

/**
 * node:http's `shouldUpgradeCallback`: a WebSocket handshake (an HTTP/1.1 GET asking to
 * upgrade to `websocket`, RFC 6455 §4.1) goes to the `upgrade` listener; any other upgrade
 * (h2c, TLS) is declined and the request handed over as a plain one.
 */
export const acceptWebSocketUpgrade = (req: IncomingMessage): boolean =>
  req.method === "GET" && req.httpVersionMajor === 1 && req.httpVersionMinor === 1 && /(?:^|,)\s*websocket\s*(?:,|$)/i.test(String(req.headers.upgrade ?? ""))
    ? true
    : declineUpgrade(req)

/**
 * Declines an upgrade: the request is handed over as a plain one; it is marked, because
 * node:http drops the bytes read with its head, so nothing after it on the connection can be trusted.
 */
export const declineUpgrade = (req: IncomingMessage): boolean => {
  ;(req as IncomingMessage & { [upgrade]?: boolean })[upgrade] = true
  return false
}

/** Whether `req` asked for an upgrade that `declineUpgrade` declined. */
export const upgradeDeclined = (req: IncomingMessage): boolean => (req as IncomingMessage & { [upgrade]?: boolean })[upgrade] === true
