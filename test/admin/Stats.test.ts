/**
 * The request totals of `GET /stats`, read from a metric registry snapshot: only the
 * `fibergate_requests_total` counter counts, summed by status class and by listener.
 */
import { describe, expect, it } from "vitest"
import * as Context from "effect/Context"
import * as Metric from "effect/Metric"
import { makeStats, REQUESTS_METRIC, requestTotals } from "../../src/admin/Stats.ts"
import { decoded } from "../support/effects.ts"

/** A registry of its own, so nothing else in the process is counted. */
const freshRegistry = () => Context.make(Metric.MetricRegistry, new Map())

describe("requestTotals", () => {
  it("sums the request counter by status class and listener, whatever other attributes it has", () => {
    const context = freshRegistry()
    const requests = Metric.counter(REQUESTS_METRIC)
    const add = (attributes: Record<string, string>, n: number) => Metric.withAttributes(requests, attributes).updateUnsafe(n, context)
    add({ listener: "web", route: "a", method: "GET", status_class: "2xx" }, 5)
    add({ listener: "web", route: "a", method: "POST", status_class: "2xx" }, 2)
    add({ listener: "web", route: "b", method: "GET", status_class: "5xx" }, 1)
    add({ listener: "internal", route: "c", method: "GET", status_class: "4xx" }, 3)
    add({ listener: "internal", route: "c", method: "GET", status_class: "other" }, 1)
    expect(requestTotals(Metric.snapshotUnsafe(context))).toEqual({
      total: 12,
      by_status_class: { "1xx": 0, "2xx": 7, "3xx": 0, "4xx": 3, "5xx": 1, other: 1 },
      by_listener: { web: 8, internal: 4 }
    })
  })

  it("ignores other metrics, a gauge of the same family and one of the very same name", () => {
    const context = freshRegistry()
    Metric.withAttributes(Metric.counter("fibergate_upstream_attempts_total"), { upstream: "app", result: "success" }).updateUnsafe(9, context)
    Metric.withAttributes(Metric.gauge("fibergate_requests_in_flight"), { listener: "web" }).updateUnsafe(4, context)
    Metric.withAttributes(Metric.counter(REQUESTS_METRIC), { listener: "web", status_class: "2xx" }).updateUnsafe(1, context)
    // Same name, another type (another library's gauge): not a request count.
    Metric.withAttributes(Metric.gauge(REQUESTS_METRIC), { listener: "web", status_class: "2xx" }).updateUnsafe(7, context)
    expect(Metric.snapshotUnsafe(context).filter((s) => s.id === REQUESTS_METRIC).map((s) => s.type).sort()).toEqual(["Counter", "Gauge"])
    const totals = requestTotals(Metric.snapshotUnsafe(context))
    expect(totals.total).toBe(1)
    expect(totals.by_listener).toEqual({ web: 1 })
  })

  it("a request counter without status_class or listener counts as other and under the empty listener", () => {
    const context = freshRegistry()
    Metric.counter(REQUESTS_METRIC).updateUnsafe(2, context)
    expect(requestTotals(Metric.snapshotUnsafe(context))).toEqual({
      total: 2,
      by_status_class: { "1xx": 0, "2xx": 0, "3xx": 0, "4xx": 0, "5xx": 0, other: 2 },
      by_listener: { "": 2 }
    })
  })

  it("is all zeros with nothing recorded, every status class present", () => {
    expect(requestTotals(Metric.snapshotUnsafe(freshRegistry()))).toEqual({
      total: 0,
      by_status_class: { "1xx": 0, "2xx": 0, "3xx": 0, "4xx": 0, "5xx": 0, other: 0 },
      by_listener: {}
    })
  })
})

describe("makeStats", () => {
  const input = (config: unknown) => ({
    uptimeMs: 1500.4,
    ready: true,
    generation: 3,
    source: "gw.yaml",
    config: decoded(config),
    memory: { rss: 10, heapUsed: 2, heapTotal: 4, external: 0, arrayBuffers: 0 },
    groups: new Map(),
    metrics: []
  })
  const servers = [{ name: "web", listen: "127.0.0.1:0", routes: [] }]

  it("says whether the request totals are being counted: off only when telemetry.metrics.enabled is false", () => {
    expect(makeStats(input({ servers, upstreams: {} })).requests.metrics_enabled).toBe(true)
    expect(makeStats(input({ servers, upstreams: {}, telemetry: {} })).requests.metrics_enabled).toBe(true)
    expect(makeStats(input({ servers, upstreams: {}, telemetry: { metrics: {} } })).requests.metrics_enabled).toBe(true)
    expect(makeStats(input({ servers, upstreams: {}, telemetry: { metrics: { enabled: true } } })).requests.metrics_enabled).toBe(true)
    expect(makeStats(input({ servers, upstreams: {}, telemetry: { metrics: { enabled: false } } })).requests.metrics_enabled).toBe(false)
  })

  it("reports uptime in seconds to the millisecond, the process's memory and the listeners as configured", () => {
    const stats = makeStats(input({ servers, upstreams: {} }))
    expect(stats.uptime_seconds).toBe(1.5)
    expect(stats.process).toEqual({ pid: process.pid, node: process.version, rss_bytes: 10, heap_used_bytes: 2, heap_total_bytes: 4 })
    expect(stats.listeners).toEqual([{ name: "web", listen: "127.0.0.1:0", routes: 0 }])
    expect(stats.config).toMatchObject({ generation: 3, source: "gw.yaml" })
  })
})
