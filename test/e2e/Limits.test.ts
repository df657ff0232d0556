import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { connect } from "node:net"
import { simpleConfig, startGateway, startUpstream } from "../support/harness.ts"
import { raw } from "../support/net.ts"

const withLimits = (upstream: string, limits: Record<string, unknown>) => {
  const config = simpleConfig([upstream])
  return { ...config, servers: config.servers.map((s) => ({ ...s, limits })) }
}

/** Opens a connection, sends one keep-alive request, and resolves when the server closes it. */
const closedByServer = (port: number) =>
  Effect.callback<{ readonly answered: boolean }>((resume) => {
    const socket = connect({ host: "127.0.0.1", port })
    let data = ""
    socket.on("data", (c: Buffer) => (data += c.toString("latin1")))
    socket.on("connect", () => socket.write("GET /keep HTTP/1.1\r\nHost: t\r\n\r\n"))
    socket.on("close", () => resume(Effect.succeed({ answered: data.startsWith("HTTP/1.1 200") })))
    socket.on("error", () => undefined)
    return Effect.sync(() => socket.destroy())
  }).pipe(Effect.timeout("3 seconds"))

describe("listener limits", () => {
  it.live("max_header_bytes: request headers above the configured size get 431 and never reach the upstream", () =>
    Effect.gen(function*() {
      const upstream = yield* startUpstream("a")
      const gateway = yield* startGateway(withLimits(upstream.url, { max_header_bytes: 1024 }))
      const res = yield* raw(gateway.port, `GET / HTTP/1.1\r\nHost: t\r\nX-Big: ${"a".repeat(2048)}\r\n\r\n`)
      assert.strictEqual(res.status, 431)
      const small = yield* raw(gateway.port, `GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\nX-Small: ${"a".repeat(100)}\r\n\r\n`)
      assert.strictEqual(small.status, 200)
      assert.strictEqual(upstream.seen.length, 1)
    }))

  it.live("idle_timeout: an idle keep-alive client connection is closed by the gateway after the timeout", () =>
    Effect.gen(function*() {
      const upstream = yield* startUpstream("a")
      const gateway = yield* startGateway(withLimits(upstream.url, { idle_timeout: "200ms" }))
      const started = Date.now()
      const result = yield* closedByServer(gateway.port)
      const elapsed = Date.now() - started
      assert.isTrue(result.answered)
      assert.isAtLeast(elapsed, 150)
      assert.isBelow(elapsed, 2_000)
    }))
})
