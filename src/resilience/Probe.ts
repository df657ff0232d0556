/**
 * One active health probe against one endpoint, over a fresh connection (so it tests that
 * the endpoint accepts connections, not that a pooled one is still open). Resolves to
 * true/false and never fails; the caller bounds it with the check's timeout.
 */
import * as Effect from "effect/Effect"
import type { RequestOptions } from "node:http"
import { nodeHttp, nodeHttp2, nodeHttps } from "../config/NodeModules.ts"
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
    const req = secure ? nodeHttps().request(options) : nodeHttp.request(options)
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

/** A protobuf varint at `at` in `bytes`: [value, next offset], or undefined past the end. */
const varint = (bytes: Uint8Array, at: number): readonly [number, number] | undefined => {
  let value = 0
  let shift = 0
  for (let i = at; i < bytes.length && shift < 35; i++) {
    value += (bytes[i] & 0x7f) * 2 ** shift
    shift += 7
    if (bytes[i] < 0x80) return [value, i + 1]
  }
  return undefined
}

/**
 * A grpc.health.v1 HealthCheckRequest (`string service = 1`) as a gRPC message: the 5-byte
 * prefix, then the protobuf field (none for the empty string, protobuf's default).
 */
export const healthCheckRequest = (service: string): Buffer => {
  const name = Buffer.from(service, "utf8")
  const length: Array<number> = []
  for (let n = name.length; ; n = Math.floor(n / 128)) {
    if (n < 128) {
      length.push(n)
      break
    }
    length.push((n % 128) | 0x80)
  }
  const field = name.length === 0 ? Buffer.alloc(0) : Buffer.concat([Buffer.from([0x0a, ...length]), name])
  const prefix = Buffer.alloc(5)
  prefix.writeUInt32BE(field.length, 1)
  return Buffer.concat([prefix, field])
}

/**
 * The `status` (field 1) of a HealthCheckResponse message with its gRPC prefix: 1 is SERVING,
 * 0 (absent) UNKNOWN, 2 NOT_SERVING, 3 SERVICE_UNKNOWN; undefined when it is not one.
 */
export const servingStatusOf = (message: Uint8Array): number | undefined => {
  if (message.length < 5 || message[0] !== 0) return undefined
  const end = 5 + new DataView(message.buffer, message.byteOffset, message.byteLength).getUint32(1)
  if (end > message.length) return undefined
  let status = 0
  for (let at = 5; at < end;) {
    const tag = varint(message, at)
    if (tag === undefined) return undefined
    const wire = tag[0] % 8
    if (wire === 0) {
      const value = varint(message, tag[1])
      if (value === undefined) return undefined
      if (tag[0] === 0x08) status = value[0]
      at = value[1]
    } else if (wire === 2) {
      const length = varint(message, tag[1])
      if (length === undefined) return undefined
      at = length[1] + length[0]
    } else return undefined
  }
  return status
}

/**
 * A gRPC probe (grpc/doc/health-checking.md): grpc.health.v1.Health/Check over HTTP/2 (h2c for
 * `http:`, TLS with ALPN h2 for `https:`, verified as the upstream's `tls:` says), on a fresh
 * connection; healthy only on grpc-status 0 with SERVING.
 */
export const grpcProbe = (origin: URL, check: HealthCheck, tls?: UpstreamTls): Effect.Effect<boolean> => {
  const secure = origin.protocol === "https:"
  const tlsOptions = secure ? upstreamTlsOptions(tls) : undefined
  const body = healthCheckRequest(check.service ?? "")
  return Effect.callback<boolean>((resume) => {
    const session = nodeHttp2().connect(origin.origin, tlsOptions === undefined ? {} : { ...tlsOptions })
    let answered = false
    const answer = (ok: boolean) => {
      if (answered) return
      answered = true
      session.destroy()
      resume(Effect.succeed(ok))
    }
    session.on("error", () => answer(false))
    const stream = session.request({
      ":method": "POST",
      ":path": "/grpc.health.v1.Health/Check",
      ":authority": check.host ?? origin.host,
      "content-type": "application/grpc",
      te: "trailers",
      "user-agent": "fibergate-health-check"
    })
    let status = 0
    let grpcStatus: unknown
    const chunks: Array<Buffer> = []
    let size = 0
    stream.on("response", (headers) => {
      status = Number(headers[":status"])
      grpcStatus = headers["grpc-status"] // a Trailers-Only answer
    })
    stream.on("data", (chunk: Buffer) => {
      size += chunk.length
      if (size <= MAX_BODY) chunks.push(chunk)
    })
    stream.on("trailers", (trailers) => {
      grpcStatus = trailers["grpc-status"]
    })
    stream.on("error", () => answer(false))
    stream.on("close", () => answer(status === 200 && grpcStatus === "0" && servingStatusOf(Buffer.concat(chunks)) === 1))
    stream.end(body)
    return Effect.sync(() => answer(false))
  })
}

/** The probe a health-check config asks for. */
export const probeFor = (origin: string, check: HealthCheck, tls?: UpstreamTls): Effect.Effect<boolean> => {
  const url = new URL(origin)
  return check.type === "tcp"
    ? tcpProbe(url.hostname, Number(url.port || (url.protocol === "https:" ? 443 : 80)))
    : check.type === "grpc"
    ? grpcProbe(url, check, tls)
    : httpProbe(url, check, tls)
}
