/**
 * "Per-try timeout inside the circuit breaker" (and inside outlier detection): a try cut by
 * `per_try_timeout` is a `timeout` failure, which the default `failures` lists of both count.
 * End to end through a real gateway in front of an upstream that never answers.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { simpleConfig, startGateway, startUpstream } from "../support/harness.ts"
import { send } from "../support/http.ts"

/** A gateway over one upstream that takes every request and never answers; counts arrivals. */
const overHungUpstream = (upstream: Record<string, unknown>) =>
  Effect.gen(function*() {
    let arrived = 0
    const hung = yield* startUpstream("hung", { rawHandler: () => void arrived++ })
    const gateway = yield* startGateway({
      ...simpleConfig([hung.url], { retry: { attempts: 1, per_try_timeout: "100ms" } }, upstream),
      shutdown: { drain_timeout: "200ms" }
    })
    return { gateway, arrived: () => arrived }
  })

const answer = (url: string) => Effect.map(send(url), (res) => `${res.status} ${JSON.parse(res.body).error}`)

describe("per-try timeouts are failures for the circuit breaker and outlier detection", () => {
  it.live("circuit_breaker with the default failures: 2 per-try timeouts open it; the 3rd request gets 503 CircuitOpen without reaching the upstream", () =>
    Effect.gen(function*() {
      const { arrived, gateway } = yield* overHungUpstream({ circuit_breaker: { consecutive_failures: 2, open_for: "30s" } })
      assert.deepStrictEqual(
        [yield* answer(gateway.url("/1")), yield* answer(gateway.url("/2")), yield* answer(gateway.url("/3"))],
        ["504 UpstreamResponseTimeout", "504 UpstreamResponseTimeout", "503 CircuitOpen"]
      )
      assert.strictEqual(arrived(), 2)
    }))

  it.live("outlier with the default failures: 2 per-try timeouts eject the endpoint; the 3rd request gets 503 NoHealthyUpstream without reaching it", () =>
    Effect.gen(function*() {
      const { arrived, gateway } = yield* overHungUpstream({ outlier: { consecutive_failures: 2, base_ejection: "30s", max_ejected_percent: 100 } })
      assert.deepStrictEqual(
        [yield* answer(gateway.url("/1")), yield* answer(gateway.url("/2")), yield* answer(gateway.url("/3"))],
        ["504 UpstreamResponseTimeout", "504 UpstreamResponseTimeout", "503 NoHealthyUpstream"]
      )
      assert.strictEqual(arrived(), 2)
    }))

  it.live("control: with failures [5xx] only, per-try timeouts never open the circuit", () =>
    Effect.gen(function*() {
      const { arrived, gateway } = yield* overHungUpstream({ circuit_breaker: { consecutive_failures: 2, open_for: "30s", failures: ["5xx"] } })
      for (const path of ["/1", "/2", "/3"]) assert.strictEqual(yield* answer(gateway.url(path)), "504 UpstreamResponseTimeout")
      assert.strictEqual(arrived(), 3)
    }))
})
