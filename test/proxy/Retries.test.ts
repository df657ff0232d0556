/**
 * The retries as an Effect (proxy/Retries.ts) under TestClock, over a scripted exchange: which
 * tries go, when (the compiled schedule's backoff), what `while` (admitRetry) is asked, and
 * which failure the exchange is left to answer with. The real exchange's retries are covered end
 * to end (test/e2e/*Retr*, Chaos); this pins the loop's shape for any script.
 */
import { assert, describe, it } from "@effect/vitest"
import { Clock, Effect, Fiber } from "effect"
import { TestClock } from "effect/testing"
import fc from "fast-check"
import { backoffCap, compileRetryPolicy } from "../../src/resilience/RetryPolicy.ts"
import { retryTries, type FailedTry, type RetryingExchange } from "../../src/proxy/Retries.ts"

/** A try's scripted outcome: it fails (retryably) with this status, or the exchange finishes. */
type Outcome = number | "finished"

const scripted = (outcomes: ReadonlyArray<Outcome>, admits: ReadonlyArray<boolean>, now: () => number) => {
  const starts: Array<number> = []
  const admitted: Array<FailedTry> = []
  const gaveUp: Array<FailedTry> = []
  const exchange: RetryingExchange = {
    admitRetry: (failed) => {
      admitted.push(failed)
      return admits[admitted.length - 1] ?? true
    },
    startRetry: (resume) => {
      starts.push(now())
      const outcome = outcomes[starts.length - 1] ?? "finished"
      resume(outcome === "finished" ? Effect.void : Effect.fail({ failure: outcome, error: undefined }))
    },
    giveUp: (failed) => void gaveUp.push(failed)
  }
  return { exchange, starts, admitted, gaveUp }
}

/** Runs an Effect property on a fresh TestClock for every generated case. */
const prop = <A>(arb: fc.Arbitrary<A>, check: (a: A) => Effect.Effect<void>) =>
  fc.assert(fc.asyncProperty(arb, (a) => Effect.runPromise(check(a).pipe(Effect.provide(TestClock.layer())))), { numRuns: 200 })

const first: FailedTry = { failure: 503, error: undefined }

describe("retryTries (TestClock)", () => {
  it("tries go after the schedule's backoff, at most attempts - 1 of them; the exchange answers with the last failure when none is left", () =>
    prop(
    fc.tuple(fc.integer({ min: 1, max: 6 }), fc.integer({ min: 1, max: 100 }), fc.integer({ min: 1, max: 800 }), fc.array(fc.constantFrom<Outcome>(502, 503, 504, "finished"), { maxLength: 6 })),
    ([attempts, base, max, outcomes]) =>
      Effect.gen(function*() {
        const policy = compileRetryPolicy({ attempts, backoff: { base, max, jitter: false } })!
        const clock = yield* Clock.Clock
        const run = scripted(outcomes, [], () => clock.currentTimeMillisUnsafe())
        const fiber = yield* Effect.forkChild(retryTries(run.exchange, policy.schedule, first))
        let total = 0
        for (let n = 1; n < attempts; n++) total += backoffCap(policy, n)
        yield* TestClock.adjust(total + 1)
        yield* Fiber.join(fiber)
        // Tries go until one finishes the exchange or the schedule has no try left.
        let tries = 0
        for (let n = 1; n < attempts; n++) {
          tries++
          if ((outcomes[n - 1] ?? "finished") === "finished") break
        }
        assert.strictEqual(run.starts.length, tries)
        // Each try waits its backoff after the failure before it (the scripted tries fail at once).
        let at = 0
        run.starts.forEach((start, i) => {
          at += backoffCap(policy, i + 1)
          assert.strictEqual(start, at, `try ${i + 2} at ${start}, not ${at}`)
        })
        // `while` is asked once for every failure the schedule would retry, with that failure.
        assert.strictEqual(run.admitted.length, run.starts.length)
        assert.deepStrictEqual(run.admitted[0], run.starts.length > 0 ? first : undefined)
        const lastTry = run.starts.length === 0 ? undefined : outcomes[run.starts.length - 1] ?? "finished"
        if (lastTry === "finished") assert.deepStrictEqual(run.gaveUp, [], "a finished exchange is not answered again")
        else {
          const lastFailure = lastTry === undefined ? first : { failure: lastTry, error: undefined }
          assert.deepStrictEqual(run.gaveUp, [lastFailure], "the exchange answers with the last failure")
        }
      })
  ))

  it.effect("a retry `while` refuses (no endpoint, no budget) ends the loop at once with that failure", () =>
    Effect.gen(function*() {
      const policy = compileRetryPolicy({ attempts: 5, backoff: { base: 100, max: 100, jitter: false } })!
      const clock = yield* Clock.Clock
      const run = scripted([502, 504], [true, false], () => clock.currentTimeMillisUnsafe())
      const fiber = yield* Effect.forkChild(retryTries(run.exchange, policy.schedule, first))
      yield* TestClock.adjust(100)
      yield* Fiber.join(fiber)
      assert.deepStrictEqual(run.starts, [100])
      assert.deepStrictEqual(run.admitted, [first, { failure: 502, error: undefined }])
      assert.deepStrictEqual(run.gaveUp, [{ failure: 502, error: undefined }])
      assert.strictEqual(yield* Clock.currentTimeMillis, 100, "no backoff after a refusal")
    }))

  it.effect("nothing happens before the backoff has passed, and an interrupted loop starts no try", () =>
    Effect.gen(function*() {
      const policy = compileRetryPolicy({ attempts: 3, backoff: { base: 40, max: 1000, jitter: false } })!
      const clock = yield* Clock.Clock
      const run = scripted([503], [], () => clock.currentTimeMillisUnsafe())
      const fiber = yield* Effect.forkChild(retryTries(run.exchange, policy.schedule, first))
      yield* TestClock.adjust(39)
      assert.deepStrictEqual(run.starts, [])
      yield* TestClock.adjust(1)
      assert.deepStrictEqual(run.starts, [40])
      // The second retry waits 80 ms; the exchange ending meanwhile interrupts the loop.
      yield* TestClock.adjust(79)
      yield* Fiber.interrupt(fiber)
      yield* TestClock.adjust(1000)
      assert.deepStrictEqual(run.starts, [40])
      assert.deepStrictEqual(run.gaveUp, [])
    }))
})
