/**
 * The `fibergate` command: `run`, `check`, `schema` and `demo`.
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as NodeServices from "@effect/platform-node/NodeServices"
import * as Cause from "effect/Cause"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Result from "effect/Result"
import type * as Runtime from "effect/Runtime"
import { Command, Flag } from "effect/cli"
import { ConfigError } from "../config/ConfigError.ts"
import { loadConfigFile } from "../config/ConfigLoader.ts"
import type { Config } from "../config/Schema.ts"
import { echoUpstream } from "../demo/EchoUpstream.ts"
import * as Gateway from "../gateway/Gateway.ts"
import { ListenError } from "../listener/Listen.ts"
import { findShadowedRoutes, formatShadowWarning } from "../routing/Shadowing.ts"
import { openAdminWarning } from "../admin/AdminExposure.ts"
import { configJsonSchema } from "../config/JsonSchema.ts"
import { loggingLayer } from "./Logging.ts"
import { compactAfterStartup } from "./StartupCompaction.ts"
import { configFromValue, ConfigSource } from "../config/ConfigSource.ts"
import { layerReloadOnSighup } from "../config/ReloadOnSignal.ts"
import { DEFAULT_DRAIN_TIMEOUT_MS } from "../listener/Listeners.ts"
import { clusterSpawner } from "../workers/ClusterSpawner.ts"
import { supervise } from "../workers/Supervisor.ts"
import cluster from "node:cluster"
import { availableParallelism } from "node:os"

const VERSION = "0.1.0"
export const DEFAULT_CONFIG = "config/fibergate.yaml"
export const DEMO_CONFIG = new URL("../../config/demo.yaml", import.meta.url).pathname

const configFlag = Flag.String("config").pipe(
  Flag.withAlias("c"),
  Flag.withDescription(`YAML config file (default ${DEFAULT_CONFIG}, or $FIBERGATE_CONFIG)`),
  Flag.optional
)

/** Prints a config or listen error the way an operator wants to read it, and fails. */
const reportStartupError = <A, R>(effect: Effect.Effect<A, ConfigError | ListenError, R>) =>
  effect.pipe(
    Effect.tapError((error) =>
      Console.error(
        error instanceof ConfigError
          ? `fibergate: invalid config\n${error.message}`
          : `fibergate: listener ${error.listener} cannot listen on ${error.address}: ${error.message}`
      )
    )
  )

/** The config `run --listen ADDR --upstream URL` builds when no file is given. */
export const quickConfig = (listen: string, upstreams: ReadonlyArray<string>): unknown => ({
  log: { level: "info", format: "json", access_log: true },
  servers: [{ name: "default", listen, routes: [{ id: "all", upstream: "default" }] }],
  upstreams: { default: { balance: "round_robin", endpoints: upstreams.map((url) => ({ url })) } }
})

const runGateway = (layer: Layer.Layer<Gateway.GatewayServices, ConfigError | ListenError>, config: Config) =>
  Layer.launch(Layer.tap(layer, () => Effect.sync(() => compactAfterStartup()))).pipe(reportStartupError, Effect.provide(loggingLayer(config.log)))

/**
 * The gateway of `run -c FILE`: it follows the file (unless `--no-watch`) and also re-reads it
 * on SIGHUP (as nginx does).
 */
const fileGateway = (path: string, watch: boolean) =>
  layerReloadOnSighup.pipe(Layer.provideMerge(Gateway.layerWith(ConfigSource.layerFile(path, process.env, { watch }))))

/** `workers: auto` is one per core; absent means one process. */
export const workerCount = (workers: Config["workers"]): number =>
  workers === undefined ? 1 : workers === "auto" ? availableParallelism() : workers

/**
 * The primary of a multi-process gateway: binds nothing itself, supervises the workers,
 * forwards SIGHUP to them, and on SIGTERM/SIGINT (interruption) stops them and waits for them
 * to drain.
 */
const runPrimary = (count: number, config: Config) =>
  Effect.gen(function*() {
    const drain = config.shutdown?.drain_timeout ?? DEFAULT_DRAIN_TIMEOUT_MS
    const supervisor = yield* supervise({
      count,
      spawn: clusterSpawner(drain + 5_000),
      onEvent: (event) =>
        event._tag === "Started"
          ? Effect.logInfo(`worker ${event.slot} started (pid ${event.pid})`)
          : Effect.logWarning(
            `worker ${event.slot} (pid ${event.pid}) exited (code ${event.exit.code}, signal ${event.exit.signal}) after ${event.uptimeMs} ms`
          )
    })
    const onHup = () => supervisor.signalAll("SIGHUP")
    yield* Effect.acquireRelease(
      Effect.sync(() => process.on("SIGHUP", onHup)),
      () => Effect.sync(() => process.removeListener("SIGHUP", onHup))
    )
    yield* Effect.logInfo(`primary (pid ${process.pid}) supervising ${count} workers`)
    return yield* supervisor.done
  }).pipe(
    Effect.scoped,
    Effect.tapError((error) => Console.error(`fibergate: ${error.message}`)),
    Effect.provide(loggingLayer(config.log))
  )

const run = Command.make(
  "run",
  {
    config: configFlag,
    listen: Flag.String("listen").pipe(Flag.withDescription("Listen address when no config file is used, e.g. 127.0.0.1:8080"), Flag.optional),
    upstream: Flag.String("upstream").pipe(Flag.withDescription("Upstream URL when no config file is used (repeatable)"), Flag.atLeast(0)),
    watch: Flag.Boolean("watch").pipe(
      Flag.withDescription("Reload the config file when it changes (default); --no-watch reloads only on SIGHUP or POST /reload"),
      Flag.withDefault(true)
    )
  },
  Effect.fnUntraced(function*({ config, listen, upstream, watch }) {
    if (Option.isNone(config) && upstream.length > 0) {
      const value = quickConfig(Option.getOrElse(listen, () => "127.0.0.1:8080"), upstream)
      const decoded = configFromValue(value)
      if (Result.isFailure(decoded)) return yield* reportStartupError(Effect.fail(decoded.failure))
      return yield* runGateway(Gateway.layer(value), decoded.success)
    }
    const path = Option.getOrElse(config, () => process.env.FIBERGATE_CONFIG ?? DEFAULT_CONFIG)
    const loaded = yield* reportStartupError(loadConfigFile(path, process.env))
    const count = workerCount(loaded.workers)
    if (count > 1 && cluster.isPrimary) return yield* runPrimary(count, loaded)
    return yield* runGateway(fileGateway(path, watch), loaded)
  })
).pipe(Command.withDescription("Run the gateway"))

const check = Command.make(
  "check",
  { config: configFlag },
  Effect.fnUntraced(function*({ config }) {
    const path = Option.getOrElse(config, () => process.env.FIBERGATE_CONFIG ?? DEFAULT_CONFIG)
    const loaded = yield* reportStartupError(loadConfigFile(path, process.env))
    const routes = loaded.servers.reduce((n, s) => n + s.routes.length, 0)
    // Warnings do not fail the check: the config is valid.
    const warnings = findShadowedRoutes(loaded)
    if (warnings.length > 0) {
      yield* Console.error(
        [`fibergate: warning: ${warnings.length} route(s) can never match`, ...warnings.map((w) => formatShadowWarning(path, w))].join("\n")
      )
    }
    const openAdmin = openAdminWarning(loaded)
    if (openAdmin !== undefined) yield* Console.error(`fibergate: warning: ${path}: ${openAdmin}`)
    const count = warnings.length + (openAdmin === undefined ? 0 : 1)
    const summary = `${loaded.servers.length} server(s), ${routes} route(s), ${Object.keys(loaded.upstreams).length} upstream(s)`
    yield* Console.log(`${path}: ok (${summary}${count > 0 ? `, ${count} warning(s)` : ""})`)
  })
).pipe(Command.withDescription(
  "Validate a config file; exit 0 when valid (warning about routes that can never match and a token-less admin API beyond loopback), 1 with every error otherwise"
))

const schema = Command.make(
  "schema",
  {},
  () => Console.log(JSON.stringify(configJsonSchema(), null, 2))
).pipe(Command.withDescription("Print the config's JSON Schema (draft 2020-12), for editors: config/fibergate.schema.json is the same"))

const demo = Command.make(
  "demo",
  {},
  Effect.fnUntraced(function*() {
    const loaded = yield* reportStartupError(loadConfigFile(DEMO_CONFIG, {}))
    yield* reportStartupError(echoUpstream("blue", { host: "127.0.0.1", port: 3001 }))
    yield* reportStartupError(echoUpstream("green", { host: "127.0.0.1", port: 3002 }))
    const gateway = Layer.effectDiscard(Console.log([
      "",
      "fibergate demo: gateway on http://127.0.0.1:8080, admin API on http://127.0.0.1:9901",
      "two echo upstreams (blue :3001, green :3002) answer with what they received. Try:",
      "  curl -i http://127.0.0.1:8080/hello             # default route -> blue",
      "  curl -i http://127.0.0.1:8080/api/users?page=2  # /api stripped, weighted 3:1 over blue and green",
      "  curl -i http://127.0.0.1:8080/api/login         # exact route -> blue",
      "  curl -i -H 'x-canary: true' http://127.0.0.1:8080/x  # header route -> green",
      "  curl http://127.0.0.1:9901/ready; curl http://127.0.0.1:9901/config",
      `config: ${DEMO_CONFIG}. Ctrl-C stops it.`,
      ""
    ].join("\n"))).pipe(Layer.provideMerge(Gateway.layerFile(DEMO_CONFIG, {})))
    return yield* runGateway(gateway, loaded)
  }, Effect.scoped)
).pipe(Command.withDescription("Run a gateway in front of two local echo upstreams (config/demo.yaml)"))

export const cli = Command.make("fibergate").pipe(
  Command.withDescription("fibergate: a reverse proxy and API gateway on Effect"),
  Command.withSubcommands([run, check, schema, demo])
)

/**
 * A gateway stopped by SIGTERM/SIGINT has drained and closed cleanly: that is success (exit 0),
 * as process managers expect, not the shell's 130 for an interrupted program.
 */
const teardown: Runtime.Teardown = (exit, onExit) =>
  onExit(Exit.isSuccess(exit) || Cause.hasInterruptsOnly(exit.cause) ? 0 : 1)

export const main = (): void =>
  cli.pipe(
    Command.run({ version: VERSION }),
    Effect.provide(NodeServices.layer),
    NodeRuntime.runMain({ disableErrorReporting: true, teardown })
  )
