/**
 * Failed TLS handshakes of an https listener, counted by a reason an operator can act on
 * (`fibergate_tls_handshake_failures_total{listener,reason}`): old clients, missing or bad
 * client certificates, clients that distrust the gateway's certificate, plain HTTP sent to
 * the TLS port, stalls. OpenSSL's many codes fold into a few reasons, so the series stay few.
 */
import type * as Context from "effect/Context"
import * as Metric from "effect/Metric"
import type { TLSSocket, Server as TlsServer } from "node:tls"
import { tlsHandshakeFailures } from "../telemetry/Metrics.ts"

const REASONS: Record<string, string> = {
  ERR_SSL_UNSUPPORTED_PROTOCOL: "protocol_version",
  ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION: "protocol_version",
  ERR_SSL_NO_SHARED_CIPHER: "no_shared_cipher",
  ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE: "no_client_certificate",
  ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED: "no_client_certificate",
  ERR_SSL_CERTIFICATE_VERIFY_FAILED: "bad_client_certificate",
  ERR_SSL_TLSV1_ALERT_UNKNOWN_CA: "client_rejected_certificate",
  ERR_SSL_SSLV3_ALERT_BAD_CERTIFICATE: "client_rejected_certificate",
  ERR_SSL_SSLV3_ALERT_CERTIFICATE_UNKNOWN: "client_rejected_certificate",
  ERR_SSL_HTTP_REQUEST: "not_tls",
  ERR_SSL_WRONG_VERSION_NUMBER: "not_tls",
  ERR_SSL_PACKET_LENGTH_TOO_LONG: "not_tls",
  ERR_TLS_HANDSHAKE_TIMEOUT: "timeout",
  ECONNRESET: "client_reset"
}

/** The reason label of a `tlsClientError`. */
export const handshakeFailureReason = (error: Error): string => REASONS[(error as { code?: string }).code ?? ""] ?? "other"

/**
 * Counts `server`'s failed handshakes. With `closeUnverified` (client_auth `optional`), a
 * client that presents a certificate the CA does not vouch for is cut right after the
 * handshake, as a `require` listener would refuse it; a client with no certificate goes on.
 */
export const trackHandshakeFailures = (server: TlsServer, listener: string, context: Context.Context<never>, closeUnverified: boolean): void => {
  const counters = new Map<string, Metric.Metric<number, unknown>>()
  const countFailure = (reason: string) => {
    let counter = counters.get(reason)
    if (counter === undefined) counters.set(reason, counter = Metric.withAttributes(tlsHandshakeFailures, { listener, reason }))
    counter.updateUnsafe(1, context)
  }
  server.on("tlsClientError", (error: Error, socket: TLSSocket) => {
    // node:tls refuses an unverified client certificate by destroying the socket once the
    // handshake is done: the error is then a reset, the reason the verification's.
    countFailure(socket.authorizationError !== undefined && socket.authorizationError !== null ? "bad_client_certificate" : handshakeFailureReason(error))
    socket.destroy()
  })
  if (closeUnverified) {
    // Before node:http's own listener, so no request of the connection is ever read.
    server.prependListener("secureConnection", (socket: TLSSocket) => {
      if (socket.authorized || socket.authorizationError === undefined) return
      const peer = socket.getPeerCertificate()
      if (peer === null || Object.keys(peer).length === 0) return
      countFailure("bad_client_certificate")
      socket.destroy()
    })
  }
}
