/**
 * Outlier detection (passive health) without a network: the pure rule `recordOutcome` checked
 * against an independent per-group model over any policy and any sequence of try outcomes,
 * `ejectionMs`'s growth and cap, and the `Upstreams` service's re-admission timers under
 * TestClock (including across a reload that replaces the ejected endpoint object).
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Layer } from "effect"
import { TestClock } from "effect/testing"
import fc from "fast-check"
import {
  compileOutlierPolicy,
  ejectionMs,
  outlierDefaults,
  recordOutcome,
  type OutlierFailure,
  type OutlierPolicy,
  type OutlierState
} from "../../src/resilience/Outlier.ts"
import type { Endpoint } from "../../src/upstream/UpstreamGroup.ts"
import { Upstreams } from "../../src/upstream/Upstreams.ts"
import { decoded, settle } from "../support/effects.ts"

const ALL_FAILURES: ReadonlyArray<OutlierFailure> = ["connect-failure", "reset", "timeout", "5xx"]

const policyArb: fc.Arbitrary<OutlierPolicy> = fc.record({
  consecutiveFailures: fc.integer({ min: 1, max: 5 }),
  baseEjectionMs: fc.integer({ min: 1, max: 60_000 }),
  maxEjectionMs: fc.integer({ min: 1, max: 600_000 }),
  // Whole percents plus the interesting edges.
  maxEjectedPercent: fc.oneof(fc.integer({ min: 0, max: 100 }), fc.constantFrom(0, 33.4, 50, 100)),
  counts: fc.subarray([...ALL_FAILURES]).map((fs) => new Set(fs) as ReadonlySet<OutlierFailure>)
})

/** One event in a group's life: a try's outcome on endpoint `i`, or the re-admission of endpoint `i`. */
type Event =
  | { readonly _tag: "try"; readonly i: number; readonly failure: OutlierFailure | undefined }
  | { readonly _tag: "readmit"; readonly i: number }

const eventArb = (size: number): fc.Arbitrary<Event> =>
  fc.oneof(
    { weight: 8, arbitrary: fc.record({ _tag: fc.constant("try" as const), i: fc.integer({ min: 0, max: size - 1 }), failure: fc.constantFrom(undefined, ...ALL_FAILURES) }) },
    // Long failure runs on one endpoint, so thresholds are actually reached.
    { weight: 2, arbitrary: fc.record({ _tag: fc.constant("try" as const), i: fc.constant(0), failure: fc.constantFrom<OutlierFailure>(...ALL_FAILURES) }) },
    { weight: 1, arbitrary: fc.record({ _tag: fc.constant("readmit" as const), i: fc.integer({ min: 0, max: size - 1 }) }) }
  )

const scenarioArb = fc.integer({ min: 1, max: 6 }).chain((size) =>
  fc.tuple(policyArb, fc.constant(size), fc.array(eventArb(size), { maxLength: 120 }))
)

const fresh = (): OutlierState => ({ consecutiveFailures: 0, ejections: 0, ejected: false, ejectionId: 0 })

/** The fields of the rule, without the id that only identifies an ejection. */
const ruleFields = (s: OutlierState) => ({ consecutiveFailures: s.consecutiveFailures, ejections: s.ejections, ejected: s.ejected })

/** The model's view of one endpoint. */
interface ModelEndpoint {
  count: number
  ejected: boolean
  ejections: number
}

/**
 * The model, written from the spec rather than the code: per endpoint, the run of consecutive
 * counted failures (a success ends it; an uncounted failure is transparent; a failure of an
 * ejected endpoint is ignored). Ejection happens when the run reaches the threshold and one more
 * ejected endpoint keeps the group within `max_ejected_percent`; otherwise the run stays at the
 * threshold and the next counted failure asks again.
 */
const modelStep = (policy: OutlierPolicy, group: Array<ModelEndpoint>, i: number, failure: OutlierFailure | undefined): boolean => {
  const e = group[i]
  if (failure === undefined) {
    e.count = 0
    return false
  }
  if (!policy.counts.has(failure) || e.ejected) return false
  e.count = Math.min(e.count + 1, policy.consecutiveFailures)
  if (e.count < policy.consecutiveFailures) return false
  const ejectedNow = group.filter((x) => x.ejected).length
  if ((ejectedNow + 1) * 100 > policy.maxEjectedPercent * group.length) return false
  e.ejected = true
  e.ejections++
  e.count = 0
  return true
}

/** Runs `events` through `recordOutcome` (as the request path and Upstreams drive it) and the model side by side. */
const runBoth = (policy: OutlierPolicy, size: number, events: ReadonlyArray<Event>) => {
  const real = Array.from({ length: size }, fresh)
  const model: Array<ModelEndpoint> = Array.from({ length: size }, () => ({ count: 0, ejected: false, ejections: 0 }))
  const decisions: Array<{ real: boolean; model: boolean }> = []
  events.forEach((event, step) => {
    if (event._tag === "readmit") {
      real[event.i].ejected = false
      model[event.i].ejected = false
      return
    }
    const ejectedInGroup = real.filter((e) => e.ejected).length
    const r = recordOutcome(policy, real[event.i], event.failure, ejectedInGroup, size)
    const m = modelStep(policy, model, event.i, event.failure)
    decisions.push({ real: r, model: m })
    for (let j = 0; j < size; j++) {
      const at = `step ${step} (${JSON.stringify(event)}), endpoint ${j}`
      assert.strictEqual(real[j].ejected, model[j].ejected, `ejected at ${at}`)
      assert.strictEqual(real[j].ejections, model[j].ejections, `ejections at ${at}`)
      // The counter may run past the threshold while the cap blocks an ejection; that changes nothing.
      assert.strictEqual(Math.min(real[j].consecutiveFailures, policy.consecutiveFailures), model[j].count, `counter at ${at}`)
    }
  })
  return { real, model, decisions }
}

const failuresOnly = (events: ReadonlyArray<Event>) => events.filter((e): e is Extract<Event, { _tag: "try" }> => e._tag === "try")

describe("recordOutcome: model-based properties", () => {
  it("ejection decisions, ejected flags, ejection counts and counters follow the model for any policy, group and outcomes", () => {
    fc.assert(
      fc.property(scenarioArb, ([policy, size, events]) => {
        const { decisions } = runBoth(policy, size, events)
        assert.deepStrictEqual(decisions.map((d) => d.real), decisions.map((d) => d.model))
      }),
      { numRuns: 1000 }
    )
  })

  it("the fraction of ejected endpoints never goes past max_ejected_percent", () => {
    fc.assert(
      fc.property(scenarioArb, ([policy, size, events]) => {
        const real = Array.from({ length: size }, fresh)
        for (const event of events) {
          if (event._tag === "readmit") real[event.i].ejected = false
          else recordOutcome(policy, real[event.i], event.failure, real.filter((e) => e.ejected).length, size)
          const ejected = real.filter((e) => e.ejected).length
          assert.isAtMost(ejected * 100, policy.maxEjectedPercent * size)
        }
      }),
      { numRuns: 500 }
    )
  })

  it("exactly consecutive_failures counted failures in a row eject a lone endpoint when the cap allows one, never fewer", () => {
    fc.assert(
      fc.property(policyArb.filter((p) => p.counts.size > 0), fc.integer({ min: 1, max: 4 }), (policy, size) => {
        const counted = [...policy.counts]
        const state = fresh()
        const allowed = 100 <= policy.maxEjectedPercent * size
        for (let k = 1; k <= policy.consecutiveFailures; k++) {
          const ejected = recordOutcome(policy, state, counted[k % counted.length], 0, size)
          assert.strictEqual(ejected, k === policy.consecutiveFailures && allowed, `failure ${k}`)
        }
        assert.strictEqual(state.ejected, allowed)
        assert.strictEqual(state.ejections, allowed ? 1 : 0)
      }),
      { numRuns: 300 }
    )
  })

  it("uncounted failures are transparent: inserting them anywhere changes no decision", () => {
    const arb = scenarioArb.chain(([policy, size, events]) =>
      fc.tuple(
        fc.constant(policy),
        fc.constant(size),
        fc.constant(events),
        // Where to insert uncounted failures, and which.
        fc.array(fc.tuple(fc.nat(), fc.nat({ max: size - 1 }), fc.constantFrom(...ALL_FAILURES)), { maxLength: 20 })
      )
    )
    fc.assert(
      fc.property(arb, ([policy, size, events, inserts]) => {
        const uncounted = inserts.filter(([, , f]) => !policy.counts.has(f))
        const noisy: Array<Event & { readonly noise?: true }> = [...events]
        for (const [at, i, failure] of uncounted) noisy.splice(at % (noisy.length + 1), 0, { _tag: "try", i, failure, noise: true })
        const plain = runBoth(policy, size, events)
        const withNoise = runBoth(policy, size, noisy)
        const kept = failuresOnly(noisy).map((e, k) => ({ e, k })).filter(({ e }) => !("noise" in e))
        assert.deepStrictEqual(kept.map(({ k }) => withNoise.decisions[k].real), plain.decisions.map((d) => d.real))
        // And the noise itself never ejects.
        failuresOnly(noisy).forEach((e, k) => {
          if ("noise" in e) assert.isFalse(withNoise.decisions[k].real)
        })
        assert.deepStrictEqual(withNoise.real.map(ruleFields), plain.real.map(ruleFields))
      }),
      { numRuns: 500 }
    )
  })

  it("a success resets the run: consecutive_failures - 1 counted failures, a success, and again, never eject", () => {
    fc.assert(
      fc.property(policyArb.filter((p) => p.counts.size > 0 && p.consecutiveFailures > 1), fc.integer({ min: 1, max: 10 }), (policy, rounds) => {
        const failure = [...policy.counts][0]
        const state = fresh()
        for (let r = 0; r < rounds; r++) {
          for (let k = 1; k < policy.consecutiveFailures; k++) assert.isFalse(recordOutcome(policy, state, failure, 0, 1))
          assert.strictEqual(state.consecutiveFailures, policy.consecutiveFailures - 1)
          assert.isFalse(recordOutcome(policy, state, undefined, 0, 1))
          assert.strictEqual(state.consecutiveFailures, 0)
        }
        assert.isFalse(state.ejected)
      }),
      { numRuns: 200 }
    )
  })

  it("an ejected endpoint's failures are not counted and do not eject it again", () => {
    const policy = compileOutlierPolicy({ consecutive_failures: 2 })!
    const state = fresh()
    assert.isFalse(recordOutcome(policy, state, "5xx", 0, 2))
    assert.isTrue(recordOutcome(policy, state, "reset", 0, 2))
    assert.deepStrictEqual(ruleFields(state), { consecutiveFailures: 0, ejections: 1, ejected: true })
    for (let k = 0; k < 5; k++) assert.isFalse(recordOutcome(policy, state, "5xx", 1, 2))
    assert.deepStrictEqual(ruleFields(state), { consecutiveFailures: 0, ejections: 1, ejected: true })
    // Re-admitted: it takes a full run again, and the ejection count grows.
    state.ejected = false
    assert.isFalse(recordOutcome(policy, state, "timeout", 0, 2))
    assert.isTrue(recordOutcome(policy, state, "connect-failure", 0, 2))
    assert.deepStrictEqual(ruleFields(state), { consecutiveFailures: 0, ejections: 2, ejected: true })
  })

  it("max_ejected_percent: with 50% of 2 endpoints one may be ejected, not both; 0% ejects none; 100% all", () => {
    const half = compileOutlierPolicy({ consecutive_failures: 1, max_ejected_percent: 50 })!
    const a = fresh()
    const b = fresh()
    assert.isTrue(recordOutcome(half, a, "5xx", 0, 2))
    assert.isFalse(recordOutcome(half, b, "5xx", 1, 2))
    assert.isFalse(b.ejected)
    // The blocked endpoint asks again on its next failure, and gets it once the other is back.
    a.ejected = false
    assert.isTrue(recordOutcome(half, b, "5xx", 0, 2))
    const none = compileOutlierPolicy({ consecutive_failures: 1, max_ejected_percent: 0 })!
    const c = fresh()
    for (let k = 0; k < 10; k++) assert.isFalse(recordOutcome(none, c, "5xx", 0, 1))
    const all = compileOutlierPolicy({ consecutive_failures: 1, max_ejected_percent: 100 })!
    const states = [fresh(), fresh(), fresh()]
    states.forEach((s, i) => assert.isTrue(recordOutcome(all, s, "reset", i, 3)))
  })
})

describe("recordOutcome: max_ejected_percent at the limit and one past it", () => {
  /** Which of `size` endpoints' first counted failures eject, with consecutive_failures 1, one after another. */
  const ejectedOneByOne = (percent: number, size: number) => {
    const policy = compileOutlierPolicy({ consecutive_failures: 1, max_ejected_percent: percent })!
    const states = Array.from({ length: size }, fresh)
    return states.map((s) => recordOutcome(policy, s, "5xx", states.filter((e) => e.ejected).length, size))
  }

  it("a share exactly at the cap is allowed, one endpoint more is not", () => {
    assert.deepStrictEqual(ejectedOneByOne(50, 4), [true, true, false, false], "50% of 4: 2")
    assert.deepStrictEqual(ejectedOneByOne(25, 4), [true, false, false, false], "25% of 4: 1")
    assert.deepStrictEqual(ejectedOneByOne(75, 4), [true, true, true, false], "75% of 4: 3")
    assert.deepStrictEqual(ejectedOneByOne(100, 3), [true, true, true], "100%: all")
  })

  it("a share just under one endpoint's ejects none; just over allows it (fractional percents)", () => {
    assert.deepStrictEqual(ejectedOneByOne(33, 3), [false, false, false], "33% of 3 < 1 endpoint")
    assert.deepStrictEqual(ejectedOneByOne(33.4, 3), [true, false, false], "33.4% of 3 >= 1 endpoint")
    assert.deepStrictEqual(ejectedOneByOne(49.9, 2), [false, false], "49.9% of 2 < 1 endpoint")
    // The default 50% never ejects a lone endpoint, nor one of 3 beyond the first.
    assert.deepStrictEqual(ejectedOneByOne(50, 1), [false])
    assert.deepStrictEqual(ejectedOneByOne(50, 3), [true, false, false])
  })
})

describe("ejectionMs and compileOutlierPolicy", () => {
  it("ejectionMs(n) = min(max_ejection, base_ejection * n): non-decreasing in n, capped, base for the first", () => {
    fc.assert(
      fc.property(policyArb, fc.integer({ min: 1, max: 1000 }), (policy, n) => {
        const ms = ejectionMs(policy, n)
        assert.strictEqual(ms, Math.min(policy.maxEjectionMs, policy.baseEjectionMs * n))
        assert.isAtMost(ms, policy.maxEjectionMs)
        assert.isAtLeast(ejectionMs(policy, n + 1), ms)
        assert.strictEqual(ejectionMs(policy, 1), Math.min(policy.baseEjectionMs, policy.maxEjectionMs))
      }),
      { numRuns: 500 }
    )
  })

  it("defaults: 5 failures, 30s base, 300s cap (reached at the 10th ejection), 50%, every failure kind", () => {
    assert.isUndefined(compileOutlierPolicy(undefined))
    const p = compileOutlierPolicy({})!
    assert.strictEqual(p.consecutiveFailures, 5)
    assert.strictEqual(p.baseEjectionMs, 30_000)
    assert.strictEqual(p.maxEjectionMs, 300_000)
    assert.strictEqual(p.maxEjectedPercent, 50)
    assert.deepStrictEqual([...p.counts].sort(), [...outlierDefaults.failures].sort())
    assert.deepStrictEqual([1, 2, 9, 10, 11, 100].map((n) => ejectionMs(p, n)), [30_000, 60_000, 270_000, 300_000, 300_000, 300_000])
    const only = compileOutlierPolicy({ failures: ["connect-failure"], max_ejected_percent: 0 })!
    assert.deepStrictEqual([...only.counts], ["connect-failure"])
    assert.strictEqual(only.maxEjectedPercent, 0)
  })
})

// ---------------------------------------------------------------------------------------------
// The Upstreams service: re-admission timers on Effect's Clock.



const A = "http://127.0.0.1:1"
const B = "http://127.0.0.1:2"

/** A config with upstream `app` over A and B (weights/pool as given) with outlier detection. */
const configWith = (options: { readonly weightA?: number; readonly connections?: number; readonly outlier?: Record<string, unknown> } = {}) =>
  decoded({
    log: { level: "none", access_log: false },
    servers: [{ name: "web", listen: "127.0.0.1:0", routes: [{ id: "all", upstream: "app" }] }],
    upstreams: {
      app: {
        endpoints: [{ url: A, ...(options.weightA === undefined ? {} : { weight: options.weightA }) }, { url: B }],
        ...(options.connections === undefined ? {} : { pool: { connections: options.connections } }),
        outlier: options.outlier ?? { consecutive_failures: 3, base_ejection: "30s" }
      }
    }
  })

let ejectionIds = 1_000_000

const withUpstreams = Effect.gen(function*() {
  const context = yield* Layer.build(Upstreams.layer)
  const upstreams = Context.get(context, Upstreams)
  const group = (name = "app") => upstreams.current().get(name) ?? assert.fail(`no upstream ${name}`)
  const endpoint = (origin: string) => group().endpoints.find((e) => e.origin === origin) ?? assert.fail(`no endpoint ${origin}`)
  /** Ejects `e` for `ms` as the request path does: the rule sets `ejected`, then the group's onEject. */
  const eject = (e: Endpoint, ms: number) =>
    Effect.gen(function*() {
      e.ejected = true
      e.ejections++
      e.ejectionId = ++ejectionIds // a fresh id per ejection, as recordOutcome gives
      group().onEject(e, ms)
      yield* settle
    })
  return { upstreams, group, endpoint, eject }
})

describe("Upstreams: re-admission after the ejection time (TestClock)", () => {
  it.effect("an ejected endpoint stays out for exactly forMs, then is re-admitted; the others are untouched", () =>
    Effect.gen(function*() {
      const { upstreams, endpoint, eject, group } = yield* withUpstreams
      yield* upstreams.reconcile(configWith())
      assert.isDefined(group().outlier)
      assert.strictEqual(group().outlier!.baseEjectionMs, 30_000)
      const a = endpoint(A)
      yield* eject(a, 30_000)
      yield* TestClock.adjust(29_999)
      assert.isTrue(a.ejected, "still ejected at 29.999s")
      assert.isTrue(group().eligible !== undefined && !group().eligible!(a), "not eligible while ejected")
      yield* TestClock.adjust(1)
      assert.isFalse(a.ejected, "re-admitted at 30s")
      assert.isTrue(group().eligible!(a))
      assert.isFalse(endpoint(B).ejected)
    }))

  it.effect("ejections of several endpoints run their own timers", () =>
    Effect.gen(function*() {
      const { upstreams, endpoint, eject } = yield* withUpstreams
      yield* upstreams.reconcile(configWith())
      const a = endpoint(A)
      const b = endpoint(B)
      yield* eject(a, 10_000)
      yield* TestClock.adjust(5_000)
      yield* eject(b, 10_000)
      yield* TestClock.adjust(4_999)
      assert.deepStrictEqual([a.ejected, b.ejected], [true, true])
      yield* TestClock.adjust(1)
      assert.deepStrictEqual([a.ejected, b.ejected], [false, true], "A back at 10s")
      yield* TestClock.adjust(4_999)
      assert.isTrue(b.ejected, "B still out at 14.999s")
      yield* TestClock.adjust(1)
      assert.isFalse(b.ejected, "B back at 15s")
    }))

  it.effect("the ejection times of ejectionMs apply one after another: base, then 2 x base", () =>
    Effect.gen(function*() {
      const { upstreams, endpoint, eject, group } = yield* withUpstreams
      yield* upstreams.reconcile(configWith({ outlier: { consecutive_failures: 1, base_ejection: "10s", max_ejection: "15s" } }))
      const a = endpoint(A)
      const policy = group().outlier!
      const durations: Array<number> = []
      for (let n = 1; n <= 3; n++) {
        yield* eject(a, ejectionMs(policy, a.ejections + 1))
        let waited = 0
        while (a.ejected && waited < 100_000) {
          yield* TestClock.adjust(1_000)
          waited += 1_000
        }
        assert.isFalse(a.ejected)
        durations.push(waited)
      }
      assert.deepStrictEqual(durations, [10_000, 15_000, 15_000])
    }))

  it.effect("a reload that replaces the endpoint object (new weight) during the ejection keeps it out, then re-admits the new object", () =>
    Effect.gen(function*() {
      const { upstreams, endpoint, eject } = yield* withUpstreams
      yield* upstreams.reconcile(configWith())
      const before = endpoint(A)
      yield* eject(before, 30_000)
      yield* TestClock.adjust(10_000)
      yield* upstreams.reconcile(configWith({ weightA: 3 }))
      yield* settle
      const after = endpoint(A)
      assert.notStrictEqual(after, before, "the reload built a new endpoint object")
      assert.strictEqual(after.weight, 3)
      assert.isTrue(after.ejected, "the new object is still ejected")
      assert.strictEqual(after.ejections, 1, "the ejection count carries over")
      yield* TestClock.adjust(19_999)
      assert.isTrue(after.ejected, "still ejected at 29.999s")
      yield* TestClock.adjust(1)
      assert.isFalse(after.ejected, "the new object is re-admitted at 30s")
      assert.isFalse(endpoint(A).ejected)
    }))

  it.effect("a reload that changes pool settings (fresh endpoint and pool) during the ejection also re-admits the new object", () =>
    Effect.gen(function*() {
      const { upstreams, endpoint, eject } = yield* withUpstreams
      yield* upstreams.reconcile(configWith())
      const before = endpoint(B)
      yield* eject(before, 30_000)
      yield* upstreams.reconcile(configWith({ connections: 7 }))
      yield* settle
      const after = endpoint(B)
      assert.notStrictEqual(after, before)
      assert.notStrictEqual(after.pool, before.pool)
      assert.isTrue(after.ejected)
      yield* TestClock.adjust(29_999)
      assert.isTrue(after.ejected)
      yield* TestClock.adjust(1)
      assert.isFalse(after.ejected)
    }))

  it.effect("a reload that drops outlier detection re-admits at once; the pending timer then does no harm", () =>
    Effect.gen(function*() {
      const { upstreams, endpoint, eject, group } = yield* withUpstreams
      yield* upstreams.reconcile(configWith())
      yield* eject(endpoint(A), 30_000)
      const raw = configWith()
      const { outlier: _dropped, ...app } = raw.upstreams.app
      yield* upstreams.reconcile({ ...raw, upstreams: { app } })
      assert.isFalse(endpoint(A).ejected)
      assert.isUndefined(group().eligible)
      yield* TestClock.adjust(30_000)
      assert.isFalse(endpoint(A).ejected)
    }))
})

describe("Upstreams: a stale re-admission timer (TestClock)", () => {
  it.effect("an ejection that ended early (outlier dropped by a reload) does not cut short a later ejection of the same endpoint", () =>
    Effect.gen(function*() {
      const { upstreams, endpoint, eject } = yield* withUpstreams
      const withOutlier = configWith()
      const { outlier: _dropped, ...app } = withOutlier.upstreams.app
      yield* upstreams.reconcile(withOutlier)
      // 1st ejection at t=0 for 30s; a reload without outlier detection re-admits at once.
      yield* eject(endpoint(A), 30_000)
      yield* upstreams.reconcile({ ...withOutlier, upstreams: { app } })
      assert.isFalse(endpoint(A).ejected)
      // Outlier detection is back, and at t=10s A is ejected again, for 60s (its 2nd ejection).
      yield* upstreams.reconcile(withOutlier)
      yield* TestClock.adjust(10_000)
      yield* eject(endpoint(A), 60_000)
      // t=30s: the 1st ejection's timer fires; the 2nd ejection must not end before t=70s.
      yield* TestClock.adjust(20_000)
      assert.isTrue(endpoint(A).ejected, "still ejected at t=30s (2nd ejection runs until t=70s)")
      yield* TestClock.adjust(39_999)
      assert.isTrue(endpoint(A).ejected, "still ejected at t=69.999s")
      yield* TestClock.adjust(1)
      assert.isFalse(endpoint(A).ejected, "re-admitted at t=70s")
    }))
})
