/**
 * The rate limiter whose counters live in Redis (effect/persistence's Redis store through
 * @effect/platform-node's NodeRedis), shared by every worker and instance that points at the
 * same server. The connection is made in the background and kept up with reconnects (capped
 * at 2 s apart); while it is down, commands fail at once (no offline queue) and each request
 * is decided by `on_error` within `timeout`, so no request ever waits on a dead Redis.
 */
import * as NodeRedis from "@effect/platform-node/NodeRedis"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as RateLimiter from "effect/persistence/RateLimiter"
import * as References from "effect/References"
import * as Scope from "effect/Scope"
import type { RedisSettings } from "../config/MiddlewareSchema.ts"

/** One Redis server's limiter; `limiter` is undefined until the first connection is up. */
export interface RedisLimiter {
  readonly url: string
  readonly prefix: string
  readonly timeoutMs: number
  readonly failOpen: boolean
  limiter: RateLimiter.RateLimiter | undefined
}

const reconnectStrategy = (retries: number): number => Math.min(2 ** retries * 50, 2_000)

/**
 * Connects to `settings.url` in a scope of its own (a child of `parent`); closing the returned
 * scope closes the client.
 */
export const connectRedisLimiter = (settings: RedisSettings, parent: Scope.Scope) =>
  Effect.gen(function*() {
    const scope = yield* Scope.fork(parent)
    const state: RedisLimiter = {
      url: settings.url,
      prefix: settings.key_prefix ?? "fibergate:",
      timeoutMs: settings.timeout ?? 50,
      failOpen: (settings.on_error ?? "allow") === "allow",
      limiter: undefined
    }
    const connect = Layer.buildWithScope(
      NodeRedis.layer({ url: settings.url, disableOfflineQueue: true, socket: { reconnectStrategy, connectTimeout: 1_000 } }),
      scope
    ).pipe(
      Effect.flatMap((context) => RateLimiter.make.pipe(Effect.provide(RateLimiter.layerStoreRedis({ prefix: state.prefix })), Effect.provideContext(context))),
      Effect.tap((limiter) => Effect.sync(() => {
        state.limiter = limiter
      })),
      // The client logs every failed reconnect; the limiter's own rate-limited log says what matters.
      Effect.provideService(References.MinimumLogLevel, "Error"),
      Effect.catchCause((cause) => Effect.logError(`redis ${settings.url}: could not connect`, cause))
    )
    yield* Effect.forkIn(connect, scope)
    return { state, close: Scope.close(scope, Exit.void) }
  })
