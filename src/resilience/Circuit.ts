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
import { FAILURE_KINDS, type CircuitBreaker } from "../config/Schema.ts"
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
  failures: FAILURE_KINDS as ReadonlyArray<OutlierFailure>
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
  /** Which half-open period this is (counts up); a probe belongs to the period it started in. */
  circuitPeriod: number
  /** Identity of the current opening, unique in the process; the half-open timer checks it. */
  circuitOpenId: number
}

// Opening ids only ever grow, so a timer left over from an earlier opening (ended early by a
// reload, or of an endpoint that was removed and added again) never matches a later one.
let lastOpening = 0

export const closedCircuit = (): CircuitState => ({
  circuit: "closed",
  circuitFailures: 0,
  circuitOpens: 0,
  circuitProbes: 0,
  circuitPeriod: 0,
  circuitOpenId: 0
})

/** Whether a new try may go to this endpoint now. */
export const circuitAdmits = (policy: CircuitPolicy, s: CircuitState): boolean =>
  s.circuit === "closed" || (s.circuit === "half-open" && s.circuitProbes < policy.halfOpenProbes)

/**
 * Marks the start of a try. Returns the half-open period it probes, or 0 when it is not a probe;
 * pass that value back with its outcome (or to `abandonProbe`).
 */
export const circuitTryStarted = (s: CircuitState): number => {
  if (s.circuit !== "half-open") return 0
  s.circuitProbes++
  return s.circuitPeriod
}

/** Whether `probe` (from `circuitTryStarted`) is a probe of the current half-open period. */
const isCurrentProbe = (s: CircuitState, probe: number): boolean =>
  probe !== 0 && s.circuit === "half-open" && probe === s.circuitPeriod

/** A probe abandoned without an outcome (the client went away) frees its slot. */
export const abandonProbe = (s: CircuitState, probe: number): void => {
  if (isCurrentProbe(s, probe)) s.circuitProbes--
}

/** The end of an opening: the circuit becomes half-open, a new period with no probe in flight. */
export const circuitHalfOpen = (s: CircuitState): void => {
  s.circuit = "half-open"
  s.circuitProbes = 0
  s.circuitPeriod++
}

/**
 * Records a try's outcome (`undefined` = success); `probe` is what `circuitTryStarted` returned.
 * An outcome of a probe of an earlier half-open period decides nothing. Returns "opened" when this outcome opened the
 * circuit (the caller schedules the half-open step after `openDurationMs`).
 */
export const recordCircuit = (
  policy: CircuitPolicy,
  s: CircuitState,
  failure: OutlierFailure | undefined,
  probe: number
): "opened" | "closed" | undefined => {
  const current = isCurrentProbe(s, probe)
  if (current) s.circuitProbes--
  const failed = failure !== undefined && policy.counts.has(failure)
  if (current) {
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
  s.circuitOpenId = ++lastOpening
  return "opened"
}

/** How long the `n`-th consecutive opening (1-based) lasts. */
export const openDurationMs = (policy: CircuitPolicy, n: number): number =>
  policy.openForMs === 0 ? 0 : Math.min(policy.maxOpenForMs, policy.openForMs * 2 ** Math.min(n - 1, 52))
