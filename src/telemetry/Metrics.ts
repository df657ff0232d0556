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

const attempts = Metric.counter("fibergate_upstream_attempts_total", {
  description: "Tries sent upstream, by upstream and result (success, 5xx, connect_error, timeout, reset, error)"
})
const retries = Metric.counter("fibergate_upstream_retries_total", { description: "Retries, by upstream" })

export type AttemptResult = "success" | "5xx" | "connect_error" | "timeout" | "reset" | "error"
const RESULTS: ReadonlyArray<AttemptResult> = ["success", "5xx", "connect_error", "timeout", "reset", "error"]

export interface UpstreamMetrics {
  readonly attempt: (result: AttemptResult) => void
  readonly retry: () => void
}

/** The metrics of one upstream group, created with their attributes when the group is built. */
export const makeUpstreamMetrics = (context: Context.Context<never>, upstream: string): UpstreamMetrics => {
  const byResult = new Map(RESULTS.map((result) => [result, Metric.withAttributes(attempts, { upstream, result })] as const))
  const retry = Metric.withAttributes(retries, { upstream })
  return {
    attempt: (result) => byResult.get(result)!.updateUnsafe(1, context),
    retry: () => retry.updateUnsafe(1, context)
  }
}

export const noUpstreamMetrics: UpstreamMetrics = { attempt: () => {}, retry: () => {} }

const healthy = Metric.gauge("fibergate_endpoint_healthy", { description: "1 when active checks consider the endpoint up" })
const ejected = Metric.gauge("fibergate_endpoint_ejected", { description: "1 while outlier detection has ejected the endpoint" })
const circuit = Metric.gauge("fibergate_endpoint_circuit_state", { description: "0 closed, 1 half-open, 2 open" })
const inFlight = Metric.gauge("fibergate_upstream_in_flight", { description: "Requests in flight, by upstream" })

/** The state gauges, set from the live upstream state when Prometheus scrapes. */
export const recordUpstreamGauges = (
  context: Context.Context<never>,
  groups: Iterable<{
    readonly name: string
    readonly active: number
    readonly endpoints: ReadonlyArray<{ readonly origin: string; readonly healthy: boolean; readonly ejected: boolean; readonly circuit: string }>
  }>
): void => {
  for (const group of groups) {
    Metric.withAttributes(inFlight, { upstream: group.name }).updateUnsafe(group.active, context)
    for (const e of group.endpoints) {
      const attrs = { upstream: group.name, endpoint: e.origin }
      Metric.withAttributes(healthy, attrs).updateUnsafe(e.healthy ? 1 : 0, context)
      Metric.withAttributes(ejected, attrs).updateUnsafe(e.ejected ? 1 : 0, context)
      Metric.withAttributes(circuit, attrs).updateUnsafe(e.circuit === "closed" ? 0 : e.circuit === "half-open" ? 1 : 2, context)
    }
  }
}

/** Config reloads by result (`applied`, `rejected`). */
export const configReloads = Metric.counter("fibergate_config_reloads_total", { description: "Config reloads, by result" })

const clientConnections = Metric.gauge("fibergate_client_connections", { description: "Open client connections, by listener" })

/** A gauge series whose value is read when Prometheus scrapes; `remove()` drops the series. */
export const registerGauge = (
  gauge: Metric.Metric<number, { readonly value: number }>,
  attributes: Record<string, string>,
  context: Context.Context<never>,
  read: () => number
): Metric.Registration =>
  Metric.registerUnsafe(Metric.withAttributes(gauge, attributes), context, {
    get: () => ({ value: read() }),
    update: () => {},
    modify: () => {}
  })

/**
 * Counts a listener's open client connections (per connection, not per request) and exposes
 * them as `fibergate_client_connections{listener}`. Returns the registration to remove when
 * the listener goes away.
 */
export const trackClientConnections = (
  server: import("node:net").Server,
  listener: string,
  context: Context.Context<never>
): Metric.Registration => {
  let open = 0
  const onClose = () => {
    open--
  }
  server.on("connection", (socket: import("node:net").Socket) => {
    open++
    socket.once("close", onClose)
  })
  return registerGauge(clientConnections, { listener }, context, () => open)
}

/**
 * The Prometheus text of every metric in the registry of `context`. `effect/observability` is
 * loaded on the first scrape: it also brings the OTLP exporters, about 10 MB of RSS that a
 * gateway nobody scrapes should not pay.
 */
export const scrapeMetrics = async (
  context: Context.Context<never>,
  groups: Parameters<typeof recordUpstreamGauges>[1]
): Promise<string> => {
  const { PrometheusMetrics } = await import("effect/observability")
  recordUpstreamGauges(context, groups)
  return PrometheusMetrics.formatUnsafe(context)
}
