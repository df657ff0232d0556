/**
 * The hot-reload guarantee under load: while 24 keep-alive clients send continuously, 20
 * reloads through `PUT /config` add, change and remove routes and upstreams. No request may
 * fail, and every request must be answered by the route set in force when it arrived.
 *
 * Generation k of the config (k = 1..21) has, on listener `web`:
 * - `stable` (prefix `/s`) to upstream `shared`, whose endpoint changes every generation;
 * - `dyn-k` and `dyn-(k-1)` (prefix `/d/<j>`) to upstreams `g<j>`, so each generation adds a route
 *   and an upstream, and removes the route and the upstream added two generations before;
 * - `fallback` (everything else) to upstream `base`.
 * Every route sets `x-gen: k` and `x-route: <id>` on the request; the upstreams echo them back.
 *
 * Per request the client records the latest generation whose `PUT` had been answered before
 * the request was sent (the least the gateway may use) and the latest generation whose `PUT`
 * had been sent before the response arrived (the most it may use). The answering generation
 * must lie in that window, and the route and upstream that answered must be the ones that
 * generation gives the path: a route removed before the request was sent never answers it.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { Agent, request as httpRequest } from "node:http"
import { startGateway, startUpstream, type TestUpstream } from "../support/harness.ts"

const CLIENTS = 24
const RELOADS = 20
/** Requests answered after each reload (sent once its PUT was answered) before the next reload. */
const PER_GENERATION = CLIENTS

/** Resolves once `done()` holds (checked every 5 ms); rejects, naming `what`, after `ms`. */
const until = async (done: () => boolean, what: string, ms = 5_000) => {
  const deadline = Date.now() + ms
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting until ${what}`)
    await new Promise((r) => setTimeout(r, 5))
  }
}

interface Answer {
  readonly status: number
  readonly body: string
  readonly reused: boolean
}

/** One GET on the client's keep-alive agent. Network errors, and no answer within 5 s, resolve as status 0 (counted as failures). */
const send = (agent: Agent, port: number, path: string) =>
  new Promise<Answer & { readonly error?: string }>((resolve) => {
    const req = httpRequest({ host: "127.0.0.1", port, path, agent, signal: AbortSignal.timeout(5_000) }, (res) => {
      const chunks: Array<Buffer> = []
      res.on("data", (c: Buffer) => chunks.push(c))
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString(), reused: req.reusedSocket }))
      res.on("error", (e) => resolve({ status: 0, body: "", reused: req.reusedSocket, error: e.message }))
    })
    req.on("error", (e) => resolve({ status: 0, body: "", reused: req.reusedSocket, error: e.message }))
    req.end()
  })

const put = (adminPort: number, body: unknown) =>
  fetch(`http://127.0.0.1:${adminPort}/config`, {
    method: "PUT",
    body: JSON.stringify(body),
    headers: { "content-type": "application/json" },
    signal: AbortSignal.timeout(5_000)
  }).then(async (res) => ({ status: res.status, body: await res.text() }))

/** The endpoints of each upstream in generation k (indexes into the four test upstreams). */
const sharedOf = (k: number) => [k % 4]
const dynOf = (j: number) => [j % 4, (j + 1) % 4]

const generation = (k: number, ups: ReadonlyArray<TestUpstream>, port: number, adminPort: number) => {
  const endpoints = (indexes: ReadonlyArray<number>) => ({ endpoints: indexes.map((i) => ({ url: ups[i].url })) })
  const tag = (id: string) => ({ request: { set: { "x-gen": String(k), "x-route": id } } })
  const dyn = [k - 1, k].filter((j) => j >= 1)
  return {
    admin: { listen: `127.0.0.1:${adminPort}` },
    log: { level: "none", access_log: false },
    servers: [{
      name: "web",
      listen: `127.0.0.1:${port}`,
      routes: [
        { id: "stable", match: { path: { prefix: "/s" } }, upstream: "shared", headers: tag("stable") },
        ...dyn.map((j) => ({ id: `dyn-${j}`, match: { path: { prefix: `/d/${j}` } }, upstream: `g${j}`, headers: tag(`dyn-${j}`) })),
        { id: "fallback", upstream: "base", headers: tag("fallback") }
      ]
    }],
    upstreams: {
      base: endpoints([0]),
      shared: endpoints(sharedOf(k)),
      ...Object.fromEntries(dyn.map((j) => [`g${j}`, endpoints(dynOf(j))]))
    }
  }
}

/** The route and the upstreams that generation g gives a path. */
const expected = (g: number, path: string): { readonly route: string; readonly upstreams: ReadonlyArray<number> } => {
  if (path.startsWith("/s/")) return { route: "stable", upstreams: sharedOf(g) }
  const dyn = /^\/d\/(\d+)\//.exec(path)
  if (dyn !== null) {
    const j = Number(dyn[1])
    if (j >= 1 && (j === g || j === g - 1)) return { route: `dyn-${j}`, upstreams: dynOf(j) }
  }
  return { route: "fallback", upstreams: [0] }
}

interface Sample {
  readonly path: string
  /** The latest generation whose PUT was answered before the request was sent. */
  readonly low: number
  /** The latest generation whose PUT was sent before the response arrived. */
  readonly high: number
  readonly answer: Answer & { readonly error?: string }
}

describe("reloads under load", () => {
  it.live(`${RELOADS} reloads that add, change and remove routes and upstreams while ${CLIENTS} keep-alive clients send: no failed request, each answered by the route set in force when it arrived`, () =>
    Effect.gen(function*() {
      const ups = [yield* startUpstream("u0"), yield* startUpstream("u1"), yield* startUpstream("u2"), yield* startUpstream("u3")]
      const gateway = yield* startGateway(generation(1, ups, 0, 0))
      const port = gateway.port
      const adminPort = gateway.adminPort!

      let acked = 1 // answered PUTs
      let sent = 1 // PUTs sent
      let done = false
      const samples: Array<Sample> = []
      /** Answers by the generation acknowledged when their request was sent. */
      const answeredAt = new Map<number, number>()

      const client = (c: number) =>
        Effect.promise(async () => {
          const agent = new Agent({ keepAlive: true, maxSockets: 1 })
          for (let i = 0; !done; i++) {
            const low = acked
            // Paths around the current generation: routes just added, in force, just removed, not yet added.
            const kind = (i + c) % 6
            const path = kind === 0
              ? `/s/${c}/${i}`
              : kind === 5
              ? `/other/${c}/${i}`
              : `/d/${low + 2 - kind}/${c}/${i}`
            const answer = await send(agent, port, path)
            samples.push({ path, low, high: sent, answer })
            answeredAt.set(low, (answeredAt.get(low) ?? 0) + 1)
          }
          agent.destroy()
        })

      // Paced by the traffic, not by the clock: each generation serves PER_GENERATION requests
      // sent while it is in force before the next reload, however slow the machine is today.
      const reloads = Effect.promise(async () => {
        try {
          await until(() => (answeredAt.get(1) ?? 0) >= PER_GENERATION, "the clients get going")
          for (let k = 2; k <= RELOADS + 1; k++) {
            sent = k
            const res = await put(adminPort, generation(k, ups, port, adminPort))
            assert.strictEqual(res.status, 200, res.body)
            assert.strictEqual(JSON.parse(res.body).generation, k, "the PUT was applied")
            acked = k
            await until(() => (answeredAt.get(k) ?? 0) >= PER_GENERATION, `${PER_GENERATION} requests are answered in generation ${k}`)
          }
        } finally {
          done = true
        }
      })

      yield* Effect.all([reloads, ...Array.from({ length: CLIENTS }, (_, c) => client(c))], { concurrency: "unbounded" })

      const failed = samples.filter((s) => s.answer.status !== 200)
      assert.deepStrictEqual(
        failed.slice(0, 5).map((s) => ({ path: s.path, status: s.answer.status, error: s.answer.error, body: s.answer.body.slice(0, 200) })),
        [],
        `${failed.length} of ${samples.length} requests failed`
      )
      const wrong: Array<string> = []
      const seenGenerations = new Set<number>()
      for (const s of samples) {
        const echo = JSON.parse(s.answer.body) as { upstream: string; headers: Record<string, string> }
        const g = Number(echo.headers["x-gen"])
        seenGenerations.add(g)
        const want = expected(g, s.path)
        const problems = [
          g < s.low || g > s.high ? `generation ${g} outside [${s.low}, ${s.high}]` : "",
          echo.headers["x-route"] !== want.route ? `route ${echo.headers["x-route"]}, generation ${g} routes it to ${want.route}` : "",
          !want.upstreams.map((i) => `u${i}`).includes(echo.upstream) ? `upstream ${echo.upstream}, not one of ${want.route}'s in generation ${g}` : ""
        ].filter((p) => p !== "")
        if (problems.length > 0) wrong.push(`${s.path}: ${problems.join("; ")}`)
      }
      assert.deepStrictEqual(wrong.slice(0, 10), [], `${wrong.length} of ${samples.length} requests answered by the wrong route set`)

      // The test exercised what it claims: enough traffic, over keep-alive, across every generation.
      assert.isAtLeast(samples.length, (RELOADS + 1) * PER_GENERATION, "continuous load")
      assert.isAbove(samples.filter((s) => s.answer.reused).length / samples.length, 0.95, "keep-alive connections")
      assert.strictEqual(seenGenerations.size, RELOADS + 1, `generations answered: ${[...seenGenerations].sort((a, b) => a - b)}`)
      assert.isTrue(samples.some((s) => s.path.startsWith(`/d/${s.low - 2}/`)), "requests for routes removed before they were sent")
    }))
})
