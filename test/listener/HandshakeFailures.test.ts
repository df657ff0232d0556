import { describe, expect, it } from "@effect/vitest"
import { handshakeFailureReason } from "../../src/listener/HandshakeFailures.ts"

const withCode = (code: string | undefined) => Object.assign(new Error("handshake failed"), code === undefined ? {} : { code })

describe("handshake failure reasons", () => {
  it.each([
    ["ERR_SSL_UNSUPPORTED_PROTOCOL", "protocol_version"],
    ["ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION", "protocol_version"],
    ["ERR_SSL_NO_SHARED_CIPHER", "no_shared_cipher"],
    ["ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE", "no_client_certificate"],
    ["ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED", "no_client_certificate"],
    ["ERR_SSL_CERTIFICATE_VERIFY_FAILED", "bad_client_certificate"],
    ["ERR_SSL_TLSV1_ALERT_UNKNOWN_CA", "client_rejected_certificate"],
    ["ERR_SSL_SSLV3_ALERT_BAD_CERTIFICATE", "client_rejected_certificate"],
    ["ERR_SSL_SSLV3_ALERT_CERTIFICATE_UNKNOWN", "client_rejected_certificate"],
    ["ERR_SSL_HTTP_REQUEST", "not_tls"],
    ["ERR_SSL_WRONG_VERSION_NUMBER", "not_tls"],
    ["ERR_SSL_PACKET_LENGTH_TOO_LONG", "not_tls"],
    ["ERR_TLS_HANDSHAKE_TIMEOUT", "timeout"],
    ["ECONNRESET", "client_reset"],
    ["ERR_SSL_SOMETHING_NEW", "other"],
    [undefined, "other"]
  ])("%s is %s", (code, reason) => {
    expect(handshakeFailureReason(withCode(code))).toBe(reason)
  })
})
