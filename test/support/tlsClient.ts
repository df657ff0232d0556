/**
 * Test support: one HTTPS request over a new TLS connection (no agent, no session reuse), with
 * what the handshake showed: the certificate the gateway presented and the ALPN protocol.
 */
import { Effect } from "effect"
import { request } from "node:https"
import type { TLSSocket } from "node:tls"

export interface TlsResponse {
  readonly status: number
  readonly headers: Record<string, string | Array<string> | undefined>
  readonly body: string
  /** SHA-256 fingerprint of the certificate the server presented (colon-separated hex). */
  readonly fingerprint: string
  readonly subject: string
}

export interface TlsRequest {
  readonly port: number
  readonly path?: string
  readonly servername?: string
  /** Trust store; the server is verified against it unless `verify: false`. */
  readonly ca?: string
  readonly verify?: boolean
  readonly cert?: string
  readonly key?: string
  readonly maxVersion?: "TLSv1.2" | "TLSv1.3"
  readonly headers?: Record<string, string>
  readonly timeoutMs?: number
}

/** Resolves with the response, or fails with the connection's error (a refused handshake). */
export const tlsRequest = (options: TlsRequest): Promise<TlsResponse> =>
  new Promise((resolve, reject) => {
    const req = request({
      host: "127.0.0.1",
      port: options.port,
      path: options.path ?? "/",
      method: "GET",
      agent: false,
      ...(options.servername === undefined ? {} : { servername: options.servername }),
      ...(options.ca === undefined ? {} : { ca: options.ca }),
      ...(options.cert === undefined ? {} : { cert: options.cert, key: options.key }),
      ...(options.maxVersion === undefined ? {} : { maxVersion: options.maxVersion }),
      rejectUnauthorized: options.verify !== false,
      // The tests name servers by SNI, not by the 127.0.0.1 they connect to.
      checkServerIdentity: () => undefined,
      headers: options.headers ?? {}
    }, (res) => {
      const socket = res.socket as TLSSocket
      const peer = socket.getPeerX509Certificate()
      let body = ""
      res.setEncoding("utf8")
      res.on("data", (c: string) => (body += c))
      res.on("end", () =>
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body, fingerprint: peer?.fingerprint256 ?? "", subject: peer?.subject ?? "" }))
      res.on("error", reject)
    })
    req.setTimeout(options.timeoutMs ?? 10_000, () => req.destroy(new Error("no response in time")))
    req.on("error", reject)
    req.end()
  })

/** `tlsRequest` as an Effect that fails the test on any error. */
export const tlsGet = (options: TlsRequest) => Effect.promise(() => tlsRequest(options))

/** `tlsRequest`'s error (the test expects one), or the response when it succeeded after all. */
export const tlsRefusal = (options: TlsRequest) =>
  Effect.promise(() => tlsRequest(options).then((res) => ({ refused: false as const, res }), (error: Error & { code?: string }) => ({ refused: true as const, error })))
