/**
 * `buildUpstreamGroup`: which endpoints a group hands traffic to (health checks, outlier
 * ejection, circuit breaker, `panic`), the `hash_on` key, what a rebuild keeps (pools, live
 * counters, health, ejection and circuit state) and retires, and the pool settings reaching the
 * real connection pool (a bare TCP upstream counts connections and sees them close).
 */
import { Effect } from "effect"
import type { Pool } from "undici"
import { afterEach, describe, expect, it } from "vitest"
import type { Upstream } from "../../src/config/Schema.ts"
import { circuitHalfOpen, circuitTryStarted, recordCircuit } from "../../src/resilience/Circuit.ts"
import { recordOutcome } from "../../src/resilience/Outlier.ts"
import { makeBalancer } from "../../src/upstream/Balancer.ts"
import type { PickContext } from "../../src/upstream/Endpoint.ts"
import { buildUpstreamGroup, type Endpoint, type UpstreamGroup } from "../../src/upstream/UpstreamGroup.ts"
import { unansweredPort } from "../support/blackhole.ts"
import { decoded } from "../support/effects.ts"
import { startTcpUpstream, type TcpUpstream, within } from "../support/tcpUpstream.ts"

const A = "http://127.0.0.1:1"
const B = "http://127.0.0.1:2"

/** The `app` upstream of a config holding `app` as written in YAML (durations as strings). */
const upstreamOf = (app: Record<string, unknown>): Upstream =>
  decoded({
    log: { level: "none", access_log: false },
    servers: [{ name: "web", listen: "127.0.0.1:0", routes: [{ id: "all", upstream: "app" }] }],
    upstreams: { app }
  }).upstreams.app

const endpoints = (...urls: ReadonlyArray<string | { readonly url: string; readonly weight: number }>) =>
  urls.map((u) => (typeof u === "string" ? { url: u } : u))

// Every pool a test's groups opened is destroyed after it, so no socket outlives the test.
const opened = new Set<Pool>()
const servers: Array<TcpUpstream> = []
afterEach(async () => {
  await Promise.all([...opened].map((p) => p.destroy().catch(() => undefined)))
  opened.clear()
  await Promise.all(servers.splice(0).map((s) => s.close()))
})

const build = (upstream: Upstream, previous?: UpstreamGroup) => {
  const built = buildUpstreamGroup("app", upstream, previous)
  for (const e of built.group.endpoints) opened.add(e.pool)
  return built
}

const server = async (options?: Parameters<typeof startTcpUpstream>[0]) => {
  const s = await startTcpUpstream(options)
  servers.push(s)
  return s
}

const CTX: PickContext = { clientIp: "10.0.0.1", path: "/", header: () => undefined }

/** What the proxy handler does per request: an eligible endpoint, or with `fail_open` and none eligible, any. */
const pickFor = (group: UpstreamGroup, ctx: PickContext = CTX) =>
  (group.balancer.pick(ctx, group.eligible) ?? (group.failOpen ? group.balancer.pick(ctx) : undefined)) as Endpoint | undefined

/** The origins picked over `n` requests, in order. */
const picks = (group: UpstreamGroup, n: number) => Array.from({ length: n }, () => pickFor(group)?.origin)

const endpoint = (group: UpstreamGroup, origin: string) => group.endpoints.find((e) => e.origin === origin) ?? expect.fail(`no ${origin}`)

/** A GET through `pool`, its body read. */
const get = async (pool: Pool) => {
  const res = await pool.request({ method: "GET", path: "/" })
  await res.body.text()
  return res.statusCode
}

describe("which endpoints take traffic", () => {
  it("with health checks, an endpoint the checks marked down gets none until it is up again", () => {
    const { group } = build(upstreamOf({ endpoints: endpoints(A, B), health_check: { interval: "5s" } }))
    endpoint(group, A).healthy = false
    expect(picks(group, 6)).toEqual(Array(6).fill(B))
    endpoint(group, A).healthy = true
    expect(new Set(picks(group, 6))).toEqual(new Set([A, B]))
  })

  it("new endpoints start healthy: under health checks both take traffic before any probe", () => {
    const { group } = build(upstreamOf({ endpoints: endpoints(A, B), health_check: { interval: "5s" } }))
    expect(group.endpoints.map((e) => [e.healthy, e.ejected])).toEqual([[true, false], [true, false]])
    expect(new Set(picks(group, 4))).toEqual(new Set([A, B]))
  })

  it("with a circuit breaker, an endpoint needs to be healthy, not ejected and admitted by its circuit", () => {
    const { group } = build(upstreamOf({
      endpoints: endpoints(A, B),
      health_check: { interval: "5s" },
      outlier: { consecutive_failures: 3 },
      circuit_breaker: { consecutive_failures: 1 }
    }))
    const a = endpoint(group, A)
    expect(new Set(picks(group, 4))).toEqual(new Set([A, B]))
    a.healthy = false
    expect(picks(group, 4), "unhealthy").toEqual(Array(4).fill(B))
    a.healthy = true
    a.ejected = true
    expect(picks(group, 4), "ejected").toEqual(Array(4).fill(B))
    a.ejected = false
    expect(recordCircuit(group.circuit!, a, "5xx", 0)).toBe("opened")
    expect(picks(group, 4), "circuit open").toEqual(Array(4).fill(B))
  })

  it("panic: fail_open sends traffic to every endpoint when none is up; fail_closed, the default, to none", () => {
    for (const [panic, expected] of [["fail_open", [A, B]], ["fail_closed", []], [undefined, []]] as const) {
      const { group } = build(upstreamOf({ endpoints: endpoints(A, B), health_check: { interval: "5s" }, ...(panic === undefined ? {} : { panic }) }))
      for (const e of group.endpoints) e.healthy = false
      expect([...new Set(picks(group, 4).filter((o) => o !== undefined))], `panic: ${panic}`).toEqual(expected)
      // With one endpoint up, fail_open does not mix the unhealthy one back in.
      endpoint(group, B).healthy = true
      expect(picks(group, 4), `panic: ${panic}, B up`).toEqual(Array(4).fill(B))
    }
  })
})

describe("hash_on", () => {
  const ctxWith = (clientIp: string, path: string, headers: Record<string, string>): PickContext => ({
    clientIp,
    path,
    header: (name) => headers[name]
  })
  const keys = Array.from({ length: 40 }, (_, i) => `key-${i}`)
  /** The endpoint that the group's ring gives `key` (an ip-keyed ring over the same endpoints). */
  const ownerOf = (group: UpstreamGroup, key: string) =>
    makeBalancer({ algorithm: "consistent_hash", endpoints: group.endpoints }).pick(ctxWith(key, "/", {}))
  const eight = endpoints(...Array.from({ length: 8 }, (_, i) => `http://10.0.0.${i + 1}:80`))

  it.each([
    ["ip", (k: string) => ctxWith(k, "/other", { "x-user": "u", cookie: "ip=10.9.9.9; session=s" })],
    ["path", (k: string) => ctxWith("10.1.1.1", k, { "x-user": "u", cookie: "session=s" })],
    ["header:X-User", (k: string) => ctxWith("10.1.1.1", "/other", { "x-user": k, cookie: "session=s" })],
    ["cookie:Session", (k: string) => ctxWith("10.1.1.1", "/other", { "x-user": "u", cookie: `session=s; Session=${k}` })]
  ] as const)("hash_on %s keys each request on that part of it", (hashOn, ctxFor) => {
    const { group } = build(upstreamOf({ balance: "consistent_hash", hash_on: hashOn, endpoints: eight }))
    for (const key of keys) expect(pickFor(group, ctxFor(key)), key).toBe(ownerOf(group, key))
  })

  it("without hash_on the key is the client IP", () => {
    const { group } = build(upstreamOf({ balance: "consistent_hash", endpoints: eight }))
    for (const key of keys) expect(pickFor(group, ctxWith(key, `/${key}x`, { cookie: `a=${key}y` }))).toBe(ownerOf(group, key))
  })

  it("a cookie name keeps its case: cookie:Session does not take the session cookie", () => {
    const { group } = build(upstreamOf({ balance: "consistent_hash", hash_on: "cookie:Session", endpoints: eight }))
    // Only `session` (lower case) is sent, so the key falls back to the client IP.
    for (const key of keys) expect(pickFor(group, ctxWith(key, "/", { cookie: `session=zz-${key}` }))).toBe(ownerOf(group, key))
  })
})

describe("endpoint addresses", () => {
  it("takes the port from the URL, or http's default 80 (https upstreams are rejected by the config)", () => {
    const { group } = build(upstreamOf({ endpoints: endpoints("http://a.example", "http://c.example:8080") }))
    expect(group.endpoints.map((e) => [e.origin, e.hostname, e.port])).toEqual([
      ["http://a.example", "a.example", 80],
      ["http://c.example:8080", "c.example", 8080]
    ])
  })
})

describe("outlier counters", () => {
  it("a new endpoint is ejected at exactly consecutive_failures failed tries, not one before", () => {
    const { group } = build(upstreamOf({ endpoints: endpoints(A, B), outlier: { consecutive_failures: 3 } }))
    const a = endpoint(group, A)
    expect(recordOutcome(group.outlier!, a, "5xx", 0, 2)).toBe(false)
    expect(recordOutcome(group.outlier!, a, "5xx", 0, 2)).toBe(false)
    expect(a.ejected).toBe(false)
    expect(recordOutcome(group.outlier!, a, "5xx", 0, 2)).toBe(true)
    expect(picks(group, 4)).toEqual(Array(4).fill(B))
  })
})

describe("a rebuild keeps what stays", () => {
  const checked = { health_check: { interval: "5s" }, outlier: { consecutive_failures: 3 }, circuit_breaker: { consecutive_failures: 1 } }

  it("unchanged settings keep each endpoint as it is, in-flight requests included, and retire nothing", () => {
    const first = build(upstreamOf({ balance: "least_request", endpoints: endpoints(A, B), ...checked }))
    expect(first.retired).toEqual([])
    const a = endpoint(first.group, A)
    a.active++ // a request in flight on A
    a.ewma = 12
    a.consecutiveFailures = 2
    endpoint(first.group, B).healthy = false
    const second = build(upstreamOf({ balance: "least_request", endpoints: endpoints(A, B), ...checked }), first.group)
    expect(second.retired).toEqual([])
    const a2 = endpoint(second.group, A)
    expect(a2.pool).toBe(a.pool)
    expect([a2.active, a2.ewma, a2.consecutiveFailures, endpoint(second.group, B).healthy]).toEqual([1, 12, 2, false])
    // The request ends after the reload (the proxy counts it down on the endpoint it started on).
    a.active--
    expect(a2.active).toBe(0)
    // One more failure is the third in a row.
    expect(recordOutcome(second.group.outlier!, a2, "5xx", 0, 2)).toBe(true)
  })

  it("a weight change keeps the pool and the state, and the new balancer uses the new weight", () => {
    const first = build(upstreamOf({ balance: "weighted", endpoints: endpoints(A, B), ...checked }))
    const a = endpoint(first.group, A)
    a.ewma = 7
    a.ejected = true
    a.ejections = 1
    const second = build(upstreamOf({ balance: "weighted", endpoints: endpoints({ url: A, weight: 3 }, B), ...checked }), first.group)
    expect(second.retired).toEqual([])
    const a2 = endpoint(second.group, A)
    expect([a2.pool, a2.weight, a2.ewma, a2.ejected, a2.ejections]).toEqual([a.pool, 3, 7, true, 1])
    a2.ejected = false
    const counts = picks(second.group, 8).reduce((m, o) => m.set(o, (m.get(o) ?? 0) + 1), new Map<string | undefined, number>())
    expect(counts).toEqual(new Map([[A, 6], [B, 2]]))
  })

  it("a request in flight across a weight change is not counted on the new endpoint for ever", () => {
    const first = build(upstreamOf({ balance: "least_request", endpoints: endpoints(A, B) }))
    const a = endpoint(first.group, A)
    a.active++ // started before the reload
    const second = build(upstreamOf({ balance: "least_request", endpoints: endpoints({ url: A, weight: 2 }, B) }), first.group)
    a.active-- // ... and ends after it, on the endpoint it started on
    expect(endpoint(second.group, A).active).toBe(0)
  })

  it("a half-open probe in flight across a weight change does not shut the endpoint out for ever", () => {
    const config = (weight: number) =>
      upstreamOf({ endpoints: endpoints({ url: A, weight }, B), circuit_breaker: { consecutive_failures: 1, half_open_probes: 1 } })
    const first = build(config(1))
    const a = endpoint(first.group, A)
    expect(recordCircuit(first.group.circuit!, a, "5xx", 0)).toBe("opened")
    circuitHalfOpen(a) // the open time is over
    const probe = circuitTryStarted(a) // a probe goes out...
    const second = build(config(2), first.group)
    recordCircuit(first.group.circuit!, a, undefined, probe) // ... and succeeds after the reload
    // The new endpoint is still half-open, but its probe slot is free: it gets a probe.
    expect(picks(second.group, 4)).toContain(A)
  })

  it("new pool settings give new pools, retire each old one once, and keep health, ejection, outlier and circuit state", () => {
    const first = build(upstreamOf({ endpoints: endpoints(A, B), ...checked }))
    const [a, b] = [endpoint(first.group, A), endpoint(first.group, B)]
    a.healthy = false
    a.ejected = true
    a.ejections = 2
    a.ejectionId = 77
    b.consecutiveFailures = 2
    expect(recordCircuit(first.group.circuit!, b, "5xx", 0)).toBe("opened")
    const bCircuit = { circuit: b.circuit, opens: b.circuitOpens, id: b.circuitOpenId }
    const second = build(upstreamOf({ endpoints: endpoints(A, B), pool: { connections: 7 }, ...checked }), first.group)
    const [a2, b2] = [endpoint(second.group, A), endpoint(second.group, B)]
    expect(a2.pool).not.toBe(a.pool)
    expect(b2.pool).not.toBe(b.pool)
    expect(second.retired).toHaveLength(2)
    expect(new Set(second.retired)).toEqual(new Set([a.pool, b.pool]))
    expect([a2.healthy, a2.ejected, a2.ejections, a2.ejectionId]).toEqual([false, true, 2, 77])
    expect([b2.consecutiveFailures, b2.circuit, b2.circuitOpens, b2.circuitOpenId]).toEqual([2, bCircuit.circuit, bCircuit.opens, bCircuit.id])
    // Nothing is up: A unhealthy and ejected, B's circuit open.
    expect(picks(second.group, 2)).toEqual([undefined, undefined])
    // B's failure count carried over: one more failure ejects it.
    expect(recordOutcome(second.group.outlier!, b2, "connect-failure", 0, 2)).toBe(true)
  })

  it("a half-open probe in flight across a pool change does not shut the endpoint out for ever", () => {
    const config = (connections: number) =>
      upstreamOf({ endpoints: endpoints(A, B), pool: { connections }, circuit_breaker: { consecutive_failures: 1, half_open_probes: 1 } })
    const first = build(config(4))
    const a = endpoint(first.group, A)
    expect(recordCircuit(first.group.circuit!, a, "5xx", 0)).toBe("opened")
    circuitHalfOpen(a)
    const probe = circuitTryStarted(a)
    const second = build(config(5), first.group)
    recordCircuit(first.group.circuit!, a, undefined, probe)
    expect(picks(second.group, 4)).toContain(A)
  })

  it.each([
    ["connections", { connections: 10 }, { connections: 11 }],
    ["keep_alive", { keep_alive: "10s" }, { keep_alive: "11s" }],
    ["connect_timeout", { connect_timeout: "1s" }, { connect_timeout: "2s" }]
  ] as const)("a change of %s alone gives a new pool; the same value again keeps it", (_, before, after) => {
    const first = build(upstreamOf({ endpoints: endpoints(A), pool: before }))
    const same = build(upstreamOf({ endpoints: endpoints(A), pool: before }), first.group)
    expect(same.group.endpoints[0].pool).toBe(first.group.endpoints[0].pool)
    expect(same.retired).toEqual([])
    const changed = build(upstreamOf({ endpoints: endpoints(A), pool: after }), same.group)
    expect(changed.group.endpoints[0].pool).not.toBe(first.group.endpoints[0].pool)
    expect(changed.retired).toEqual([first.group.endpoints[0].pool])
  })

  it("retires exactly the pools of removed endpoints; an added endpoint starts fresh", () => {
    const first = build(upstreamOf({ endpoints: endpoints(A, B), health_check: { interval: "5s" } }))
    const b = endpoint(first.group, B)
    const second = build(upstreamOf({ endpoints: endpoints(B, "http://127.0.0.1:3"), health_check: { interval: "5s" } }), first.group)
    expect(second.retired).toEqual([endpoint(first.group, A).pool])
    expect(endpoint(second.group, B).pool).toBe(b.pool)
    const added = endpoint(second.group, "http://127.0.0.1:3")
    expect([added.healthy, added.ejected, added.active, added.circuit]).toEqual([true, false, 0, "closed"])
  })
})

describe("pool settings reach the connection pool", () => {
  it("connections: N allows N connections to an endpoint and never N+1", async () => {
    const upstream = await server({ hold: true })
    const { group } = build(upstreamOf({ endpoints: endpoints(upstream.origin), pool: { connections: 2 } }))
    const pool = group.endpoints[0].pool
    const responses = [get(pool), get(pool), get(pool)]
    await within(3000, "two requests at once", upstream.received(2))
    expect(upstream.connections.map((c) => c.requests)).toEqual([1, 1])
    for (const h of upstream.held.splice(0)) h.release()
    await within(3000, "the third request", upstream.received(3))
    upstream.held.splice(0).forEach((h) => h.release())
    expect(await Promise.all(responses)).toEqual([200, 200, 200])
    // The third waited for a free connection instead of opening one.
    expect(upstream.connections).toHaveLength(2)
  })

  it.each([
    ["without a Keep-Alive hint", undefined],
    ["when the upstream hints a longer Keep-Alive timeout", 30]
  ] as const)("keep_alive closes an idle connection after that time, %s", async (_, keepAliveHint) => {
    const upstream = await server(keepAliveHint === undefined ? {} : { keepAliveHint })
    const { group } = build(upstreamOf({ endpoints: endpoints(upstream.origin), pool: { keep_alive: "200ms" } }))
    expect(await get(group.endpoints[0].pool)).toBe(200)
    const idleFrom = Date.now()
    // undici's own default is 4 s without a hint (28 s with this one), the gateway's 60 s.
    await within(2500, "the idle connection closing", upstream.connections[0].closed)
    expect(upstream.connections[0].closedAt! - idleFrom).toBeGreaterThanOrEqual(150)
  })

  it("connect_timeout is how long a TCP handshake may take: 4 s is not cut at the 2 s default", async () => {
    const result = await Effect.runPromise(Effect.scoped(Effect.gen(function*() {
      const port = yield* unansweredPort
      const { group } = build(upstreamOf({ endpoints: endpoints(`http://127.0.0.1:${port}`), pool: { connect_timeout: "4s" } }))
      const started = Date.now()
      const error = yield* Effect.promise(() => get(group.endpoints[0].pool).then(() => undefined, (e: { code?: string }) => e))
      return { error, elapsed: Date.now() - started }
    })))
    expect(result.error?.code).toBe("UND_ERR_CONNECT_TIMEOUT")
    // undici's connect timer ticks every ~0.5 s, so it fires at most that much early (and
    // later under load); the 2 s default fires by about 2.5 s.
    expect(result.elapsed).toBeGreaterThanOrEqual(3_400)
    expect(result.elapsed).toBeLessThan(10_000)
  }, 15_000)
})
