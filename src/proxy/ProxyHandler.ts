/**
 * The per-request entry point of a listener: parse the target, route, pick an endpoint and
 * dispatch. Everything it consults was compiled when the config was loaded; per request it
 * reads the current snapshot synchronously and allocates little.
 */
import type { CidrMatcher } from "../config/Cidr.ts"
import { clientAddress, forwardedForList } from "./ClientAddress.ts"
import type { IncomingMessage, ServerResponse } from "node:http"
import { nodeHttp } from "../config/NodeModules.ts"
import type { Socket } from "node:net"
import type { Router } from "../routing/Router.ts"
import type { PathRewrite } from "../routing/Rewrite.ts"
import { parseRequestTarget } from "../routing/RequestTarget.ts"
import type { AccessLog } from "../telemetry/AccessLog.ts"
import type { Rejections, WebSocketMetrics } from "../telemetry/Metrics.ts"
import { Tunnel, type TunnelClient } from "./WebSocketTunnel.ts"
import { isWebSocketConnect, webSocketKey } from "./WebSocketHandshake.ts"
import type * as Tracer from "effect/Tracer"
import { externalParent, nowNanos, parseTraceParent, randomSpanId, randomTraceId, shouldSample, startSpan, type RequestTracing, type TraceParent } from "../telemetry/Tracing.ts"
import type { Endpoint } from "../upstream/UpstreamGroup.ts"
import { Exchange, sendError, type DrainState, type ExchangeRoute, type Resume } from "./Exchange.ts"
import { dropHeaders, lookupHeader, scanRequestHeaders } from "./RequestHeaders.ts"
import { BadRequest, CircuitOpen, errorResponse, MethodNotAllowed, NoHealthyUpstream, NotImplemented, PayloadTooLarge, RouteNotFound, ShuttingDown, type GatewayError } from "../middleware/GatewayError.ts"
import { closeAfterResponse, connectionOf, existingConnection, upgradeDeclined } from "./ClientConnection.ts"
import { transferCodings } from "./TransferCoding.ts"
import type { HeaderRules } from "./HeaderRules.ts"
import { connectionTokens } from "../middleware/HopByHop.ts"
import { RequestBody } from "./RequestBody.ts"
import { forwardedClientCert } from "./ClientCertificate.ts"
import { clientSocket, http2HasBody, isHttp2, stopUnreadBody } from "./Http2Streams.ts"
import { grpcTimeoutMs } from "./GrpcCalls.ts"
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2"
import * as Cause from "effect/Cause"
import type * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import type * as Exit from "effect/Exit"
import type { Next, PipelineRequest, Reply } from "../middleware/Middleware.ts"
import { InternalError } from "../middleware/GatewayError.ts"
import type { RequestTarget } from "../routing/RequestTarget.ts"

/** A route compiled for the request path. */
export interface CompiledRoute extends ExchangeRoute {
  readonly rewrite: PathRewrite
  readonly requestHeaders: HeaderRules
  /** The route's pipeline: its middlewares around the forwarder, run as one fiber per request. */
  readonly pipeline: Next
  /** `websocket.idle_timeout` (0: none). */
  readonly webSocketIdleMs: number
}

/** Everything one listener needs per request, swapped atomically on reload. */
export interface ListenerTable {
  readonly router: Router<CompiledRoute>
  readonly maxBodyBytes: number
  /** `https` on a TLS listener: what X-Forwarded-Proto says. */
  readonly scheme?: "http" | "https" | undefined
  /** Whether the listener verifies client certificates: their details go upstream as X-Forwarded-Client-Cert. */
  readonly clientCertificates?: boolean | undefined
  /** The listener's `trusted_proxies`; undefined: the client is the peer. */
  readonly trustedProxies?: CidrMatcher | undefined
  readonly accessLog: AccessLog | undefined
  /** Present when spans are exported; requests are then sampled by its ratio. */
  readonly tracing?: RequestTracing | undefined
  readonly rejections?: Rejections | undefined
  readonly webSockets?: WebSocketMetrics | undefined
  /** What request fibers run with (the gateway's logger and services); absent: an empty context. */
  readonly context?: Context.Context<never> | undefined
}

const VIA = "1.1 fibergate"
const VIA_HTTP2 = "2 fibergate"

/** The Via list with this hop added, named by the protocol the request came in (RFC 9110 §7.6.3). */
const viaOf = (via: string | undefined, req: IncomingMessage): string => {
  const hop = req.httpVersionMajor === 2 ? VIA_HTTP2 : VIA
  return via === undefined ? hop : `${via}, ${hop}`
}

/** The chain of client addresses to walk: X-Forwarded-For, else Forwarded's `for=` (parsed only behind trusted proxies). */
const forwardedChain = (scan: { readonly forwardedFor: string | undefined; readonly forwarded: string | undefined }, trusted: CidrMatcher | undefined) =>
  scan.forwardedFor !== undefined || trusted === undefined || scan.forwarded === undefined ? scan.forwardedFor : forwardedForList(scan.forwarded)
const routeNotFound = new RouteNotFound({ message: "No route matches this request" })
const badTarget = new BadRequest({ message: "Invalid request target" })
const badEncoding = new BadRequest({ message: "Invalid percent-encoding in the request path" })
const badHost = new BadRequest({ message: "Invalid or repeated Host header" })
const tooLarge = new PayloadTooLarge({ message: "The request body is too large" })
const unsupportedCoding = new NotImplemented({ message: "Transfer codings other than chunked are not supported" })
const noEndpoint = new NoHealthyUpstream({ message: "No upstream endpoint is available" })
const circuitOpen = new CircuitOpen({ message: "The upstream's circuit breakers are open" })
const goingAway = new ShuttingDown({ message: "The listener is shutting down" })
const connectRefused = new MethodNotAllowed({ message: "CONNECT is not supported, except to open a WebSocket (RFC 8441)" })
const isOpen = (e: Endpoint) => e.circuit !== "closed"

/**
 * Answers a request the gateway refuses itself, counts it by reason and logs it like any
 * other; once a route matched, the route's own metrics count it too.
 */
const reject = (
  table: ListenerTable,
  req: IncomingMessage,
  res: ServerResponse,
  error: GatewayError,
  close = false,
  path = "-",
  route?: CompiledRoute,
  request?: ProxiedRequest,
  byMiddleware = false
): void => {
  // A middleware's refusal is counted with its route; the gateway's own refusals by reason only.
  if (byMiddleware) table.rejections?.count(error._tag, route?.id)
  else table.rejections?.count(error._tag)
  const status = sendError(res, error, close, request?.responseHeaders)
  route?.metrics.record(req.method ?? "GET", status, 0)
  const log = table.accessLog
  if (log !== undefined) {
    log.write({
      req,
      clientIp: table.trustedProxies === undefined
        ? req.socket?.remoteAddress ?? ""
        : clientAddress(req.socket?.remoteAddress ?? "", forwardedChain(scanRequestHeaders(req.rawHeaders), table.trustedProxies), table.trustedProxies),
      route: route?.id ?? "-",
      path,
      status,
      bytesIn: 0,
      bytesOut: Buffer.byteLength(errorResponse(error).body),
      durationMs: 0,
      upstream: "-",
      attempts: 0,
      traceId: undefined,
      error: error._tag,
      consumer: request?.consumer
    })
  }
}

/**
 * Makes the node:http `request` listener for one listener. `current` returns the table of the
 * config in force; a request keeps the snapshot it started with.
 */
export const makeRequestHandler = (current: () => ListenerTable, drain: DrainState) =>
(req: IncomingMessage, res: ServerResponse): void => {
  const connection = connectionOf(req.socket)
  // A request behind one whose response closes the connection is never run: nobody would
  // read its answer. node:http drops its response when the socket closes.
  if (!connection.take(req, res)) return
  // While draining, and after a declined upgrade (node:http dropped what came with its head),
  // this is the last request taken; its response says so when it runs (see handle).
  const last = drain.draining || upgradeDeclined(req)
  if (last) connection.closing = true
  const table = current()
  const method = req.method ?? "GET"
  if (connection.admits(method)) handle(table, req, res, method, drain, last)
  else connection.hold(method, req, res, () => handle(table, req, res, method, drain, last))
}

/**
 * Makes the node:http2 `request` listener for one listener: a stream is a request of its own,
 * run at once (streams are independent, so none of HTTP/1.1's pipelining order applies), through
 * the same routing, middlewares, retries and error answers. Draining is the connection's GOAWAY.
 */
export const makeHttp2RequestHandler = (current: () => ListenerTable, drain: DrainState) =>
(req: Http2ServerRequest, res: Http2ServerResponse): void => {
  // The compatibility API's request and response stand in for node:http's in everything the
  // request path uses (see Http2Streams.ts for where they differ).
  const request = req as unknown as IncomingMessage
  const response = res as unknown as ServerResponse
  if (req.method === "CONNECT") {
    // An extended CONNECT opens a WebSocket (RFC 8441); it is routed as the GET of an HTTP/1.1
    // handshake would be. Plain CONNECT tunnels are not offered, as on HTTP/1.1.
    if (!isWebSocketConnect(request)) reject(current(), request, response, connectRefused)
    else if (drain.draining) reject(current(), request, response, goingAway)
    else handle(current(), request, response, "GET", drain, false, { kind: "http2", readable: req, stream: req.stream, key: webSocketKey() })
    return
  }
  if (http2HasBody(request)) req.stream.once("finish", stopUnreadBody)
  handle(current(), request, response, req.method, drain, false)
}

/** A WebSocket handshake the listener accepted: an HTTP/1.1 connection or an HTTP/2 stream. */
type Upgrade = TunnelClient

/**
 * Makes the node:http `upgrade` listener (WebSocket upgrades; see `isWebSocketUpgrade`). The
 * request is routed and goes through its route's middlewares like any other; an answer that
 * is not a 101 is written on the socket as a response that closes it.
 */
export const makeUpgradeHandler = (current: () => ListenerTable, drain: DrainState) =>
(req: IncomingMessage, socket: Socket, head: Buffer): void => {
  const res = new nodeHttp.ServerResponse(req)
  res.assignSocket(socket)
  res.shouldKeepAlive = false
  // The response of a refused upgrade ends the connection: nothing after it can be read.
  res.once("finish", () => socket.destroySoon())
  socket.once("error", () => socket.destroy())
  // Requests pipelined before the upgrade still have responses to come: a 101 cannot jump them.
  if (existingConnection(socket)?.inFlight) {
    socket.destroy()
    return
  }
  if (drain.draining) {
    reject(current(), req, res, goingAway, true)
    return
  }
  handle(current(), req, res, req.method ?? "GET", drain, false, { kind: "http1", socket, head })
}

const handle = (table: ListenerTable, req: IncomingMessage, res: ServerResponse, method: string, drain: DrainState, last: boolean, upgrade?: Upgrade): void => {
  if (last) closeAfterResponse(req, res)
  const url = req.url ?? "/"
  if (url === "*") {
    // The asterisk form asks about the server itself (RFC 9112 §3.2.4); only OPTIONS may use it.
    if (req.method === "OPTIONS") {
      res.writeHead(200, ["allow", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS", "content-length", "0"])
      res.end()
    } else reject(table, req, res, badTarget)
    return
  }
  const http2 = isHttp2(req)
  const scan = scanRequestHeaders(req.rawHeaders, http2 && http2HasBody(req))
  if (scan.hostCount > 1 || (scan.hostCount === 0 && req.httpVersionMinor === 1 && req.httpVersionMajor === 1)) {
    reject(table, req, res, badHost, true)
    return
  }
  // node:http's parser has made sure `chunked` comes last, once; any coding before it is one
  // the gateway cannot undo, and the connection cannot go on past that body.
  if (scan.transferEncoding !== undefined && transferCodings(scan.transferEncoding).others !== "") {
    reject(table, req, res, unsupportedCoding, true)
    return
  }
  const target = parseRequestTarget(url, scan.host)
  if (typeof target === "string") {
    reject(table, req, res, target === "invalid-encoding" ? badEncoding : target === "invalid-host" ? badHost : badTarget, true)
    return
  }
  // Only routes with header conditions and header/cookie hashing call this. It scans the raw
  // headers rather than touching `req.headersDistinct`, which would build an object of arrays
  // for every header of the request.
  const raw = req.rawHeaders
  const header = (name: string) => lookupHeader(raw, name)
  const route = table.router.find({ host: target.host, path: target.path, method, query: target.query, header })
  if (route === undefined) {
    reject(table, req, res, routeNotFound, false, target.path)
    return
  }
  if (scan.contentLength > table.maxBodyBytes) {
    reject(table, req, res, tooLarge, true, target.path, route)
    return
  }
  const peer = req.socket.remoteAddress ?? ""
  const ip = clientAddress(peer, forwardedChain(scan, table.trustedProxies), table.trustedProxies)
  const request = new ProxiedRequest(table, req, res, method, url, scan, target, route, peer, ip, header, drain)
  if (upgrade !== undefined) request.upgrade = upgrade
  request.run(route.pipeline)
}

type Scan = ReturnType<typeof scanRequestHeaders>

/** Picks an endpoint and starts the exchange, with what the middlewares changed. */
const forward = (request: ProxiedRequest): void => {
  const { clientIp: ip, compiled: route, drain, header, method, peer, req, res, scan, table, target, url } = request
  const group = route.group
  const pickContext = { clientIp: ip, path: target.path, header }
  let endpoint = group.balancer.pick(pickContext, group.eligible) as Endpoint | undefined
  // Fail open only when nothing is healthy (not Envoy's panic threshold, which also sends
  // traffic to unhealthy endpoints while some healthy ones remain).
  if (endpoint === undefined && group.failOpen) endpoint = group.balancer.pick(pickContext) as Endpoint | undefined
  if (endpoint === undefined) {
    reject(table, req, res, group.circuit !== undefined && group.endpoints.some(isOpen) ? circuitOpen : noEndpoint, false, target.path, route, request)
    request.finished()
    return
  }

  let headers = scan.headers
  const extraHop = connectionTokens(scan.connection)
  if (extraHop !== undefined) headers = dropHeaders(headers, extraHop)
  if (route.requestHeaders.drop !== undefined) headers = dropHeaders(headers, route.requestHeaders.drop)
  // The client's Host as sent, unless an absolute-form target named the authority itself.
  const host = url.charCodeAt(0) === 47 ? scan.host ?? "" : target.host
  headers.push(
    "host", host,
    "x-forwarded-for", scan.forwardedFor === undefined ? peer : `${scan.forwardedFor}, ${peer}`,
    "x-forwarded-proto", table.scheme ?? "http",
    "x-forwarded-host", host,
    "via", viaOf(scan.via, req)
  )
  if (table.clientCertificates === true) {
    const xfcc = forwardedClientCert(clientSocket(req))
    if (xfcc !== undefined) headers.push("x-forwarded-client-cert", xfcc)
  }
  const append = route.requestHeaders.append
  for (let i = 0; i < append.length; i++) headers.push(append[i])
  if (request.removed !== undefined) headers = dropHeaders(headers, request.removed)
  const added = request.added
  if (added !== undefined) for (let i = 0; i < added.length; i++) headers.push(added[i])
  if (request.upgrade !== undefined) {
    tunnel(request, request.upgrade, endpoint, headers, route.rewrite(target.path) + request.query)
    return
  }

  // W3C Trace Context. A sampled request continues the client's trace (or starts one) and each
  // try sends its own client span as the upstream's parent. A request that is not sampled
  // still has one trace id: the client's traceparent goes on as it came, or the gateway starts
  // an unsampled trace (flags 00) so the upstream does not start a root of its own.
  const traceparent = scan.traceparent
  const tracing = table.tracing
  let span: Tracer.Span | undefined
  let traceId: string | undefined
  if (tracing !== undefined) {
    const parent = traceparent === undefined ? undefined : parseTraceParent(traceparent)
    if (shouldSample(parent, tracing.sampleRatio)) {
      span = startServerSpan(tracing, parent, method, route.id, target.path, target.host, ip, req, table.scheme ?? "http")
      traceId = span.traceId
    } else if (parent !== undefined) {
      headers.push("traceparent", traceparent!)
      traceId = parent.traceId
    } else {
      traceId = randomTraceId()
      headers.push("traceparent", `00-${traceId}-${randomSpanId()}-00`)
    }
  } else if (traceparent !== undefined) {
    headers.push("traceparent", traceparent)
    if (table.accessLog !== undefined) traceId = parseTraceParent(traceparent)?.traceId
  }

  // A gRPC call's deadline ends the exchange like the route timeout, whichever comes first; the
  // upstream is told the deadline the gateway keeps (Envoy's grpc_timeout_header_max).
  let deadlineMs: number | undefined
  const grpcTimeout = scan.grpcTimeout
  if (grpcTimeout !== undefined) {
    const stated = grpcTimeoutMs(grpcTimeout)
    if (stated !== undefined && route.timeoutMs !== undefined && route.timeoutMs < stated) headers.push("grpc-timeout", `${route.timeoutMs}m`)
    else {
      deadlineMs = stated
      headers.push("grpc-timeout", grpcTimeout)
    }
  }

  const upstreamPath = route.rewrite(target.path) + request.query
  const retry = route.retry
  // A body small enough to buffer (retry.buffer_bytes) is read whole first, so a retry can
  // send it again; any other body streams and its request is never retried. The exchange
  // exists while the body is read: a client that leaves, or the route timeout, ends it.
  if (scan.hasBody && retry !== undefined && !scan.chunked && scan.contentLength <= retry.bufferBytes && retry.methods.has(method)) {
    const exchange = new Exchange(req, res, route, { method, path: upstreamPath, headers, body: null, contentLength: scan.contentLength, deadlineMs }, table.accessLog, target.path, pickContext, drain)
    exchange.trace(tracing?.tracer, span, traceId)
    exchange.pipeline = request
    exchange.resume = request.handOver()
    const chunks: Array<Buffer> = []
    req.on("data", (chunk: Buffer) => chunks.push(chunk))
    req.once("end", () => {
      if (!exchange.finished) exchange.startWithBody(endpoint, Buffer.concat(chunks))
    })
    return
  }
  let body: IncomingMessage | RequestBody | null = null
  if (scan.hasBody) {
    if (scan.chunked || group.http2) {
      // Chunked bodies are counted (for the access log) and cut off at max_body_bytes; a body
      // to an HTTP/2 upstream goes through one too, to be cut before undici closes its stream.
      const counted = new RequestBody(scan.chunked ? table.maxBodyBytes : Infinity)
      req.pipe(counted)
      body = counted
    } else body = req
  }
  const exchange = new Exchange(req, res, route, { method, path: upstreamPath, headers, body, contentLength: scan.contentLength, deadlineMs }, table.accessLog, target.path, pickContext, drain)
  if (traceId !== undefined) exchange.trace(tracing?.tracer, span, traceId)
  exchange.pipeline = request
  exchange.resume = request.handOver()
  exchange.start(endpoint)
}

const webSocketKeyField: ReadonlySet<string> = new Set(["sec-websocket-key"])

/** Joins the client to `endpoint` over a WebSocket tunnel; the request's fiber ends with it. */
const tunnel = (request: ProxiedRequest, upgrade: Upgrade, endpoint: Endpoint, headers: Array<string>, path: string): void => {
  const { compiled: route, req, res, table } = request
  headers.push("connection", "upgrade", "upgrade", "websocket")
  // An HTTP/2 client sends no key (RFC 8441 §5): the upstream's handshake gets the gateway's.
  if (upgrade.kind === "http2") {
    headers = dropHeaders(headers, webSocketKeyField)
    headers.push("sec-websocket-key", upgrade.key)
  }
  // What the client was told: 101 on HTTP/1.1, 200 on an HTTP/2 stream.
  const accepted = upgrade.kind === "http1" ? 101 : 200
  const group = route.group
  group.active++
  endpoint.active++
  const started = performance.now()
  const log = (status: number, bytesIn: number, bytesOut: number, error?: string) =>
    table.accessLog?.write({
      req,
      clientIp: request.clientIp,
      route: route.id,
      path: request.target.path,
      status,
      bytesIn,
      bytesOut,
      durationMs: performance.now() - started,
      upstream: endpoint.origin,
      attempts: 1,
      traceId: undefined,
      error,
      consumer: request.consumer
    })
  const done = () => {
    group.active--
    endpoint.active--
    request.finished()
  }
  let opened = false
  new Tunnel({
    client: upgrade,
    res,
    origin: endpoint.origin,
    hostname: endpoint.hostname,
    port: endpoint.port,
    tls: endpoint.tls,
    path,
    headers,
    connectTimeoutMs: group.connectTimeoutMs,
    idleTimeoutMs: route.webSocketIdleMs,
    tunnels: request.drain.tunnels ?? new Set(),
    draining: () => request.drain.draining,
    onRefused: (status, bytesOut) => {
      route.metrics.record(request.method, status, performance.now() - started)
      log(status, 0, bytesOut)
      done()
    },
    onFailed: (error) => {
      reject(table, req, res, error, true, request.target.path, route, request)
      done()
    },
    onOpen: () => {
      opened = true
      table.webSockets?.opened(route.id)
    },
    onClosed: (bytesIn, bytesOut) => {
      if (!opened) return
      table.webSockets?.closed(route.id)
      route.metrics.record(request.method, accepted, performance.now() - started)
      log(accepted, bytesIn, bytesOut)
      done()
    }
  }).start()
}

/**
 * A request on its way: one fiber runs the route's pipeline over this view
 * (started synchronously, so a pipeline of synchronous checks finishes before `run` returns);
 * the forwarder, its last step, resumes the fiber when the exchange has finished.
 */
class ProxiedRequest implements PipelineRequest {
  consumer: string | undefined = undefined
  /** Set on a WebSocket upgrade: the forwarder joins a tunnel instead of an exchange. */
  upgrade: Upgrade | undefined = undefined
  query: string
  /** Request headers the middlewares removed or replaced. */
  removed: Set<string> | undefined = undefined
  /** Request headers the middlewares set, as name/value pairs. */
  added: Array<string> | undefined = undefined
  /** Response headers the middlewares add, as name/value pairs. */
  responseHeaders: Array<string> | undefined = undefined
  /** Resumes the fiber suspended in the forwarder, until the exchange takes it over. */
  private resume: Resume | undefined = undefined
  /** Whether the request has been answered or handed to the forwarder. */
  private settled = false
  private interrupt: ((id?: number) => void) | undefined = undefined
  private readonly started = performance.now()
  readonly table: ListenerTable
  readonly req: IncomingMessage
  readonly res: ServerResponse
  readonly method: string
  readonly url: string
  readonly scan: Scan
  readonly target: RequestTarget
  readonly compiled: CompiledRoute
  readonly peer: string
  readonly clientIp: string
  readonly header: (name: string) => string | undefined
  readonly drain: DrainState
  constructor(
    table: ListenerTable,
    req: IncomingMessage,
    res: ServerResponse,
    method: string,
    url: string,
    scan: Scan,
    target: RequestTarget,
    compiled: CompiledRoute,
    peer: string,
    clientIp: string,
    header: (name: string) => string | undefined,
    drain: DrainState
  ) {
    this.table = table
    this.req = req
    this.res = res
    this.method = method
    this.url = url
    this.scan = scan
    this.target = target
    this.compiled = compiled
    this.peer = peer
    this.clientIp = clientIp
    this.header = header
    this.drain = drain
    this.query = target.query
  }
  get path(): string {
    return this.target.path
  }
  get rawHeaders(): ReadonlyArray<string> {
    return this.req.rawHeaders
  }
  get host(): string {
    return this.target.host
  }
  get scheme(): "http" | "https" {
    return this.table.scheme ?? "http"
  }
  get route(): string {
    return this.compiled.id
  }
  readonly setConsumer = (name: string): void => {
    this.consumer = name
  }
  readonly setQuery = (query: string): void => {
    this.query = query
  }
  readonly setHeader = (name: string, value: string): void => {
    const lower = name.toLowerCase()
    this.removeHeader(lower)
    ;(this.added ??= []).push(lower, value)
  }
  readonly removeHeader = (name: string): void => {
    const lower = name.toLowerCase()
    ;(this.removed ??= new Set()).add(lower)
    const added = this.added
    if (added !== undefined) {
      for (let i = added.length - 2; i >= 0; i -= 2) if (added[i] === lower) added.splice(i, 2)
    }
  }
  readonly addResponseHeader = (name: string, value: string): void => {
    ;(this.responseHeaders ??= []).push(name.toLowerCase(), value)
  }

  run(pipeline: Next): void {
    const onClose = () => {
      // The client left while a middleware was still deciding: stop it, nobody reads the answer.
      if (!this.settled) this.interrupt?.()
    }
    this.res.once("close", onClose)
    const context = this.table.context
    const run = context === undefined ? Effect.runCallback : Effect.runCallbackWith(context)
    this.interrupt = run(pipeline(this), {
      onExit: (exit) => {
        this.res.removeListener("close", onClose)
        this.interrupt = undefined
        this.onExit(exit)
      }
    })
  }

  /** Interrupts the request's fiber (see ExchangeHooks.stop). */
  stop(): void {
    this.interrupt?.()
  }

  private onExit(exit: Exit.Exit<void, GatewayError>): void {
    if (exit._tag === "Success") return
    if (this.settled) return
    this.settled = true
    const cause = exit.cause
    if (Cause.hasInterruptsOnly(cause)) {
      this.log(499, 0, "ClientClosed")
      this.compiled.metrics.record(this.method, 499, performance.now() - this.started)
      return
    }
    const found = Cause.findError(cause)
    const error = found._tag === "Success" ? found.success : new InternalError({ message: "A middleware failed unexpectedly" })
    reject(this.table, this.req, this.res, error, false, this.target.path, this.compiled, this, true)
  }

  readonly respond = (reply: Reply): void => {
    if (this.settled) return
    this.settled = true
    const head: Array<string> = []
    const headers = reply.headers
    if (headers !== undefined) {
      for (const name in headers) {
        const value = headers[name]
        if (typeof value === "string") head.push(name, value)
        else for (const v of value) head.push(name, v)
      }
    }
    const extra = this.responseHeaders
    if (extra !== undefined) for (let i = 0; i < extra.length; i++) head.push(extra[i])
    const body = reply.body ?? ""
    const bytes = Buffer.byteLength(body)
    // RFC 9110 §8.6: no Content-Length on a 204 or a 1xx.
    if (reply.status !== 204 && reply.status >= 200) head.push("content-length", String(bytes))
    this.res.writeHead(reply.status, head)
    this.res.end(reply.status === 204 || this.method === "HEAD" ? undefined : body)
    const elapsed = performance.now() - this.started
    this.compiled.metrics.record(this.method, reply.status, elapsed)
    this.log(reply.status, bytes, undefined, elapsed)
  }

  readonly forward = (resume: Resume): void => {
    if (this.settled) return resume(Effect.void)
    this.settled = true
    this.resume = resume
    forward(this)
  }

  /** The fiber's resumption, for the exchange that answers the request. */
  handOver(): Resume | undefined {
    const resume = this.resume
    this.resume = undefined
    return resume
  }

  /** Called by the forwarder's own refusal, once it has answered. */
  finished(): void {
    const resume = this.resume
    this.resume = undefined
    resume?.(Effect.void)
  }

  private log(status: number, bytesOut: number, error: string | undefined, elapsed = performance.now() - this.started): void {
    this.table.accessLog?.write({
      req: this.req,
      clientIp: this.clientIp,
      route: this.compiled.id,
      path: this.target.path,
      status,
      bytesIn: 0,
      bytesOut,
      durationMs: elapsed,
      upstream: "-",
      attempts: 0,
      traceId: undefined,
      error,
      consumer: this.consumer
    })
  }
}

/** The server span of a sampled request, with the attributes known before the upstream answers. */
const startServerSpan = (
  tracing: RequestTracing,
  parent: TraceParent | undefined,
  method: string,
  route: string,
  path: string,
  host: string,
  clientIp: string,
  req: IncomingMessage,
  scheme: string
): Tracer.Span => {
  const span = startSpan(tracing.tracer, `${method} ${route}`, "server", externalParent(parent), nowNanos())
  span.attribute("http.request.method", method)
  span.attribute("http.route", route)
  span.attribute("url.path", path)
  span.attribute("url.scheme", scheme)
  if (host !== "") span.attribute("server.address", host)
  span.attribute("client.address", clientIp)
  // OpenTelemetry spells HTTP/2 as "2", not node:http2's "2.0".
  span.attribute("network.protocol.version", req.httpVersionMajor === 2 ? "2" : req.httpVersion)
  span.attribute("fibergate.listener", tracing.listener)
  const ua = lookupHeader(req.rawHeaders, "user-agent")
  if (ua !== undefined) span.attribute("user_agent.original", ua)
  return span
}
