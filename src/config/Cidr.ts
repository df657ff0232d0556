/**
 * Lists of IP ranges as the config writes them (`10.0.0.0/8`, `2001:db8::/32`, or a bare
 * address for one host), checked when the config is decoded and compiled once into a matcher
 * the request path calls with the peer's address. IPv4-mapped IPv6 (`::ffff:10.1.2.3`, what a
 * dual-stack socket reports for an IPv4 client) is matched as the IPv4 address it carries, on
 * either side. Parsing is ipaddr.js's.
 */
import ipaddr from "ipaddr.js"
import * as Schema from "effect/Schema"

type Address = ipaddr.IPv4 | ipaddr.IPv6
type Range = readonly [Address, number]

// Strict forms only: ipaddr.js's lenient IPv4 parser would read "10" or "0x0a.1" as addresses,
// which neither a socket nor a well-behaved proxy ever writes.
const parseAddress = (text: string): Address | undefined => {
  if (ipaddr.IPv4.isValidFourPartDecimal(text)) return ipaddr.IPv4.parse(text)
  if (!ipaddr.IPv6.isValid(text)) return undefined
  const v6 = ipaddr.IPv6.parse(text)
  return v6.isIPv4MappedAddress() ? v6.toIPv4Address() : v6
}

const parseRange = (text: string): Range | undefined => {
  const slash = text.indexOf("/")
  if (slash === -1) {
    const address = parseAddress(text)
    return address === undefined ? undefined : [address, address.kind() === "ipv4" ? 32 : 128]
  }
  const bitsText = text.slice(slash + 1)
  if (!/^\d{1,3}$/.test(bitsText)) return undefined
  const bits = Number(bitsText)
  const base = text.slice(0, slash)
  if (ipaddr.IPv4.isValidFourPartDecimal(base)) return bits <= 32 ? [ipaddr.IPv4.parse(base), bits] : undefined
  if (!ipaddr.IPv6.isValid(base) || bits > 128) return undefined
  const v6 = ipaddr.IPv6.parse(base)
  // `::ffff:a.b.c.d/96+n` is the IPv4 range `a.b.c.d/n`.
  return v6.isIPv4MappedAddress() && bits >= 96 ? [v6.toIPv4Address(), bits - 96] : [v6, bits]
}

/**
 * Whether `text` is an IPv4 address in dotted decimal or an IPv6 address.
 *
 * @example
 * isIpAddress("10.0.0.1") // => true
 * isIpAddress("10") // => false
 */
export const isIpAddress = (text: string): boolean => parseAddress(text) !== undefined

/** An address or a CIDR range, IPv4 or IPv6. */
export const CidrText = Schema.String.pipe(
  Schema.check(Schema.makeFilter((text: string) =>
    parseRange(text) !== undefined || "Expected an IP address or a CIDR range such as 10.0.0.0/8 or 2001:db8::/32"
  , { toJsonSchema: () => [{}, true] as const })) // no JSON Schema form; annotations on it kept (see Schema.ts)
)

/** Whether an address (as a socket reports it) is in one of the ranges; false for what is not an address. */
export type CidrMatcher = (address: string) => boolean

/**
 * Compiles decoded ranges (see `CidrText`) into a matcher.
 *
 * @example
 * const trusted = compileCidrs(["10.0.0.0/8", "::1"])
 * trusted("10.1.2.3") // => true
 * trusted("::ffff:10.1.2.3") // => true
 * trusted("192.0.2.1") // => false
 */
export const compileCidrs = (texts: ReadonlyArray<string>): CidrMatcher => {
  const v4: Array<Range> = []
  const v6: Array<Range> = []
  for (const text of texts) {
    const range = parseRange(text)
    if (range === undefined) continue // refused by CidrText when the config was decoded
    ;(range[0].kind() === "ipv4" ? v4 : v6).push(range)
  }
  return (text) => {
    const address = parseAddress(text)
    if (address === undefined) return false
    const ranges = address.kind() === "ipv4" ? v4 : v6
    for (let i = 0; i < ranges.length; i++) {
      if (address.match(ranges[i] as [Address, number])) return true
    }
    return false
  }
}
