/**
 * The worker supervisor's restart policy as a state machine: an in-memory spawner stands in for
 * processes (each worker's exit is a Deferred the test completes) and TestClock stands in for
 * time, so every delay is observed exactly and nothing real is spawned or slept.
 */
import { assert, describe, it } from "@effect/vitest"
import { Cause, Clock, Deferred, Effect, Exit, Fiber, Scope } from "effect"
import { TestClock } from "effect/testing"
import * as fc from "fast-check"
import { Duration } from "effect"
import {
  defaultPolicy,
  supervise,
  type SupervisorEvent,
  type SupervisorPolicy,
  type WorkerExit,
  WorkerGaveUp,
  type WorkerHandle
} from "../../src/workers/Supervisor.ts"
import { settle } from "../support/effects.ts"

/** One worker the fake spawner started. */
interface FakeWorker {
  readonly slot: number
  readonly pid: number
  readonly spawnedAt: number
  readonly exit: Deferred.Deferred<WorkerExit>
  stops: number
  readonly signals: Array<NodeJS.Signals>
}

/** An in-memory `WorkerSpawner` that records every spawn (with its TestClock time), stop and signal. */
const makeFakeSpawner = () => {
  const workers: Array<FakeWorker> = []
  let nextPid = 1000
  const spawn = (slot: number) =>
    Effect.gen(function*() {
      const spawnedAt = yield* Clock.currentTimeMillis
      const worker: FakeWorker = { slot, pid: nextPid++, spawnedAt, exit: Deferred.makeUnsafe<WorkerExit>(), stops: 0, signals: [] }
      workers.push(worker)
      const handle: WorkerHandle = {
        id: worker.pid,
        pid: worker.pid,
        exited: Deferred.await(worker.exit),
        // A stopped worker drains at once and exits by SIGTERM.
        stop: Effect.sync(() => void worker.stops++).pipe(
          Effect.andThen(Deferred.succeed(worker.exit, { code: null, signal: "SIGTERM" })),
          Effect.asVoid
        ),
        signal: (signal) => void worker.signals.push(signal)
      }
      return handle
    })
  const ofSlot = (slot: number) => workers.filter((w) => w.slot === slot)
  const latest = (slot: number): FakeWorker => {
    const all = ofSlot(slot)
    assert.isAbove(all.length, 0, `no worker was ever spawned in slot ${slot}`)
    return all[all.length - 1]
  }
  const isLive = (w: FakeWorker) => !Deferred.isDoneUnsafe(w.exit)
  return { workers, spawn, ofSlot, latest, isLive }
}


/** Crashes the current worker of `slot` (exit code 1) and lets the supervisor react. */
const crash = (fake: ReturnType<typeof makeFakeSpawner>, slot: number) =>
  Effect.gen(function*() {
    const worker = fake.latest(slot)
    assert.isTrue(fake.isLive(worker), `the current worker of slot ${slot} has already exited`)
    yield* Deferred.succeed(worker.exit, { code: 1, signal: null })
    yield* settle
    return yield* Clock.currentTimeMillis
  })

const policy = (overrides: Partial<SupervisorPolicy> = {}): SupervisorPolicy => ({
  backoffBase: "100 millis",
  backoffMax: "1 second",
  maxRestarts: 5,
  stableAfter: "30 seconds",
  ...overrides
})

/**
 * Starts a supervisor in its own scope (so a test can close it), plus a fiber watching `done`.
 */
const start = (options: { readonly count: number; readonly policy: SupervisorPolicy | undefined }) =>
  Effect.gen(function*() {
    const fake = makeFakeSpawner()
    const events: Array<SupervisorEvent> = []
    const scope = yield* Scope.make()
    const supervisor = yield* supervise({
      count: options.count,
      spawn: fake.spawn,
      ...(options.policy === undefined ? {} : { policy: options.policy }),
      onEvent: (event) => Effect.sync(() => void events.push(event))
    }).pipe(Scope.provide(scope))
    const done = yield* Effect.forkChild(Effect.exit(supervisor.done))
    yield* settle
    return { fake, events, scope, supervisor, done }
  })

/** The delay between the last exit of `slot` (at `exitAt`) and its next spawn, probing with TestClock: undefined if none within `horizon`. */
const nextSpawnDelay = (fake: ReturnType<typeof makeFakeSpawner>, slot: number, exitAt: number, expected: number, horizon: number) =>
  Effect.gen(function*() {
    const before = fake.ofSlot(slot).length
    const spawnedSince = () => fake.ofSlot(slot).length > before
    // Just before the expected delay, then exactly at it, then anywhere up to the horizon.
    if (expected > 1) yield* TestClock.adjust(expected - 1)
    if (!spawnedSince()) yield* TestClock.adjust(expected > 1 ? 1 : expected)
    if (!spawnedSince()) yield* TestClock.adjust(horizon)
    yield* settle
    return spawnedSince() ? fake.latest(slot).spawnedAt - exitAt : undefined
  })

describe("supervise (restart policy, TestClock)", () => {
  it.effect("starts one worker per slot and reports Started events", () =>
    Effect.gen(function*() {
      const { fake, events, scope } = yield* start({ count: 3, policy: policy() })
      assert.deepStrictEqual(fake.workers.map((w) => w.slot).sort(), [0, 1, 2])
      assert.deepStrictEqual(events.filter((e) => e._tag === "Started").map((e) => e.slot).sort(), [0, 1, 2])
      yield* Scope.close(scope, Exit.void)
    }))

  it.effect("a crashed worker is restarted after backoffBase, not before", () =>
    Effect.gen(function*() {
      const { fake, events, scope } = yield* start({ count: 1, policy: policy({ backoffBase: "250 millis" }) })
      yield* TestClock.adjust(1_000)
      const exitAt = yield* crash(fake, 0)
      const exited = events.find((e) => e._tag === "Exited")
      assert.isDefined(exited)
      assert.deepStrictEqual(exited, { _tag: "Exited", slot: 0, pid: fake.workers[0].pid, exit: { code: 1, signal: null }, uptimeMs: 1_000 })
      yield* TestClock.adjust(249)
      assert.strictEqual(fake.ofSlot(0).length, 1, "restarted before backoffBase")
      yield* TestClock.adjust(1)
      assert.strictEqual(fake.ofSlot(0).length, 2, "not restarted at backoffBase")
      assert.strictEqual(fake.latest(0).spawnedAt - exitAt, 250)
      yield* Scope.close(scope, Exit.void)
    }))

  it.effect("consecutive crashes back off exponentially (base, 2·base, 4·base …) capped at backoffMax", () =>
    Effect.gen(function*() {
      const { fake, scope } = yield* start({
        count: 1,
        policy: policy({ backoffBase: "100 millis", backoffMax: "1 second", maxRestarts: 10, stableAfter: "1 minute" })
      })
      const delays: Array<number | undefined> = []
      for (let i = 0; i < 7; i++) {
        yield* TestClock.adjust(50)
        const exitAt = yield* crash(fake, 0)
        const expected = Math.min(100 * 2 ** i, 1_000)
        delays.push(yield* nextSpawnDelay(fake, 0, exitAt, expected, 60_000))
      }
      assert.deepStrictEqual(delays, [100, 200, 400, 800, 1_000, 1_000, 1_000])
      yield* Scope.close(scope, Exit.void)
    }))

  it.effect("a worker that ran at least stableAfter resets the backoff to base and the crash count", () =>
    Effect.gen(function*() {
      const { fake, done, scope } = yield* start({
        count: 1,
        policy: policy({ backoffBase: "100 millis", backoffMax: "10 seconds", maxRestarts: 3, stableAfter: "5 seconds" })
      })
      // Three quick crashes: 100, 200, 400 (the crash budget of 3 is used up).
      for (const expected of [100, 200, 400]) {
        yield* TestClock.adjust(10)
        const exitAt = yield* crash(fake, 0)
        assert.strictEqual(yield* nextSpawnDelay(fake, 0, exitAt, expected, 60_000), expected)
      }
      // This one runs exactly stableAfter: its crash restarts after base again, and does not give up.
      yield* TestClock.adjust(5_000)
      let exitAt = yield* crash(fake, 0)
      assert.isUndefined(done.pollUnsafe(), "gave up although the worker had been stable")
      assert.strictEqual(yield* nextSpawnDelay(fake, 0, exitAt, 100, 60_000), 100)
      // And the count restarted: two more quick crashes are tolerated (200, 400) …
      for (const expected of [200, 400]) {
        yield* TestClock.adjust(10)
        exitAt = yield* crash(fake, 0)
        assert.isUndefined(done.pollUnsafe())
        assert.strictEqual(yield* nextSpawnDelay(fake, 0, exitAt, expected, 60_000), expected)
      }
      // … and the fourth in a row gives up.
      yield* TestClock.adjust(10)
      yield* crash(fake, 0)
      const exit = done.pollUnsafe()
      assert.isDefined(exit)
      assert.isTrue(Exit.isSuccess(exit!) && Exit.isFailure(exit.value))
      yield* Scope.close(scope, Exit.void)
    }))

  it.effect("a worker that ran just under stableAfter does not reset the backoff", () =>
    Effect.gen(function*() {
      const { fake, scope } = yield* start({
        count: 1,
        policy: policy({ backoffBase: "100 millis", backoffMax: "10 seconds", maxRestarts: 5, stableAfter: "5 seconds" })
      })
      yield* TestClock.adjust(10)
      let exitAt = yield* crash(fake, 0)
      assert.strictEqual(yield* nextSpawnDelay(fake, 0, exitAt, 100, 60_000), 100)
      yield* TestClock.adjust(4_999)
      exitAt = yield* crash(fake, 0)
      assert.strictEqual(yield* nextSpawnDelay(fake, 0, exitAt, 200, 60_000), 200)
      yield* Scope.close(scope, Exit.void)
    }))

  it.effect("after maxRestarts restarts the next crash fails done with WorkerGaveUp for that slot; the other slots are stopped with the scope", () =>
    Effect.gen(function*() {
      const { fake, done, scope } = yield* start({
        count: 3,
        policy: policy({ backoffBase: "100 millis", backoffMax: "1 second", maxRestarts: 2, stableAfter: "1 minute" })
      })
      // Slot 1 crashes; restarts 1 and 2 are allowed …
      for (const expected of [100, 200]) {
        yield* TestClock.adjust(10)
        const exitAt = yield* crash(fake, 1)
        assert.isUndefined(done.pollUnsafe(), "gave up too early")
        assert.strictEqual(yield* nextSpawnDelay(fake, 1, exitAt, expected, 60_000), expected)
      }
      // … the third crash in a row is one too many.
      yield* TestClock.adjust(10)
      yield* crash(fake, 1)
      const exit = done.pollUnsafe()
      assert.isDefined(exit, "did not give up")
      assert.isTrue(Exit.isSuccess(exit!))
      const inner = (exit as Exit.Success<Exit.Exit<never, WorkerGaveUp>>).value
      assert.isTrue(Exit.isFailure(inner))
      const error = Cause.squash((inner as Exit.Failure<never, WorkerGaveUp>).cause)
      assert.instanceOf(error, WorkerGaveUp)
      assert.strictEqual((error as WorkerGaveUp).slot, 1)
      assert.strictEqual((error as WorkerGaveUp).restarts, 2)
      assert.include((error as WorkerGaveUp).message, "slot 1")
      // The slot is not restarted again.
      yield* TestClock.adjust(60_000)
      assert.strictEqual(fake.ofSlot(1).length, 3)
      // Slots 0 and 2 still run their first worker; closing the scope stops them.
      const others = [fake.latest(0), fake.latest(2)]
      assert.deepStrictEqual(others.map((w) => fake.isLive(w)), [true, true])
      yield* Scope.close(scope, Exit.void)
      assert.deepStrictEqual(others.map((w) => w.stops), [1, 1], "the other slots' workers were not stopped")
      assert.deepStrictEqual(others.map((w) => fake.isLive(w)), [false, false])
    }))

  it.effect("closing the scope calls stop on every live worker and spawns no more", () =>
    Effect.gen(function*() {
      const { fake, scope } = yield* start({ count: 3, policy: policy() })
      // Slot 2 is in the middle of a backoff when the scope closes.
      yield* TestClock.adjust(10)
      yield* crash(fake, 2)
      const live = fake.workers.filter(fake.isLive)
      assert.deepStrictEqual(live.map((w) => w.slot).sort(), [0, 1])
      yield* Scope.close(scope, Exit.void)
      assert.deepStrictEqual(live.map((w) => w.stops), [1, 1], "live workers were not stopped")
      // The crashed worker is not stopped again, and nothing is respawned after the close.
      assert.strictEqual(fake.latest(2).stops, 0)
      yield* TestClock.adjust(60_000)
      assert.strictEqual(fake.workers.length, 3)
    }))

  it.effect("interrupting the fiber that owns the scope stops every live worker", () =>
    Effect.gen(function*() {
      const fake = makeFakeSpawner()
      const fiber = yield* Effect.forkChild(
        Effect.scoped(
          supervise({ count: 2, spawn: fake.spawn, policy: policy() }).pipe(Effect.flatMap((s) => s.done))
        )
      )
      yield* settle
      assert.strictEqual(fake.workers.length, 2)
      yield* Fiber.interrupt(fiber)
      assert.deepStrictEqual(fake.workers.map((w) => w.stops), [1, 1], "live workers were not stopped")
    }))

  it.effect("signalAll reaches every live worker (and only live ones)", () =>
    Effect.gen(function*() {
      const { fake, supervisor, scope } = yield* start({ count: 3, policy: policy({ backoffBase: "100 millis" }) })
      supervisor.signalAll("SIGHUP")
      assert.deepStrictEqual(fake.workers.map((w) => w.signals), [["SIGHUP"], ["SIGHUP"], ["SIGHUP"]])
      // Slot 1 crashes: while it backs off, only slots 0 and 2 are live.
      yield* TestClock.adjust(10)
      const dead = fake.latest(1)
      yield* crash(fake, 1)
      supervisor.signalAll("SIGUSR2")
      assert.deepStrictEqual(dead.signals, ["SIGHUP"])
      assert.deepStrictEqual(fake.latest(0).signals, ["SIGHUP", "SIGUSR2"])
      assert.deepStrictEqual(fake.latest(2).signals, ["SIGHUP", "SIGUSR2"])
      // Once restarted, the new worker of slot 1 is reached too.
      yield* TestClock.adjust(100)
      assert.strictEqual(fake.ofSlot(1).length, 2)
      supervisor.signalAll("SIGHUP")
      assert.deepStrictEqual(fake.latest(1).signals, ["SIGHUP"])
      assert.deepStrictEqual(fake.latest(0).signals, ["SIGHUP", "SIGUSR2", "SIGHUP"])
      yield* Scope.close(scope, Exit.void)
    }))
})

/** The error `done` failed with, or undefined while it has not. */
const gaveUp = (done: Fiber.Fiber<Exit.Exit<never, WorkerGaveUp>>) => {
  const exit = done.pollUnsafe()
  if (exit === undefined) return undefined
  assert.isTrue(Exit.isSuccess(exit))
  const inner = (exit as Exit.Success<Exit.Exit<never, WorkerGaveUp>>).value
  assert.isTrue(Exit.isFailure(inner), "done succeeded")
  const error = Cause.squash((inner as Exit.Failure<never, WorkerGaveUp>).cause)
  assert.instanceOf(error, WorkerGaveUp)
  return error as WorkerGaveUp
}

describe("supervise with no policy given: the defaults of fibergate run (README \"Multi-core\")", () => {
  it("defaultPolicy is 100 ms doubling up to 10 s, stable after 30 s, 4 restarts (the 5th crash in a row gives up)", () => {
    const ms = (d: Duration.Input) => Duration.toMillis(Duration.fromInputUnsafe(d))
    assert.deepStrictEqual(
      { base: ms(defaultPolicy.backoffBase), max: ms(defaultPolicy.backoffMax), stable: ms(defaultPolicy.stableAfter), restarts: defaultPolicy.maxRestarts },
      { base: 100, max: 10_000, stable: 30_000, restarts: 4 }
    )
  })

  it.effect("crashes in a row restart after 100, 200, 400, 800 ms; the 5th crash in a row gives up and nothing restarts", () =>
    Effect.gen(function*() {
      const { fake, done, scope } = yield* start({ count: 2, policy: undefined })
      const delays: Array<number | undefined> = []
      for (const expected of [100, 200, 400, 800]) {
        yield* TestClock.adjust(10)
        const exitAt = yield* crash(fake, 0)
        assert.isUndefined(gaveUp(done), `gave up after ${delays.length + 1} crashes`)
        delays.push(yield* nextSpawnDelay(fake, 0, exitAt, expected, 60_000))
      }
      assert.deepStrictEqual(delays, [100, 200, 400, 800])
      yield* TestClock.adjust(10)
      yield* crash(fake, 0)
      const error = gaveUp(done)
      assert.isDefined(error, "the 5th crash in a row did not give up")
      assert.deepStrictEqual([error!.slot, error!.restarts, error!.message], [0, 4, "worker slot 0 crashed 5 times in a row; giving up"])
      yield* TestClock.adjust(60_000)
      assert.strictEqual(fake.ofSlot(0).length, 5, "a slot that gave up was restarted")
      // The other slot is stopped with the scope (runPrimary's), not left running.
      const other = fake.latest(1)
      yield* Scope.close(scope, Exit.void)
      assert.deepStrictEqual([other.stops, fake.isLive(other)], [1, false])
    }))

  it.effect("a worker that ran 30 s resets the backoff to 100 ms and the count; one that ran 29.999 s does not", () =>
    Effect.gen(function*() {
      const { fake, done, scope } = yield* start({ count: 1, policy: undefined })
      for (const expected of [100, 200, 400]) {
        yield* TestClock.adjust(10)
        const exitAt = yield* crash(fake, 0)
        assert.strictEqual(yield* nextSpawnDelay(fake, 0, exitAt, expected, 60_000), expected)
      }
      // Just under 30 s: the 4th crash in a row, backoff keeps doubling.
      yield* TestClock.adjust(29_999)
      let exitAt = yield* crash(fake, 0)
      assert.strictEqual(yield* nextSpawnDelay(fake, 0, exitAt, 800, 60_000), 800)
      // Exactly 30 s: this crash is the first of a new run (100 ms), not the 5th in a row.
      yield* TestClock.adjust(30_000)
      exitAt = yield* crash(fake, 0)
      assert.isUndefined(gaveUp(done), "a worker that ran 30 s counted as a crash in a row")
      assert.strictEqual(yield* nextSpawnDelay(fake, 0, exitAt, 100, 60_000), 100)
      for (const expected of [200, 400, 800]) {
        yield* TestClock.adjust(10)
        exitAt = yield* crash(fake, 0)
        assert.isUndefined(gaveUp(done))
        assert.strictEqual(yield* nextSpawnDelay(fake, 0, exitAt, expected, 60_000), expected)
      }
      yield* TestClock.adjust(10)
      yield* crash(fake, 0)
      assert.strictEqual(gaveUp(done)?.restarts, 4)
      yield* Scope.close(scope, Exit.void)
    }))

  it.effect("the default backoff stops doubling at 10 s (with more restarts allowed than the default's 4)", () =>
    Effect.gen(function*() {
      const { fake, scope } = yield* start({ count: 1, policy: { ...defaultPolicy, maxRestarts: 9 } })
      const delays: Array<number | undefined> = []
      for (let i = 0; i < 9; i++) {
        yield* TestClock.adjust(10)
        const exitAt = yield* crash(fake, 0)
        delays.push(yield* nextSpawnDelay(fake, 0, exitAt, Math.min(100 * 2 ** i, 10_000), 60_000))
      }
      assert.deepStrictEqual(delays, [100, 200, 400, 800, 1_600, 3_200, 6_400, 10_000, 10_000])
      yield* Scope.close(scope, Exit.void)
    }))
})

/** What the model says happens after one crash. */
type Step =
  | { readonly _tag: "Restart"; readonly delay: number }
  | { readonly _tag: "GiveUp"; readonly restarts: number }

/** The model: k consecutive crashes since the last stable run; delay min(base·2^(k-1), max); give up once k > maxRestarts. */
const model = (p: { base: number; max: number; maxRestarts: number; stable: number }, uptimes: ReadonlyArray<number>) => {
  const steps: Array<Step> = []
  let k = 0
  for (const uptime of uptimes) {
    k = uptime >= p.stable ? 1 : k + 1
    if (k > p.maxRestarts) {
      steps.push({ _tag: "GiveUp", restarts: k - 1 })
      break
    }
    steps.push({ _tag: "Restart", delay: Math.min(p.base * 2 ** (k - 1), p.max) })
  }
  return steps
}

const policyArb = fc
  .record({
    base: fc.integer({ min: 10, max: 500 }),
    extra: fc.integer({ min: 0, max: 20_000 }),
    maxRestarts: fc.integer({ min: 1, max: 6 }),
    stable: fc.integer({ min: 1, max: 60_000 })
  })
  .map(({ base, extra, maxRestarts, stable }) => ({ base, max: base + extra, maxRestarts, stable }))

const uptimeArb = (stable: number) =>
  fc.oneof(
    { arbitrary: fc.integer({ min: 0, max: Math.max(0, stable - 1) }), weight: 6 },
    { arbitrary: fc.constantFrom(Math.max(0, stable - 1), stable), weight: 1 },
    { arbitrary: fc.integer({ min: stable, max: stable * 3 }), weight: 2 }
  )

const scenarioArb = policyArb.chain((p) => fc.tuple(fc.constant(p), fc.array(uptimeArb(p.stable), { minLength: 1, maxLength: 12 })))

/** Runs one scenario against the real supervisor and returns what it observed, in the model's terms. */
const observe = (p: { base: number; max: number; maxRestarts: number; stable: number }, uptimes: ReadonlyArray<number>) =>
  Effect.gen(function*() {
    const expected = model(p, uptimes)
    const { fake, done, scope } = yield* start({
      count: 1,
      policy: { backoffBase: p.base, backoffMax: p.max, maxRestarts: p.maxRestarts, stableAfter: p.stable }
    })
    const steps: Array<Step | { readonly _tag: "Unexpected"; readonly what: string }> = []
    for (let i = 0; i < uptimes.length; i++) {
      yield* TestClock.adjust(uptimes[i])
      const exitAt = yield* crash(fake, 0)
      const exit = done.pollUnsafe()
      if (exit !== undefined) {
        const inner = Exit.isSuccess(exit) ? exit.value : undefined
        const error = inner !== undefined && Exit.isFailure(inner) ? Cause.squash(inner.cause) : undefined
        if (error instanceof WorkerGaveUp && error.slot === 0) {
          steps.push({ _tag: "GiveUp", restarts: error.restarts })
          // Nothing is respawned after giving up.
          yield* TestClock.adjust(p.max * 2 + 1)
          if (fake.ofSlot(0).length !== i + 1) steps.push({ _tag: "Unexpected", what: "respawned after giving up" })
        } else {
          steps.push({ _tag: "Unexpected", what: `done ended with ${String(exit)}` })
        }
        break
      }
      const modelled = expected[i]
      const guess = modelled?._tag === "Restart" ? modelled.delay : p.base
      const delay = yield* nextSpawnDelay(fake, 0, exitAt, guess, p.max * 2 + 1)
      if (delay === undefined) {
        steps.push({ _tag: "Unexpected", what: "neither restarted nor gave up" })
        break
      }
      steps.push({ _tag: "Restart", delay })
    }
    yield* Scope.close(scope, Exit.void)
    return { expected, steps }
  })

describe("supervise (property: matches the backoff model)", () => {
  it("restart delays and giving up match the model for random policies and uptimes", async () => {
    await fc.assert(
      fc.asyncProperty(scenarioArb, async ([p, uptimes]) => {
        const { expected, steps } = await Effect.runPromise(observe(p, uptimes).pipe(Effect.provide(TestClock.layer())))
        assert.deepStrictEqual(steps, expected, `policy ${JSON.stringify(p)}, uptimes ${JSON.stringify(uptimes)}`)
      }),
      { numRuns: 100 }
    )
  })
})
