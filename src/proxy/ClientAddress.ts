/**
 * Who the client is when the gateway sits behind other proxies (a cloud load balancer, a CDN):
 * the `X-Forwarded-For` of a peer in `trusted_proxies` is believed, read from the right, and
 * the client is the first address that is not itself a trusted proxy (nginx's realip module
 * with `real_ip_recursive on`, Envoy's and Traefik's trusted hops). Entries left of it were
 * written by whoever the client is, so they are never believed.
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
