/**
 * The live state of one upstream endpoint, shared by the balancer (which reads it)
 * and the forwarder (which updates it). Mutable on purpose: it is touched on every
 * request, and a plain object field is the cheapest counter there is.
 */
export interface EndpointState {
  /** The endpoint's URL origin, e.g. `http://127.0.0.1:3000`; unique within an upstream. */
  readonly id: string
  /** Static weight from the config (>= 1). */
  readonly weight: number
  /** Requests in flight to this endpoint right now. */
  active: number
  /** Exponentially weighted moving average of response latency in ms (0 until the first sample). */
  ewma: number
  /** Whether active health checks currently consider it up (always true without checks). */
  healthy: boolean
  /** Whether outlier detection has taken it out of rotation for now. */
  ejected: boolean
}

/** What a balancer may look at to pick an endpoint for one request. */
export interface PickContext {
  readonly clientIp: string
  /** The normalised request path (no query). */
  readonly path: string
  /** Lower-cased request header lookup; undefined when absent. */
  readonly header: (name: string) => string | undefined
}

export const makeEndpointState = (id: string, weight: number): EndpointState => ({ id, weight, active: 0, ewma: 0, healthy: true, ejected: false })
