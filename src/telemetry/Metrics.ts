/**
 * Request metrics in Effect's `Metric` registry, served in Prometheus text format by the admin
 * API (`effect/observability` PrometheusMetrics). Every metric a request touches is created with
 * its attributes when the config is compiled; per request, recording is two synchronous
 * `updateUnsafe` calls (about 130 ns measured here), so no Effect runs on the request path.
 */
import type * as Context from "effect/Context"
import * as Metric from "effect/Metric"

const requests = Metric.counter("fibergate_requests_total", {
  description: "Requests answered, by listener, route and status class"
})
const duration = Metric.histogram("fibergate_request_duration_seconds", {
  description: "Time from the request to the end of the response, by route",
  boundaries: Metric.exponentialBoundaries({ start: 0.0005, factor: 2, count: 16 })
})

export interface RouteMetrics {
  readonly record: (status: number, durationMs: number) => void
}

const STATUS_CLASSES = ["1xx", "2xx", "3xx", "4xx", "5xx"] as const

/**
 * @example
 * const metrics = makeRouteMetrics(context, "public", "api")
 * metrics.record(200, 1.5)
 */
export const makeRouteMetrics = (context: Context.Context<never>, listener: string, route: string): RouteMetrics => {
  const byClass = STATUS_CLASSES.map((status_class) => Metric.withAttributes(requests, { listener, route, status_class }))
  // 499 (the client went away) and anything odd count as their own class.
  const other = Metric.withAttributes(requests, { listener, route, status_class: "other" })
  const timing = Metric.withAttributes(duration, { listener, route })
  return {
    record(status, durationMs) {
      const index = Math.floor(status / 100) - 1
      ;(status !== 499 && index >= 0 && index < 5 ? byClass[index] : other).updateUnsafe(1, context)
      timing.updateUnsafe(durationMs / 1000, context)
    }
  }
}

export const noRouteMetrics: RouteMetrics = { record: () => {} }
