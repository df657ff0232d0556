import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { join } from "node:path"
import * as Gateway from "../../src/gateway/Gateway.ts"
import { request, startGateway, startUpstream } from "../support/harness.ts"
import { startLiveGateway, tempDir, within, writeInPlace } from "../support/liveGateway.ts"

const configOver = (endpoints: ReadonlyArray<string>, extraRoutes: ReadonlyArray<Record<string, unknown>> = []) => ({
  admin: { listen: "127.0.0.1:0" },
  log: { level: "none", access_log: false },
  servers: [{ name: "web", listen: "127.0.0.1:0", routes: [...extraRoutes, { id: "all", upstream: "app" }] }],
  upstreams: { app: { endpoints: endpoints.map((url) => ({ url })) }, other: { endpoints: endpoints.slice(-1).map((url) => ({ url })) } }
})

/** The same config, with the listener's real ports, as the admin API takes it. */
const withPorts = (config: ReturnType<typeof configOver>, port: number, adminPort: number) => ({
  ...config,
  admin: { listen: `127.0.0.1:${adminPort}` },
  servers: config.servers.map((s) => ({ ...s, listen: `127.0.0.1:${port}` }))
})

/** PUT /config, failing the test within 5 s when the gateway does not answer (a reload that hangs). */
const put = (adminPort: number, body: unknown) =>
  within(
    request(`http://127.0.0.1:${adminPort}/config`, { method: "PUT", body: JSON.stringify(body), headers: { "content-type": "application/json" } }),
    "PUT /config"
  )

describe("reload through the admin API", () => {
  it.live("PUT /config applies a valid config: a new route serves at once", () =>
    Effect.gen(function*() {
      const a = yield* startUpstream("a")
      const b = yield* startUpstream("b")
      const gateway = yield* startGateway(configOver([a.url, b.url]))
      const next = configOver([a.url, b.url], [{ id: "to-b", match: { path: { prefix: "/b" } }, upstream: "other" }])
      const res = yield* put(gateway.adminPort!, withPorts(next, gateway.port, gateway.adminPort!))
      assert.strictEqual(res.status, 200)
      assert.strictEqual(JSON.parse(res.body).generation, 2)
      const routed = yield* request(gateway.url("/b/x"))
      assert.strictEqual(routed.headers.get("x-upstream"), "b")
    }))

  it.live("PUT /config with an invalid config answers 400 with every problem and keeps the running config", () =>
    Effect.gen(function*() {
      const a = yield* startUpstream("a")
      const gateway = yield* startGateway(configOver([a.url]))
      const before = yield* request(`http://127.0.0.1:${gateway.adminPort}/config`)
      const bad = { ...withPorts(configOver([a.url]), gateway.port, gateway.adminPort!) }
      bad.servers = [{ ...bad.servers[0], routes: [{ id: "all", upstream: "nope" }] }]
      const res = yield* put(gateway.adminPort!, bad)
      assert.strictEqual(res.status, 400)
      const body = JSON.parse(res.body)
      assert.strictEqual(body.error, "ConfigError")
      assert.strictEqual(body.problems[0].path, "servers[0].routes[0].upstream")
      assert.include(body.problems[0].message, "Unknown upstream")
      const after = yield* request(`http://127.0.0.1:${gateway.adminPort}/config`)
      assert.strictEqual(after.body, before.body)
      assert.strictEqual((yield* request(gateway.url("/still"))).status, 200)
    }))

  it.live("PUT /config with a body that is not JSON answers 400 BadRequest", () =>
    Effect.gen(function*() {
      const a = yield* startUpstream("a")
      const gateway = yield* startGateway(configOver([a.url]))
      const res = yield* request(`http://127.0.0.1:${gateway.adminPort}/config`, { method: "PUT", body: "servers: [" })
      assert.strictEqual(res.status, 400)
      assert.strictEqual(JSON.parse(res.body).error, "BadRequest")
    }))

  it.live("reloads under load drop no request: 10 config swaps while 20 clients send 400 requests", () =>
    Effect.gen(function*() {
      const a = yield* startUpstream("a")
      const b = yield* startUpstream("b")
      const one = configOver([a.url])
      const two = configOver([a.url, b.url])
      const gateway = yield* startGateway(one)
      const statuses: Array<number> = []
      const client = Effect.gen(function*() {
        for (let i = 0; i < 20; i++) statuses.push((yield* request(gateway.url(`/load/${i}`))).status)
      })
      const generations: Array<number> = []
      const swaps = Effect.gen(function*() {
        for (let i = 0; i < 10; i++) {
          const res = yield* put(gateway.adminPort!, withPorts(i % 2 === 0 ? two : one, gateway.port, gateway.adminPort!))
          assert.strictEqual(res.status, 200)
          generations.push(JSON.parse(res.body).generation)
        }
      })
      yield* Effect.all([swaps, ...Array.from({ length: 20 }, () => client)], { concurrency: "unbounded" })
      assert.strictEqual(statuses.length, 400)
      assert.deepStrictEqual([...new Set(statuses)], [200])
      // Every swap was applied (each one a new route table), not just answered.
      assert.deepStrictEqual(generations, Array.from({ length: 10 }, (_, i) => i + 2))
      assert.strictEqual(gateway.services.routes.generation(), 11)
    }))

  it.live("POST /reload re-reads the config file: what changed in it is applied and reported", () =>
    Effect.gen(function*() {
      const a = yield* startUpstream("a")
      const b = yield* startUpstream("b")
      const path = join(yield* tempDir, "fibergate.yaml")
      yield* writeInPlace(path, configOver([a.url, b.url]))
      // Not watched: only the POST reads the file again.
      const gateway = yield* startLiveGateway(Gateway.layerFile(path, {}, { watch: false }))
      const port = gateway.port("web")
      const admin = `http://127.0.0.1:${gateway.adminPort}`
      assert.strictEqual((yield* request(`http://127.0.0.1:${port}/b/x`)).headers.get("x-upstream"), "a")

      // The same listeners (their bound ports), plus a route to b.
      yield* writeInPlace(path, withPorts(configOver([a.url, b.url], [{ id: "to-b", match: { path: { prefix: "/b" } }, upstream: "other" }]), port, gateway.adminPort!))
      const res = yield* within(request(`${admin}/reload`, { method: "POST" }), "POST /reload")
      assert.strictEqual(res.status, 200)
      const body = JSON.parse(res.body)
      assert.isTrue(body.applied)
      assert.strictEqual(body.generation, 2)
      assert.deepStrictEqual(body.changes.routes, { added: ["to-b"], removed: [], changed: [] })
      assert.strictEqual((yield* request(`http://127.0.0.1:${port}/b/x`)).headers.get("x-upstream"), "b", "the new route serves")
      assert.include((yield* request(`${admin}/routes`)).body, "to-b")
    }))
})
