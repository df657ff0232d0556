/**
 * `fibergate run -c FILE` follows its config file by default; `--no-watch` leaves reloads to
 * SIGHUP. The real command, spawned as a child process with the Node running the tests. That a
 * `--no-watch` process did not reload is checked against a sentinel: a watched config source (the
 * one `run -c` uses) on another file beside it, changed after it, twice: once that source has
 * applied both changes, a watching process would long have applied its own. No fixed wait stands
 * in for "nothing happened".
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Layer, References, type Scope, SubscriptionRef } from "effect"
import { spawn, type ChildProcess } from "node:child_process"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { ConfigSource } from "../../src/config/ConfigSource.ts"
import { startUpstream, type TestUpstream } from "../support/harness.ts"
import { eventually, get, tempDir, writeAndRename, writeInPlace } from "../support/liveGateway.ts"
import { freePort } from "../support/net.ts"

const ROOT = fileURLToPath(new URL("../../", import.meta.url))

/** Spawns `node bin/fibergate.js ...args` for the life of the scope (killed at the end). */
const spawnCli = (args: ReadonlyArray<string>): Effect.Effect<{ readonly child: ChildProcess; readonly output: () => string }, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith("FIBERGATE_")))
      const child = spawn(process.execPath, ["bin/fibergate.js", ...args], { cwd: ROOT, env, stdio: ["ignore", "pipe", "pipe"] })
      let output = ""
      child.stdout!.setEncoding("utf8").on("data", (s: string) => void (output += s))
      child.stderr!.setEncoding("utf8").on("data", (s: string) => void (output += s))
      return { child, output: () => output }
    }),
    ({ child }) =>
      Effect.callback<void>((resume) => {
        if (child.exitCode !== null || child.signalCode !== null) return resume(Effect.void)
        child.once("close", () => resume(Effect.void))
        child.kill("SIGKILL")
      })
  )

/** `fibergate run -c <dir>/<name> ...flags` over upstreams a and b, once it serves (`/b` to a: no route to b yet). */
const launch = (a: TestUpstream, b: TestUpstream, dir: string, name: string, flags: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const port = yield* freePort
    const adminPort = yield* freePort
    const config = (withB: boolean) => ({
      admin: { listen: `127.0.0.1:${adminPort}` },
      log: { level: "warn", access_log: false },
      servers: [{
        name: "web",
        listen: `127.0.0.1:${port}`,
        routes: [...(withB ? [{ id: "to-b", match: { path: { prefix: "/b" } }, upstream: "b" }] : []), { id: "all", upstream: "a" }]
      }],
      upstreams: { a: { endpoints: [{ url: a.url }] }, b: { endpoints: [{ url: b.url }] } }
    })
    const path = join(dir, name)
    yield* writeInPlace(path, config(false))
    const cli = yield* spawnCli(["run", "-c", path, ...flags])
    const upstreamOf = get(`http://127.0.0.1:${port}/b/x`).pipe(Effect.map((res) => res.headers.get("x-upstream")))
    yield* eventually(Effect.map(upstreamOf, (u) => u === "a"), "the gateway serves", 10_000).pipe(
      Effect.tapDefect(() => Effect.sync(() => console.error(cli.output())))
    )
    return { cli, path, config, upstreamOf }
  })

const setup = (flags: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const a = yield* startUpstream("a")
    const b = yield* startUpstream("b")
    return yield* launch(a, b, yield* tempDir, "fibergate.yaml", flags)
  })

describe("fibergate run -c FILE and config file changes", () => {
  it.live("run -c FILE applies a changed file by default", () =>
    Effect.gen(function*() {
      const { config, path, upstreamOf } = yield* setup([])
      yield* writeAndRename(path, config(true))
      yield* eventually(Effect.map(upstreamOf, (u) => u === "b"), "the new route answers")
    }))

  it.live("run -c FILE --no-watch ignores a changed file until SIGHUP", () =>
    Effect.gen(function*() {
      const a = yield* startUpstream("a")
      const b = yield* startUpstream("b")
      const dir = yield* tempDir
      const unwatched = yield* launch(a, b, dir, "unwatched.yaml", ["--no-watch"])
      // The sentinel: the config source `run -c` watches its file with, on a file of its own.
      const sentinelPath = join(dir, "sentinel.yaml")
      yield* writeInPlace(sentinelPath, unwatched.config(false))
      const sentinel = Context.get(
        yield* Layer.build(ConfigSource.layerFile(sentinelPath, {})).pipe(Effect.provideService(References.MinimumLogLevel, "Warn")),
        ConfigSource
      )
      const sentinelRoutes = SubscriptionRef.get(sentinel.config).pipe(Effect.map((c) => c.servers[0].routes.length))

      yield* writeAndRename(unwatched.path, unwatched.config(true))
      // Changed after it, twice, each change applied (debounced) before the next: had the
      // --no-watch process followed its file, it would have applied its change by then.
      yield* writeAndRename(sentinelPath, unwatched.config(true))
      yield* eventually(Effect.map(sentinelRoutes, (n) => n === 2), "the watched source applies its first change")
      yield* writeAndRename(sentinelPath, unwatched.config(false))
      yield* eventually(Effect.map(sentinelRoutes, (n) => n === 1), "the watched source applies its second change")
      assert.strictEqual(yield* unwatched.upstreamOf, "a", "the --no-watch process reloaded on a file change")
      unwatched.cli.child.kill("SIGHUP")
      yield* eventually(Effect.map(unwatched.upstreamOf, (u) => u === "b"), "SIGHUP applies it")
    }))
})
