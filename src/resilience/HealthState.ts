/**
 * The rise/fall rule of active health checking (HAProxy's `rise`/`fall`): an endpoint turns
 * unhealthy after `unhealthyThreshold` consecutive failed probes and healthy again after
 * `healthyThreshold` consecutive successful ones. A pure function of the probe history, so
 * the rule is property-tested apart from timing.
 */
export interface HealthState {
  readonly healthy: boolean
  /** Consecutive probes that disagree with `healthy` (a streak toward flipping it). */
  readonly streak: number
}

export interface Thresholds {
  readonly healthyThreshold: number
  readonly unhealthyThreshold: number
}

/** Endpoints start healthy (as in HAProxy and Traefik): a new endpoint takes traffic at once. */
export const initialHealth: HealthState = { healthy: true, streak: 0 }

/**
 * @example
 * observeProbe({ healthy: true, streak: 2 }, false, { healthyThreshold: 2, unhealthyThreshold: 3 })
 * // => { healthy: false, streak: 0 }
 */
export const observeProbe = (state: HealthState, ok: boolean, t: Thresholds): HealthState => {
  if (ok === state.healthy) return state.streak === 0 ? state : { healthy: state.healthy, streak: 0 }
  const streak = state.streak + 1
  const needed = state.healthy ? t.unhealthyThreshold : t.healthyThreshold
  return streak >= needed ? { healthy: !state.healthy, streak: 0 } : { healthy: state.healthy, streak }
}
