import { describe, expect, it } from "@effect/vitest"
import * as fc from "fast-check"
import { makeSniIndex } from "../../src/listener/SniIndex.ts"

/** The rule as RFC 6125 and nginx's server_name state it, checked name by name in list order. */
const reference = (entries: ReadonlyArray<{ names: ReadonlyArray<string>; value: number }>, servername: string | undefined): number => {
  if (servername === undefined || servername === "") return entries[0].value
  const name = servername.toLowerCase()
  for (const e of entries) if (e.names.some((n) => n.toLowerCase() === name && !n.startsWith("*."))) return e.value
  const labels = name.split(".")
  for (const e of entries) {
    if (e.names.some((n) => n.startsWith("*.") && labels.length >= 2 && labels[0] !== "" && labels.slice(1).join(".") === n.slice(2).toLowerCase())) return e.value
  }
  return entries[0].value
}

const label = fc.constantFrom("a", "b", "x", "www", "api", "B")
const dnsName = fc.array(label, { minLength: 1, maxLength: 3 }).map((ls) => ls.join("."))
const certName = fc.oneof(dnsName, dnsName.map((n) => `*.${n}`))

describe("SNI index", () => {
  it("answers as the reference rule for any certificates and any name: exact, then a one-label wildcard, then the first", () => {
    fc.assert(fc.property(
      fc.array(fc.array(certName, { minLength: 1, maxLength: 3 }), { minLength: 1, maxLength: 4 }),
      fc.option(fc.oneof(dnsName, fc.constant("")), { nil: undefined }),
      (names, servername) => {
        const entries = names.map((n, value) => ({ names: n, value }))
        const index = makeSniIndex(entries as [typeof entries[0], ...typeof entries])
        expect(index.lookup(servername)).toBe(reference(entries, servername))
      }
    ), { numRuns: 2000 })
  })

  it("an exact name listed after a wildcard still wins; a wildcard does not cover its own base name or two labels", () => {
    const index = makeSniIndex([{ names: ["first.test"], value: "first" }, { names: ["*.b.test"], value: "wild" }, { names: ["x.b.test"], value: "exact" }])
    expect(["x.b.test", "y.b.test", "b.test", "z.y.b.test", ".b.test", "", undefined].map((n) => index.lookup(n))).toEqual(
      ["exact", "wild", "first", "first", "first", "first", "first"]
    )
  })
})
