/**
 * Claims about the real `fibergate` process not pinned elsewhere: the `log` defaults (info, JSON,
 * no access log) and the text format, environment variables overriding the file's scalars on
 * `run` (and a section refused on `check`), SIGINT draining and exiting 0 like SIGTERM, and
 * `run` with several `--upstream` flags balancing over all of them.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, type Scope } from "effect"
import { exitOf, fetchWhenUp, oneRouteConfig, spawnCli, tempFile, type Cli } from "../support/cli.ts"
import { request, startUpstream } from "../support/harness.ts"
import { send } from "../support/http.ts"
import { eventually, refuses } from "../support/liveGateway.ts"
import { freePort } from "../support/net.ts"
import { awaitSignal, fire, onSignal, signal } from "../support/signals.ts"

/** `node bin/fibergate.js ...args` with `env` added to the CLI's environment; SIGKILLed if left running. */
const spawnWith = (args: ReadonlyArray<string>, env: Record<string, string> = {}): Effect.Effect<Cli, never, Scope.Scope> =>
  spawnCli(args, { env })

/** The JSON lines of `text` (every other line is a test failure: the format is JSON). */
const jsonLines = (text: string): Array<Record<string, unknown>> =>
  text.split("\n").filter((l) => l !== "").map((l) => {
    try {
      return JSON.parse(l) as Record<string, unknown>
    } catch {
      return assert.fail(`not a JSON line: ${l}`)
    }
  })

/** How long a process may take to answer its first request on a loaded machine (a bound, not a wait). */
const STARTUP_MS = 15_000

/** Two routes with the same matcher: the second can never match, so start logs a warning. */
const SHADOWED = "[ { id: all, upstream: app }, { id: never, upstream: app } ]"

describe("log defaults and formats (fibergate run)", () => {
  it.live("without log and workers sections: one process (no primary, no workers), its own lines JSON at info and up (warnings included), and no access log", () =>
    Effect.gen(function*() {
      const upstream = yield* startUpstream("app")
      const port = yield* freePort
      const cli = yield* spawnWith(["run", "-c", yield* tempFile("default-log.yaml", oneRouteConfig({ port, upstream: upstream.url, routes: SHADOWED }))])
      assert.strictEqual((yield* fetchWhenUp(cli, `http://127.0.0.1:${port}/through`, STARTUP_MS)).status, 200)
      cli.child.kill("SIGTERM")
      assert.deepStrictEqual(yield* exitOf(cli), { code: 0, signal: null }, cli.stderr())
      const lines = jsonLines(cli.stdout())
      const listening = lines.find((l) => l.message === `listener public on http://127.0.0.1:${port}`)
      assert.strictEqual(listening?.level, "INFO", cli.stdout())
      assert.strictEqual(lines.find((l) => String(l.message).includes("never matches"))?.level, "WARN")
      assert.isUndefined(lines.find((l) => "path" in l || "status" in l), "no access log line")
      // workers defaults to 1: the gateway runs in this process, not under a node:cluster primary.
      assert.isUndefined(lines.find((l) => /supervising|worker \d+ started/.test(String(l.message))), cli.stdout())
      assert.strictEqual(upstream.seen.length, 1)
    }))

  it.live("log { level: warn, format: text }: logfmt lines, the warning written, the info lines not", () =>
    Effect.gen(function*() {
      const upstream = yield* startUpstream("app")
      const port = yield* freePort
      const config = oneRouteConfig({ port, upstream: upstream.url, routes: SHADOWED, head: ["log: { level: warn, format: text }"] })
      const cli = yield* spawnWith(["run", "-c", yield* tempFile("text-log.yaml", config)])
      assert.strictEqual((yield* fetchWhenUp(cli, `http://127.0.0.1:${port}/through`, STARTUP_MS)).status, 200)
      cli.child.kill("SIGTERM")
      assert.strictEqual((yield* exitOf(cli)).code, 0)
      const lines = cli.stdout().split("\n").filter((l) => l !== "")
      const warning = lines.find((l) => l.includes("never matches")) ?? assert.fail(`no warning in:\n${cli.stdout()}`)
      assert.match(warning, /^timestamp=\S+ level=WARN fiber=#\d+ message=/)
      assert.isUndefined(lines.find((l) => l.includes("listener public on")), "info lines are below warn")
      assert.isUndefined(lines.find((l) => l.startsWith("{")), "no JSON")
    }))
})

describe("environment overrides (fibergate run)", () => {
  it.live("FIBERGATE_ADMIN__LISTEN moves the admin API, FIBERGATE_LOG__ACCESS_LOG=true and FIBERGATE_LOG__FORMAT=text take effect over the file", () =>
    Effect.gen(function*() {
      const upstream = yield* startUpstream("app")
      const [port, filePort, envPort] = [yield* freePort, yield* freePort, yield* freePort]
      const config = oneRouteConfig({ port, upstream: upstream.url, adminPort: filePort, head: ["log: { level: info, format: json, access_log: false }"] })
      const cli = yield* spawnWith(["run", "-c", yield* tempFile("env.yaml", config)], {
        FIBERGATE_ADMIN__LISTEN: `127.0.0.1:${envPort}`,
        FIBERGATE_LOG__ACCESS_LOG: "true",
        FIBERGATE_LOG__FORMAT: "text"
      })
      const ready = yield* fetchWhenUp(cli, `http://127.0.0.1:${envPort}/ready`, STARTUP_MS)
      assert.strictEqual(ready.status, 200)
      assert.isTrue(yield* refuses(filePort), "the file's admin address is not bound")
      assert.strictEqual((yield* request(`http://127.0.0.1:${port}/logged?x=1`)).status, 200)
      yield* eventually(Effect.sync(() => cli.stdout().includes("/logged?x=1")), "the access log line is written")
      const line = cli.stdout().split("\n").find((l) => l.includes("/logged?x=1"))!
      // FIBERGATE_LOG__FORMAT=text: the access log (and the gateway's lines) in the text format.
      assert.match(line, /^127\.0\.0\.1 - - \[[^\]]+\] "GET \/logged\?x=1 HTTP\/1\.1" 200 /)
      assert.match(cli.stdout(), /level=INFO fiber=#\d+ message="listener public on/)
    }))

  it.live("check: FIBERGATE_LOG=debug (a section) is refused naming the variable, exit 1", () =>
    Effect.gen(function*() {
      const path = yield* tempFile("section.yaml", oneRouteConfig({ port: 0, upstream: "http://127.0.0.1:9", head: ["log: { level: info }"] }))
      const cli = yield* spawnWith(["check", "-c", path], { FIBERGATE_LOG: "debug" })
      const exit = yield* exitOf(cli)
      assert.strictEqual(exit.code, 1, cli.stdout())
      assert.include(cli.stderr(), "FIBERGATE_LOG")
      assert.include(cli.stderr(), "only scalar keys can be overridden")
    }))
})

describe("signals and quick runs (fibergate run)", () => {
  it.live("SIGINT drains like SIGTERM: the request in flight completes with Connection: close, then exit 0", () =>
    Effect.gen(function*() {
      const arrived = signal()
      const release = signal()
      const upstream = yield* startUpstream("slow", {
        rawHandler: (req, res) => {
          if (req.url !== "/slow") return void res.end("quick")
          fire(arrived, undefined)
          onSignal(release, () => res.end("done"))
        }
      })
      yield* Effect.addFinalizer(() => Effect.sync(() => fire(release, undefined)))
      const port = yield* freePort
      const config = oneRouteConfig({ port, upstream: upstream.url, head: ["log: { level: warn }", "shutdown: { drain_timeout: 10s }"] })
      const cli = yield* spawnWith(["run", "-c", yield* tempFile("sigint.yaml", config)])
      yield* fetchWhenUp(cli, `http://127.0.0.1:${port}/`, STARTUP_MS)
      const inFlight = yield* Effect.forkChild(send(`http://127.0.0.1:${port}/slow`))
      yield* awaitSignal(arrived)
      cli.child.kill("SIGINT")
      yield* eventually(refuses(port), "the listener stops accepting")
      assert.isFalse(cli.hasExited(), "the process waits for the request in flight")
      fire(release, undefined)
      const res = yield* Fiber.join(inFlight)
      assert.deepStrictEqual([res.status, res.headers.connection, res.body], [200, "close", "done"])
      assert.deepStrictEqual(yield* exitOf(cli), { code: 0, signal: null }, cli.stderr())
    }))

  it.live("run --listen ADDR --upstream A --upstream B balances over both upstreams", () =>
    Effect.gen(function*() {
      const a = yield* startUpstream("a")
      const b = yield* startUpstream("b")
      const port = yield* freePort
      const cli = yield* spawnWith(["run", "--listen", `127.0.0.1:${port}`, "--upstream", a.url, "--upstream", b.url])
      const answered: Array<string | null> = [(yield* fetchWhenUp(cli, `http://127.0.0.1:${port}/0`, STARTUP_MS)).headers.get("x-upstream")]
      for (let i = 1; i < 4; i++) answered.push((yield* request(`http://127.0.0.1:${port}/${i}`)).headers.get("x-upstream"))
      assert.deepStrictEqual([...answered].sort(), ["a", "a", "b", "b"])
    }))
})
