/**
 * `forward_auth`, as Traefik's forwardAuth and nginx's auth_request: the request's method,
 * URI and headers (not its body) go to an auth service first. A 2xx lets the request through,
 * with the auth service's `response_headers` copied onto it; any other answer goes back to
 * the client as it came (a 401 with its challenge, a 302 to a login page). An auth service
 * that does not answer within `timeout` (default 1 s) or cannot be reached gives 503.
 */
import * as Effect from "effect/Effect"
import type { Dispatcher } from "undici"
import { Agent } from "../upstream/Undici.ts"
import type { ForwardAuth } from "../config/MiddlewareSchema.ts"
import { AuthUnavailable } from "./GatewayError.ts"
import { HOP_BY_HOP } from "./HopByHop.ts"
import type { PipelineRequest, Step } from "./Middleware.ts"

/** The body of an auth service's refusal kept for the client, at most. */
const MAX_REFUSAL_BYTES = 64 * 1024
/** Request headers never sent to the auth service: they describe the body, which stays behind. */
const BODY_HEADERS = new Set(["content-length", "host", "expect"])

/** The headers the auth service gets: the client's (or the listed ones), then the X-Forwarded-* facts. */
export const authRequestHeaders = (request: PipelineRequest, only: ReadonlySet<string> | undefined): Array<string> => {
  const raw = request.rawHeaders
  const out: Array<string> = []
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i].toLowerCase()
    if (HOP_BY_HOP.has(name) || BODY_HEADERS.has(name) || name.startsWith("x-forwarded-")) continue
    if (only !== undefined && !only.has(name)) continue
    out.push(name, raw[i + 1])
  }
  out.push(
    "x-forwarded-method", request.method,
    "x-forwarded-proto", request.scheme,
    "x-forwarded-host", request.host,
    "x-forwarded-uri", request.path + request.query,
    "x-forwarded-for", request.clientIp
  )
  return out
}

/**
 * @example
 * compileForwardAuth({ url: "http://127.0.0.1:9000/verify", response_headers: ["x-user-id"] })
 */
export const compileForwardAuth = (config: ForwardAuth, dispatcher: Dispatcher = new Agent({ keepAliveTimeout: 30_000 })): Step => {
  const url = new URL(config.url)
  const timeout = config.timeout ?? 1_000
  const only = config.request_headers === undefined ? undefined : new Set(config.request_headers.map((h) => h.toLowerCase()))
  const copied = (config.response_headers ?? []).map((h) => h.toLowerCase())
  const unavailable = new AuthUnavailable({ message: "The auth service did not answer" })
  return (request, next) =>
    Effect.flatMap(
      Effect.tryPromise({
        try: async (signal) => {
          const res = await dispatcher.request({
            origin: url.origin,
            path: url.pathname + url.search,
            method: "GET",
            headers: authRequestHeaders(request, only),
            signal: AbortSignal.any([signal, AbortSignal.timeout(timeout)]),
            headersTimeout: timeout,
            bodyTimeout: timeout
          })
          if (res.statusCode >= 200 && res.statusCode < 300) {
            await res.body.dump()
            return { ok: true as const, headers: res.headers }
          }
          const chunks: Array<Buffer> = []
          let size = 0
          for await (const chunk of res.body) {
            size += (chunk as Buffer).length
            if (size > MAX_REFUSAL_BYTES) break
            chunks.push(chunk as Buffer)
          }
          return { ok: false as const, status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString("utf8") }
        },
        catch: () => unavailable
      }),
      (answer) => {
        if (answer.ok) {
          for (const name of copied) {
            const value = answer.headers[name]
            if (value === undefined) continue
            request.setHeader(name, Array.isArray(value) ? value.join(", ") : value)
          }
          return next(request)
        }
        const headers: Record<string, string | ReadonlyArray<string>> = {}
        for (const name in answer.headers) {
          const value = answer.headers[name]
          if (value === undefined || HOP_BY_HOP.has(name) || name === "content-length") continue
          headers[name] = value
        }
        return Effect.sync(() => request.respond({ status: answer.status, headers, body: answer.body }))
      }
    )
}
