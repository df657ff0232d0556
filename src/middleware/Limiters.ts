/**
 * The state middlewares keep across reloads: the memory rate limiter (effect/persistence's
 * `RateLimiter` over MemoryLimitStore, which forgets idle keys; counters per process, so with `workers: N` each worker limits on its own),
 * the Redis one when the config has a `redis:` section (counters shared by everyone using that
 * server), and the concurrency limits' semaphores, by middleware.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as RateLimiter from "effect/persistence/RateLimiter"
import * as Scope from "effect/Scope"
import * as Semaphore from "effect/Semaphore"
import type { RedisSettings } from "../config/MiddlewareSchema.ts"
import type { RateLimitStore } from "./RateLimit.ts"
import { memoryRateLimiter } from "./MemoryLimitStore.ts"
import type { RedisLimiter } from "./RedisLimiter.ts"

export class Limiters extends Context.Service<Limiters, {
  readonly rateLimiter: RateLimiter.RateLimiter
  /** The Redis limiter of the config in force, undefined without a `redis:` section. */
  readonly redis: () => RedisLimiter | undefined
  /** Connects to the config's Redis (or disconnects); a no-op when it is unchanged. */
  readonly useRedis: (settings: RedisSettings | null | undefined) => Effect.Effect<void>
  /** The semaphore of the concurrency limit `key`; the same one while its `max` is unchanged. */
  readonly semaphore: (key: string, max: number) => Semaphore.Semaphore
}>()("fibergate/middleware/Limiters") {
  /** Limiters whose Redis connections live in the current scope. */
  static readonly make: Effect.Effect<Limiters["Service"], never, Scope.Scope> = Effect.gen(function*() {
    const scope = yield* Effect.scope
    const { limiter: rateLimiter } = yield* memoryRateLimiter()
    const semaphores = new Map<string, { readonly max: number; readonly semaphore: Semaphore.Semaphore }>()
    let redis: { readonly settings: RedisSettings; readonly state: RedisLimiter; readonly close: Effect.Effect<void> } | undefined
    const same = (a: RedisSettings, b: RedisSettings) =>
      a.url === b.url && a.key_prefix === b.key_prefix && a.timeout === b.timeout && a.on_error === b.on_error
    return Limiters.of({
      rateLimiter,
      redis: () => redis?.state,
      useRedis: (settings) =>
        Effect.gen(function*() {
          if (settings != null && redis !== undefined && same(redis.settings, settings)) return
          const old = redis
          redis = undefined
          if (old !== undefined) yield* old.close
          if (settings == null) return
          // Loaded on first use: the Redis client is about a megabyte of JavaScript most configs never run.
          const { connectRedisLimiter } = yield* Effect.promise(() => import("./RedisLimiter.ts"))
          const connected = yield* connectRedisLimiter(settings, scope)
          redis = { settings, ...connected }
        }),
      semaphore: (key, max) => {
        const found = semaphores.get(key)
        if (found !== undefined && found.max === max) return found.semaphore
        const semaphore = Semaphore.makeUnsafe(max)
        semaphores.set(key, { max, semaphore })
        return semaphore
      }
    })
  })

  static readonly layer: Layer.Layer<Limiters> = Layer.effect(Limiters, Limiters.make)
}

/** The store of rate limits with `store: redis`, following the connection of the config in force. */
export const redisStore = (limiters: Limiters["Service"], failed: (message: string) => void): RateLimitStore => ({
  limiter: () => limiters.redis()?.limiter,
  timeoutMs: () => limiters.redis()?.timeoutMs ?? 50,
  failOpen: () => limiters.redis()?.failOpen ?? true,
  failed
})
