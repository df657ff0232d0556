/**
 * The real `fibergate` command, spawned as a child process (`node bin/fibergate.js ...`, with the
 * Node running the tests). Every child is killed by a finalizer if a test leaves it running.
 */
import { Effect, type Scope } from "effect"
import { spawn, type ChildProcess } from "node:child_process"
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"

export const ROOT = fileURLToPath(new URL("../../", import.meta.url))
export const VERSION = (JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string }).version

export interface Exit {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
}

export interface Cli {
  readonly child: ChildProcess
  readonly stdout: () => string
  readonly stderr: () => string
  /** Resolves once the process has exited. */
  readonly exited: Promise<Exit>
  readonly hasExited: () => boolean
}

/** The CLI's environment: this one without FIBERGATE_* variables, which would change the config. */
export const cliEnv = (): NodeJS.ProcessEnv =>
  Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith("FIBERGATE_")))

export interface SpawnOptions {
  /** The working directory (default: the repository root). */
  readonly cwd?: string
  /** Variables added to `cliEnv()`, e.g. `FIBERGATE_CONFIG`. */
  readonly env?: Record<string, string>
}

/** Spawns `node bin/fibergate.js ...args` for the life of the scope (SIGKILLed if still running at the end). */
export const spawnCli = (args: ReadonlyArray<string>, options: SpawnOptions = {}): Effect.Effect<Cli, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync((): Cli => {
      const child = spawn(process.execPath, [join(ROOT, "bin/fibergate.js"), ...args], {
        cwd: options.cwd ?? ROOT,
        env: { ...cliEnv(), ...options.env },
        stdio: ["ignore", "pipe", "pipe"]
      })
      let stdout = ""
      let stderr = ""
      let done = false
      child.stdout!.setEncoding("utf8").on("data", (s: string) => void (stdout += s))
      child.stderr!.setEncoding("utf8").on("data", (s: string) => void (stderr += s))
      const exited = new Promise<Exit>((resolve) =>
        child.once("close", (code, signal) => {
          done = true
          resolve({ code, signal })
        })
      )
      return { child, stdout: () => stdout, stderr: () => stderr, exited, hasExited: () => done }
    }),
    (cli) =>
      Effect.promise(async () => {
        if (!cli.hasExited()) cli.child.kill("SIGKILL")
        await cli.exited
      })
  )

/** Waits for the process to exit, at most `ms`; fails the test (with its output) otherwise. */
export const exitOf = (cli: Cli, ms = 10_000) =>
  Effect.promise(() => cli.exited).pipe(
    Effect.timeoutOrElse({
      duration: ms,
      orElse: () => Effect.die(new Error(`fibergate did not exit within ${ms} ms\nstdout:\n${cli.stdout()}\nstderr:\n${cli.stderr()}`))
    })
  )

/** Runs the CLI to completion. */
export const runCli = (args: ReadonlyArray<string>, options: SpawnOptions = {}) =>
  Effect.gen(function*() {
    const cli = yield* spawnCli(args, options)
    const exit = yield* exitOf(cli)
    return { ...exit, stdout: cli.stdout(), stderr: cli.stderr() }
  })

/** A temporary directory holding `files` (relative paths, parents created) for the life of the scope. */
export const tempDir = (files: Record<string, string>): Effect.Effect<string, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const dir = mkdtempSync(join(tmpdir(), "fibergate-cli-"))
      for (const [name, content] of Object.entries(files)) {
        mkdirSync(dirname(join(dir, name)), { recursive: true })
        writeFileSync(join(dir, name), content)
      }
      return dir
    }),
    (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
  )

/** A temporary file for the life of the scope. */
export const tempFile = (name: string, content: string): Effect.Effect<string, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const dir = mkdtempSync(join(tmpdir(), "fibergate-cli-"))
      const path = join(dir, name)
      writeFileSync(path, content)
      return { dir, path }
    }),
    ({ dir }) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
  ).pipe(Effect.map(({ path }) => path))

/**
 * Fetches `url` until something answers, for at most ~5 s; fails early (with the CLI's output)
 * if the process exits first.
 */
export const fetchWhenUp = (cli: Cli, url: string, deadlineMs = 5_000) =>
  Effect.promise(async () => {
    const start = Date.now()
    let last: unknown
    while (Date.now() - start < deadlineMs) {
      if (cli.hasExited()) {
        throw new Error(`fibergate exited before serving ${url}\nstdout:\n${cli.stdout()}\nstderr:\n${cli.stderr()}`)
      }
      try {
        const res = await fetch(url, { signal: AbortSignal.timeout(1_000) })
        return { status: res.status, headers: res.headers, body: await res.text() }
      } catch (e) {
        last = e
        await new Promise((r) => setTimeout(r, 50))
      }
    }
    throw new Error(`${url} did not answer within ${deadlineMs} ms (${String(last)})\nstderr:\n${cli.stderr()}`)
  })

/**
 * A one-listener YAML config on loopback with upstream `app` at `upstream`. `head` lines come
 * first (log, shutdown, workers, …); `routes` replaces the catch-all route `all`.
 */
export const oneRouteConfig = (options: {
  readonly port: number
  readonly upstream: string
  readonly adminPort?: number
  readonly name?: string
  readonly head?: ReadonlyArray<string>
  readonly routes?: string
}): string =>
  [
    ...(options.head ?? []),
    ...(options.adminPort === undefined ? [] : [`admin: { listen: "127.0.0.1:${options.adminPort}" }`]),
    "servers:",
    `  - name: ${options.name ?? "public"}`,
    `    listen: "127.0.0.1:${options.port}"`,
    `    routes: ${options.routes ?? "[ { id: all, upstream: app } ]"}`,
    "upstreams:",
    "  app:",
    `    endpoints: [ { url: "${options.upstream}" } ]`,
    ""
  ].join("\n")
