/**
 * The `Upstreams` service over real connection pools: what a reconcile keeps (pools and their
 * warm connections), what it closes (pools of removed endpoints and upstreams, once their
 * requests are done, each on its own), what shutdown does (lets requests in flight finish, cuts
 * them off after 5 s), and the upstream metrics it registers. The upstreams are bare TCP servers
 * that record every connection and its close; the service gets a metric registry of its own.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Exit, Fiber, Layer, Metric, Scope } from "effect"
import { TestClock } from "effect/testing"
import type { Pool } from "undici"
import { Upstreams } from "../../src/upstream/Upstreams.ts"
import { decoded, settle } from "../support/effects.ts"
import { startTcpUpstream, type TcpUpstream, within } from "../support/tcpUpstream.ts"

/** A config with `upstreams` (name -> endpoint origins), the first one routed. */
const configOf = (upstreams: Record<string, ReadonlyArray<string>>, extra: Record<string, unknown> = {}) =>
  decoded({
    log: { level: "none", access_log: false },
    servers: [{ name: "web", listen: "127.0.0.1:0", routes: [{ id: "all", upstream: Object.keys(upstreams)[0] }] }],
    upstreams: Object.fromEntries(Object.entries(upstreams).map(([name, urls]) => [name, { endpoints: urls.map((url) => ({ url })) }])),
    ...extra
  })

/** A bare upstream for the life of the test. */
const server = (options?: Parameters<typeof startTcpUpstream>[0]) =>
  Effect.acquireRelease(Effect.promise(() => startTcpUpstream(options)), (s) => Effect.promise(() => s.close()))

/** Waits for `promise`, failing the test after `ms` (a bound on the wait, not a proof). */
const await_ = <A>(ms: number, what: string, promise: Promise<A>) => Effect.promise(() => within(ms, what, promise))

/** The Upstreams service in a scope of its own (closed by the test or at its end), with its own metric registry. */
const withUpstreams = Effect.gen(function*() {
  const registry = new Map()
  const scope = yield* Scope.make()
  yield* Effect.addFinalizer(() => Scope.close(scope, Exit.void))
  const context = yield* Layer.buildWithScope(Upstreams.layer, scope).pipe(Effect.provideService(Metric.MetricRegistry, registry))
  const upstreams = Context.get(context, Upstreams)
  const group = (name: string) => upstreams.current().get(name) ?? assert.fail(`no upstream ${name}`)
  const pool = (name: string, origin: string) =>
    (group(name).endpoints.find((e) => e.origin === origin) ?? assert.fail(`no ${origin} in ${name}`)).pool
  /** The series of `id` whose attributes include `attributes`. */
  const series = (id: string, attributes: Record<string, string>) =>
    Metric.snapshotUnsafe(Context.make(Metric.MetricRegistry, registry)).filter((m) =>
      m.id === id && Object.entries(attributes).every(([k, v]) => (m.attributes as Record<string, string> | undefined)?.[k] === v)
    )
  return { upstreams, group, pool, series, close: Scope.close(scope, Exit.void) }
})

/** A GET through `pool`: its status, or the error's code. */
const get = (pool: Pool) =>
  Effect.promise(() =>
    pool.request({ method: "GET", path: "/" }).then(
      async (res) => {
        await res.body.text()
        return res.statusCode
      },
      (e: { readonly code?: string }) => e.code ?? "error"
    )
  )

/** Until `done()` holds (no virtual time passes), for at most 5 s of real time. */
const until = (done: () => boolean, what: string) =>
  Effect.gen(function*() {
    const deadline = Date.now() + 5_000
    while (!done()) {
      if (Date.now() > deadline) return assert.fail(`${what}: not within 5 s`)
      yield* Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve)))
    }
  })

/** Until `pool` has an idle connection (undici frees a connection a moment after the response ends). */
const idle = (pool: Pool) => until(() => pool.stats.free > 0, "an idle connection in the pool")

const only = (s: TcpUpstream) => {
  assert.strictEqual(s.connections.length, 1, "one connection")
  return s.connections[0]
}

describe("Upstreams: reconcile", () => {
  it.live("an endpoint that stays keeps its pool and its warm connection", () =>
    Effect.gen(function*() {
      const s = yield* server()
      const { upstreams, pool } = yield* withUpstreams
      yield* upstreams.reconcile(configOf({ app: [s.origin] }))
      const before = pool("app", s.origin)
      assert.strictEqual(yield* get(before), 200)
      yield* idle(before)
      yield* upstreams.reconcile(configOf({ app: [s.origin], other: ["http://127.0.0.1:1"] }))
      assert.strictEqual(pool("app", s.origin), before)
      assert.strictEqual(yield* get(pool("app", s.origin)), 200)
      assert.strictEqual(only(s).requests, 2, "the second request went over the same connection")
      assert.isUndefined(only(s).closedAt)
    }))

  it.live("a removed endpoint's pool closes once its request in flight is answered; the endpoint that stays keeps its connection", () =>
    Effect.gen(function*() {
      const gone = yield* server({ hold: true })
      const stays = yield* server()
      const { upstreams, pool } = yield* withUpstreams
      yield* upstreams.reconcile(configOf({ app: [gone.origin, stays.origin] }))
      assert.strictEqual(yield* get(pool("app", stays.origin)), 200)
      yield* idle(pool("app", stays.origin))
      const inFlight = yield* Effect.forkChild(get(pool("app", gone.origin)))
      yield* await_(3000, "the request reaching the endpoint", gone.received(1))
      yield* upstreams.reconcile(configOf({ app: [stays.origin] }))
      gone.held[0].release()
      assert.strictEqual(yield* Fiber.join(inFlight), 200, "the request in flight is answered, not cut off")
      yield* await_(3000, "the removed endpoint's connection closing", only(gone).closed)
      assert.strictEqual(yield* get(pool("app", stays.origin)), 200)
      assert.strictEqual(only(stays).requests, 2)
      assert.isUndefined(only(stays).closedAt)
    }))

  it.live("removing a whole upstream closes its pools and leaves the others' alone", () =>
    Effect.gen(function*() {
      const kept = yield* server()
      const gone = yield* server()
      const { upstreams, pool } = yield* withUpstreams
      yield* upstreams.reconcile(configOf({ app: [kept.origin], other: [gone.origin] }))
      assert.strictEqual(yield* get(pool("app", kept.origin)), 200)
      assert.strictEqual(yield* get(pool("other", gone.origin)), 200)
      yield* idle(pool("app", kept.origin))
      yield* upstreams.reconcile(configOf({ app: [kept.origin] }))
      assert.isFalse(upstreams.current().has("other"))
      yield* await_(3000, "the removed upstream's connection closing", only(gone).closed)
      assert.strictEqual(yield* get(pool("app", kept.origin)), 200)
      assert.strictEqual(only(kept).requests, 2)
      assert.isUndefined(only(kept).closedAt)
    }))

  it.live("retired pools close each on its own: a request held on one does not keep another's idle connection open", () =>
    Effect.gen(function*() {
      const busy = yield* server({ hold: true })
      const idle = yield* server()
      const { upstreams, pool } = yield* withUpstreams
      yield* upstreams.reconcile(configOf({ app: [busy.origin, idle.origin] }))
      assert.strictEqual(yield* get(pool("app", idle.origin)), 200)
      const inFlight = yield* Effect.forkChild(get(pool("app", busy.origin)))
      yield* await_(3000, "the request reaching the busy endpoint", busy.received(1))
      // Both are removed; the busy one is first in line.
      yield* upstreams.reconcile(configOf({ app: ["http://127.0.0.1:1"] }))
      yield* await_(3000, "the idle endpoint's connection closing while the other's request is held", only(idle).closed)
      assert.isUndefined(only(busy).closedAt)
      busy.held[0].release()
      assert.strictEqual(yield* Fiber.join(inFlight), 200)
      yield* await_(3000, "the busy endpoint's connection closing", only(busy).closed)
    }))
})

describe("Upstreams: shutdown", () => {
  it.live("closing the service lets a request in flight finish, then closes every connection", () =>
    Effect.gen(function*() {
      const s = yield* server({ hold: true })
      const idle = yield* server()
      const { upstreams, pool, close } = yield* withUpstreams
      yield* upstreams.reconcile(configOf({ app: [s.origin], other: [idle.origin] }))
      const p = pool("app", s.origin)
      assert.strictEqual(yield* get(pool("other", idle.origin)), 200)
      const inFlight = yield* Effect.forkChild(get(p))
      yield* await_(3000, "the request reaching the endpoint", s.received(1))
      const closing = yield* Effect.forkChild(close)
      yield* until(() => p.closed || p.destroyed, "the pool starting to close")
      yield* await_(3000, "the idle connection closing at shutdown", only(idle).closed)
      s.held[0].release()
      assert.strictEqual(yield* Fiber.join(inFlight), 200, "answered, not cut off")
      yield* Fiber.join(closing)
      yield* await_(3000, "the connection closing", only(s).closed)
    }))

  it.effect("a request still in flight 5 s into shutdown is cut off", () =>
    Effect.gen(function*() {
      const s = yield* server({ hold: true })
      const { upstreams, pool, close } = yield* withUpstreams
      yield* upstreams.reconcile(configOf({ app: [s.origin] }))
      const p = pool("app", s.origin)
      const inFlight = yield* Effect.forkChild(get(p))
      yield* await_(3000, "the request reaching the endpoint", s.received(1))
      const closing = yield* Effect.forkChild(close)
      yield* until(() => p.closed || p.destroyed, "the pool starting to close")
      yield* TestClock.adjust(4_999)
      assert.isFalse(p.destroyed, "not cut off before 5 s")
      yield* TestClock.adjust(1)
      yield* Fiber.join(closing)
      yield* await_(3000, "the connection being cut", only(s).closed)
      assert.notStrictEqual(yield* Fiber.join(inFlight), 200)
    }))
})

describe("Upstreams: metrics", () => {
  const A = "http://127.0.0.1:1"
  const B = "http://127.0.0.1:2"
  const healthySeries = (svc: { readonly series: (id: string, a: Record<string, string>) => ReadonlyArray<unknown> }, endpoint: string) =>
    svc.series("fibergate_endpoint_healthy", { upstream: "app", endpoint }).length

  it.effect("each configured endpoint has its gauges; a removed endpoint's go; closing the service drops them all", () =>
    Effect.gen(function*() {
      const svc = yield* withUpstreams
      yield* svc.upstreams.reconcile(configOf({ app: [A, B] }))
      assert.deepStrictEqual([healthySeries(svc, A), healthySeries(svc, B)], [1, 1])
      assert.strictEqual(svc.series("fibergate_upstream_in_flight", { upstream: "app" }).length, 1)
      yield* svc.upstreams.reconcile(configOf({ app: [B] }))
      assert.deepStrictEqual([healthySeries(svc, A), healthySeries(svc, B)], [0, 1])
      yield* svc.close
      assert.deepStrictEqual([healthySeries(svc, B), svc.series("fibergate_upstream_in_flight", {}).length], [0, 0])
    }))

  it.effect("upstream attempts are counted with metrics on, also when telemetry has no metrics section", () =>
    Effect.gen(function*() {
      for (const telemetry of [undefined, { metrics: {} }, { metrics: { enabled: true } }, { tracing: { sample_ratio: 0.5 } }]) {
        const svc = yield* withUpstreams
        yield* svc.upstreams.reconcile(configOf({ app: [A] }, telemetry === undefined ? {} : { telemetry }))
        svc.group("app").metrics.attempt("success")
        const attempts = svc.series("fibergate_upstream_attempts_total", { upstream: "app", result: "success" })
        assert.strictEqual(attempts.length, 1, JSON.stringify(telemetry))
        assert.strictEqual(Number((attempts[0] as { readonly state: { readonly count: number } }).state.count), 1)
        assert.strictEqual(healthySeries(svc, A), 1, JSON.stringify(telemetry))
      }
    }))

  it.effect("metrics.enabled: false registers no upstream series and counts nothing; turning it off drops the series", () =>
    Effect.gen(function*() {
      const svc = yield* withUpstreams
      yield* svc.upstreams.reconcile(configOf({ app: [A] }))
      assert.strictEqual(healthySeries(svc, A), 1)
      yield* svc.upstreams.reconcile(configOf({ app: [A] }, { telemetry: { metrics: { enabled: false } } }))
      svc.group("app").metrics.attempt("success")
      svc.group("app").metrics.retry()
      yield* settle
      assert.deepStrictEqual(svc.series("fibergate_endpoint_healthy", {}), [])
      assert.deepStrictEqual(svc.series("fibergate_upstream_in_flight", {}), [])
      assert.deepStrictEqual(svc.series("fibergate_upstream_attempts_total", {}), [])
      assert.deepStrictEqual(svc.series("fibergate_upstream_retries_total", {}), [])
    }))
})
