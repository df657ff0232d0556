/**
 * A `custom:` middleware must name one the gateway has registered: otherwise the config is
 * rejected like a Schema error, with its path (and line, from a file): the gateway does not
 * start, a reload keeps the running config, `POST /config/validate` says invalid. A config
 * source of the user's own that runs no checks still cannot let such requests through: 500.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Exit, Layer, SubscriptionRef } from "effect"
import { ConfigError } from "../../src/config/ConfigError.ts"
import { decodeConfig } from "../../src/config/ConfigLoader.ts"
import { ConfigSource } from "../../src/config/ConfigSource.ts"
import * as Gateway from "../../src/gateway/Gateway.ts"
import { Listeners } from "../../src/listener/Listeners.ts"
import type { Middleware } from "../../src/middleware/Middleware.ts"
import { tempFile } from "../support/cli.ts"
import { request, simpleConfig, startGateway, startUpstream } from "../support/harness.ts"
import { send } from "../support/http.ts"

const tagged: Middleware = (request) => Effect.sync(() => request.setHeader("x-audited", "yes"))

const configWith = (upstream: string, names: ReadonlyArray<string>) =>
  simpleConfig([upstream], { middlewares: names.map((custom) => ({ custom })) })

/** The ConfigError a gateway Layer fails to build with. */
const buildError = <A, E>(layer: Layer.Layer<A, E>) =>
  Effect.gen(function*() {
    const exit = yield* Effect.exit(Effect.scoped(Layer.build(layer)))
    assert.isTrue(Exit.isFailure(exit), "the gateway does not start")
    const error = Exit.isFailure(exit) ? exit.cause.reasons.find((r) => r._tag === "Fail")?.error : undefined
    assert.instanceOf(error, ConfigError)
    return error as ConfigError
  })

describe("custom: names the gateway has registered", () => {
  it.live("at start: an unregistered name is a config error with its path and the names registered", () =>
    Effect.gen(function*() {
      const config = {
        ...configWith("http://127.0.0.1:1", ["audit", "audti"]),
        middlewares: { named: { custom: "nope" } }
      }
      const none = yield* buildError(Gateway.layer(config))
      assert.deepStrictEqual(none.problems.map((p) => [p.path, p.message]), [
        ["middlewares.named.custom", `No custom middleware is registered as "nope" (registered: none)`],
        ["servers[0].routes[0].middlewares[0].custom", `No custom middleware is registered as "audit" (registered: none)`],
        ["servers[0].routes[0].middlewares[1].custom", `No custom middleware is registered as "audti" (registered: none)`]
      ])
      const some = yield* buildError(Gateway.layerWith(ConfigSource.layerValue(config), { middlewares: { audit: tagged, other: tagged } }))
      assert.deepStrictEqual(some.problems.map((p) => p.path), ["middlewares.named.custom", "servers[0].routes[0].middlewares[1].custom"])
      assert.include(some.message, `"audti" (registered: "audit", "other")`)
    }))

  it.live("from a file: the problem has the file's line", () =>
    Effect.gen(function*() {
      const yaml = [
        "servers:",
        "  - name: web",
        "    listen: 127.0.0.1:0",
        "    routes:",
        "      - id: all",
        "        upstream: app",
        "        middlewares:",
        "          - custom: audti",
        "upstreams:",
        "  app: { endpoints: [ { url: \"http://127.0.0.1:1\" } ] }",
        ""
      ].join("\n")
      const path = yield* tempFile("custom.yaml", yaml)
      const error = yield* buildError(Gateway.layerWith(ConfigSource.layerFile(path, {}, { watch: false }), { middlewares: { audit: tagged } }))
      assert.deepStrictEqual(error.problems.map((p) => [p.path, p.line]), [["servers[0].routes[0].middlewares[0].custom", 8]])
      assert.include(error.message, `${path}:8:`)
    }))

  it.live("on reload: PUT /config naming an unregistered middleware is refused with 400 and the running config keeps serving; validate says invalid", () =>
    Effect.gen(function*() {
      const app = yield* startUpstream("app")
      const good = configWith(app.url, ["audit"])
      const gateway = yield* startGateway(good, { middlewares: { audit: tagged } })
      const admin = `http://127.0.0.1:${gateway.adminPort}`
      const bad = configWith(app.url, ["audit", "missing"])
      const put = yield* request(`${admin}/config`, { method: "PUT", body: JSON.stringify(bad), headers: { "content-type": "application/json" } })
      assert.strictEqual(put.status, 400)
      assert.deepStrictEqual(JSON.parse(put.body).problems.map((p: { path: string }) => p.path), ["servers[0].routes[0].middlewares[1].custom"])
      const validate = yield* request(`${admin}/config/validate`, { method: "POST", body: JSON.stringify(bad), headers: { "content-type": "application/json" } })
      assert.strictEqual(validate.status, 400)
      assert.isFalse(JSON.parse(validate.body).valid)
      // Still the good config: the registered middleware runs and the request goes through.
      const res = yield* send(gateway.url("/"))
      assert.strictEqual(res.status, 200)
      assert.strictEqual(app.seen.at(-1)?.headers["x-audited"], "yes")
      // A good config is still taken.
      const ok = yield* request(`${admin}/config`, { method: "PUT", body: JSON.stringify(configWith(app.url, [])), headers: { "content-type": "application/json" } })
      assert.strictEqual(ok.status, 200)
    }))

  it.live("a config source of the user's own runs no checks: a request to a route naming an unregistered middleware is answered 500, never forwarded", () =>
    Effect.gen(function*() {
      const app = yield* startUpstream("app")
      const decoded = decodeConfig(configWith(app.url, ["missing"]), "<registry>")
      assert.isTrue(decoded._tag === "Success")
      const own = Layer.effect(ConfigSource, Effect.gen(function*() {
        const config = decoded._tag === "Success" ? decoded.success : assert.fail("decodes")
        const ref = yield* SubscriptionRef.make(config)
        return ConfigSource.of({ config: ref, source: "<registry>", reload: Effect.succeed(config) })
      }))
      const context = yield* Layer.build(Gateway.layerWith(own, { middlewares: { audit: tagged } }))
      const listeners = Context.get(context, Listeners)
      const res = yield* send(`http://127.0.0.1:${[...listeners.addresses.values()][0].port}/`)
      assert.strictEqual(res.status, 500)
      assert.strictEqual(app.seen.length, 0)
    }))
})
