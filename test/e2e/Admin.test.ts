import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { request, simpleConfig, startGateway, startUpstream } from "../support/harness.ts"

/** A gateway with the admin API on a free port, in front of one echo upstream. */
const withAdmin = (route: Record<string, unknown> = {}, upstream: Record<string, unknown> = {}) =>
  Effect.gen(function*() {
    const app = yield* startUpstream("app")
    const config = simpleConfig([app.url], route, upstream)
    const gateway = yield* startGateway(config)
    const port = gateway.adminPort ?? assert.fail("admin API not bound")
    return { config, gateway, admin: (path: string) => `http://127.0.0.1:${port}${path}` }
  })

describe("admin API", () => {
  it.live("GET /health answers 200 {status: \"ok\"}", () =>
    Effect.gen(function*() {
      const { admin } = yield* withAdmin()
      const res = yield* request(admin("/health"))
      assert.strictEqual(res.status, 200)
      assert.strictEqual(res.headers.get("content-type"), "application/json")
      assert.deepStrictEqual(JSON.parse(res.body), { status: "ok" })
    }))

  it.live("GET /ready answers 200 with ready: true once the gateway is up", () =>
    Effect.gen(function*() {
      const { admin } = yield* withAdmin()
      const res = yield* request(admin("/ready"))
      assert.strictEqual(res.status, 200)
      assert.strictEqual(JSON.parse(res.body).ready, true)
    }))

  it.live("GET /config returns the running config encoded as the file would write it", () =>
    Effect.gen(function*() {
      const { admin, config } = yield* withAdmin({ timeout: "5s" }, { pool: { connect_timeout: "1500ms", keep_alive: "2m" } })
      const res = yield* request(admin("/config"))
      assert.strictEqual(res.status, 200)
      const body = JSON.parse(res.body)
      assert.strictEqual(body.servers[0].routes[0].timeout, "5s")
      assert.strictEqual(body.upstreams.app.pool.connect_timeout, "1500ms")
      assert.strictEqual(body.upstreams.app.pool.keep_alive, "2m")
      assert.deepStrictEqual(body, config)
    }))

  it.live("an unknown admin path answers 404", () =>
    Effect.gen(function*() {
      const { admin } = yield* withAdmin()
      const res = yield* request(admin("/nope"))
      assert.strictEqual(res.status, 404)
      assert.strictEqual(JSON.parse(res.body).error, "RouteNotFound")
    }))

  it.live("POST to an admin endpoint answers 405", () =>
    Effect.gen(function*() {
      const { admin } = yield* withAdmin()
      const res = yield* request(admin("/health"), { method: "POST", body: "x" })
      assert.strictEqual(res.status, 405)
      assert.strictEqual(JSON.parse(res.body).error, "MethodNotAllowed")
    }))
})
