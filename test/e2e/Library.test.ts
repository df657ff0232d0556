import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Layer } from "effect"
import { connect } from "node:net"
import { gateway } from "../../examples/custom-middleware.ts"
import { embed, program } from "../../examples/embed.ts"
import { ConfigSource } from "../../src/config/ConfigSource.ts"
import { Listeners } from "../../src/listener/Listeners.ts"
import { send } from "../support/http.ts"
import { startUpstream } from "../support/harness.ts"

/** Whether something accepts TCP connections on 127.0.0.1:port right now. */
const accepts = (port: number) =>
  Effect.callback<boolean>((resume) => {
    const socket = connect({ host: "127.0.0.1", port })
    socket.once("connect", () => {
      socket.destroy()
      resume(Effect.succeed(true))
    })
    socket.once("error", () => resume(Effect.succeed(false)))
  })

describe("library use (examples/embed.ts)", () => {
  it.live("program returns the body the upstream sent, through the gateway", () =>
    Effect.gen(function*() {
      const result = yield* program
      assert.strictEqual(result.status, 200)
      assert.strictEqual(result.body, "hello from the upstream: GET /hello?from=embed")
    }))

  it.live("after program's scope closes, the gateway port no longer accepts connections", () =>
    Effect.gen(function*() {
      const result = yield* program
      assert.isAbove(result.port, 0)
      assert.isFalse(yield* accepts(result.port))
    }))

  it.live("embed(url) proxies to the given upstream", () =>
    Effect.gen(function*() {
      const upstream = yield* startUpstream("given")
      const result = yield* embed(upstream.url)
      assert.strictEqual(result.status, 200)
      assert.strictEqual(JSON.parse(result.body).url, "/hello?from=embed")
      assert.strictEqual(upstream.seen.length, 1)
    }))
})

describe("a custom middleware with the user's own service (examples/custom-middleware.ts)", () => {
  it.live("the Layer built with AccountsLive refuses a suspended user with 403 and tells the upstream who the caller is", () =>
    Effect.gen(function*() {
      const upstream = yield* startUpstream("app")
      const context = yield* Layer.build(gateway(ConfigSource.layerValue({
        servers: [{ name: "web", listen: "127.0.0.1:0", routes: [{ id: "all", upstream: "app", middlewares: [{ custom: "suspended" }] }] }],
        upstreams: { app: { endpoints: [{ url: upstream.url }] } }
      })))
      const port = Context.get(context, Listeners).addresses.get("web")!.port
      const refused = yield* send(`http://127.0.0.1:${port}/`, { headers: { "x-user": "mallory" } })
      assert.strictEqual(refused.status, 403)
      assert.strictEqual(JSON.parse(refused.body).message, "This account is suspended")
      const admitted = yield* send(`http://127.0.0.1:${port}/`, { headers: { "x-user": "alice" } })
      assert.strictEqual(admitted.status, 200)
      assert.strictEqual(upstream.seen.length, 1)
      assert.strictEqual(upstream.seen[0].headers["x-account"], "alice")
    }))
})
