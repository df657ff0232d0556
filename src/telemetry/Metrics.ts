/**
 * Request metrics in Effect's `Metric` registry, served in Prometheus text format by the admin
 * API (`effect/observability` PrometheusMetrics). Every metric a request touches is created with
 * its attributes when the config is compiled; per request, recording is two synchronous
 * `updateUnsafe` calls (about 130 ns measured here), so no Effect runs on the request path.
 */
import * as Context from "effect/Context"
import * as Metric from "effect/Metric"

const requests = Metric.counter("fibergate_requests_total", {
  description: "Requests answered, by listener, route, method and status class"
})
const duration = Metric.histogram("fibergate_request_duration_seconds", {
  description: "Time from the request to the end of the response, by route",
  boundaries: Metric.exponentialBoundaries({ start: 0.0005, factor: 2, count: 16 })
})

export interface RouteMetrics {
  readonly record: (method: string, status: number, durationMs: number) => void
}

const STATUS_CLASSES = ["1xx", "2xx", "3xx", "4xx", "5xx", "other"] as const
const METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"] as const

// Any other method shares one label, so a client cannot create series at will.
const methodIndex = (method: string): number => {
  switch (method) {
    case "GET":
      return 0
    case "HEAD":
      return 1
    case "POST":
      return 2
    case "PUT":
      return 3
    case "DELETE":
      return 4
    case "PATCH":
      return 5
    case "OPTIONS":
      return 6
    default:
      return 7
  }
}

// 499 (the client went away) and anything odd count as their own class.
const classIndex = (status: number): number => {
  const index = Math.floor(status / 100) - 1
  return status !== 499 && index >= 0 && index < 5 ? index : 5
}

/**
 * @example
 * const metrics = makeRouteMetrics(context, "public", "api")
 * metrics.record("GET", 200, 1.5)
 */
export const makeRouteMetrics = (context: Context.Context<never>, listener: string, route: string): RouteMetrics => {
  // One series per method and status class, made on first use: most routes see few of the 48.
  const cells: Array<Metric.Metric<number, unknown> | undefined> = new Array(METHODS.length * STATUS_CLASSES.length + STATUS_CLASSES.length)
  const timing = Metric.withAttributes(duration, { listener, route })
  return {
    record(method, status, durationMs) {
      const m = methodIndex(method)
      const c = classIndex(status)
      const cell = m * STATUS_CLASSES.length + c
      let counter = cells[cell]
      if (counter === undefined) {
        counter = cells[cell] = Metric.withAttributes(requests, {
          listener,
          route,
          method: m < METHODS.length ? METHODS[m] : "other",
          status_class: STATUS_CLASSES[c]
        })
      }
      counter.updateUnsafe(1, context)
      timing.updateUnsafe(durationMs / 1000, context)
    }
  }
}

const rejectedRequests = Metric.counter("fibergate_rejected_requests_total", {
  description: "Requests the gateway answered itself without trying an upstream, by reason"
})

/** Counts requests the gateway refused (bad request, no route, too large, no endpoint, …) by reason. */
export interface Rejections {
  /** `route` is given for refusals by a route's middlewares, which are counted with the route. */
  readonly count: (reason: string, route?: string) => void
}

/** The reasons are the gateway errors' tags, a closed set, so each series is made once. */
export const makeRejections = (context: Context.Context<never>): Rejections => {
  const byReason = new Map<string, Metric.Metric<number, unknown>>()
  return {
    count(reason, route) {
      const key = route === undefined ? reason : `${reason}\0${route}`
      let counter = byReason.get(key)
      if (counter === undefined) {
        byReason.set(key, counter = Metric.withAttributes(rejectedRequests, route === undefined ? { reason } : { reason, route }))
      }
      counter.updateUnsafe(1, context)
    }
  }
}

const rateLimitStoreErrors = Metric.counter("fibergate_rate_limit_store_errors_total", {
  description: "Rate-limit decisions the shared store (Redis) could not make: not connected, failed or too slow; on_error decided them"
})

/** Counts one rate-limit store failure. */
export const makeStoreErrorCounter = (context: Context.Context<never>): (() => void) => () => rateLimitStoreErrors.updateUnsafe(1, context)

export const noRouteMetrics: RouteMetrics = { record: () => {} }
export const noRejections: Rejections = { count: () => {} }

const attempts = Metric.counter("fibergate_upstream_attempts_total", {
  description: "Tries sent upstream, by upstream and result (success, 5xx, connect_error, timeout, reset, protocol_error, error)"
})
const retries = Metric.counter("fibergate_upstream_retries_total", { description: "Retries, by upstream" })
const retriesRefused = Metric.counter("fibergate_upstream_retries_refused_total", {
  description: "Retries the upstream's retry budget refused (the client got that try's answer), by upstream"
})

export type AttemptResult = "success" | "5xx" | "connect_error" | "timeout" | "reset" | "protocol_error" | "error"
const RESULTS: ReadonlyArray<AttemptResult> = ["success", "5xx", "connect_error", "timeout", "reset", "protocol_error", "error"]

export interface UpstreamMetrics {
  readonly attempt: (result: AttemptResult) => void
  readonly retry: () => void
  /** A retry the retry budget refused. */
  readonly retryRefused: () => void
}

/** The metrics of one upstream group, created with their attributes when the group is built. */
export const makeUpstreamMetrics = (context: Context.Context<never>, upstream: string): UpstreamMetrics => {
  const byResult = new Map(RESULTS.map((result) => [result, Metric.withAttributes(attempts, { upstream, result })] as const))
  const retry = Metric.withAttributes(retries, { upstream })
  const refused = Metric.withAttributes(retriesRefused, { upstream })
  return {
    attempt: (result) => byResult.get(result)!.updateUnsafe(1, context),
    retry: () => retry.updateUnsafe(1, context),
    retryRefused: () => refused.updateUnsafe(1, context)
  }
}

export const noUpstreamMetrics: UpstreamMetrics = { attempt: () => {}, retry: () => {}, retryRefused: () => {} }

const healthy = Metric.gauge("fibergate_endpoint_healthy", { description: "1 when active checks consider the endpoint up" })
const ejected = Metric.gauge("fibergate_endpoint_ejected", { description: "1 while outlier detection has ejected the endpoint" })
const circuit = Metric.gauge("fibergate_endpoint_circuit_state", { description: "0 closed, 1 half-open, 2 open" })
const endpointInFlight = Metric.gauge("fibergate_endpoint_in_flight", { description: "Requests in flight, by endpoint" })
const inFlight = Metric.gauge("fibergate_upstream_in_flight", { description: "Requests in flight, by upstream" })
const poolConnections = Metric.gauge("fibergate_upstream_pool_connections", {
  description: "Connections of an endpoint's pool, by state (busy, idle)"
})
const poolPending = Metric.gauge("fibergate_upstream_pool_pending_requests", {
  description: "Requests waiting in an endpoint's pool for a connection"
})

/** The live state the upstream gauges read when Prometheus scrapes. */
export interface GaugedUpstream {
  readonly name: string
  readonly active: number
  readonly endpoints: ReadonlyArray<{
    readonly origin: string
    readonly healthy: boolean
    readonly ejected: boolean
    readonly circuit: string
    readonly active: number
    readonly pool: { readonly stats: { readonly connected: number; readonly free: number; readonly pending: number } }
  }>
}

/**
 * Keeps the state gauges of upstreams and endpoints registered for exactly the ones in force:
 * each series reads the live object when scraped, and the series of an upstream or endpoint a
 * reload removed are dropped, so Prometheus stops seeing them.
 */
export const makeUpstreamGauges = (context: Context.Context<never>) => {
  let registered = new Map<string, ReadonlyArray<Metric.Registration>>()
  return {
    /** Call with the groups in force after every reconcile. */
    update(groups: Iterable<GaugedUpstream>): void {
      const next = new Map<string, ReadonlyArray<Metric.Registration>>()
      for (const group of groups) {
        next.set(group.name, [registerGauge(inFlight, { upstream: group.name }, context, () => group.active)])
        group.endpoints.forEach((e) => {
          const attrs = { upstream: group.name, endpoint: e.origin }
          const stats = () => e.pool.stats
          next.set(`${group.name}\u0000${e.origin}`, [
            registerGauge(healthy, attrs, context, () => (e.healthy ? 1 : 0)),
            registerGauge(ejected, attrs, context, () => (e.ejected ? 1 : 0)),
            registerGauge(circuit, attrs, context, () => (e.circuit === "closed" ? 0 : e.circuit === "half-open" ? 1 : 2)),
            registerGauge(endpointInFlight, attrs, context, () => e.active),
            registerGauge(poolConnections, { ...attrs, state: "busy" }, context, () => stats().connected - stats().free),
            registerGauge(poolConnections, { ...attrs, state: "idle" }, context, () => stats().free),
            registerGauge(poolPending, attrs, context, () => stats().pending)
          ])
        })
      }
      // Registering again replaced the series that stay; what is left in `registered` is gone.
      for (const [key, registrations] of registered) if (!next.has(key)) for (const r of registrations) r.remove()
      registered = next
    },
    /** Drops every series (the layer is closing). */
    clear(): void {
      for (const registrations of registered.values()) for (const r of registrations) r.remove()
      registered = new Map()
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
export const scrapeMetrics = async (context: Context.Context<never>): Promise<string> => {
  const { PrometheusMetrics } = await import("effect/observability")
  return PrometheusMetrics.formatUnsafe(context)
}

/**
 * Listeners a config change could not bind (address in use, permission denied), by listener.
 * The config is applied all the same; the listener keeps its previous address, or stays unbound
 * when it is new, until a later change binds it.
 */
export const listenerBindFailures = Metric.counter("fibergate_listener_bind_failures_total", {
  description: "Listener binds that failed on a config change, by listener"
})

/**
 * OTLP span export requests that failed, by reason: `http_<status>` (the collector answered
 * outside 2xx), `network` (no response), `error` (anything else). Each try counts, Effect's
 * exporter's retries included (see `ExportFailures.ts`).
 */
export const tracingExportFailures = Metric.counter("fibergate_tracing_export_failures_total", {
  description: "OTLP span export requests that failed, each try counted, by reason (http_<status>, network, error)"
})

/** Seconds until a listener certificate's notAfter (negative once expired), by listener, first DNS name and file. */
export const tlsCertificateExpiry = Metric.gauge("fibergate_tls_certificate_expiry_seconds", {
  description: "Seconds until the certificate expires, by listener, name (its first DNS name) and certificate file"
})

/** Certificate sets that did not load on a file change or a reload; the listener kept the ones it had. */
export const certificateReloadFailures = Metric.counter("fibergate_tls_certificate_reload_failures_total", {
  description: "Certificate reloads that failed (the listener kept serving its previous certificates), by listener"
})

/**
 * TLS handshakes that failed, by listener and reason: protocol_version, no_shared_cipher,
 * no_client_certificate, bad_client_certificate, not_tls (plain HTTP or garbage on a TLS port),
 * timeout, client_reset, other.
 */
export const tlsHandshakeFailures = Metric.counter("fibergate_tls_handshake_failures_total", {
  description: "Failed TLS handshakes, by listener and reason"
})

/**
 * HTTP/2 connections the gateway closed with a GOAWAY because of the client: rapid_reset
 * (streams opened and reset in a loop), continuation_flood, invalid_frames, protocol_error, other.
 */
export const http2Goaways = Metric.counter("fibergate_http2_goaways_total", {
  description: "HTTP/2 connections closed with a GOAWAY for the client's abuse or protocol errors, by listener and reason"
})

/** HTTP/2 connections open, by listener. */
export const http2Sessions = Metric.gauge("fibergate_http2_connections", {
  description: "HTTP/2 connections open, by listener"
})

const webSocketsOpen = Metric.gauge("fibergate_websocket_connections", { description: "WebSocket tunnels open, by listener and route" })
const webSocketsTotal = Metric.counter("fibergate_websocket_connections_total", { description: "WebSocket tunnels opened (the upstream answered 101), by listener and route" })

/** Counts a listener's WebSocket tunnels as they open and close. */
export interface WebSocketMetrics {
  readonly opened: (route: string) => void
  readonly closed: (route: string) => void
}

// Tunnels outlive the config they were opened under: a listener keeps its counts across reloads.
const webSocketMetricsOf = new WeakMap<Context.Context<never>, Map<string, WebSocketMetrics>>()

/** The WebSocket counts of `listener` (the same object for every config compiled in `context`). */
export const makeWebSocketMetrics = (context: Context.Context<never>, listener: string): WebSocketMetrics => {
  let byListener = webSocketMetricsOf.get(context)
  if (byListener === undefined) webSocketMetricsOf.set(context, byListener = new Map())
  const known = byListener.get(listener)
  if (known !== undefined) return known
  const made = newWebSocketMetrics(context, listener)
  byListener.set(listener, made)
  return made
}

const newWebSocketMetrics = (context: Context.Context<never>, listener: string): WebSocketMetrics => {
  const open = new Map<string, { count: number; total: Metric.Metric<number, unknown> }>()
  const of = (route: string) => {
    let entry = open.get(route)
    if (entry === undefined) {
      const created = { count: 0, total: Metric.withAttributes(webSocketsTotal, { listener, route }) }
      open.set(route, entry = created)
      registerGauge(webSocketsOpen, { listener, route }, context, () => created.count)
    }
    return entry
  }
  return {
    opened: (route) => {
      const entry = of(route)
      entry.count++
      entry.total.updateUnsafe(1, context)
    },
    closed: (route) => {
      of(route).count--
    }
  }
}

export const noWebSocketMetrics: WebSocketMetrics = { opened: () => {}, closed: () => {} }
