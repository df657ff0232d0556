/**
 * `GET /stats`: what an operator wants at a glance. Uptime, the config in force (generation,
 * source, sizes), process memory, the listeners as configured, each upstream's in-flight requests
 * and endpoint counts by state, and request totals read from the metric registry the request path
 * records into (`fibergate_requests_total`, see src/telemetry/Metrics.ts), by status class and by
 * listener. The totals are process-wide since start, as Prometheus would see them, and stay at
 * zero while `telemetry.metrics.enabled` is false.
 */
import type * as Metric from "effect/Metric"
import type { Config } from "../config/Schema.ts"
import type { UpstreamGroup } from "../upstream/UpstreamGroup.ts"
import { summarizeConfig, type ConfigSummary } from "./ConfigSummary.ts"
import { endpointCounts, type EndpointCounts } from "./UpstreamStatus.ts"

/** The counter `makeRouteMetrics` records into, one series per listener, route and status class. */
export const REQUESTS_METRIC = "fibergate_requests_total"

const STATUS_CLASSES = ["1xx", "2xx", "3xx", "4xx", "5xx", "other"] as const

export interface RequestTotals {
  readonly total: number
  /** Every class present, zeros included; `other` is 499 (client went away) and odd statuses. */
  readonly by_status_class: Readonly<Record<string, number>>
  readonly by_listener: Readonly<Record<string, number>>
}

/**
 * Sums the `fibergate_requests_total` series of a registry snapshot.
 *
 * @example
 * requestTotals(Metric.snapshotUnsafe(context)) // => { total: 3, by_status_class: { "2xx": 3, … }, by_listener: { web: 3 } }
 */
export const requestTotals = (snapshots: ReadonlyArray<Metric.Metric.Snapshot>): RequestTotals => {
  const byClass: Record<string, number> = Object.fromEntries(STATUS_CLASSES.map((c) => [c, 0]))
  const byListener: Record<string, number> = {}
  let total = 0
  for (const snapshot of snapshots) {
    if (snapshot.id !== REQUESTS_METRIC || snapshot.type !== "Counter") continue
    const count = Number(snapshot.state.count)
    const statusClass = snapshot.attributes?.status_class ?? "other"
    const listener = snapshot.attributes?.listener ?? ""
    total += count
    byClass[statusClass] = (byClass[statusClass] ?? 0) + count
    byListener[listener] = (byListener[listener] ?? 0) + count
  }
  return { total, by_status_class: byClass, by_listener: byListener }
}

/** Everything `/stats` reports, gathered by the admin service at the moment of the request. */
export interface StatsInput {
  readonly uptimeMs: number
  readonly ready: boolean
  readonly generation: number
  readonly source: string
  readonly config: Config
  readonly memory: NodeJS.MemoryUsage
  readonly groups: ReadonlyMap<string, UpstreamGroup>
  readonly metrics: ReadonlyArray<Metric.Metric.Snapshot>
}

export interface Stats {
  readonly uptime_seconds: number
  readonly ready: boolean
  readonly config: ConfigSummary & { readonly generation: number; readonly source: string }
  readonly process: {
    readonly pid: number
    readonly node: string
    readonly rss_bytes: number
    readonly heap_used_bytes: number
    readonly heap_total_bytes: number
  }
  /** As configured: the bound address of a `:0` listener is not known here. */
  readonly listeners: ReadonlyArray<{ readonly name: string; readonly listen: string; readonly routes: number }>
  readonly upstreams: Readonly<Record<string, { readonly in_flight: number; readonly endpoints: EndpointCounts }>>
  readonly requests: RequestTotals & { readonly metrics_enabled: boolean }
}

/** @example makeStats({ uptimeMs: 1500, ready: true, generation: 1, … }).uptime_seconds // => 1.5 */
export const makeStats = (input: StatsInput): Stats => ({
  uptime_seconds: Math.round(input.uptimeMs) / 1000,
  ready: input.ready,
  config: { generation: input.generation, source: input.source, ...summarizeConfig(input.config) },
  process: {
    pid: process.pid,
    node: process.version,
    rss_bytes: input.memory.rss,
    heap_used_bytes: input.memory.heapUsed,
    heap_total_bytes: input.memory.heapTotal
  },
  listeners: input.config.servers.map((server) => ({ name: server.name, listen: server.listen, routes: server.routes.length })),
  upstreams: Object.fromEntries(
    [...input.groups].map(([name, group]) => [name, { in_flight: group.active, endpoints: endpointCounts(group) }])
  ),
  requests: { metrics_enabled: input.config.telemetry?.metrics?.enabled !== false, ...requestTotals(input.metrics) }
})
