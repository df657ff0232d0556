/**
 * The request-target of RFC 9112 §3.2, reduced to what routing needs: a normalised path,
 * the raw query and the host. Normalisation happens before matching and the normalised
 * path is what goes upstream, so the router and the upstream see the same resource and
 * no dot-segment or percent-encoding trick can route around a route.
 */

/** Why a request-target was refused; the listener answers 400. */
export type TargetProblem = "invalid-target" | "invalid-encoding" | "invalid-host"

export interface RequestTarget {
  /** Normalised path: dot-segments removed, slashes merged, unreserved characters decoded. */
  readonly path: string
  /** The query including its leading `?`, or "" when there is none. Forwarded unchanged. */
  readonly query: string
  /** Lower-case host without port or trailing dot; "" when the request named none. */
  readonly host: string
}

const isHex = (c: number) => (c >= 48 && c <= 57) || (c >= 65 && c <= 70) || (c >= 97 && c <= 102)
const hexValue = (c: number) => (c <= 57 ? c - 48 : (c | 0x20) - 87)
const isUnreserved = (c: number) =>
  (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || (c >= 48 && c <= 57) || c === 45 || c === 46 || c === 95 || c === 126
const HEX = "0123456789ABCDEF"

/**
 * Normalises an absolute path per RFC 3986 §6.2.2: decodes percent-encoded unreserved characters
 * (so `%2e%2e` is `..`), upper-cases other escapes, merges repeated slashes, then removes
 * dot-segments (never climbing above the root). Encoded `/` (`%2F`) stays encoded: it is data,
 * not a separator. Returns a `TargetProblem` for bad escapes or `%00` (raw control bytes never
 * get here: node:http's strict parser rejects them).
 *
 * @example
 * normalizePath("/a/./b/../%63//d") // => "/a/c/d"
 */
export const normalizePath = (raw: string): string | TargetProblem => {
  // Fast path: the common, already-normal path is returned untouched without allocating.
  if (raw.indexOf("%") === -1 && raw.indexOf("/.") === -1 && raw.indexOf("//") === -1) return raw
  let decoded = ""
  for (let i = 0; i < raw.length; i++) {
    const c = raw.charCodeAt(i)
    if (c !== 37) {
      decoded += raw[i]
      continue
    }
    if (i + 2 >= raw.length) return "invalid-encoding"
    const h = raw.charCodeAt(i + 1)
    const l = raw.charCodeAt(i + 2)
    if (!isHex(h) || !isHex(l)) return "invalid-encoding"
    const value = hexValue(h) * 16 + hexValue(l)
    if (value === 0) return "invalid-encoding"
    decoded += isUnreserved(value) ? String.fromCharCode(value) : `%${HEX[value >> 4]}${HEX[value & 15]}`
    i += 2
  }
  const out: Array<string> = []
  const segments = decoded.split("/")
  // segments[0] is "" (the path is absolute); the last one decides about a trailing slash.
  for (let i = 1; i < segments.length; i++) {
    const seg = segments[i]
    const last = i === segments.length - 1
    if (seg === "" && !last) continue
    if (seg === ".") {
      if (last) out.push("")
      continue
    }
    if (seg === "..") {
      out.pop()
      if (last) out.push("")
      continue
    }
    out.push(seg)
  }
  return "/" + out.join("/")
}

// reg-name without `*` (which would read as a wildcard to the router) or IP-literal, then a port.
const hostPattern = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~!$&'()+,;=-]+)(?::\d*)?$/

/** Lower-cases a Host value and drops its port and a trailing dot; undefined when malformed. */
export const normalizeHost = (value: string): string | undefined => {
  if (!hostPattern.test(value)) return undefined
  let host = value
  if (host.charCodeAt(0) === 91) host = host.slice(0, host.indexOf("]") + 1)
  else {
    const colon = host.indexOf(":")
    if (colon !== -1) host = host.slice(0, colon)
  }
  if (host.endsWith(".")) host = host.slice(0, -1)
  if (host === "" || host.startsWith(".")) return undefined
  return host.toLowerCase()
}

/**
 * Parses an origin-form (`/p?q`) or absolute-form (`http://h/p?q`) target. For absolute-form the
 * authority in the target replaces the Host header (RFC 9112 §3.2.2). The asterisk and authority
 * forms are answered by the listener before routing and are refused here.
 *
 * @example
 * parseRequestTarget("/a/../b?x=1", "Example.com:8080") // => { path: "/b", query: "?x=1", host: "example.com" }
 */
export const parseRequestTarget = (url: string, hostHeader: string | undefined): RequestTarget | TargetProblem => {
  let pathAndQuery = url
  let authority = hostHeader
  if (url.charCodeAt(0) !== 47) {
    const m = /^https?:\/\/([^/?#]*)([^#]*)$/i.exec(url)
    if (m === null) return "invalid-target"
    // RFC 9110 §4.2.1: an http(s) URI with an empty host is invalid; it must not select the no-host routes.
    if (m[1] === "") return "invalid-host"
    authority = m[1]
    pathAndQuery = m[2] === "" ? "/" : m[2].charCodeAt(0) === 63 ? "/" + m[2] : m[2]
    if (pathAndQuery.charCodeAt(0) !== 47) return "invalid-target"
  }
  if (pathAndQuery.indexOf("#") !== -1) return "invalid-target"
  const q = pathAndQuery.indexOf("?")
  const rawPath = q === -1 ? pathAndQuery : pathAndQuery.slice(0, q)
  const path = normalizePath(rawPath)
  if (path === "invalid-encoding" || path === "invalid-target" || path === "invalid-host") return path
  const host = authority === undefined ? "" : normalizeHost(authority)
  if (host === undefined) return "invalid-host"
  return { path, query: q === -1 ? "" : pathAndQuery.slice(q), host }
}
