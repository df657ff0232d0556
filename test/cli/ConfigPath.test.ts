/**
 * Which file `fibergate check` and `fibergate run` read (README "Running it"): `-c FILE`, else
 * `$FIBERGATE_CONFIG`, else `config/fibergate.yaml` under the working directory. Each case runs
 * the real CLI in a temporary working directory; the files differ in their route count (for
 * `check`) or in the upstream they send to (for `run`), so the output says which one was read.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { join } from "node:path"
import { fetchWhenUp, oneRouteConfig, runCli, spawnCli, tempDir } from "../support/cli.ts"
import { startUpstream } from "../support/harness.ts"
import { freePort } from "../support/net.ts"

/** A valid config with `routes` routes (the `check` summary counts them). */
const withRoutes = (routes: number) =>
  oneRouteConfig({
    port: 0,
    upstream: "http://127.0.0.1:9",
    head: ["log: { level: none, access_log: false }"],
    routes: `[ ${Array.from({ length: routes }, (_, i) => `{ id: r${i}, match: { path: { prefix: /r${i} } }, upstream: app }`).join(", ")} ]`
  })

const summary = (routes: number) => `ok (1 server(s), ${routes} route(s), 1 upstream(s))`

describe("fibergate check: which config file", () => {
  it.live("with neither -c nor $FIBERGATE_CONFIG it reads config/fibergate.yaml under the working directory", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir({ "config/fibergate.yaml": withRoutes(2) })
      const result = yield* runCli(["check"], { cwd: dir })
      assert.strictEqual(result.code, 0, result.stderr)
      assert.strictEqual(result.stdout.trim(), `config/fibergate.yaml: ${summary(2)}`)
    }))

  it.live("without -c it reads $FIBERGATE_CONFIG, not config/fibergate.yaml", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir({ "config/fibergate.yaml": withRoutes(2), "elsewhere/env.yaml": withRoutes(3) })
      const env = join(dir, "elsewhere/env.yaml")
      const result = yield* runCli(["check"], { cwd: dir, env: { FIBERGATE_CONFIG: env } })
      assert.strictEqual(result.code, 0, result.stderr)
      assert.strictEqual(result.stdout.trim(), `${env}: ${summary(3)}`)
    }))

  it.live("-c beats $FIBERGATE_CONFIG", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir({ "config/fibergate.yaml": withRoutes(2), "env.yaml": withRoutes(3), "flag.yaml": withRoutes(4) })
      const result = yield* runCli(["check", "-c", "flag.yaml"], { cwd: dir, env: { FIBERGATE_CONFIG: join(dir, "env.yaml") } })
      assert.strictEqual(result.code, 0, result.stderr)
      assert.strictEqual(result.stdout.trim(), `flag.yaml: ${summary(4)}`)
    }))

  it.live("with no config/fibergate.yaml under the working directory it exits 1 naming that path", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir({ "other.yaml": withRoutes(1) })
      const result = yield* runCli(["check"], { cwd: dir })
      assert.strictEqual(result.code, 1, result.stdout)
      assert.include(result.stderr, "config/fibergate.yaml")
      assert.include(result.stderr, "Cannot read")
    }))
})

describe("fibergate run: which config file", () => {
  /** Two configs on one port: whichever upstream answers names the file that was read. */
  const setup = Effect.gen(function*() {
    const port = yield* freePort
    const upstreams = {
      default: yield* startUpstream("default-file"),
      env: yield* startUpstream("env-file"),
      flag: yield* startUpstream("flag-file")
    }
    const config = (upstream: string) => oneRouteConfig({ port, upstream, head: ["log: { level: none, access_log: false }"] })
    const dir = yield* tempDir({
      "config/fibergate.yaml": config(upstreams.default.url),
      "env.yaml": config(upstreams.env.url),
      "flag.yaml": config(upstreams.flag.url)
    })
    return { dir, url: `http://127.0.0.1:${port}/which` }
  })

  it.live("with neither -c nor $FIBERGATE_CONFIG it serves config/fibergate.yaml under the working directory", () =>
    Effect.gen(function*() {
      const { dir, url } = yield* setup
      const cli = yield* spawnCli(["run"], { cwd: dir })
      const res = yield* fetchWhenUp(cli, url, 15_000)
      assert.deepStrictEqual([res.status, res.headers.get("x-upstream")], [200, "default-file"])
    }))

  it.live("without -c it serves $FIBERGATE_CONFIG", () =>
    Effect.gen(function*() {
      const { dir, url } = yield* setup
      const cli = yield* spawnCli(["run"], { cwd: dir, env: { FIBERGATE_CONFIG: join(dir, "env.yaml") } })
      const res = yield* fetchWhenUp(cli, url, 15_000)
      assert.deepStrictEqual([res.status, res.headers.get("x-upstream")], [200, "env-file"])
    }))

  it.live("-c beats $FIBERGATE_CONFIG", () =>
    Effect.gen(function*() {
      const { dir, url } = yield* setup
      const cli = yield* spawnCli(["run", "-c", "flag.yaml"], { cwd: dir, env: { FIBERGATE_CONFIG: join(dir, "env.yaml") } })
      const res = yield* fetchWhenUp(cli, url, 15_000)
      assert.deepStrictEqual([res.status, res.headers.get("x-upstream")], [200, "flag-file"])
    }))
})
