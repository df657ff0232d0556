/**
 * The client's address behind trusted proxies: the peer unless it is trusted, then the
 * rightmost X-Forwarded-For entry that is not trusted; never an entry left of an untrusted one,
 * never something that is not an address.
 */
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { compileCidrs } from "../../src/config/Cidr.ts"
import { clientAddress, forwardedForList } from "../../src/proxy/ClientAddress.ts"

const trusted = compileCidrs(["10.0.0.0/8", "::1"])

describe("clientAddress", () => {
  it("without trusted_proxies, or from an untrusted peer, is the peer whatever X-Forwarded-For says", () => {
    expect(clientAddress("10.0.0.2", "203.0.113.7", undefined)).toBe("10.0.0.2")
    expect(clientAddress("192.0.2.1", "203.0.113.7", trusted)).toBe("192.0.2.1")
    expect(clientAddress("10.0.0.2", undefined, trusted)).toBe("10.0.0.2")
  })

  it("from a trusted peer, the rightmost entry that is not a trusted proxy", () => {
    expect(clientAddress("10.0.0.2", "203.0.113.7", trusted)).toBe("203.0.113.7")
    expect(clientAddress("10.0.0.2", "198.51.100.1, 203.0.113.7, 10.0.0.9", trusted)).toBe("203.0.113.7")
    expect(clientAddress("::1", "2001:db8::5,10.1.1.1", trusted)).toBe("2001:db8::5")
    expect(clientAddress("::ffff:10.0.0.2", " 203.0.113.7 ", trusted)).toBe("203.0.113.7")
  })

  it("every entry trusted: the leftmost", () => {
    expect(clientAddress("10.0.0.2", "10.0.0.5, 10.0.0.9", trusted)).toBe("10.0.0.5")
  })

  it("an entry that is not an address stops the walk at the trusted hop that passed it on", () => {
    expect(clientAddress("10.0.0.2", "203.0.113.7, garbage", trusted)).toBe("10.0.0.2")
    expect(clientAddress("10.0.0.2", "203.0.113.7, unknown, 10.0.0.9", trusted)).toBe("10.0.0.9")
    expect(clientAddress("10.0.0.2", "203.0.113.7:4711", trusted)).toBe("10.0.0.2")
    expect(clientAddress("10.0.0.2", "", trusted)).toBe("10.0.0.2")
    expect(clientAddress("10.0.0.2", ",203.0.113.7", trusted)).toBe("203.0.113.7")
    expect(clientAddress("10.0.0.2", "203.0.113.7,,10.0.0.9", trusted)).toBe("10.0.0.9")
  })

  it("property: the answer is the peer or an entry, and no entry left of the first untrusted one from the right", () => {
    const octet = fc.integer({ min: 0, max: 255 })
    const entry = fc.oneof(
      fc.tuple(octet, octet).map(([a, b]) => `10.0.${a}.${b}`), // trusted
      fc.tuple(octet, octet).map(([a, b]) => `203.0.${a}.${b}`), // not trusted
      fc.constantFrom("garbage", "", "unknown")
    )
    fc.assert(fc.property(fc.array(entry, { maxLength: 6 }), fc.boolean(), (entries, peerTrusted) => {
      const peer = peerTrusted ? "10.9.9.9" : "192.0.2.1"
      const got = clientAddress(peer, entries.join(", "), trusted)
      // The reference walk (none for an untrusted peer).
      let expected = peer
      for (let i = entries.length - 1; peerTrusted && i >= 0; i--) {
        const e = entries[i]
        if (!/^\d+\.\d+\.\d+\.\d+$/.test(e)) break
        expected = e
        if (!e.startsWith("10.")) break
      }
      expect(got).toBe(expected)
    }))
  })
})

describe("forwardedForList (RFC 7239 Forwarded)", () => {
  it("takes each element's for= node: quotes, IPv6 brackets and ports removed, other parameters ignored", () => {
    expect(forwardedForList(`for=192.0.2.60;proto=http;by=203.0.113.43, for="[2001:db8:cafe::17]:4711"`)).toBe("192.0.2.60, 2001:db8:cafe::17")
    expect(forwardedForList("proto=https;for=198.51.100.17:80")).toBe("198.51.100.17")
    expect(forwardedForList(`FOR="1.2.3.4";by=x,for=5.6.7.8`)).toBe("1.2.3.4, 5.6.7.8")
  })
  it("an element without for=, an obfuscated or unknown node stays a non-address entry (the walk stops there)", () => {
    expect(forwardedForList("for=unknown, for=10.0.0.1")).toBe("unknown, 10.0.0.1")
    expect(forwardedForList(`for="_gazonk"`)).toBe("_gazonk")
    expect(forwardedForList("by=1.2.3.4")).toBe("-")
    const trusted = compileCidrs(["10.0.0.0/8"])
    expect(clientAddress("10.0.0.2", forwardedForList("for=203.0.113.7, for=_hidden, for=10.0.0.9"), trusted)).toBe("10.0.0.9")
    expect(clientAddress("10.0.0.2", forwardedForList("for=203.0.113.7;proto=https, for=10.0.0.9"), trusted)).toBe("203.0.113.7")
  })
})
