import { assert, describe, it } from "@effect/vitest"
import * as fc from "fast-check"
import { formatTraceParent, parseTraceParent, shouldSample } from "../../src/telemetry/Tracing.ts"

const hex = (length: number) =>
  fc.string({ unit: fc.constantFrom(..."0123456789abcdef"), minLength: length, maxLength: length })

describe("parseTraceParent", () => {
  it("reads the W3C example", () => {
    assert.deepStrictEqual(parseTraceParent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"), {
      traceId: "4bf92f3577b34da6a3ce929d0e0e4736",
      spanId: "00f067aa0ba902b7",
      sampled: true
    })
    assert.isFalse(parseTraceParent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")!.sampled)
  })

  it("reads back what it formats, for any non-zero ids", () =>
    fc.assert(fc.property(hex(32), hex(16), (traceId, spanId) => {
      fc.pre(/[1-9a-f]/.test(traceId) && /[1-9a-f]/.test(spanId))
      assert.deepStrictEqual(parseTraceParent(formatTraceParent(traceId, spanId, true)), { traceId, spanId, sampled: true })
    })))

  it("rejects all-zero ids, version ff, upper-case hex, wrong lengths and extra fields in version 00", () => {
    for (
      const bad of [
        `00-${"0".repeat(32)}-00f067aa0ba902b7-01`,
        `00-4bf92f3577b34da6a3ce929d0e0e4736-${"0".repeat(16)}-01`,
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
        ""
      ]
    ) assert.isUndefined(parseTraceParent(bad), bad)
  })

  it("accepts a future version with extra fields after the flags", () => {
    assert.isDefined(parseTraceParent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future"))
  })

  it("never throws on arbitrary input", () =>
    fc.assert(fc.property(fc.string({ maxLength: 80 }), (s) => {
      const parsed = parseTraceParent(s)
      if (parsed !== undefined) assert.match(parsed.traceId, /^[0-9a-f]{32}$/)
    })))
})

describe("shouldSample", () => {
  it("follows a valid parent's decision whatever the ratio", () =>
    fc.assert(fc.property(fc.boolean(), fc.double({ min: 0, max: 1, noNaN: true }), (sampled, ratio) => {
      assert.strictEqual(shouldSample({ traceId: "a".repeat(32), spanId: "b".repeat(16), sampled }, ratio, () => 0.5), sampled)
    })))

  it("samples a new trace when the draw is below the ratio, and never at ratio 0", () =>
    fc.assert(fc.property(fc.double({ min: 0, max: 1, noNaN: true }), fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }), (ratio, draw) => {
      assert.strictEqual(shouldSample(undefined, ratio, () => draw), ratio > 0 && draw < ratio)
    })))
})
