/**
 * The upstream timeouts a try can hit before its response reaches the client, end to end through
 * a real gateway: `pool.connect_timeout` against a loopback port that never answers the SYN
 * (504 UpstreamConnectTimeout), and the read timeout on a response body that stalls after its
 * head (504 UpstreamBodyTimeout). The body timeout is 60 s (nginx's `proxy_read_timeout`), kept
 * by undici's low-resolution timer; the test advances that timer's clock (undici's own
 * `timers.tick`, the hook its test suite uses) instead of waiting a minute.
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Fiber } from "effect"
import diagnosticsChannel from "node:diagnostics_channel"
import { createRequire } from "node:module"
import type { ServerResponse } from "node:http"
import { unansweredPort } from "../support/blackhole.ts"
import { request, simpleConfig, startGateway, startUpstream } from "../support/harness.ts"

/** undici's fast-timer module: the same instance the gateway's undici Pool uses. */
const undiciTimers = createRequire(import.meta.url)("undici/lib/util/timers.js") as { readonly tick: (ms: number) => void }

/** The read timeout of upstream responses (head and body), as documented in UpstreamGroup.ts. */
const READ_TIMEOUT_MS = 60_000

/** Resolves with the status once the gateway's undici has parsed a response head from `origin` (its body timer is armed then). */
const headParsedFrom = (origin: string) =>
  Effect.gen(function*() {
    const headSeen = Deferred.makeUnsafe<number>()
    const onHeaders = (message: unknown) => {
      const { request: req, response } = message as { request: { origin: string }; response: { statusCode: number } }
      if (req.origin === origin) Deferred.doneUnsafe(headSeen, Effect.succeed(response.statusCode))
    }
    diagnosticsChannel.subscribe("undici:request:headers", onHeaders)
    yield* Effect.addFinalizer(() => Effect.sync(() => diagnosticsChannel.unsubscribe("undici:request:headers", onHeaders)))
    return headSeen
  })

describe("upstream timeouts", () => {
  it.live("pool.connect_timeout: an endpoint that never answers the SYN gets 504 UpstreamConnectTimeout after the configured time", () =>
    Effect.gen(function*() {
      const port = yield* unansweredPort
      const gateway = yield* startGateway(simpleConfig([`http://127.0.0.1:${port}`], {}, { pool: { connect_timeout: "300ms" } }))
      const started = performance.now()
      const res = yield* request(gateway.url("/slow-connect"))
      const elapsed = performance.now() - started
      assert.strictEqual(res.status, 504)
      assert.strictEqual(res.headers.get("content-type"), "application/json")
      assert.deepStrictEqual(JSON.parse(res.body), { error: "UpstreamConnectTimeout", message: "Timed out connecting to the upstream" })
      // undici arms connect timeouts on its low-resolution timer (ticks of 499 ms), so the
      // configured 300 ms fires after about 1 s; the 2 s default would take about 2.5 s.
      assert.isAtLeast(elapsed, 280)
      assert.isBelow(elapsed, 1_800)
    }))

  it.live("a response body that stalls after the head: 504 UpstreamBodyTimeout once the read timeout passes", () =>
    Effect.gen(function*() {
      const held: Array<ServerResponse> = []
      const upstream = yield* startUpstream("stalls", {
        rawHandler: (_req, res) => {
          // The head goes out, the promised body never does.
          res.writeHead(200, { "content-type": "text/plain", "content-length": "10" })
          res.flushHeaders()
          held.push(res)
        }
      })
      // A short drain, so that a failing run does not wait 30 s at shutdown for the stalled response.
      const gateway = yield* startGateway({ ...simpleConfig([upstream.url]), shutdown: { drain_timeout: "200ms" } })
      // The gateway's undici has parsed the upstream's head (its body timer is armed then).
      const headSeen = yield* headParsedFrom(upstream.url)

      const reply = yield* Effect.forkChild(request(gateway.url("/stall")))
      assert.strictEqual(yield* Deferred.await(headSeen).pipe(Effect.timeout("2 seconds")), 200)
      // The first tick activates the timer armed since the head, the second moves its clock one
      // read timeout on: the timer fires within that call.
      undiciTimers.tick(0)
      undiciTimers.tick(READ_TIMEOUT_MS)
      const res = yield* Fiber.join(reply).pipe(Effect.timeout("2 seconds"))
      assert.strictEqual(res.status, 504)
      assert.deepStrictEqual(JSON.parse(res.body), { error: "UpstreamBodyTimeout", message: "Timed out waiting for the upstream response body" })
      assert.strictEqual(held.length, 1)
    }))

  it.live("a body timeout before any body byte is a timeout like any other: retried on `timeout`, on the next endpoint", () =>
    Effect.gen(function*() {
      const held: Array<ServerResponse> = []
      const stalls = yield* startUpstream("stalls", {
        rawHandler: (_req, res) => {
          res.writeHead(200, { "content-type": "text/plain", "content-length": "10" })
          res.flushHeaders()
          held.push(res)
        }
      })
      const ok = yield* startUpstream("ok")
      const base = simpleConfig([stalls.url, ok.url], { retry: { attempts: 2, on: ["timeout"], backoff: { base: "1ms", max: "1ms" } } }, { balance: "round_robin" })
      const gateway = yield* startGateway({ ...base, shutdown: { drain_timeout: "200ms" } })
      const headSeen = yield* headParsedFrom(stalls.url)
      const reply = yield* Effect.forkChild(request(gateway.url("/stall")))
      assert.strictEqual(yield* Deferred.await(headSeen).pipe(Effect.timeout("2 seconds")), 200)
      undiciTimers.tick(0)
      undiciTimers.tick(READ_TIMEOUT_MS)
      const res = yield* Fiber.join(reply).pipe(Effect.timeout("2 seconds"))
      assert.strictEqual(res.status, 200)
      assert.strictEqual(JSON.parse(res.body).upstream, "ok")
      assert.strictEqual(held.length, 1)
    }))
})
