import { assert, describe, it } from "@effect/vitest"
import { transferCodings } from "../../src/proxy/TransferCoding.ts"

describe("transferCodings", () => {
  it("plain chunked: no other coding, chunked once", () => {
    assert.deepStrictEqual(transferCodings("chunked"), { others: "", chunked: 1 })
  })

  it("keeps the other codings in order, joined with \", \"", () => {
    assert.deepStrictEqual(transferCodings("gzip, br, chunked"), { others: "gzip, br", chunked: 1 })
  })

  it("reads repeated fields (undici hands them over as an array) as one list", () => {
    assert.deepStrictEqual(transferCodings(["gzip", "chunked"]), { others: "gzip", chunked: 1 })
  })

  it("matches chunked in any case and counts every occurrence", () => {
    assert.deepStrictEqual(transferCodings("Chunked, CHUNKED"), { others: "", chunked: 2 })
  })

  it("skips empty list elements (RFC 9110 §5.6.1)", () => {
    assert.deepStrictEqual(transferCodings("gzip,, ,chunked"), { others: "gzip", chunked: 1 })
  })

  it("an empty value has no coding at all", () => {
    assert.deepStrictEqual(transferCodings(""), { others: "", chunked: 0 })
  })
})
