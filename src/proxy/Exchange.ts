/**
 * One request/response exchange between a client and an upstream: an undici dispatch handler
 * that streams the response straight into node:http's `ServerResponse`, with backpressure both
 * ways (undici pauses reading the upstream while the client socket is full). One object per
 * request, methods on the prototype: no per-request closures beyond the one close listener.
 */
import type { IncomingMessage, ServerResponse } from "node:http"
import type { Dispatcher } from "undici"
import type { AccessLog } from "../telemetry/AccessLog.ts"
import type { Endpoint, UpstreamGroup } from "../upstream/UpstreamGroup.ts"
import { errorResponse, UpstreamTimeout, type GatewayError } from "./GatewayError.ts"
import type { HeaderRules } from "./HeaderRules.ts"
import { connectionTokens, HOP_BY_HOP } from "./HopByHop.ts"
import { fromUpstreamError } from "./UpstreamErrors.ts"

const JSON_TYPE = "application/json"

/**
 * Answers a request with a gateway error. When the response has already started, the only
 * honest signal left is to cut the connection, so the client sees a truncated response
 * rather than a complete-looking wrong one.
 */
export const sendError = (res: ServerResponse, error: GatewayError, close = false): number => {
  if (res.headersSent) {
    res.destroy()
    return 0
  }
  const { body, status } = errorResponse(error)
  if (close) res.shouldKeepAlive = false
  res.writeHead(status, ["content-type", JSON_TYPE, "content-length", String(Buffer.byteLength(body)), "cache-control", "no-store"])
  res.end(body)
  return status
}

class ClientGone extends Error {
  override readonly name = "ClientGone"
}

/** Route data the exchange needs once the route is chosen. */
export interface ExchangeRoute {
  readonly id: string
  readonly group: UpstreamGroup
  readonly responseHeaders: HeaderRules
  readonly timeoutMs: number | undefined
}

export class Exchange implements Dispatcher.DispatchHandler {
  private controller: Dispatcher.DispatchController | undefined = undefined
  private timer: NodeJS.Timeout | undefined = undefined
  private done = false
  private readonly started: number
  private status = 0
  private bytes = 0
  readonly onClientClose: () => void

  readonly req: IncomingMessage
  readonly res: ServerResponse
  readonly route: ExchangeRoute
  readonly endpoint: Endpoint
  readonly accessLog: AccessLog | undefined
  readonly path: string

  constructor(
    req: IncomingMessage,
    res: ServerResponse,
    route: ExchangeRoute,
    endpoint: Endpoint,
    accessLog: AccessLog | undefined,
    path: string
  ) {
    this.req = req
    this.res = res
    this.route = route
    this.endpoint = endpoint
    this.accessLog = accessLog
    this.path = path
    this.started = performance.now()
    endpoint.active++
    this.onClientClose = () => {
      if (!this.done) this.abort(new ClientGone("client closed the connection"), undefined)
    }
    res.once("close", this.onClientClose)
    if (route.timeoutMs !== undefined) {
      this.timer = setTimeout(() => this.onRouteTimeout(), route.timeoutMs)
    }
  }

  private onRouteTimeout() {
    this.timer = undefined
    this.abort(new Error("route timeout"), new UpstreamTimeout({ phase: "route", message: "The route timeout expired" }))
  }

  /** Stops the exchange: aborts the upstream request and answers the client if it still can. */
  private abort(reason: Error, error: GatewayError | undefined) {
    if (this.done) return
    // Finish first: undici calls onResponseError synchronously from abort(), and that call
    // must see a finished exchange rather than answer with a generic error of its own.
    this.finish(error === undefined ? 499 : sendError(this.res, error))
    this.controller?.abort(reason)
  }

  private finish(status: number) {
    if (this.done) return
    this.done = true
    this.endpoint.active--
    if (this.timer !== undefined) clearTimeout(this.timer)
    this.res.removeListener("close", this.onClientClose)
    if (this.accessLog !== undefined) {
      this.accessLog.write(this.req, this.path, status, this.bytes, performance.now() - this.started, this.route.id, this.endpoint.origin)
    }
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller
    if (this.done) controller.abort(new ClientGone("exchange already finished"))
  }

  onResponseStart(
    _controller: Dispatcher.DispatchController,
    statusCode: number,
    headers: Record<string, string | Array<string> | undefined>,
    statusMessage?: string
  ): void {
    if (this.done) return
    this.route.group.balancer.observe(this.endpoint, performance.now() - this.started)
    const extraHop = connectionTokens(headers.connection as string | undefined)
    const drop = this.route.responseHeaders.drop
    const out: Array<string> = []
    for (const name in headers) {
      const value = headers[name]
      if (value === undefined || HOP_BY_HOP.has(name)) continue
      if (extraHop !== undefined && extraHop.has(name)) continue
      if (drop !== undefined && drop.has(name)) continue
      if (typeof value === "string") out.push(name, value)
      else for (const v of value) out.push(name, v)
    }
    const append = this.route.responseHeaders.append
    for (let i = 0; i < append.length; i++) out.push(append[i])
    this.status = statusCode
    const res = this.res
    if (statusMessage !== undefined && statusMessage !== "") res.statusMessage = statusMessage
    res.writeHead(statusCode, out)
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.done) return
    this.bytes += chunk.length
    if (!this.res.write(chunk)) {
      controller.pause()
      this.res.once("drain", () => controller.resume())
    }
  }

  onResponseEnd(): void {
    if (this.done) return
    this.res.end()
    this.finish(this.status)
  }

  onResponseError(_controller: Dispatcher.DispatchController, error: Error): void {
    if (this.done) return
    this.finish(sendError(this.res, fromUpstreamError(error)))
  }
}

/**
 * Builds the request headers for the upstream from the client's raw headers: hop-by-hop
 * headers and `Expect` (already answered by node:http with 100 Continue) are dropped, the
 * route's rules applied, and `X-Forwarded-For` (appended), `-Proto`, `-Host` and `Via` set.
 */
export interface ForwardHeaders {
  readonly headers: Array<string>
  readonly host: string | undefined
  readonly hostCount: number
  readonly hasBody: boolean
  readonly chunked: boolean
  readonly contentLength: number
}

export const scanRequestHeaders = (raw: ReadonlyArray<string>): ForwardHeaders & {
  readonly forwardedFor: string | undefined
  readonly via: string | undefined
  readonly connection: string | undefined
} => {
  const headers: Array<string> = []
  let host: string | undefined
  let hostCount = 0
  let forwardedFor: string | undefined
  let via: string | undefined
  let connection: string | undefined
  let chunked = false
  let contentLength = -1
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]
    const value = raw[i + 1]
    const lower = name.toLowerCase()
    switch (lower) {
      case "host":
        hostCount++
        host = value
        continue
      case "x-forwarded-for":
        forwardedFor = forwardedFor === undefined ? value : `${forwardedFor}, ${value}`
        continue
      case "via":
        via = via === undefined ? value : `${via}, ${value}`
        continue
      case "connection":
        connection = connection === undefined ? value : `${connection}, ${value}`
        continue
      case "transfer-encoding":
        chunked = true
        continue
      case "content-length":
        contentLength = Number(value)
        headers.push(name, value)
        continue
      case "expect":
      case "x-forwarded-proto":
      case "x-forwarded-host":
        continue
    }
    if (HOP_BY_HOP.has(lower)) continue
    headers.push(name, value)
  }
  return {
    headers,
    host,
    hostCount,
    forwardedFor,
    via,
    connection,
    chunked,
    contentLength,
    hasBody: chunked || contentLength > 0
  }
}

/** Removes the headers named lower-case in `drop` from a flat name/value list. */
export const dropHeaders = (headers: Array<string>, drop: ReadonlySet<string>): Array<string> => {
  const out: Array<string> = []
  for (let i = 0; i < headers.length; i += 2) {
    if (!drop.has(headers[i].toLowerCase())) out.push(headers[i], headers[i + 1])
  }
  return out
}
