import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Exit, Fiber, Layer, Scope } from "effect"
import { request as httpRequest } from "node:http"
import { Admin } from "../../src/admin/Admin.ts"
import * as Gateway from "../../src/gateway/Gateway.ts"
import { Listeners } from "../../src/listener/Listeners.ts"
import { simpleConfig, startUpstream } from "../support/harness.ts"
import { fire, onSignal, signal, awaitSignal } from "../support/signals.ts"
import { eventually, refuses } from "../support/liveGateway.ts"

/** A GET on its own connection; resolves with status, the Connection header and the body. */
const slowGet = (port: number) =>
  Effect.callback<{ readonly status: number; readonly connection: string | undefined; readonly body: string }>((resume) => {
    const req = httpRequest({ host: "127.0.0.1", port, path: "/slow", agent: false }, (res) => {
      let body = ""
      res.setEncoding("utf8")
      res.on("data", (c: string) => (body += c))
      res.on("end", () => resume(Effect.succeed({ status: res.statusCode ?? 0, connection: res.headers.connection, body })))
    })
    req.on("error", (e) => resume(Effect.die(e)))
    req.end()
  })

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

      const inFlight = yield* Effect.forkChild(slowGet(port))
      yield* awaitSignal(arrived)
      const closing = yield* Effect.forkChild(Scope.close(scope, Exit.void))

      yield* eventually(Effect.map(readyStatus(adminPort), (s) => s === 503), "/ready answers 503")
      yield* eventually(refuses(port), "the listener refuses new connections")
      assert.isUndefined(closing.pollUnsafe(), "the drain waits for the request in flight")

      fire(release, undefined)
      const res = yield* Fiber.join(inFlight)
      assert.strictEqual(res.status, 200)
      assert.strictEqual(res.body, "done")
      assert.strictEqual(res.connection, "close")
      yield* Fiber.join(closing)
    }))
})
