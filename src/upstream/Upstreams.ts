/**
 * The upstream groups of the running config. Reconciled on every config change: endpoints
 * that stay keep their pools, counters and balancer-visible state; pools of removed endpoints
 * are closed in the background once their in-flight requests are done. Also runs the
 * re-admission timers of endpoints that outlier detection ejected.
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

      // Ejections come from the request path; re-admission waits on Effect's Clock in fibers
      // owned by this layer, so TestClock drives it in tests.
      const ejections = yield* Queue.unbounded<readonly [string, Endpoint, number, number]>()
      const readmitting = yield* FiberSet.make()
      // `nth` identifies the ejection: a timer left over from an earlier ejection (ended early by
      // a reload without `outlier`) must not end a later one.
      const readmit = (upstream: string, endpoint: Endpoint, nth: number) =>
        Effect.sync(() => {
          if (endpoint.ejections === nth) endpoint.ejected = false
          // A reload may have replaced the endpoint object meanwhile (e.g. a new weight).
          const now = groups.get(upstream)?.endpoints.find((e) => e.origin === endpoint.origin)
          if (now !== undefined && now.ejections === nth) now.ejected = false
        })
      yield* Queue.take(ejections).pipe(
        Effect.flatMap(([upstream, endpoint, nth, forMs]) =>
          FiberSet.run(readmitting, Effect.sleep(Duration.millis(forMs)).pipe(Effect.andThen(readmit(upstream, endpoint, nth))))
        ),
        Effect.forever,
        Effect.forkScoped
      )
      const onEjectFor = (upstream: string) => (endpoint: Endpoint, forMs: number) =>
        void Queue.offerUnsafe(ejections, [upstream, endpoint, endpoint.ejections, forMs] as const)

      const reconcile = Effect.fnUntraced(function*(config: Config) {
        const next = new Map<string, UpstreamGroup>()
        const retired: Array<Pool> = []
        for (const [name, upstream] of Object.entries(config.upstreams)) {
          const built = buildUpstreamGroup(name, upstream, groups.get(name), onEjectFor(name))
          next.set(name, built.group)
          retired.push(...built.retired)
        }
        for (const [name, group] of groups) {
          if (!next.has(name)) retired.push(...group.endpoints.map((e) => e.pool))
        }
        groups = next
        if (retired.length > 0) yield* FiberSet.run(closing, closePools(retired))
        return next
      })

      return Upstreams.of({ current: () => groups, reconcile })
    })
  )
}
