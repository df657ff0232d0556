/**
 * The retry budget as a state machine over time, driven by TestClock (`TestClock.adjust`, time
 * read with `Clock.currentTimeMillis`): worked examples of the ratio, the floor and the sliding
 * window, and fast-check properties that hold every decision to a reference model (the window's
 * events kept in a list and counted from scratch) and bound the tries a failing upstream gets,
 * over any arrival pattern:
 *
 *     tries ≤ (1 + percent/100) · requests + min_per_second · window · k
 *
 * with k the windows the run touches (⌈slices spanned by the retries / 10⌉; k = 1 for a run
 * shorter than 9 slices, 9s at the defaults).
 */
import { assert, describe, it } from "@effect/vitest"
import { Clock, Effect } from "effect"
import { TestClock } from "effect/testing"
import fc from "fast-check"
import {
  admitRetry,
  BUDGET_SLICES,
  chargeRetry,
  compileRetryBudget,
  countRequest,
  makeRetryBudget,
  retriesLeft,
  retryBudgetDefaults,
  type RetryBudget
} from "../../src/resilience/RetryBudget.ts"
import type { TryFailure } from "../../src/resilience/RetryPolicy.ts"

const now = Clock.currentTimeMillis

describe("RetryBudget: examples", () => {
  it("defaults are Linkerd's: 20% of requests, 10 per second, a 10s window (a floor of 100)", () => {
    const budget = compileRetryBudget(undefined)
    assert.deepStrictEqual(retryBudgetDefaults, { percent: 20, min_per_second: 10, window: 10_000 })
    assert.strictEqual(budget.percent, 20)
    assert.strictEqual(budget.minPerSecond, 10)
    assert.strictEqual(budget.windowMs, 10_000)
    assert.strictEqual(budget.floor, 100)
    assert.strictEqual(budget.sliceMs, 1_000)
  })

  it.effect("an idle upstream gets the floor: 100 retries in a window, then none until the window moves past them", () =>
    Effect.gen(function*() {
      const budget = compileRetryBudget(undefined)
      for (let i = 0; i < 100; i++) assert.isTrue(chargeRetry(budget, yield* now), `retry ${i + 1}`)
      assert.isFalse(chargeRetry(budget, yield* now), "the 101st retry in the window")
      yield* TestClock.adjust(9_999)
      assert.isFalse(chargeRetry(budget, yield* now), "9.999s later the retries still count")
      yield* TestClock.adjust(1)
      assert.strictEqual(retriesLeft(budget, yield* now), 100, "10s later they have left the window")
      assert.isTrue(chargeRetry(budget, yield* now))
    }))

  it.effect("with no floor, retries are at most percent% of the requests in the window, which slides", () =>
    Effect.gen(function*() {
      const budget = makeRetryBudget({ percent: 20, minPerSecond: 0, windowMs: 10_000 })
      const grantAll = Effect.map(now, (t) => {
        let granted = 0
        while (chargeRetry(budget, t)) granted++
        return granted
      })
      assert.isFalse(chargeRetry(budget, yield* now), "no requests, no retries")
      for (let i = 0; i < 1_000; i++) countRequest(budget, yield* now)
      assert.strictEqual(yield* grantAll, 200)
      yield* TestClock.adjust(5_000)
      for (let i = 0; i < 500; i++) countRequest(budget, yield* now)
      assert.strictEqual(yield* grantAll, 100, "1500 requests in the window allow 300, 200 were used")
      yield* TestClock.adjust(5_000)
      assert.strictEqual(yield* grantAll, 0, "the first 1000 requests left with their 200 retries: 500 allow 100, all used")
      yield* TestClock.adjust(5_000)
      assert.strictEqual(retriesLeft(budget, yield* now), 0, "15s on, no requests fund a retry")
      assert.strictEqual(budget.requestsInWindow + budget.retriesInWindow, 0, "15s on, the window is empty")
    }))

  it.effect("the floor and the ratio add up: 50 requests and min_per_second 1 over 10s allow 10 + 10 retries", () =>
    Effect.gen(function*() {
      const budget = makeRetryBudget({ percent: 20, minPerSecond: 1, windowMs: 10_000 })
      for (let i = 0; i < 50; i++) countRequest(budget, yield* now)
      assert.strictEqual(retriesLeft(budget, yield* now), 20)
    }))

  it("at the limit and one past it: retries may reach exactly percent% of the requests plus the floor, not one more", () => {
    // 20% of 5 requests is exactly 1 retry; of 4 it is 0.8: none.
    const five = makeRetryBudget({ percent: 20, minPerSecond: 0, windowMs: 10_000 })
    for (let i = 0; i < 5; i++) countRequest(five, 0)
    assert.deepStrictEqual([chargeRetry(five, 0), chargeRetry(five, 0)], [true, false])
    const four = makeRetryBudget({ percent: 20, minPerSecond: 0, windowMs: 10_000 })
    for (let i = 0; i < 4; i++) countRequest(four, 0)
    assert.isFalse(chargeRetry(four, 0))
    assert.strictEqual(retriesLeft(four, 0), 0)
    // A floor of exactly 1 (1/s over a 1s window) and 20% of 10 requests: 3 retries, not 4.
    const both = makeRetryBudget({ percent: 20, minPerSecond: 1, windowMs: 1_000 })
    for (let i = 0; i < 10; i++) countRequest(both, 0)
    assert.strictEqual(retriesLeft(both, 0), 3)
    assert.deepStrictEqual([chargeRetry(both, 0), chargeRetry(both, 0), chargeRetry(both, 0), chargeRetry(both, 0)], [true, true, true, false])
    // One more request funds 0.2 of a retry: still none; five more fund one.
    countRequest(both, 0)
    assert.isFalse(chargeRetry(both, 0))
    for (let i = 0; i < 4; i++) countRequest(both, 0)
    assert.isTrue(chargeRetry(both, 0))
    assert.isFalse(chargeRetry(both, 0))
  })

  it.effect("a connect failure's retry is free: granted with a spent budget, and not charged", () =>
    Effect.gen(function*() {
      const budget = makeRetryBudget({ percent: 0, minPerSecond: 0, windowMs: 10_000 })
      for (let i = 0; i < 10; i++) countRequest(budget, yield* now)
      for (let i = 0; i < 1_000; i++) assert.isTrue(admitRetry(budget, "connect-failure", yield* now))
      assert.strictEqual(budget.retriesInWindow, 0)
      for (const failure of ["reset", "timeout", 502, 503] as const) assert.isFalse(admitRetry(budget, failure, yield* now), String(failure))
    }))

  it("a reload with the same settings keeps the budget (and what it counted); new settings start afresh", () => {
    const budget = compileRetryBudget({ percent: 10 })
    countRequest(budget, 0)
    assert.strictEqual(compileRetryBudget({ percent: 10 }, budget), budget)
    assert.strictEqual(compileRetryBudget({ percent: 10, min_per_second: 10, window: 10_000 }, budget), budget)
    const fresh = compileRetryBudget({ percent: 10, window: 20_000 }, budget)
    assert.notStrictEqual(fresh, budget)
    assert.strictEqual(fresh.requestsInWindow, 0)
  })
})

// ---------------------------------------------------------------------------------------------
// The reference model: every counted event kept, the window counted from scratch.

interface Model {
  readonly percent: number
  readonly floor: number
  readonly sliceMs: number
  readonly events: Array<{ readonly slice: number; readonly kind: "request" | "retry" }>
}

const modelOf = (budget: RetryBudget): Model => ({ percent: budget.percent, floor: budget.floor, sliceMs: budget.sliceMs, events: [] })

/** Requests and retries counted in the window at `t`: this slice and the 9 before it. */
const inWindow = (model: Model, t: number) => {
  const slice = Math.floor(t / model.sliceMs)
  let requests = 0
  let retries = 0
  for (const e of model.events) {
    if (e.slice <= slice - BUDGET_SLICES) continue
    if (e.kind === "request") requests++
    else retries++
  }
  return { requests, retries }
}

/** The spec: a retry is granted when, with it, retries ≤ percent% of requests + floor. */
const modelGrants = (model: Model, t: number): boolean => {
  const { requests, retries } = inWindow(model, t)
  return 100 * (retries + 1) <= model.percent * requests + 100 * model.floor
}

const settingsArb = fc.record({
  percent: fc.oneof(fc.integer({ min: 0, max: 100 }), fc.double({ min: 0, max: 100, noNaN: true })),
  minPerSecond: fc.oneof(fc.integer({ min: 0, max: 20 }), fc.double({ min: 0, max: 3, noNaN: true })),
  windowMs: fc.integer({ min: 1_000, max: 20_000 })
})

/** One step of an arrival pattern: time passes, some waiting requests retry, new ones arrive. */
const stepArb = fc.record({
  advanceMs: fc.oneof(fc.integer({ min: 0, max: 50 }), fc.integer({ min: 0, max: 3_000 }), fc.integer({ min: 0, max: 60_000 })),
  /** The share of the requests waiting for a retry that ask for it in this step (oldest first). */
  retryShare: fc.double({ min: 0, max: 1, noNaN: true }),
  arrivals: fc.integer({ min: 0, max: 25 })
})

interface Run {
  readonly requests: number
  /** Every try sent: first tries and retries. */
  readonly tries: number
  /** Tries that reached an upstream (all but the connect failures). */
  readonly reached: number
  /** The windows the granted (charged) retries touch, k in the bound. */
  readonly windows: number
  /** Milliseconds from the first step to the last. */
  readonly spanMs: number
}

/**
 * Drives the budget with TestClock time through `steps`: every try fails and its request wants
 * another one, up to `attempts` tries in all. `failureOf(n)` is how try number n (over the run)
 * failed. Every decision is checked against the model as it is made.
 */
const simulate = (
  budget: RetryBudget,
  attempts: number,
  steps: ReadonlyArray<typeof stepArb extends fc.Arbitrary<infer S> ? S : never>,
  failureOf: (n: number) => TryFailure
) =>
  Effect.gen(function*() {
    const model = modelOf(budget)
    /** Requests waiting for their next try: how many tries each has had, and how the last one failed. */
    let waiting: Array<{ tries: number; failure: TryFailure }> = []
    let requests = 0
    let tries = 0
    let reached = 0
    let firstGrant = Number.POSITIVE_INFINITY
    let lastGrant = Number.NEGATIVE_INFINITY
    const started = yield* now
    const sendTry = (request: { tries: number; failure: TryFailure }) => {
      tries++
      request.tries++
      request.failure = failureOf(tries)
      if (request.failure !== "connect-failure") reached++
    }
    for (const step of steps) {
      yield* TestClock.adjust(step.advanceMs)
      const t = yield* now
      const asking = Math.floor(step.retryShare * waiting.length)
      const still: Array<{ tries: number; failure: TryFailure }> = []
      for (let i = 0; i < waiting.length; i++) {
        const request = waiting[i]
        if (i >= asking) {
          still.push(request)
          continue
        }
        const free = request.failure === "connect-failure"
        const expected = free || modelGrants(model, t)
        const granted = admitRetry(budget, request.failure, t)
        assert.strictEqual(granted, expected, `retry at ${t}ms after ${String(request.failure)}: ${JSON.stringify(inWindow(model, t))}`)
        if (!granted) continue
        if (!free) {
          model.events.push({ slice: Math.floor(t / model.sliceMs), kind: "retry" })
          firstGrant = Math.min(firstGrant, Math.floor(t / model.sliceMs))
          lastGrant = Math.max(lastGrant, Math.floor(t / model.sliceMs))
          const w = inWindow(model, t)
          assert.isAtMost(100 * w.retries, budget.percent * w.requests + 100 * budget.floor, "after a grant")
        }
        sendTry(request)
        if (request.tries < attempts) still.push(request)
      }
      waiting = still
      for (let i = 0; i < step.arrivals; i++) {
        countRequest(budget, t)
        model.events.push({ slice: Math.floor(t / model.sliceMs), kind: "request" })
        requests++
        const request = { tries: 0, failure: 503 as TryFailure }
        sendTry(request)
        if (attempts > 1) waiting.push(request)
      }
      const w = inWindow(model, t)
      const left = Math.max(0, Math.floor((budget.percent * w.requests + 100 * budget.floor - 100 * w.retries) / 100))
      assert.strictEqual(retriesLeft(budget, t), left, "retries left")
      assert.strictEqual(budget.requestsInWindow, w.requests, "requests in the window")
      assert.strictEqual(budget.retriesInWindow, w.retries, "retries in the window")
    }
    const windows = lastGrant < firstGrant ? 0 : Math.ceil((lastGrant - firstGrant + 1) / BUDGET_SLICES)
    return { requests, tries, reached, windows, spanMs: (yield* now) - started } satisfies Run
  }).pipe(Effect.provide(TestClock.layer()))

/** `(1 + percent/100) · requests + floor · windows`, in hundredths (with room for float rounding). */
const withinBound = (run: Run, budget: RetryBudget, counted: number): boolean =>
  100 * counted <= (100 + budget.percent) * run.requests + 100 * budget.floor * run.windows + 1e-6 * (1 + run.requests)

describe("RetryBudget: properties (TestClock)", () => {
  it("every endpoint answering 503, any arrival pattern: each decision is the model's, and tries ≤ (1 + percent/100) · requests + floor · k", async () => {
    await fc.assert(
      fc.asyncProperty(
        settingsArb,
        fc.integer({ min: 1, max: 6 }),
        fc.array(stepArb, { maxLength: 80 }),
        async (settings, attempts, steps) => {
          const budget = makeRetryBudget(settings)
          const run = await Effect.runPromise(simulate(budget, attempts, steps, () => 503))
          assert.isTrue(
            withinBound(run, budget, run.tries),
            `${run.tries} tries for ${run.requests} requests, floor ${budget.floor} × ${run.windows} windows`
          )
          // A run shorter than 9 slices lies in one window: one floor in all.
          if (run.spanMs < 9 * budget.sliceMs) assert.isAtMost(run.windows, 1)
          assert.isAtMost(run.tries, attempts * run.requests)
        }
      ),
      { numRuns: 300 }
    )
  })

  it("connect failures mixed in: their retries are always granted, and the tries that reach an upstream keep the same bound", async () => {
    await fc.assert(
      fc.asyncProperty(
        settingsArb,
        fc.integer({ min: 1, max: 6 }),
        fc.array(stepArb, { maxLength: 60 }),
        fc.array(fc.boolean(), { minLength: 1, maxLength: 16 }),
        async (settings, attempts, steps, refusals) => {
          const budget = makeRetryBudget(settings)
          const failureOf = (n: number): TryFailure => (refusals[n % refusals.length] ? "connect-failure" : 503)
          const run = await Effect.runPromise(simulate(budget, attempts, steps, failureOf))
          assert.isTrue(
            withinBound(run, budget, run.reached),
            `${run.reached} tries reached an upstream for ${run.requests} requests, floor ${budget.floor} × ${run.windows} windows`
          )
        }
      ),
      { numRuns: 200 }
    )
  })

  it("a request or retry counts for exactly one window: from its slice to the 9 slices after it", async () => {
    await fc.assert(
      fc.asyncProperty(
        settingsArb,
        fc.integer({ min: 0, max: 100_000 }),
        fc.integer({ min: 0, max: 100_000 }),
        async (settings, startMs, laterMs) => {
          const budget = makeRetryBudget({ ...settings, percent: 100, minPerSecond: 0 })
          const seen = await Effect.runPromise(Effect.gen(function*() {
            yield* TestClock.adjust(startMs)
            const t0 = yield* now
            countRequest(budget, t0)
            const charged = chargeRetry(budget, t0)
            yield* TestClock.adjust(laterMs)
            const t1 = yield* now
            retriesLeft(budget, t1)
            return { charged, t0, t1 }
          }).pipe(Effect.provide(TestClock.layer())))
          assert.isTrue(seen.charged, "100% of one request is one retry")
          const counted = Math.floor(seen.t1 / budget.sliceMs) - Math.floor(seen.t0 / budget.sliceMs) < BUDGET_SLICES
          assert.strictEqual(budget.requestsInWindow, counted ? 1 : 0)
          assert.strictEqual(budget.retriesInWindow, counted ? 1 : 0)
        }
      ),
      { numRuns: 300 }
    )
  })
})

describe("compileRetryBudget across a reload", () => {
  it("keeps the previous budget (and what it has counted) only when every setting is the same", () => {
    const previous = compileRetryBudget({ percent: 20, min_per_second: 10, window: 10_000 })
    countRequest(previous, 0)
    assert.strictEqual(compileRetryBudget({ percent: 20, min_per_second: 10, window: 10_000 }, previous), previous)
    for (const changed of [
      { percent: 50, min_per_second: 10, window: 10_000 },
      { percent: 20, min_per_second: 1, window: 10_000 },
      { percent: 20, min_per_second: 10, window: 5_000 }
    ]) {
      const next = compileRetryBudget(changed, previous)
      assert.notStrictEqual(next, previous, `kept across ${JSON.stringify(changed)}`)
      assert.deepStrictEqual([next.percent, next.minPerSecond, next.windowMs], [changed.percent, changed.min_per_second, changed.window])
    }
  })
})

describe("a wall clock that steps back", () => {
  it("counts in the newest slice and forgets nothing it would not have forgotten", () => {
    // No floor, 100%: one retry per request in the window.
    const budget = makeRetryBudget({ percent: 100, minPerSecond: 0, windowMs: 10_000 })
    countRequest(budget, 5_000)
    // The clock steps back 4 s (an NTP correction): the request still counts...
    countRequest(budget, 1_000)
    assert.strictEqual(retriesLeft(budget, 1_000), 2)
    // ...and when the clock is back at 5 s, both requests are still in the window.
    assert.strictEqual(retriesLeft(budget, 5_000), 2)
    assert.isTrue(chargeRetry(budget, 5_000))
    assert.isTrue(chargeRetry(budget, 5_000))
    assert.isFalse(chargeRetry(budget, 5_000))
  })
})
