/**
 * The circuit breaker without a network: the pure state machine (`circuitAdmits`,
 * `circuitTryStarted`, `recordCircuit`) checked against a small reference model with fast-check's
 * model-based testing (tries start, end, are abandoned, and the open time ends, in any order),
 * `openDurationMs`'s doubling and cap, and the `Upstreams` service's open → half-open timers
 * under TestClock (including across reloads).
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Layer } from "effect"
import { TestClock } from "effect/testing"
import fc from "fast-check"
import {
  circuitAdmits,
  circuitDefaults,
  abandonProbe,
  circuitHalfOpen,
  circuitTryStarted,
  closedCircuit,
  compileCircuitPolicy,
  openDurationMs,
  recordCircuit,
  type CircuitPolicy,
  type CircuitState
} from "../../src/resilience/Circuit.ts"
import type { OutlierFailure } from "../../src/resilience/Outlier.ts"
import type { Endpoint } from "../../src/upstream/UpstreamGroup.ts"
import { Upstreams } from "../../src/upstream/Upstreams.ts"
import { decoded, settle } from "../support/effects.ts"

const ALL_FAILURES: ReadonlyArray<OutlierFailure> = ["connect-failure", "reset", "timeout", "5xx"]

const policyArb: fc.Arbitrary<CircuitPolicy> = fc.record({
  consecutiveFailures: fc.integer({ min: 1, max: 4 }),
  openForMs: fc.integer({ min: 1, max: 60_000 }),
  maxOpenForMs: fc.integer({ min: 1, max: 600_000 }),
  halfOpenProbes: fc.integer({ min: 1, max: 3 }),
  counts: fc.subarray([...ALL_FAILURES]).map((fs) => new Set(fs) as ReadonlySet<OutlierFailure>)
})

// ---------------------------------------------------------------------------------------------
// The reference model, written from the spec (effect/persistence CircuitBreaker semantics).

type Phase = "closed" | "open" | "half-open"

interface ModelTry {
  readonly id: number
  /** Started while half-open. */
  readonly probe: boolean
  /** The half-open period it started in (meaningful for probes). */
  readonly period: number
}

interface Model {
  readonly policy: CircuitPolicy
  state: Phase
  /** Consecutive counted failures while closed. */
  failures: number
  /** Consecutive openings. */
  opens: number
  /** Number of the current (or last) half-open period; each open → half-open starts a new one. */
  period: number
  /** Tries in flight, in start order. */
  tries: Array<ModelTry>
  nextId: number
}

/** Probes of the current half-open period still in flight: the only ones that hold a slot. */
const probesInFlight = (m: Readonly<Model>): number =>
  m.state === "half-open" ? m.tries.filter((t) => t.probe && t.period === m.period).length : 0

const modelAdmits = (m: Readonly<Model>): boolean =>
  m.state === "closed" || (m.state === "half-open" && probesInFlight(m) < m.policy.halfOpenProbes)

const modelOpen = (m: Model): "opened" => {
  m.state = "open"
  m.failures = 0
  m.opens++
  return "opened"
}

type Outcome = "success" | "counted" | "uncounted"

/**
 * A try's outcome. A probe of the current half-open period decides: success closes (openings
 * reset), a counted failure reopens, an uncounted one only frees its slot. Any other try (a
 * non-probe that started before the circuit opened, or a probe of an earlier half-open period)
 * changes nothing unless the circuit is closed; while closed every outcome feeds the run of
 * consecutive counted failures (success resets it, an uncounted failure is transparent).
 */
const modelOutcome = (m: Model, t: ModelTry, outcome: Outcome): "opened" | "closed" | undefined => {
  m.tries = m.tries.filter((x) => x.id !== t.id)
  if (t.probe && m.state === "half-open" && t.period === m.period) {
    if (outcome === "counted") return modelOpen(m)
    if (outcome === "success") {
      m.state = "closed"
      m.failures = 0
      m.opens = 0
      return "closed"
    }
    return undefined
  }
  if (m.state !== "closed") return undefined
  if (outcome === "success") m.failures = 0
  else if (outcome === "counted") {
    m.failures++
    if (m.failures >= m.policy.consecutiveFailures) return modelOpen(m)
  }
  return undefined
}

// ---------------------------------------------------------------------------------------------
// The real system: one endpoint's CircuitState driven as Exchange and Upstreams drive it.

interface RealTry {
  readonly id: number
  /** What circuitTryStarted returned: the half-open period it probes, 0 for no probe. */
  readonly probe: number
}

interface Real {
  readonly policy: CircuitPolicy
  readonly s: CircuitState
  tries: Array<RealTry>
  /** The `nth` Upstreams captured when the circuit last opened (its timer's identity). */
  openedNth: number
}

const check = (m: Readonly<Model>, r: Real, what: string) => {
  assert.strictEqual(r.s.circuit, m.state, `state after ${what}`)
  assert.strictEqual(r.s.circuitFailures, m.failures, `failure count after ${what}`)
  assert.strictEqual(r.s.circuitOpens, m.opens, `openings after ${what}`)
  assert.strictEqual(circuitAdmits(r.policy, r.s), modelAdmits(m), `admission after ${what}`)
  // The probe counter only means something while half-open (the timer resets it on entry).
  if (m.state === "half-open") assert.strictEqual(r.s.circuitProbes, probesInFlight(m), `probes in flight after ${what}`)
}

const kindsFor = (policy: CircuitPolicy, counted: boolean): ReadonlyArray<OutlierFailure> =>
  ALL_FAILURES.filter((f) => policy.counts.has(f) === counted)

class TryStart implements fc.Command<Model, Real> {
  check(m: Readonly<Model>) {
    return modelAdmits(m)
  }
  run(m: Model, r: Real) {
    const probe = circuitTryStarted(r.s)
    const expected = m.state === "half-open"
    assert.strictEqual(probe !== 0, expected, "circuitTryStarted says whether the try is a probe")
    const id = m.nextId++
    m.tries.push({ id, probe: expected, period: m.period })
    r.tries.push({ id, probe })
    check(m, r, this.toString())
  }
  toString() {
    return "TryStart"
  }
}

class TryOutcome implements fc.Command<Model, Real> {
  readonly pick: number
  readonly outcome: Outcome
  readonly kind: number
  constructor(pick: number, outcome: Outcome, kind: number) {
    this.pick = pick
    this.outcome = outcome
    this.kind = kind
  }
  check(m: Readonly<Model>) {
    if (m.tries.length === 0) return false
    return this.outcome === "success" || kindsFor(m.policy, this.outcome === "counted").length > 0
  }
  run(m: Model, r: Real) {
    const i = this.pick % m.tries.length
    const t = m.tries[i]
    const rt = r.tries[i]
    assert.strictEqual(rt.id, t.id)
    const kinds = kindsFor(r.policy, this.outcome === "counted")
    const failure = this.outcome === "success" ? undefined : kinds[this.kind % kinds.length]
    const expected = modelOutcome(m, t, this.outcome)
    r.tries.splice(i, 1)
    const got = recordCircuit(r.policy, r.s, failure, rt.probe)
    if (got === "opened") r.openedNth = r.s.circuitOpenId
    const what = `${this} (try #${t.id}, ${t.probe ? `probe of half-open period ${t.period}` : "not a probe"}, failure ${failure})`
    assert.strictEqual(got, expected, `recordCircuit's result for ${what}`)
    check(m, r, what)
  }
  toString() {
    return `TryOutcome(${this.pick}, ${this.outcome}${this.outcome === "success" ? "" : `#${this.kind}`})`
  }
}

class TimerFires implements fc.Command<Model, Real> {
  check(m: Readonly<Model>) {
    return m.state === "open"
  }
  run(m: Model, r: Real) {
    m.state = "half-open"
    m.period++
    // What Upstreams' "circuit" timer does when the opening it was started for ends.
    if (r.s.circuit === "open" && r.s.circuitOpenId === r.openedNth) circuitHalfOpen(r.s)
    check(m, r, this.toString())
  }
  toString() {
    return "TimerFires"
  }
}

class AbandonProbe implements fc.Command<Model, Real> {
  readonly pick: number
  constructor(pick: number) {
    this.pick = pick
  }
  check(m: Readonly<Model>) {
    return m.tries.some((t) => t.probe)
  }
  run(m: Model, r: Real) {
    const probes = m.tries.filter((t) => t.probe)
    const t = probes[this.pick % probes.length]
    const i = m.tries.indexOf(t)
    const probe = r.tries[i].probe
    assert.isAbove(probe, 0)
    m.tries.splice(i, 1)
    r.tries.splice(i, 1)
    // What Exchange.abort does: the abandoned probe frees its slot without an outcome.
    abandonProbe(r.s, probe)
    check(m, r, `${this} (try #${t.id} of half-open period ${t.period})`)
  }
  toString() {
    return `AbandonProbe(${this.pick})`
  }
}

const commandsArb = fc.commands(
  [
    fc.constant(new TryStart()),
    fc.constant(new TryStart()),
    fc.tuple(fc.nat(), fc.nat()).map(([pick, kind]) => new TryOutcome(pick, "success", kind)),
    fc.tuple(fc.nat(), fc.nat()).map(([pick, kind]) => new TryOutcome(pick, "counted", kind)),
    fc.tuple(fc.nat(), fc.nat()).map(([pick, kind]) => new TryOutcome(pick, "counted", kind)),
    fc.tuple(fc.nat(), fc.nat()).map(([pick, kind]) => new TryOutcome(pick, "uncounted", kind)),
    fc.constant(new TimerFires()),
    fc.nat().map((pick) => new AbandonProbe(pick))
  ],
  // Long runs: reaching a second half-open period with probes of the first still in flight takes a few dozen steps.
  { maxCommands: 80, size: "max" }
)

const setup = (policy: CircuitPolicy) => () => ({
  model: { policy, state: "closed", failures: 0, opens: 0, period: 0, tries: [], nextId: 0 } as Model,
  real: { policy, s: closedCircuit(), tries: [], openedNth: 0 } as Real
})

describe("circuit breaker state machine: model-based (fc.commands)", () => {
  it("state, admission and opened/closed follow the model for any policy and any interleaving of tries, outcomes, timers and abandoned probes", () => {
    fc.assert(
      fc.property(policyArb, commandsArb, (policy, cmds) => fc.modelRun(setup(policy), cmds)),
      { numRuns: 1500 }
    )
  })

  it("the same with one probe at a time (half_open_probes 1, the default)", () => {
    fc.assert(
      fc.property(policyArb.map((p) => ({ ...p, halfOpenProbes: 1 })), commandsArb, (policy, cmds) => fc.modelRun(setup(policy), cmds)),
      { numRuns: 1000 }
    )
  })
})

// ---------------------------------------------------------------------------------------------
// Worked examples of the same rules (readable failures when one breaks).

const policyOf = (config: Parameters<typeof compileCircuitPolicy>[0]) => compileCircuitPolicy(config) ?? assert.fail("no policy")

/** Opens `s` with counted failures of closed-state tries; returns the results. */
const failUntilOpen = (policy: CircuitPolicy, s: CircuitState) => {
  const results: Array<string | undefined> = []
  for (let k = 0; k < policy.consecutiveFailures; k++) {
    assert.isTrue(circuitAdmits(policy, s))
    results.push(recordCircuit(policy, s, "5xx", circuitTryStarted(s)))
  }
  return results
}

/** What Upstreams does at the end of the opening. */
const halfOpen = (s: CircuitState) => {
  assert.strictEqual(s.circuit, "open")
  circuitHalfOpen(s)
}

/** The fields of the rule, without the ids that only identify periods and openings. */
const ruleFields = (s: CircuitState) => ({
  circuit: s.circuit,
  circuitFailures: s.circuitFailures,
  circuitOpens: s.circuitOpens,
  circuitProbes: s.circuitProbes
})

describe("circuit breaker state machine: examples", () => {
  it("closed → open after exactly consecutive_failures counted failures; open admits nothing", () => {
    const policy = policyOf({ consecutive_failures: 3 })
    const s = closedCircuit()
    assert.deepStrictEqual(failUntilOpen(policy, s), [undefined, undefined, "opened"])
    assert.deepStrictEqual(ruleFields(s), { circuit: "open", circuitFailures: 0, circuitOpens: 1, circuitProbes: 0 })
    assert.isFalse(circuitAdmits(policy, s))
  })

  it("a success resets the run; an uncounted failure neither counts nor resets it", () => {
    const policy = policyOf({ consecutive_failures: 2, failures: ["5xx"] })
    const s = closedCircuit()
    assert.isUndefined(recordCircuit(policy, s, "5xx", 0))
    assert.isUndefined(recordCircuit(policy, s, undefined, 0))
    assert.strictEqual(s.circuitFailures, 0)
    assert.isUndefined(recordCircuit(policy, s, "5xx", 0))
    assert.isUndefined(recordCircuit(policy, s, "reset", 0))
    assert.isUndefined(recordCircuit(policy, s, "connect-failure", 0))
    assert.strictEqual(s.circuitFailures, 1)
    assert.strictEqual(recordCircuit(policy, s, "5xx", 0), "opened")
  })

  it("half-open admits half_open_probes concurrent probes; a successful probe closes and resets the openings", () => {
    const policy = policyOf({ consecutive_failures: 1, half_open_probes: 2 })
    const s = closedCircuit()
    failUntilOpen(policy, s)
    halfOpen(s)
    const first = circuitTryStarted(s)
    assert.isAbove(first, 0)
    assert.isTrue(circuitAdmits(policy, s))
    assert.isAbove(circuitTryStarted(s), 0)
    assert.isFalse(circuitAdmits(policy, s), "two probes in flight")
    assert.strictEqual(recordCircuit(policy, s, undefined, first), "closed")
    assert.strictEqual(s.circuit, "closed")
    assert.strictEqual(s.circuitOpens, 0)
  })

  it("a counted failed probe reopens (one more opening); an uncounted one only frees its slot", () => {
    const policy = policyOf({ consecutive_failures: 1, failures: ["5xx"] })
    const s = closedCircuit()
    failUntilOpen(policy, s)
    halfOpen(s)
    const probe = circuitTryStarted(s)
    assert.isAbove(probe, 0)
    assert.isFalse(circuitAdmits(policy, s))
    assert.isUndefined(recordCircuit(policy, s, "reset", probe))
    assert.strictEqual(s.circuit, "half-open")
    assert.isTrue(circuitAdmits(policy, s), "the slot is free again")
    const again = circuitTryStarted(s)
    assert.isAbove(again, 0)
    assert.strictEqual(recordCircuit(policy, s, "5xx", again), "opened")
    assert.deepStrictEqual([s.circuit, s.circuitOpens], ["open", 2])
  })

  it("outcomes of tries that started before the circuit opened change nothing while it is open or half-open", () => {
    const policy = policyOf({ consecutive_failures: 1 })
    const s = closedCircuit()
    const early = [circuitTryStarted(s), circuitTryStarted(s), circuitTryStarted(s)]
    assert.deepStrictEqual(early, [0, 0, 0])
    assert.strictEqual(recordCircuit(policy, s, "timeout", 0), "opened")
    assert.isUndefined(recordCircuit(policy, s, undefined, 0))
    assert.deepStrictEqual(ruleFields(s), { circuit: "open", circuitFailures: 0, circuitOpens: 1, circuitProbes: 0 })
    halfOpen(s)
    assert.isUndefined(recordCircuit(policy, s, "5xx", 0))
    assert.deepStrictEqual(ruleFields(s), { circuit: "half-open", circuitFailures: 0, circuitOpens: 1, circuitProbes: 0 })
  })

  // Found by the model: the probe counter is shared by all half-open periods, so a probe of an
  // earlier period that ends during a later one frees a slot it does not hold (and its outcome
  // decides for the later period).
  it("a probe left over from an earlier half-open period holds no slot in a later one: at most half_open_probes probes in flight", () => {
    const policy = policyOf({ consecutive_failures: 1, half_open_probes: 2, failures: ["5xx"] })
    const s = closedCircuit()
    failUntilOpen(policy, s)
    halfOpen(s)
    const p1 = circuitTryStarted(s)
    const p2 = circuitTryStarted(s)
    assert.strictEqual(recordCircuit(policy, s, "5xx", p1), "opened", "P1 fails: open again")
    halfOpen(s)
    const p3 = circuitTryStarted(s)
    const p4 = circuitTryStarted(s)
    assert.isTrue([p1, p2, p3, p4].every((p) => p > 0), "all four are probes")
    assert.isFalse(circuitAdmits(policy, s), "P3 and P4 fill the two slots")
    // P2, from the first half-open period, now ends with an uncounted failure.
    recordCircuit(policy, s, "reset", p2)
    assert.isFalse(circuitAdmits(policy, s), "P3 and P4 are still in flight: no third probe")
    assert.strictEqual(s.circuitProbes, 2)
  })

  it("an abandoned probe of an earlier half-open period frees no slot in a later one", () => {
    const policy = policyOf({ consecutive_failures: 1, half_open_probes: 2, failures: ["5xx"] })
    const s = closedCircuit()
    failUntilOpen(policy, s)
    halfOpen(s)
    const p1 = circuitTryStarted(s)
    const p2 = circuitTryStarted(s)
    // P1 succeeds: closed, with P2 still in flight; then the circuit opens again and half-opens.
    assert.strictEqual(recordCircuit(policy, s, undefined, p1), "closed")
    assert.strictEqual(recordCircuit(policy, s, "5xx", 0), "opened")
    halfOpen(s)
    circuitTryStarted(s)
    circuitTryStarted(s)
    assert.isFalse(circuitAdmits(policy, s))
    // Exchange.abort for P2 (the client went away).
    abandonProbe(s, p2)
    assert.isFalse(circuitAdmits(policy, s), "two probes of this period are still in flight")
  })
})

// ---------------------------------------------------------------------------------------------
// openDurationMs and compileCircuitPolicy.

describe("openDurationMs and compileCircuitPolicy", () => {
  it("openDurationMs(n) = min(max_open_for, open_for * 2^(n-1)): non-decreasing, capped, open_for (capped) first", () => {
    fc.assert(
      fc.property(policyArb, fc.integer({ min: 1, max: 2000 }), (policy, n) => {
        const ms = openDurationMs(policy, n)
        assert.strictEqual(ms, Math.min(policy.maxOpenForMs, policy.openForMs * 2 ** (n - 1)))
        assert.isAtMost(ms, policy.maxOpenForMs)
        assert.isAtLeast(openDurationMs(policy, n + 1), ms)
        assert.strictEqual(openDurationMs(policy, 1), Math.min(policy.openForMs, policy.maxOpenForMs))
        if (n > 1 && policy.openForMs * 2 ** (n - 1) <= policy.maxOpenForMs) assert.strictEqual(ms, 2 * openDurationMs(policy, n - 1))
      }),
      { numRuns: 1000 }
    )
  })

  it("stays a finite number however many consecutive openings (open_for may be 0ms)", () => {
    const zero = policyOf({ open_for: 0, max_open_for: 1000 })
    const some = policyOf({ open_for: 1, max_open_for: 1000 })
    for (const n of [1, 2, 1024, 1025, 1026, 5000]) {
      assert.strictEqual(openDurationMs(some, n), n === 1 ? 1 : n === 2 ? 2 : 1000)
      assert.strictEqual(openDurationMs(zero, n), 0, `open_for 0, opening ${n}`)
    }
  })

  it("defaults: 5 failures, 30s doubling to a 300s cap (reached at the 5th opening), 1 probe, every failure kind", () => {
    assert.isUndefined(compileCircuitPolicy(undefined))
    const p = policyOf({})
    assert.strictEqual(p.consecutiveFailures, 5)
    assert.strictEqual(p.openForMs, 30_000)
    assert.strictEqual(p.maxOpenForMs, 300_000)
    assert.strictEqual(p.halfOpenProbes, 1)
    assert.deepStrictEqual([...p.counts].sort(), [...circuitDefaults.failures].sort())
    assert.deepStrictEqual([1, 2, 3, 4, 5, 6, 50].map((n) => openDurationMs(p, n)), [30_000, 60_000, 120_000, 240_000, 300_000, 300_000, 300_000])
    const only = policyOf({ failures: ["connect-failure"], half_open_probes: 3 })
    assert.deepStrictEqual([...only.counts], ["connect-failure"])
    assert.strictEqual(only.halfOpenProbes, 3)
  })
})

// ---------------------------------------------------------------------------------------------
// The Upstreams service: open → half-open on Effect's Clock.



const A = "http://127.0.0.1:1"
const B = "http://127.0.0.1:2"

/** Upstream `app` over A and B with a circuit breaker (none when `circuit` is null); A may be left out. */
const configWith = (
  options: {
    readonly weightA?: number
    readonly withoutA?: boolean
    readonly circuit?: Record<string, unknown> | null
  } = {}
) =>
  decoded({
    log: { level: "none", access_log: false },
    servers: [{ name: "web", listen: "127.0.0.1:0", routes: [{ id: "all", upstream: "app" }] }],
    upstreams: {
      app: {
        endpoints: [
          ...(options.withoutA === true ? [] : [{ url: A, ...(options.weightA === undefined ? {} : { weight: options.weightA }) }]),
          { url: B }
        ],
        ...(options.circuit === null ? {} : { circuit_breaker: options.circuit ?? { consecutive_failures: 2, open_for: "10s", max_open_for: "30s" } })
      }
    }
  })

const withUpstreams = Effect.gen(function*() {
  const context = yield* Layer.build(Upstreams.layer)
  const upstreams = Context.get(context, Upstreams)
  const group = () => upstreams.current().get("app") ?? assert.fail("no upstream app")
  const endpoint = (origin: string) => group().endpoints.find((e) => e.origin === origin) ?? assert.fail(`no endpoint ${origin}`)
  const policy = () => group().circuit ?? assert.fail("no circuit breaker")
  /** Records one try's outcome on `e` as Exchange does (starting it first), scheduling the half-open step when it opens. */
  const tryOn = (e: Endpoint, failure: OutlierFailure | undefined) =>
    Effect.gen(function*() {
      const probe = circuitTryStarted(e)
      const result = recordCircuit(policy(), e, failure, probe)
      if (result === "opened") group().onCircuitOpen(e, openDurationMs(policy(), e.circuitOpens))
      yield* settle
      return result
    })
  /** Fails tries on `e` until its circuit opens. */
  const open = (e: Endpoint) =>
    Effect.gen(function*() {
      for (let k = 0; k < 100; k++) if ((yield* tryOn(e, "5xx")) === "opened") return
      assert.fail("the circuit did not open")
    })
  /** Advances the clock 1s at a time while `e` stays open; how long it stayed open. */
  const openTime = (e: () => Endpoint) =>
    Effect.gen(function*() {
      let waited = 0
      while (e().circuit === "open" && waited < 1_000_000) {
        yield* TestClock.adjust(1_000)
        waited += 1_000
      }
      assert.strictEqual(e().circuit, "half-open")
      return waited
    })
  return { upstreams, group, endpoint, policy, tryOn, open, openTime }
})

describe("Upstreams: open → half-open after the open time (TestClock)", () => {
  it.effect("an open circuit stays open until exactly open_for, then is half-open with no probe in flight; B is untouched", () =>
    Effect.gen(function*() {
      const { upstreams, group, endpoint, policy, open } = yield* withUpstreams
      yield* upstreams.reconcile(configWith())
      assert.strictEqual(policy().openForMs, 10_000)
      const a = endpoint(A)
      yield* open(a)
      assert.strictEqual(a.circuit, "open")
      assert.isFalse(group().eligible!(a))
      yield* TestClock.adjust(9_999)
      assert.strictEqual(a.circuit, "open", "still open at 9.999s")
      assert.isFalse(group().eligible!(a))
      yield* TestClock.adjust(1)
      assert.strictEqual(a.circuit, "half-open", "half-open at 10s")
      assert.strictEqual(a.circuitProbes, 0)
      assert.isTrue(group().eligible!(a), "admits a probe")
      assert.strictEqual(endpoint(B).circuit, "closed")
      assert.isTrue(group().eligible!(endpoint(B)))
    }))

  it.effect("consecutive openings last open_for, twice that, then max_open_for; a successful probe resets it to open_for", () =>
    Effect.gen(function*() {
      const { upstreams, endpoint, open, openTime, tryOn } = yield* withUpstreams
      yield* upstreams.reconcile(configWith())
      const a = () => endpoint(A)
      yield* open(a())
      assert.strictEqual(yield* openTime(a), 10_000)
      // The probe fails: the second consecutive opening.
      assert.strictEqual(yield* tryOn(a(), "5xx"), "opened")
      assert.strictEqual(a().circuitOpens, 2)
      yield* TestClock.adjust(19_999)
      assert.strictEqual(a().circuit, "open", "the second opening is still open at 19.999s")
      yield* TestClock.adjust(1)
      assert.strictEqual(a().circuit, "half-open", "half-open at 20s")
      assert.strictEqual(yield* tryOn(a(), "5xx"), "opened")
      assert.strictEqual(yield* openTime(a), 30_000, "the third is capped at max_open_for (30s, not 40s)")
      assert.strictEqual(yield* tryOn(a(), undefined), "closed")
      assert.strictEqual(a().circuitOpens, 0)
      yield* open(a())
      assert.strictEqual(yield* openTime(a), 10_000, "after closing, the next opening is the first again")
    }))

  it.effect("a reload that replaces the endpoint object (new weight) while open keeps it open, then half-opens the new object on time", () =>
    Effect.gen(function*() {
      const { upstreams, endpoint, open } = yield* withUpstreams
      yield* upstreams.reconcile(configWith())
      const before = endpoint(A)
      yield* open(before)
      yield* TestClock.adjust(4_000)
      yield* upstreams.reconcile(configWith({ weightA: 3 }))
      yield* settle
      const after = endpoint(A)
      assert.notStrictEqual(after, before)
      assert.deepStrictEqual([after.circuit, after.circuitOpens], ["open", 1])
      yield* TestClock.adjust(5_999)
      assert.strictEqual(after.circuit, "open")
      yield* TestClock.adjust(1)
      assert.strictEqual(after.circuit, "half-open")
    }))

  it.effect("a leftover timer of an earlier opening (ended by a reload without circuit_breaker) does not half-open a later opening early", () =>
    Effect.gen(function*() {
      const { upstreams, endpoint, open } = yield* withUpstreams
      yield* upstreams.reconcile(configWith())
      yield* open(endpoint(A))
      yield* TestClock.adjust(2_000)
      // The breaker is removed (the circuit closes), then put back; A opens again at 2s, until 12s.
      yield* upstreams.reconcile(configWith({ circuit: null }))
      yield* settle
      assert.strictEqual(endpoint(A).circuit, "closed")
      yield* upstreams.reconcile(configWith())
      yield* settle
      const a = endpoint(A)
      yield* open(a)
      yield* TestClock.adjust(8_000)
      assert.strictEqual(a.circuit, "open", "at 10s the first opening's timer fires: the second opening must stay open")
      yield* TestClock.adjust(1_999)
      assert.strictEqual(a.circuit, "open")
      yield* TestClock.adjust(1)
      assert.strictEqual(a.circuit, "half-open", "half-open at 12s, 10s after it opened")
    }))

  it.effect("a leftover timer of a removed endpoint does not half-open the re-added endpoint's later opening early", () =>
    Effect.gen(function*() {
      const { upstreams, endpoint, open } = yield* withUpstreams
      yield* upstreams.reconcile(configWith())
      yield* open(endpoint(A))
      yield* TestClock.adjust(3_000)
      yield* upstreams.reconcile(configWith({ withoutA: true }))
      yield* settle
      yield* upstreams.reconcile(configWith())
      yield* settle
      const a = endpoint(A)
      assert.strictEqual(a.circuit, "closed", "re-added fresh")
      yield* open(a)
      yield* TestClock.adjust(7_000)
      assert.strictEqual(a.circuit, "open", "the removed endpoint's timer (10s) must not end this opening (until 13s)")
      yield* TestClock.adjust(2_999)
      assert.strictEqual(a.circuit, "open")
      yield* TestClock.adjust(1)
      assert.strictEqual(a.circuit, "half-open")
    }))

  it.effect("openings of A and B run their own timers", () =>
    Effect.gen(function*() {
      const { upstreams, endpoint, open } = yield* withUpstreams
      yield* upstreams.reconcile(configWith())
      const a = endpoint(A)
      const b = endpoint(B)
      yield* open(a)
      yield* TestClock.adjust(5_000)
      yield* open(b)
      yield* TestClock.adjust(4_999)
      assert.deepStrictEqual([a.circuit, b.circuit], ["open", "open"])
      yield* TestClock.adjust(1)
      assert.deepStrictEqual([a.circuit, b.circuit], ["half-open", "open"])
      yield* TestClock.adjust(4_999)
      assert.strictEqual(b.circuit, "open")
      yield* TestClock.adjust(1)
      assert.strictEqual(b.circuit, "half-open")
    }))
})
