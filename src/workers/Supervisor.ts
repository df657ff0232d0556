/**
 * Keeps N worker processes running (DESIGN.md §4): one fiber per worker slot restarts a worker
 * that died with exponential backoff, resets the backoff once a worker has run long enough to
 * count as healthy, and gives up (failing the whole supervisor, so the primary exits non-zero)
 * when a slot crashes too often in a row. Time comes from Effect's Clock, so the policy is
 * tested with TestClock; the process-level parts are behind `WorkerSpawner`.
 */
import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Pull from "effect/Pull"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"

/** How a worker process ended. */
export interface WorkerExit {
  readonly code: number | null
  readonly signal: string | null
}

/** A running worker: `exited` completes when its process ends; `stop` asks it to drain and exit. */
export interface WorkerHandle {
  readonly id: number
  readonly pid: number | undefined
  readonly exited: Effect.Effect<WorkerExit>
  readonly stop: Effect.Effect<void>
  readonly signal: (signal: NodeJS.Signals) => void
}

/** Starts worker `slot`; the returned handle is live once the effect succeeds. */
export type WorkerSpawner = (slot: number) => Effect.Effect<WorkerHandle>

/** A slot crashed more than `max_restarts` times in a row. */
export class WorkerGaveUp extends Schema.TaggedError<WorkerGaveUp>()("WorkerGaveUp", {
  slot: Schema.Number,
  restarts: Schema.Number,
  message: Schema.String
}) {}

export interface SupervisorPolicy {
  /** First restart delay; doubles on each consecutive crash. */
  readonly backoffBase: Duration.Input
  /** Cap for the restart delay. */
  readonly backoffMax: Duration.Input
  /** Restarts per slot after consecutive crashes: crash number `maxRestarts + 1` in a row gives up. */
  readonly maxRestarts: number
  /** A worker that ran at least this long resets its slot's backoff and crash count. */
  readonly stableAfter: Duration.Input
}

/**
 * The policy of `fibergate run` (README "Multi-core"): 100 ms doubling up to 10 s, a worker that
 * ran 30 s resets it, and the 5th crash in a row (after 4 restarts) gives up.
 */
export const defaultPolicy: SupervisorPolicy = {
  backoffBase: "100 millis",
  backoffMax: "10 seconds",
  maxRestarts: 4,
  stableAfter: "30 seconds"
}

/** The restart schedule of one slot: capped exponential backoff, at most `maxRestarts` times. */
export const restartSchedule = (policy: SupervisorPolicy) => {
  const max = Duration.fromInputUnsafe(policy.backoffMax)
  return Schedule.max([
    Schedule.exponential(policy.backoffBase).pipe(
      Schedule.modifyDelay(({ duration }) => Effect.succeed(Duration.min(duration, max)))
    ),
    Schedule.recurs(policy.maxRestarts)
  ])
}

/** Events the supervisor reports, for logs and tests. */
export type SupervisorEvent =
  | { readonly _tag: "Started"; readonly slot: number; readonly pid: number | undefined }
  | { readonly _tag: "Exited"; readonly slot: number; readonly pid: number | undefined; readonly exit: WorkerExit; readonly uptimeMs: number }

const superviseSlot = (
  slot: number,
  spawn: WorkerSpawner,
  policy: SupervisorPolicy,
  onEvent: (event: SupervisorEvent) => Effect.Effect<void>,
  live: Set<WorkerHandle>
) =>
  Effect.gen(function*() {
    const stableMs = Duration.toMillis(Duration.fromInputUnsafe(policy.stableAfter))
    let step = yield* Schedule.toStepWithSleep(restartSchedule(policy))
    let crashes = 0
    for (;;) {
      const started = yield* Clock.currentTimeMillis
      const worker = yield* spawn(slot)
      live.add(worker)
      yield* onEvent({ _tag: "Started", slot, pid: worker.pid })
      // Forget the worker only once it has really exited: when the scope closes, this fiber is
      // interrupted first and the stop-all finalizer must still find the worker to stop it.
      const exit = yield* worker.exited.pipe(Effect.tap(() => Effect.sync(() => live.delete(worker))))
      const uptimeMs = (yield* Clock.currentTimeMillis) - started
      yield* onEvent({ _tag: "Exited", slot, pid: worker.pid, exit, uptimeMs })
      if (uptimeMs >= stableMs) {
        step = yield* Schedule.toStepWithSleep(restartSchedule(policy))
        crashes = 0
      }
      crashes++
      yield* step(exit).pipe(
        Pull.catchDone(() =>
          Effect.fail(new WorkerGaveUp({ slot, restarts: crashes - 1, message: `worker slot ${slot} crashed ${crashes} times in a row; giving up` }))
        )
      )
    }
  })

/**
 * Runs `count` supervised workers until interrupted (then stops them all and waits for them to
 * drain) or until a slot gives up (then fails with `WorkerGaveUp` after stopping the rest).
 * `signalAll` forwards a signal (SIGHUP for reload) to every live worker.
 */
export const supervise = Effect.fnUntraced(function*(options: {
  readonly count: number
  readonly spawn: WorkerSpawner
  readonly policy?: SupervisorPolicy
  readonly onEvent?: (event: SupervisorEvent) => Effect.Effect<void>
}): Effect.fn.Return<{ readonly signalAll: (signal: NodeJS.Signals) => void; readonly done: Effect.Effect<never, WorkerGaveUp> }, never, Scope.Scope> {
  const live = new Set<WorkerHandle>()
  const policy = options.policy ?? defaultPolicy
  const onEvent = options.onEvent ?? (() => Effect.void)
  yield* Effect.addFinalizer(() =>
    Effect.forEach([...live], (w) => w.stop, { concurrency: "unbounded", discard: true })
  )
  // The first slot to give up ends the supervisor; the others are stopped with its scope.
  const gaveUp = yield* Deferred.make<never, WorkerGaveUp>()
  yield* Effect.forEach(
    Array.from({ length: options.count }, (_, i) => i),
    (slot) =>
      superviseSlot(slot, options.spawn, policy, onEvent, live).pipe(
        Effect.catch((error) => Deferred.fail(gaveUp, error)),
        Effect.forkScoped
      ),
    { discard: true }
  )
  return {
    signalAll: (signal) => {
      for (const w of live) w.signal(signal)
    },
    done: Deferred.await(gaveUp)
  }
})
