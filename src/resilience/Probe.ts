/**
 * One active health probe against one endpoint, over a fresh connection (so it tests that
 * the endpoint accepts connections, not that a pooled one is still open). Resolves to
 * true/false and never fails; the caller bounds it with the check's timeout.
 */
import * as Effect from "effect/Effect"
import { request, type RequestOptions } from "node:http"
import { request as httpsRequest } from "node:https"
import { connect } from "node:net"
import { upstreamTlsOptions } from "../config/CertificateFiles.ts"
import type { HealthCheck } from "../config/Schema.ts"
import type { UpstreamTls } from "../config/TlsSchema.ts"

const MAX_BODY = 64 * 1024

/** `"200-299"` → [200, 299]; `"204"` → [204, 204]. */
export const parseStatusRange = (text: string | undefined): readonly [number, number] => {
  if (text === undefined) return [200, 299]
  const [from, to] = text.split("-").map(Number)
  return [from, to ?? from]
}

export const tcpProbe = (host: string, port: number): Effect.Effect<boolean> =>
  Effect.callback<boolean>((resume) => {
    const socket = connect({ host, port })
    socket.once("connect", () => {
      socket.destroy()
      resume(Effect.succeed(true))
    })
    socket.once("error", () => resume(Effect.succeed(false)))
    return Effect.sync(() => socket.destroy())
  })

/** An HTTP probe; over TLS for an `https:` origin, verified as the upstream's `tls:` says. */
export const httpProbe = (origin: URL, check: HealthCheck, tls?: UpstreamTls): Effect.Effect<boolean> => {
  const [min, max] = parseStatusRange(check.expect_status)
  const expectBody = check.expect_body
  const secure = origin.protocol === "https:"
  // Read once per check, not per probe: the files were checked when the config decoded.
  const tlsOptions = secure ? upstreamTlsOptions(tls) : undefined
  return Effect.callback<boolean>((resume) => {
    const options: RequestOptions = {
      host: origin.hostname,
      port: origin.port,
      path: check.path ?? "/",
      method: "GET",
      agent: false,
      headers: { host: check.host ?? origin.host, "user-agent": "fibergate-health-check", connection: "close" },
      ...tlsOptions
    }
    const req = secure ? httpsRequest(options) : request(options)
    req.once("error", () => resume(Effect.succeed(false)))
    req.once("response", (res) => {
      const statusOk = res.statusCode !== undefined && res.statusCode >= min && res.statusCode <= max
      if (!statusOk || expectBody === undefined) {
        res.resume()
        res.destroy()
        resume(Effect.succeed(statusOk))
        return
      }
      let body = ""
      res.setEncoding("utf8")
      res.on("data", (chunk: string) => {
        if (body.length < MAX_BODY) body += chunk
      })
      res.once("end", () => resume(Effect.succeed(body.includes(expectBody))))
      res.once("error", () => resume(Effect.succeed(false)))
    })
    req.end()
    return Effect.sync(() => req.destroy())
  })
}

/** The probe a health-check config asks for. */
export const probeFor = (origin: string, check: HealthCheck, tls?: UpstreamTls): Effect.Effect<boolean> => {
  const url = new URL(origin)
  return check.type === "tcp" ? tcpProbe(url.hostname, Number(url.port || (url.protocol === "https:" ? 443 : 80))) : httpProbe(url, check, tls)
}
