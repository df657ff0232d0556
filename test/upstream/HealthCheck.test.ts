/**
 * Active health checking under TestClock: `runHealthCheck` with a scripted probe (each call's
 * Clock time recorded), and the `HealthChecks` service over the real `Upstreams` with a
 * scripted probe factory, driven through config changes. Nothing real is probed or slept.
 */
import { assert, describe, it } from "@effect/vitest"
import { Clock, Context, Duration, Effect, Fiber, Layer, SubscriptionRef } from "effect"
import { TestClock } from "effect/testing"
import { ConfigSource } from "../../src/config/ConfigSource.ts"
import type { HealthCheck } from "../../src/config/Schema.ts"
import { HealthChecks, runHealthCheck, type ProbeFactory } from "../../src/upstream/HealthChecks.ts"
import { initialHealth, type HealthState } from "../../src/resilience/HealthState.ts"
import { Upstreams } from "../../src/upstream/Upstreams.ts"
import { decoded, settle } from "../support/effects.ts"

/** One scripted probe result: ok/failed at once, never completing, or completing after a delay. */
type Step = boolean | "hang" | { readonly after: number; readonly ok: boolean }

/** A probe answering `steps` in order (the last one forever), recording the Clock time of each call. */
const scriptedProbe = (steps: ReadonlyArray<Step>) => {
  const calls: Array<number> = []
  let interrupted = 0
  const probe: Effect.Effect<boolean> = Effect.gen(function*() {
    calls.push(yield* Clock.currentTimeMillis)
    const step = steps[Math.min(calls.length - 1, steps.length - 1)]
    if (step === "hang") return yield* Effect.never
    if (typeof step === "boolean") return step
    yield* Effect.sleep(step.after)
    return step.ok
  }).pipe(Effect.onInterrupt(() => Effect.sync(() => void interrupted++)))
  return { probe, calls, interrupted: () => interrupted }
}


/** Advances the TestClock by `total` ms in steps of `step` ms, running `each` after every step. */
const advance = (total: number, step: number, each: () => void = () => undefined, ready?: () => boolean) =>
  Effect.gen(function*() {
    for (let t = 0; t < total; t += step) {
      yield* TestClock.adjust(step)
      // Fibers that must have reached a point (a timer armed) before the clock moves on.
      if (ready !== undefined) yield* untilTrue(ready)
      each()
    }
    // Fibers woken by the last step get to run before the caller looks.
    yield* settle
  })

const gaps = (times: ReadonlyArray<number>) => times.slice(1).map((t, i) => t - times[i])

const assertJittered = (gapsMs: ReadonlyArray<number>, interval: number) => {
  for (const [i, gap] of gapsMs.entries()) {
    // The jittered delays are fractional milliseconds: allow for float rounding in the subtraction.
    assert.isAtLeast(gap, 0.8 * interval - 1e-6, `gap ${i} (${gap}ms) below 0.8 x ${interval}ms`)
    assert.isAtMost(gap, 1.2 * interval + 1e-6, `gap ${i} (${gap}ms) above 1.2 x ${interval}ms`)
  }
}

/** Runs `runHealthCheck` in a child fiber; every published state with its Clock time. */
/** Yields (no virtual time passes) until `done()` holds, for at most 5 s of real time. */
// Effect's scheduler also yields to the event loop after a time budget, so under CPU load a
// woken fiber may need real macrotask turns, not only more yields: the bound is real time,
// not a count of turns, so a loaded machine waits longer instead of failing.
const untilTrue = (done: () => boolean) =>
  Effect.gen(function*() {
    const deadline = Date.now() + 5_000
    for (let i = 0; !done() && Date.now() < deadline; i++) {
      yield* Effect.yieldNow
      if (i % 20 === 19) yield* Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve)))
    }
  })

const startCheck = (probe: Effect.Effect<boolean>, check: HealthCheck, initial: HealthState = initialHealth) =>
  Effect.gen(function*() {
    const published: Array<{ readonly at: number; readonly state: HealthState }> = []
    // The check runs on the TestClock through a wrapper that records each sleep it arms (when, how
    // long): a timeout's timer is armed by a fiber of its own, which under load may start some
    // scheduler turns after the probe does, so a test waits for it instead of guessing.
    const testClock = yield* Clock.Clock
    const sleeps: Array<{ readonly at: number; readonly ms: number }> = []
    const recordingClock: Clock.Clock = {
      ...testClock,
      currentTimeMillisUnsafe: () => testClock.currentTimeMillisUnsafe(),
      currentTimeNanosUnsafe: () => testClock.currentTimeNanosUnsafe(),
      monotonicTimeNanosUnsafe: () => testClock.monotonicTimeNanosUnsafe(),
      sleep: (duration) =>
        Effect.suspend(() => {
          sleeps.push({ at: testClock.currentTimeMillisUnsafe(), ms: Duration.toMillis(duration) })
          return testClock.sleep(duration)
        })
    }
    const fiber = yield* Effect.forkChild(runHealthCheck({
      probe,
      check,
      initial,
      publish: (state) => Effect.map(Clock.currentTimeMillis, (at) => void published.push({ at, state }))
    }).pipe(Effect.provideService(Clock.Clock, recordingClock)))
    yield* settle
    return { published, fiber, sleeps, healths: () => published.map((p) => p.state.healthy) }
  })

describe("runHealthCheck (TestClock)", () => {
  it.effect("probes at once, then every interval within the ±20% jitter window", () =>
    Effect.gen(function*() {
      const script = scriptedProbe([true])
      yield* startCheck(script.probe, { interval: 1000 })
      assert.deepStrictEqual(script.calls, [0], "the first probe runs at start")
      // Counted step by step: no probe before 0.8 x interval after the previous one, always one by 1.2 x.
      let lastCount = 1
      let lastCallAt = 0
      yield* advance(30_000, 50, () => {
        if (script.calls.length > lastCount) {
          assert.strictEqual(script.calls.length, lastCount + 1, "at most one probe per 50ms step")
          lastCount = script.calls.length
          lastCallAt = script.calls[lastCount - 1]
        }
      })
      assert.isAtMost(30_000 - lastCallAt, 1200, "a probe is overdue")
      assertJittered(gaps(script.calls), 1000)
      // 30 s at 0.8..1.2 s per probe, plus the one at start.
      assert.isAtLeast(script.calls.length, 1 + Math.floor(30_000 / 1200))
      assert.isAtMost(script.calls.length, 1 + Math.floor(30_000 / 800))
      // Jitter: the gaps are not all the same.
      assert.isAbove(new Set(gaps(script.calls)).size, 1, "gaps are not jittered")
    }))

  it.effect("uses the default interval (10s) when none is configured", () =>
    Effect.gen(function*() {
      const script = scriptedProbe([true])
      yield* startCheck(script.probe, {})
      yield* advance(120_000, 500)
      assert.isAtLeast(script.calls.length, 1 + Math.floor(120_000 / 12_000))
      assertJittered(gaps(script.calls), 10_000)
    }))

  it.effect("a probe that never completes counts as a failure after `timeout`, and is interrupted", () =>
    Effect.gen(function*() {
      const script = scriptedProbe([true, "hang", true])
      const run = yield* startCheck(script.probe, { interval: 1000, timeout: 300, unhealthy_threshold: 1, healthy_threshold: 1 })
      assert.deepStrictEqual(run.healths(), [true])
      // Wait for the hanging probe to start: within 1.2 x interval of the first probe's end, but
      // under load (a mutation run) the repeat's sleep may be registered a few steps late, so
      // allow more virtual time; everything below is measured from when it did start.
      for (let i = 0; i < 200 && script.calls.length < 2; i++) {
        yield* TestClock.adjust(10)
        // A probe due in this step may need a macrotask turn to start under load.
        yield* Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve)))
      }
      assert.strictEqual(script.calls.length, 2, "the second probe started")
      const hangAt = script.calls[1]
      // The probe's timeout is armed by a fiber of its own, a few scheduler turns after the probe
      // starts (more under load): wait until it is armed, or moving the clock now would arm it later.
      const armed = () => run.sleeps.filter((s) => s.ms === 300)
      yield* untilTrue(() => armed().length === 1)
      assert.deepStrictEqual(armed(), [{ at: hangAt, ms: 300 }], "the timeout is armed when the probe starts")
      yield* settle
      assert.strictEqual(run.published.length, 1, "nothing is published while the probe hangs")
      // Not a failure one step before the timeout...
      yield* TestClock.adjust(hangAt + 299 - (yield* Clock.currentTimeMillis))
      yield* settle
      assert.strictEqual(run.published.length, 1, "published before the timeout elapsed")
      // ...a failure at it. The timeout interrupts the probe fiber, which takes the scheduler a
      // few turns (more under load): wait for the outcome rather than a fixed number of yields.
      yield* TestClock.adjust(1)
      yield* untilTrue(() => run.published.length === 2 && script.interrupted() === 1)
      assert.strictEqual(run.published.length, 2, "the timed-out probe is published")
      assert.closeTo(run.published[1].at, hangAt + 300, 1e-6)
      assert.deepStrictEqual(run.published[1].state, { healthy: false, streak: 0 })
      assert.strictEqual(script.interrupted(), 1, "the timed-out probe is interrupted")
      // The next probe comes an interval after the timed-out one ended, and it succeeds.
      yield* advance(1300, 10)
      // The probe can be due in the last step: let its fiber run before counting.
      yield* untilTrue(() => script.calls.length === 3 && run.published.length === 3)
      assert.strictEqual(script.calls.length, 3)
      assertJittered([script.calls[2] - (hangAt + 300)], 1000)
      assert.deepStrictEqual(run.healths(), [true, false, true])
    }))

  it.effect("a slow probe that answers within the timeout counts as its answer", () =>
    Effect.gen(function*() {
      const script = scriptedProbe([{ after: 299, ok: true }, { after: 299, ok: false }, { after: 301, ok: true }])
      const run = yield* startCheck(script.probe, { interval: 1000, timeout: 300, unhealthy_threshold: 1, healthy_threshold: 1 })
      // Every probe started has its timeout armed before the clock moves on.
      const armed = () => run.sleeps.filter((s) => s.ms === 300).length >= script.calls.length
      yield* untilTrue(armed)
      yield* advance(5000, 10, undefined, armed)
      assert.isAtLeast(run.published.length, 3)
      // ok in 299ms, failed in 299ms, then ok but too late (301ms > 300ms): a failure.
      assert.deepStrictEqual(run.healths().slice(0, 3), [true, false, false])
      assert.strictEqual(run.published[0].at, 299)
      assert.closeTo(run.published[2].at - script.calls[2], 300, 1e-6)
      // Every probe from the third on outlasts the timeout and is interrupted once it has.
      assert.strictEqual(script.interrupted(), run.published.length - 2)
    }))

  it.effect("the default timeout is 2s", () =>
    Effect.gen(function*() {
      const script = scriptedProbe(["hang"])
      const run = yield* startCheck(script.probe, { interval: 1000, unhealthy_threshold: 1 })
      yield* untilTrue(() => run.sleeps.some((s) => s.ms === 2000))
      assert.deepStrictEqual(run.sleeps.filter((s) => s.ms === 2000), [{ at: 0, ms: 2000 }])
      yield* TestClock.adjust(1999)
      assert.strictEqual(run.published.length, 0)
      yield* TestClock.adjust(1)
      assert.deepStrictEqual(run.published, [{ at: 2000, state: { healthy: false, streak: 0 } }])
    }))

  it.effect("published states follow the thresholds, one per probe", () =>
    Effect.gen(function*() {
      const steps = [true, false, false, true, false, false, false, true, false, true, true, true]
      const script = scriptedProbe(steps)
      const run = yield* startCheck(script.probe, { interval: 100, healthy_threshold: 2, unhealthy_threshold: 3 })
      yield* advance(steps.length * 120, 5)
      assert.isAtLeast(run.published.length, steps.length)
      assert.strictEqual(run.published.length, script.calls.length, "one published state per probe")
      // Each state is published at the time of its probe (the probes answer at once).
      run.published.forEach((p, i) => assert.strictEqual(p.at, script.calls[i]))
      assert.deepStrictEqual(run.published.slice(0, steps.length).map((p) => p.state), [
        { healthy: true, streak: 0 },
        { healthy: true, streak: 1 },
        { healthy: true, streak: 2 },
        { healthy: true, streak: 0 },
        { healthy: true, streak: 1 },
        { healthy: true, streak: 2 },
        { healthy: false, streak: 0 }, // 3rd consecutive failure
        { healthy: false, streak: 1 },
        { healthy: false, streak: 0 }, // a failure resets the rise
        { healthy: false, streak: 1 },
        { healthy: true, streak: 0 }, // 2nd consecutive success
        { healthy: true, streak: 0 }
      ])
    }))

  it.effect("uses the default thresholds (fall 3, rise 2) when none are configured", () =>
    Effect.gen(function*() {
      const steps = [false, false, false, true, true]
      const script = scriptedProbe(steps)
      const run = yield* startCheck(script.probe, { interval: 100 })
      yield* advance(steps.length * 120, 5)
      assert.deepStrictEqual(run.healths().slice(0, 5), [true, true, false, false, true])
    }))

  it.effect("starts from the given state", () =>
    Effect.gen(function*() {
      const script = scriptedProbe([true])
      const run = yield* startCheck(script.probe, { interval: 100, healthy_threshold: 3 }, { healthy: false, streak: 1 })
      yield* advance(400, 5)
      // One more success makes two of three, the next flips it.
      assert.deepStrictEqual(run.healths().slice(0, 3), [false, true, true])
    }))

  it.effect("interrupting the check interrupts a probe in flight", () =>
    Effect.gen(function*() {
      const script = scriptedProbe(["hang"])
      const run = yield* startCheck(script.probe, { interval: 100, timeout: 10_000 })
      yield* Fiber.interrupt(run.fiber)
      assert.strictEqual(script.interrupted(), 1)
      yield* TestClock.adjust(60_000)
      assert.strictEqual(script.calls.length, 1)
    }))
})

// ---------------------------------------------------------------------------------------------
// The HealthChecks service

const A = "http://10.0.0.1:8080"
const B = "http://10.0.0.2:8080"
const C = "http://10.0.0.3:8080"

/** A config with one upstream "app" (health-checked when `check` is given) and optional extras. */
const configOf = (
  endpoints: ReadonlyArray<string | { readonly url: string; readonly weight?: number }>,
  check: Record<string, unknown> | undefined,
  extra: { readonly upstream?: Record<string, unknown>; readonly upstreams?: Record<string, unknown>; readonly routeId?: string } = {}
) => ({
  servers: [{ name: "web", listen: "127.0.0.1:0", routes: [{ id: extra.routeId ?? "all", upstream: "app" }] }],
  upstreams: {
    app: {
      endpoints: endpoints.map((e) => (typeof e === "string" ? { url: e } : e)),
      ...(check === undefined ? {} : { health_check: check }),
      ...extra.upstream
    },
    ...extra.upstreams
  }
})

/** A probe factory whose results are set per origin while the test runs. */
const scriptedFactory = () => {
  const results = new Map<string, boolean>()
  const calls = new Map<string, Array<number>>()
  const made: Array<{ readonly origin: string; readonly check: HealthCheck }> = []
  const factory: ProbeFactory = (origin, check) => {
    made.push({ origin, check })
    return Effect.gen(function*() {
      const now = yield* Clock.currentTimeMillis
      calls.set(origin, [...(calls.get(origin) ?? []), now])
      return results.get(origin) ?? true
    })
  }
  return {
    factory,
    set: (origin: string, ok: boolean) => void results.set(origin, ok),
    calls: (origin: string): ReadonlyArray<number> => calls.get(origin) ?? [],
    made: (origin: string) => made.filter((m) => m.origin === origin)
  }
}


/**
 * HealthChecks over the real Upstreams and a ConfigSource holding `raw`. The Upstreams are
 * reconciled by the test (as the RouteTable does in the gateway) before each config is published.
 */
const withService = (raw: unknown, factory: ProbeFactory) =>
  Effect.gen(function*() {
    const context = yield* Layer.build(
      HealthChecks.layerWith(factory).pipe(
        Layer.provideMerge(Upstreams.layer),
        Layer.provideMerge(ConfigSource.layerValue(raw))
      )
    )
    const source = Context.get(context, ConfigSource)
    const upstreams = Context.get(context, Upstreams)
    const checks = Context.get(context, HealthChecks)
    yield* upstreams.reconcile(yield* SubscriptionRef.get(source.config))
    yield* settle
    const endpoint = (origin: string, upstream = "app") => {
      const e = upstreams.current().get(upstream)?.endpoints.find((e) => e.origin === origin)
      return e ?? assert.fail(`no endpoint ${origin} in ${upstream}`)
    }
    /** Publishes a new config (a reload): Upstreams first, then the ConfigSource. */
    const reload = (next: unknown) =>
      Effect.gen(function*() {
        const config = decoded(next)
        yield* upstreams.reconcile(config)
        yield* SubscriptionRef.set(source.config, config)
        yield* settle
      })
    return { endpoint, reload, checks, upstreams }
  })

const check = { interval: "1s", healthy_threshold: 2, unhealthy_threshold: 3 }

/** Advances time until `origin` has been probed `n` times in all (bounded). */
const untilCalls = (script: ReturnType<typeof scriptedFactory>, origin: string, n: number, each: () => void = () => undefined) =>
  Effect.gen(function*() {
    for (let i = 0; i < 10_000 && script.calls(origin).length < n; i++) {
      yield* TestClock.adjust(10)
      each()
    }
    assert.strictEqual(script.calls(origin).length, n, `${origin} probed ${script.calls(origin).length} times, wanted ${n}`)
  })

describe("HealthChecks service (TestClock)", () => {
  it.effect("an endpoint whose probe fails unhealthy_threshold times becomes healthy: false; healthy_threshold successes bring it back", () =>
    Effect.gen(function*() {
      const script = scriptedFactory()
      script.set(A, false)
      const svc = yield* withService(configOf([A, B], check), script.factory)
      assert.isAtLeast(script.calls(A).length, 1, "probed at start")
      // Healthy until exactly the third failure, checked after every 10ms step.
      yield* untilCalls(script, A, 3, () => {
        assert.strictEqual(svc.endpoint(A).healthy, script.calls(A).length < 3, `after ${script.calls(A).length} failures`)
      })
      assert.isFalse(svc.endpoint(A).healthy)
      assert.isTrue(svc.endpoint(B).healthy)
      assert.deepStrictEqual(svc.checks.states().get(`app ${A}`), { healthy: false, streak: 0 })
      assert.deepStrictEqual(svc.checks.states().get(`app ${B}`), { healthy: true, streak: 0 })
      // Recovery: the 2nd consecutive success flips it back.
      script.set(A, true)
      yield* untilCalls(script, A, 5, () => {
        assert.strictEqual(svc.endpoint(A).healthy, script.calls(A).length >= 5, `after ${script.calls(A).length - 3} successes`)
      })
      assert.isTrue(svc.endpoint(A).healthy)
      // Probes stayed on the interval.
      assertJittered(gaps(script.calls(A)), 1000)
    }))

  it.effect("active checks passing again end an outlier ejection; a healthy endpoint's checks do not", () =>
    Effect.gen(function*() {
      const script = scriptedFactory()
      script.set(A, false)
      const svc = yield* withService(configOf([A, B], check), script.factory)
      // B is ejected (as outlier detection would) while its checks keep passing: it stays ejected.
      svc.endpoint(B).ejected = true
      yield* untilCalls(script, A, 3)
      assert.isFalse(svc.endpoint(A).healthy)
      assert.isTrue(svc.endpoint(B).ejected, "passing checks of an endpoint that never went unhealthy do not end its ejection")
      // A is ejected too, then recovers through its checks: the recovery ends the ejection.
      svc.endpoint(A).ejected = true
      script.set(A, true)
      yield* untilCalls(script, A, 4)
      assert.isTrue(svc.endpoint(A).ejected, "one success is not yet a recovery (healthy_threshold 2)")
      yield* untilCalls(script, A, 5)
      assert.isTrue(svc.endpoint(A).healthy)
      assert.isFalse(svc.endpoint(A).ejected)
    }))

  it.effect("upstreams without a health_check are not probed", () =>
    Effect.gen(function*() {
      const script = scriptedFactory()
      const svc = yield* withService(configOf([A], check, { upstreams: { other: { endpoints: [{ url: C }] } } }), script.factory)
      yield* TestClock.adjust(10_000)
      assert.strictEqual(script.calls(C).length, 0)
      assert.isTrue(svc.endpoint(C, "other").healthy)
      assert.isFalse(svc.checks.states().has(`other ${C}`))
    }))

  const makeUnhealthy = Effect.gen(function*() {
    const script = scriptedFactory()
    script.set(A, false)
    const svc = yield* withService(configOf([A, B], check), script.factory)
    yield* untilCalls(script, A, 3)
    assert.isFalse(svc.endpoint(A).healthy)
    return { script, svc }
  })

  it.effect("a config change that keeps the endpoint and its check keeps the state (no reset, no restart)", () =>
    Effect.gen(function*() {
      const { script, svc } = yield* makeUnhealthy
      const callsBefore = script.calls(A).length
      // Another route id, another upstream and another endpoint: A and its check are unchanged.
      yield* svc.reload(configOf([A, B, C], check, { routeId: "renamed", upstreams: { other: { endpoints: [{ url: C }] } } }))
      assert.isFalse(svc.endpoint(A).healthy, "reset to healthy by the reload")
      assert.deepStrictEqual(svc.checks.states().get(`app ${A}`), { healthy: false, streak: 0 })
      assert.strictEqual(script.made(A).length, 1, "A's check was restarted")
      assert.strictEqual(script.calls(A).length, callsBefore, "an extra probe ran on reload")
      // The new endpoint is checked from now on.
      assert.isAtLeast(script.calls(C).length, 1)
      // And the rise continues from the kept state: two successes.
      script.set(A, true)
      yield* untilCalls(script, A, callsBefore + 1)
      assert.isFalse(svc.endpoint(A).healthy)
      yield* untilCalls(script, A, callsBefore + 2)
      assert.isTrue(svc.endpoint(A).healthy)
    }))

  it.effect("a config change of the endpoint's weight keeps its state", () =>
    Effect.gen(function*() {
      const { script, svc } = yield* makeUnhealthy
      const callsBefore = script.calls(A).length
      yield* svc.reload(configOf([{ url: A, weight: 5 }, B], check))
      assert.strictEqual(svc.endpoint(A).weight, 5)
      assert.isFalse(svc.endpoint(A).healthy, "reset to healthy by the reload")
      assert.strictEqual(script.calls(A).length, callsBefore)
    }))

  it.effect("a config change of the upstream's pool settings keeps the endpoint's state", () =>
    Effect.gen(function*() {
      const { script, svc } = yield* makeUnhealthy
      const callsBefore = script.calls(A).length
      yield* svc.reload(configOf([A, B], check, { upstream: { pool: { connections: 8 } } }))
      assert.strictEqual(script.calls(A).length, callsBefore)
      assert.deepStrictEqual(svc.checks.states().get(`app ${A}`), { healthy: false, streak: 0 })
      assert.isFalse(svc.endpoint(A).healthy, "the new Endpoint object starts healthy although its check says unhealthy")
    }))

  it.effect("removing the endpoint stops its fiber; the others keep probing", () =>
    Effect.gen(function*() {
      const { script, svc } = yield* makeUnhealthy
      yield* svc.reload(configOf([B], check))
      const callsA = script.calls(A).length
      const callsB = script.calls(B).length
      yield* TestClock.adjust(20_000)
      assert.strictEqual(script.calls(A).length, callsA, "A is still probed after its removal")
      assert.isAtLeast(script.calls(B).length, callsB + Math.floor(20_000 / 1200))
      assert.isFalse(svc.checks.states().has(`app ${A}`))
      // Added back later, it starts afresh (healthy) with a new fiber.
      script.set(A, true)
      yield* svc.reload(configOf([A, B], check))
      assert.isTrue(svc.endpoint(A).healthy)
      assert.strictEqual(script.made(A).length, 2)
      assert.strictEqual(script.calls(A).length, callsA + 1, "probed at once when added back")
    }))

  it.effect("removing the upstream's health_check stops probing and the endpoints count as healthy again", () =>
    Effect.gen(function*() {
      const { script, svc } = yield* makeUnhealthy
      yield* svc.reload(configOf([A, B], undefined))
      const callsA = script.calls(A).length
      const callsB = script.calls(B).length
      yield* TestClock.adjust(20_000)
      assert.strictEqual(script.calls(A).length, callsA)
      assert.strictEqual(script.calls(B).length, callsB)
      assert.strictEqual(svc.checks.states().size, 0)
      assert.isUndefined(svc.upstreams.current().get("app")!.eligible, "no eligibility filter without checks")
      // Endpoint.healthy is documented as "always true without checks" (and shown by GET /upstreams).
      assert.isTrue(svc.endpoint(A).healthy, "A still reported unhealthy after its check was removed")
    }))

  it.effect("changing the check's interval restarts the fiber but keeps the state", () =>
    Effect.gen(function*() {
      const { script, svc } = yield* makeUnhealthy
      const callsBefore = script.calls(A).length
      const reloadAt = yield* Clock.currentTimeMillis
      script.set(A, true)
      yield* svc.reload(configOf([A, B], { ...check, interval: "5s" }))
      // A new fiber with the new check...
      assert.strictEqual(script.made(A).length, 2)
      assert.strictEqual(script.made(A)[1].check.interval, 5000)
      // ...that starts from the kept state: still unhealthy, not reset to healthy.
      assert.isFalse(svc.endpoint(A).healthy, "reset to healthy by the restart")
      // The new fiber probes at once (success 1 of 2), so A is still unhealthy.
      assert.strictEqual(script.calls(A).length, callsBefore + 1)
      assert.strictEqual(script.calls(A)[callsBefore], reloadAt)
      assert.isFalse(svc.endpoint(A).healthy)
      assert.deepStrictEqual(svc.checks.states().get(`app ${A}`), { healthy: false, streak: 1 })
      // The second success, on the new interval, flips it.
      yield* untilCalls(script, A, callsBefore + 2)
      assert.isTrue(svc.endpoint(A).healthy)
      // Only the new fiber probes, on the new interval: the old one is gone.
      yield* TestClock.adjust(30_000)
      assertJittered(gaps(script.calls(A).slice(callsBefore)), 5000)
      // B's check changed too (same upstream), so it was restarted as well.
      assert.strictEqual(script.made(B).length, 2)
    }))
})

describe("HealthChecks service between the two reconciles of a reload (TestClock)", () => {
  it.effect("a probe that ends while its upstream is already gone from Upstreams (the check not yet stopped) keeps the check alive", () =>
    Effect.gen(function*() {
      const script = scriptedFactory()
      const svc = yield* withService(configOf([A], check), script.factory)
      yield* untilCalls(script, A, 1)
      // Upstreams drop "app" (as a reload does first); the ConfigSource still has it, so the
      // check keeps running and its next probe publishes for an endpoint that is not there.
      yield* svc.upstreams.reconcile(decoded({
        servers: [{ name: "web", listen: "127.0.0.1:0", routes: [{ id: "all", upstream: "other" }] }],
        upstreams: { other: { endpoints: [{ url: B }] } }
      }))
      yield* untilCalls(script, A, 2)
      yield* untilCalls(script, A, 3)
      assert.deepStrictEqual(svc.checks.states().get(`app ${A}`), { healthy: true, streak: 0 })
    }))

  it.effect("the same while the upstream stays but the endpoint is gone", () =>
    Effect.gen(function*() {
      const script = scriptedFactory()
      const svc = yield* withService(configOf([A, B], check), script.factory)
      yield* untilCalls(script, A, 1)
      yield* svc.upstreams.reconcile(decoded(configOf([B], check)))
      yield* untilCalls(script, A, 2)
      yield* untilCalls(script, A, 3)
    }))
})
