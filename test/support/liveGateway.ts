/**
 * Test support for reload tests: a real gateway built from any gateway Layer (a watched file, a
 * config value), with its services at hand, its log captured, and the helpers that wait for
 * what a reload changes (bounded polls, never fixed sleeps standing in for a result).
 */
import { assert } from "@effect/vitest"
import { Context, Effect, Layer, Logger, Metric, References, type Scope } from "effect"
import { mkdtempSync, renameSync, rmSync, writeFileSync } from "node:fs"
import { connect } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Admin } from "../../src/admin/Admin.ts"
import { ConfigSource } from "../../src/config/ConfigSource.ts"
import type { GatewayServices } from "../../src/gateway/Gateway.ts"
import { Listeners } from "../../src/listener/Listeners.ts"
import { RouteTable } from "../../src/routing/RouteTable.ts"
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

/** Polls `check` every 20 ms until it holds, for at most `ms` (default 5 s); fails the test otherwise. */
export const eventually = (check: Effect.Effect<boolean>, what: string, ms = 5_000) =>
  Effect.gen(function*() {
    for (let waited = 0; waited < ms; waited += 20) {
      if (yield* check) return
      yield* Effect.sleep("20 millis")
    }
    if (yield* check) return
    assert.fail(`timed out after ${ms} ms waiting until ${what}`)
  })

/** Whether a TCP connection to 127.0.0.1:port is refused. */
export const refuses = (port: number) =>
  Effect.callback<boolean>((resume) => {
    const socket = connect({ host: "127.0.0.1", port })
    socket.once("connect", () => {
      socket.destroy()
      resume(Effect.succeed(false))
    })
    socket.once("error", (e: Error & { code?: string }) => resume(Effect.succeed(e.code === "ECONNREFUSED")))
  })

/** GET over fetch; a network error becomes status 0 (for polling while something changes). */
export const get = (url: string) =>
  Effect.promise(() =>
    fetch(url).then(
      async (res) => ({ status: res.status, headers: res.headers, body: await res.text() }),
      () => ({ status: 0, headers: new Headers(), body: "" })
    )
  )

/** The current value of `fibergate_config_reloads_total{result}` (shared by every gateway in this test file). */
export const reloadCount = (result: "applied" | "rejected") =>
  Metric.value(Metric.withAttributes(configReloads, { result })).pipe(Effect.map((state) => state.count))

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
