/**
 * Where the running config lives: a SubscriptionRef that every service reads or follows.
 * A new value is published only after it validates, so a bad reload leaves the last good
 * config in force. A file source also follows its file (see `FileWatch.ts`).
 */
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Result from "effect/Result"
import * as Semaphore from "effect/Semaphore"
import * as SubscriptionRef from "effect/SubscriptionRef"
import { createHash } from "node:crypto"
import { readFile } from "node:fs/promises"
import { configReloads } from "../telemetry/Metrics.ts"
import { ConfigError } from "./ConfigError.ts"
import { ConfigChecks, type ConfigCheck } from "./ConfigChecks.ts"
import { decodeConfig, parseConfigText } from "./ConfigLoader.ts"
import { debounceChanges, DEFAULT_DEBOUNCE, watchFileChanges } from "./FileWatch.ts"
import type { Config } from "./Schema.ts"

const applied = Metric.withAttributes(configReloads, { result: "applied" })
const rejected = Metric.withAttributes(configReloads, { result: "rejected" })
/** Counts an attempt by its outcome; `undefined` is a reload skipped as unnecessary, not counted. */
const countReload = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  effect.pipe(
    Effect.tap((config) => (config === undefined ? Effect.void : Metric.update(applied, 1))),
    Effect.tapError(() => Metric.update(rejected, 1))
  )
const warnRejected = <A, R>(effect: Effect.Effect<A, ConfigError, R>) =>
  effect.pipe(Effect.tapError((error) => Effect.logWarning(`Config reload rejected, keeping the running config\n${error.message}`)))

const readText = (path: string) =>
  Effect.tryPromise({
    try: () => readFile(path, "utf8"),
    catch: (e) => new ConfigError({ source: path, problems: [{ path: "", message: `Cannot read the file: ${(e as Error).message}` }] })
  })

const digest = (text: string): string => createHash("sha256").update(text).digest("hex")

/** How a file source follows its file. */
export interface FileSourceOptions {
  /**
   * Reload when the file changes (default true). SIGHUP and the admin API's `POST /reload`
   * re-read the file either way.
   */
  readonly watch?: boolean | undefined
  /** How long the file must stay quiet after a change before it is read (default 250 ms). */
  readonly debounce?: Duration.Input | undefined
}

export class ConfigSource extends Context.Service<ConfigSource, {
  /** The config in force; `SubscriptionRef.changes` streams every accepted update. */
  readonly config: SubscriptionRef.SubscriptionRef<Config>
  /** A name for where the config comes from (a file path, or `<value>`). */
  readonly source: string
  /** Re-reads the source; on success publishes the new config, on failure keeps the old one. */
  readonly reload: Effect.Effect<Config, ConfigError>
  /** The checks beyond the Schema a config given to `publishConfig` must also pass. */
  readonly checks?: ReadonlyArray<ConfigCheck> | undefined
}>()("fibergate/config/ConfigSource") {
  /**
   * A config given as a value (as a library user would): decoded like a file, durations as
   * strings. `reload` re-publishes the same value.
   *
   * @example
   * ConfigSource.layerValue({ servers: [...], upstreams: { ... } })
   */
  static layerValue(value: unknown): Layer.Layer<ConfigSource, ConfigError> {
    return Layer.effect(
      ConfigSource,
      Effect.gen(function*() {
        const checks = yield* ConfigChecks
        const config = yield* Effect.fromResult(decodeConfig(value, "<value>", { checks }))
        const ref = yield* SubscriptionRef.make(config)
        return ConfigSource.of({ config: ref, source: "<value>", reload: Effect.succeed(config), checks })
      })
    )
  }

  /**
   * A config read from a YAML file, with `FIBERGATE_*` overrides from `env`. The file is
   * followed: a change is read once the file has been quiet for `debounce`, and published if
   * it validates; a file whose content did not change (a `touch`, an unchanged save) is not
   * reloaded. `reload` (SIGHUP, `POST /reload`) always re-reads it. Reloads run one at a time.
   *
   * @example
   * ConfigSource.layerFile("config/fibergate.yaml", process.env, { debounce: "500 millis" })
   * ConfigSource.layerFile("config/fibergate.yaml", process.env, { watch: false })
   */
  static layerFile(
    path: string,
    env: Record<string, string | undefined> = process.env,
    options: FileSourceOptions = {}
  ): Layer.Layer<ConfigSource, ConfigError> {
    return Layer.effect(
      ConfigSource,
      Effect.gen(function*() {
        // Watching starts before the first read, so no change can slip in between.
        const checks = yield* ConfigChecks
        const changes = options.watch === false ? undefined : yield* watchFileChanges(path)
        const first = yield* readText(path)
        const ref = yield* SubscriptionRef.make(yield* Effect.fromResult(parseConfigText(first, path, env, checks)))
        // The content last read, valid or not: the watcher reloads only when it differs.
        let lastDigest = digest(first)
        const lock = yield* Semaphore.make(1)
        const publish = (text: string) =>
          Effect.fromResult(parseConfigText(text, path, env, checks)).pipe(Effect.tap((config) => SubscriptionRef.set(ref, config)))

        const reload = Effect.gen(function*() {
          const text = yield* readText(path)
          lastDigest = digest(text)
          return yield* publish(text)
        }).pipe(countReload, warnRejected, Semaphore.withPermit(lock))

        if (changes !== undefined) {
          const reloadIfChanged = Effect.gen(function*() {
            const text = yield* readText(path)
            const hash = digest(text)
            if (hash === lastDigest) return undefined
            lastDigest = hash
            return yield* publish(text)
          }).pipe(
            countReload,
            warnRejected,
            Semaphore.withPermit(lock),
            Effect.tap((config) =>
              config === undefined
                ? Effect.void
                : Effect.logInfo(`config reloaded from ${path} (file changed; ${config.servers.length} server(s))`)
            ),
            Effect.ignore
          )
          yield* debounceChanges(changes, options.debounce ?? DEFAULT_DEBOUNCE, reloadIfChanged).pipe(Effect.forkScoped)
        }
        return ConfigSource.of({ config: ref, source: path, reload, checks })
      })
    )
  }
}

/**
 * Publishes a new config given as a value (the admin API's `PUT /config`), after it validates;
 * on failure the running config stays in force.
 */
export const publishConfig = (
  source: ConfigSource["Service"],
  value: unknown,
  origin: string
): Effect.Effect<Config, ConfigError> =>
  Effect.fromResult(decodeConfig(value, origin, { checks: source.checks })).pipe(
    Effect.tap((config) => SubscriptionRef.set(source.config, config)),
    countReload
  )

/** Decodes a value into a Config synchronously; for CLI-built configs. */
export const configFromValue = (value: unknown): Result.Result<Config, ConfigError> => decodeConfig(value, "<value>")
