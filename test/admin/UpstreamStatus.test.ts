/**
 * What `GET /upstreams` and `GET /stats` show of an upstream group: each endpoint's state as the
 * request path left it, and the per-state counts, read from a real group (real pools, closed
 * after each test) whose endpoints are put in each state.
 */
import type { Pool } from "undici"
import { afterEach, describe, expect, it } from "vitest"
import { endpointCounts, endpointStatus, upstreamStatus } from "../../src/admin/UpstreamStatus.ts"
import { buildUpstreamGroup, type Endpoint } from "../../src/upstream/UpstreamGroup.ts"
import { decoded } from "../support/effects.ts"

const opened = new Set<Pool>()
afterEach(async () => {
  await Promise.all([...opened].map((p) => p.destroy().catch(() => undefined)))
  opened.clear()
})

const groupOf = (app: Record<string, unknown>) => {
  const upstream = decoded({
    log: { level: "none", access_log: false },
    servers: [{ name: "web", listen: "127.0.0.1:0", routes: [{ id: "all", upstream: "app" }] }],
    upstreams: { app }
  }).upstreams.app
  const { group } = buildUpstreamGroup("app", upstream, undefined)
  for (const e of group.endpoints) opened.add(e.pool)
  return group
}

// The request path mutates endpoints in place; so does the test, to put each in a state.
const mutable = (e: Endpoint) => e as { -readonly [K in keyof Endpoint]: Endpoint[K] }

describe("endpointCounts", () => {
  it("counts each state on its own: unhealthy, ejected, circuit open, circuit half-open, and what stays available (half-open admits a probe)", () => {
    const urls = [1, 2, 3, 4, 5].map((p) => ({ url: `http://127.0.0.1:${p}` }))
    const group = groupOf({ endpoints: urls, circuit_breaker: {} })
    const [healthy, unhealthy, ejected, open, halfOpen] = group.endpoints.map(mutable)
    unhealthy.healthy = false
    ejected.ejected = true
    open.circuit = "open"
    halfOpen.circuit = "half-open"
    expect(healthy.circuit).toBe("closed")
    expect(endpointCounts(group)).toEqual({ total: 5, available: 2, unhealthy: 1, ejected: 1, circuit_open: 1, circuit_half_open: 1 })
  })

  it("an endpoint in several states counts in each", () => {
    const group = groupOf({ endpoints: [{ url: "http://127.0.0.1:1" }, { url: "http://127.0.0.1:2" }] })
    const [a] = group.endpoints.map(mutable)
    a.healthy = false
    a.ejected = true
    expect(endpointCounts(group)).toMatchObject({ total: 2, unhealthy: 1, ejected: 1 })
  })
})

describe("endpointStatus", () => {
  it("shows the latency EWMA rounded to the microsecond, and the endpoint's own counters", () => {
    const group = groupOf({ endpoints: [{ url: "http://127.0.0.1:1", weight: 3 }] })
    const e = mutable(group.endpoints[0])
    e.ewma = 12.3456789
    e.active = 2
    e.ejections = 4
    expect(endpointStatus(group, e)).toEqual({
      url: "http://127.0.0.1:1",
      weight: 3,
      available: true,
      healthy: true,
      ejected: false,
      ejections: 4,
      circuit: "closed",
      in_flight: 2,
      latency_ewma_ms: 12.346
    })
    expect(upstreamStatus(new Map([["app", group]])).app).toMatchObject({ balance: "round_robin", in_flight: 0 })
  })
})
