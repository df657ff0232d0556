/**
 * A retry budget per upstream, as Finagle's and Linkerd's: over a sliding window (10s by
 * default), retries may be at most `percent`% of the requests plus a floor of `min_per_second`
 * retries for every second of the window:
 *
 *     retries in window ≤ percent/100 · requests in window + min_per_second · window
 *
 * The percentage keeps a failing upstream from being hit by a retry storm at any load; the
 * floor lets a quiet upstream fail over at all. A retry after a connect failure is free: that
 * try reached no upstream (the request never left the gateway), so failing over from a dead or
 * refusing endpoint costs nothing and is never refused — the caller simply does not charge it.
 *
 * The window is a ring of {@link BUDGET_SLICES} slices (window / 10 each), counted in two
 * preallocated arrays: counting a request or granting a retry allocates nothing. Time is a
 * parameter (`now`, in milliseconds, monotonic), so the state machine runs as well on
 * `performance.now()` on the request path as on `Clock.currentTimeMillis` under TestClock.
 *
 * What the budget guarantees: every grant leaves `retries in window ≤ percent/100 · requests in
 * window + floor`. Over any run, the retries granted are at most
 * `percent/100 · requests + floor · k`, where k is the number of windows the run touches
 * (`⌈slices spanned / 10⌉`; 1 for a run shorter than 9 slices): split the granted retries, from
 * the last one back, into windows ending at a grant; those windows are disjoint, and each holds
 * at most its own requests' share plus one floor.
 */
import type { Upstream } from "../config/Schema.ts"
import type { TryFailure } from "./RetryPolicy.ts"

/** Slices of the sliding window: it moves one slice (window / 10) at a time. */
export const BUDGET_SLICES = 10

/** Linkerd's defaults (retryRatio 0.2, minRetriesPerSecond 10, ttl 10s). */
export const retryBudgetDefaults = { percent: 20, min_per_second: 10, window: 10_000 } as const

export interface RetryBudget {
  readonly percent: number
  readonly minPerSecond: number
  readonly windowMs: number
  /** `min_per_second` × the window in seconds: the retries a window allows with no requests. */
  readonly floor: number
  readonly sliceMs: number
  /** Requests counted per slice, a ring indexed by slice number mod BUDGET_SLICES. */
  readonly requests: Float64Array
  /** Retries granted per slice, the same ring. */
  readonly retries: Float64Array
  /** The number (`now / sliceMs`, rounded down) of the newest slice counted in. */
  slice: number
  /** Sums over the ring, as of the last call (the window moves when the budget is used). */
  requestsInWindow: number
  retriesInWindow: number
}

/**
 * @example
 * const budget = makeRetryBudget({ percent: 20, minPerSecond: 10, windowMs: 10_000 })
 * budget.floor // => 100
 */
export const makeRetryBudget = (options: { readonly percent: number; readonly minPerSecond: number; readonly windowMs: number }): RetryBudget => ({
  percent: options.percent,
  minPerSecond: options.minPerSecond,
  windowMs: options.windowMs,
  floor: options.minPerSecond * options.windowMs / 1_000,
  sliceMs: options.windowMs / BUDGET_SLICES,
  requests: new Float64Array(BUDGET_SLICES),
  retries: new Float64Array(BUDGET_SLICES),
  slice: Number.NEGATIVE_INFINITY,
  requestsInWindow: 0,
  retriesInWindow: 0
})

/**
 * An upstream's `retry_budget` compiled with its defaults. `previous` (the budget of the group
 * before a reload) is kept when its settings are the same, so a reload does not refill it.
 */
export const compileRetryBudget = (config: Upstream["retry_budget"], previous?: RetryBudget): RetryBudget => {
  const percent = config?.percent ?? retryBudgetDefaults.percent
  const minPerSecond = config?.min_per_second ?? retryBudgetDefaults.min_per_second
  const windowMs = config?.window ?? retryBudgetDefaults.window
  if (previous !== undefined && previous.percent === percent && previous.minPerSecond === minPerSecond && previous.windowMs === windowMs) {
    return previous
  }
  return makeRetryBudget({ percent, minPerSecond, windowMs })
}

const indexOf = (slice: number): number => (slice % BUDGET_SLICES + BUDGET_SLICES) % BUDGET_SLICES

/** Moves the window to `now`: the slices that fell out of it are emptied. */
const advance = (budget: RetryBudget, now: number): number => {
  const slice = Math.floor(now / budget.sliceMs)
  if (slice <= budget.slice) return budget.slice
  const steps = Math.min(slice - budget.slice, BUDGET_SLICES)
  for (let i = 1; i <= steps; i++) {
    const k = indexOf(slice - steps + i)
    budget.requestsInWindow -= budget.requests[k]
    budget.retriesInWindow -= budget.retries[k]
    budget.requests[k] = 0
    budget.retries[k] = 0
  }
  budget.slice = slice
  return slice
}

/** Counts a request (an exchange starting) at `now` (ms). */
export const countRequest = (budget: RetryBudget, now: number): void => {
  const k = indexOf(advance(budget, now))
  budget.requests[k]++
  budget.requestsInWindow++
}

/**
 * Grants one retry at `now` (ms) and charges it, when the window still allows one; false, and
 * nothing charged, when the budget is spent.
 *
 * @example
 * const budget = makeRetryBudget({ percent: 20, minPerSecond: 0, windowMs: 10_000 })
 * for (let i = 0; i < 10; i++) countRequest(budget, 0)
 * chargeRetry(budget, 0) // => true (20% of 10 requests is 2)
 * chargeRetry(budget, 0) // => true
 * chargeRetry(budget, 0) // => false
 */
export const chargeRetry = (budget: RetryBudget, now: number): boolean => {
  const k = indexOf(advance(budget, now))
  // In hundredths, so that whole percentages compare exactly.
  if (100 * (budget.retriesInWindow + 1) > budget.percent * budget.requestsInWindow + 100 * budget.floor) return false
  budget.retries[k]++
  budget.retriesInWindow++
  return true
}

/**
 * Whether a retry after a try that ended in `failure` may go ahead at `now` (ms). A connect
 * failure's retry is free (that try reached no upstream); any other is charged to the budget
 * ({@link chargeRetry}), or refused when the budget is spent.
 *
 * @example
 * const spent = makeRetryBudget({ percent: 0, minPerSecond: 0, windowMs: 10_000 })
 * admitRetry(spent, "connect-failure", 0) // => true
 * admitRetry(spent, 503, 0) // => false
 */
export const admitRetry = (budget: RetryBudget, failure: TryFailure, now: number): boolean =>
  failure === "connect-failure" || chargeRetry(budget, now)

/** How many more retries the budget would grant at `now` (ms) with no further requests. */
export const retriesLeft = (budget: RetryBudget, now: number): number => {
  advance(budget, now)
  return Math.max(0, Math.floor((budget.percent * budget.requestsInWindow + 100 * budget.floor - 100 * budget.retriesInWindow) / 100))
}
