/**
 * Test support for reload tests: a real gateway built from any gateway Layer (a watched file, a
 * config value), with its services at hand, its log captured, and the helpers that wait for
 * what a reload changes: bounded in real time (`eventually`, `within`), so a broken reload
 * fails its test in seconds, and never fixed sleeps standing in for a result.
 */
import { assert } from "@effect/vitest"
import { Clock, Context, type Duration, Effect, Layer, Logger, Metric, Option, Queue, References, type Scope } from "effect"
import { mkdtempSync, renameSync, rmSync, writeFileSync } from "node:fs"
import { connect } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Admin } from "../../src/admin/Admin.ts"
import { ConfigSource } from "../../src/config/ConfigSource.ts"
import { debounceChanges, DEFAULT_DEBOUNCE, watchFileChanges } from "../../src/config/FileWatch.ts"
import type { GatewayServices } from "../../src/gateway/Gateway.ts"
import { Listeners } from "../../src/listener/Listeners.ts"
import { RouteTable } from "../../src/proxy/RouteTable.ts"
import { configReloads } from "../../src/telemetry/Metrics.ts"

export interface LogLine {
  readonly level: string
  readonly message: string
}

export interface LiveGateway {
  readonly listeners: Listeners["Service"]
  readonly routes: RouteTable["Service"]
  readonly source: ConfigSource["Service"]
  readonly adminPort: number | undefined
  /** The port a listener is bound to now (it follows reloads); fails the test when unbound. */
  readonly port: (listener: string) => number
  /** Everything the gateway logged at Info and above, in order. */
  readonly logs: ReadonlyArray<LogLine>
}

/** Builds a gateway Layer for the life of the test's scope, capturing its log. */
export const startLiveGateway = <E>(
  layer: Layer.Layer<GatewayServices, E>
): Effect.Effect<LiveGateway, E, Scope.Scope> =>
  Effect.gen(function*() {
    const logs: Array<LogLine> = []
    const capture = Logger.make((options) => {
      const m = options.message
      logs.push({ level: options.logLevel, message: Array.isArray(m) ? m.map(String).join(" ") : String(m) })
    })
    const context = yield* Layer.build(layer).pipe(
      Effect.provide(Logger.layer([capture])),
      Effect.provideService(References.MinimumLogLevel, "Info")
    )
    const listeners = Context.get(context, Listeners)
    return {
      listeners,
      routes: Context.get(context, RouteTable),
      source: Context.get(context, ConfigSource),
      adminPort: Context.get(context, Admin).address?.port,
      port: (name) => {
        const address = listeners.addresses.get(name)
        if (address === undefined) return assert.fail(`listener ${name} is not bound`)
        return address.port
      },
      logs
    }
  })

/**
 * Polls `check` every 20 ms until it holds, for at most `ms` of real time (default 5 s, well
 * under the test timeout); fails the test otherwise. A check that does not answer counts as
 * false and is cut at the deadline, so a gateway that hangs fails the test instead of hanging it.
 */
export const eventually = (check: Effect.Effect<boolean>, what: string, ms = 5_000) =>
  Effect.gen(function*() {
    const deadline = (yield* Clock.currentTimeMillis) + ms
    while (true) {
      const left = deadline - (yield* Clock.currentTimeMillis)
      const held = yield* check.pipe(Effect.timeoutOption(Math.max(left, 1)))
      if (Option.getOrElse(held, () => false)) return
      if ((yield* Clock.currentTimeMillis) >= deadline) break
      yield* Effect.sleep("20 millis")
    }
    return assert.fail(`timed out after ${ms} ms waiting until ${what}`)
  })

/**
 * Runs `effect` for at most `ms` (default 5 s) and fails the test, naming `what`, when it does not
 * complete by then: for a reload, a PUT or a wait that a broken gateway would leave hanging.
 */
export const within = <A, E, R>(effect: Effect.Effect<A, E, R>, what: string, ms = 5_000): Effect.Effect<A, E, R> =>
  effect.pipe(Effect.timeoutOrElse({
    duration: ms,
    orElse: () => Effect.sync(() => assert.fail(`${what} did not complete within ${ms} ms`))
  }))

/** Whether a TCP connection to 127.0.0.1:port is refused (a connect that neither succeeds nor fails within 1 s counts as not refused). */
export const refuses = (port: number) =>
  Effect.callback<boolean>((resume) => {
    const socket = connect({ host: "127.0.0.1", port })
    socket.once("connect", () => {
      socket.destroy()
      resume(Effect.succeed(false))
    })
    socket.once("error", (e: Error & { code?: string }) => resume(Effect.succeed(e.code === "ECONNREFUSED")))
    return Effect.sync(() => void socket.destroy())
  }).pipe(Effect.timeoutOption("1 second"), Effect.map((refused) => Option.getOrElse(refused, () => false)))

/**
 * GET over fetch; a network error, or no complete answer within `ms` (default 2 s), becomes
 * status 0 (for polling while something changes).
 */
export const get = (url: string, ms = 2_000) =>
  Effect.promise(() =>
    fetch(url, { signal: AbortSignal.timeout(ms) }).then(
      async (res) => ({ status: res.status, headers: res.headers, body: await res.text() }),
      () => ({ status: 0, headers: new Headers(), body: "" })
    ).catch(() => ({ status: 0, headers: new Headers(), body: "" }))
  )

/** The current value of `fibergate_config_reloads_total{result}` (shared by every gateway in this test file). */
export const reloadCount = (result: "applied" | "rejected") =>
  Metric.value(Metric.withAttributes(configReloads, { result })).pipe(Effect.map((state) => state.count))

/**
 * The test's own watch on `path`, debounced as a watching gateway's is (the same FileWatch code,
 * the same debounce), for the life of the scope: `next` waits (at most `ms`, default 5 s) for the
 * next moment a burst of changes has been followed by the debounce time of quiet, which is when
 * a gateway watching the file reads it. Start it after the gateway, so that its events and timers
 * come after the gateway's; then a sentinel (a reload, which waits for one in flight, or a later
 * change) tells whether the gateway did something it should not have, without a fixed sleep.
 */
export const fileQuiet = (path: string, debounce: Duration.Input = DEFAULT_DEBOUNCE) =>
  Effect.gen(function*() {
    const quiet = yield* Queue.unbounded<void>()
    const changes = yield* watchFileChanges(path)
    yield* debounceChanges(changes, debounce, Queue.offer(quiet, undefined)).pipe(Effect.forkScoped)
    return {
      next: (what: string, ms = 5_000) => within(Queue.take(quiet), `${what} (a debounced change of ${path})`, ms)
    }
  })

/** A temporary directory for the life of the scope. */
export const tempDir: Effect.Effect<string, never, Scope.Scope> = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "fibergate-reload-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

/** Writes a config file in place (JSON is YAML), as `echo > file` or an editor saving in place would. */
export const writeInPlace = (path: string, config: unknown) =>
  Effect.sync(() => writeFileSync(path, typeof config === "string" ? config : JSON.stringify(config, null, 2)))

/** Writes a temporary file next to `path` and renames it over `path`, as kubectl and most editors do. */
export const writeAndRename = (path: string, config: unknown) =>
  Effect.sync(() => {
    const temp = `${path}.${process.pid}.tmp`
    writeFileSync(temp, typeof config === "string" ? config : JSON.stringify(config, null, 2))
    renameSync(temp, path)
  })
