import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { connect } from "node:net"
import { embed, program } from "../../examples/embed.ts"
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
