/**
 * A route's retries as an Effect in the request's fiber: `Effect.retry` with the route's
 * compiled Schedule (how many tries, the backoff before each) and a `while` that asks the
 * exchange whether another try may go now (an endpoint to go to, the retry budget). The
 * exchange builds this only at a request's first retryable failure, so a request answered at
 * once runs no schedule, no catch and no timer of it.
 */
import * as Effect from "effect/Effect"
import type * as Duration from "effect/Duration"
import type * as Schedule from "effect/Schedule"
import type { GatewayError } from "../middleware/GatewayError.ts"
import type { TryFailure } from "../resilience/RetryPolicy.ts"

/** A try that failed in a way the route's retry policy allows to retry. */
export interface FailedTry {
  readonly failure: TryFailure
  /** The try's error; undefined for a response with a retryable status, which is held. */
  readonly error: GatewayError | undefined
}

/** What the retries need from the exchange whose tries they drive. */
export interface RetryingExchange {
  /** Whether another try may follow `failed` now; picks the endpoint it goes to. */
  admitRetry(failed: FailedTry): boolean
  /**
   * Starts the next try. `resume` gets nothing once the exchange has finished (answered, or
   * ended otherwise), or the try's failure when it may be retried.
   */
  startRetry(resume: (outcome: Effect.Effect<void, FailedTry>) => void): void
  /** No try follows `failed`: the exchange answers with it (or lets the held response through). */
  giveUp(failed: FailedTry): void
}

/** The tries after the first, which failed with `first`. */
export const retryTries = (exchange: RetryingExchange, schedule: Schedule.Schedule<Duration.Duration>, first: FailedTry): Effect.Effect<void> => {
  // The first try ran before any schedule existed: the loop starts from its failure, and each
  // later evaluation is a new try.
  let pending: FailedTry | undefined = first
  const nextTry = Effect.callback<void, FailedTry>((resume) => {
    if (pending === undefined) return exchange.startRetry(resume)
    const failed = pending
    pending = undefined
    resume(Effect.fail(failed))
  })
  return nextTry.pipe(
    Effect.retry({ schedule, while: (failed: FailedTry) => exchange.admitRetry(failed) }),
    Effect.catch((failed: FailedTry) => Effect.sync(() => exchange.giveUp(failed)))
  )
}
