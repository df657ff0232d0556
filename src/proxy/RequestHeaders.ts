/**
 * The request headers as they go upstream, built in one pass over node:http's raw headers:
 * hop-by-hop headers and `Expect` (already answered by node:http with 100 Continue) are
 * dropped, and what the proxy needs to know (Host, framing, X-Forwarded-For, Via, Connection)
 * is picked up on the way. HTTP/2's raw headers come through the same pass: `:authority` is the
 * Host, the other pseudo-header fields are dropped, and split Cookie fields are joined.
 */
import { HOP_BY_HOP } from "../middleware/HopByHop.ts"

/** The headers to forward, and what the proxy learned about the request on the way. */
export interface ForwardHeaders {
  readonly headers: Array<string>
  readonly host: string | undefined
  readonly hostCount: number
  readonly hasBody: boolean
  readonly chunked: boolean
  readonly contentLength: number
}

export const scanRequestHeaders = (raw: ReadonlyArray<string>, unframedBody = false): ForwardHeaders & {
  readonly forwardedFor: string | undefined
  /** RFC 7239 `Forwarded` (repeated fields joined); passed upstream as it came. */
  readonly forwarded: string | undefined
  readonly via: string | undefined
  readonly connection: string | undefined
  /** The client's W3C `traceparent`, taken out: the proxy puts back the one it continues with. */
  readonly traceparent: string | undefined
  /** The `Transfer-Encoding` value (repeated fields joined), taken out like every hop-by-hop field. */
  readonly transferEncoding: string | undefined
  /** gRPC's `grpc-timeout`, taken out: the proxy puts back the deadline it keeps (see GrpcCalls.ts). */
  readonly grpcTimeout: string | undefined
} => {
  const headers: Array<string> = []
  let host: string | undefined
  let hostCount = 0
  let forwardedFor: string | undefined
  let forwarded: string | undefined
  let via: string | undefined
  let connection: string | undefined
  let traceparent: string | undefined
  let chunked = false
  let transferEncoding: string | undefined
  let contentLength = -1
  let grpcTimeout: string | undefined
  let trailersAccepted = false
  let authority: string | undefined
  /** Where the first Cookie value is in `headers`, to join the others to it. */
  let cookieAt = -1
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]
    const value = raw[i + 1]
    const lower = name.toLowerCase()
    switch (lower) {
      case "host":
        // HTTP/2: a Host that says what :authority says is the same field (RFC 9113 §8.3.1).
        if (authority !== undefined && value === authority) continue
        hostCount++
        host = value
        continue
      case ":authority":
        authority = value
        hostCount++
        host = value
        continue
      case "cookie":
        // HTTP/2 may split Cookie into one field per pair; HTTP/1.1 has one (RFC 9113 §8.2.3).
        if (cookieAt === -1) {
          cookieAt = headers.length + 1
          headers.push(name, value)
        } else headers[cookieAt] = `${headers[cookieAt]}; ${value}`
        continue
      case "x-forwarded-for":
        forwardedFor = forwardedFor === undefined ? value : `${forwardedFor}, ${value}`
        continue
      case "via":
        via = via === undefined ? value : `${via}, ${value}`
        continue
      case "forwarded":
        forwarded = forwarded === undefined ? value : `${forwarded}, ${value}`
        headers.push(name, value)
        continue
      case "connection":
        connection = connection === undefined ? value : `${connection}, ${value}`
        continue
      case "traceparent":
        traceparent = value
        continue
      case "grpc-timeout":
        grpcTimeout = value
        continue
      case "te":
        // TE is hop-by-hop, but its `trailers` says the client takes trailers, which the proxy
        // passes on: gRPC servers may insist on it (RFC 9110 §10.1.4; HTTP/2 allows no other TE).
        if (!trailersAccepted && acceptsTrailers(value)) {
          trailersAccepted = true
          headers.push("te", "trailers")
        }
        continue
      case "transfer-encoding":
        chunked = true
        transferEncoding = transferEncoding === undefined ? value : `${transferEncoding}, ${value}`
        continue
      case "content-length":
        contentLength = Number(value)
        headers.push(name, value)
        continue
      case "expect":
      case "x-forwarded-proto":
      case "x-forwarded-host":
      // Only the gateway vouches for a client certificate (Envoy's SANITIZE_SET).
      case "x-forwarded-client-cert":
        continue
    }
    // HTTP/2's pseudo-header fields (:method, :path, :scheme) are in the request line already.
    if (HOP_BY_HOP.has(lower) || lower.charCodeAt(0) === 58) continue
    headers.push(name, value)
  }
  // An HTTP/2 body without Content-Length streams like a chunked one.
  if (unframedBody && contentLength === -1) chunked = true
  return {
    headers,
    host,
    hostCount,
    forwardedFor,
    forwarded,
    via,
    connection,
    traceparent,
    transferEncoding,
    grpcTimeout,
    chunked,
    contentLength,
    hasBody: chunked || contentLength > 0
  }
}

/** Whether a TE value lists `trailers` (RFC 9110 §10.1.4: a token, case-insensitive, no weight). */
const acceptsTrailers = (value: string): boolean => {
  for (const part of value.split(",")) if (part.trim().toLowerCase() === "trailers") return true
  return false
}

/** Removes the headers named lower-case in `drop` from a flat name/value list. */
export const dropHeaders = (headers: Array<string>, drop: ReadonlySet<string>): Array<string> => {
  const out: Array<string> = []
  for (let i = 0; i < headers.length; i += 2) {
    if (!drop.has(headers[i].toLowerCase())) out.push(headers[i], headers[i + 1])
  }
  return out
}

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
