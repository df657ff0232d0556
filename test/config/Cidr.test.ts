/**
 * CIDR lists (`trusted_proxies`, and the IP filters to come): what the config accepts, and
 * matching checked against a reference that compares the leading bits as integers, for IPv4,
 * IPv6 and IPv4-mapped IPv6 on either side.
 */
import fc from "fast-check"
import * as Schema from "effect/Schema"
import { describe, expect, it } from "vitest"
import { CidrText, compileCidrs, isIpAddress } from "../../src/config/Cidr.ts"

const valid = (text: string) => Schema.decodeUnknownExit(CidrText)(text)._tag === "Success"

const v4Text = (n: number) => [24, 16, 8, 0].map((s) => (n >>> s) & 255).join(".")
const v6Text = (n: bigint) => Array.from({ length: 8 }, (_, i) => ((n >> BigInt(112 - 16 * i)) & 0xffffn).toString(16)).join(":")

/** The reference: the first `bits` bits of both numbers are equal. */
const sameLeading = (a: bigint, b: bigint, bits: number, width: number) =>
  bits === 0 || (a >> BigInt(width - bits)) === (b >> BigInt(width - bits))

describe("CidrText", () => {
  it("accepts addresses and ranges of both families", () => {
    for (const text of ["10.0.0.0/8", "192.0.2.1", "0.0.0.0/0", "2001:db8::/32", "::1", "::/0", "::ffff:10.0.0.0/104", "10.1.2.3/32", "2001:db8::1/128"]) {
      expect(valid(text), text).toBe(true)
    }
  })

  it("refuses what is not one, with a message saying what is expected", () => {
    for (const text of ["", "10", "10.0.0", "0x0a.0.0.1", "10.0.0.0/33", "2001:db8::/129", "10.0.0.0/", "10.0.0.0/8/8", "10.0.0.0/-1", "example.com", "10.0.0.256", "10.0.0.0/8 ", "10.0.0.0/1e1"]) {
      expect(valid(text), text).toBe(false)
    }
    for (const text of ["10.0.0.0/33", "example.com"]) {
      expect(String(Schema.decodeUnknownExit(CidrText)(text))).toContain("Expected an IP address or a CIDR range such as 10.0.0.0/8 or 2001:db8::/32")
    }
  })
})

describe("compileCidrs", () => {
  it("examples: both families, a bare address, mapped IPv6 on either side, and non-addresses", () => {
    const m = compileCidrs(["10.0.0.0/8", "192.0.2.7", "2001:db8::/32", "::ffff:172.16.0.0/108"])
    expect(m("10.255.0.1")).toBe(true)
    expect(m("11.0.0.1")).toBe(false)
    expect(m("192.0.2.7")).toBe(true)
    expect(m("192.0.2.8")).toBe(false)
    expect(m("2001:db8:1::5")).toBe(true)
    expect(m("2001:db9::5")).toBe(false)
    expect(m("::ffff:10.1.2.3")).toBe(true)
    expect(m("172.31.255.255")).toBe(true)
    expect(m("172.32.0.0")).toBe(false)
    expect(m("")).toBe(false)
    expect(m("10")).toBe(false)
    expect(m("not an address")).toBe(false)
    expect(compileCidrs([])("10.0.0.1")).toBe(false)
  })

  it("a bare IPv6 address is one host; a mapped-looking range shorter than /96 stays an IPv6 range", () => {
    expect(compileCidrs(["::1"])("::1")).toBe(true)
    expect(compileCidrs(["::1"])("::2")).toBe(false)
    const wide = compileCidrs(["::ffff:10.0.0.0/80"])
    expect(wide("::1")).toBe(true)
    expect(wide("2001:db8::1")).toBe(false)
  })

  it("skips what is not a range (the config decoder refuses it first)", () => {
    expect(compileCidrs(["garbage", "10.0.0.0/8"])("10.1.1.1")).toBe(true)
  })

  it("property: an IPv4 address is in a range exactly when its leading bits equal the range's", () => {
    fc.assert(fc.property(fc.integer({ min: 0, max: 2 ** 32 - 1 }), fc.integer({ min: 0, max: 2 ** 32 - 1 }), fc.integer({ min: 0, max: 32 }), fc.boolean(), (base, address, bits, mapped) => {
      const expected = sameLeading(BigInt(base), BigInt(address), bits, 32)
      const matcher = compileCidrs([`${v4Text(base)}/${bits}`])
      expect(matcher(v4Text(address))).toBe(expected)
      // The same address as a dual-stack socket reports it, and the range written as mapped IPv6.
      expect(matcher(`::ffff:${v4Text(address)}`)).toBe(expected)
      if (mapped) expect(compileCidrs([`::ffff:${v4Text(base)}/${bits + 96}`])(v4Text(address))).toBe(expected)
    }))
  })

  it("property: an IPv6 address is in a range exactly when its leading bits equal the range's; IPv4 never matches an IPv6 range", () => {
    const u128 = fc.bigInt({ min: 1n << 48n, max: (1n << 128n) - 1n }) // above ::ffff:0:0/96, so never mapped
    fc.assert(fc.property(u128, u128, fc.integer({ min: 0, max: 128 }), fc.integer({ min: 0, max: 2 ** 32 - 1 }), (base, address, bits, v4) => {
      const matcher = compileCidrs([`${v6Text(base)}/${bits}`])
      expect(matcher(v6Text(address))).toBe(sameLeading(base, address, bits, 128))
      expect(matcher(v4Text(v4))).toBe(false)
    }))
  })

  it("isIpAddress takes the strict forms only", () => {
    expect(isIpAddress("127.0.0.1")).toBe(true)
    expect(isIpAddress("::1")).toBe(true)
    expect(isIpAddress("127.1")).toBe(false)
    expect(isIpAddress("127.0.0.1:80")).toBe(false)
    expect(isIpAddress("[::1]")).toBe(false)
  })
})
