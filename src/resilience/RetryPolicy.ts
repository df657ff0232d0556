/**
 * A route's `retry` config compiled once into what the request path needs: which failures and
 * methods may be retried, how many tries in all, the per-try timeout and the backoff. The
 * backoff is exponential with full jitter and a cap (AWS's "full jitter"): try n waits a random
 * time in [0, min(max, base · 2^(n-1))]. `retrySchedule` expresses the same policy as an Effect
 * Schedule, and the tests hold the two to each other.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"
import type { Retry } from "../config/Schema.ts"

/** What went wrong with one try, as far as retrying is concerned. */
export type TryFailure = "connect-failure" | "reset" | "timeout" | number

/** RFC 9110 §9.2.2 idempotent methods: safe to send twice. */
export const IDEMPOTENT_METHODS: ReadonlyArray<string> = ["GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"]

export const retryDefaults = {
  attempts: 3,
  buffer_bytes: 64 * 1024,
  backoff: { base: 25, max: 1_000, jitter: true },
  on: ["connect-failure", "reset", "timeout", 502, 503, 504] as ReadonlyArray<string | number>
} as const

export interface RetryPolicy {
  /** Tries in all, the first included (>= 1). */
  readonly attempts: number
  readonly perTryTimeoutMs: number | undefined
  /** Request bodies up to this size (with a Content-Length) are buffered so a retry can replay them. */
  readonly bufferBytes: number
  readonly baseMs: number
  readonly maxMs: number
  readonly jitter: boolean
  readonly methods: ReadonlySet<string>
  readonly onConnectFailure: boolean
  readonly onReset: boolean
  readonly onTimeout: boolean
  readonly onStatus: ReadonlySet<number>
}

export const compileRetryPolicy = (retry: Retry | undefined): RetryPolicy | undefined => {
  if (retry === undefined) return undefined
  const on = new Set((retry.on ?? retryDefaults.on).map(String))
  const backoff = retry.backoff ?? {}
  return {
    attempts: retry.attempts ?? retryDefaults.attempts,
    perTryTimeoutMs: retry.per_try_timeout,
    bufferBytes: retry.buffer_bytes ?? retryDefaults.buffer_bytes,
    baseMs: backoff.base ?? retryDefaults.backoff.base,
    maxMs: backoff.max ?? retryDefaults.backoff.max,
    jitter: backoff.jitter ?? retryDefaults.backoff.jitter,
    methods: new Set(retry.methods ?? IDEMPOTENT_METHODS),
    onConnectFailure: on.has("connect-failure"),
    onReset: on.has("reset"),
    onTimeout: on.has("timeout"),
    onStatus: new Set([...on].filter((t) => /^\d{3}$/.test(t)).map(Number))
  }
}

/** Whether this failure of try number `attempt` (1-based) may be followed by another try. */
export const mayRetry = (policy: RetryPolicy, method: string, attempt: number, failure: TryFailure): boolean => {
  if (attempt >= policy.attempts || !policy.methods.has(method)) return false
  switch (failure) {
    case "connect-failure":
      return policy.onConnectFailure
    case "reset":
      return policy.onReset
    case "timeout":
      return policy.onTimeout
    default:
      return policy.onStatus.has(failure)
  }
}

/** The upper bound of the wait before try `attempt + 1` (1-based `attempt`). */
export const backoffCap = (policy: RetryPolicy, attempt: number): number =>
  Math.min(policy.maxMs, policy.baseMs * 2 ** (attempt - 1))

/**
 * The wait before try `attempt + 1`: full jitter draws uniformly below the cap.
 *
 * @example
 * backoffDelay(policy, 1, () => 0.5) // => policy.baseMs / 2 with jitter on
 */
export const backoffDelay = (policy: RetryPolicy, attempt: number, random: () => number = Math.random): number => {
  const cap = backoffCap(policy, attempt)
  return policy.jitter ? Math.floor(random() * cap) : cap
}

/** The same backoff as an Effect Schedule (for Effect programs that retry with this policy). */
export const retrySchedule = (policy: RetryPolicy, random: () => number = Math.random): Schedule.Schedule<Duration.Duration> =>
  Schedule.max([
    Schedule.spaced(Duration.zero).pipe(
      Schedule.modifyDelay(({ attempt }) => Effect.succeed(Duration.millis(backoffDelay(policy, attempt, random))))
    ),
    Schedule.recurs(policy.attempts - 1)
  ])
