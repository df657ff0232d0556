/**
 * Process metrics under the names Prometheus' Node.js client (prom-client) uses, so existing
 * dashboards work: CPU seconds, resident and heap memory, event-loop delay and garbage
 * collection. Values are read when Prometheus scrapes (registered series), except GC pauses,
 * which are recorded as they happen from a PerformanceObserver. Nothing here runs per request.
 *
 * They describe the process, not a gateway: however many gateways a program runs, one set is
 * registered (per metric registry), kept while any of them runs.
 */
import type * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as SubscriptionRef from "effect/SubscriptionRef"
import { monitorEventLoopDelay, PerformanceObserver, constants } from "node:perf_hooks"
import { ConfigSource } from "../config/ConfigSource.ts"
import { registerGauge } from "./Metrics.ts"

const cpuUser = Metric.counter("process_cpu_user_seconds_total", { description: "User CPU time spent, in seconds" })
const cpuSystem = Metric.counter("process_cpu_system_seconds_total", { description: "System CPU time spent, in seconds" })
const rss = Metric.gauge("process_resident_memory_bytes", { description: "Resident memory size, in bytes" })
const startTime = Metric.gauge("process_start_time_seconds", { description: "Start time of the process since the Unix epoch, in seconds" })
const heapUsed = Metric.gauge("nodejs_heap_size_used_bytes", { description: "V8 heap in use, in bytes" })
const heapTotal = Metric.gauge("nodejs_heap_size_total_bytes", { description: "V8 heap reserved, in bytes" })
const external = Metric.gauge("nodejs_external_memory_bytes", { description: "Memory of C++ objects bound to JavaScript (buffers), in bytes" })
const gc = Metric.histogram("nodejs_gc_duration_seconds", {
  description: "Garbage collection pauses, by kind (minor, major, incremental, weakcb)",
  boundaries: [0.001, 0.01, 0.1, 1, 2, 5]
})
// prom-client's event-loop gauges: `nodejs_eventloop_lag_seconds`, how late a `setImmediate`
// queued at the previous scrape ran, and statistics of the delay since the previous scrape.
const lagNow = Metric.gauge("nodejs_eventloop_lag_seconds", {
  description: "How late a setImmediate queued at the previous scrape ran, in seconds"
})
const LAG_STATS = ["min", "max", "mean", "stddev", "p50", "p90", "p99"] as const
const lagGauges = LAG_STATS.map((stat) =>
  [stat, Metric.gauge(`nodejs_eventloop_lag_${stat}_seconds`, { description: `The ${stat} of the event-loop delay since the previous scrape, in seconds` })] as const
)

const GC_KINDS: Record<number, string> = {
  [constants.NODE_PERFORMANCE_GC_MINOR]: "minor",
  [constants.NODE_PERFORMANCE_GC_MAJOR]: "major",
  [constants.NODE_PERFORMANCE_GC_INCREMENTAL]: "incremental",
  [constants.NODE_PERFORMANCE_GC_WEAKCB]: "weakcb"
}

/** A counter series whose total is read at scrape time from a source that already counts. */
const registerCounter = (counter: Metric.Counter<number>, context: Context.Context<never>, read: () => number) =>
  Metric.registerUnsafe(counter, context, { get: () => ({ count: read(), incremental: false }), update: () => {}, modify: () => {} })

/** Starts collecting into the registry of `context`; returns what stops it. */
const start = (context: Context.Context<never>): () => void => {
  const delay = monitorEventLoopDelay({ resolution: 10 })
  delay.enable()
  // The gauges are read one after another in one scrape: take the statistics once per scrape
  // (the first read), then start a new window, as prom-client does.
  let window: Record<(typeof LAG_STATS)[number], number> | undefined
  const lag = (stat: (typeof LAG_STATS)[number]) => {
    if (window === undefined || stat === "min") {
      // An empty window (two scrapes within one sampling interval) has min = 2^63 ns: report 0s.
      const empty = delay.count === 0
      const ns = (v: number) => (!empty && Number.isFinite(v) ? v / 1e9 : 0)
      window = {
        min: ns(delay.min),
        max: ns(delay.max),
        mean: ns(delay.mean),
        stddev: ns(delay.stddev),
        p50: ns(delay.percentile(50)),
        p90: ns(delay.percentile(90)),
        p99: ns(delay.percentile(99))
      }
      delay.reset()
    }
    return window[stat]
  }
  // As prom-client: each scrape reports the lag the previous scrape measured and queues a new probe.
  let lastLag = 0
  const probeLag = () => {
    const queued = process.hrtime.bigint()
    setImmediate(() => {
      lastLag = Number(process.hrtime.bigint() - queued) / 1e9
    })
  }
  const readLag = () => {
    const value = lastLag
    probeLag()
    return value
  }
  const gcKinds = new Map(Object.entries(GC_KINDS).map(([k, kind]) => [Number(k), Metric.withAttributes(gc, { kind })]))
  const observer = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      const kind = (entry as { detail?: { kind?: number } }).detail?.kind ?? -1
      gcKinds.get(kind)?.updateUnsafe(entry.duration / 1000, context)
    }
  })
  observer.observe({ entryTypes: ["gc"] })
  const memory = () => process.memoryUsage()
  const started = Date.now() / 1000 - process.uptime()
  const registrations = [
    registerCounter(cpuUser, context, () => process.cpuUsage().user / 1e6),
    registerCounter(cpuSystem, context, () => process.cpuUsage().system / 1e6),
    registerGauge(rss, {}, context, () => process.memoryUsage.rss()),
    registerGauge(startTime, {}, context, () => started),
    registerGauge(heapUsed, {}, context, () => memory().heapUsed),
    registerGauge(heapTotal, {}, context, () => memory().heapTotal),
    registerGauge(external, {}, context, () => memory().external),
    registerGauge(lagNow, {}, context, readLag),
    // `min` is registered first, so it is read first in a scrape and opens the new window.
    ...lagGauges.map(([stat, gauge]) => registerGauge(gauge, {}, context, () => lag(stat)))
  ]
  return () => {
    delay.disable()
    observer.disconnect()
    for (const r of registrations) r.remove()
  }
}

/** Collectors in use, by metric registry, with how many layers share each. */
const running = new Map<unknown, { users: number; stop: () => void }>()

/**
 * Registers the process metrics for the life of the layer; off with `telemetry.metrics.enabled: false`.
 */
export const layer: Layer.Layer<never, never, ConfigSource> = Layer.effectDiscard(Effect.gen(function*() {
  const config = yield* SubscriptionRef.get((yield* ConfigSource).config)
  if (config.telemetry?.metrics?.enabled === false) return
  const context = yield* Effect.context<never>()
  const registry = yield* Metric.MetricRegistry
  const shared = running.get(registry) ?? { users: 0, stop: start(context) }
  shared.users++
  running.set(registry, shared)
  yield* Effect.addFinalizer(() =>
    Effect.sync(() => {
      if (--shared.users === 0) {
        running.delete(registry)
        shared.stop()
      }
    })
  )
}))
