/**
 * The retry policy as pure functions: fast-check properties over any policy (attempts 1..6, any
 * subset of methods and failure kinds, any backoff) and any failure sequence, plus worked
 * examples. `retrySchedule` is held to `backoffDelay` by stepping it directly (`Schedule.toStep`)
 * and by driving `Effect.retry` with TestClock.
 */
import { assert, describe, it } from "@effect/vitest"
import { Clock, Effect, Exit, Fiber, Pull, Schedule } from "effect"
import * as Duration from "effect/Duration"
import { TestClock } from "effect/testing"
import fc from "fast-check"
import type { Retry } from "../../src/config/Schema.ts"
import {
  backoffCap,
  backoffDelay,
  compileRetryPolicy,
  IDEMPOTENT_METHODS,
  mayRetry,
  retryDefaults,
  retrySchedule,
  type RetryPolicy,
  type TryFailure
} from "../../src/resilience/RetryPolicy.ts"

const ALL_METHODS = ["GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE", "POST", "PATCH"] as const
const NON_IDEMPOTENT = ["POST", "PATCH"] as const
const KINDS = ["connect-failure", "reset", "timeout"] as const
const STATUSES = [500, 501, 502, 503, 504, 599] as const

type RetryOn = NonNullable<Retry["on"]>[number]

/** A route's `retry` block as decoded from the config (durations already in ms). */
const retryConfigArb: fc.Arbitrary<Retry> = fc.record(
  {
    attempts: fc.integer({ min: 1, max: 6 }),
    per_try_timeout: fc.integer({ min: 1, max: 10_000 }),
    backoff: fc.record(
      {
        base: fc.integer({ min: 0, max: 2_000 }),
        max: fc.integer({ min: 0, max: 5_000 }),
        jitter: fc.boolean()
      },
      { requiredKeys: [] }
    ),
    on: fc.subarray<RetryOn>([...KINDS, ...STATUSES]),
    methods: fc.subarray<string>([...ALL_METHODS])
  },
  { requiredKeys: ["attempts"] }
)

const policyArb: fc.Arbitrary<RetryPolicy> = retryConfigArb.map((r) => compileRetryPolicy(r)!)

const failureArb: fc.Arbitrary<TryFailure> = fc.oneof(
  fc.constantFrom<TryFailure>(...KINDS),
  fc.constantFrom<TryFailure>(...STATUSES),
  fc.integer({ min: 500, max: 599 })
)

const methodArb = fc.constantFrom<string>(...ALL_METHODS)

/** Values a `Math.random` replacement may return: [0, 1). */
const unitArb = fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true })

/** A deterministic stand-in for `Math.random` cycling through `values` (non-empty). */
const cycling = (values: ReadonlyArray<number>): () => number => {
  let i = 0
  return () => values[i++ % values.length]
}

/** Whether `failure` is listed in the policy's `on` (independently of `mayRetry`). */
const listed = (policy: RetryPolicy, failure: TryFailure): boolean =>
  failure === "connect-failure"
    ? policy.onConnectFailure
    : failure === "reset"
    ? policy.onReset
    : failure === "timeout"
    ? policy.onTimeout
    : policy.onStatus.has(failure)

/** The exchange's loop over tries: try 1, then another try while `mayRetry` allows. */
const triesFor = (policy: RetryPolicy, method: string, failures: ReadonlyArray<TryFailure>): number => {
  let tries = 1
  for (const failure of failures) {
    if (!mayRetry(policy, method, tries, failure)) break
    tries++
  }
  return tries
}

describe("compileRetryPolicy", () => {
  it("no retry block means no policy", () => {
    assert.isUndefined(compileRetryPolicy(undefined))
  })

  it("an empty retry block gets the documented defaults", () => {
    const p = compileRetryPolicy({})!
    assert.strictEqual(p.attempts, 3)
    assert.isUndefined(p.perTryTimeoutMs)
    assert.strictEqual(p.baseMs, 25)
    assert.strictEqual(p.maxMs, 1_000)
    assert.isTrue(p.jitter)
    assert.isTrue(p.onConnectFailure)
    assert.isTrue(p.onReset)
    assert.isTrue(p.onTimeout)
    assert.deepStrictEqual([...p.onStatus].sort(), [502, 503, 504])
    assert.deepStrictEqual([...p.methods].sort(), ["DELETE", "GET", "HEAD", "OPTIONS", "PUT", "TRACE"])
    assert.deepStrictEqual([...IDEMPOTENT_METHODS].sort(), ["DELETE", "GET", "HEAD", "OPTIONS", "PUT", "TRACE"])
    assert.strictEqual(retryDefaults.attempts, 3)
  })

  it("given keys replace the defaults; a partial backoff keeps the other defaults", () => {
    const p = compileRetryPolicy({
      attempts: 5,
      per_try_timeout: 100,
      backoff: { max: 40 },
      on: ["timeout", 500],
      methods: ["POST"]
    })!
    assert.strictEqual(p.attempts, 5)
    assert.strictEqual(p.perTryTimeoutMs, 100)
    assert.strictEqual(p.baseMs, 25)
    assert.strictEqual(p.maxMs, 40)
    assert.isTrue(p.jitter)
    assert.isFalse(p.onConnectFailure)
    assert.isFalse(p.onReset)
    assert.isTrue(p.onTimeout)
    assert.deepStrictEqual([...p.onStatus], [500])
    assert.deepStrictEqual([...p.methods], ["POST"])
  })

  it("an empty `on` retries nothing; an empty `methods` retries no method", () => {
    const none = compileRetryPolicy({ on: [] })!
    for (const f of [...KINDS, ...STATUSES]) assert.isFalse(mayRetry(none, "GET", 1, f), String(f))
    const noMethods = compileRetryPolicy({ methods: [] })!
    for (const m of ALL_METHODS) assert.isFalse(mayRetry(noMethods, m, 1, "connect-failure"), m)
  })
})

describe("mayRetry", () => {
  it("examples with the defaults", () => {
    const p = compileRetryPolicy({})!
    assert.isTrue(mayRetry(p, "GET", 1, "connect-failure"))
    assert.isTrue(mayRetry(p, "GET", 2, 503))
    assert.isFalse(mayRetry(p, "GET", 3, 503), "the third try is the last of 3")
    assert.isTrue(mayRetry(p, "GET", 1, "timeout"), "a per-try timeout is in the default `on`")
    assert.isFalse(mayRetry(p, "GET", 1, 500), "500 is not in the default `on`")
    assert.isFalse(mayRetry(p, "POST", 1, "connect-failure"), "POST is not idempotent")
    assert.isFalse(mayRetry(p, "PATCH", 1, 502), "PATCH is not idempotent")
    assert.isTrue(mayRetry(p, "PUT", 1, "reset"))
    assert.isFalse(mayRetry(compileRetryPolicy({ attempts: 1 })!, "GET", 1, "connect-failure"), "attempts 1: no retry")
  })

  it("property: the tries it allows never exceed `attempts` (and match the model)", () => {
    fc.assert(
      fc.property(policyArb, methodArb, fc.array(failureArb, { maxLength: 12 }), (policy, method, failures) => {
        const tries = triesFor(policy, method, failures)
        assert.isAtMost(tries, policy.attempts)
        assert.isAtLeast(tries, 1)
        // Model: one more try per leading retryable failure, capped at `attempts`.
        let leading = 0
        if (policy.methods.has(method)) {
          while (leading < failures.length && listed(policy, failures[leading])) leading++
        }
        assert.strictEqual(tries, Math.min(policy.attempts, 1 + leading))
      }),
      { numRuns: 500 }
    )
  })

  it("property: no retry at or past the last attempt, whatever the failure", () => {
    fc.assert(
      fc.property(policyArb, methodArb, failureArb, fc.integer({ min: 0, max: 10 }), (policy, method, failure, extra) => {
        assert.isFalse(mayRetry(policy, method, policy.attempts + extra, failure))
      })
    )
  })

  it("property: POST and PATCH are never retried unless listed in `methods`", () => {
    fc.assert(
      fc.property(
        retryConfigArb,
        fc.constantFrom(...NON_IDEMPOTENT),
        failureArb,
        fc.integer({ min: 1, max: 6 }),
        (config, method, failure, attempt) => {
          const policy = compileRetryPolicy(config)!
          const allowed = mayRetry(policy, method, attempt, failure)
          if (config.methods === undefined || !config.methods.includes(method)) assert.isFalse(allowed)
          // Listed, the method is retried like any other.
          else assert.strictEqual(allowed, attempt < policy.attempts && listed(policy, failure))
        }
      ),
      { numRuns: 500 }
    )
  })

  it("property: without `methods`, exactly the idempotent methods are retried", () => {
    fc.assert(
      fc.property(retryConfigArb, methodArb, (config, method) => {
        const { methods: _ignored, ...rest } = config
        const policy = compileRetryPolicy({ ...rest, attempts: Math.max(2, config.attempts ?? 2), on: ["reset"] })!
        assert.strictEqual(mayRetry(policy, method, 1, "reset"), IDEMPOTENT_METHODS.includes(method))
      })
    )
  })

  it("property: each failure kind is retried only when listed in `on`", () => {
    fc.assert(
      fc.property(retryConfigArb, methodArb, failureArb, fc.integer({ min: 1, max: 6 }), (config, method, failure, attempt) => {
        const policy = compileRetryPolicy(config)!
        const on = config.on ?? retryDefaults.on
        const inOn = on.some((t) => String(t) === String(failure))
        const methodOk = (config.methods ?? IDEMPOTENT_METHODS).includes(method)
        assert.strictEqual(mayRetry(policy, method, attempt, failure), inOn && methodOk && attempt < policy.attempts)
      }),
      { numRuns: 1000 }
    )
  })
})

describe("backoffCap and backoffDelay", () => {
  it("examples", () => {
    const p = compileRetryPolicy({ backoff: { base: 25, max: 1_000, jitter: true } })!
    assert.deepStrictEqual([1, 2, 3, 4, 5, 6, 7, 8].map((n) => backoffCap(p, n)), [25, 50, 100, 200, 400, 800, 1_000, 1_000])
    assert.strictEqual(backoffDelay(p, 1, () => 0.5), 12)
    assert.strictEqual(backoffDelay(p, 1, () => 0), 0)
    assert.strictEqual(backoffDelay(p, 3, () => 0.999999), 99)
    const fixed = compileRetryPolicy({ backoff: { base: 10, max: 35, jitter: false } })!
    assert.deepStrictEqual([1, 2, 3, 4].map((n) => backoffDelay(fixed, n, () => 0.5)), [10, 20, 35, 35])
  })

  it("property: the cap is min(max, base·2^(n-1)), non-decreasing and never above max", () => {
    fc.assert(
      fc.property(policyArb, fc.integer({ min: 1, max: 30 }), (policy, n) => {
        const cap = backoffCap(policy, n)
        assert.strictEqual(cap, Math.min(policy.maxMs, policy.baseMs * 2 ** (n - 1)))
        assert.isAtMost(cap, policy.maxMs)
        assert.isAtLeast(cap, 0)
        assert.isAtLeast(backoffCap(policy, n + 1), cap)
      }),
      { numRuns: 500 }
    )
  })

  it("property: with jitter the delay is within [0, cap]", () => {
    fc.assert(
      fc.property(policyArb.map((p) => ({ ...p, jitter: true })), fc.integer({ min: 1, max: 30 }), unitArb, (policy, n, r) => {
        const delay = backoffDelay(policy, n, () => r)
        assert.isAtLeast(delay, 0)
        assert.isAtMost(delay, backoffCap(policy, n))
      }),
      { numRuns: 1000 }
    )
  })

  it("property: without jitter the delay is the cap (and the random function is not consulted)", () => {
    fc.assert(
      fc.property(policyArb.map((p) => ({ ...p, jitter: false })), fc.integer({ min: 1, max: 30 }), (policy, n) => {
        let calls = 0
        const delay = backoffDelay(policy, n, () => {
          calls++
          return 0.5
        })
        assert.strictEqual(delay, backoffCap(policy, n))
        assert.strictEqual(calls, 0)
      })
    )
  })
})

/** Steps `schedule` by hand (no clock) until it is done; the delays it asked for, in ms. */
const stepDelays = (schedule: Schedule.Schedule<Duration.Duration>, limit = 50) =>
  Effect.gen(function*() {
    const step = yield* Schedule.toStep(schedule)
    const delays: Array<number> = []
    for (let i = 0; i < limit; i++) {
      const exit = yield* Effect.exit(step(i * 1_000, undefined))
      if (Exit.isSuccess(exit)) {
        delays.push(Duration.toMillis(exit.value[1]))
        continue
      }
      assert.isTrue(Pull.isDoneCause(exit.cause), "the schedule ends with Done, not a failure")
      return delays
    }
    return assert.fail(`the schedule still recurs after ${limit} steps`)
  })

/** The delays `backoffDelay` gives for tries 1..attempts-1 with the same random sequence. */
const modelDelays = (policy: RetryPolicy, randoms: ReadonlyArray<number>) => {
  const random = cycling(randoms)
  return Array.from({ length: policy.attempts - 1 }, (_, i) => backoffDelay(policy, i + 1, random))
}

/**
 * Runs `Effect.retry(alwaysFails, retrySchedule(policy))` under TestClock; the TestClock times
 * of every call. Time is moved forward by the whole expected total at once.
 */
const retryCallTimes = (policy: RetryPolicy, random: () => number, advance: number) =>
  Effect.gen(function*() {
    const times: Array<number> = []
    const alwaysFails = Effect.flatMap(Clock.currentTimeMillis, (now) => {
      times.push(now)
      return Effect.fail("boom" as const)
    })
    const fiber = yield* Effect.forkChild(Effect.retry(alwaysFails, retrySchedule(policy, random)))
    yield* TestClock.adjust(0)
    yield* TestClock.adjust(advance)
    const exit = yield* Fiber.await(fiber)
    return { times, exit }
  })

describe("retrySchedule", () => {
  it.effect("examples: recurs attempts-1 times with the capped exponential delays", () =>
    Effect.gen(function*() {
      const fixed = compileRetryPolicy({ attempts: 5, backoff: { base: 10, max: 35, jitter: false } })!
      assert.deepStrictEqual(yield* stepDelays(retrySchedule(fixed)), [10, 20, 35, 35])
      const jittered = compileRetryPolicy({ attempts: 4, backoff: { base: 100, max: 1_000 } })!
      assert.deepStrictEqual(yield* stepDelays(retrySchedule(jittered, () => 0.5)), [50, 100, 200])
      assert.deepStrictEqual(yield* stepDelays(retrySchedule(compileRetryPolicy({ attempts: 1 })!)), [])
    }))

  it.effect("with TestClock: Effect.retry calls an always-failing effect `attempts` times, not sooner than the backoff", () =>
    Effect.gen(function*() {
      const policy = compileRetryPolicy({ attempts: 4, backoff: { base: 100, max: 150, jitter: false } })!
      let calls = 0
      const alwaysFails = Effect.suspend(() => {
        calls++
        return Effect.fail("boom" as const)
      })
      const fiber = yield* Effect.forkChild(Effect.retry(alwaysFails, retrySchedule(policy)))
      yield* TestClock.adjust(0)
      assert.strictEqual(calls, 1)
      // Waits 100, 150, 150 (capped).
      yield* TestClock.adjust(99)
      assert.strictEqual(calls, 1)
      yield* TestClock.adjust(1)
      assert.strictEqual(calls, 2)
      yield* TestClock.adjust(149)
      assert.strictEqual(calls, 2)
      yield* TestClock.adjust(1)
      assert.strictEqual(calls, 3)
      yield* TestClock.adjust(149)
      assert.strictEqual(calls, 3)
      yield* TestClock.adjust(1)
      assert.strictEqual(calls, 4)
      const exit = yield* Fiber.await(fiber)
      assert.isTrue(Exit.isFailure(exit))
      yield* TestClock.adjust(10_000)
      assert.strictEqual(calls, 4, "no call after the last attempt")
    }))

  it("property (Schedule.toStep): recurs exactly attempts-1 times with delays equal to backoffDelay", () => {
    fc.assert(
      fc.property(policyArb, fc.array(unitArb, { minLength: 1, maxLength: 8 }), (policy, randoms) => {
        const delays = Effect.runSync(stepDelays(retrySchedule(policy, cycling(randoms))))
        assert.strictEqual(delays.length, policy.attempts - 1)
        assert.deepStrictEqual(delays, modelDelays(policy, randoms))
      }),
      { numRuns: 300 }
    )
  })

  it("property (TestClock, Effect.retry): `attempts` calls in all, spaced by backoffDelay", async () => {
    await fc.assert(
      fc.asyncProperty(policyArb, fc.array(unitArb, { minLength: 1, maxLength: 8 }), async (policy, randoms) => {
        const expected = modelDelays(policy, randoms)
        const total = expected.reduce((a, b) => a + b, 0)
        const { exit, times } = await Effect.runPromise(
          retryCallTimes(policy, cycling(randoms), total + 1).pipe(Effect.provide(TestClock.layer()))
        )
        assert.isTrue(Exit.isFailure(exit), "an always-failing effect still fails after the retries")
        assert.strictEqual(times.length, policy.attempts)
        assert.deepStrictEqual(times.slice(1).map((t, i) => t - times[i]), expected)
      }),
      { numRuns: 150 }
    )
  })
})

describe("compileRetryPolicy: buffer_bytes", () => {
  it("takes the configured buffer_bytes, and 64 KiB without one", () => {
    assert.strictEqual(compileRetryPolicy({ buffer_bytes: 100 })!.bufferBytes, 100)
    assert.strictEqual(compileRetryPolicy({ buffer_bytes: 0 })!.bufferBytes, 0)
    assert.strictEqual(compileRetryPolicy({})!.bufferBytes, 65_536)
    assert.strictEqual(retryDefaults.buffer_bytes, 65_536)
  })
})
