/**
 * `GET /ready` around startup, on the real gateway: the admin API is bound before the data
 * listeners, and answers 503 until every one of them is bound. To look at it in between, the
 * data listener's `listen` call is held (node's `net.Server.prototype.listen`, wrapped for one
 * port) until the test has asked; then it goes through and `/ready` turns 200.
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Fiber, type Scope } from "effect"
import { Server } from "node:net"
import { request, startGateway, startUpstream } from "../support/harness.ts"
import { freePort } from "../support/net.ts"

/**
 * Holds the first `listen` call for `port` until `release`; `arrived` resolves when it is made.
 * The original `listen` is put back at the end of the scope.
 */
const holdListen = (port: number): Effect.Effect<{ readonly arrived: Deferred.Deferred<void>; readonly release: () => void }, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const original = Server.prototype.listen
      const arrived = Deferred.makeUnsafe<void>()
      let pending: (() => void) | undefined
      let released = false
      Server.prototype.listen = function(this: Server, ...args: Array<unknown>) {
        const options = args[0] as { port?: unknown } | undefined
        if (!released && pending === undefined && typeof options === "object" && options !== null && options.port === port) {
          pending = () => void original.apply(this, args as Parameters<Server["listen"]>)
          Deferred.doneUnsafe(arrived, Effect.void)
          return this
        }
        return original.apply(this, args as Parameters<Server["listen"]>)
      } as Server["listen"]
      const release = () => {
        released = true
        Server.prototype.listen = original
        pending?.()
      }
      return { arrived, release }
    }),
    (hold) => Effect.sync(() => hold.release())
  )

describe("readiness at startup", () => {
  it.live("GET /ready answers 503 while a data listener is not bound yet, and 200 once it is", () =>
    Effect.gen(function*() {
      const app = yield* startUpstream("app")
      const [port, adminPort] = [yield* freePort, yield* freePort]
      const hold = yield* holdListen(port)
      const starting = yield* Effect.forkChild(startGateway({
        admin: { listen: `127.0.0.1:${adminPort}` },
        log: { level: "none", access_log: false },
        servers: [{ name: "web", listen: `127.0.0.1:${port}`, routes: [{ id: "all", upstream: "app" }] }],
        upstreams: { app: { endpoints: [{ url: app.url }] } }
      }))
      // The data listener is about to bind: the admin API is already up.
      yield* Deferred.await(hold.arrived).pipe(Effect.timeout("5 seconds"))
      const before = yield* request(`http://127.0.0.1:${adminPort}/ready`)
      assert.strictEqual(before.status, 503)
      assert.strictEqual(JSON.parse(before.body).ready, false)
      assert.strictEqual((yield* request(`http://127.0.0.1:${adminPort}/health`)).status, 200, "the process is up all the same")

      hold.release()
      const gateway = yield* Fiber.join(starting).pipe(Effect.timeout("5 seconds"))
      assert.strictEqual(gateway.port, port)
      const after = yield* request(`http://127.0.0.1:${adminPort}/ready`)
      assert.strictEqual(after.status, 200)
      assert.strictEqual(JSON.parse(after.body).ready, true)
      assert.strictEqual((yield* request(gateway.url("/served"))).status, 200)
    }))
})
