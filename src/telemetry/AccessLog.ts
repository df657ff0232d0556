/**
 * One line per finished request, written straight to a stream: the line is assembled from
 * strings rather than through JSON.stringify or the Effect logger, because it runs once per
 * request on the hot path. `json` has one field per fact; `text` is the combined log format
 * (as nginx and Apache write it) followed by `key=value` fields for the gateway's own facts.
 */
import type { IncomingMessage } from "node:http"
import type { Writable } from "node:stream"

/** What the access log says about one request. */
export interface AccessRecord {
  readonly req: IncomingMessage
  /** Taken when the request arrived: node:http detaches `req.socket` once a body has been read. */
  readonly clientIp: string
  readonly route: string
  /** The normalised request path, without the query. */
  readonly path: string
  readonly status: number
  readonly bytesIn: number
  readonly bytesOut: number
  readonly durationMs: number
  /** The endpoint that answered (or was tried last), `-` when none was. */
  readonly upstream: string
  readonly attempts: number
  readonly traceId: string | undefined
  /** The tag of the gateway error that ended the request, if one did. */
  readonly error: string | undefined
  /** The identity an auth middleware established (API key name, Basic user). */
  readonly consumer?: string | undefined
}

export interface AccessLog {
  write(record: AccessRecord): void
}

// Escapes what JSON requires in a string; request data may contain quotes or control bytes.
const escape = (s: string): string => {
  // eslint-disable-next-line no-control-regex
  return /["\\\u0000-\u001f\u007f-\uffff]/.test(s) ? JSON.stringify(s).slice(1, -1) : s
}

/** Reads one request header (the proxy passes its raw-header lookup: `req.headers` would build an object per logged request). */
export type HeaderLookup = (raw: ReadonlyArray<string>, name: string) => string | undefined

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
const pad = (n: number) => (n < 10 ? `0${n}` : String(n))

/** `10/Oct/2026:13:55:36 +0000`, the combined log format's time, in UTC. */
export const clfTime = (date: Date): string =>
  `${pad(date.getUTCDate())}/${MONTHS[date.getUTCMonth()]}/${date.getUTCFullYear()}:${pad(date.getUTCHours())}:${
    pad(date.getUTCMinutes())
  }:${pad(date.getUTCSeconds())} +0000`

const jsonLine = (r: AccessRecord, listener: string, header: HeaderLookup): string => {
  const req = r.req
  const ua = header(req.rawHeaders, "user-agent")
  return `{"time":"${new Date().toISOString()}","listener":"${listener}","route":"${escape(r.route)}","method":"${
    escape(req.method ?? "")
  }","path":"${escape(r.path)}","status":${r.status},"duration_ms":${r.durationMs.toFixed(3)},"bytes_in":${r.bytesIn},"bytes_out":${r.bytesOut},"upstream":"${
    escape(r.upstream)
  }","attempts":${r.attempts},"client_ip":"${r.clientIp}","user_agent":${
    ua === undefined ? "null" : `"${escape(ua)}"`
  },"trace_id":${r.traceId === undefined ? "null" : `"${r.traceId}"`}${r.error === undefined ? "" : `,"error":"${r.error}"`}${r.consumer === undefined ? "" : `,"consumer":"${escape(r.consumer)}"`}}\n`
}

// In the quoted fields of the combined format a quote or backslash is escaped, as nginx does.
const quoted = (s: string | undefined): string => (s === undefined ? "-" : escape(s))

const textLine = (r: AccessRecord, listener: string, header: HeaderLookup): string => {
  const req = r.req
  return `${r.clientIp === "" ? "-" : r.clientIp} - ${r.consumer === undefined || r.consumer === "" ? "-" : escape(r.consumer).replaceAll(" ", "%20")} [${clfTime(new Date())}] "${escape(req.method ?? "")} ${escape(req.url ?? "")} HTTP/${req.httpVersion}" ${r.status} ${r.bytesOut} "${
    quoted(header(req.rawHeaders, "referer"))
  }" "${quoted(header(req.rawHeaders, "user-agent"))}" listener=${listener} route=${r.route} duration_ms=${r.durationMs.toFixed(3)} upstream=${r.upstream} attempts=${r.attempts} bytes_in=${r.bytesIn} trace_id=${
    r.traceId ?? "-"
  }${r.error === undefined ? "" : ` error=${r.error}`}\n`
}

/**
 * @example
 * const log = makeAccessLog("json", process.stdout, "public", lookupHeader)
 */
export const makeAccessLog = (format: "json" | "text", out: Writable, listener: string, header: HeaderLookup): AccessLog => {
  const line = format === "json" ? jsonLine : textLine
  const name = escape(listener)
  return { write: (record) => void out.write(line(record, name, header)) }
}
