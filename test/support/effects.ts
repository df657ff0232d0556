/** Small helpers for Effect tests that drive services with TestClock. */
import { assert } from "@effect/vitest"
import { Effect, Result } from "effect"
import { TestClock } from "effect/testing"
import { decodeConfig } from "../../src/config/ConfigLoader.ts"

/** Decodes a config value or fails the test with the decoder's message. */
export const decoded = (raw: unknown) => {
  const result = decodeConfig(raw, "<test>")
  if (Result.isFailure(result)) return assert.fail(result.failure.message)
  return result.success
}

/** Lets forked fibers run until they suspend again (no time passes). */
export const settle = Effect.gen(function*() {
  for (let i = 0; i < 5; i++) yield* Effect.yieldNow
  yield* TestClock.adjust(0)
})
