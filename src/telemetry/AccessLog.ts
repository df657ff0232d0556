/**
 * One line per finished request, written straight to a stream: the line is assembled from
 * strings rather than through JSON.stringify or the Effect logger, because it runs once per
 * request on the hot path.
 */
import type { IncomingMessage } from "node:http"
import type { Writable } from "node:stream"

export interface AccessLog {
  /** `error` is the tag of the gateway error that ended the request, if one did. */
  write(
    req: IncomingMessage,
    path: string,
    status: number,
    bytes: number,
    durationMs: number,
    route: string,
    upstream: string,
    error?: string
  ): void
}

// Escapes what JSON requires in a string; request data may contain quotes or control bytes.
const escape = (s: string): string => {
  // eslint-disable-next-line no-control-regex
  return /["\\\u0000-\u001f\u007f-\uffff]/.test(s) ? JSON.stringify(s).slice(1, -1) : s
}

/**
 * @example
 * const log = makeAccessLog("json", process.stdout)
 */
export const makeAccessLog = (format: "json" | "text", out: Writable): AccessLog => ({
  write(req, path, status, bytes, durationMs, route, upstream, error) {
    const time = new Date().toISOString()
    const ip = req.socket.remoteAddress ?? "-"
    const ms = durationMs.toFixed(3)
    out.write(
      format === "json"
        ? `{"time":"${time}","client":"${ip}","method":"${escape(req.method ?? "")}","path":"${escape(path)}","status":${status},"bytes":${bytes},"duration_ms":${ms},"route":"${escape(route)}","upstream":"${escape(upstream)}"${error === undefined ? "" : `,"error":"${error}"`}}\n`
        : `${time} ${ip} "${req.method} ${path}" ${status} ${bytes} ${ms}ms route=${route} upstream=${upstream}${error === undefined ? "" : ` error=${error}`}\n`
    )
  }
})
