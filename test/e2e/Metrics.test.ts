import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { request, simpleConfig, startGateway, startUpstream } from "../support/harness.ts"

/** The value of one sample line of the Prometheus text, 0 when absent. */
const sample = (text: string, name: string, labels: string): number => {
  const line = text.split("\n").find((l) => l.startsWith(`${name}{`) && labels.split(",").every((kv) => l.includes(kv)))
  return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(" ") + 1))
}

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
      const before = (yield* request(metricsUrl)).body
      for (let i = 0; i < 3; i++) assert.strictEqual((yield* request(gateway.url(`/x${i}`))).status, 200)
      assert.strictEqual((yield* request(gateway.url("/bad"))).status, 503)
      const res = yield* request(metricsUrl)
      assert.strictEqual(res.status, 200)
      assert.strictEqual(res.headers.get("content-type"), "text/plain; version=0.0.4")
      const delta = (name: string, labels: string) => sample(res.body, name, labels) - sample(before, name, labels)
      assert.strictEqual(delta("fibergate_requests_total", 'listener="metrics-web",route="metrics-ok",status_class="2xx"'), 3)
      assert.strictEqual(delta("fibergate_requests_total", 'route="metrics-bad",status_class="5xx"'), 1)
      assert.strictEqual(delta("fibergate_request_duration_seconds_count", 'route="metrics-ok"'), 3)
      assert.include(res.body, "# TYPE fibergate_request_duration_seconds histogram")
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
      const res = yield* request(`http://127.0.0.1:${gateway.adminPort}/metrics`)
      assert.notInclude(res.body, 'route="metrics-off-route"')
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
      const metricsUrl = `http://127.0.0.1:${gateway.adminPort}/metrics`
      const before = (yield* request(metricsUrl)).body
      assert.strictEqual((yield* request(gateway.url("/once"))).status, 200)
      const bad = yield* request(`http://127.0.0.1:${gateway.adminPort}/config`, {
        method: "PUT",
        body: JSON.stringify({ servers: [], upstreams: {} })
      })
      assert.strictEqual(bad.status, 400)
      const after = (yield* request(metricsUrl)).body
      const delta = (name: string, labels: string) => sample(after, name, labels) - sample(before, name, labels)
      assert.strictEqual(delta("fibergate_upstream_attempts_total", 'upstream="metrics-up",result="5xx"'), 1)
      assert.strictEqual(delta("fibergate_upstream_attempts_total", 'upstream="metrics-up",result="success"'), 1)
      assert.strictEqual(delta("fibergate_upstream_retries_total", 'upstream="metrics-up"'), 1)
      assert.strictEqual(delta("fibergate_config_reloads_total", 'result="rejected"'), 1)
      assert.strictEqual(sample(after, "fibergate_endpoint_healthy", `upstream="metrics-up",endpoint="${ok.url}"`), 1)
      assert.strictEqual(sample(after, "fibergate_endpoint_circuit_state", `upstream="metrics-up",endpoint="${ok.url}"`), 0)
      assert.include(after, 'fibergate_upstream_in_flight{upstream="metrics-up"}')
    }))
})
