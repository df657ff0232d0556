/**
 * Who the client is when the gateway sits behind other proxies (a cloud load balancer, a CDN):
 * the `X-Forwarded-For` of a peer in `trusted_proxies` is believed, read from the right, and
 * the client is the first address that is not itself a trusted proxy (nginx's realip module
 * with `real_ip_recursive on`, Envoy's and Traefik's trusted hops). Entries left of it were
 * written by whoever the client is, so they are never believed. Without X-Forwarded-For, the
 * `for=` parameters of RFC 7239's `Forwarded` are read the same way.
 */
import { isIpAddress, type CidrMatcher } from "../config/Cidr.ts"

/**
 * The client's address: `peer` (the socket's remote address) unless `peer` is trusted and
 * `forwardedFor` (every X-Forwarded-For line of the request, joined with ", ") names another.
 * All entries trusted: the leftmost. An entry that is not an address (garbage, a port, an
 * obfuscated name) ends the walk at the trusted hop that passed it on.
 *
 * @example
 * const trusted = compileCidrs(["10.0.0.0/8"])
 * clientAddress("10.0.0.2", "203.0.113.7, 10.0.0.9", trusted) // => "203.0.113.7"
 * clientAddress("192.0.2.1", "203.0.113.7", trusted) // => "192.0.2.1"
 */
export const clientAddress = (peer: string, forwardedFor: string | undefined, trusted: CidrMatcher | undefined): string => {
  if (trusted === undefined || forwardedFor === undefined || !trusted(peer)) return peer
  let client = peer
  let end = forwardedFor.length
  for (;;) {
    const comma = forwardedFor.lastIndexOf(",", end - 1)
    const entry = forwardedFor.slice(comma + 1, end).trim()
    if (!isIpAddress(entry)) return client
    if (comma === -1 || !trusted(entry)) return entry
    client = entry
    end = comma
  }
}

/**
 * The `for=` nodes of a `Forwarded` value (RFC 7239 §4) as an X-Forwarded-For-like list: one
 * entry per forwarded element, quotes, the brackets of an IPv6 node and a port removed. An
 * element without `for=`, or an obfuscated or `unknown` node, stays a non-address entry, so
 * the walk stops there.
 *
 * @example
 * forwardedForList('for=192.0.2.60;proto=http, for="[2001:db8::1]:4711"') // => "192.0.2.60, 2001:db8::1"
 */
export const forwardedForList = (forwarded: string): string => {
  const out: Array<string> = []
  let node = "-"
  let i = 0
  const n = forwarded.length
  while (i <= n) {
    // One parameter: name=value, the value a token or a quoted string.
    while (i < n && (forwarded[i] === " " || forwarded[i] === "\t")) i++
    const eq = forwarded.indexOf("=", i)
    let name = ""
    let value = ""
    let next = i
    if (eq !== -1) {
      name = forwarded.slice(i, eq).trim().toLowerCase()
      let j = eq + 1
      if (forwarded[j] === '"') {
        j++
        while (j < n && forwarded[j] !== '"') {
          if (forwarded[j] === "\\") j++
          value += forwarded[j] ?? ""
          j++
        }
        j++
      } else {
        const start = j
        while (j < n && forwarded[j] !== ";" && forwarded[j] !== ",") j++
        value = forwarded.slice(start, j).trim()
      }
      next = j
    } else next = n
    while (next < n && forwarded[next] !== ";" && forwarded[next] !== ",") next++
    if (name === "for") node = value
    const separator = forwarded[next]
    if (separator === ";") {
      i = next + 1
      continue
    }
    out.push(nodeAddress(node))
    node = "-"
    if (separator !== ",") break
    i = next + 1
  }
  return out.join(", ")
}

/** An RFC 7239 node without its brackets and port: `[2001:db8::1]:80` → `2001:db8::1`, `192.0.2.1:80` → `192.0.2.1`. */
const nodeAddress = (node: string): string => {
  if (node.startsWith("[")) {
    const close = node.indexOf("]")
    return close === -1 ? node : node.slice(1, close)
  }
  const colon = node.indexOf(":")
  return colon !== -1 && node.indexOf(":", colon + 1) === -1 ? node.slice(0, colon) : node
}
