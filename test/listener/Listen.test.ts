/**
 * Binding and draining a node:http server (`listen`, `drain`) on loopback: a drain that is over
 * leaves no timer behind, and one that is not cuts the connections still open at its deadline.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { createServer } from "node:http"
import { connect } from "node:net"
import { drain, listen } from "../../src/listener/Listen.ts"

const timers = () => process.getActiveResourcesInfo().filter((kind) => kind === "Timeout").length

describe("drain", () => {
  it.live("once the server has closed, its deadline timer is gone (nothing keeps the event loop alive)", () =>
    Effect.gen(function*() {
      const before = timers()
      const server = createServer((_req, res) => res.end("ok"))
      yield* listen("t", server, { host: "127.0.0.1", port: 0 })
      yield* drain(server, 60_000)
      assert.isFalse(server.listening)
      assert.strictEqual(timers(), before)
    }))

  it.live("a connection still open at the deadline is cut, and the drain then completes", () =>
    Effect.gen(function*() {
      // A request whose response never ends keeps its connection busy past the deadline.
      const server = createServer(() => {})
      const address = yield* listen("t", server, { host: "127.0.0.1", port: 0 })
      const socket = connect(address.port, "127.0.0.1")
      socket.on("error", () => {})
      yield* Effect.callback<void>((resume) => {
        server.once("request", () => resume(Effect.void))
        socket.write("GET / HTTP/1.1\r\nhost: t\r\n\r\n")
      })
      const started = Date.now()
      yield* drain(server, 200)
      assert.isAtLeast(Date.now() - started, 150)
      yield* Effect.callback<void>((resume) => {
        if (socket.destroyed) resume(Effect.void)
        else socket.once("close", () => resume(Effect.void))
      })
      assert.isTrue(socket.destroyed)
    }))
})
