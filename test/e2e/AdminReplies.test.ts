/**
 * The admin API's refusals word for word, as an operator with curl reads them: 404 with the
 * endpoint list, 405 with what the path answers, 401 telling a missing token from a wrong one,
 * and the `<redacted>` placeholder refused with its reason.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { request, simpleConfig, startGateway, startUpstream } from "../support/harness.ts"
import { send } from "../support/http.ts"
import * as Gateway from "../../src/gateway/Gateway.ts"
import { startLiveGateway } from "../support/liveGateway.ts"
import { holdPort, raw } from "../support/net.ts"
import { Exit, Layer, SubscriptionRef } from "effect"
import { ConfigSource } from "../../src/config/ConfigSource.ts"
import { decoded } from "../support/effects.ts"

const setup = (admin: Record<string, unknown> = {}) =>
  Effect.gen(function*() {
    const app = yield* startUpstream("app")
    const base = simpleConfig([app.url])
    const config = { ...base, admin: { ...base.admin, ...admin } }
    const gateway = yield* startGateway(config)
    return { config, url: (path: string) => `http://127.0.0.1:${gateway.adminPort}${path}` }
  })

const json = (body: string) => JSON.parse(body) as Record<string, unknown>

describe("admin API replies", () => {
  it.live("an unknown path: 404 naming it, with every endpoint listed", () =>
    Effect.gen(function*() {
      const { url } = yield* setup()
      const res = yield* send(url("/nope?x=1"))
      assert.strictEqual(res.status, 404)
      const body = json(res.body)
      assert.strictEqual(body.error, "RouteNotFound")
      assert.strictEqual(body.message, "No admin endpoint at /nope")
      assert.includeMembers(body.endpoints as Array<string>, ["GET /health", "GET /ready", "GET /config", "PUT /config", "POST /config/validate", "POST /reload", "GET /routes", "GET /upstreams", "GET /stats", "GET /metrics"])
    }))

  it.live("a known path with another method: 405 with what it answers, in the body and in Allow", () =>
    Effect.gen(function*() {
      const { url } = yield* setup()
      const res = yield* send(url("/config"), { method: "DELETE" })
      assert.strictEqual(res.status, 405)
      assert.strictEqual(res.headers.allow, "GET, HEAD, PUT")
      assert.deepStrictEqual(json(res.body), { error: "MethodNotAllowed", message: "/config answers GET, HEAD, PUT", allow: ["GET", "HEAD", "PUT"] })
    }))

  it.live("with admin.token: a missing token and a wrong one are told apart", () =>
    Effect.gen(function*() {
      const { url } = yield* setup({ token: "s3cret-token" })
      const missing = yield* send(url("/config"))
      assert.strictEqual(missing.status, 401)
      assert.deepStrictEqual(json(missing.body), { error: "Unauthorized", message: "This admin API needs Authorization: Bearer <admin.token>" })
      const wrong = yield* send(url("/config"), { headers: { authorization: "Bearer nope" } })
      assert.strictEqual(wrong.status, 401)
      assert.deepStrictEqual(json(wrong.body), { error: "Unauthorized", message: "The bearer token does not match" })
      assert.notStrictEqual(missing.headers["www-authenticate"], wrong.headers["www-authenticate"])
      assert.strictEqual((yield* send(url("/config"), { headers: { authorization: "Bearer s3cret-token" } })).status, 200)
    }))

  it.live("PUT /config with the <redacted> placeholder: 400 naming where it is and why", () =>
    Effect.gen(function*() {
      const { config, url } = yield* setup({ token: "s3cret-token" })
      const auth = { authorization: "Bearer s3cret-token", "content-type": "application/json" }
      const sent = JSON.stringify({ ...config, admin: { ...config.admin, token: "<redacted>" } })
      const res = yield* request(url("/config"), { method: "PUT", headers: auth, body: sent })
      assert.strictEqual(res.status, 400)
      const body = json(res.body)
      assert.strictEqual(body.error, "ConfigError")
      assert.deepInclude(body.problems as Array<unknown>, { path: "admin.token", message: "<redacted> is what GET /config shows for a secret; send the real value" })
    }))

  it.live("PUT /config that drops admin.token: applied with a warning, and the API stops asking for one", () =>
    Effect.gen(function*() {
      const app = yield* startUpstream("app")
      const base = simpleConfig([app.url])
      const config = { ...base, admin: { ...base.admin, token: "s3cret-token" } }
      const gateway = yield* startLiveGateway(Gateway.layer(config))
      const url = (path: string) => `http://127.0.0.1:${gateway.adminPort}${path}`
      const warning = "the new config has no admin.token: the admin API no longer asks for one"
      const auth = { authorization: "Bearer s3cret-token", "content-type": "application/json" }
      // A change that keeps the token says nothing.
      const kept = yield* request(url("/config"), { method: "PUT", headers: auth, body: JSON.stringify({ ...config, log: { level: "warn" } }) })
      assert.strictEqual(kept.status, 200)
      assert.notInclude(gateway.logs.map((l) => l.message), warning)
      const dropped = yield* request(url("/config"), { method: "PUT", headers: auth, body: JSON.stringify(base) })
      assert.strictEqual(dropped.status, 200)
      assert.deepInclude(gateway.logs, { level: "Warn", message: warning })
      assert.strictEqual((yield* send(url("/config"))).status, 200)
      // Adding a token back is no warning either.
      const before = gateway.logs.length
      assert.strictEqual((yield* request(url("/config"), { method: "PUT", headers: { "content-type": "application/json" }, body: JSON.stringify(config) })).status, 200)
      assert.notInclude(gateway.logs.slice(before).map((l) => l.message), warning)
      assert.strictEqual((yield* send(url("/config"))).status, 401)
    }))

  it.live("a config applied without an admin section: the admin API bound at start still answers, asking for no token", () =>
    Effect.gen(function*() {
      const { config, url } = yield* setup({ token: "s3cret-token" })
      const { admin: _admin, ...withoutAdmin } = config
      const put = yield* request(url("/config"), {
        method: "PUT",
        headers: { authorization: "Bearer s3cret-token", "content-type": "application/json" },
        body: JSON.stringify(withoutAdmin)
      })
      assert.strictEqual(put.status, 200)
      const res = yield* send(url("/config"))
      assert.strictEqual(res.status, 200)
      assert.notProperty(json(res.body), "admin")
      // The config in force now has no admin section at all: a further change still applies.
      const again = yield* request(url("/config"), { method: "PUT", headers: { "content-type": "application/json" }, body: JSON.stringify(withoutAdmin) })
      assert.strictEqual(again.status, 200)
    }))

  it.live("PUT /config without a token on a gateway that never had one: applied, no warning", () =>
    Effect.gen(function*() {
      const app = yield* startUpstream("app")
      const config = simpleConfig([app.url])
      const gateway = yield* startLiveGateway(Gateway.layer(config))
      const put = yield* request(`http://127.0.0.1:${gateway.adminPort}/config`, { method: "PUT", headers: { "content-type": "application/json" }, body: JSON.stringify({ ...config, log: { level: "warn" } }) })
      assert.strictEqual(put.status, 200)
      assert.isFalse(gateway.logs.some((l) => l.message.includes("admin.token")), "no warning about the token")
    }))

  it.live("a config refused by PUT /config or POST /config/validate names where it came from in every problem", () =>
    Effect.gen(function*() {
      const { config, url } = yield* setup()
      const bad = JSON.stringify({ ...config, servers: [{ ...config.servers[0], listen: "nowhere" }] })
      const headers = { "content-type": "application/json" }
      const put = json((yield* request(url("/config"), { method: "PUT", headers, body: bad })).body)
      assert.strictEqual(put.error, "ConfigError")
      assert.match(put.message as string, /^admin PUT \/config: /)
      const validate = json((yield* request(url("/config/validate"), { method: "POST", headers, body: bad })).body)
      assert.strictEqual(validate.valid, false)
      assert.match(validate.message as string, /^admin POST \/config\/validate: /)
    }))

  it.live("replies are pretty JSON ending in a newline (curl-friendly); a 413 closes the connection", () =>
    Effect.gen(function*() {
      const { url } = yield* setup()
      const health = yield* send(url("/health"))
      assert.strictEqual(health.body, "{\n  \"status\": \"ok\"\n}\n")
      const port = Number(new URL(url("/")).port)
      const tooLarge = yield* raw(port, "PUT /config HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: 2000000\r\n\r\n", { untilClose: true })
      assert.strictEqual(tooLarge.status, 413)
      assert.deepStrictEqual(tooLarge.headers.get("connection"), ["close"])
      assert.deepStrictEqual(JSON.parse(tooLarge.body), { error: "PayloadTooLarge", message: "The body is larger than 1048576 bytes", limit: 1048576 })
    }))

  it.live("GET /stats: uptime_seconds counts from the start, never more than the time since", () =>
    Effect.gen(function*() {
      const before = Date.now()
      const { url } = yield* setup()
      const stats = json((yield* send(url("/stats"))).body)
      const uptime = stats.uptime_seconds as number
      assert.isAtLeast(uptime, 0)
      assert.isAtMost(uptime * 1000, Date.now() - before + 1)
    }))

  it.live("the start is logged with the admin API's address; an admin address that is taken fails the start naming the admin listener", () =>
    Effect.gen(function*() {
      const app = yield* startUpstream("app")
      const config = simpleConfig([app.url])
      const gateway = yield* startLiveGateway(Gateway.layer(config))
      assert.include(gateway.logs.map((l) => l.message), `admin API on http://127.0.0.1:${gateway.adminPort}`)
      const taken = yield* holdPort
      const exit = yield* Effect.exit(Effect.scoped(Layer.build(Gateway.layer({ ...config, admin: { listen: `127.0.0.1:${taken.port}` } }))))
      assert.isTrue(Exit.isFailure(exit))
      const error = Exit.isFailure(exit) ? exit.cause.reasons.find((r) => r._tag === "Fail") : undefined
      assert.deepInclude((error as { error: unknown } | undefined)?.error, { _tag: "ListenError", listener: "admin", address: `127.0.0.1:${taken.port}` })
    }))

  it.live("a defect in a handler (a custom config source whose reload dies): 500 InternalError with its first line, logged, and the API keeps answering", () =>
    Effect.gen(function*() {
      const app = yield* startUpstream("app")
      const config = decoded(simpleConfig([app.url]))
      // A library user's source, e.g. fed by a service registry, with a bug in its reload.
      const source = Layer.effect(
        ConfigSource,
        Effect.map(SubscriptionRef.make(config), (ref) =>
          ConfigSource.of({ config: ref, source: "registry", reload: Effect.die(new Error("registry client crashed")) }))
      )
      const gateway = yield* startLiveGateway(Gateway.layerWith(source))
      const url = (path: string) => `http://127.0.0.1:${gateway.adminPort}${path}`
      const res = yield* send(url("/reload"), { method: "POST" })
      assert.strictEqual(res.status, 500)
      const body = json(res.body)
      assert.strictEqual(body.error, "InternalError")
      assert.include(String(body.message), "registry client crashed")
      assert.notInclude(String(body.message), "\n")
      assert.isTrue(gateway.logs.some((l) => l.level === "Error" && l.message.includes("admin request failed")))
      assert.strictEqual((yield* send(url("/health"))).status, 200)
    }))
})
