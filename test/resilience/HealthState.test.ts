/**
 * The rise/fall rule as a pure function: checked against an independent model over any
 * thresholds (1..5) and any probe sequence, plus worked examples.
 *
 * The model is written differently from the implementation on purpose: instead of a running
 * streak counter, it looks back over the probes since the last flip and flips at the first index
 * where the last `threshold` probes (all after that flip) disagree with the current state.
 */
import { assert, describe, it } from "@effect/vitest"
import fc from "fast-check"
import { initialHealth, observeProbe, type HealthState, type Thresholds } from "../../src/resilience/HealthState.ts"

const thresholdsArb: fc.Arbitrary<Thresholds> = fc.record({
  healthyThreshold: fc.integer({ min: 1, max: 5 }),
  unhealthyThreshold: fc.integer({ min: 1, max: 5 })
})

/** Probe sequences with long runs as well as noise, so both thresholds are reached often. */
const probesArb: fc.Arbitrary<ReadonlyArray<boolean>> = fc.oneof(
  fc.array(fc.boolean(), { maxLength: 60 }),
  fc.array(fc.tuple(fc.boolean(), fc.integer({ min: 1, max: 7 })), { maxLength: 12 }).map((runs) =>
    runs.flatMap(([ok, n]) => Array.from({ length: n }, () => ok))
  )
)

/** Folds `observeProbe` over `probes`; the state after each probe. */
const run = (probes: ReadonlyArray<boolean>, t: Thresholds, from: HealthState = initialHealth): Array<HealthState> => {
  const out: Array<HealthState> = []
  let state = from
  for (const ok of probes) {
    state = observeProbe(state, ok, t)
    out.push(state)
  }
  return out
}

/** The model: health after each probe, starting healthy. */
const model = (probes: ReadonlyArray<boolean>, t: Thresholds): Array<boolean> => {
  const out: Array<boolean> = []
  let healthy = true
  let lastFlip = -1 // index of the probe that caused the last flip
  for (let i = 0; i < probes.length; i++) {
    const needed = healthy ? t.unhealthyThreshold : t.healthyThreshold
    const from = i - needed + 1
    if (from > lastFlip && probes.slice(from, i + 1).every((ok) => ok !== healthy)) {
      healthy = !healthy
      lastFlip = i
    }
    out.push(healthy)
  }
  return out
}

/** Indices where the health changes. */
const flips = (healths: ReadonlyArray<boolean>, start = true): Array<number> => {
  const out: Array<number> = []
  let prev = start
  healths.forEach((h, i) => {
    if (h !== prev) out.push(i)
    prev = h
  })
  return out
}

const T = (healthyThreshold: number, unhealthyThreshold: number): Thresholds => ({ healthyThreshold, unhealthyThreshold })

describe("observeProbe: properties", () => {
  it("health flips exactly where the model says, for any thresholds and probe sequence", () => {
    fc.assert(
      fc.property(thresholdsArb, probesArb, (t, probes) => {
        const actual = run(probes, t).map((s) => s.healthy)
        const expected = model(probes, t)
        assert.deepStrictEqual(actual, expected)
        assert.deepStrictEqual(flips(actual), flips(expected))
      }),
      { numRuns: 500 }
    )
  })

  it("the streak counts consecutive disagreeing probes since the last flip, and stays below the threshold", () => {
    fc.assert(
      fc.property(thresholdsArb, probesArb, (t, probes) => {
        const states = run(probes, t)
        let healthy = true
        let streak = 0
        states.forEach((s, i) => {
          if (s.healthy !== healthy) {
            streak = 0
            healthy = s.healthy
          } else streak = probes[i] === healthy ? 0 : streak + 1
          assert.strictEqual(s.streak, streak, `streak after probe ${i}`)
          assert.isAtLeast(s.streak, 0)
          assert.isBelow(s.streak, s.healthy ? t.unhealthyThreshold : t.healthyThreshold)
        })
      }),
      { numRuns: 300 }
    )
  })

  it("starting healthy, runs of fewer than unhealthy_threshold consecutive failures never flip it", () => {
    const arb = thresholdsArb.chain((t) =>
      fc.tuple(
        fc.constant(t),
        // Runs of failures, each shorter than the threshold, separated by at least one success.
        fc.array(fc.tuple(fc.integer({ min: 0, max: t.unhealthyThreshold - 1 }), fc.integer({ min: 1, max: 3 })), { maxLength: 15 })
          .map((runs) => runs.flatMap(([fails, oks]) => [...Array.from({ length: fails }, () => false), ...Array.from({ length: oks }, () => true)]))
      )
    )
    fc.assert(
      fc.property(arb, ([t, probes]) => {
        for (const s of run(probes, t)) assert.isTrue(s.healthy)
      }),
      { numRuns: 300 }
    )
  })

  it("a healthy endpoint flips after the failures that complete its streak to unhealthy_threshold, whatever came before", () => {
    fc.assert(
      fc.property(thresholdsArb, probesArb, fc.boolean(), (t, prefix, resetFirst) => {
        const before = run(resetFirst ? [...prefix, true] : prefix, t)
        const start = before.length === 0 ? initialHealth : before[before.length - 1]
        if (!start.healthy) return
        // After a success the streak is 0 and exactly unhealthy_threshold failures are needed.
        if (resetFirst) assert.strictEqual(start.streak, 0)
        const needed = t.unhealthyThreshold - start.streak
        const after = run(Array.from({ length: needed }, () => false), t, start)
        after.slice(0, -1).forEach((s) => assert.isTrue(s.healthy))
        assert.deepStrictEqual(after[after.length - 1], { healthy: false, streak: 0 })
      }),
      { numRuns: 300 }
    )
  })

  it("after a flip to unhealthy, exactly healthy_threshold consecutive successes bring it back", () => {
    fc.assert(
      fc.property(thresholdsArb, probesArb, (t, prefix) => {
        // Whatever happened before, end with a flip to unhealthy.
        const toDown = [...prefix, ...Array.from({ length: t.unhealthyThreshold }, () => false)]
        const states = run(toDown, t)
        const down = states[states.length - 1]
        assert.deepStrictEqual(down, { healthy: false, streak: 0 })
        const successes = run(Array.from({ length: t.healthyThreshold }, () => true), t, down)
        successes.slice(0, -1).forEach((s, i) => assert.isFalse(s.healthy, `still unhealthy after ${i + 1} successes`))
        assert.deepStrictEqual(successes[successes.length - 1], { healthy: true, streak: 0 })
      }),
      { numRuns: 300 }
    )
  })

  it("any agreeing probe resets the streak", () => {
    fc.assert(
      fc.property(
        thresholdsArb,
        fc.boolean(),
        fc.integer({ min: 0, max: 4 }),
        (t, healthy, streak) => {
          const needed = healthy ? t.unhealthyThreshold : t.healthyThreshold
          const s: HealthState = { healthy, streak: Math.min(streak, needed - 1) }
          assert.deepStrictEqual(observeProbe(s, healthy, t), { healthy, streak: 0 })
        }
      ),
      { numRuns: 200 }
    )
  })

  it("is pure: the input state is never mutated", () => {
    fc.assert(
      fc.property(thresholdsArb, fc.boolean(), fc.boolean(), fc.integer({ min: 0, max: 4 }), (t, healthy, ok, streak) => {
        const s: HealthState = Object.freeze({ healthy, streak })
        const copy = { ...s }
        observeProbe(s, ok, t)
        assert.deepStrictEqual(s, copy)
      }),
      { numRuns: 100 }
    )
  })
})

describe("observeProbe: examples", () => {
  it("endpoints start healthy with no streak", () => {
    assert.deepStrictEqual(initialHealth, { healthy: true, streak: 0 })
  })

  it("the documented example: a third failure with unhealthy_threshold 3 flips to unhealthy", () => {
    assert.deepStrictEqual(observeProbe({ healthy: true, streak: 2 }, false, T(2, 3)), { healthy: false, streak: 0 })
  })

  it("fall 3 / rise 2: F F T F F F T T", () => {
    const probes = [false, false, true, false, false, false, true, true]
    assert.deepStrictEqual(run(probes, T(2, 3)), [
      { healthy: true, streak: 1 },
      { healthy: true, streak: 2 },
      { healthy: true, streak: 0 }, // a success resets the fall streak
      { healthy: true, streak: 1 },
      { healthy: true, streak: 2 },
      { healthy: false, streak: 0 }, // third consecutive failure
      { healthy: false, streak: 1 },
      { healthy: true, streak: 0 } // second consecutive success
    ])
  })

  it("a failure in the middle of the rise restarts it", () => {
    const probes = [false, true, true, false, true, true, true]
    assert.deepStrictEqual(run(probes, T(3, 1)).map((s) => s.healthy), [false, false, false, false, false, false, true])
  })

  it("thresholds of 1 follow every probe", () => {
    const probes = [true, false, false, true, false, true, true]
    assert.deepStrictEqual(run(probes, T(1, 1)).map((s) => s.healthy), probes)
    for (const s of run(probes, T(1, 1))) assert.strictEqual(s.streak, 0)
  })

  it("successes while healthy and failures while unhealthy change nothing", () => {
    assert.deepStrictEqual(observeProbe({ healthy: true, streak: 0 }, true, T(2, 3)), { healthy: true, streak: 0 })
    assert.deepStrictEqual(observeProbe({ healthy: false, streak: 0 }, false, T(2, 3)), { healthy: false, streak: 0 })
    assert.deepStrictEqual(observeProbe({ healthy: false, streak: 1 }, false, T(2, 3)), { healthy: false, streak: 0 })
  })
})
