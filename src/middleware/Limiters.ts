/**
 * The state middlewares keep across reloads: the rate limiter (effect/persistence's
 * `RateLimiter` on its memory store; counters are per process, so with `workers: N` each
 * worker limits on its own) and the concurrency limits' semaphores, by middleware.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as RateLimiter from "effect/persistence/RateLimiter"
import * as Semaphore from "effect/Semaphore"

export class Limiters extends Context.Service<Limiters, {
  readonly rateLimiter: RateLimiter.RateLimiter
  /** The semaphore of the concurrency limit `key`; the same one while its `max` is unchanged. */
  readonly semaphore: (key: string, max: number) => Semaphore.Semaphore
}>()("fibergate/middleware/Limiters") {
  /** Limiters whose rate-limit counters live in this process. */
  static readonly makeMemory: Effect.Effect<Limiters["Service"]> = Effect.gen(function*() {
      const rateLimiter = yield* RateLimiter.make.pipe(Effect.provide(RateLimiter.layerStoreMemory))
      const semaphores = new Map<string, { readonly max: number; readonly semaphore: Semaphore.Semaphore }>()
      return Limiters.of({
        rateLimiter,
        semaphore: (key, max) => {
          const found = semaphores.get(key)
          if (found !== undefined && found.max === max) return found.semaphore
          const semaphore = Semaphore.makeUnsafe(max)
          semaphores.set(key, { max, semaphore })
          return semaphore
        }
      })
    })

  static readonly layerMemory: Layer.Layer<Limiters> = Layer.effect(Limiters, Limiters.makeMemory)
}
