/**
 * The upstream groups of the running config. Reconciled on every config change: endpoints
 * that stay keep their pools, counters and balancer-visible state; pools of removed endpoints
 * are closed in the background once their in-flight requests are done. Also runs the
 * timers that end outlier ejections and move open circuits to half-open.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as FiberSet from "effect/FiberSet"
import * as Layer from "effect/Layer"
import * as Duration from "effect/Duration"
import * as Queue from "effect/Queue"
import type { Pool } from "undici"
import type { Config } from "../config/Schema.ts"
import { buildUpstreamGroup, type Endpoint, type UpstreamGroup } from "./UpstreamGroup.ts"
import { circuitHalfOpen } from "../resilience/Circuit.ts"
import { makeUpstreamGauges, makeUpstreamMetrics, noUpstreamMetrics } from "../telemetry/Metrics.ts"

export class Upstreams extends Context.Service<Upstreams, {
  /** The groups in force, by upstream name. Read synchronously on the request path. */
  readonly current: () => ReadonlyMap<string, UpstreamGroup>
  /** Brings the groups in line with `config` and returns them. */
  readonly reconcile: (config: Config) => Effect.Effect<ReadonlyMap<string, UpstreamGroup>>
}>()("fibergate/upstream/Upstreams") {
  static readonly layer: Layer.Layer<Upstreams> = Layer.effect(
    Upstreams,
    Effect.gen(function*() {
      let groups: ReadonlyMap<string, UpstreamGroup> = new Map()
      const context = yield* Effect.context<never>()
      const gauges = makeUpstreamGauges(context)
      yield* Effect.addFinalizer(() => Effect.sync(() => gauges.clear()))
      // Pools being retired close in fibers owned by this layer's scope, never detached.
      const closing = yield* FiberSet.make()
      const closePools = (pools: ReadonlyArray<Pool>) =>
        Effect.forEach(pools, (pool) => Effect.promise(() => pool.close().catch(() => undefined)), { discard: true, concurrency: "unbounded" })

      yield* Effect.addFinalizer(() =>
        closePools([...groups.values()].flatMap((g) => g.endpoints.map((e) => e.pool))).pipe(
          Effect.timeout("5 seconds"),
          Effect.ignore,
          Effect.andThen(Effect.sync(() => {
            for (const g of groups.values()) for (const e of g.endpoints) void e.pool.destroy().catch(() => undefined)
          }))
        )
      )

      // Outlier ejections and circuit openings come from the request path; their end (re-admission,
      // half-open) waits on Effect's Clock in fibers owned by this layer, so TestClock drives it.
      // Each timer carries the id of its ejection or opening: a timer left over from an earlier
      // one (ended early by a reload, or of a removed and re-added endpoint) must not end a later one.
      type Timed = readonly [kind: "eject" | "circuit", upstream: string, endpoint: Endpoint, nth: number, forMs: number]
      const timed = yield* Queue.unbounded<Timed>()
      const timers = yield* FiberSet.make()
      const expire = (kind: Timed[0], e: Endpoint, id: number) => {
        if (kind === "eject") {
          if (e.ejectionId === id) e.ejected = false
        } else if (e.circuit === "open" && e.circuitOpenId === id) circuitHalfOpen(e)
      }
      yield* Queue.take(timed).pipe(
        Effect.flatMap(([kind, upstream, endpoint, nth, forMs]) =>
          FiberSet.run(
            timers,
            Effect.sleep(Duration.millis(forMs)).pipe(Effect.andThen(Effect.sync(() => {
              expire(kind, endpoint, nth)
              // A reload may have replaced the endpoint object meanwhile (e.g. a new weight).
              const now = groups.get(upstream)?.endpoints.find((e) => e.origin === endpoint.origin)
              if (now !== undefined && now !== endpoint) expire(kind, now, nth)
            })))
          )
        ),
        Effect.forever,
        Effect.forkScoped
      )
      const onEjectFor = (upstream: string) => (endpoint: Endpoint, forMs: number) =>
        void Queue.offerUnsafe(timed, ["eject", upstream, endpoint, endpoint.ejectionId, forMs] as const)
      const onCircuitOpenFor = (upstream: string) => (endpoint: Endpoint, forMs: number) =>
        void Queue.offerUnsafe(timed, ["circuit", upstream, endpoint, endpoint.circuitOpenId, forMs] as const)

      const reconcile = Effect.fnUntraced(function*(config: Config) {
        const next = new Map<string, UpstreamGroup>()
        const retired: Array<Pool> = []
        for (const [name, upstream] of Object.entries(config.upstreams)) {
          const built = buildUpstreamGroup(
            name,
            upstream,
            groups.get(name),
            onEjectFor(name),
            onCircuitOpenFor(name),
            config.telemetry?.metrics?.enabled === false ? noUpstreamMetrics : makeUpstreamMetrics(context, name)
          )
          next.set(name, built.group)
          retired.push(...built.retired)
        }
        for (const [name, group] of groups) {
          if (!next.has(name)) retired.push(...group.endpoints.map((e) => e.pool))
        }
        groups = next
        if (config.telemetry?.metrics?.enabled === false) gauges.clear()
        else gauges.update(next.values())
        if (retired.length > 0) yield* FiberSet.run(closing, closePools(retired))
        return next
      })

      return Upstreams.of({ current: () => groups, reconcile })
    })
  )
}
