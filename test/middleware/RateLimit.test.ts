/**
 * rate_limit's admission under TestClock, for any arrival sequence: the token bucket never
 * admits more than its size plus what it refilled, the fixed window never more than twice the
 * limit in any window; an idle client is admitted again; refusals carry a whole-second
 * Retry-After and the IETF headers.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit } from "effect"
import { TestClock } from "effect/testing"
import fc from "fast-check"
import { Limiters } from "../../src/middleware/Limiters.ts"
import { requestFrom } from "../support/pipelineRequest.ts"
import { compileRateLimit, compileRateLimitKey, memoryStore } from "../../src/middleware/RateLimit.ts"

/** Runs `arrivals` (gaps in ms before each request) through one limit; the times of the admitted ones. */
const admittedTimes = (algorithm: "token_bucket" | "fixed_window", limit: number, window: number, gaps: ReadonlyArray<number>) =>
  Effect.gen(function*() {
    const limiters = yield* Effect.scoped(Limiters.make)
    const step = compileRateLimit({ limit, window, algorithm }, memoryStore(limiters.rateLimiter), "t:")
    const admitted: Array<number> = []
    let now = 0
    for (const gap of gaps) {
      yield* TestClock.adjust(gap)
      now += gap
      const exit = yield* Effect.exit(step(requestFrom("10.0.0.1").request, () => Effect.void))
      if (Exit.isSuccess(exit)) admitted.push(now)
    }
    return admitted
  })

/** A property over TestClock runs: every case gets a clock of its own. */
const prop = <A>(arb: fc.Arbitrary<A>, check: (a: A) => Effect.Effect<void>) =>
  fc.assert(fc.asyncProperty(arb, (a) => Effect.runPromise(check(a).pipe(Effect.provide(TestClock.layer())))), { numRuns: 100 })

const arrivals = fc.array(fc.integer({ min: 0, max: 400 }), { minLength: 1, maxLength: 80 })
const limits = fc.integer({ min: 1, max: 6 })
const windows = fc.integer({ min: 10, max: 1_000 })

describe("rate_limit admission (TestClock)", () => {
  it("token bucket: admitted in any span [a, b] ≤ limit + the tokens refilled in it", () =>
    prop(fc.tuple(limits, windows, arrivals), ([limit, window, gaps]) =>
    Effect.gen(function*() {
      const times = yield* admittedTimes("token_bucket", limit, window, gaps)
      for (let i = 0; i < times.length; i++) {
        for (let j = i; j < times.length; j++) {
          const refilled = Math.floor(((times[j] - times[i]) * limit) / window)
          assert.isAtMost(j - i + 1, limit + refilled, `admitted ${times.join(",")}`)
        }
      }
    })))

  it("fixed window: admitted in any window-long span ≤ 2 × limit", () =>
    prop(fc.tuple(limits, windows, arrivals), ([limit, window, gaps]) =>
    Effect.gen(function*() {
      const times = yield* admittedTimes("fixed_window", limit, window, gaps)
      for (let i = 0; i < times.length; i++) {
        let inside = 0
        for (let j = i; j < times.length && times[j] < times[i] + window; j++) inside++
        assert.isAtMost(inside, 2 * limit, `admitted ${times.join(",")}`)
      }
    })))

  it("either algorithm: a burst admits exactly the limit, and a client idle for a window (and a millisecond) is admitted again", () =>
    prop(fc.tuple(limits, windows, fc.constantFrom("token_bucket" as const, "fixed_window" as const)), ([limit, window, algorithm]) =>
    Effect.gen(function*() {
      const burst = Array.from({ length: limit + 3 }, () => 0)
      // One millisecond past the window: the store divides the window by the limit in floating
      // point, so the counter may expire a fraction of a millisecond after it.
      const times = yield* admittedTimes(algorithm, limit, window, [...burst, window + 1, 0])
      assert.strictEqual(times.filter((t) => t === 0).length, limit)
      assert.isTrue(times.includes(window + 1))
    })))

  it.effect("a refusal is RateLimited with Retry-After ≥ 1 s and the policy; an admission adds RateLimit-Policy and RateLimit", () =>
    Effect.gen(function*() {
      const limiters = yield* Effect.scoped(Limiters.make)
      const step = compileRateLimit({ limit: 2, window: 10_000, algorithm: "fixed_window" }, memoryStore(limiters.rateLimiter), "t:")
      const first = requestFrom("10.0.0.1")
      yield* step(first.request, () => Effect.void)
      assert.deepStrictEqual(first.responseHeaders, ["ratelimit-policy", `"default";q=2;w=10`, "ratelimit", `"default";r=1;t=5`])
      yield* step(requestFrom("10.0.0.1").request, () => Effect.void)
      const refused = yield* Effect.flip(step(requestFrom("10.0.0.1").request, () => Effect.void))
      assert.strictEqual(refused._tag, "RateLimited")
      if (refused._tag !== "RateLimited") return
      assert.strictEqual(refused.retryAfter, 10)
      assert.strictEqual(refused.policy, `"default";q=2;w=10`)
      assert.strictEqual(refused.rate, `"default";r=0;t=10`)
      // Another client has its own counter.
      assert.isTrue(Exit.isSuccess(yield* Effect.exit(step(requestFrom("10.0.0.2").request, () => Effect.void))))
    }))
})

describe("compileRateLimitKey", () => {
  it("names the counter by IP, route, one global counter, a header, or the consumer (the IP without one)", () => {
    const { request } = requestFrom("10.0.0.1", { route: "api", header: (name) => (name === "x-tenant" ? "acme" : undefined) })
    assert.strictEqual(compileRateLimitKey("ip", "p:")(request), "p:ip:10.0.0.1")
    assert.strictEqual(compileRateLimitKey("route", "p:")(request), "p:route:api")
    assert.strictEqual(compileRateLimitKey("global", "p:")(request), "p:global")
    assert.strictEqual(compileRateLimitKey("header:X-Tenant", "p:")(request), "p:header:acme")
    assert.strictEqual(compileRateLimitKey("header:x-other", "p:")(request), "p:header:")
    assert.strictEqual(compileRateLimitKey("consumer", "p:")(request), "p:ip:10.0.0.1")
    assert.strictEqual(compileRateLimitKey("consumer", "p:")({ ...request, consumer: "ci" }), "p:consumer:ci")
  })
})
