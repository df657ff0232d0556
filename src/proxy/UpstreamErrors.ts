/**
 * The boundary where undici's and the OS's errors become gateway errors: mapped once, here,
 * so nothing past this module looks at an error code string.
 */
import {
  InternalError,
  PayloadTooLarge,
  UpstreamConnectError,
  UpstreamBodyTimeout,
  UpstreamConnectTimeout,
  UpstreamProtocolError,
  UpstreamReset,
  UpstreamResponseTimeout,
  type GatewayError
} from "../middleware/GatewayError.ts"

const connectCodes = new Set([
  "ECONNREFUSED",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EADDRNOTAVAIL"
])

/** Certificate verification failures of node:tls (OpenSSL's X509 verify codes and Node's name check). */
const certificateCodes = new Set([
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "CERT_HAS_EXPIRED",
  "CERT_NOT_YET_VALID",
  "CERT_UNTRUSTED",
  "CERT_REJECTED",
  "CERT_SIGNATURE_FAILURE",
  "HOSTNAME_MISMATCH",
  "ERR_TLS_CERT_ALTNAME_INVALID"
])

/** The code the request-body limiter fails its stream with; surfaces here through undici. */
export const BODY_TOO_LARGE = "FG_BODY_TOO_LARGE"

/** The parser's own words (e.g. "Missing expected CR after response line") name what was wrong. */
const invalidResponse = (error: Error): UpstreamProtocolError => {
  const detail = /\(([^()]+)\)$/.exec(error.message)?.[1]
  return new UpstreamProtocolError({ message: `The upstream sent an invalid response${detail === undefined ? "" : ` (${detail})`}` })
}

/**
 * @example
 * fromUpstreamError(Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" }))._tag // => "UpstreamConnectError"
 */
export const fromUpstreamError = (error: Error): GatewayError => {
  // undici's parser errors often carry no code; the name is what marks them.
  if (error.name === "HTTPParserError") return invalidResponse(error)
  const code = (error as { code?: unknown }).code ?? (error.cause as { code?: unknown } | undefined)?.code
  switch (code) {
    case BODY_TOO_LARGE:
      return new PayloadTooLarge({ message: "The request body is too large" })
    case "UND_ERR_CONNECT_TIMEOUT":
      return new UpstreamConnectTimeout({ message: "Timed out connecting to the upstream" })
    case "UND_ERR_HEADERS_TIMEOUT":
      return new UpstreamResponseTimeout({ message: "Timed out waiting for the upstream response" })
    case "UND_ERR_BODY_TIMEOUT":
      return new UpstreamBodyTimeout({ message: "Timed out waiting for the upstream response body" })
    case "UND_ERR_SOCKET":
    case "ECONNRESET":
    case "EPIPE":
    case "UND_ERR_CLOSED":
    case "UND_ERR_DESTROYED":
      return new UpstreamReset({ message: "The upstream closed the connection" })
    case "UND_ERR_RES_CONTENT_LENGTH_MISMATCH":
    case "UND_ERR_INFO":
      // A body cut short: the upstream closed before the response was complete.
      return new UpstreamReset({ message: "The upstream sent an invalid response" })
  }
  if (typeof code === "string") {
    if (code.startsWith("HPE_")) return invalidResponse(error)
    if (connectCodes.has(code)) return new UpstreamConnectError({ message: `Cannot connect to the upstream (${code})` })
    // A TLS handshake that failed is a connection that could not be made (Envoy counts it so).
    if (certificateCodes.has(code)) return new UpstreamConnectError({ message: `The upstream's certificate was not accepted (${code})` })
    if (code.startsWith("ERR_SSL_")) return new UpstreamConnectError({ message: `The TLS handshake with the upstream failed (${code})` })
    // HTTP/2 upstreams (pool.http2): framing nghttp2 refused is the upstream breaking the
    // protocol (an HTTP/1.1 server spoken to by prior knowledge, too); a GOAWAY or RST_STREAM
    // with an error is the upstream ending the exchange.
    if (code === "ERR_HTTP2_ERROR" || code.startsWith("ERR_HTTP2_INVALID_")) {
      return new UpstreamProtocolError({ message: `The upstream broke HTTP/2 (${code})` })
    }
    if (code.startsWith("ERR_HTTP2_")) return new UpstreamReset({ message: `The upstream ended the HTTP/2 exchange (${code})` })
  }
  return new InternalError({ message: "Unexpected error while forwarding" })
}
