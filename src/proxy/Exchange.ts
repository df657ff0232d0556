/**
 * One request/response exchange between a client and an upstream: an undici dispatch handler
 * that streams the response straight into node:http's `ServerResponse`, with backpressure both
 * ways (undici pauses reading the upstream while the client socket is full). One object per
 * request, methods on the prototype: no per-request closures beyond the one close listener.
 */
import type { Tunnels } from "./WebSocketTunnel.ts"
import type { IncomingMessage, ServerResponse } from "node:http"
import type { Dispatcher } from "undici"
import type { AccessLog } from "../telemetry/AccessLog.ts"
import type { RouteMetrics } from "../telemetry/Metrics.ts"
import type { PickContext } from "../upstream/Endpoint.ts"
import type { Endpoint, UpstreamGroup } from "../upstream/UpstreamGroup.ts"
import { errorResponse, grpcErrorHeaders, grpcErrorTrailers, isGrpc, PayloadTooLarge, UpstreamProtocolError, UpstreamResponseTimeout, UpstreamTimeout, type GatewayError } from "../middleware/GatewayError.ts"
import type { HeaderRules } from "./HeaderRules.ts"
import { closeAfterResponse, connectionOfResponse, type ClientConnection, type Receiving } from "./ClientConnection.ts"
import { transferCodings } from "./TransferCoding.ts"
import { connectionTokens, HOP_BY_HOP } from "../middleware/HopByHop.ts"
import { fromUpstreamError } from "./UpstreamErrors.ts"
import { endWithHead, HTTP2_SETTINGS, isHttp2, resetStream } from "./Http2Streams.ts"
import { lookupHeader } from "./RequestHeaders.ts"
import { GrpcFraming } from "./GrpcCalls.ts"
import { RequestBody } from "./RequestBody.ts"
import type { Duplex, Readable } from "node:stream"
import type * as Tracer from "effect/Tracer"
import { endSpan, formatTraceParent, startSpan } from "../telemetry/Tracing.ts"
import * as Effect from "effect/Effect"
import { retryable, type RetryPolicy, type TryFailure } from "../resilience/RetryPolicy.ts"
import { retryTries, type FailedTry, type RetryingExchange } from "./Retries.ts"
import { admitRetry, countRequest } from "../resilience/RetryBudget.ts"
import { ejectionMs, recordOutcome, type OutlierFailure } from "../resilience/Outlier.ts"
import { abandonProbe, circuitTryStarted, openDurationMs, recordCircuit } from "../resilience/Circuit.ts"

const JSON_TYPE = "application/json"
const bodyTooLarge = new PayloadTooLarge({ message: "The request body is too large" })
const routeTimeout = new UpstreamTimeout({ message: "The route timeout expired" })
const callDeadline = new UpstreamTimeout({ message: "The call's grpc-timeout expired" })
const codingForClient = new UpstreamProtocolError({ message: "The upstream's transfer coding cannot be sent to an HTTP/1.0 or HTTP/2 client" })

/** undici takes the TLS name per request (its types leave it out); see Endpoint.servername. */
type ServernameDispatch = Dispatcher.DispatchOptions & { readonly servername: string | undefined }

/** Set when the listener starts draining: responses written from then on close their connection. */
export interface DrainState {
  draining: boolean
  /** The listener's open WebSocket tunnels, told to go away when it drains. */
  readonly tunnels?: Tunnels | undefined
}

/**
 * Answers a request with a gateway error. When the response has already started, the only
 * honest signal left is to cut the connection, so the client sees a truncated response
 * rather than a complete-looking wrong one.
 */
export const sendError = (res: ServerResponse, error: GatewayError, close: boolean, extra?: ReadonlyArray<string>): number => {
  if (res.headersSent) {
    // A response still queued behind others (pipelining) has no socket yet: destroying it
    // alone would leave its half-written head to be flushed later, and the connection hung.
    // The connection is cut when its turn comes instead.
    if (resetStream(res)) return 0
    if (res.socket === null) res.once("socket", (socket: Duplex) => socket.destroy())
    else res.destroy()
    return 0
  }
  if (close) closeAfterResponse(res.req, res)
  if (isGrpc(lookupHeader(res.req.rawHeaders, "content-type"))) {
    // A gRPC client reads the status from grpc-status, not from HTTP (which stays 200).
    const head = grpcErrorHeaders(error)
    head.push("content-type", "application/grpc")
    if (extra !== undefined) for (let i = 0; i < extra.length; i++) head.push(extra[i])
    if (isHttp2(res.req)) endWithHead(res, 200, head)
    else {
      res.writeHead(200, head)
      res.end()
    }
    return 200
  }
  const { body, headers, status } = errorResponse(error)
  const head = ["content-type", JSON_TYPE, "content-length", String(Buffer.byteLength(body)), "cache-control", "no-store"]
  for (let i = 0; i < headers.length; i++) head.push(headers[i])
  if (extra !== undefined) for (let i = 0; i < extra.length; i++) head.push(extra[i])
  res.writeHead(status, head)
  res.end(body)
  return status
}

class ClientGone extends Error {
  override readonly name = "ClientGone"
}

class TryAbandoned extends Error {
  override readonly name = "TryAbandoned"
}

/** Route data the exchange needs once the route is chosen. */
export interface ExchangeRoute {
  readonly id: string
  readonly group: UpstreamGroup
  readonly responseHeaders: HeaderRules
  readonly timeoutMs: number | undefined
  readonly retry: RetryPolicy | undefined
  readonly metrics: RouteMetrics
}

/** What the upstream request looks like; the same for every try. */
export interface UpstreamRequest {
  readonly method: string
  readonly path: string
  readonly headers: Array<string>
  /**
   * A stream is sent once; a buffered body (a Buffer) can be sent again by a retry. Set when
   * the exchange starts (a buffered body is read after the exchange exists).
   */
  body: Readable | Buffer | null
  /** The declared Content-Length, -1 when none (a counted stream then says how much came). */
  readonly contentLength: number
  /** A gRPC call's own deadline (grpc-timeout) in ms, when it comes before the route timeout. */
  readonly deadlineMs: number | undefined
}

/** What the request's pipeline adds to the exchange it hands a request to. */
export interface ExchangeHooks {
  /** The identity an auth middleware established, for the access log. */
  readonly consumer: string | undefined
  /** Headers added to the response, whether the upstream's or the gateway's error. */
  readonly responseHeaders: ReadonlyArray<string> | undefined
  /** Interrupts the request's fiber: the exchange ended while its retries waited out a backoff. */
  stop(): void
}

/** Resumes the request's fiber, suspended in the forwarder, with what it runs next. */
export type Resume = (next: Effect.Effect<void, GatewayError>) => void

/** A response with a retryable status, paused while the retries decide whether another try goes. */
interface Held {
  readonly attempt: Try
  readonly controller: Dispatcher.DispatchController
  readonly statusCode: number
  readonly headers: Record<string, string | Array<string> | undefined>
  readonly statusMessage: string | undefined
  /** Set when the held try failed while paused (its connection went). */
  lost: GatewayError | undefined
}


/**
 * The trailer fields to pass on (hop-by-hop ones dropped), as an object: node:http2's
 * `addTrailers` takes no list of pairs. Undefined when there are none.
 */
const trailerFields = (trailers: Record<string, string | Array<string> | undefined>): Record<string, string | Array<string>> | undefined => {
  let fields: Record<string, string | Array<string>> | undefined
  for (const name in trailers) {
    const value = trailers[name]
    if (value === undefined || HOP_BY_HOP.has(name)) continue
    ;(fields ??= {})[name] = value
  }
  return fields
}

const failureOf = (error: GatewayError): TryFailure | undefined =>
  error._tag === "UpstreamConnectError"
    ? "connect-failure"
    : error._tag === "UpstreamReset"
    ? "reset"
    : error._tag === "UpstreamConnectTimeout"
    ? "connect-failure"
    : error._tag === "UpstreamResponseTimeout" || error._tag === "UpstreamBodyTimeout"
    ? "timeout"
    : error._tag === "UpstreamProtocolError"
    // A response that broke the protocol is the upstream's failure, as a 502 of its own is:
    // retried where 502 is, and a 5xx to outlier detection.
    ? 502
    : undefined

/**
 * One try: the undici dispatch handler of one attempt. Callbacks of a try the exchange has
 * moved on from (abandoned for a retry) are ignored.
 */
class Try implements Dispatcher.DispatchHandler {
  controller: Dispatcher.DispatchController | undefined = undefined
  /** This try's per-try timer, if the route has one. */
  timer: NodeJS.Timeout | undefined = undefined
  /** The half-open period this try probes (from circuitTryStarted), 0 when it is no probe. */
  probe = 0
  /** This try's client span, when the request is traced. */
  span: Tracer.Span | undefined = undefined
  readonly exchange: Exchange
  readonly endpoint: Endpoint
  readonly number: number
  constructor(exchange: Exchange, endpoint: Endpoint, number: number) {
    this.exchange = exchange
    this.endpoint = endpoint
    this.number = number
  }
  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller
    if (this.exchange.current !== this) controller.abort(new TryAbandoned("try no longer current"))
  }
  onResponseStart(
    controller: Dispatcher.DispatchController,
    statusCode: number,
    headers: Record<string, string | Array<string> | undefined>,
    statusMessage?: string
  ): void {
    if (this.exchange.current === this) this.exchange.onResponseStart(this, controller, statusCode, headers, statusMessage)
  }
  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.exchange.current === this) this.exchange.onResponseData(controller, chunk)
  }
  onResponseEnd(_controller: Dispatcher.DispatchController, trailers: Record<string, string | Array<string> | undefined>): void {
    if (this.exchange.current === this) this.exchange.onResponseEnd(trailers)
  }
  onResponseError(_controller: Dispatcher.DispatchController, error: Error): void {
    if (this.exchange.current === this) this.exchange.onTryError(this, fromUpstreamError(error))
  }
}

/**
 * Feeds one try's outcome to the endpoint's circuit breaker and to outlier detection, which
 * open the circuit or eject the endpoint when their rules say so.
 */
const recordTry = (group: UpstreamGroup, attempt: Try, failure: OutlierFailure | undefined): void => {
  const endpoint = attempt.endpoint
  const circuit = group.circuit
  if (circuit !== undefined && recordCircuit(circuit, endpoint, failure, attempt.probe) === "opened") {
    group.onCircuitOpen(endpoint, openDurationMs(circuit, endpoint.circuitOpens))
  }
  attempt.probe = 0
  const policy = group.outlier
  if (policy === undefined) return
  if (failure === undefined && endpoint.consecutiveFailures === 0) return
  let ejected = 0
  if (failure !== undefined) for (const e of group.endpoints) if (e.ejected) ejected++
  if (recordOutcome(policy, endpoint, failure, ejected, group.endpoints.length)) {
    group.onEject(endpoint, ejectionMs(policy, endpoint.ejections))
  }
}

const outlierFailureOf = (failure: TryFailure | undefined): OutlierFailure | undefined =>
  failure === undefined ? undefined : typeof failure === "number" ? "5xx" : failure

const exchangeOfResponse = Symbol("fibergate.exchange")
type ExchangeResponse = ServerResponse & { [exchangeOfResponse]?: Exchange }

/**
 * The `close` listener of every exchange's response (`this` is the response): one function for
 * all, not a closure per exchange stored on it. With that closure, each request's objects
 * (exchange, request, response, headers) survived two scavenges and were promoted, about 600
 * bytes per request even at one connection (--trace-gc-nvp); without it, 77, which is what
 * node:http and undici alone promote. V8 pretenures closures stored on a property (Effect's
 * fiber code avoids them for the same reason), and an old-generation closure keeps what its
 * context holds alive until a mark-compact. Fewer promotions mean shorter scavenges (0.44 ms
 * instead of 0.85 on average) and a smaller old generation under load.
 */
function onClientClose(this: ExchangeResponse): void {
  this[exchangeOfResponse]?.clientClosed()
}

export class Exchange implements Receiving, RetryingExchange {
  current: Try | undefined = undefined
  /** Resumes the request's fiber once the exchange has finished (or with its retries). */
  resume: Resume | undefined = undefined
  /** Resumes the retries with the current try's outcome, once they run. */
  private tryResume: ((outcome: Effect.Effect<void, FailedTry>) => void) | undefined = undefined
  /** Whether the request's fiber runs this exchange's retries. */
  private retrying = false
  /** The try whose failure the retries are deciding on. */
  private failed: Try | undefined = undefined
  /** The endpoint the next try goes to, once a retry is admitted. */
  private next: Endpoint | undefined = undefined
  private held: Held | undefined = undefined
  private timer: NodeJS.Timeout | undefined = undefined
  private done = false
  private readonly started: number
  private tryStarted = 0
  private status = 0
  private bytes = 0
  /** Endpoints already tried, so a retry goes elsewhere when it can. */
  private tried: Array<Endpoint> | undefined = undefined
  /** The response head received from the upstream and not yet written (see onResponseStart). */
  private head: Array<string> | undefined = undefined
  private statusMessage: string | undefined = undefined
  /** The message framing of a gRPC response to an HTTP/2 client, once its head is accepted. */
  private grpc: GrpcFraming | undefined = undefined
  private attempts = 0
  private tracer: Tracer.Tracer | undefined = undefined
  /** The server span of a sampled request. */
  private span: Tracer.Span | undefined = undefined
  /** The trace this request belongs to, for the access log (also when it is not sampled). */
  private traceId: string | undefined = undefined
  /** The request's pipeline, when the exchange has one. */
  pipeline: ExchangeHooks | undefined = undefined
  /** The client connection (node:http detaches `req.socket` once the body is read). */
  private readonly connection: ClientConnection | undefined
  readonly req: IncomingMessage
  readonly res: ServerResponse
  readonly route: ExchangeRoute
  readonly request: UpstreamRequest
  readonly accessLog: AccessLog | undefined
  readonly path: string
  readonly pickContext: PickContext
  readonly drain: DrainState

  constructor(
    req: IncomingMessage,
    res: ServerResponse,
    route: ExchangeRoute,
    request: UpstreamRequest,
    accessLog: AccessLog | undefined,
    path: string,
    pickContext: PickContext,
    drain: DrainState
  ) {
    this.req = req
    this.res = res
    this.route = route
    this.request = request
    this.accessLog = accessLog
    this.path = path
    this.pickContext = pickContext
    this.drain = drain
    this.started = performance.now()
    route.group.active++
    countRequest(route.group.retryBudget, this.started)
    ;(res as ExchangeResponse)[exchangeOfResponse] = this
    res.on("close", onClientClose)
    // Until its body is in, a refusal the parser finds on this connection is this request's.
    this.connection = connectionOfResponse(res)
    if (this.connection !== undefined) this.connection.receiving = this
    const timeoutMs = request.deadlineMs ?? route.timeoutMs
    if (timeoutMs !== undefined) this.timer = setTimeout(() => this.onRouteTimeout(), timeoutMs)
  }

  /** Ties the exchange to its trace: the server span when sampled; the trace id either way. */
  trace(tracer: Tracer.Tracer | undefined, span: Tracer.Span | undefined, traceId: string | undefined): void {
    this.tracer = tracer
    this.span = span
    this.traceId = traceId
  }

  /** The client closed the connection before the response was done. */
  clientClosed(): void {
    if (!this.done) this.abort(new ClientGone("client closed the connection"), undefined)
  }

  /** Ends the exchange with an error found in the client's request (see ClientConnection.Receiving). */
  interrupt(error: GatewayError): void {
    this.abort(new TryAbandoned("the client's request failed"), error)
  }

  /** Whether the exchange has ended (answered, failed, or the client left). */
  get finished(): boolean {
    return this.done
  }

  /** Starts with a body read in full first (so that a retry can send it again). */
  startWithBody(endpoint: Endpoint, body: Buffer): void {
    this.request.body = body
    this.start(endpoint)
  }

  /** Sends try number `number` to `endpoint`. */
  start(endpoint: Endpoint, number = 1): void {
    const attempt = new Try(this, endpoint, number)
    this.current = attempt
    this.attempts = number
    endpoint.active++
    if (this.route.group.circuit !== undefined) attempt.probe = circuitTryStarted(endpoint)
    this.tryStarted = performance.now()
    const perTry = this.route.retry?.perTryTimeoutMs
    if (perTry !== undefined) attempt.timer = setTimeout(() => this.onTryTimeout(attempt), perTry)
    const request = this.request
    let headers = request.headers
    if (this.span !== undefined) headers = this.startTrySpan(attempt, number)
    const options: ServernameDispatch = { origin: endpoint.origin, method: request.method as "GET", path: request.path, headers, body: request.body, servername: endpoint.servername }
    endpoint.pool.dispatch(options, attempt)
  }

  /**
   * A client span for one try, a sibling of the other tries under the server span; the try's
   * own headers carry it upstream as the parent (a queued dispatch reads its headers later, so
   * tries never share the array).
   */
  private startTrySpan(attempt: Try, number: number): Array<string> {
    const endpoint = attempt.endpoint
    const method = this.request.method
    const span = startSpan(this.tracer!, method, "client", this.span)
    span.attribute("http.request.method", method)
    span.attribute("server.address", endpoint.hostname)
    span.attribute("server.port", endpoint.port)
    span.attribute("url.full", endpoint.origin + this.request.path)
    span.attribute("fibergate.upstream", this.route.group.name)
    if (number > 1) span.attribute("http.request.resend_count", number - 1)
    attempt.span = span
    const headers = this.request.headers.slice()
    headers.push("traceparent", formatTraceParent(span.traceId, span.spanId, span.sampled))
    return headers
  }

  /** Ends a try's client span with the upstream's status, or the error that ended the try. */
  private endTrySpan(attempt: Try, status: number, error: string | undefined) {
    const span = attempt.span
    if (span === undefined) return
    attempt.span = undefined
    if (status > 0) span.attribute("http.response.status_code", status)
    if (error !== undefined) span.attribute("error.type", error)
    else if (status >= 400) span.attribute("error.type", String(status))
    endSpan(span, error ?? (status >= 400 ? String(status) : undefined))
  }

  private endTry(attempt: Try) {
    attempt.endpoint.active--
    if (attempt.timer !== undefined) {
      clearTimeout(attempt.timer)
      attempt.timer = undefined
    }
  }

  private onRouteTimeout() {
    this.timer = undefined
    this.abort(new Error("route timeout"), this.request.deadlineMs === undefined ? routeTimeout : callDeadline)
  }

  private onTryTimeout(attempt: Try) {
    attempt.timer = undefined
    if (this.current !== attempt || this.done) return
    // Decide first (retry or answer 504): undici calls onResponseError synchronously from
    // abort(), and by then this try must no longer be current.
    this.onTryError(attempt, new UpstreamResponseTimeout({ message: "The per-try timeout expired" }))
    this.cutBody()
    attempt.controller?.abort(new TryAbandoned("per-try timeout"))
  }

  /**
   * A try failed before the response started. Retries when the policy, the method, the
   * budget and the request (no body, or a buffered one) allow it, on another endpoint when
   * there is one.
   */
  onTryError(attempt: Try, reported: GatewayError): void {
    // A body cut at max_body_bytes fails the try with whichever error undici saw first.
    const body = this.request.body
    const error = body instanceof RequestBody && body.overLimit ? bodyTooLarge : reported
    // Only for the current try of a running exchange (Try and onTryTimeout check).
    const held = this.held
    if (held !== undefined && held.attempt === attempt) {
      // Its 5xx was counted; the retries deciding on it see that it is gone.
      held.lost = error
      return
    }
    this.endTry(attempt)
    this.head = undefined
    this.endTrySpan(attempt, 0, error._tag)
    const failure = failureOf(error)
    this.route.group.metrics.attempt(
      failure === "connect-failure"
        ? "connect_error"
        : failure === "timeout" || failure === "reset"
        ? failure
        : error._tag === "UpstreamProtocolError"
        ? "protocol_error"
        : "error"
    )
    recordTry(this.route.group, attempt, outlierFailureOf(failure))
    if (failure !== undefined && this.toRetries(attempt, { failure, error })) return
    this.finish(this.answerError(error), error._tag)
  }

  /** Whether the route's policy allows retrying this failure (the schedule and the endpoints decide the rest). */
  private retryable(failure: TryFailure): boolean {
    const policy = this.route.retry
    const body = this.request.body
    if (policy === undefined || this.res.headersSent || (body !== null && !Buffer.isBuffer(body))) return false
    return retryable(policy, this.request.method, failure)
  }

  /**
   * Hands a retryable failure to the retries in the request's fiber, starting them at the
   * request's first one. A held response stays the current try until they decide.
   */
  private toRetries(attempt: Try, failed: FailedTry): boolean {
    if (!this.retryable(failed.failure)) return false
    const tryResume = this.tryResume
    const resume = this.resume
    if (tryResume === undefined && resume === undefined) return false
    this.failed = attempt
    if (this.held === undefined) this.current = undefined
    if (tryResume !== undefined) {
      this.tryResume = undefined
      tryResume(Effect.fail(failed))
    } else {
      this.resume = undefined
      this.retrying = true
      resume!(retryTries(this, this.route.retry!.schedule, failed))
    }
    return true
  }

  /** The retries' `while`, once the schedule allows another try: is there an endpoint, and budget? */
  admitRetry(failed: FailedTry): boolean {
    if (this.done) return false
    const attempt = this.failed!
    const group = this.route.group
    const tried = this.tried ?? (this.tried = [])
    tried.push(attempt.endpoint)
    // Pick again, avoiding endpoints already tried when another one is available
    // (Pingora: fail_to_connect -> upstream_peer).
    const eligible = group.eligible
    const next = (group.balancer.pick(this.pickContext, (e) => !tried.includes(e as Endpoint) && (eligible === undefined || eligible(e))) ??
      group.balancer.pick(this.pickContext, eligible)) as Endpoint | undefined
    if (next === undefined) return false
    // Charged to the upstream's retry budget, except after a connect failure (free: that try
    // reached no upstream); refused when the budget is spent.
    if (!admitRetry(group.retryBudget, failed.failure, performance.now())) {
      group.metrics.retryRefused()
      return false
    }
    const held = this.held
    if (held !== undefined) {
      // The retry replaces the held response; none of it is sent.
      this.held = undefined
      this.current = undefined
      this.endTry(attempt)
      this.endTrySpan(attempt, held.statusCode, undefined)
      held.controller.abort(new TryAbandoned("retrying"))
    }
    this.next = next
    group.metrics.retry()
    return true
  }

  /** The retries' next try, after the backoff. */
  startRetry(resume: (outcome: Effect.Effect<void, FailedTry>) => void): void {
    if (this.done) return resume(Effect.void)
    this.tryResume = resume
    this.start(this.next!, this.attempts + 1)
  }

  /** No retry follows `failed`: its error is the answer, or the held response goes through. */
  giveUp(failed: FailedTry): void {
    this.retrying = false
    if (this.done) return
    const held = this.held
    if (held !== undefined) {
      this.held = undefined
      if (held.lost === undefined) {
        this.accept(held.attempt, held.statusCode, held.headers, held.statusMessage)
        // accept() may have ended the exchange (a coding an HTTP/1.0 client cannot take).
        if (!this.done) held.controller.resume()
        return
      }
      this.endTry(held.attempt)
      this.endTrySpan(held.attempt, 0, held.lost._tag)
      this.finish(this.answerError(held.lost), held.lost._tag)
      return
    }
    // The access log names the upstream of the last try.
    this.current = this.failed
    const error = failed.error!
    this.finish(this.answerError(error), error._tag)
  }

  /** Stops the exchange: aborts the upstream request and answers the client if it still can. */
  private abort(reason: Error, error: GatewayError | undefined) {
    if (this.done) return
    const attempt = this.current
    // Finish first: undici calls onResponseError synchronously from abort(), and that call
    // must see a finished exchange rather than answer with a generic error of its own.
    if (attempt !== undefined) {
      this.endTry(attempt)
      this.endTrySpan(attempt, 0, error?._tag ?? "ClientClosed")
      // An abandoned half-open probe frees its slot without counting as an outcome.
      if (attempt.probe !== 0) {
        abandonProbe(attempt.endpoint, attempt.probe)
        attempt.probe = 0
      }
    }
    this.finish(error === undefined ? 499 : this.answerError(error), error?._tag ?? "ClientClosed")
    this.cutBody()
    attempt?.controller?.abort(reason)
  }

  /** Before undici aborts a request whose body is still streaming (see RequestBody.cutUpstream). */
  private cutBody() {
    const body = this.request.body
    if (body instanceof RequestBody) body.cutUpstream()
  }

  /** Answers with a gateway error (counted in the bytes sent when the log wants them). */
  private answerError(error: GatewayError): number {
    const headersSent = this.res.headersSent
    if (headersSent && this.grpc !== undefined && this.grpc.atBoundary) {
      // A gRPC response cut after whole messages still ends with a status the client can read
      // (a timeout is DEADLINE_EXCEEDED, not the INTERNAL of a reset stream).
      this.res.addTrailers(grpcErrorTrailers(error))
      this.res.end()
      return this.status
    }
    // A request whose body is still coming cannot leave the connection reusable: the rest of
    // the body would have to be read first, and nothing reads it any more.
    const status = sendError(this.res, error, this.drain.draining || !this.req.complete, this.pipeline?.responseHeaders)
    if (!headersSent && this.accessLog !== undefined) this.bytes += Buffer.byteLength(errorResponse(error).body)
    return status
  }

  private finish(status: number, error?: string) {
    if (this.done) return
    this.done = true
    const group = this.route.group
    group.active--
    if (this.timer !== undefined) clearTimeout(this.timer)
    this.res.removeListener("close", onClientClose)
    const connection = this.connection
    if (connection !== undefined && connection.receiving === this) connection.receiving = undefined
    const elapsed = performance.now() - this.started
    this.route.metrics.record(this.request.method, status, elapsed)
    const span = this.span
    if (span !== undefined) {
      this.span = undefined
      if (status > 0) span.attribute("http.response.status_code", status)
      if (error !== undefined) span.attribute("error.type", error)
      // A server span is an error only for 5xx (OpenTelemetry HTTP conventions).
      endSpan(span, status >= 500 || status === 0 ? error ?? String(status) : undefined)
    }
    if (this.accessLog !== undefined) {
      const body = this.request.body
      this.accessLog.write({
        req: this.req,
        clientIp: this.pickContext.clientIp,
        route: this.route.id,
        path: this.path,
        status,
        bytesIn: Buffer.isBuffer(body) ? body.length : body instanceof RequestBody ? body.seen : Math.max(0, this.request.contentLength),
        bytesOut: this.bytes,
        durationMs: elapsed,
        upstream: this.current?.endpoint.origin ?? this.tried?.[this.tried.length - 1]?.origin ?? "-",
        attempts: this.attempts,
        traceId: this.traceId,
        error,
        consumer: this.pipeline?.consumer
      })
    }
    this.current = undefined
    const resume = this.tryResume ?? this.resume
    this.tryResume = undefined
    this.resume = undefined
    if (resume !== undefined) resume(Effect.void)
    // Retries waiting out a backoff, or deciding on a held response, end with the exchange.
    else if (this.retrying) this.pipeline?.stop()
  }

  onResponseStart(
    attempt: Try,
    controller: Dispatcher.DispatchController,
    statusCode: number,
    headers: Record<string, string | Array<string> | undefined>,
    statusMessage?: string
  ): void {
    if (this.done) return
    this.route.group.metrics.attempt(statusCode >= 500 ? "5xx" : "success")
    recordTry(this.route.group, attempt, statusCode >= 500 ? "5xx" : undefined)
    const policy = this.route.retry
    if (policy !== undefined && policy.onStatus.has(statusCode) && this.retryable(statusCode)) {
      // Whether another try follows is the retries' decision, in the request's fiber: the
      // response waits, paused, and goes through as it came when none does.
      controller.pause()
      this.held = { attempt, controller, statusCode, headers, statusMessage, lost: undefined }
      if (this.toRetries(attempt, { failure: statusCode, error: undefined })) return
      this.held = undefined
      controller.resume()
    }
    this.accept(attempt, statusCode, headers, statusMessage)
  }

  /** Takes the response of `attempt` as the one the client gets. */
  private accept(
    attempt: Try,
    statusCode: number,
    headers: Record<string, string | Array<string> | undefined>,
    statusMessage: string | undefined
  ): void {
    // The response has started: the per-try timeout covered waiting for it, not the body.
    if (attempt.timer !== undefined) {
      clearTimeout(attempt.timer)
      attempt.timer = undefined
    }
    this.route.group.balancer.observe(attempt.endpoint, performance.now() - this.tryStarted)
    const extraHop = connectionTokens(headers.connection as string | undefined)
    const drop = this.route.responseHeaders.drop
    // RFC 9110 §8.6: a 204 has no Content-Length; a 204 or a 304 has no body to frame.
    const bodiless = statusCode === 204 || statusCode === 304
    const http2 = isHttp2(this.req)
    const out: Array<string> = []
    for (const name in headers) {
      const value = headers[name]
      if (value === undefined || HOP_BY_HOP.has(name)) continue
      if (http2 && name === HTTP2_SETTINGS) continue
      if (extraHop !== undefined && extraHop.has(name)) continue
      if (drop !== undefined && drop.has(name)) continue
      if (bodiless && statusCode === 204 && name === "content-length") continue
      if (typeof value === "string") out.push(name, value)
      else for (const v of value) out.push(name, v)
    }
    // Codings other than chunked go on to the client as they came (undici only removed the
    // chunking); node:http chunks the body again.
    const te = headers["transfer-encoding"]
    if (te !== undefined && !bodiless) {
      const codings = transferCodings(te)
      if (codings.others !== "") {
        // RFC 9112 §6.1: no Transfer-Encoding to an HTTP/1.0 client (nor in HTTP/2 at all), and
        // dropping the coding would pass coded bytes off as the body.
        if (this.req.httpVersionMajor === 2 || this.req.httpVersionMinor === 0) {
          this.abort(new TryAbandoned("transfer coding the client cannot take"), codingForClient)
          return
        }
        out.push("transfer-encoding", `${codings.others}, chunked`)
      }
    }
    const append = this.route.responseHeaders.append
    for (let i = 0; i < append.length; i++) out.push(append[i])
    const extra = this.pipeline?.responseHeaders
    if (extra !== undefined) for (let i = 0; i < extra.length; i++) out.push(extra[i])
    this.status = statusCode
    this.statusMessage = statusMessage
    if (http2 && isGrpc(headers["content-type"] as string | undefined)) this.grpc = new GrpcFraming()
    // The head is written with the first body chunk (or the end), in the same write: until then
    // nothing has reached the client, so a reset right after the upstream's head can still be
    // retried or answered with a clean 502 instead of a cut connection.
    this.head = out
  }

  private writeHead() {
    const head = this.head
    if (head !== undefined) {
      this.head = undefined
      // HTTP/2 has no reason phrase (node:http2 warns when one is set).
      if (this.statusMessage !== undefined && this.statusMessage !== "" && !isHttp2(this.req)) this.res.statusMessage = this.statusMessage
      // While draining, the response says `Connection: close` and the connection ends with it;
      // so does a response that starts while the client is still sending its body (an early
      // answer), since nothing will read the rest of that body to find the next request.
      if (this.drain.draining || !this.req.complete) closeAfterResponse(this.req, this.res)
      this.res.writeHead(this.status, head)
    }
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.done) return
    this.writeHead()
    this.bytes += chunk.length
    if (this.grpc !== undefined) this.grpc.feed(chunk)
    if (!this.res.write(chunk)) {
      controller.pause()
      this.res.once("drain", () => controller.resume())
    }
  }

  onResponseEnd(trailers?: Record<string, string | Array<string> | undefined>): void {
    if (this.done) return
    const attempt = this.current
    if (attempt !== undefined) {
      this.endTry(attempt)
      this.endTrySpan(attempt, this.status, undefined)
    }
    const fields = trailers === undefined ? undefined : trailerFields(trailers)
    const head = this.head
    if (head !== undefined && fields === undefined && isHttp2(this.req)) {
      // Neither body nor trailers: the head alone ends the stream, as the upstream's did (a
      // gRPC Trailers-Only response stays one).
      this.head = undefined
      endWithHead(this.res, this.status, head)
    } else {
      this.writeHead()
      // The upstream's trailers go on (gRPC's status is one): node:http2 sends them as the closing
      // HEADERS, node:http after the last chunk of a chunked response (a sized one has no room).
      if (fields !== undefined) this.res.addTrailers(fields)
      this.res.end()
    }
    this.finish(this.status)
  }
}
