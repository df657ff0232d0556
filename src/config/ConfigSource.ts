/**
 * Where the running config lives: a SubscriptionRef that every service reads or follows.
 * A new value is published only after it validates, so a bad reload leaves the last good
 * config in force.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Result from "effect/Result"
import * as SubscriptionRef from "effect/SubscriptionRef"
import * as Metric from "effect/Metric"
import { configReloads } from "../telemetry/Metrics.ts"
import { ConfigError } from "./ConfigError.ts"
import { decodeConfig, loadConfigFile } from "./ConfigLoader.ts"
import type { Config } from "./Schema.ts"

const applied = Metric.withAttributes(configReloads, { result: "applied" })
const rejected = Metric.withAttributes(configReloads, { result: "rejected" })
const countReload = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  effect.pipe(Effect.tap(() => Metric.update(applied, 1)), Effect.tapError(() => Metric.update(rejected, 1)))

export class ConfigSource extends Context.Service<ConfigSource, {
  /** The config in force; `SubscriptionRef.changes` streams every accepted update. */
  readonly config: SubscriptionRef.SubscriptionRef<Config>
  /** A name for where the config comes from (a file path, or `<value>`). */
  readonly source: string
  /** Re-reads the source; on success publishes the new config, on failure keeps the old one. */
  readonly reload: Effect.Effect<Config, ConfigError>
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
        const config = yield* Effect.fromResult(decodeConfig(value, "<value>"))
        const ref = yield* SubscriptionRef.make(config)
        return ConfigSource.of({ config: ref, source: "<value>", reload: Effect.succeed(config) })
      })
    )
  }

  /** A config read from a YAML file, with `FIBERGATE_*` overrides from `env`. */
  static layerFile(path: string, env: Record<string, string | undefined> = process.env): Layer.Layer<ConfigSource, ConfigError> {
    return Layer.effect(
      ConfigSource,
      Effect.gen(function*() {
        const ref = yield* SubscriptionRef.make(yield* loadConfigFile(path, env))
        const reload = loadConfigFile(path, env).pipe(
          Effect.tap((config) => SubscriptionRef.set(ref, config)),
          countReload,
          Effect.tapError((error) => Effect.logWarning(`Config reload rejected, keeping the running config\n${error.message}`))
        )
        return ConfigSource.of({ config: ref, source: path, reload })
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
  Effect.fromResult(decodeConfig(value, origin)).pipe(Effect.tap((config) => SubscriptionRef.set(source.config, config)), countReload)

/** Decodes a value into a Config synchronously; for CLI-built configs. */
export const configFromValue = (value: unknown): Result.Result<Config, ConfigError> => decodeConfig(value, "<value>")
