/**
 * The package as a user gets it: `npm pack` (which builds dist/ through `prepack`), the tarball
 * installed into an empty project with the pinned Node first on PATH, then the CLI through
 * `npx` (`--version`, `check`, `run` serving a request), a plain-Node ESM import of
 * `Gateway.layer` running a gateway, and `tsc` checking a consumer file against the shipped
 * types. The install resolves from npm's cache, which `npm ci` filled (`--prefer-offline`).
 *
 * The installed CLI runs the esbuild bundle (dist/cli/fibergate.js), not the modules the
 * repository runs, so what only the bundle does is checked here: the chunks it loads on first
 * use (the Redis limiter), the HTTP/2 upstream client whose loading the build defers, and its
 * resident memory at rest.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { execFile, spawn } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { createServer, type AddressInfo } from "node:net"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { createServer as createH2cServer } from "node:http2"
import { startUpstream } from "../support/harness.ts"
import { eventually } from "../support/liveGateway.ts"
import { startRedis } from "../support/redis.ts"

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..")
const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { devDependencies: Record<string, string> }
/** The pinned Node's directory first on PATH, so `npx` and the bin's `env node` shebang run it. */
const env = { ...process.env, PATH: `${dirname(process.execPath)}:${process.env.PATH ?? ""}`, npm_config_update_notifier: "false" }

interface Run {
  readonly code: number
  readonly stdout: string
  readonly stderr: string
}

const run = (cmd: string, args: ReadonlyArray<string>, cwd: string, timeoutMs = 120_000) =>
  Effect.callback<Run>((resume) => {
    execFile(cmd, args, { cwd, env, timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) =>
      resume(Effect.succeed({ code: error === null ? 0 : typeof error.code === "number" ? error.code : 1, stdout, stderr })))
  })

const freePort = Effect.callback<number>((resume) => {
  const server = createServer()
  server.listen(0, "127.0.0.1", () => {
    const port = (server.address() as AddressInfo).port
    server.close(() => resume(Effect.succeed(port)))
  })
})

const get = (url: string) =>
  Effect.tryPromise(async () => {
    const res = await fetch(url, { signal: AbortSignal.timeout(2_000) })
    return { status: res.status, body: await res.text() }
  })

const gatewayConfig = (listen: string, upstream: string) => `servers:
  - name: web
    listen: "${listen}"
    routes: [ { id: all, upstream: app } ]
upstreams:
  app: { endpoints: [ { url: "${upstream}" } ] }
log: { level: warn, access_log: false }
`

/** The config `run` starts on: one route, and the admin API for the metrics. */
const runConfig = (listen: string, admin: string, upstream: string) => `servers:
  - name: web
    listen: "${listen}"
    routes: [ { id: all, upstream: app } ]
upstreams:
  app: { endpoints: [ { url: "${upstream}" } ] }
admin: { listen: "${admin}" }
telemetry: { metrics: { enabled: true } }
log: { level: warn, access_log: false }
`

/** The config it is then reloaded to: a route rate-limited in Redis and one to an h2c upstream. */
const reloadedConfig = (listen: string, admin: string, upstream: string, h2c: string, redis: string) => `servers:
  - name: web
    listen: "${listen}"
    routes:
      - { id: limited, match: { path: { prefix: /limited } }, upstream: app, middlewares: [ { rate_limit: { key: global, limit: 1, window: 1m, store: redis } } ] }
      - { id: h2, match: { path: { prefix: /h2 } }, upstream: h2 }
      - { id: all, upstream: app }
upstreams:
  app: { endpoints: [ { url: "${upstream}" } ] }
  h2: { endpoints: [ { url: "${h2c}" } ], pool: { http2: true } }
redis: { url: "${redis}", timeout: 1s, on_error: allow }
admin: { listen: "${admin}" }
telemetry: { metrics: { enabled: true } }
log: { level: warn, access_log: false }
`

/** An HTTP/2 upstream by prior knowledge that names the protocol it was spoken to in. */
const startH2cUpstream = Effect.acquireRelease(
  Effect.callback<{ readonly url: string; readonly close: () => void }>((resume) => {
    const server = createH2cServer((req, res) => res.end(`h2 upstream: HTTP/${req.httpVersion}`))
    server.listen(0, "127.0.0.1", () =>
      resume(Effect.succeed({ url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, close: () => server.close() })))
  }),
  (upstream) => Effect.sync(upstream.close)
)

/**
 * The bound on the installed gateway's resident memory at rest. The bundle starts in about
 * 70 MB; the same code run as separate modules (dist/cli/main.js) in about 120 MB: a build
 * that stopped bundling would fail here. Wide enough for a machine's variance.
 */
const IDLE_RSS_BOUND_MB = 100

/**
 * A consumer of the library: the same text runs as plain-Node ESM (consumer.mjs) and is
 * type-checked by tsc against the shipped .d.ts (consumer.ts), so it carries no annotations.
 */
const consumer = `import { Effect, Layer } from "effect"
import { Gateway, Listeners } from "fibergate"

const [listen, upstream] = process.argv.slice(2)
const program = Effect.gen(function*() {
  const listeners = yield* Listeners
  const port = listeners.addresses.get("web")?.port
  const res = yield* Effect.promise(() => fetch(\`http://127.0.0.1:\${port}/from-library\`))
  const body = yield* Effect.promise(() => res.text())
  console.log(JSON.stringify({ status: res.status, body }))
})
const layer = Gateway.layer({
  servers: [{ name: "web", listen, routes: [{ id: "all", upstream: "app" }] }],
  upstreams: { app: { endpoints: [{ url: upstream }] } },
  log: { level: "warn", access_log: false }
})
await Effect.runPromise(Effect.scoped(Layer.build(layer).pipe(Effect.flatMap((context) => Effect.provide(program, context)))))
`

/** Uses of the shipped types tsc must refuse: a config of the wrong shape, a port read as a string. */
const misuse = `import type { ConfigEncoded } from "fibergate"
import { Effect } from "effect"
import { Listeners } from "fibergate"

export const config: ConfigEncoded = { servers: "nope", upstreams: {} }
export const port = Effect.map(Listeners.asEffect(), (l) => {
  const p: string = l.addresses.get("web")!.port
  return p
})
`

describe("the npm package", () => {
  it.live("packs dist/ and no sources; installed into an empty project, its CLI checks and runs a config, and the library imports, runs and type-checks", () =>
    Effect.gen(function*() {
      const dir = mkdtempSync(join(tmpdir(), "fibergate-pack-"))
      yield* Effect.addFinalizer(() => Effect.sync(() => rmSync(dir, { recursive: true, force: true })))

      const packed = yield* run("npm", ["pack", "--json", "--pack-destination", dir], ROOT)
      assert.strictEqual(packed.code, 0, packed.stderr)
      const [info] = JSON.parse(packed.stdout) as Array<{ filename: string; files: Array<{ path: string }> }>
      const files = info.files.map((f) => f.path)
      for (const needed of ["dist/index.js", "dist/index.d.ts", "dist/cli/main.js", "dist/cli/fibergate.js", "bin/fibergate.js", "config/fibergate.yaml", "config/demo.yaml", "config/fibergate.schema.json", "README.md", "LICENSE", "package.json"]) {
        assert.include(files, needed)
      }
      const tops = new Set(files.map((f) => f.split("/")[0]))
      for (const absent of ["src", "test", "bench", ".ci", "examples", "scripts", "node_modules"]) assert.isFalse(tops.has(absent), absent)
      assert.isFalse(files.some((f) => f.endsWith(".ts") && !f.endsWith(".d.ts")), "no TypeScript source")
      assert.isTrue(files.some((f) => /^dist\/cli\/chunks\/RedisLimiter-\w+\.js$/.test(f)), "the Redis limiter is a chunk of its own")

      const project = join(dir, "project")
      yield* run("mkdir", ["-p", project], dir)
      writeFileSync(join(project, "package.json"), JSON.stringify({ name: "consumer", private: true, type: "module" }))
      const installed = yield* run("npm", ["install", "--prefer-offline", "--no-audit", "--no-fund", join(dir, info.filename), `@types/node@${pkg.devDependencies["@types/node"]}`], project)
      assert.strictEqual(installed.code, 0, installed.stderr)

      const version = yield* run("npx", ["--no-install", "fibergate", "--version"], project)
      assert.match(version.stdout, /fibergate v\d+\.\d+\.\d+/)

      const upstream = yield* startUpstream("app")
      const port = yield* freePort
      writeFileSync(join(project, "gateway.yaml"), gatewayConfig(`127.0.0.1:${port}`, upstream.url))
      const checked = yield* run("npx", ["--no-install", "fibergate", "check", "-c", "gateway.yaml"], project)
      assert.strictEqual(checked.code, 0, checked.stderr)
      assert.match(checked.stdout, /gateway\.yaml: ok/)
      writeFileSync(join(project, "bad.yaml"), gatewayConfig("127.0.0.1:1", upstream.url).replace("upstream: app", "upstream: nowhere"))
      const refused = yield* run("npx", ["--no-install", "fibergate", "check", "-c", "bad.yaml"], project)
      assert.notStrictEqual(refused.code, 0)
      assert.match(refused.stderr + refused.stdout, /nowhere/)

      // `run` from the installed bin serves requests, then stops on SIGTERM.
      const redis = yield* startRedis
      const h2c = yield* startH2cUpstream
      const adminPort = yield* freePort
      writeFileSync(join(project, "run.yaml"), runConfig(`127.0.0.1:${port}`, `127.0.0.1:${adminPort}`, upstream.url))
      const child = spawn("npx", ["--no-install", "fibergate", "run", "-c", "run.yaml"], { cwd: project, env, stdio: "ignore", detached: true })
      yield* Effect.addFinalizer(() => Effect.sync(() => {
        try {
          process.kill(-child.pid!, "SIGKILL")
        } catch {}
      }))
      let answered: { status: number; body: string } | undefined
      yield* eventually(
        get(`http://127.0.0.1:${port}/through-cli`).pipe(
          Effect.map((r) => {
            answered = r
            return true
          }),
          Effect.orElseSucceed(() => false)
        ),
        "the installed gateway answering",
        20_000
      )
      assert.strictEqual(answered?.status, 200)
      assert.strictEqual(JSON.parse(answered!.body).url, "/through-cli")
      const metrics = yield* get(`http://127.0.0.1:${adminPort}/metrics`)
      const rss = Number(/^process_resident_memory_bytes(?:\{[^}]*\})? (\d+)/m.exec(metrics.body)?.[1])
      assert.isAbove(rss, 20 * 2 ** 20, metrics.body.slice(0, 300))
      assert.isBelow(rss / 2 ** 20, IDLE_RSS_BOUND_MB)
      // Reloaded (it follows the file) to what loads on first use: the Redis chunk, which then
      // counts (with Redis unreachable, on_error: allow would pass every request), and undici's
      // HTTP/2 client.
      writeFileSync(join(project, "run.yaml"), reloadedConfig(`127.0.0.1:${port}`, `127.0.0.1:${adminPort}`, upstream.url, h2c.url, redis.url))
      yield* eventually(get(`http://127.0.0.1:${port}/h2`).pipe(Effect.map((r) => r.body === "h2 upstream: HTTP/2.0"), Effect.orElseSucceed(() => false)), "the h2c upstream answering after the reload", 10_000)
      yield* eventually(get(`http://127.0.0.1:${port}/limited`).pipe(Effect.map((r) => r.status === 429), Effect.orElseSucceed(() => false)), "a request limited through Redis", 10_000)
      // npx does not pass signals on: the group (npx and the gateway under it) gets the SIGTERM.
      process.kill(-child.pid!, "SIGTERM")
      yield* eventually(get(`http://127.0.0.1:${port}/`).pipe(Effect.as(false), Effect.orElseSucceed(() => true)), "the gateway stopped", 10_000)

      // The library, from plain Node (no type stripping under node_modules) and through tsc.
      writeFileSync(join(project, "consumer.ts"), consumer)
      writeFileSync(join(project, "consumer.mjs"), consumer)
      const libPort = yield* freePort
      const imported = yield* run(process.execPath, ["consumer.mjs", `127.0.0.1:${libPort}`, upstream.url], project, 30_000)
      assert.strictEqual(imported.code, 0, imported.stderr)
      const reply = JSON.parse(imported.stdout.trim().split("\n").pop()!) as { status: number; body: string }
      assert.strictEqual(reply.status, 200)
      assert.strictEqual(JSON.parse(reply.body).url, "/from-library")

      writeFileSync(join(project, "tsconfig.json"), JSON.stringify({
        compilerOptions: { target: "ES2023", module: "NodeNext", moduleResolution: "NodeNext", strict: true, noEmit: true, types: ["node"], lib: ["ES2023", "DOM"] },
        files: ["consumer.ts"]
      }))
      const tsc = join(ROOT, "node_modules", "typescript", "bin", "tsc")
      const typed = yield* run(process.execPath, [tsc, "-p", "tsconfig.json"], project)
      assert.strictEqual(typed.code, 0, typed.stdout + typed.stderr)
      // The types are real ones: misuses are errors, each where it is.
      writeFileSync(join(project, "misuse.ts"), misuse)
      writeFileSync(join(project, "tsconfig.json"), JSON.stringify({
        compilerOptions: { target: "ES2023", module: "NodeNext", moduleResolution: "NodeNext", strict: true, noEmit: true, types: ["node"] },
        files: ["misuse.ts"]
      }))
      const mistyped = yield* run(process.execPath, [tsc, "-p", "tsconfig.json"], project)
      assert.notStrictEqual(mistyped.code, 0)
      assert.match(mistyped.stdout, /misuse\.ts\(5,/)
      assert.match(mistyped.stdout, /misuse\.ts\(7,/)
    }), 240_000)
})
