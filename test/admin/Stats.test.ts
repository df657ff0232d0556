/**
 * The request totals of `GET /stats`, read from a metric registry snapshot: only the
 * `fibergate_requests_total` counter counts, summed by status class and by listener.
 */
import { describe, expect, it } from "vitest"
import * as Context from "effect/Context"
import * as Metric from "effect/Metric"
import { REQUESTS_METRIC, requestTotals } from "../../src/admin/Stats.ts"

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

  it("ignores other metrics, even a gauge of the same name's family", () => {
    const context = freshRegistry()
    Metric.withAttributes(Metric.counter("fibergate_upstream_attempts_total"), { upstream: "app", result: "success" }).updateUnsafe(9, context)
    Metric.withAttributes(Metric.gauge("fibergate_requests_in_flight"), { listener: "web" }).updateUnsafe(4, context)
    Metric.withAttributes(Metric.counter(REQUESTS_METRIC), { listener: "web", status_class: "2xx" }).updateUnsafe(1, context)
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
