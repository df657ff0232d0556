import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Exit, Fiber, Layer, Scope } from "effect"
import { Admin } from "../../src/admin/Admin.ts"
import * as Gateway from "../../src/gateway/Gateway.ts"
import { Listeners } from "../../src/listener/Listeners.ts"
import { simpleConfig, startUpstream } from "../support/harness.ts"
import { send } from "../support/http.ts"
import { fire, onSignal, signal, awaitSignal } from "../support/signals.ts"
import { eventually, refuses } from "../support/liveGateway.ts"
import { connect } from "node:net"

const readyStatus = (port: number) =>
  Effect.promise(() => fetch(`http://127.0.0.1:${port}/ready`).then((r) => r.status, () => 0))

/** An upstream that holds each request until `release` fires, then answers "done". */
const heldUpstream = Effect.gen(function*() {
  const arrived = signal()
  const release = signal()
  const upstream = yield* startUpstream("slow", {
    rawHandler: (_req, res) => {
      fire(arrived, undefined)
      onSignal(release, () => res.end("done"))
    }
  })
  return { upstream, arrived, release }
})

describe("graceful drain", () => {
  it.live("closing the gateway: /ready turns 503, new connections are refused, a request in flight completes with Connection: close", () =>
    Effect.gen(function*() {
      const { upstream, arrived, release } = yield* heldUpstream
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
  it.live("every listener stops accepting at once: one still draining a request does not keep another open, and the live address view empties", () =>
    Effect.gen(function*() {
      const { upstream, arrived, release } = yield* heldUpstream
      const base = simpleConfig([upstream.url])
      const config = { ...base, servers: [base.servers[0], { ...base.servers[0], name: "second", routes: [{ id: "second", upstream: "app" }] }] }
      const scope = yield* Scope.make()
      const context = yield* Layer.buildWithScope(Gateway.layer(config), scope)
      const addresses = Context.get(context, Listeners).addresses
      const [first, second] = [addresses.get("web")!.port, addresses.get("second")!.port]
      // The request in flight is on the first listener: were the drains one after another, the
      // second would go on accepting until that request ends.
      const inFlight = yield* Effect.forkChild(send(`http://127.0.0.1:${first}/slow`))
      yield* awaitSignal(arrived)
      const closing = yield* Effect.forkChild(Scope.close(scope, Exit.void))
      yield* eventually(refuses(first), "the first listener refuses new connections")
      yield* eventually(refuses(second), "the second listener refuses new connections while the first drains")
      assert.isUndefined(closing.pollUnsafe(), "the drain waits for the request in flight")
      assert.strictEqual(addresses.size, 0)
      fire(release, undefined)
      assert.strictEqual((yield* Fiber.join(inFlight)).status, 200)
      yield* Fiber.join(closing)
    }))

  it.live("while draining, a response the gateway answers itself (404) also says Connection: close, and the connection ends", () =>
    Effect.gen(function*() {
      const { upstream, arrived, release } = yield* heldUpstream
      const config = simpleConfig([upstream.url], { match: { path: { prefix: "/slow" } } })
      const scope = yield* Scope.make()
      const context = yield* Layer.buildWithScope(Gateway.layer(config), scope)
      const port = Context.get(context, Listeners).addresses.get("web")!.port
      const adminPort = Context.get(context, Admin).address!.port
      // A client in the middle of sending its request head when the drain starts.
      const socket = connect(port, "127.0.0.1")
      let received = ""
      let closedAt = 0
      socket.setEncoding("latin1")
      socket.on("data", (c: string) => (received += c))
      socket.on("close", () => (closedAt = Date.now()))
      socket.on("error", () => undefined)
      yield* Effect.callback<void>((resume) => void socket.write("GET /nothing HTTP/1.1\r\n", () => resume(Effect.void)))

      const inFlight = yield* Effect.forkChild(send(`http://127.0.0.1:${port}/slow`))
      yield* awaitSignal(arrived)
      const closing = yield* Effect.forkChild(Scope.close(scope, Exit.void))
      yield* eventually(Effect.map(readyStatus(adminPort), (s) => s === 503), "/ready answers 503")
      const sent = Date.now()
      socket.write("Host: x\r\n\r\n")
      yield* eventually(Effect.sync(() => closedAt > 0), "the connection of the 404 ends", 2_000)
      assert.match(received, /^HTTP\/1\.1 404 /)
      assert.match(received, /\r\nConnection: close\r\n/i)
      assert.isBelow(closedAt - sent, 1_000)
      fire(release, undefined)
      yield* Fiber.join(inFlight)
      yield* Fiber.join(closing)
    }))
})
