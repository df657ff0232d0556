/**
 * `rate_limit` on effect/persistence's `RateLimiter`: a token bucket (default; `limit` is the
 * bucket, refilled evenly over `window`) or a fixed window of `limit` requests. The counter's
 * key is the client IP, the route, one global counter, a request header or the consumer an
 * auth middleware established. Allowed responses carry the IETF `RateLimit-Policy` and
 * `RateLimit` headers; a refusal answers 429 with `Retry-After` and the same headers.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type { RateLimiter } from "effect/persistence/RateLimiter"
import type { RateLimit } from "../config/MiddlewareSchema.ts"
import { RateLimited, RateLimiterUnavailable, type GatewayError } from "./GatewayError.ts"
import type { PipelineRequest, Step } from "./Middleware.ts"

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

/**
 * @example
 * compileRateLimit({ key: "ip", limit: 100, window: 1000 }, limiter, "public/api#0:")
 */
export const compileRateLimit = (config: RateLimit, limiter: RateLimiter, prefix: string): Step => {
  const keyOf = compileRateLimitKey(config.key ?? "ip", prefix)
  const algorithm = config.algorithm === "fixed_window" ? "fixed-window" as const : "token-bucket" as const
  const window = Duration.millis(config.window)
  const policy = `"default";q=${config.limit};w=${Math.max(1, Math.ceil(config.window / 1000))}`
  const unavailable = new RateLimiterUnavailable({ message: "The rate limiter's store is unavailable" })
  return (request, next) =>
    limiter.consume({ key: keyOf(request), limit: config.limit, window, algorithm, onExceeded: "fail" }).pipe(
      Effect.matchEffect({
        onFailure: (error): Effect.Effect<void, GatewayError> => {
          const reason = error.reason
          if (reason._tag !== "RateLimitExceeded") return Effect.fail(unavailable)
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
