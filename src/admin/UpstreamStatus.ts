/**
 * The live state of the upstream groups as the admin API shows it: `GET /upstreams` (every
 * endpoint: health, ejection, circuit, requests in flight, latency EWMA) and the per-state counts
 * of `GET /stats`. Read from the same mutable endpoint objects the request path updates, at the
 * moment of the request.
 */
import type { Endpoint, UpstreamGroup } from "../upstream/UpstreamGroup.ts"

export interface EndpointStatus {
  readonly url: string
  readonly weight: number
  /** Whether the balancer may pick it now: healthy, not ejected, circuit admitting. */
  readonly available: boolean
  /** Active health checks' verdict (always true without `health_check`). */
  readonly healthy: boolean
  /** Taken out of rotation by outlier detection right now. */
  readonly ejected: boolean
  /** How many times outlier detection has ejected it. */
  readonly ejections: number
  readonly circuit: Endpoint["circuit"]
  /** Requests in flight to it. */
  readonly in_flight: number
  /** Latency EWMA in ms (0 until the first response). */
  readonly latency_ewma_ms: number
}

export interface UpstreamStatus {
  readonly balance: string
  /** Requests in flight to the whole group. */
  readonly in_flight: number
  readonly endpoints: ReadonlyArray<EndpointStatus>
}

const availableIn = (group: UpstreamGroup, e: Endpoint): boolean => group.eligible?.(e) ?? true

/** Rounded to µs: more digits are noise. */
const ms = (value: number): number => Math.round(value * 1000) / 1000

export const endpointStatus = (group: UpstreamGroup, e: Endpoint): EndpointStatus => ({
  url: e.origin,
  weight: e.weight,
  available: availableIn(group, e),
  healthy: e.healthy,
  ejected: e.ejected,
  ejections: e.ejections,
  circuit: e.circuit,
  in_flight: e.active,
  latency_ewma_ms: ms(e.ewma)
})

/**
 * @example
 * upstreamStatus(upstreams.current())
 * // => { app: { balance: "round_robin", in_flight: 0, endpoints: [{ url: "http://10.0.0.1:8080", … }] } }
 */
export const upstreamStatus = (groups: ReadonlyMap<string, UpstreamGroup>): Record<string, UpstreamStatus> =>
  Object.fromEntries([...groups].map(([name, group]) => [name, {
    balance: group.balancer.algorithm,
    in_flight: group.active,
    endpoints: group.endpoints.map((e) => endpointStatus(group, e))
  }]))

export interface EndpointCounts {
  readonly total: number
  readonly available: number
  readonly unhealthy: number
  readonly ejected: number
  readonly circuit_open: number
  readonly circuit_half_open: number
}

/** How many endpoints of a group are in each state (an endpoint may count in several). */
export const endpointCounts = (group: UpstreamGroup): EndpointCounts => ({
  total: group.endpoints.length,
  available: group.endpoints.filter((e) => availableIn(group, e)).length,
  unhealthy: group.endpoints.filter((e) => !e.healthy).length,
  ejected: group.endpoints.filter((e) => e.ejected).length,
  circuit_open: group.endpoints.filter((e) => e.circuit === "open").length,
  circuit_half_open: group.endpoints.filter((e) => e.circuit === "half-open").length
})
