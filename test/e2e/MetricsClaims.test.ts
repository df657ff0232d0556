/**
 * "The series of an endpoint, upstream or listener that a reload removed are dropped": a reload
 * that removes a whole upstream drops its upstream gauge and every endpoint gauge, while the
 * upstream that stays keeps its series. Read from the admin API's Prometheus text.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { request, startGateway, startUpstream } from "../support/harness.ts"
import { assertAbsent, scrapeAdmin, series } from "../support/prometheus.ts"

describe("metrics: series of a removed upstream", () => {
  it.live("a reload that removes an upstream drops fibergate_upstream_in_flight and its endpoints' gauges; the remaining upstream keeps its own", () =>
    Effect.gen(function*() {
      const kept = yield* startUpstream("kept")
      const gone = yield* startUpstream("gone")
      const config = {
        admin: { listen: "127.0.0.1:0" },
        log: { level: "none", access_log: false },
        servers: [{
          name: "metrics-claims",
          listen: "127.0.0.1:0",
          routes: [
            { id: "metrics-claims-gone", match: { path: { prefix: "/gone" } }, upstream: "metrics-claims-gone" },
            { id: "metrics-claims-kept", upstream: "metrics-claims-kept" }
          ]
        }],
        upstreams: { "metrics-claims-kept": { endpoints: [{ url: kept.url }] }, "metrics-claims-gone": { endpoints: [{ url: gone.url }] } }
      }
      const gateway = yield* startGateway(config)
      assert.strictEqual((yield* request(gateway.url("/gone/x"))).status, 200)
      const goneUpstream = { upstream: "metrics-claims-gone" }
      const goneEndpoint = { ...goneUpstream, endpoint: gone.url }
      const before = yield* scrapeAdmin(gateway.adminPort)
      assert.strictEqual(series(before, "fibergate_upstream_in_flight", goneUpstream), 0)
      assert.strictEqual(series(before, "fibergate_endpoint_healthy", goneEndpoint), 1)
      const put = yield* request(`http://127.0.0.1:${gateway.adminPort}/config`, {
        method: "PUT",
        body: JSON.stringify({
          ...config,
          servers: [{ ...config.servers[0], routes: [config.servers[0].routes[1]] }],
          upstreams: { "metrics-claims-kept": config.upstreams["metrics-claims-kept"] }
        })
      })
      assert.strictEqual(put.status, 200, put.body)
      const after = yield* scrapeAdmin(gateway.adminPort)
      assertAbsent(after, "fibergate_upstream_in_flight", goneUpstream)
      for (const gauge of ["fibergate_endpoint_healthy", "fibergate_endpoint_ejected", "fibergate_endpoint_circuit_state", "fibergate_endpoint_in_flight", "fibergate_upstream_pool_pending_requests"]) {
        assertAbsent(after, gauge, goneEndpoint)
      }
      assert.notInclude(after.text, `endpoint="${gone.url}"`)
      assert.strictEqual(series(after, "fibergate_upstream_in_flight", { upstream: "metrics-claims-kept" }), 0)
      assert.strictEqual(series(after, "fibergate_endpoint_healthy", { upstream: "metrics-claims-kept", endpoint: kept.url }), 1)
    }))
})
