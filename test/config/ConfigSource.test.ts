/**
 * ConfigSource: the SubscriptionRef every service follows. A value source, `publishConfig`, and
 * a file source: its first load, `reload` (SIGHUP, `POST /reload`), a rejected reload keeping
 * the running config, reloads one at a time, and the file watch (debounce on TestClock, same
 * content not reloaded). Reads of the file go through a wrapper of `readFile` so that a test can
 * hold one; every other read is the real one.
 */
import { assert, describe, it } from "@effect/vitest"
import { Clock, Context, Duration, Effect, Exit, Fiber, Layer, Logger, Metric, References, Result, Stream, SubscriptionRef } from "effect"
import { TestClock } from "effect/testing"
import { rmSync, watch, writeFileSync } from "node:fs"
import { join } from "node:path"
import { configFromValue, ConfigSource, publishConfig } from "../../src/config/ConfigSource.ts"
import type { Config } from "../../src/config/Schema.ts"
import { configReloads } from "../../src/telemetry/Metrics.ts"
import { tempDir } from "../support/liveGateway.ts"
import { vi } from "vitest"

const reads = vi.hoisted(() => ({
  /** Reads started. */
  count: 0,
  /** Reads whose content has been read. */
  done: 0,
  /** When set, the next read is held after reading the file until `release` resolves. */
  hold: undefined as undefined | { readonly read: () => void; readonly release: Promise<void> }
}))

vi.mock("node:fs/promises", async (importOriginal) => {
  const actual = await importOriginal<typeof import("node:fs/promises")>()
  const readFile = async (...args: Parameters<typeof actual.readFile>) => {
    reads.count++
    const hold = reads.hold
    reads.hold = undefined
    const content = await actual.readFile(...args)
    reads.done++
    if (hold !== undefined) {
      hold.read()
      await hold.release
    }
    return content
  }
  return { ...actual, readFile }
})

vi.mock("node:fs", async (importOriginal) => {
  const actual = await importOriginal<typeof import("node:fs")>()
  return { ...actual, watch: vi.fn(actual.watch) }
})

/** A config as YAML text (JSON is YAML): one server listening on `listen`, so versions differ. */
const configText = (listen: string, extra: Record<string, unknown> = {}) =>
  JSON.stringify({
    servers: [{ name: "web", listen, routes: [{ id: "r", upstream: "app", timeout: "5s" }] }],
    upstreams: { app: { endpoints: [{ url: "http://127.0.0.1:3000" }] } },
    ...extra
  }, null, 2) + "\n"

/** This text has a bad listen address at line 5, column 7. */
const BAD_LISTEN = configText("nope")

const listenOf = (config: Config) => config.servers[0].listen

const reloadCount = (result: "applied" | "rejected") =>
  Metric.value(Metric.withAttributes(configReloads, { result })).pipe(Effect.map((state) => state.count))

/** Real time, for waits on the filesystem while the TestClock stands still. */
const realSleep = (ms: number) => Effect.promise(() => new Promise<void>((resolve) => setTimeout(resolve, ms)))

/** Polls `check` in real time until it holds, for at most `ms`; fails the test otherwise. */
const until = (check: () => boolean, what: string, ms = 3_000) =>
  Effect.gen(function*() {
    for (let waited = 0; waited < ms; waited += 10) {
      if (check()) return
      yield* realSleep(10)
    }
    if (!check()) assert.fail(`timed out after ${ms} ms waiting until ${what}`)
  })

/** A Clock that records every sleep asked of it, then sleeps on `inner` (the TestClock in `it.effect`). */
const recordingClock = (inner: Clock.Clock, sleeps: Array<number>): Clock.Clock => ({
  currentTimeMillisUnsafe: () => inner.currentTimeMillisUnsafe(),
  currentTimeMillis: inner.currentTimeMillis,
  currentTimeNanosUnsafe: () => inner.currentTimeNanosUnsafe(),
  currentTimeNanos: inner.currentTimeNanos,
  monotonicTimeNanosUnsafe: () => inner.monotonicTimeNanosUnsafe(),
  monotonicTimeNanos: inner.monotonicTimeNanos,
  sleep: (duration) => {
    sleeps.push(Duration.toMillis(duration))
    return inner.sleep(duration)
  }
})

interface Started {
  readonly source: ConfigSource["Service"]
  /** Every value the config took, from the first (as `SubscriptionRef.changes` streams them). */
  readonly history: ReadonlyArray<Config>
  readonly logs: ReadonlyArray<{ readonly level: string; readonly message: string }>
  /** Every sleep the source asked of the clock (the watcher's debounce). */
  readonly sleeps: ReadonlyArray<number>
  /** Runs `effect` with the same log capture as the layer (for `reload`, run by the caller's fiber). */
  readonly logged: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
}

/** Builds a ConfigSource layer for the test's scope, capturing its log, its clock sleeps and its published values. */
const start = (layer: Layer.Layer<ConfigSource, unknown>) =>
  Effect.gen(function*() {
    const logs: Array<{ level: string; message: string }> = []
    const capture = Logger.make((options) => {
      const m = options.message
      logs.push({ level: options.logLevel, message: Array.isArray(m) ? m.map(String).join(" ") : String(m) })
    })
    const sleeps: Array<number> = []
    const clock = recordingClock(yield* Clock.Clock, sleeps)
    const logged = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
      effect.pipe(Effect.provide(Logger.layer([capture])), Effect.provideService(References.MinimumLogLevel, "Info"))
    const context = yield* Layer.build(layer).pipe(logged, Effect.provideService(Clock.Clock, clock))
    const source = Context.get(context, ConfigSource)
    const history: Array<Config> = []
    yield* SubscriptionRef.changes(source.config).pipe(
      Stream.runForEach((config) => Effect.sync(() => void history.push(config))),
      Effect.forkScoped
    )
    yield* until(() => history.length === 1, "the first value is streamed")
    return { source, history, logs, sleeps, logged } satisfies Started
  })

const buildError = (layer: Layer.Layer<ConfigSource, unknown>) =>
  Effect.gen(function*() {
    const exit = yield* Effect.exit(Layer.build(layer))
    if (Exit.isSuccess(exit)) return assert.fail("expected the layer to fail")
    const error = exit.cause.reasons.find((r) => r._tag === "Fail")
    return error === undefined ? assert.fail(`expected a failure, got ${String(exit.cause)}`) : (error.error as Error)
  })

/** A file source on `<tmp>/fibergate.yaml` holding `text`. */
const fileWith = (text: string) =>
  Effect.gen(function*() {
    const path = join(yield* tempDir, "fibergate.yaml")
    writeFileSync(path, text)
    return path
  })

/** Every test gets its own metric registry, so reload counts start at 0. */
const fresh = <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.provideService(effect, Metric.MetricRegistry, new Map())

const VALUE = {
  servers: [{ name: "web", listen: "127.0.0.1:8080", routes: [{ id: "r", upstream: "app", timeout: "5s" }] }],
  upstreams: { app: { endpoints: [{ url: "http://127.0.0.1:3000" }] } }
}
const BAD_VALUE = { ...VALUE, servers: [{ ...VALUE.servers[0], listen: "nope" }] }
const LISTEN_MESSAGE = "Expected a listen address such as 127.0.0.1:8080, :8080 or [::1]:8080"

describe("ConfigSource.layerValue", () => {
  it.effect("a config value is decoded (durations to milliseconds), named <value>, and reload gives it back", () =>
    fresh(Effect.gen(function*() {
      const { source } = yield* start(ConfigSource.layerValue(VALUE))
      assert.strictEqual(source.source, "<value>")
      const config = yield* SubscriptionRef.get(source.config)
      assert.strictEqual(config.servers[0].routes[0].timeout, 5000)
      assert.strictEqual(yield* source.reload, config)
    })))

  it.effect("an invalid value fails the layer with <value>: path: message", () =>
    Effect.gen(function*() {
      const error = yield* buildError(ConfigSource.layerValue(BAD_VALUE))
      assert.strictEqual(error.message, `<value>: servers[0].listen: ${LISTEN_MESSAGE}`)
    }))
})

describe("configFromValue", () => {
  it("decodes a value synchronously; a problem reads <value>: path: message", () => {
    assert.strictEqual(Result.getOrThrow(configFromValue(VALUE)).servers[0].routes[0].timeout, 5000)
    const result = configFromValue(BAD_VALUE)
    if (Result.isSuccess(result)) return assert.fail("expected a ConfigError")
    assert.strictEqual(result.failure.message, `<value>: servers[0].listen: ${LISTEN_MESSAGE}`)
  })
})

describe("publishConfig (PUT /config)", () => {
  it.effect("a valid value is published to every follower and counted as applied", () =>
    fresh(Effect.gen(function*() {
      const { history, source } = yield* start(ConfigSource.layerValue(VALUE))
      const next = { ...VALUE, servers: [{ ...VALUE.servers[0], listen: "127.0.0.1:9090" }] }
      const published = yield* publishConfig(source, next, "PUT /config")
      assert.strictEqual(listenOf(published), "127.0.0.1:9090")
      assert.strictEqual(listenOf(yield* SubscriptionRef.get(source.config)), "127.0.0.1:9090")
      yield* until(() => history.length === 2, "the follower sees the new config")
      assert.strictEqual(listenOf(history[1]), "127.0.0.1:9090")
      assert.strictEqual(yield* reloadCount("applied"), 1)
      assert.strictEqual(yield* reloadCount("rejected"), 0)
    })))

  it.effect("an invalid value is rejected naming its origin; the running config stays; counted as rejected", () =>
    fresh(Effect.gen(function*() {
      const { source } = yield* start(ConfigSource.layerValue(VALUE))
      const error = yield* Effect.flip(publishConfig(source, BAD_VALUE, "PUT /config"))
      assert.strictEqual(error.message, `PUT /config: servers[0].listen: ${LISTEN_MESSAGE}`)
      assert.strictEqual(listenOf(yield* SubscriptionRef.get(source.config)), "127.0.0.1:8080")
      assert.strictEqual(yield* reloadCount("rejected"), 1)
      assert.strictEqual(yield* reloadCount("applied"), 0)
    })))
})

describe("ConfigSource.layerFile: load and reload", () => {
  const unwatched = (path: string, env: Record<string, string | undefined> = {}) => ConfigSource.layerFile(path, env, { watch: false })

  it.effect("the file is loaded with FIBERGATE_* overrides from env; source is the path", () =>
    fresh(Effect.gen(function*() {
      const path = yield* fileWith(configText("127.0.0.1:8080"))
      const { source } = yield* start(unwatched(path, { FIBERGATE_WORKERS: "3", FIBERGATE_LOG__LEVEL: "debug" }))
      assert.strictEqual(source.source, path)
      const config = yield* SubscriptionRef.get(source.config)
      assert.strictEqual(listenOf(config), "127.0.0.1:8080")
      assert.strictEqual(config.workers, 3)
      assert.strictEqual(config.log?.level, "debug")
      assert.strictEqual(config.servers[0].routes[0].timeout, 5000)
    })))

  it.effect("a missing file fails the layer with file: Cannot read the file", () =>
    Effect.gen(function*() {
      const path = join(yield* tempDir, "absent.yaml")
      const error = yield* buildError(unwatched(path))
      assert.strictEqual(error.message, `${path}: Cannot read the file: ENOENT: no such file or directory, open '${path}'`)
    }))

  it.effect("an invalid file fails the layer with file:line:column: path: message", () =>
    Effect.gen(function*() {
      const path = yield* fileWith(BAD_LISTEN)
      const error = yield* buildError(unwatched(path))
      assert.strictEqual(error.message, `${path}:5:7: servers[0].listen: ${LISTEN_MESSAGE}`)
    }))

  it.effect("reload publishes the file's new content and counts it as applied", () =>
    fresh(Effect.gen(function*() {
      const path = yield* fileWith(configText("127.0.0.1:8080"))
      const { history, source } = yield* start(unwatched(path, { FIBERGATE_WORKERS: "3" }))
      writeFileSync(path, configText("127.0.0.1:9090"))
      const config = yield* source.reload
      assert.strictEqual(listenOf(config), "127.0.0.1:9090")
      assert.strictEqual(config.workers, 3, "the overrides apply to a reload too")
      assert.strictEqual(listenOf(yield* SubscriptionRef.get(source.config)), "127.0.0.1:9090")
      yield* until(() => history.length === 2, "the follower sees the new config")
      assert.strictEqual(yield* reloadCount("applied"), 1)
    })))

  it.effect("reload re-reads the file even when its content did not change", () =>
    fresh(Effect.gen(function*() {
      const path = yield* fileWith(configText("127.0.0.1:8080"))
      const { source } = yield* start(unwatched(path))
      const before = reads.count
      yield* source.reload
      yield* source.reload
      assert.strictEqual(reads.count - before, 2)
      assert.strictEqual(yield* reloadCount("applied"), 2)
    })))

  it.effect("a rejected reload keeps the running config, reports file:line:column, logs a warning, counts as rejected", () =>
    fresh(Effect.gen(function*() {
      const path = yield* fileWith(configText("127.0.0.1:8080"))
      const { history, logged, logs, source } = yield* start(unwatched(path))
      writeFileSync(path, BAD_LISTEN)
      const error = yield* Effect.flip(logged(source.reload))
      const expected = `${path}:5:7: servers[0].listen: ${LISTEN_MESSAGE}`
      assert.strictEqual(error.message, expected)
      assert.strictEqual(listenOf(yield* SubscriptionRef.get(source.config)), "127.0.0.1:8080")
      assert.deepStrictEqual(logs, [{ level: "Warn", message: `Config reload rejected, keeping the running config\n${expected}` }])
      assert.strictEqual(yield* reloadCount("rejected"), 1)
      assert.strictEqual(yield* reloadCount("applied"), 0)
      // Fixing the file and reloading again applies it.
      writeFileSync(path, configText("127.0.0.1:9090"))
      assert.strictEqual(listenOf(yield* source.reload), "127.0.0.1:9090")
      assert.strictEqual(yield* reloadCount("applied"), 1)
      assert.deepStrictEqual(history.map(listenOf), ["127.0.0.1:8080", "127.0.0.1:9090"])
    })))

  it.effect("a reload of a file that is gone is rejected with Cannot read the file, keeping the config", () =>
    fresh(Effect.gen(function*() {
      const path = yield* fileWith(configText("127.0.0.1:8080"))
      const { source } = yield* start(unwatched(path))
      rmSync(path)
      const error = yield* Effect.flip(source.reload)
      assert.strictEqual(error.message, `${path}: Cannot read the file: ENOENT: no such file or directory, open '${path}'`)
      assert.strictEqual(listenOf(yield* SubscriptionRef.get(source.config)), "127.0.0.1:8080")
      assert.strictEqual(yield* reloadCount("rejected"), 1)
    })))

  it.effect("reloads run one at a time: a second reload waits for the first, so the newest content is the one in force", () =>
    fresh(Effect.gen(function*() {
      const path = yield* fileWith(configText("127.0.0.1:8080"))
      const { history, source } = yield* start(unwatched(path))
      let read = () => {}
      let release = () => {}
      const firstRead = new Promise<void>((resolve) => (read = resolve))
      reads.hold = { read: () => read(), release: new Promise<void>((resolve) => (release = resolve)) }
      writeFileSync(path, configText("127.0.0.1:9001"))
      const first = yield* Effect.forkChild(source.reload)
      yield* Effect.promise(() => firstRead)
      // The first reload has read 9001 and is held before publishing it; the file changes again.
      writeFileSync(path, configText("127.0.0.1:9002"))
      const readsBefore = reads.count
      const second = yield* Effect.forkChild(source.reload)
      for (let i = 0; i < 20; i++) yield* Effect.yieldNow
      assert.strictEqual(reads.count, readsBefore, "the second reload read the file while the first was still running")
      release()
      assert.strictEqual(listenOf(yield* Fiber.join(first)), "127.0.0.1:9001")
      assert.strictEqual(listenOf(yield* Fiber.join(second)), "127.0.0.1:9002")
      assert.strictEqual(listenOf(yield* SubscriptionRef.get(source.config)), "127.0.0.1:9002")
      yield* until(() => history.length === 3, "the follower sees both reloads")
      assert.deepStrictEqual(history.map(listenOf), ["127.0.0.1:8080", "127.0.0.1:9001", "127.0.0.1:9002"])
    })))

  it.effect("watch: false opens no watch on the file's directory; the default does", () =>
    Effect.gen(function*() {
      const path = yield* fileWith(configText("127.0.0.1:8080"))
      const watches = vi.mocked(watch)
      const before = watches.mock.calls.length
      yield* Layer.build(unwatched(path))
      assert.strictEqual(watches.mock.calls.length, before)
      yield* Layer.build(ConfigSource.layerFile(path, {}))
      assert.strictEqual(watches.mock.calls.length, before + 1)
    }))
})

describe("ConfigSource.layerFile: following the file", () => {
  /** Waits until the watcher has seen a change and sleeps its debounce (the TestClock stands still meanwhile). */
  const debouncing = (started: Started, count: number) => until(() => started.sleeps.length >= count, "the watcher debounces a change")

  it.effect("a change is read once the file has been quiet for the debounce time, then logged and counted", () =>
    fresh(Effect.gen(function*() {
      const path = yield* fileWith(configText("127.0.0.1:8080"))
      const started = yield* start(ConfigSource.layerFile(path, {}, { debounce: "30 millis" }))
      const readsBefore = reads.count
      writeFileSync(path, configText("127.0.0.1:9090"))
      yield* debouncing(started, 1)
      assert.deepStrictEqual(started.sleeps, [30])
      yield* TestClock.adjust("29 millis")
      for (let i = 0; i < 20; i++) yield* Effect.yieldNow
      assert.strictEqual(reads.count, readsBefore, "the file was read before the debounce time passed")
      yield* TestClock.adjust("1 millis")
      yield* until(() => started.history.length === 2, "the change is applied")
      assert.strictEqual(listenOf(started.history[1]), "127.0.0.1:9090")
      yield* until(() => started.logs.length === 1, "the reload is logged")
      assert.deepStrictEqual(started.logs, [{ level: "Info", message: `config reloaded from ${path} (file changed; 1 server(s))` }])
      assert.strictEqual(yield* reloadCount("applied"), 1)
    })))

  it.effect("the default debounce time is 250 ms", () =>
    fresh(Effect.gen(function*() {
      const path = yield* fileWith(configText("127.0.0.1:8080"))
      const started = yield* start(ConfigSource.layerFile(path, {}))
      writeFileSync(path, configText("127.0.0.1:9090"))
      yield* debouncing(started, 1)
      assert.deepStrictEqual(started.sleeps, [250])
      yield* TestClock.adjust("250 millis")
      yield* until(() => started.history.length === 2, "the change is applied")
    })))

  it.effect("a change that leaves the content as it was is not reloaded", () =>
    fresh(Effect.gen(function*() {
      const text = configText("127.0.0.1:8080")
      const path = yield* fileWith(text)
      const started = yield* start(ConfigSource.layerFile(path, {}, { debounce: "30 millis" }))
      const readsBefore = reads.done
      writeFileSync(path, text)
      yield* debouncing(started, 1)
      yield* TestClock.adjust("30 millis")
      yield* until(() => reads.done === readsBefore + 1, "the watcher has read the file")
      // The debounce only sleeps again once that read is handled, so the next change comes after it.
      writeFileSync(path, configText("127.0.0.1:9090"))
      yield* debouncing(started, 2)
      yield* TestClock.adjust("30 millis")
      yield* until(() => started.history.length >= 2, "the real change is applied")
      assert.deepStrictEqual(started.history.map(listenOf), ["127.0.0.1:8080", "127.0.0.1:9090"])
      assert.strictEqual(yield* reloadCount("applied"), 1)
      assert.strictEqual(started.logs.filter((l) => l.message.startsWith("config reloaded")).length, 1)
    })))

  it.effect("a change to an invalid config is rejected with a warning and the running config stays; the next valid change applies", () =>
    fresh(Effect.gen(function*() {
      const path = yield* fileWith(configText("127.0.0.1:8080"))
      const started = yield* start(ConfigSource.layerFile(path, {}, { debounce: "30 millis" }))
      writeFileSync(path, BAD_LISTEN)
      yield* debouncing(started, 1)
      yield* TestClock.adjust("30 millis")
      yield* until(() => started.logs.length === 1, "the rejection is logged")
      assert.deepStrictEqual(started.logs, [{
        level: "Warn",
        message: `Config reload rejected, keeping the running config\n${path}:5:7: servers[0].listen: ${LISTEN_MESSAGE}`
      }])
      assert.strictEqual(yield* reloadCount("rejected"), 1)
      assert.strictEqual(listenOf(yield* SubscriptionRef.get(started.source.config)), "127.0.0.1:8080")
      writeFileSync(path, configText("127.0.0.1:9090"))
      yield* debouncing(started, 2)
      yield* TestClock.adjust("30 millis")
      yield* until(() => started.history.length === 2, "the valid change is applied")
      assert.strictEqual(listenOf(started.history[1]), "127.0.0.1:9090")
      assert.strictEqual(yield* reloadCount("applied"), 1)
    })))
})
