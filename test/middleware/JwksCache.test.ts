/**
 * The JWKS cache under TestClock against a real loopback JWKS server: kept for its max-age
 * within bounds, fetched again after it, kept when the endpoint fails, refetched for unknown
 * kids at most every 30 s.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { TestClock } from "effect/testing"
import { createServer } from "node:http"
import type { AddressInfo } from "node:net"
import { JWKS_DEFAULT_MS, JWKS_MAX_MS, JWKS_MIN_MS, JWKS_REFETCH_MS, jwksLifetimeMs, makeJwksCache } from "../../src/middleware/JwksCache.ts"

const JWKS = JSON.stringify({ keys: [{ kty: "oct", k: "c2VjcmV0", kid: "a", alg: "HS256" }] })

/** A JWKS server answering `state.status` with `state.cacheControl`; counts fetches. */
const jwksServer = Effect.acquireRelease(
  Effect.callback<{ url: string; fetches: () => number; state: { status: number; cacheControl: string; body?: string }; close: () => void }>((resume) => {
    let fetches = 0
    const state: { status: number; cacheControl: string; body?: string } = { status: 200, cacheControl: "max-age=120" }
    const server = createServer((_req, res) => {
      fetches++
      res.writeHead(state.status, { "content-type": "application/json", "cache-control": state.cacheControl })
      res.end(state.body ?? (state.status === 200 ? JWKS : "down"))
    })
    server.listen(0, "127.0.0.1", () =>
      resume(Effect.succeed({
        url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/jwks`,
        fetches: () => fetches,
        state,
        close: () => {
          server.closeAllConnections()
          server.close()
        }
      })))
  }),
  (s) => Effect.sync(s.close)
)

describe("jwksLifetimeMs", () => {
  it("takes max-age within 1 min to 24 h; no-store or no-cache is the minimum; no header or no max-age the default", () => {
    assert.strictEqual(jwksLifetimeMs("public, max-age=300"), 300_000)
    assert.strictEqual(jwksLifetimeMs("max-age=5"), JWKS_MIN_MS)
    assert.strictEqual(jwksLifetimeMs("max-age=99999999"), JWKS_MAX_MS)
    assert.strictEqual(jwksLifetimeMs("no-store"), JWKS_MIN_MS)
    assert.strictEqual(jwksLifetimeMs("private, no-cache"), JWKS_MIN_MS)
    assert.strictEqual(jwksLifetimeMs("public"), JWKS_DEFAULT_MS)
    assert.strictEqual(jwksLifetimeMs(undefined), JWKS_DEFAULT_MS)
    assert.strictEqual(jwksLifetimeMs("max-age=300 , public"), 300_000)
    assert.strictEqual(jwksLifetimeMs(`max-age="300"`), 300_000)
    assert.strictEqual(jwksLifetimeMs("max-agex=300"), JWKS_DEFAULT_MS)
    assert.strictEqual(jwksLifetimeMs("no-stored"), JWKS_DEFAULT_MS)
    assert.strictEqual(jwksLifetimeMs("no-store , x"), JWKS_MIN_MS)
  })
})

describe("makeJwksCache (TestClock)", () => {
  it.effect("fetched once within max-age, again after it; a failing endpoint leaves the last good set in force", () =>
    Effect.gen(function*() {
      const server = yield* jwksServer
      const cache = makeJwksCache(server.url)
      const first = yield* cache.current
      assert.isDefined(first)
      yield* TestClock.adjust(119_000)
      assert.strictEqual(yield* cache.current, first)
      assert.strictEqual(server.fetches(), 1)
      yield* TestClock.adjust(2_000)
      const second = yield* cache.current
      assert.strictEqual(server.fetches(), 2)
      assert.isDefined(second)
      assert.notStrictEqual(second, first)
      server.state.status = 503
      yield* TestClock.adjust(121_000)
      assert.strictEqual(yield* cache.current, second)
      assert.strictEqual(server.fetches(), 3)
      // After a failure the next try waits for the refetch interval.
      yield* TestClock.adjust(JWKS_REFETCH_MS - 1_000)
      assert.strictEqual(yield* cache.current, second)
      assert.strictEqual(server.fetches(), 3)
      yield* TestClock.adjust(2_000)
      yield* cache.current
      assert.strictEqual(server.fetches(), 4)
    }).pipe(Effect.scoped))

  it.effect("refresh (an unknown kid) fetches at once, then not again within 30 s", () =>
    Effect.gen(function*() {
      const server = yield* jwksServer
      const cache = makeJwksCache(server.url)
      yield* cache.current
      yield* cache.refresh
      assert.strictEqual(server.fetches(), 2)
      yield* cache.refresh
      yield* TestClock.adjust(JWKS_REFETCH_MS - 1)
      yield* cache.refresh
      assert.strictEqual(server.fetches(), 2)
      yield* TestClock.adjust(1)
      yield* cache.refresh
      assert.strictEqual(server.fetches(), 3)
    }).pipe(Effect.scoped))

  it.effect("with the endpoint down from the start there is no set, and no fetch more often than every 30 s", () =>
    Effect.gen(function*() {
      const server = yield* jwksServer
      server.state.status = 500
      const cache = makeJwksCache(server.url)
      assert.isUndefined(yield* cache.current)
      assert.isUndefined(yield* cache.current)
      assert.strictEqual(server.fetches(), 1)
      yield* TestClock.adjust(JWKS_REFETCH_MS)
      server.state.status = 200
      assert.isDefined(yield* cache.current)
      assert.strictEqual(server.fetches(), 2)
    }).pipe(Effect.scoped))

  it.effect("a set is in force until the very millisecond its lifetime ends; a failure then is not retried before the refetch interval", () =>
    Effect.gen(function*() {
      const server = yield* jwksServer
      const cache = makeJwksCache(server.url)
      yield* cache.current
      yield* TestClock.adjust(119_999)
      yield* cache.current
      assert.strictEqual(server.fetches(), 1)
      server.state.status = 503
      yield* TestClock.adjust(1)
      assert.isDefined(yield* cache.current)
      assert.isDefined(yield* cache.current)
      assert.strictEqual(server.fetches(), 2)
    }).pipe(Effect.scoped))

  it.effect("a non-200 answer is never used, even with a key set in its body", () =>
    Effect.gen(function*() {
      const server = yield* jwksServer
      server.state.status = 500
      server.state.body = JWKS
      assert.isUndefined(yield* makeJwksCache(server.url).current)
    }).pipe(Effect.scoped))

  it.effect("concurrent first requests share the one fetch, and so do concurrent refreshes", () =>
    Effect.gen(function*() {
      const server = yield* jwksServer
      const cache = makeJwksCache(server.url)
      const [a, b] = yield* Effect.all([cache.current, cache.current], { concurrency: 2 })
      assert.isDefined(a)
      assert.strictEqual(a, b)
      assert.strictEqual(server.fetches(), 1)
      const [c, d] = yield* Effect.all([cache.refresh, cache.refresh], { concurrency: 2 })
      assert.strictEqual(c, d)
      assert.notStrictEqual(c, a)
      assert.strictEqual(server.fetches(), 2)
    }).pipe(Effect.scoped))
})
