import { assert, describe, it } from "@effect/vitest"
import * as fc from "fast-check"
import { formatTraceParent, parseTraceParent, shouldSample, type TraceParent } from "../../src/telemetry/Tracing.ts"

const HEX_DIGITS = "0123456789abcdef"
const hex = (length: number) => fc.string({ unit: fc.constantFrom(...HEX_DIGITS), minLength: length, maxLength: length })
/** Hex ids that are not all zeros (the only ids W3C Trace Context accepts). */
const nonZeroHex = (length: number) => hex(length).filter((s) => /[1-9a-f]/.test(s))

/**
 * W3C Trace Context level 1 §3.2, written from the spec rather than from the parser:
 * `version-traceid-parentid-flags` in lower-case hex, version `ff` invalid, all-zero ids invalid,
 * version 00 exactly 55 characters, a later version possibly followed by `-` and anything.
 */
const W3C = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/s
const model = (s: string): TraceParent | undefined => {
  const m = W3C.exec(s)
  if (m === null) return undefined
  const [, version, traceId, spanId, flags, rest] = m
  if (version === "ff" || (version === "00" && rest !== undefined)) return undefined
  if (/^0+$/.test(traceId) || /^0+$/.test(spanId)) return undefined
  return { traceId, spanId, sampled: (parseInt(flags, 16) & 1) === 1 }
}

interface Valid {
  readonly text: string
  readonly expected: TraceParent
}

/** Any valid traceparent: versions 00 to fe, any flags, and for later versions an optional `-…` tail. */
const validArb: fc.Arbitrary<Valid> = fc
  .record({
    version: fc.integer({ min: 0, max: 0xfe }).map((n) => n.toString(16).padStart(2, "0")),
    traceId: nonZeroHex(32),
    spanId: nonZeroHex(16),
    flags: hex(2),
    tail: fc.option(fc.string({ maxLength: 20 }), { nil: undefined })
  })
  .map(({ flags, spanId, tail, traceId, version }) => ({
    text: `${version}-${traceId}-${spanId}-${flags}${version === "00" || tail === undefined ? "" : `-${tail}`}`,
    expected: { traceId, spanId, sampled: (parseInt(flags, 16) & 1) === 1 }
  }))

const replaceAt = (s: string, at: number, c: string) => s.slice(0, at) + c + s.slice(at + 1)
/** Positions of the id characters in `00-<32>-<16>-01`. */
const ID_POSITIONS = [...Array.from({ length: 32 }, (_, i) => 3 + i), ...Array.from({ length: 16 }, (_, i) => 36 + i)]

/** One way of breaking a valid traceparent, each of which makes it invalid. */
const malformedArb: fc.Arbitrary<{ readonly how: string; readonly text: string }> = fc.oneof(
  // An id character that is not lower-case hex (upper-case included).
  fc.tuple(validArb, fc.constantFrom(...ID_POSITIONS), fc.constantFrom(..."ABCDEFGZgz-_ .")).map(([v, at, c]) => ({
    how: "non-hex id character",
    text: replaceAt(v.text, at, c)
  })),
  validArb.map((v) => ({ how: "all-zero trace id", text: `${v.text.slice(0, 3)}${"0".repeat(32)}${v.text.slice(35)}` })),
  validArb.map((v) => ({ how: "all-zero span id", text: `${v.text.slice(0, 36)}${"0".repeat(16)}${v.text.slice(52)}` })),
  validArb.map((v) => ({ how: "version ff", text: `ff${v.text.slice(2)}` })),
  fc.tuple(validArb, fc.constantFrom(..."ABFGxz-")).map(([v, c]) => ({ how: "non-hex version", text: replaceAt(v.text, 1, c) })),
  fc.tuple(validArb, fc.string({ maxLength: 10 })).map(([v, tail]) => ({
    how: "fields after the flags in version 00",
    text: `00${v.text.slice(2, 55)}-${tail}`
  })),
  fc.tuple(validArb, fc.string({ minLength: 1, maxLength: 10 }).filter((t) => !t.startsWith("-"))).map(([v, tail]) => ({
    how: "a later version followed by something other than '-'",
    text: `01${v.text.slice(2, 55)}${tail}`
  })),
  fc.tuple(validArb, fc.constantFrom(2, 35, 52), fc.constantFrom(..."_ 0a.")).map(([v, at, c]) => ({
    how: "a separator that is not '-'",
    text: replaceAt(v.text, at, c)
  })),
  fc.tuple(validArb, fc.integer({ min: 0, max: 54 })).map(([v, length]) => ({ how: "cut short", text: v.text.slice(0, length) })),
  fc.tuple(validArb, fc.integer({ min: 0, max: 54 }), fc.constantFrom(...HEX_DIGITS)).map(([v, at, c]) => ({
    how: "one character too many before the flags end",
    text: v.text.slice(0, at) + c + v.text.slice(at)
  }))
)

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
    fc.assert(fc.property(nonZeroHex(32), nonZeroHex(16), fc.boolean(), (traceId, spanId, sampled) => {
      assert.deepStrictEqual(parseTraceParent(formatTraceParent(traceId, spanId, sampled)), { traceId, spanId, sampled })
    })))

  it("reads every valid traceparent: any version but ff, any flags (bit 0 is sampled), a later version's extra fields", () =>
    fc.assert(fc.property(validArb, ({ expected, text }) => {
      assert.deepStrictEqual(parseTraceParent(text), expected, text)
    })))

  it("refuses every malformed traceparent", () =>
    fc.assert(fc.property(malformedArb, ({ how, text }) => {
      assert.isUndefined(model(text), `the test's own model accepts a ${how}: ${text}`)
      assert.isUndefined(parseTraceParent(text), `${how}: ${text}`)
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

  it("on any input (arbitrary text, valid and broken traceparents) never throws and agrees with the W3C rules", () => {
    let accepted = 0
    let refused = 0
    fc.assert(fc.property(
      fc.oneof(
        fc.string({ maxLength: 80 }),
        validArb.map((v) => v.text),
        malformedArb.map((m) => m.text),
        // One arbitrary character changed anywhere in a valid traceparent (often still valid).
        fc.tuple(validArb, fc.nat(), fc.constantFrom(..."0aF-_ ")).map(([v, at, c]) => replaceAt(v.text, at % v.text.length, c))
      ),
      (s) => {
        const parsed = parseTraceParent(s)
        assert.deepStrictEqual(parsed, model(s), s)
        parsed === undefined ? refused++ : accepted++
      }
    ), { numRuns: 2_000 })
    // Both outcomes were exercised, many times each.
    assert.isAbove(accepted, 200, "valid inputs generated")
    assert.isAbove(refused, 200, "invalid inputs generated")
  })
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
