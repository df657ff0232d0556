/**
 * Every metric of the README's table (Operations › Metrics), present in `GET /metrics` with its
 * type and its labels after the traffic that should produce it. One gateway, one round of
 * traffic, series read by exact name and label set: a series that is missing fails the test
 * (it is never read as 0).
 *
 * The README's `nodejs_eventloop_lag_seconds{stat}` row does not match the implementation,
 * which uses prom-client's names (`nodejs_eventloop_lag_<stat>_seconds`, per scrape window,
 * see src/telemetry/ProcessMetrics.ts): the names implemented are the ones checked here.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import type { ServerResponse } from "node:http"
import { getRequest, openConnection } from "../support/connection.ts"
import { echoHandler, request, startGateway, startUpstream, type TestGateway } from "../support/harness.ts"
import { eventually } from "../support/liveGateway.ts"
import { freePort, holdPort, raw } from "../support/net.ts"
import { startOtlpReceiverWith } from "../support/otlp.ts"
import { hasSeries, samplesOf, scrapeAdmin, series, type Scrape } from "../support/prometheus.ts"
import { awaitSignal, fire, signal } from "../support/signals.ts"
import { converse } from "../support/wire.ts"

const LISTENER = "names-web"

/** Asserts the metric family's `# TYPE`. */
const typeOf = (scrape: Scrape, name: string, type: "counter" | "gauge" | "histogram") =>
  assert.strictEqual(scrape.types.get(name), type, `# TYPE of ${name}`)

/** The value of a series that must be present, at least `min`. */
const atLeast = (scrape: Scrape, name: string, labels: Record<string, string>, min: number) => {
  const value = series(scrape, name, labels)
  assert.isAtLeast(value, min, `${name}${JSON.stringify(labels)}`)
  return value
}

describe("metric names", () => {
  it.live("every metric of the README's table is served with its type and labels after the traffic that produces it", () =>
    Effect.gen(function*() {
      // ---- upstreams ---------------------------------------------------------------------------
      const ok = yield* startUpstream("ok")
      const fail = yield* startUpstream("fail", {
        handler: (_req, res) => {
          res.writeHead(503, { "content-length": "0" })
          res.end()
        }
      })
      const held: Array<ServerResponse> = []
      const holdArrived = signal()
      const faulty = yield* startUpstream("faulty", {
        rawHandler: (req, res) => {
          req.resume()
          const path = req.url ?? ""
          if (path.startsWith("/faulty/reset")) return void req.socket.destroy()
          if (path.startsWith("/faulty/bad")) return void req.socket.end("HTTP/1.1 200 OK\nContent-Length: 2\n\nok")
          if (path.startsWith("/faulty/timeout")) return void held.push(res)
          if (path.startsWith("/faulty/hold")) {
            held.push(res)
            return fire(holdArrived, undefined)
          }
          echoHandler("faulty")(req, res, Buffer.alloc(0))
        }
      })
      const unhealthy = yield* startUpstream("unhealthy", {
        handler: (req, res, body) => {
          if (req.url !== "/health") return echoHandler("unhealthy")(req, res, body)
          res.writeHead(503, { "content-length": "0" })
          res.end()
        }
      })
      const closedPort = yield* freePort
      const collector = yield* startOtlpReceiverWith({ status: 404 })

      // ---- the gateway ---------------------------------------------------------------------------
      const configAt = (port: number, adminPort: number, extra: ReadonlyArray<Record<string, unknown>> = []) => ({
        admin: { listen: `127.0.0.1:${adminPort}` },
        log: { level: "none", access_log: false },
        shutdown: { drain_timeout: "200ms" },
        telemetry: { tracing: { otlp_endpoint: collector.origin, export_interval: "20ms", sample_ratio: 1 } },
        servers: [
          {
            name: LISTENER,
            listen: `127.0.0.1:${port}`,
            limits: { max_body_bytes: 10, max_header_bytes: 1024, header_timeout: "300ms" },
            routes: [
              { id: "names-ok", match: { path: { prefix: "/ok" } }, upstream: "names-up" },
              { id: "names-retry", match: { path: { prefix: "/retry" } }, upstream: "names-retry", retry: { attempts: 2, backoff: { base: "1ms", max: "1ms" } } },
              { id: "names-refused", match: { path: { prefix: "/refused" } }, upstream: "names-refused", retry: { attempts: 2, backoff: { base: "1ms", max: "1ms" } } },
              { id: "names-timeout", match: { path: { prefix: "/faulty/timeout" } }, upstream: "names-faulty", retry: { attempts: 1, per_try_timeout: "100ms" } },
              { id: "names-faulty", match: { path: { prefix: "/faulty" } }, upstream: "names-faulty" },
              { id: "names-down", match: { path: { prefix: "/down" } }, upstream: "names-down" },
              { id: "names-unhealthy", match: { path: { prefix: "/unhealthy" } }, upstream: "names-unhealthy" }
            ]
          },
          ...extra
        ],
        upstreams: {
          "names-up": { endpoints: [{ url: ok.url }] },
          "names-retry": { endpoints: [{ url: fail.url }, { url: ok.url }] },
          "names-refused": { endpoints: [{ url: fail.url }], retry_budget: { percent: 0, min_per_second: 0 } },
          "names-faulty": { endpoints: [{ url: faulty.url }] },
          "names-down": { endpoints: [{ url: `http://127.0.0.1:${closedPort}` }], circuit_breaker: { consecutive_failures: 1, open_for: "1m" } },
          "names-unhealthy": {
            endpoints: [{ url: unhealthy.url }],
            health_check: { path: "/health", interval: "50ms", timeout: "1s", unhealthy_threshold: 1, healthy_threshold: 1 }
          }
        }
      })
      const [port, adminPort] = [yield* freePort, yield* freePort]
      const gateway: TestGateway = yield* startGateway(configAt(port, adminPort))
      const url = (path: string) => `http://127.0.0.1:${port}${path}`
      const status = (path: string, init?: RequestInit) => Effect.map(request(url(path), init), (r) => r.status)

      // ---- traffic --------------------------------------------------------------------------------
      assert.strictEqual(yield* status("/ok/get"), 200)
      assert.strictEqual(yield* status("/ok/post", { method: "POST", body: "0123456789" }), 200)
      assert.strictEqual(yield* status("/ok/other", { method: "PROPFIND" }), 200)
      assert.strictEqual(yield* status("/retry/1"), 200)
      assert.strictEqual(yield* status("/retry/2"), 200)
      assert.strictEqual(yield* status("/refused/1"), 503)
      assert.strictEqual(yield* status("/faulty/reset"), 502)
      assert.strictEqual(yield* status("/faulty/bad"), 502)
      assert.strictEqual(yield* status("/faulty/timeout"), 504)
      assert.strictEqual(yield* status("/down/1"), 502)
      assert.strictEqual(yield* status("/down/2"), 503, "the circuit opened after the connect failure")
      yield* eventually(
        Effect.map(scrapeAdmin(adminPort), (s) => hasSeries(s, "fibergate_endpoint_healthy", { upstream: "names-unhealthy", endpoint: unhealthy.url }) && series(s, "fibergate_endpoint_healthy", { upstream: "names-unhealthy", endpoint: unhealthy.url }) === 0),
        "the failing health check takes the endpoint out"
      )
      assert.strictEqual(yield* status("/unhealthy/1"), 503)
      // Refused by the gateway itself.
      assert.strictEqual(yield* status("/nowhere"), 404)
      assert.strictEqual((yield* raw(port, "GET /ok HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")).status, 400)
      assert.strictEqual(yield* status("/ok/big", { method: "POST", body: "01234567890" }), 413)
      assert.strictEqual((yield* raw(port, `GET /ok HTTP/1.1\r\nHost: a\r\nX-Big: ${"b".repeat(2048)}\r\n\r\n`)).status, 431)
      assert.strictEqual((yield* raw(port, "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")).status, 405)
      const slowHead = yield* converse(port, (socket) => void socket.write("GET /ok HTTP/1.1\r\nHost: a\r\n"), { responses: 1, maxMs: 3_000 })
      assert.strictEqual(slowHead.responses[0]?.status, 408)

      // A request held by the upstream: in flight on its upstream, endpoint and a busy pool connection.
      const client = yield* openConnection(port)
      yield* client.write(getRequest("/faulty/hold"))
      yield* awaitSignal(holdArrived)
      const during = yield* scrapeAdmin(adminPort)
      const faultyEndpoint = { upstream: "names-faulty", endpoint: faulty.url }
      assert.strictEqual(series(during, "fibergate_upstream_in_flight", { upstream: "names-faulty" }), 1)
      assert.strictEqual(series(during, "fibergate_endpoint_in_flight", faultyEndpoint), 1)
      assert.strictEqual(series(during, "fibergate_upstream_pool_connections", { ...faultyEndpoint, state: "busy" }), 1)
      // This connection, and fetch's keep-alive ones.
      atLeast(during, "fibergate_client_connections", { listener: LISTENER }, 1)
      // The client leaves: a 499, counted in status class "other".
      client.socket.destroy()
      yield* eventually(
        Effect.map(scrapeAdmin(adminPort), (s) => hasSeries(s, "fibergate_requests_total", { listener: LISTENER, route: "names-faulty", method: "GET", status_class: "other" })),
        "the abandoned request is counted"
      )

      // Reloads: one applied (with a new listener whose port is taken), one rejected.
      const taken = yield* holdPort
      const applied = yield* request(`http://127.0.0.1:${adminPort}/config`, {
        method: "PUT",
        body: JSON.stringify(configAt(port, adminPort, [{ name: "names-taken", listen: `127.0.0.1:${taken.port}`, routes: [] }]))
      })
      assert.strictEqual(applied.status, 200, applied.body)
      const rejected = yield* request(`http://127.0.0.1:${adminPort}/config`, { method: "PUT", body: JSON.stringify({ servers: [], upstreams: {} }) })
      assert.strictEqual(rejected.status, 400)

      // Spans go to a collector that answers 404; garbage for the young-generation collector.
      yield* eventually(
        Effect.map(scrapeAdmin(adminPort), (s) => hasSeries(s, "fibergate_tracing_export_failures_total", { reason: "http_404" })),
        "a failed span export is counted"
      )
      let keep = 0
      yield* eventually(
        Effect.gen(function*() {
          for (let i = 0; i < 50_000; i++) keep += new Array(16).fill(i).length
          return hasSeries(yield* scrapeAdmin(adminPort), "nodejs_gc_duration_seconds_count", { kind: "minor" })
        }),
        "a minor GC is recorded"
      )
      assert.isAbove(keep, 0)

      // ---- the scrape -----------------------------------------------------------------------------
      const s = yield* scrapeAdmin(adminPort)

      typeOf(s, "fibergate_requests_total", "counter")
      const req = (route: string, method: string, statusClass: string) => ({ listener: LISTENER, route, method, status_class: statusClass })
      assert.strictEqual(series(s, "fibergate_requests_total", req("names-ok", "GET", "2xx")), 1)
      assert.strictEqual(series(s, "fibergate_requests_total", req("names-ok", "POST", "2xx")), 1)
      assert.strictEqual(series(s, "fibergate_requests_total", req("names-ok", "other", "2xx")), 1)
      assert.strictEqual(series(s, "fibergate_requests_total", req("names-ok", "POST", "4xx")), 1, "the 413 on a matched route")
      assert.strictEqual(series(s, "fibergate_requests_total", req("names-refused", "GET", "5xx")), 1)
      assert.strictEqual(series(s, "fibergate_requests_total", req("names-faulty", "GET", "other")), 1, "the 499")

      typeOf(s, "fibergate_request_duration_seconds", "histogram")
      const timing = { listener: LISTENER, route: "names-ok" }
      assert.strictEqual(series(s, "fibergate_request_duration_seconds_count", timing), 4)
      assert.isAbove(series(s, "fibergate_request_duration_seconds_sum", timing), 0)
      assert.strictEqual(series(s, "fibergate_request_duration_seconds_bucket", { ...timing, le: "+Inf" }), 4)
      assert.isAbove(samplesOf(s, "fibergate_request_duration_seconds_bucket", timing).length, 2, "finite buckets too")

      typeOf(s, "fibergate_rejected_requests_total", "counter")
      for (const reason of ["RouteNotFound", "BadRequest", "PayloadTooLarge", "HeadersTooLarge", "MethodNotAllowed", "NoHealthyUpstream", "CircuitOpen", "RequestTimeout"]) {
        atLeast(s, "fibergate_rejected_requests_total", { reason }, 1)
      }

      typeOf(s, "fibergate_upstream_attempts_total", "counter")
      const attempts = (upstream: string, result: string) => atLeast(s, "fibergate_upstream_attempts_total", { upstream, result }, 1)
      attempts("names-up", "success")
      attempts("names-retry", "5xx")
      attempts("names-retry", "success")
      attempts("names-down", "connect_error")
      attempts("names-faulty", "timeout")
      attempts("names-faulty", "reset")
      attempts("names-faulty", "protocol_error")

      typeOf(s, "fibergate_upstream_retries_total", "counter")
      atLeast(s, "fibergate_upstream_retries_total", { upstream: "names-retry" }, 1)
      typeOf(s, "fibergate_upstream_retries_refused_total", "counter")
      assert.strictEqual(series(s, "fibergate_upstream_retries_refused_total", { upstream: "names-refused" }), 1)

      typeOf(s, "fibergate_upstream_in_flight", "gauge")
      for (const upstream of ["names-up", "names-retry", "names-refused", "names-faulty", "names-down", "names-unhealthy"]) {
        assert.strictEqual(series(s, "fibergate_upstream_in_flight", { upstream }), 0, upstream)
      }

      const upEndpoint = { upstream: "names-up", endpoint: ok.url }
      for (const gauge of ["fibergate_endpoint_in_flight", "fibergate_endpoint_healthy", "fibergate_endpoint_ejected", "fibergate_endpoint_circuit_state"]) {
        typeOf(s, gauge, "gauge")
      }
      assert.strictEqual(series(s, "fibergate_endpoint_in_flight", upEndpoint), 0)
      assert.strictEqual(series(s, "fibergate_endpoint_healthy", upEndpoint), 1)
      assert.strictEqual(series(s, "fibergate_endpoint_healthy", { upstream: "names-unhealthy", endpoint: unhealthy.url }), 0)
      assert.strictEqual(series(s, "fibergate_endpoint_ejected", upEndpoint), 0)
      assert.strictEqual(series(s, "fibergate_endpoint_circuit_state", upEndpoint), 0)
      assert.strictEqual(series(s, "fibergate_endpoint_circuit_state", { upstream: "names-down", endpoint: `http://127.0.0.1:${closedPort}` }), 2)

      typeOf(s, "fibergate_upstream_pool_connections", "gauge")
      assert.strictEqual(series(s, "fibergate_upstream_pool_connections", { ...upEndpoint, state: "idle" }), 1)
      assert.strictEqual(series(s, "fibergate_upstream_pool_connections", { ...upEndpoint, state: "busy" }), 0)
      typeOf(s, "fibergate_upstream_pool_pending_requests", "gauge")
      assert.strictEqual(series(s, "fibergate_upstream_pool_pending_requests", upEndpoint), 0)

      typeOf(s, "fibergate_client_connections", "gauge")
      atLeast(s, "fibergate_client_connections", { listener: LISTENER }, 0)

      typeOf(s, "fibergate_config_reloads_total", "counter")
      assert.strictEqual(series(s, "fibergate_config_reloads_total", { result: "applied" }), 1)
      assert.strictEqual(series(s, "fibergate_config_reloads_total", { result: "rejected" }), 1)
      typeOf(s, "fibergate_listener_bind_failures_total", "counter")
      assert.strictEqual(series(s, "fibergate_listener_bind_failures_total", { listener: "names-taken" }), 1)

      typeOf(s, "fibergate_tracing_export_failures_total", "counter")
      atLeast(s, "fibergate_tracing_export_failures_total", { reason: "http_404" }, 1)

      for (const name of ["process_cpu_user_seconds_total", "process_cpu_system_seconds_total"]) {
        typeOf(s, name, "counter")
        atLeast(s, name, {}, 0)
      }
      assert.isAbove(series(s, "process_cpu_user_seconds_total"), 0)
      for (const name of ["process_resident_memory_bytes", "nodejs_heap_size_used_bytes", "nodejs_heap_size_total_bytes", "nodejs_external_memory_bytes"]) {
        typeOf(s, name, "gauge")
        assert.isAbove(series(s, name), 0, name)
      }
      typeOf(s, "process_start_time_seconds", "gauge")
      const started = series(s, "process_start_time_seconds")
      assert.isAtMost(started, Date.now() / 1000)
      assert.isAbove(started, Date.now() / 1000 - process.uptime() - 5)

      for (const stat of ["min", "max", "mean", "stddev", "p50", "p90", "p99"]) {
        const name = `nodejs_eventloop_lag_${stat}_seconds`
        typeOf(s, name, "gauge")
        atLeast(s, name, {}, 0)
      }

      typeOf(s, "nodejs_gc_duration_seconds", "histogram")
      atLeast(s, "nodejs_gc_duration_seconds_count", { kind: "minor" }, 1)
      atLeast(s, "nodejs_gc_duration_seconds_sum", { kind: "minor" }, 0)

      for (const res of held) res.destroy()
      assert.strictEqual(gateway.port, port)
    }))
})
