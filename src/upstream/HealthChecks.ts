/**
 * Active health checks: one supervised fiber per checked endpoint (a FiberMap keyed by
 * upstream and endpoint), each probing on a jittered Schedule and applying the rise/fall
 * rule. Reconciled on every config change: an endpoint that stays, with the same check,
 * keeps its fiber and its state; one whose check changed gets a new fiber but keeps its state.
 */
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as FiberMap from "effect/FiberMap"
import * as Layer from "effect/Layer"
import * as Schedule from "effect/Schedule"
import * as Stream from "effect/Stream"
import * as SubscriptionRef from "effect/SubscriptionRef"
import { ConfigSource } from "../config/ConfigSource.ts"
import type { Config, HealthCheck } from "../config/Schema.ts"
import type { UpstreamTls } from "../config/TlsSchema.ts"
import { Upstreams } from "./Upstreams.ts"
import { initialHealth, observeProbe, type HealthState, type Thresholds } from "../resilience/HealthState.ts"
import { probeFor } from "../resilience/Probe.ts"

/** Defaults as HAProxy/Envoy users expect them. */
export const healthCheckDefaults = {
  interval: 10_000,
  timeout: 2_000,
  healthy_threshold: 2,
  unhealthy_threshold: 3
} as const

/** A probe for an endpoint origin; swapped in tests to script probe results. */
export type ProbeFactory = (origin: string, check: HealthCheck, tls?: UpstreamTls) => Effect.Effect<boolean>

/**
 * Probes forever on the check's interval (with ±20% jitter so checks of many endpoints do not
 * align), passing each new state to `publish`. A probe that outlasts the timeout is a failure.
 */
export const runHealthCheck = (options: {
  readonly probe: Effect.Effect<boolean>
  readonly check: HealthCheck
  readonly initial: HealthState
  readonly publish: (state: HealthState) => Effect.Effect<void>
}): Effect.Effect<never> => {
  const { check } = options
  const thresholds: Thresholds = {
    healthyThreshold: check.healthy_threshold ?? healthCheckDefaults.healthy_threshold,
    unhealthyThreshold: check.unhealthy_threshold ?? healthCheckDefaults.unhealthy_threshold
  }
  const timeout = Duration.millis(check.timeout ?? healthCheckDefaults.timeout)
  let state = options.initial
  const once = options.probe.pipe(
    Effect.timeoutOrElse({ duration: timeout, orElse: () => Effect.succeed(false) }),
    Effect.flatMap((ok) => {
      state = observeProbe(state, ok, thresholds)
      return options.publish(state)
    })
  )
  return once.pipe(
    Effect.repeat(Schedule.spaced(Duration.millis(check.interval ?? healthCheckDefaults.interval)).pipe(Schedule.jittered)),
    Effect.andThen(Effect.never)
  )
}

const keyOf = (upstream: string, origin: string) => `${upstream} ${origin}`

export class HealthChecks extends Context.Service<HealthChecks, {
  /** The health of every checked endpoint, by `"<upstream> <origin>"`. */
  readonly states: () => ReadonlyMap<string, HealthState>
}>()("fibergate/upstream/HealthChecks") {
  static layerWith(probeFor: ProbeFactory): Layer.Layer<HealthChecks, never, ConfigSource | Upstreams> {
    return Layer.effect(
      HealthChecks,
      Effect.gen(function*() {
        const source = yield* ConfigSource
        const upstreams = yield* Upstreams
        const fibers = yield* FiberMap.make<string>()
        const states = new Map<string, HealthState>()
        // The check config (and TLS) each running fiber was started with, to restart it when it changes.
        const running = new Map<string, string>()

        const publish = (upstream: string, origin: string) => (state: HealthState) =>
          Effect.sync(() => {
            const key = keyOf(upstream, origin)
            const recovered = states.get(key)?.healthy === false && state.healthy
            states.set(key, state)
            const endpoint = upstreams.current().get(upstream)?.endpoints.find((e) => e.origin === origin)
            if (endpoint === undefined) return
            endpoint.healthy = state.healthy
            // Active checks passing again also end an outlier ejection (as Envoy does): the
            // endpoint has proven itself, no need to wait out the ejection time.
            if (recovered) endpoint.ejected = false
          })

        const reconcile = Effect.fnUntraced(function*(config: Config) {
          const wanted = new Map<string, { upstream: string; origin: string; check: HealthCheck; tls: UpstreamTls | undefined }>()
          for (const [upstream, u] of Object.entries(config.upstreams)) {
            if (u.health_check === undefined) continue
            for (const e of u.endpoints) {
              const origin = new URL(e.url).origin
              wanted.set(keyOf(upstream, origin), { upstream, origin, check: u.health_check, tls: u.tls })
            }
          }
          for (const key of [...running.keys()]) {
            if (!wanted.has(key)) {
              running.delete(key)
              states.delete(key)
              yield* FiberMap.remove(fibers, key)
            }
          }
          for (const [key, { check, origin, tls, upstream }] of wanted) {
            const settings = JSON.stringify([check, tls])
            if (running.get(key) === settings) continue
            running.set(key, settings)
            const initial = states.get(key) ?? initialHealth
            yield* publish(upstream, origin)(initial)
            yield* FiberMap.run(fibers, key, runHealthCheck({ probe: probeFor(origin, check, tls), check, initial, publish: publish(upstream, origin) }))
          }
        })

        yield* SubscriptionRef.changes(source.config).pipe(Stream.runForEach(reconcile), Effect.forkScoped)
        return HealthChecks.of({ states: () => states })
      })
    )
  }

  static readonly layer: Layer.Layer<HealthChecks, never, ConfigSource | Upstreams> = HealthChecks.layerWith(probeFor)
}
