/**
 * The memory store of rate limits (MemoryLimitStore) under TestClock: for any sequence of calls
 * it answers exactly as effect/persistence's own memory store (the contract it keeps), whatever
 * its sweeps dropped; and keys that go idle are forgotten, so ever new client addresses do not
 * grow it without bound.
 */
import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect } from "effect"
import * as RateLimiter from "effect/persistence/RateLimiter"
import { TestClock } from "effect/testing"
import fc from "fast-check"
import { makeMemoryLimitStore } from "../../src/middleware/MemoryLimitStore.ts"

const prop = <A, E>(arb: fc.Arbitrary<A>, check: (a: A) => Effect.Effect<void, E>) =>
  fc.assert(fc.asyncProperty(arb, (a) => Effect.runPromise(check(a).pipe(Effect.provide(TestClock.layer())))), { numRuns: 300 })

const call = fc.record({
  gap: fc.integer({ min: 0, max: 300 }),
  key: fc.constantFrom("a", "b", "c"),
  tokens: fc.integer({ min: 1, max: 3 }),
  algorithm: fc.constantFrom("fixed", "bucket"),
  limit: fc.integer({ min: 1, max: 5 }),
  refill: fc.integer({ min: 1, max: 100 }),
  capped: fc.boolean(),
  overflow: fc.boolean()
})

describe("MemoryLimitStore (TestClock)", () => {
  it("answers every call as effect's memory store does, with sweeps as often as every millisecond", () =>
    prop(fc.tuple(fc.integer({ min: 1, max: 500 }), fc.array(call, { minLength: 1, maxLength: 60 })), ([sweepMs, calls]) =>
      Effect.gen(function*() {
        const ours = yield* makeMemoryLimitStore(sweepMs)
        const theirs = yield* Effect.provide(Effect.service(RateLimiter.RateLimiterStore), RateLimiter.layerStoreMemory)
        for (const [i, c] of calls.entries()) {
          yield* TestClock.adjust(c.gap)
          // One algorithm per key, as the gateway's keys are (a middleware's prefix names it).
          const key = `${c.algorithm}:${c.key}`
          const refillRate = Duration.millis(c.refill)
          if (c.algorithm === "fixed") {
            const options = { key, tokens: c.tokens, refillRate, limit: c.capped ? c.limit : undefined }
            assert.deepStrictEqual(yield* ours.fixedWindow(options), yield* theirs.fixedWindow(options), `call ${i}`)
          } else {
            // The gateway's limits keep one limit and rate per key.
            const options = { key: `${key}:${c.key.length}`, tokens: c.tokens, limit: 3, refillRate: Duration.millis(40), allowOverflow: c.overflow }
            assert.deepStrictEqual(yield* ours.tokenBucket(options), yield* theirs.tokenBucket(options), `call ${i}`)
          }
        }
      })
    ))

  it.effect("keys that go idle are forgotten at the next sweep; a busy key is kept", () =>
    Effect.gen(function*() {
      const store = yield* makeMemoryLimitStore(1_000)
      const bucket = (key: string) => store.tokenBucket({ key, tokens: 1, limit: 2, refillRate: Duration.millis(100), allowOverflow: false })
      const window = (key: string) => store.fixedWindow({ key, tokens: 1, refillRate: Duration.millis(100), limit: 2 })
      for (let i = 0; i < 500; i++) {
        yield* bucket(`b${i}`)
        yield* window(`w${i}`)
      }
      assert.strictEqual(store.size(), 1_000)
      // 1 s on: every bucket has refilled and every window expired; the sweep keeps the busy key only.
      yield* TestClock.adjust(1_000)
      yield* bucket("busy")
      yield* bucket("busy")
      assert.strictEqual(store.size(), 1)
      // Its state survived: the next take finds it empty again after no refill.
      const [remaining] = yield* bucket("busy")
      assert.strictEqual(remaining, -1)
      // Not swept before the next sweep is due, even once idle.
      yield* TestClock.adjust(500)
      yield* window("w")
      assert.strictEqual(store.size(), 2)
      yield* TestClock.adjust(500)
      yield* window("w2")
      assert.strictEqual(store.size(), 1, "busy (refilled) and w (expired) are dropped; only w2, new, is left")
    }).pipe(Effect.provide(TestClock.layer())))

  it.effect("a window 1 ms from its end and a bucket one token short of full are still limits: a sweep keeps them", () =>
    Effect.gen(function*() {
      const store = yield* makeMemoryLimitStore(1_000)
      const refillRate = Duration.millis(100)
      yield* store.fixedWindow({ key: "sweep-now", tokens: 1, refillRate, limit: 2 }) // sweeps at 0; next due at 1000
      yield* TestClock.adjust(800)
      yield* store.fixedWindow({ key: "exact", tokens: 2, refillRate, limit: 2 }) // ends at 1000 exactly
      yield* TestClock.adjust(1)
      yield* store.fixedWindow({ key: "w", tokens: 2, refillRate, limit: 2 }) // ends at 1000 + 1
      yield* store.tokenBucket({ key: "b", tokens: 2, limit: 2, refillRate, allowOverflow: false }) // empty at 801
      yield* TestClock.adjust(99)
      yield* store.tokenBucket({ key: "full", tokens: 1, limit: 2, refillRate, allowOverflow: false }) // 1 of 2 at 900
      yield* TestClock.adjust(100) // 1000: the sweep is due; b has refilled 1 of 2, full 2 of 2
      yield* store.fixedWindow({ key: "other", tokens: 1, refillRate, limit: 2 })
      assert.strictEqual(store.size(), 3, "sweep-now, exact (ended at 1000) and full (refilled) are dropped; w, b and other stay")
      assert.deepStrictEqual(yield* store.fixedWindow({ key: "w", tokens: 1, refillRate, limit: 2 }), [3, 1])
      assert.deepStrictEqual(yield* store.tokenBucket({ key: "b", tokens: 1, limit: 2, refillRate, allowOverflow: false }), [0, 99])
    }).pipe(Effect.provide(TestClock.layer())))

  it.effect("a bucket whose limit changes (a reload) keeps its tokens and refills to the new limit, as effect's store does", () =>
    Effect.gen(function*() {
      const ours = yield* makeMemoryLimitStore(1_000_000)
      const theirs = yield* Effect.provide(Effect.service(RateLimiter.RateLimiterStore), RateLimiter.layerStoreMemory)
      const take = (limit: number, tokens: number) => {
        const options = { key: "r", tokens, limit, refillRate: Duration.millis(100), allowOverflow: false }
        return Effect.zip(ours.tokenBucket(options), theirs.tokenBucket(options))
      }
      const [a1, b1] = yield* take(3, 3)
      assert.deepStrictEqual(a1, b1)
      yield* TestClock.adjust(1_000)
      const [a2, b2] = yield* take(5, 1)
      assert.deepStrictEqual(a2, b2)
      assert.deepStrictEqual(a2, [4, 0], "refilled to the new limit of 5, then one taken")
      // Lowered again with no time passed: the tokens held are not cut to the new limit until a refill.
      const [a3, b3] = yield* take(2, 1)
      assert.deepStrictEqual(a3, b3)
      assert.deepStrictEqual(a3, [3, 0])
    }).pipe(Effect.provide(TestClock.layer())))
})
