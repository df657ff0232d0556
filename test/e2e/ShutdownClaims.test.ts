/**
 * "Then upstream pools close": closing the gateway's scope (what SIGTERM does to `fibergate run`)
 * closes its keep-alive connections to the upstreams, which would otherwise stay open for
 * `pool.keep_alive` (60 s by default).
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Scope } from "effect"
import type { Socket } from "node:net"
import { request, simpleConfig, startGateway, startUpstream } from "../support/harness.ts"

describe("graceful shutdown: upstream pools", () => {
  it.live("closing the gateway closes its idle pooled connections to the upstream", () =>
    Effect.gen(function*() {
      const upstream = yield* startUpstream("pooled")
      // No Keep-Alive hint: undici would keep the idle connection for the whole keep_alive (60 s).
      upstream.server.keepAliveTimeout = 0
      const sockets: Array<Socket> = []
      const closed = Deferred.makeUnsafe<void>()
      upstream.server.on("connection", (socket: Socket) => {
        sockets.push(socket)
        socket.once("close", () => Deferred.doneUnsafe(closed, Effect.void))
      })
      const scope = yield* Scope.make()
      const gateway = yield* startGateway(simpleConfig([upstream.url])).pipe(Scope.provide(scope))
      assert.strictEqual((yield* request(gateway.url("/a"))).status, 200)
      assert.strictEqual((yield* request(gateway.url("/b"))).status, 200)
      assert.strictEqual(sockets.length, 1, "one pooled keep-alive connection")
      assert.isFalse(Deferred.isDoneUnsafe(closed))
      yield* Scope.close(scope, Exit.void).pipe(Effect.timeout("5 seconds"))
      yield* Deferred.await(closed).pipe(Effect.timeout("2 seconds"))
      assert.isTrue(sockets[0].destroyed)
    }))
})
