/**
 * SIGHUP re-reads the config. The signal is delivered with `process.emit("SIGHUP")`, which runs
 * the listeners a real SIGHUP would run, without sending a signal: under the mutation runner
 * tests run in worker threads, where a real SIGHUP reaches the main thread, which has no
 * listener, and would end the process. The ConfigSource is a stand-in whose `reload` the test
 * scripts and observes.
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Layer, Logger, Queue, References, type Scope, SubscriptionRef } from "effect"
import { ConfigError } from "../../src/config/ConfigError.ts"
import { ConfigSource } from "../../src/config/ConfigSource.ts"
import { layerReloadOnSighup } from "../../src/config/ReloadOnSignal.ts"
import type { Config } from "../../src/config/Schema.ts"
import { decoded } from "../support/effects.ts"

const CONFIG: Config = decoded({
  servers: [
    { name: "a", listen: "127.0.0.1:8080", routes: [] },
    { name: "b", listen: "127.0.0.1:8081", routes: [] }
  ],
  upstreams: {}
})

const REJECTED = new ConfigError({ source: "gw.yaml", problems: [{ path: "workers", message: "Expected a number", line: 3, column: 1 }] })

interface Harness {
  /** One element per call of `reload`, when it starts. */
  readonly calls: Queue.Queue<number>
  readonly logs: ReadonlyArray<string>
  /** The most reloads that ran at the same time. */
  readonly maxInFlight: () => number
}

/**
 * Builds `layerReloadOnSighup` over a stand-in source for the test's scope. Call n of `reload`
 * does `script[n]` (default: succeed at once).
 */
const setup = (
  script: ReadonlyArray<Effect.Effect<Config, ConfigError>> = []
): Effect.Effect<Harness, never, Scope.Scope> =>
  Effect.gen(function*() {
    const calls = yield* Queue.unbounded<number>()
    const logs: Array<string> = []
    let n = 0
    let inFlight = 0
    let maxInFlight = 0
    const reload = Effect.suspend(() => {
      const i = n++
      inFlight++
      maxInFlight = Math.max(maxInFlight, inFlight)
      Queue.offerUnsafe(calls, i)
      return (script[i] ?? Effect.succeed(CONFIG)).pipe(Effect.ensuring(Effect.sync(() => void inFlight--)))
    })
    const source = Layer.effect(
      ConfigSource,
      Effect.map(SubscriptionRef.make(CONFIG), (config) => ConfigSource.of({ config, source: "gw.yaml", reload }))
    )
    const capture = Logger.make((options) => {
      const m = options.message
      logs.push(Array.isArray(m) ? m.map(String).join(" ") : String(m))
    })
    yield* Layer.build(layerReloadOnSighup.pipe(Layer.provide(source))).pipe(
      Effect.provide(Logger.layer([capture])),
      Effect.provideService(References.MinimumLogLevel, "Info")
    )
    return { calls, logs, maxInFlight: () => maxInFlight }
  })

const sighup = Effect.sync(() => void process.emit("SIGHUP", "SIGHUP"))

/** The next call of `reload`, or a test failure after 2 s. */
const nextCall = (harness: Harness) =>
  Queue.take(harness.calls).pipe(
    Effect.timeoutOrElse({ duration: "2 seconds", orElse: () => Effect.sync(() => assert.fail("no reload after SIGHUP")) })
  )

const untilLogged = (harness: Harness, line: string) =>
  Effect.gen(function*() {
    for (let i = 0; i < 200 && !harness.logs.includes(line); i++) yield* Effect.sleep("10 millis")
    assert.include(harness.logs, line)
  })

describe("reload on SIGHUP", () => {
  it.live("SIGHUP reloads the config and logs where from and how many servers", () =>
    Effect.gen(function*() {
      const harness = yield* setup()
      yield* sighup
      assert.strictEqual(yield* nextCall(harness), 0)
      yield* untilLogged(harness, "config reloaded from gw.yaml (2 server(s))")
    }))

  it.live("a rejected reload does not stop the next SIGHUP from reloading", () =>
    Effect.gen(function*() {
      const harness = yield* setup([Effect.fail(REJECTED)])
      yield* sighup
      assert.strictEqual(yield* nextCall(harness), 0)
      yield* sighup
      assert.strictEqual(yield* nextCall(harness), 1)
      yield* untilLogged(harness, "config reloaded from gw.yaml (2 server(s))")
      assert.deepStrictEqual(harness.logs, ["config reloaded from gw.yaml (2 server(s))"])
    }))

  it.live("a SIGHUP during a reload is queued: it reloads once the running reload is done, never alongside it", () =>
    Effect.gen(function*() {
      const done = yield* Deferred.make<void>()
      const harness = yield* setup([Effect.as(Deferred.await(done), CONFIG)])
      yield* sighup
      assert.strictEqual(yield* nextCall(harness), 0)
      yield* sighup
      yield* Deferred.succeed(done, undefined)
      assert.strictEqual(yield* nextCall(harness), 1)
      assert.strictEqual(harness.maxInFlight(), 1)
    }))

  it.live("the SIGHUP listener is installed for the life of the layer and removed with it", () =>
    Effect.gen(function*() {
      const before = process.listenerCount("SIGHUP")
      yield* Effect.scoped(Effect.gen(function*() {
        yield* setup()
        assert.strictEqual(process.listenerCount("SIGHUP"), before + 1)
      }))
      assert.strictEqual(process.listenerCount("SIGHUP"), before)
    }))
})
