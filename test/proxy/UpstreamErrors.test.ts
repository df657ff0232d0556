import { assert, describe, it } from "@effect/vitest"
import { errorResponse } from "../../src/middleware/GatewayError.ts"
import { BODY_TOO_LARGE, fromUpstreamError } from "../../src/proxy/UpstreamErrors.ts"

const withCode = (code: string) => Object.assign(new Error(code), { code })

describe("undici and OS errors map to gateway errors once, at the boundary", () => {
  it.each([
    ["UND_ERR_CONNECT_TIMEOUT", "UpstreamConnectTimeout", 504],
    ["UND_ERR_HEADERS_TIMEOUT", "UpstreamResponseTimeout", 504],
    ["UND_ERR_BODY_TIMEOUT", "UpstreamBodyTimeout", 504],
    ["ECONNREFUSED", "UpstreamConnectError", 502],
    ["UNABLE_TO_VERIFY_LEAF_SIGNATURE", "UpstreamConnectError", 502],
    ["ERR_TLS_CERT_ALTNAME_INVALID", "UpstreamConnectError", 502],
    ["CERT_HAS_EXPIRED", "UpstreamConnectError", 502],
    ["ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED", "UpstreamConnectError", 502],
    ["ENOTFOUND", "UpstreamConnectError", 502],
    ["UND_ERR_SOCKET", "UpstreamReset", 502],
    ["ECONNRESET", "UpstreamReset", 502],
    ["HPE_INVALID_CHUNK_SIZE", "UpstreamProtocolError", 502],
    [BODY_TOO_LARGE, "PayloadTooLarge", 413],
    ["SOMETHING_ELSE", "InternalError", 500]
  ] as const)("%s -> %s (%d)", (code, tag, status) => {
    const error = fromUpstreamError(withCode(code))
    assert.strictEqual(error._tag, tag)
    assert.strictEqual(errorResponse(error).status, status)
  })

  it("reads the code from the cause when undici wraps the error", () => {
    const wrapped = new Error("wrapped", { cause: withCode("ECONNREFUSED") })
    assert.strictEqual(fromUpstreamError(wrapped)._tag, "UpstreamConnectError")
  })
})

describe("each mapped error says what happened, in the words the client's JSON body carries", () => {
  it.each([
    [BODY_TOO_LARGE, "PayloadTooLarge", "The request body is too large"],
    ["UND_ERR_CONNECT_TIMEOUT", "UpstreamConnectTimeout", "Timed out connecting to the upstream"],
    ["UND_ERR_HEADERS_TIMEOUT", "UpstreamResponseTimeout", "Timed out waiting for the upstream response"],
    ["UND_ERR_BODY_TIMEOUT", "UpstreamBodyTimeout", "Timed out waiting for the upstream response body"],
    ["UND_ERR_SOCKET", "UpstreamReset", "The upstream closed the connection"],
    ["ECONNRESET", "UpstreamReset", "The upstream closed the connection"],
    ["EPIPE", "UpstreamReset", "The upstream closed the connection"],
    ["UND_ERR_CLOSED", "UpstreamReset", "The upstream closed the connection"],
    ["UND_ERR_DESTROYED", "UpstreamReset", "The upstream closed the connection"],
    ["UND_ERR_RES_CONTENT_LENGTH_MISMATCH", "UpstreamReset", "The upstream sent an invalid response"],
    ["UND_ERR_INFO", "UpstreamReset", "The upstream sent an invalid response"],
    ["ECONNREFUSED", "UpstreamConnectError", "Cannot connect to the upstream (ECONNREFUSED)"],
    ["EHOSTUNREACH", "UpstreamConnectError", "Cannot connect to the upstream (EHOSTUNREACH)"],
    ["ENETUNREACH", "UpstreamConnectError", "Cannot connect to the upstream (ENETUNREACH)"],
    ["EAI_AGAIN", "UpstreamConnectError", "Cannot connect to the upstream (EAI_AGAIN)"],
    ["EADDRNOTAVAIL", "UpstreamConnectError", "Cannot connect to the upstream (EADDRNOTAVAIL)"],
    ["UNABLE_TO_VERIFY_LEAF_SIGNATURE", "UpstreamConnectError", "The upstream's certificate was not accepted (UNABLE_TO_VERIFY_LEAF_SIGNATURE)"],
    ["UNABLE_TO_GET_ISSUER_CERT", "UpstreamConnectError", "The upstream's certificate was not accepted (UNABLE_TO_GET_ISSUER_CERT)"],
    ["UNABLE_TO_GET_ISSUER_CERT_LOCALLY", "UpstreamConnectError", "The upstream's certificate was not accepted (UNABLE_TO_GET_ISSUER_CERT_LOCALLY)"],
    ["SELF_SIGNED_CERT_IN_CHAIN", "UpstreamConnectError", "The upstream's certificate was not accepted (SELF_SIGNED_CERT_IN_CHAIN)"],
    ["DEPTH_ZERO_SELF_SIGNED_CERT", "UpstreamConnectError", "The upstream's certificate was not accepted (DEPTH_ZERO_SELF_SIGNED_CERT)"],
    ["CERT_HAS_EXPIRED", "UpstreamConnectError", "The upstream's certificate was not accepted (CERT_HAS_EXPIRED)"],
    ["CERT_NOT_YET_VALID", "UpstreamConnectError", "The upstream's certificate was not accepted (CERT_NOT_YET_VALID)"],
    ["CERT_UNTRUSTED", "UpstreamConnectError", "The upstream's certificate was not accepted (CERT_UNTRUSTED)"],
    ["CERT_REJECTED", "UpstreamConnectError", "The upstream's certificate was not accepted (CERT_REJECTED)"],
    ["CERT_SIGNATURE_FAILURE", "UpstreamConnectError", "The upstream's certificate was not accepted (CERT_SIGNATURE_FAILURE)"],
    ["HOSTNAME_MISMATCH", "UpstreamConnectError", "The upstream's certificate was not accepted (HOSTNAME_MISMATCH)"],
    ["ERR_TLS_CERT_ALTNAME_INVALID", "UpstreamConnectError", "The upstream's certificate was not accepted (ERR_TLS_CERT_ALTNAME_INVALID)"],
    ["ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED", "UpstreamConnectError", "The TLS handshake with the upstream failed (ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED)"],
    ["HPE_INVALID_CONSTANT", "UpstreamProtocolError", "The upstream sent an invalid response"],
    ["SOMETHING_ELSE", "InternalError", "Unexpected error while forwarding"]
  ] as const)("%s -> %s: %s", (code, tag, message) => {
    const error = fromUpstreamError(withCode(code))
    assert.strictEqual(error._tag, tag)
    assert.strictEqual(error.message, message)
    assert.deepStrictEqual(JSON.parse(errorResponse(error).body), { error: tag, message })
  })

  it("a parser error names what was wrong when its message ends with it in parentheses", () => {
    const parser = (message: string, code?: string) =>
      Object.assign(new Error(message), { name: "HTTPParserError" }, code === undefined ? {} : { code })
    assert.strictEqual(
      fromUpstreamError(parser("Parse Error: (Missing expected CR after response line)")).message,
      "The upstream sent an invalid response (Missing expected CR after response line)"
    )
    assert.strictEqual(fromUpstreamError(parser("Parse Error: (x)")).message, "The upstream sent an invalid response (x)")
    // Parentheses that do not end the message are not the parser's reason.
    assert.strictEqual(fromUpstreamError(parser("Parse Error (inner) then more")).message, "The upstream sent an invalid response")
    assert.strictEqual(fromUpstreamError(parser("Parse Error")).message, "The upstream sent an invalid response")
    assert.strictEqual(
      fromUpstreamError(Object.assign(new Error("Response does not match the HTTP/1.1 protocol (Invalid header value char)"), { code: "HPE_INVALID_HEADER_TOKEN" }))
        .message,
      "The upstream sent an invalid response (Invalid header value char)"
    )
  })

  it("HTTP/2: nghttp2's refusals and invalid frames are protocol errors; a GOAWAY or RST_STREAM is a reset", () => {
    const of = (code: string) => fromUpstreamError(Object.assign(new Error("x"), { code }))
    assert.strictEqual(of("ERR_HTTP2_ERROR")._tag, "UpstreamProtocolError")
    assert.strictEqual(of("ERR_HTTP2_ERROR").message, "The upstream broke HTTP/2 (ERR_HTTP2_ERROR)")
    assert.strictEqual(of("ERR_HTTP2_INVALID_HEADER_VALUE")._tag, "UpstreamProtocolError")
    assert.strictEqual(of("ERR_HTTP2_SESSION_ERROR")._tag, "UpstreamReset")
    assert.strictEqual(of("ERR_HTTP2_STREAM_ERROR").message, "The upstream ended the HTTP/2 exchange (ERR_HTTP2_STREAM_ERROR)")
    assert.strictEqual(of("ERR_HTTP_OTHER")._tag, "InternalError")
  })

  it("an error with no code anywhere (no cause, or a code that is not a string) is an InternalError", () => {
    assert.strictEqual(fromUpstreamError(new Error("plain")).message, "Unexpected error while forwarding")
    assert.strictEqual(fromUpstreamError(Object.assign(new Error("numeric"), { code: 42 }))._tag, "InternalError")
    assert.strictEqual(fromUpstreamError(new Error("wrapped", { cause: new Error("no code") }))._tag, "InternalError")
  })
})
