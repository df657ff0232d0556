/**
 * Hop-by-hop headers (RFC 9110 §7.6.1) belong to one connection and are never forwarded,
 * in either direction. Names listed in a `Connection` header are hop-by-hop too.
 */
export const HOP_BY_HOP: ReadonlySet<string> = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "proxy-authenticate",
  "proxy-authorization",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade"
])

/**
 * The extra names a `Connection` header value declares hop-by-hop, lower-cased; undefined
 * when it names none beyond the usual `close` / `keep-alive` (the common case, no allocation).
 *
 * @example
 * connectionTokens("keep-alive, X-Secret") // => Set { "keep-alive", "x-secret" }
 */
export const connectionTokens = (value: string | undefined): ReadonlySet<string> | undefined => {
  if (value === undefined) return undefined
  const lower = value.toLowerCase()
  if (lower === "keep-alive" || lower === "close") return undefined
  const tokens = new Set<string>()
  for (const part of lower.split(",")) {
    const t = part.trim()
    if (t !== "") tokens.add(t)
  }
  return tokens
}
