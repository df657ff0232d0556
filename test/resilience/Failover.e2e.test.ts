/**
 * Failover under concurrency, end to end, at the retry budget's defaults (no `retry_budget` in
 * the config): a real gateway on loopback over two endpoints, keep-alive clients, and
 *
 * - an endpoint that is a child process SIGKILLed mid-run: what it refuses (connect failures)
 *   and what it was holding when it died (resets) must all fail over, so the clients see no
 *   error at all;
 * - every endpoint answering 503: the budget must still bound what the upstreams receive, at
 *   most (1 + percent/100) · requests + min_per_second · window tries.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, type Scope } from "effect"
import { type ChildProcess, spawn } from "node:child_process"
import { Agent, request as httpRequest } from "node:http"
import { startGateway, startUpstream } from "../support/harness.ts"

/** The budget's defaults (src/resilience/RetryBudget.ts), restated as the test's expectation. */
const PERCENT = 20
const MIN_PER_SECOND = 10
const WINDOW_S = 10

/** One client request's end: a status, or the error that ended it. */
type Outcome = { readonly status: number; readonly error: string | undefined }

const label = (o: Outcome): string => (o.error !== undefined ? `error(${o.error})` : String(o.status))

const tally = (labels: Iterable<string>): Record<string, number> => {
  const out: Record<string, number> = {}
  for (const l of labels) out[l] = (out[l] ?? 0) + 1
  return out
}

/** A GET over `agent`; settles once, with the status and the response body read to the end. */
const get = (agent: Agent, port: number, path: string) =>
  Effect.callback<Outcome>((resume) => {
    let settled = false
    const settle = (o: Outcome) => {
      if (settled) return
      settled = true
      clearTimeout(guard)
      resume(Effect.succeed(o))
    }
    const req = httpRequest({ host: "127.0.0.1", port, path, agent }, (res) => {
      const status = res.statusCode ?? 0
      const chunks: Array<Buffer> = []
      res.on("data", (c: Buffer) => chunks.push(c))
      res.on("end", () => settle({ status, error: status === 200 ? undefined : errorTag(Buffer.concat(chunks)) }))
      res.on("error", (e: NodeJS.ErrnoException) => settle({ status, error: e.code ?? e.message }))
    })
    req.on("error", (e: NodeJS.ErrnoException) => settle({ status: 0, error: e.code ?? e.message }))
    const guard = setTimeout(() => {
      settle({ status: 0, error: "hang" })
      req.destroy()
    }, 3_000)
    req.end()
    return Effect.sync(() => {
      clearTimeout(guard)
      req.destroy()
    })
  })

/** The gateway's JSON error body names the error (`{"error":"UpstreamReset",...}`); else the status alone. */
const errorTag = (body: Buffer): string | undefined => {
  try {
    const parsed = JSON.parse(body.toString()) as { error?: unknown }
    return typeof parsed.error === "string" ? parsed.error : undefined
  } catch {
    return undefined
  }
}

const clientAgent = (clients: number) =>
  Effect.acquireRelease(
    Effect.sync(() => new Agent({ keepAlive: true, maxSockets: clients })),
    (agent) => Effect.sync(() => agent.destroy())
  )

/**
 * `clients` closed-loop clients sending GETs until `ms` have passed (each its next GET as soon
 * as the last one ended); every outcome in order of completion.
 */
const load = (agent: Agent, port: number, clients: number, ms: number) =>
  Effect.gen(function*() {
    const outcomes: Array<Outcome> = []
    const until = performance.now() + ms
    const client = (c: number) =>
      Effect.gen(function*() {
        for (let i = 0; performance.now() < until; i++) outcomes.push(yield* get(agent, port, `/c${c}/${i}`))
      })
    yield* Effect.all(Array.from({ length: clients }, (_, c) => client(c)), { concurrency: "unbounded" })
    return outcomes
  })

/** A node:http server in its own process: `/health` and every other path answer 200. */
const CHILD_SERVER = `
const http = require("node:http")
const server = http.createServer((req, res) => {
  req.resume()
  req.on("end", () => {
    const body = "ok from child"
    res.writeHead(200, { "content-type": "text/plain", "content-length": body.length, "x-upstream": "child" })
    res.end(body)
  })
})
server.listen(0, "127.0.0.1", () => process.stdout.write(server.address().port + "\\n"))
`

interface ChildUpstream {
  readonly url: string
  readonly child: ChildProcess
  /** SIGKILLs the process and waits until it is gone (its sockets closed by the kernel). */
  readonly kill: Effect.Effect<void>
}

/** A child-process upstream on 127.0.0.1 for the life of the scope (SIGKILLed at the end if still alive). */
const startChildUpstream: Effect.Effect<ChildUpstream, never, Scope.Scope> = Effect.acquireRelease(
  Effect.callback<ChildUpstream>((resume) => {
    const child = spawn(process.execPath, ["-e", CHILD_SERVER], { stdio: ["ignore", "pipe", "inherit"] })
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()))
    let out = ""
    child.stdout!.setEncoding("utf8").on("data", (s: string) => {
      out += s
      const line = /^(\d+)\n/.exec(out)
      if (line === null) return
      child.stdout!.removeAllListeners("data")
      resume(Effect.succeed({
        url: `http://127.0.0.1:${line[1]}`,
        child,
        kill: Effect.promise(() => {
          if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL")
          return exited
        })
      }))
    })
  }),
  (u) => u.kill
)

/** One route `all` over upstream `app` = `urls` with `route` and `upstream` merged in; no `retry_budget`. */
const gatewayConfig = (urls: ReadonlyArray<string>, route: Record<string, unknown>, upstream: Record<string, unknown>) => ({
  log: { level: "none", access_log: false },
  servers: [{ name: "web", listen: "127.0.0.1:0", routes: [{ id: "all", upstream: "app", ...route }] }],
  upstreams: { app: { endpoints: urls.map((url) => ({ url })), ...upstream } }
})

const RETRY = { attempts: 3, on: ["connect-failure", "reset", 502, 503], backoff: { base: "1ms", max: "5ms" } }

describe("failover at the default retry budget", () => {
  it.live("8 keep-alive clients, one of two endpoints SIGKILLed mid-run, health checks every 300ms: zero client errors", () =>
    Effect.gen(function*() {
      const victim = yield* startChildUpstream
      const survivor = yield* startUpstream("survivor")
      const gateway = yield* startGateway(gatewayConfig(
        [victim.url, survivor.url],
        { retry: RETRY },
        { health_check: { path: "/health", interval: "300ms", timeout: "200ms" } }
      ))
      const agent = yield* clientAgent(8)
      let killedAt = 0
      const [outcomes] = yield* Effect.all([
        load(agent, gateway.port, 8, 3_000),
        Effect.sleep("1 second").pipe(
          Effect.andThen(victim.kill),
          Effect.andThen(Effect.sync(() => void (killedAt = survivor.seen.length)))
        )
      ], { concurrency: "unbounded" })
      const errors = outcomes.filter((o) => o.status !== 200)
      console.log(
        `[failover kill] ${outcomes.length} GETs from 8 clients over 3s, victim SIGKILLed at 1s: ` +
          `${JSON.stringify(tally(outcomes.map(label)))}; survivor saw ${survivor.seen.length} (${killedAt} before the kill)`
      )
      assert.isAbove(outcomes.length, 500, "the clients kept the gateway busy")
      assert.isNotNull(victim.child.signalCode, "the victim was killed")
      assert.deepStrictEqual(tally(errors.map(label)), {}, "client-visible errors")
    }), 20_000)

  it.live("every endpoint answering 503: what the upstreams receive is at most (1 + percent/100) · requests + min_per_second · window", () =>
    Effect.gen(function*() {
      const unavailable = (name: string) =>
        startUpstream(name, {
          handler: (_req, res) => {
            res.writeHead(503, { "content-type": "text/plain", "content-length": 11 })
            res.end("unavailable")
          }
        })
      const a = yield* unavailable("a")
      const b = yield* unavailable("b")
      const gateway = yield* startGateway(gatewayConfig([a.url, b.url], { retry: RETRY }, {}))
      const agent = yield* clientAgent(4)
      const REQUESTS = 2_000
      const started = performance.now()
      const outcomes = yield* Effect.forEach(
        Array.from({ length: REQUESTS }, (_, i) => i),
        (i) => get(agent, gateway.port, `/storm/${i}`),
        { concurrency: 4 }
      )
      const ms = performance.now() - started
      const received = a.seen.length + b.seen.length
      // One floor per window the run touched: the window moves in slices of window / 10 (1s).
      const windows = Math.ceil((Math.ceil(ms / 1_000) + 1) / WINDOW_S)
      const floor = MIN_PER_SECOND * WINDOW_S * windows
      const bound = (1 + PERCENT / 100) * REQUESTS + floor
      console.log(
        `[failover 503 storm] ${REQUESTS} GETs from 4 clients in ${ms.toFixed(0)}ms, attempts 3: ` +
          `upstreams received ${received} tries (a=${a.seen.length} b=${b.seen.length}); ` +
          `bound (1 + ${PERCENT}%) · ${REQUESTS} + ${floor} = ${bound}; without a budget it would be ${3 * REQUESTS}; ` +
          `clients saw ${JSON.stringify(tally(outcomes.map(label)))}`
      )
      assert.isTrue(outcomes.every((o) => o.status === 503), "every request ends with the upstream's 503")
      assert.isAtMost(received, bound)
      assert.isAbove(received, REQUESTS, "the budget still lets some retries through")
    }), 30_000)
})
