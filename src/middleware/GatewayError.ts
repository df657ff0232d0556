/**
 * Every way a request can fail, as tagged errors, and the one function that maps them to a
 * response. Each error records where it came from (client, upstream, internal).
 */
import * as Schema from "effect/Schema"

const fields = { message: Schema.String }

/** The request matched no route (404). */
export class RouteNotFound extends Schema.TaggedError<RouteNotFound>()("RouteNotFound", fields) {
  readonly source = "client"
}
/** The request is malformed: bad target, bad host, bad framing (400). */
export class BadRequest extends Schema.TaggedError<BadRequest>()("BadRequest", fields) {
  readonly source = "client"
}
/** The request body is larger than the listener's `max_body_bytes` (413). */
export class PayloadTooLarge extends Schema.TaggedError<PayloadTooLarge>()("PayloadTooLarge", fields) {
  readonly source = "client"
}
/**
 * The client took longer than `header_timeout` to send the request head, or longer than
 * `request_timeout` to send the whole request (408).
 */
export class RequestTimeout extends Schema.TaggedError<RequestTimeout>()("RequestTimeout", fields) {
  readonly source = "client"
}
/** The request uses a transfer coding the gateway does not implement, such as `gzip, chunked` (501). */
export class NotImplemented extends Schema.TaggedError<NotImplemented>()("NotImplemented", fields) {
  readonly source = "client"
}
/** The request headers are larger than `max_header_bytes` (431). */
export class HeadersTooLarge extends Schema.TaggedError<HeadersTooLarge>()("HeadersTooLarge", fields) {
  readonly source = "client"
}
/** A method the gateway does not proxy, such as CONNECT on an HTTP listener (405). */
export class MethodNotAllowed extends Schema.TaggedError<MethodNotAllowed>()("MethodNotAllowed", fields) {
  readonly source = "client"
}
/** The balancer had no endpoint to offer (503). */
export class NoHealthyUpstream extends Schema.TaggedError<NoHealthyUpstream>()("NoHealthyUpstream", fields) {
  readonly source = "upstream"
}
/** Every endpoint the request could go to has an open circuit (503). */
export class CircuitOpen extends Schema.TaggedError<CircuitOpen>()("CircuitOpen", fields) {
  readonly source = "upstream"
}
/** The upstream could not be reached: refused, unreachable, DNS failure (502). */
export class UpstreamConnectError extends Schema.TaggedError<UpstreamConnectError>()("UpstreamConnectError", fields) {
  readonly source = "upstream"
}
/** The route's overall `timeout` (all tries) expired before the response started (504). */
export class UpstreamTimeout extends Schema.TaggedError<UpstreamTimeout>()("UpstreamTimeout", fields) {
  readonly source = "upstream"
}
/** Connecting to the endpoint took longer than the pool's `connect_timeout` (504). */
export class UpstreamConnectTimeout extends Schema.TaggedError<UpstreamConnectTimeout>()("UpstreamConnectTimeout", fields) {
  readonly source = "upstream"
}
/** The response head did not come within the per-try timeout or the read timeout (504). */
export class UpstreamResponseTimeout extends Schema.TaggedError<UpstreamResponseTimeout>()("UpstreamResponseTimeout", fields) {
  readonly source = "upstream"
}
/** The response body stalled longer than the read timeout (504, or a cut connection once it started). */
export class UpstreamBodyTimeout extends Schema.TaggedError<UpstreamBodyTimeout>()("UpstreamBodyTimeout", fields) {
  readonly source = "upstream"
}
/** The upstream closed or reset the connection before a complete response (502). */
export class UpstreamReset extends Schema.TaggedError<UpstreamReset>()("UpstreamReset", fields) {
  readonly source = "upstream"
}
/** The upstream's response broke HTTP/1.1's syntax (bare LF, obs-fold, a bad status line) (502). */
export class UpstreamProtocolError extends Schema.TaggedError<UpstreamProtocolError>()("UpstreamProtocolError", fields) {
  readonly source = "upstream"
}
/**
 * The request lacks valid credentials (401). `challenge` is the `WWW-Authenticate` value that
 * tells the client how to authenticate (`Basic realm="api"`, `Bearer error="invalid_token"`).
 */
export class Unauthorized extends Schema.TaggedError<Unauthorized>()("Unauthorized", {
  message: Schema.String,
  challenge: Schema.optional(Schema.String)
}) {
  readonly source = "client"
}
/** The client may not make this request: an IP filter, a policy (403). */
export class Forbidden extends Schema.TaggedError<Forbidden>()("Forbidden", fields) {
  readonly source = "client"
}
/**
 * A rate limit refused the request (429). `retryAfter` is in whole seconds; `policy` and
 * `rate` are the IETF `RateLimit-Policy` and `RateLimit` header values.
 */
export class RateLimited extends Schema.TaggedError<RateLimited>()("RateLimited", {
  message: Schema.String,
  retryAfter: Schema.Number,
  policy: Schema.optional(Schema.String),
  rate: Schema.optional(Schema.String)
}) {
  readonly source = "client"
}
/** A route's `concurrency_limit` has every slot taken (503). */
export class ConcurrencyLimited extends Schema.TaggedError<ConcurrencyLimited>()("ConcurrencyLimited", fields) {
  readonly source = "internal"
}
/** A rate limit's shared store (Redis) did not answer and its `on_error` is `deny` (503). */
export class RateLimiterUnavailable extends Schema.TaggedError<RateLimiterUnavailable>()("RateLimiterUnavailable", fields) {
  readonly source = "internal"
}
/** A `forward_auth` service did not answer in time or could not be reached (503). */
export class AuthUnavailable extends Schema.TaggedError<AuthUnavailable>()("AuthUnavailable", fields) {
  readonly source = "upstream"
}
/** The listener is draining: a new WebSocket tunnel would be closed at once (503). */
export class ShuttingDown extends Schema.TaggedError<ShuttingDown>()("ShuttingDown", fields) {
  readonly source = "internal"
}
/** A bug or an unexpected failure inside the gateway (500). */
export class InternalError extends Schema.TaggedError<InternalError>()("InternalError", fields) {
  readonly source = "internal"
}

export type GatewayError =
  | RouteNotFound
  | BadRequest
  | PayloadTooLarge
  | RequestTimeout
  | NotImplemented
  | HeadersTooLarge
  | MethodNotAllowed
  | NoHealthyUpstream
  | CircuitOpen
  | UpstreamConnectError
  | UpstreamTimeout
  | UpstreamConnectTimeout
  | UpstreamResponseTimeout
  | UpstreamBodyTimeout
  | UpstreamReset
  | UpstreamProtocolError
  | Unauthorized
  | Forbidden
  | RateLimited
  | ConcurrencyLimited
  | RateLimiterUnavailable
  | AuthUnavailable
  | ShuttingDown
  | InternalError

const statusByTag: Record<GatewayError["_tag"], number> = {
  RouteNotFound: 404,
  BadRequest: 400,
  PayloadTooLarge: 413,
  RequestTimeout: 408,
  NotImplemented: 501,
  HeadersTooLarge: 431,
  MethodNotAllowed: 405,
  NoHealthyUpstream: 503,
  CircuitOpen: 503,
  UpstreamConnectError: 502,
  UpstreamTimeout: 504,
  UpstreamConnectTimeout: 504,
  UpstreamResponseTimeout: 504,
  UpstreamBodyTimeout: 504,
  UpstreamReset: 502,
  UpstreamProtocolError: 502,
  Unauthorized: 401,
  Forbidden: 403,
  RateLimited: 429,
  ConcurrencyLimited: 503,
  RateLimiterUnavailable: 503,
  AuthUnavailable: 503,
  ShuttingDown: 503,
  InternalError: 500
}

export interface ErrorResponse {
  readonly status: number
  readonly body: string
  /** Headers the error's status calls for (`WWW-Authenticate`, `Retry-After`), as name/value pairs. */
  readonly headers: ReadonlyArray<string>
}

const none: ReadonlyArray<string> = []

const headersOf = (error: GatewayError): ReadonlyArray<string> => {
  switch (error._tag) {
    case "Unauthorized":
      return error.challenge === undefined ? none : ["www-authenticate", error.challenge]
    case "RateLimited": {
      const headers = ["retry-after", String(error.retryAfter)]
      if (error.policy !== undefined) headers.push("ratelimit-policy", error.policy)
      if (error.rate !== undefined) headers.push("ratelimit", error.rate)
      return headers
    }
    default:
      return none
  }
}

/**
 * Maps a gateway error to its status and small JSON body. The body names the error and never
 * echoes request data back, so it is safe to show to any client.
 *
 * @example
 * errorResponse(new RouteNotFound({ message: "no route" })) // => { status: 404, body: '{"error":"RouteNotFound","message":"no route"}', headers: [] }
 */
export const errorResponse = (error: GatewayError): ErrorResponse => ({
  status: statusByTag[error._tag],
  body: `{"error":"${error._tag}","message":${JSON.stringify(error.message)}}`,
  headers: headersOf(error)
})

/**
 * The gRPC status of each gateway error (grpc/doc/statuscodes.md and http-grpc-status-mapping.md,
 * as Envoy answers them): what a gRPC client gets instead of the HTTP status.
 */
const grpcStatusByTag: { readonly [K in GatewayError["_tag"]]: number } = {
  RouteNotFound: 12, // UNIMPLEMENTED
  BadRequest: 3, // INVALID_ARGUMENT
  PayloadTooLarge: 8, // RESOURCE_EXHAUSTED
  RequestTimeout: 4, // DEADLINE_EXCEEDED
  NotImplemented: 12,
  HeadersTooLarge: 8,
  MethodNotAllowed: 12,
  NoHealthyUpstream: 14, // UNAVAILABLE
  CircuitOpen: 14,
  UpstreamConnectError: 14,
  UpstreamTimeout: 4,
  UpstreamConnectTimeout: 4,
  UpstreamResponseTimeout: 4,
  UpstreamBodyTimeout: 4,
  UpstreamReset: 14,
  UpstreamProtocolError: 13, // INTERNAL
  Unauthorized: 16, // UNAUTHENTICATED
  Forbidden: 7, // PERMISSION_DENIED
  RateLimited: 8,
  ConcurrencyLimited: 8,
  RateLimiterUnavailable: 14,
  AuthUnavailable: 14,
  ShuttingDown: 14,
  InternalError: 13
}

/** gRPC's percent-encoding of grpc-message (PROTOCOL-HTTP2.md): printable ASCII but %, as is. */
const grpcMessage = (text: string): string => {
  let out = ""
  for (const byte of Buffer.from(text, "utf8")) {
    out += byte >= 0x20 && byte <= 0x7e && byte !== 0x25 ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, "0")}`
  }
  return out
}

/** Whether a request's Content-Type makes it a gRPC call (`application/grpc`, `+proto`, `;…`). */
export const isGrpc = (contentType: string | undefined): boolean =>
  contentType !== undefined && contentType.length >= 16 && contentType.slice(0, 16).toLowerCase() === "application/grpc" &&
  (contentType.length === 16 || contentType[16] === "+" || contentType[16] === ";")

/**
 * A gateway error as the trailers that end a gRPC response already under way (its head and
 * whole messages went out): the status a client reads at the end of a stream.
 *
 * @example
 * grpcErrorTrailers(new UpstreamTimeout({ message: "late" })) // => { "grpc-status": "4", "grpc-message": "late" }
 */
export const grpcErrorTrailers = (error: GatewayError): Record<string, string> => ({
  "grpc-status": String(grpcStatusByTag[error._tag]),
  "grpc-message": grpcMessage(error.message)
})

/**
 * A gateway error as a gRPC client takes it: HTTP 200 with the status in a Trailers-Only
 * response (grpc-status, grpc-message in the head, no body), plus the error's own headers.
 *
 * @example
 * grpcErrorHeaders(new RouteNotFound({ message: "no route" })) // => ["grpc-status", "12", "grpc-message", "no route"]
 */
export const grpcErrorHeaders = (error: GatewayError): Array<string> => {
  const head = ["grpc-status", String(grpcStatusByTag[error._tag]), "grpc-message", grpcMessage(error.message)]
  const extra = headersOf(error)
  for (let i = 0; i < extra.length; i++) head.push(extra[i])
  return head
}
