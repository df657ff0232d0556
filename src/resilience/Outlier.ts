/**
 * Passive health (outlier detection, as Envoy's): consecutive failed tries eject an endpoint
 * for `base_ejection × number of ejections` (capped at `max_ejection`), never more than
 * `max_ejected_percent` of a group at once. The rule is pure; re-admission after the ejection
 * time is a fiber on Effect's Clock (in `Upstreams`), so it is tested with TestClock.
 */
import { FAILURE_KINDS, type FailureKind, type Outlier } from "../config/Schema.ts"

export type OutlierFailure = FailureKind

export interface OutlierPolicy {
  readonly consecutiveFailures: number
  readonly baseEjectionMs: number
  readonly maxEjectionMs: number
  readonly maxEjectedPercent: number
  readonly counts: ReadonlySet<OutlierFailure>
}

export const outlierDefaults = {
  consecutive_failures: 5,
  base_ejection: 30_000,
  max_ejection: 300_000,
  max_ejected_percent: 50,
  failures: FAILURE_KINDS as ReadonlyArray<OutlierFailure>
} as const

export const compileOutlierPolicy = (outlier: Outlier | undefined): OutlierPolicy | undefined =>
  outlier === undefined
    ? undefined
    : {
      consecutiveFailures: outlier.consecutive_failures ?? outlierDefaults.consecutive_failures,
      baseEjectionMs: outlier.base_ejection ?? outlierDefaults.base_ejection,
      maxEjectionMs: outlier.max_ejection ?? outlierDefaults.max_ejection,
      maxEjectedPercent: outlier.max_ejected_percent ?? outlierDefaults.max_ejected_percent,
      counts: new Set(outlier.failures ?? outlierDefaults.failures)
    }

/** The per-endpoint counters the rule reads and writes. */
export interface OutlierState {
  consecutiveFailures: number
  ejections: number
  ejected: boolean
  /** Identity of the current ejection, unique in the process; the re-admission timer checks it. */
  ejectionId: number
}

// Ejection ids only ever grow, so a leftover timer never ends a later ejection.
let lastEjection = 0

/**
 * Records one try's outcome (`undefined` = success) and says whether to eject the endpoint now.
 * `ejectedInGroup`/`groupSize` enforce `max_ejected_percent`: an ejection that would pass it is
 * skipped (the counter stays at or above the threshold, so the next failure asks again).
 *
 * @example
 * recordOutcome(policy, state, "reset", 0, 2) // => true on the policy's 5th consecutive failure
 */
export const recordOutcome = (
  policy: OutlierPolicy,
  state: OutlierState,
  failure: OutlierFailure | undefined,
  ejectedInGroup: number,
  groupSize: number
): boolean => {
  if (failure === undefined || !policy.counts.has(failure)) {
    if (failure === undefined) state.consecutiveFailures = 0
    return false
  }
  if (state.ejected) return false
  state.consecutiveFailures++
  if (state.consecutiveFailures < policy.consecutiveFailures) return false
  if ((ejectedInGroup + 1) * 100 > policy.maxEjectedPercent * groupSize) return false
  state.ejected = true
  state.ejections++
  state.ejectionId = ++lastEjection
  state.consecutiveFailures = 0
  return true
}

/** How long the `n`-th ejection (1-based) lasts. */
export const ejectionMs = (policy: OutlierPolicy, n: number): number => Math.min(policy.maxEjectionMs, policy.baseEjectionMs * n)
