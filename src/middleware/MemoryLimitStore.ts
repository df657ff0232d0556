/**
 * The process-local store of `store: memory` rate limits: effect/persistence's
 * `RateLimiterStore` contract for the fixed-window and token-bucket algorithms, with keys that
 * go idle forgotten. Effect's own memory store keeps every key it has seen for the life of the
 * process, so `key: ip` under traffic from ever new addresses (an IPv6 spray) grows without
 * bound; here a sweep at most every `sweepMs` drops every entry that is back to where a new key
 * starts (a window that has expired, a bucket that has refilled), which changes no decision.
 * The adaptive algorithm (unused by the gateway) is Effect's.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as RateLimiter from "effect/persistence/RateLimiter"

interface Window {
  count: number
  expiresAt: number
}

interface Bucket {
  tokens: number
  /** When the current refill interval started. */
  start: number
  /** The last call's limit and interval (a reload may change them; the tokens stay). */
  limit: number
  rateMs: number
}

/** How many keys a store holds now (for the tests and the sweep's own bound). */
type StoreService = RateLimiter.RateLimiterStore["Service"]

export interface MemoryLimitStore extends StoreService {
  readonly size: () => number
}

export const makeMemoryLimitStore = (sweepMs = 10_000): Effect.Effect<MemoryLimitStore> =>
  Effect.gen(function*() {
    const adaptive = yield* Effect.provide(Effect.service(RateLimiter.RateLimiterStore), RateLimiter.layerStoreMemory)
    const windows = new Map<string, Window>()
    const buckets = new Map<string, Bucket>()
    let nextSweep = 0

    const sweep = (now: number) => {
      if (now < nextSweep) return
      nextSweep = now + sweepMs
      for (const [key, window] of windows) if (window.expiresAt <= now) windows.delete(key)
      for (const [key, bucket] of buckets) {
        if (bucket.tokens + Math.floor((now - bucket.start) / bucket.rateMs) >= bucket.limit) buckets.delete(key)
      }
    }

    return {
      size: () => windows.size + buckets.size,
      // The count after taking `tokens` and the window's time to live; over `limit`, nothing is
      // taken and the TTL stays.
      fixedWindow: (options) =>
        Effect.clockWith((clock) =>
          Effect.sync(() => {
            const now = clock.currentTimeMillisUnsafe()
            sweep(now)
            let window = windows.get(options.key)
            if (window === undefined || window.expiresAt <= now) {
              window = { count: 0, expiresAt: now }
              windows.set(options.key, window)
            }
            if (options.limit !== undefined && window.count + options.tokens > options.limit) {
              return [window.count + options.tokens, window.expiresAt - now] as const
            }
            window.count += options.tokens
            window.expiresAt += Duration.toMillis(options.refillRate) * options.tokens
            return [window.count, window.expiresAt - now] as const
          })
        ),
      // Refills by whole intervals, takes `tokens` (kept below zero only with allowOverflow), and
      // returns what remains and the time into the current interval (0 from a full bucket).
      tokenBucket: (options) =>
        Effect.clockWith((clock) =>
          Effect.sync(() => {
            const now = clock.currentTimeMillisUnsafe()
            sweep(now)
            const rateMs = Duration.toMillis(options.refillRate)
            let bucket = buckets.get(options.key)
            if (bucket === undefined) {
              bucket = { tokens: options.limit, start: now, limit: options.limit, rateMs }
              buckets.set(options.key, bucket)
            } else {
              bucket.limit = options.limit
              bucket.rateMs = rateMs
            }
            const intervals = Math.floor((now - bucket.start) / rateMs)
            if (intervals > 0) {
              bucket.tokens = Math.min(bucket.limit, bucket.tokens + intervals)
              bucket.start += intervals * rateMs
            }
            if (bucket.tokens >= bucket.limit) bucket.start = now
            const remaining = bucket.tokens - options.tokens
            if (options.allowOverflow || remaining >= 0) bucket.tokens = remaining
            return [remaining, Math.max(0, now - bucket.start)] as const
          })
        ),
      adaptiveConsume: adaptive.adaptiveConsume,
      adaptiveFeedback: adaptive.adaptiveFeedback
    }
  })

/** A `RateLimiter` over a new memory store (and the store, to look at). */
export const memoryRateLimiter = (sweepMs?: number) =>
  Effect.gen(function*() {
    const store = yield* makeMemoryLimitStore(sweepMs)
    const limiter = yield* RateLimiter.make.pipe(Effect.provideService(RateLimiter.RateLimiterStore, store))
    return { limiter, store }
  })
