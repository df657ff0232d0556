/**
 * `rate_limit` on effect/persistence's `RateLimiter`: a token bucket (default; `limit` is the
 * bucket, refilled evenly over `window`) or a fixed window of `limit` requests. The counter's
 * key is the client IP, the route, one global counter, a request header or the consumer an
 * auth middleware established. Allowed responses carry the IETF `RateLimit-Policy` and
 * `RateLimit` headers; a refusal answers 429 with `Retry-After` and the same headers.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Cause from "effect/Cause"
import type { ConsumeResult, RateLimiter, RateLimiterError } from "effect/persistence/RateLimiter"
import type { RateLimit } from "../config/MiddlewareSchema.ts"
import { RateLimited, RateLimiterUnavailable, type GatewayError } from "./GatewayError.ts"
import type { Next, PipelineRequest, Step } from "./Middleware.ts"

/** How a request names its counter, given the middleware's own prefix. */
export const compileRateLimitKey = (key: string, prefix: string): ((request: PipelineRequest) => string) => {
  if (key === "ip") return (request) => `${prefix}ip:${request.clientIp}`
  if (key === "route") return (request) => `${prefix}route:${request.route}`
  if (key === "global") return () => `${prefix}global`
  // Without an established consumer, the client's address stands in (one anonymous client is
  // not every anonymous client).
  if (key === "consumer") return (request) => request.consumer === undefined ? `${prefix}ip:${request.clientIp}` : `${prefix}consumer:${request.consumer}`
  const name = key.slice("header:".length).toLowerCase()
  return (request) => `${prefix}header:${request.header(name) ?? ""}`
}

const seconds = (duration: Duration.Duration): number => Math.max(0, Math.ceil(Duration.toMillis(duration) / 1000))

/** Where a rate limit keeps its counters, read per request (a Redis connection comes and goes). */
export interface RateLimitStore {
  /** The limiter to ask; undefined while it cannot be asked (Redis not connected yet). */
  readonly limiter: () => RateLimiter | undefined
  /** How long to wait for the store; undefined: no bound (the memory store answers at once). */
  readonly timeoutMs: () => number | undefined
  /** Whether a request is admitted when the store fails (`on_error: allow`). */
  readonly failOpen: () => boolean
  /** Told about each store failure (counted and logged, rate-limited, by the caller). */
  readonly failed: (message: string) => void
}

/** The memory store: always there, never slow. */
export const memoryStore = (limiter: RateLimiter): RateLimitStore => ({
  limiter: () => limiter,
  timeoutMs: () => undefined,
  failOpen: () => true,
  failed: () => {}
})

/**
 * @example
 * compileRateLimit({ key: "ip", limit: 100, window: 1000 }, memoryStore(limiter), "public/api#0:")
 */
export const compileRateLimit = (config: RateLimit, store: RateLimitStore, prefix: string): Step => {
  const keyOf = compileRateLimitKey(config.key ?? "ip", prefix)
  const algorithm = config.algorithm === "fixed_window" ? "fixed-window" as const : "token-bucket" as const
  const window = Duration.millis(config.window)
  const policy = `"default";q=${config.limit};w=${Math.max(1, Math.ceil(config.window / 1000))}`
  const unavailable = new RateLimiterUnavailable({ message: "The rate limiter's store is unavailable" })
  const storeFailed = (request: PipelineRequest, next: Next, message: string): Effect.Effect<void, GatewayError> => {
    store.failed(message)
    return store.failOpen() ? next(request) : Effect.fail(unavailable)
  }
  return (request, next) => {
    const limiter = store.limiter()
    if (limiter === undefined) return storeFailed(request, next, "not connected")
    let consume: Effect.Effect<ConsumeResult, RateLimiterError | Cause.TimeoutError> = limiter.consume({
      key: keyOf(request),
      limit: config.limit,
      window,
      algorithm,
      onExceeded: "fail"
    })
    const timeoutMs = store.timeoutMs()
    if (timeoutMs !== undefined) consume = Effect.timeout(consume, timeoutMs)
    return consume.pipe(
      Effect.matchEffect({
        onFailure: (error): Effect.Effect<void, GatewayError> => {
          if (error._tag !== "RateLimiterError") return storeFailed(request, next, `no answer within ${timeoutMs} ms`)
          const reason = error.reason
          if (reason._tag !== "RateLimitExceeded") return storeFailed(request, next, reason.message)
          const retryAfter = Math.max(1, seconds(reason.retryAfter))
          return Effect.fail(new RateLimited({
            message: "Too many requests",
            retryAfter,
            policy,
            rate: `"default";r=0;t=${retryAfter}`
          }))
        },
        onSuccess: (result): Effect.Effect<void, GatewayError> => {
          request.addResponseHeader("ratelimit-policy", policy)
          request.addResponseHeader("ratelimit", `"default";r=${result.remaining};t=${seconds(result.resetAfter)}`)
          return next(request)
        }
      })
    )
  }
}
