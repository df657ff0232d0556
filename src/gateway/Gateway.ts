/**
 * The whole gateway as one Layer (DESIGN.md §1): config source, upstreams, health checks,
 * route table, listeners and the admin API. Closing its scope stops accepting, drains, and closes pools.
 */
import * as Layer from "effect/Layer"
import { Admin } from "../admin/Admin.ts"
import type { ConfigError } from "../config/ConfigError.ts"
import { ConfigSource, type FileSourceOptions } from "../config/ConfigSource.ts"
import { ConfigChecks } from "../config/ConfigChecks.ts"
import type { ListenError } from "../listener/Listen.ts"
import { Certificates } from "../listener/Certificates.ts"
import { Listeners } from "../listener/Listeners.ts"
import { Readiness } from "../listener/Readiness.ts"
import { RouteTable } from "../proxy/RouteTable.ts"
import { HealthChecks } from "../upstream/HealthChecks.ts"
import { Upstreams } from "../upstream/Upstreams.ts"
import { Tracing } from "../telemetry/Tracing.ts"
import * as ProcessMetrics from "../telemetry/ProcessMetrics.ts"
import { CustomMiddlewares, registeredCustomCheck } from "../middleware/CustomMiddlewares.ts"
import { Limiters } from "../middleware/Limiters.ts"
import type { Middleware } from "../middleware/Middleware.ts"

export type GatewayServices = ConfigSource | Tracing | Upstreams | HealthChecks | RouteTable | Readiness | Certificates | Listeners | Admin

/**
 * The gateway on top of a given config source (swap it for one fed by your service registry).
 * The admin API is built before the listeners and closed after them: `/ready` says false until
 * every listener is bound and again as soon as a drain starts, while in-flight requests finish.
 */
export const layerWith = <E, RT = never>(
  config: Layer.Layer<ConfigSource, E>,
  options?: {
    /**
     * Where request spans go. Default: `Tracing.layer`, Effect's OTLP exporter when the config
     * sets `telemetry.tracing.otlp_endpoint`. `Tracing.layerFromContext` uses the program's own
     * Tracer instead (e.g. `@effect/opentelemetry`'s NodeSdk layer).
     */
    readonly tracing?: Layer.Layer<Tracing, never, ConfigSource | RT>
    /**
     * Middlewares by the name `custom: <name>` refers to; the Layer then requires what they
     * require (provide it with your own Layers).
     */
    readonly middlewares?: Readonly<Record<string, Middleware<RT>>>
  }
): Layer.Layer<GatewayServices, E | ListenError, RT> =>
  Listeners.layer.pipe(
    Layer.provideMerge(Admin.layer),
    Layer.provideMerge(Readiness.layer),
    Layer.provideMerge(RouteTable.layer),
    Layer.provideMerge(HealthChecks.layer),
    Layer.provideMerge(Upstreams.layer),
    Layer.provideMerge(Layer.mergeAll(
      options?.tracing ?? Tracing.layer,
      ProcessMetrics.layer,
      Certificates.layer,
      Limiters.layer,
      options?.middlewares === undefined ? CustomMiddlewares.layerNone : CustomMiddlewares.layer(options.middlewares)
    )),
    // The config source rejects a `custom:` naming no registered middleware, like a Schema error.
    Layer.provideMerge(Layer.provide(config, Layer.succeed(ConfigChecks)([registeredCustomCheck(Object.keys(options?.middlewares ?? {}))])))
  )

/**
 * The gateway for a config given as a value, as it would be written in YAML.
 *
 * @example
 * import { Effect, Layer } from "effect"
 * import { Gateway } from "fibergate"
 *
 * const program = Layer.launch(Gateway.layer({
 *   servers: [{ name: "web", listen: "127.0.0.1:8080", routes: [{ id: "all", upstream: "app" }] }],
 *   upstreams: { app: { endpoints: [{ url: "http://127.0.0.1:3000" }] } }
 * }))
 */
export const layer = (config: unknown): Layer.Layer<GatewayServices, ConfigError | ListenError> =>
  layerWith(ConfigSource.layerValue(config))

/**
 * The gateway for a YAML config file, with `FIBERGATE_*` environment overrides. The file is
 * watched and reloaded when it changes unless `watch: false`.
 *
 * @example
 * Gateway.layerFile("fibergate.yaml", process.env, { watch: false })
 */
export const layerFile = (
  path: string,
  env: Record<string, string | undefined> = process.env,
  options: FileSourceOptions = {}
): Layer.Layer<GatewayServices, ConfigError | ListenError> => layerWith(ConfigSource.layerFile(path, env, options))
