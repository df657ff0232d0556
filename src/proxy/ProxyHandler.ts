/**
 * The per-request entry point of a listener: parse the target, route, pick an endpoint and
 * dispatch. Everything it consults was compiled when the config was loaded; per request it
 * reads the current snapshot synchronously and allocates little.
 */
import type { IncomingMessage, ServerResponse } from "node:http"
import { Transform, type TransformCallback } from "node:stream"
import type { Router } from "../routing/Router.ts"
import type { PathRewrite } from "../routing/Rewrite.ts"
import { parseRequestTarget } from "../routing/RequestTarget.ts"
import type { AccessLog } from "../telemetry/AccessLog.ts"
import type { Endpoint } from "../upstream/UpstreamGroup.ts"
import { Exchange, sendError, type DrainState, type ExchangeRoute } from "./Exchange.ts"
import { dropHeaders, scanRequestHeaders } from "./RequestHeaders.ts"
import { BadRequest, CircuitOpen, NoHealthyUpstream, PayloadTooLarge, RouteNotFound } from "./GatewayError.ts"
import type { HeaderRules } from "./HeaderRules.ts"
import { connectionTokens } from "./HopByHop.ts"
import { BODY_TOO_LARGE } from "./UpstreamErrors.ts"

/** The value of header `name` (lower-case) in raw headers; repeated headers joined with ", ". */
export const lookupHeader = (raw: ReadonlyArray<string>, name: string): string | undefined => {
  let value: string | undefined
  for (let i = 0; i < raw.length; i += 2) {
    const key = raw[i]
    if (key.length === name.length && (key === name || key.toLowerCase() === name)) {
      value = value === undefined ? raw[i + 1] : `${value}, ${raw[i + 1]}`
    }
  }
  return value
}

/** A route compiled for the request path. */
export interface CompiledRoute extends ExchangeRoute {
  readonly rewrite: PathRewrite
  readonly requestHeaders: HeaderRules
}

/** Everything one listener needs per request, swapped atomically on reload. */
export interface ListenerTable {
  readonly router: Router<CompiledRoute>
  readonly maxBodyBytes: number
  readonly accessLog: AccessLog | undefined
}

const VIA = "1.1 fibergate"
const routeNotFound = new RouteNotFound({ message: "No route matches this request" })
const badTarget = new BadRequest({ message: "Invalid request target" })
const badEncoding = new BadRequest({ message: "Invalid percent-encoding in the request path" })
const badHost = new BadRequest({ message: "Invalid or repeated Host header" })
const tooLarge = new PayloadTooLarge({ message: "The request body is too large" })
const noEndpoint = new NoHealthyUpstream({ message: "No upstream endpoint is available" })
const circuitOpen = new CircuitOpen({ message: "The upstream's circuit breakers are open" })
const isOpen = (e: Endpoint) => e.circuit !== "closed"

/** Counts request body bytes and fails the stream once it passes the limit (chunked bodies only). */
class BodyLimit extends Transform {
  private seen = 0
  private readonly limit: number
  constructor(limit: number) {
    super()
    this.limit = limit
  }
  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback) {
    this.seen += chunk.length
    if (this.seen > this.limit) callback(Object.assign(new Error("request body too large"), { code: BODY_TOO_LARGE }))
    else callback(null, chunk)
  }
}

/**
 * Makes the node:http `request` listener for one listener. `current` returns the table of the
 * config in force; a request keeps the snapshot it started with.
 */
export const makeRequestHandler = (current: () => ListenerTable, drain: DrainState = { draining: false }) =>
(req: IncomingMessage, res: ServerResponse): void => {
  const table = current()
  const url = req.url ?? "/"
  if (url === "*") {
    // The asterisk form asks about the server itself (RFC 9112 §3.2.4); only OPTIONS may use it.
    if (req.method === "OPTIONS") {
      res.writeHead(200, ["allow", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS", "content-length", "0"])
      res.end()
    } else sendError(res, badTarget)
    return
  }
  const scan = scanRequestHeaders(req.rawHeaders)
  if (scan.hostCount > 1 || (scan.hostCount === 0 && req.httpVersionMinor === 1 && req.httpVersionMajor === 1)) {
    sendError(res, badHost, true)
    return
  }
  const target = parseRequestTarget(url, scan.host)
  if (typeof target === "string") {
    sendError(res, target === "invalid-encoding" ? badEncoding : target === "invalid-host" ? badHost : badTarget, true)
    return
  }
  // Only routes with header conditions and header/cookie hashing call this. It scans the raw
  // headers rather than touching `req.headersDistinct`, which would build an object of arrays
  // for every header of the request.
  const raw = req.rawHeaders
  const header = (name: string) => lookupHeader(raw, name)
  const route = table.router.find({ host: target.host, path: target.path, method: req.method ?? "GET", query: target.query, header })
  if (route === undefined) {
    sendError(res, routeNotFound)
    return
  }
  if (scan.contentLength > table.maxBodyBytes) {
    sendError(res, tooLarge, true)
    return
  }
  const ip = req.socket.remoteAddress ?? ""
  const group = route.group
  const pickContext = { clientIp: ip, path: target.path, header }
  let endpoint = group.balancer.pick(pickContext, group.eligible) as Endpoint | undefined
  // Fail open only when nothing is healthy (not Envoy's panic threshold, which also sends
  // traffic to unhealthy endpoints while some healthy ones remain).
  if (endpoint === undefined && group.failOpen) endpoint = group.balancer.pick(pickContext) as Endpoint | undefined
  if (endpoint === undefined) {
    sendError(res, group.circuit !== undefined && group.endpoints.some(isOpen) ? circuitOpen : noEndpoint)
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
    "x-forwarded-for", scan.forwardedFor === undefined ? ip : `${scan.forwardedFor}, ${ip}`,
    "x-forwarded-proto", "http",
    "x-forwarded-host", host,
    "via", scan.via === undefined ? VIA : `${scan.via}, ${VIA}`
  )
  const append = route.requestHeaders.append
  for (let i = 0; i < append.length; i++) headers.push(append[i])

  const upstreamPath = route.rewrite(target.path) + target.query
  const method = req.method ?? "GET"
  const retry = route.retry
  // A body small enough to buffer (retry.buffer_bytes) is read whole first, so a retry can
  // send it again; any other body streams and its request is never retried.
  if (scan.hasBody && retry !== undefined && !scan.chunked && scan.contentLength <= retry.bufferBytes && retry.methods.has(method)) {
    const chunks: Array<Buffer> = []
    req.on("data", (chunk: Buffer) => chunks.push(chunk))
    req.once("end", () => {
      if (res.destroyed) return
      const body = Buffer.concat(chunks)
      new Exchange(req, res, route, { method, path: upstreamPath, headers, body }, table.accessLog, target.path, pickContext, drain).start(endpoint)
    })
    return
  }
  let body: IncomingMessage | BodyLimit | null = null
  if (scan.hasBody) {
    if (scan.chunked && Number.isFinite(table.maxBodyBytes)) {
      const limited = new BodyLimit(table.maxBodyBytes)
      req.pipe(limited)
      body = limited
    } else body = req
  }
  new Exchange(req, res, route, { method, path: upstreamPath, headers, body }, table.accessLog, target.path, pickContext, drain).start(endpoint)
}
