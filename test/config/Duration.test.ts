import { assert, describe, it } from "@effect/vitest"
import { Schema } from "effect"
import fc from "fast-check"
import { DurationMs, formatDuration, parseDuration } from "../../src/config/Duration.ts"

describe("parseDuration", () => {
  const valid: ReadonlyArray<readonly [string, number]> = [
    ["0ms", 0],
    ["250ms", 250],
    ["1500ms", 1500],
    ["5s", 5000],
    ["1.5s", 1500],
    ["1m", 60_000],
    ["1.5m", 90_000],
    ["1h", 3_600_000],
    ["2.5h", 9_000_000]
  ]
  for (const [text, ms] of valid) {
    it(`${text} is ${ms} ms`, () => assert.strictEqual(parseDuration(text), ms))
  }

  const invalid = ["5x", "", "5", "ms", "-1s", "1 s", " 1s", "1s ", "1S", "1.s", ".5s", "1d", "1e3ms", "5s5"]
  for (const text of invalid) {
    it(`${JSON.stringify(text)} is not a duration`, () => assert.strictEqual(parseDuration(text), undefined))
  }
})

describe("formatDuration", () => {
  const examples: ReadonlyArray<readonly [number, string]> = [
    [0, "0ms"],
    [1, "1ms"],
    [250, "250ms"],
    [1500, "1500ms"],
    [2000, "2s"],
    [90_000, "90s"],
    [120_000, "2m"],
    [5_400_000, "90m"],
    [3_600_000, "1h"],
    [86_400_000, "24h"]
  ]
  for (const [ms, text] of examples) {
    it(`${ms} ms is written ${text}`, () => assert.strictEqual(formatDuration(ms), text))
  }

  it("parseDuration(formatDuration(ms)) === ms for every integer number of milliseconds", () => {
    fc.assert(
      fc.property(fc.maxSafeNat(), (ms) => parseDuration(formatDuration(ms)) === ms),
      { numRuns: 2000 }
    )
  })

  it("formatDuration uses the largest unit that keeps the value whole", () => {
    const unit = fc.constantFrom(["ms", 1], ["s", 1000], ["m", 60_000], ["h", 3_600_000]) as fc.Arbitrary<readonly [string, number]>
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 1_000_000 }), unit, (n, [, size]) => {
        const text = formatDuration(n * size)
        const m = /^(\d+)(ms|s|m|h)$/.exec(text)
        if (m === null) return false
        const sizes: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }
        const next: Record<string, number | undefined> = { ms: 1000, s: 60_000, m: 3_600_000, h: undefined }
        const written = sizes[m[2]]
        const larger = next[m[2]]
        return written >= size && Number(m[1]) * written === n * size && (larger === undefined || (n * size) % larger !== 0)
      })
    )
  })
})

describe("DurationMs schema", () => {
  it("decodes a duration string to milliseconds", () => {
    assert.strictEqual(Schema.decodeUnknownSync(DurationMs)("250ms"), 250)
  })

  it("rejects 5x with the expected forms", () => {
    assert.throws(() => Schema.decodeUnknownSync(DurationMs)("5x"), /Expected a duration such as 250ms, 5s, 1m or 1h/)
  })

  it("encodes milliseconds back to a duration string", () => {
    assert.strictEqual(Schema.encodeSync(DurationMs)(2000), "2s")
    assert.strictEqual(Schema.encodeSync(DurationMs)(1500), "1500ms")
  })
})
