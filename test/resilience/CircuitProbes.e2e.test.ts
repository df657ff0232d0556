/**
 * `half_open_probes` at the limit and one past it, end to end: the only endpoint's circuit is
 * opened by one 500, the admin API's `GET /upstreams` is polled (bounded) until it says
 * half-open, then the endpoint holds every request it gets, so the test can count exactly how
 * many probes were let through while they are all still in flight: `half_open_probes` reach the
 * endpoint, the next request is answered 503 CircuitOpen by the gateway itself. Nothing sleeps
 * to prove a request did not arrive: every request sent is accounted for, held or refused.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import type { ServerResponse } from "node:http"
import { echoHandler, request, startGateway, startUpstream } from "../support/harness.ts"
import { send } from "../support/http.ts"

/** Polls `condition` every 10 ms until it holds; fails the test after `within` ms. */
const eventually = (what: string, condition: Effect.Effect<boolean>, within = 5_000) =>
  Effect.gen(function*() {
    const deadline = Date.now() + within
    while (!(yield* condition)) {
      if (Date.now() > deadline) return assert.fail(`timed out after ${within}ms waiting until ${what}`)
      yield* Effect.sleep("10 millis")
    }
  })

describe("circuit breaker: half_open_probes at the limit and one past it", () => {
  for (const probes of [1, 2, 3]) {
    it.live(`half_open_probes ${probes}: ${probes} concurrent probe(s) reach the endpoint, request ${probes + 1} gets 503 CircuitOpen; a successful probe closes it`, () =>
      Effect.gen(function*() {
        let mode: "fail" | "hold" | "ok" = "fail"
        const held: Array<{ res: ServerResponse; answer: () => void }> = []
        const b = yield* startUpstream("b", {
          handler: (req, res, body) => {
            if (mode === "ok") return echoHandler("b")(req, res, body)
            if (mode === "hold") return void held.push({ res, answer: () => echoHandler("b")(req, res, body) })
            res.writeHead(500, { "content-length": 4 }).end("down")
          }
        })
        const gateway = yield* startGateway({
          admin: { listen: "127.0.0.1:0" },
          log: { level: "none", access_log: false },
          servers: [{ name: "web", listen: "127.0.0.1:0", routes: [{ id: "all", upstream: "app" }] }],
          upstreams: {
            app: { endpoints: [{ url: b.url }], circuit_breaker: { consecutive_failures: 1, open_for: "200ms", half_open_probes: probes } }
          }
        })
        // Whatever happens, no held request keeps the gateway's drain waiting when the test ends.
        yield* Effect.addFinalizer(() => Effect.sync(() => held.forEach((h) => h.res.destroy())))
        const circuit = Effect.map(request(`http://127.0.0.1:${gateway.adminPort}/upstreams`), (res) =>
          (JSON.parse(res.body) as { upstreams: { app: { endpoints: ReadonlyArray<{ circuit: string }> } } }).upstreams.app.endpoints[0].circuit)

        assert.strictEqual((yield* send(gateway.url("/open"))).status, 500)
        assert.strictEqual(yield* circuit, "open")
        mode = "hold"
        yield* eventually("the circuit is half-open", Effect.map(circuit, (c) => c === "half-open"))

        // At the limit: every one of `probes` concurrent requests is let through.
        const inFlight: Array<Fiber.Fiber<{ readonly status: number }>> = []
        for (let i = 0; i < probes; i++) inFlight.push(yield* Effect.forkChild(send(gateway.url(`/probe/${i}`))))
        yield* eventually(`${probes} probe(s) reach the endpoint`, Effect.sync(() => held.length === probes))
        // One past it: refused by the gateway, while all the probes are still in flight.
        // (Bounded: a request let through would be held by the endpoint.)
        const refused = yield* send(gateway.url("/one-more")).pipe(
          Effect.timeoutOrElse({ duration: "2 seconds", orElse: () => Effect.die(new Error(`request ${probes + 1} was let through: ${held.length} held`)) })
        )
        assert.strictEqual(refused.status, 503)
        assert.strictEqual(JSON.parse(refused.body).error, "CircuitOpen")
        assert.strictEqual(held.length, probes, "the refused request reached the endpoint as well")
        assert.strictEqual(b.seen.length, 1 + probes)

        // The probes succeed: the circuit closes and traffic flows again.
        mode = "ok"
        for (const h of held) h.answer()
        for (const fiber of inFlight) assert.strictEqual((yield* Fiber.join(fiber)).status, 200)
        assert.strictEqual(yield* circuit, "closed")
        assert.strictEqual((yield* send(gateway.url("/after"))).status, 200)
      }))
  }
})
