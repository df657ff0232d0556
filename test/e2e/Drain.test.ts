import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Exit, Fiber, Layer, Scope } from "effect"
import { Admin } from "../../src/admin/Admin.ts"
import * as Gateway from "../../src/gateway/Gateway.ts"
import { Listeners } from "../../src/listener/Listeners.ts"
import { simpleConfig, startUpstream } from "../support/harness.ts"
import { send } from "../support/http.ts"
import { fire, onSignal, signal, awaitSignal } from "../support/signals.ts"
import { eventually, refuses } from "../support/liveGateway.ts"

const readyStatus = (port: number) =>
  Effect.promise(() => fetch(`http://127.0.0.1:${port}/ready`).then((r) => r.status, () => 0))

describe("graceful drain", () => {
  it.live("closing the gateway: /ready turns 503, new connections are refused, a request in flight completes with Connection: close", () =>
    Effect.gen(function*() {
      const arrived = signal()
      const release = signal()
      const upstream = yield* startUpstream("slow", {
        rawHandler: (_req, res) => {
          fire(arrived, undefined)
          onSignal(release, () => res.end("done"))
        }
      })
      const scope = yield* Scope.make()
      const context = yield* Layer.buildWithScope(Gateway.layer(simpleConfig([upstream.url])), scope)
      const port = Context.get(context, Listeners).addresses.get("web")!.port
      const adminPort = Context.get(context, Admin).address!.port
      assert.strictEqual(yield* readyStatus(adminPort), 200)

      const inFlight = yield* Effect.forkChild(send(`http://127.0.0.1:${port}/slow`))
      yield* awaitSignal(arrived)
      const closing = yield* Effect.forkChild(Scope.close(scope, Exit.void))

      yield* eventually(Effect.map(readyStatus(adminPort), (s) => s === 503), "/ready answers 503")
      yield* eventually(refuses(port), "the listener refuses new connections")
      assert.isUndefined(closing.pollUnsafe(), "the drain waits for the request in flight")

      fire(release, undefined)
      const res = yield* Fiber.join(inFlight)
      assert.strictEqual(res.status, 200)
      assert.strictEqual(res.body, "done")
      assert.strictEqual(res.headers.connection, "close")
      yield* Fiber.join(closing)
    }))
})
