/**
 * `concurrency_limit`: at most `max` requests of the route in flight, from the start of the
 * middleware to the end of the response; one more is refused at once with 503 (never queued,
 * as Envoy's max_requests circuit breaker does).
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type * as Semaphore from "effect/Semaphore"
import { ConcurrencyLimited } from "./GatewayError.ts"
import type { Step } from "./Middleware.ts"

const limited = new ConcurrencyLimited({ message: "Too many requests in flight on this route" })

/** `semaphore` is kept across reloads by the caller, so in-flight requests keep counting. */
export const compileConcurrencyLimit = (semaphore: Semaphore.Semaphore): Step => (request, next) =>
  Effect.flatMap(semaphore.withPermitsIfAvailable(1)(next(request)), (ran) => Option.isSome(ran) ? Effect.void : Effect.fail(limited))
