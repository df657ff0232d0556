/**
 * A circuit breaker per upstream endpoint: closed → open after `consecutive_failures` failed
 * tries; open for `open_for` (doubling with each consecutive opening, capped at
 * `max_open_for`); then half-open, admitting `half_open_probes` tries at a time: a successful
 * probe closes the circuit, a failed one opens it again.
 *
 * These are the semantics of `effect/persistence` CircuitBreaker, kept as a synchronous state
 * machine because the request path is not an Effect: measured here, `breaker.execute` with the
 * memory store costs about 4 µs per call (run per request with `Effect.runFork`), against a
 * proxy budget of about 30 µs of CPU per request; this check costs a few field reads. The
 * open → half-open step runs on Effect's Clock (a fiber in `Upstreams`), so it is tested with
 * TestClock like the rest of the timing rules.
 */
import type { CircuitBreaker } from "../config/Schema.ts"
import type { OutlierFailure } from "./Outlier.ts"

export interface CircuitPolicy {
  readonly consecutiveFailures: number
  readonly openForMs: number
  readonly maxOpenForMs: number
  readonly halfOpenProbes: number
  readonly counts: ReadonlySet<OutlierFailure>
}

export const circuitDefaults = {
  consecutive_failures: 5,
  open_for: 30_000,
  max_open_for: 300_000,
  half_open_probes: 1,
  failures: ["connect-failure", "reset", "timeout", "5xx"] as ReadonlyArray<OutlierFailure>
} as const

export const compileCircuitPolicy = (config: CircuitBreaker | undefined): CircuitPolicy | undefined =>
  config === undefined
    ? undefined
    : {
      consecutiveFailures: config.consecutive_failures ?? circuitDefaults.consecutive_failures,
      openForMs: config.open_for ?? circuitDefaults.open_for,
      maxOpenForMs: config.max_open_for ?? circuitDefaults.max_open_for,
      halfOpenProbes: config.half_open_probes ?? circuitDefaults.half_open_probes,
      counts: new Set(config.failures ?? circuitDefaults.failures)
    }

/** The per-endpoint circuit fields the rule reads and writes. */
export interface CircuitState {
  circuit: "closed" | "open" | "half-open"
  /** Consecutive counted failures while closed. */
  circuitFailures: number
  /** Consecutive openings (reset when a probe closes the circuit); sets the open time. */
  circuitOpens: number
  /** Probes in flight while half-open. */
  circuitProbes: number
}

export const closedCircuit = (): CircuitState => ({ circuit: "closed", circuitFailures: 0, circuitOpens: 0, circuitProbes: 0 })

/** Whether a new try may go to this endpoint now. */
export const circuitAdmits = (policy: CircuitPolicy, s: CircuitState): boolean =>
  s.circuit === "closed" || (s.circuit === "half-open" && s.circuitProbes < policy.halfOpenProbes)

/** Marks the start of a try; returns whether it is a half-open probe. */
export const circuitTryStarted = (s: CircuitState): boolean => {
  if (s.circuit !== "half-open") return false
  s.circuitProbes++
  return true
}

/**
 * Records a try's outcome (`undefined` = success). Returns "opened" when this outcome opened the
 * circuit (the caller schedules the half-open step after `openDurationMs`).
 */
export const recordCircuit = (
  policy: CircuitPolicy,
  s: CircuitState,
  failure: OutlierFailure | undefined,
  probe: boolean
): "opened" | "closed" | undefined => {
  if (probe) s.circuitProbes--
  const failed = failure !== undefined && policy.counts.has(failure)
  if (s.circuit === "half-open" && probe) {
    if (failed) return open(s)
    if (failure === undefined) {
      s.circuit = "closed"
      s.circuitFailures = 0
      s.circuitOpens = 0
      return "closed"
    }
    return undefined
  }
  if (s.circuit !== "closed") return undefined
  if (failure === undefined) {
    s.circuitFailures = 0
    return undefined
  }
  if (!failed) return undefined
  s.circuitFailures++
  return s.circuitFailures >= policy.consecutiveFailures ? open(s) : undefined
}

const open = (s: CircuitState): "opened" => {
  s.circuit = "open"
  s.circuitFailures = 0
  s.circuitOpens++
  return "opened"
}

/** How long the `n`-th consecutive opening (1-based) lasts. */
export const openDurationMs = (policy: CircuitPolicy, n: number): number =>
  Math.min(policy.maxOpenForMs, policy.openForMs * 2 ** (n - 1))
