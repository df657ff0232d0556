import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { request, simpleConfig, startGateway, startUpstream } from "../support/harness.ts"
import { raw } from "../support/net.ts"
import { connect } from "node:net"
import { assertAbsent, growth, hasSeries, parsePrometheus, scrapeAdmin, series, type Scrape } from "../support/prometheus.ts"

/**
 * Series are read by exact name and labels: a missing one fails the test. Series whose labels
 * are this test's own (its listener, route, upstream) are absent before its traffic, and that is
 * asserted; process-wide ones (rejection reasons, reload results) grow from whatever they were.
 */
const valueOrAbsent = (scrape: Scrape, name: string, labels: Record<string, string>): number | "absent" =>
  hasSeries(scrape, name, labels) ? series(scrape, name, labels) : "absent"

describe("metrics", () => {
  it.live("GET /metrics serves Prometheus text with requests by listener, route and status class, and a duration histogram", () =>
    Effect.gen(function*() {
      const ok = yield* startUpstream("ok")
      const failing = yield* startUpstream("failing", {
        handler: (_req, res) => {
          res.writeHead(503)
          res.end()
        }
      })
      const config = simpleConfig([ok.url])
      const gateway = yield* startGateway({
        ...config,
        servers: [{
          name: "metrics-web",
          listen: "127.0.0.1:0",
          routes: [
            { id: "metrics-bad", match: { path: { prefix: "/bad" } }, upstream: "failing" },
            { id: "metrics-ok", upstream: "app" }
          ]
        }],
        upstreams: { ...config.upstreams, failing: { endpoints: [{ url: failing.url }] } }
      })
      const metricsUrl = `http://127.0.0.1:${gateway.adminPort}/metrics`
      const ok2xx = { listener: "metrics-web", route: "metrics-ok", method: "GET", status_class: "2xx" }
      const bad5xx = { listener: "metrics-web", route: "metrics-bad", method: "GET", status_class: "5xx" }
      const timing = { listener: "metrics-web", route: "metrics-ok" }
      const before = parsePrometheus((yield* request(metricsUrl)).body)
      assertAbsent(before, "fibergate_requests_total", ok2xx)
      assertAbsent(before, "fibergate_requests_total", bad5xx)
      assertAbsent(before, "fibergate_request_duration_seconds_count", timing)
      for (let i = 0; i < 3; i++) assert.strictEqual((yield* request(gateway.url(`/x${i}`))).status, 200)
      assert.strictEqual((yield* request(gateway.url("/bad"))).status, 503)
      const res = yield* request(metricsUrl)
      assert.strictEqual(res.status, 200)
      assert.strictEqual(res.headers.get("content-type"), "text/plain; version=0.0.4")
      const after = parsePrometheus(res.body)
      assert.strictEqual(series(after, "fibergate_requests_total", ok2xx), 3)
      assert.strictEqual(series(after, "fibergate_requests_total", bad5xx), 1)
      assert.strictEqual(series(after, "fibergate_request_duration_seconds_count", timing), 3)
      assert.strictEqual(after.types.get("fibergate_request_duration_seconds"), "histogram")
    }))

  it.live("telemetry.metrics.enabled: false records nothing", () =>
    Effect.gen(function*() {
      const ok = yield* startUpstream("ok")
      const config = simpleConfig([ok.url])
      const gateway = yield* startGateway({
        ...config,
        telemetry: { metrics: { enabled: false } },
        servers: [{ name: "metrics-off", listen: "127.0.0.1:0", routes: [{ id: "metrics-off-route", upstream: "app" }] }]
      })
      assert.strictEqual((yield* request(gateway.url("/y"))).status, 200)
      const before = yield* scrapeAdmin(gateway.adminPort)
      assert.strictEqual((yield* raw(gateway.port, "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")).status, 405)
      const after = yield* scrapeAdmin(gateway.adminPort)
      assert.notInclude(after.text, 'route="metrics-off-route"')
      // Absent before and after, or the same value: either way not counted.
      assert.strictEqual(
        valueOrAbsent(after, "fibergate_rejected_requests_total", { reason: "MethodNotAllowed" }),
        valueOrAbsent(before, "fibergate_rejected_requests_total", { reason: "MethodNotAllowed" }),
        "a parser-level refusal on a listener with metrics off is not counted"
      )
    }))
  it.live("upstream attempts by result, retries, endpoint state gauges and config reloads are counted", () =>
    Effect.gen(function*() {
      const failing = yield* startUpstream("failing", {
        handler: (_req, res) => {
          res.writeHead(503)
          res.end()
        }
      })
      const ok = yield* startUpstream("ok")
      const config = {
        admin: { listen: "127.0.0.1:0" },
        log: { level: "none", access_log: false },
        servers: [{ name: "metrics-retry", listen: "127.0.0.1:0", routes: [{ id: "r", upstream: "metrics-up", retry: { backoff: { base: "1ms", max: "1ms" } } }] }],
        upstreams: { "metrics-up": { endpoints: [{ url: failing.url }, { url: ok.url }] } }
      }
      const gateway = yield* startGateway(config)
      const before = yield* scrapeAdmin(gateway.adminPort)
      const upstream = { upstream: "metrics-up" }
      assertAbsent(before, "fibergate_upstream_attempts_total", { ...upstream, result: "5xx" })
      assertAbsent(before, "fibergate_upstream_attempts_total", { ...upstream, result: "success" })
      assertAbsent(before, "fibergate_upstream_retries_total", upstream)
      assert.strictEqual((yield* request(gateway.url("/once"))).status, 200)
      const bad = yield* request(`http://127.0.0.1:${gateway.adminPort}/config`, {
        method: "PUT",
        body: JSON.stringify({ servers: [], upstreams: {} })
      })
      assert.strictEqual(bad.status, 400)
      const after = yield* scrapeAdmin(gateway.adminPort)
      assert.strictEqual(series(after, "fibergate_upstream_attempts_total", { ...upstream, result: "5xx" }), 1)
      assert.strictEqual(series(after, "fibergate_upstream_attempts_total", { ...upstream, result: "success" }), 1)
      assert.strictEqual(series(after, "fibergate_upstream_retries_total", upstream), 1)
      assert.strictEqual(growth(before, after, "fibergate_config_reloads_total", { result: "rejected" }), 1)
      assert.strictEqual(series(after, "fibergate_endpoint_healthy", { ...upstream, endpoint: ok.url }), 1)
      assert.strictEqual(series(after, "fibergate_endpoint_circuit_state", { ...upstream, endpoint: ok.url }), 0)
      assert.strictEqual(series(after, "fibergate_upstream_in_flight", upstream), 0)
    }))

  it.live("requests are counted by method (unknown methods share one label), and refused requests by reason", () =>
    Effect.gen(function*() {
      const ok = yield* startUpstream("ok")
      const gateway = yield* startGateway({
        ...simpleConfig([ok.url]),
        servers: [{
          name: "metrics-methods",
          listen: "127.0.0.1:0",
          limits: { max_body_bytes: 10 },
          routes: [{ id: "metrics-methods-api", match: { path: { prefix: "/api" } }, upstream: "app" }]
        }]
      })
      const before = yield* scrapeAdmin(gateway.adminPort)
      yield* request(gateway.url("/api/a"), { method: "POST", body: "x" })
      yield* request(gateway.url("/api/b"), { method: "DELETE" })
      yield* request(gateway.url("/api/c"), { method: "PROPFIND" })
      assert.strictEqual((yield* request(gateway.url("/elsewhere"))).status, 404)
      assert.strictEqual((yield* request(gateway.url("/api/big"), { method: "POST", body: "x".repeat(11) })).status, 413)
      const bad = yield* raw(gateway.port, "GET /api HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
      assert.strictEqual(bad.status, 400)
      // Refused by node:http's parser before a request exists: counted by the listener's table too.
      const huge = yield* raw(gateway.port, `GET /api HTTP/1.1\r\nHost: a\r\nx-big: ${"a".repeat(20_000)}\r\n\r\n`)
      assert.strictEqual(huge.status, 431)
      const tunnel = yield* raw(gateway.port, "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
      assert.strictEqual(tunnel.status, 405)
      const after = yield* scrapeAdmin(gateway.adminPort)
      const route = (method: string, status_class: string) => ({ listener: "metrics-methods", route: "metrics-methods-api", method, status_class })
      for (const method of ["POST", "DELETE", "other"]) assertAbsent(before, "fibergate_requests_total", route(method, "2xx"))
      assert.strictEqual(series(after, "fibergate_requests_total", route("POST", "2xx")), 1)
      assert.strictEqual(series(after, "fibergate_requests_total", route("DELETE", "2xx")), 1)
      assert.strictEqual(series(after, "fibergate_requests_total", route("other", "2xx")), 1)
      assert.notInclude(after.text, 'method="PROPFIND"')
      for (const reason of ["RouteNotFound", "PayloadTooLarge", "BadRequest", "HeadersTooLarge", "MethodNotAllowed"]) {
        assert.strictEqual(growth(before, after, "fibergate_rejected_requests_total", { reason }), 1, reason)
      }
    }))

  it.live("pool connections and endpoint gauges follow the endpoints in force; a removed endpoint's series disappear", () =>
    Effect.gen(function*() {
      const a = yield* startUpstream("a")
      const b = yield* startUpstream("b")
      const config = {
        ...simpleConfig([a.url, b.url]),
        servers: [{ name: "metrics-pool", listen: "127.0.0.1:0", routes: [{ id: "metrics-pool-r", upstream: "metrics-pool-up" }] }],
        upstreams: { "metrics-pool-up": { endpoints: [{ url: a.url }, { url: b.url }] } }
      }
      const gateway = yield* startGateway(config)
      for (let i = 0; i < 4; i++) assert.strictEqual((yield* request(gateway.url(`/p${i}`))).status, 200)
      const during = yield* scrapeAdmin(gateway.adminPort)
      for (const e of [a.url, b.url]) {
        const labels = { upstream: "metrics-pool-up", endpoint: e }
        assert.strictEqual(series(during, "fibergate_upstream_pool_connections", { ...labels, state: "idle" }), 1, e)
        assert.strictEqual(series(during, "fibergate_upstream_pool_connections", { ...labels, state: "busy" }), 0, e)
        assert.strictEqual(series(during, "fibergate_endpoint_in_flight", labels), 0, e)
        assert.strictEqual(series(during, "fibergate_endpoint_healthy", labels), 1, e)
      }
      const put = yield* request(`http://127.0.0.1:${gateway.adminPort}/config`, {
        method: "PUT",
        body: JSON.stringify({ ...config, upstreams: { "metrics-pool-up": { endpoints: [{ url: a.url }] } } })
      })
      assert.strictEqual(put.status, 200)
      const after = yield* scrapeAdmin(gateway.adminPort)
      assert.strictEqual(series(after, "fibergate_endpoint_healthy", { upstream: "metrics-pool-up", endpoint: a.url }), 1)
      assert.notInclude(after.text, `endpoint="${b.url}"`)
    }))

  it.live("process metrics: CPU, memory, event-loop delay and garbage collection pauses", () =>
    Effect.gen(function*() {
      const ok = yield* startUpstream("ok")
      const gateway = yield* startGateway(simpleConfig([ok.url]))
      // A second gateway in the same process shares the process metrics; stopping it leaves them.
      yield* Effect.scoped(startGateway(simpleConfig([ok.url])))
      // Enough short-lived garbage for V8 to run the young-generation collector.
      let keep = 0
      for (let i = 0; i < 200_000; i++) keep += new Array(16).fill(i).length
      assert.isTrue(keep > 0)
      // GC entries reach the PerformanceObserver asynchronously.
      let scrape = yield* scrapeAdmin(gateway.adminPort)
      for (let i = 0; i < 100 && !hasSeries(scrape, "nodejs_gc_duration_seconds_count", { kind: "minor" }); i++) {
        yield* Effect.sleep("10 millis")
        scrape = yield* scrapeAdmin(gateway.adminPort)
      }
      assert.isAbove(series(scrape, "process_cpu_user_seconds_total"), 0)
      assert.strictEqual(scrape.types.get("process_cpu_user_seconds_total"), "counter")
      assert.isAbove(series(scrape, "process_resident_memory_bytes"), 10_000_000)
      assert.isAbove(series(scrape, "nodejs_heap_size_used_bytes"), 0)
      assert.isAbove(series(scrape, "process_start_time_seconds"), 1.7e9)
      for (const stat of ["min", "max", "mean", "stddev", "p50", "p90", "p99"]) {
        assert.isAtLeast(series(scrape, `nodejs_eventloop_lag_${stat}_seconds`), 0, stat)
      }
      assert.isAbove(series(scrape, "nodejs_gc_duration_seconds_count", { kind: "minor" }), 0)
    }))

  it.live("open client connections are a gauge per listener", () =>
    Effect.gen(function*() {
      const ok = yield* startUpstream("ok")
      const gateway = yield* startGateway({
        ...simpleConfig([ok.url]),
        servers: [{ name: "metrics-conns", listen: "127.0.0.1:0", routes: [{ id: "metrics-conns-r", upstream: "app" }] }]
      })
      const open = () => Effect.map(scrapeAdmin(gateway.adminPort), (s) => series(s, "fibergate_client_connections", { listener: "metrics-conns" }))
      const sockets = yield* Effect.promise(() =>
        Promise.all([0, 1, 2].map(() =>
          new Promise<import("node:net").Socket>((resolve) => {
            const socket = connect(gateway.port, "127.0.0.1", () => resolve(socket))
          })
        ))
      )
      // The server counts a connection when it accepts it, which can trail the client's connect.
      let seen = 0
      for (let i = 0; i < 100 && seen !== 3; i++) {
        seen = yield* open()
        if (seen !== 3) yield* Effect.sleep("10 millis")
      }
      assert.strictEqual(seen, 3)
      for (const s of sockets) s.destroy()
      for (let i = 0; i < 100 && seen !== 0; i++) {
        seen = yield* open()
        if (seen !== 0) yield* Effect.sleep("10 millis")
      }
      assert.strictEqual(seen, 0)
    }))
})
