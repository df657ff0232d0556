/**
 * A route's `retry` config compiled once into what the request path needs: which failures and
 * methods may be retried, how many tries in all, the per-try timeout and the backoff. The
 * backoff is exponential with full jitter and a cap (AWS's "full jitter"): try n waits a random
 * time in [0, min(max, base · 2^(n-1))]. The policy's `schedule` (an Effect Schedule) decides
 * how many tries follow the first and how long to wait before each; `Effect.retry` runs it in the
 * request's fiber from the first retryable failure on (proxy/Retries.ts), so a request that
 * succeeds at once never builds schedule state.
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
  /** The retries as an Effect Schedule: `attempts - 1` recurrences, each delayed by the backoff. */
  readonly schedule: Schedule.Schedule<Duration.Duration>
}

export const compileRetryPolicy = (retry: Retry | undefined): RetryPolicy | undefined => {
  if (retry === undefined) return undefined
  const on = new Set((retry.on ?? retryDefaults.on).map(String))
  const backoff = retry.backoff ?? {}
  const policy: Omit<RetryPolicy, "schedule"> = {
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
  return { ...policy, schedule: retrySchedule(policy) }
}

/** Whether this failure may be retried at all (method and `on`), whatever the count. */
export const retryable = (policy: RetryPolicy, method: string, failure: TryFailure): boolean => {
  if (!policy.methods.has(method)) return false
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

/** Whether this failure of try number `attempt` (1-based) may be followed by another try. */
export const mayRetry = (policy: RetryPolicy, method: string, attempt: number, failure: TryFailure): boolean =>
  attempt < policy.attempts && retryable(policy, method, failure)

/** The upper bound of the wait before try `attempt + 1` (1-based `attempt`). */
export const backoffCap = (policy: Pick<RetryPolicy, "maxMs" | "baseMs">, attempt: number): number =>
  Math.min(policy.maxMs, policy.baseMs * 2 ** (attempt - 1))

/**
 * The wait before try `attempt + 1`: full jitter draws uniformly below the cap.
 *
 * @example
 * backoffDelay(policy, 1, () => 0.5) // => policy.baseMs / 2 with jitter on
 */
export const backoffDelay = (policy: Pick<RetryPolicy, "maxMs" | "baseMs" | "jitter">, attempt: number, random: () => number = Math.random): number => {
  const cap = backoffCap(policy, attempt)
  return policy.jitter ? Math.floor(random() * cap) : cap
}

/** The policy's retries as an Effect Schedule (what `schedule` is; `random` for the tests). */
export const retrySchedule = (
  policy: Pick<RetryPolicy, "attempts" | "maxMs" | "baseMs" | "jitter">,
  random: () => number = Math.random
): Schedule.Schedule<Duration.Duration> =>
  Schedule.max([
    Schedule.spaced(Duration.zero).pipe(
      Schedule.modifyDelay(({ attempt }) => Effect.succeed(Duration.millis(backoffDelay(policy, attempt, random))))
    ),
    Schedule.recurs(policy.attempts - 1)
  ])
