/**
 * Load-balancing algorithms for one upstream's endpoints.
 *
 * Everything here is plain synchronous code: `pick` runs once per request (and
 * once per retry) inside a `node:http` callback, so it avoids Effect, closures
 * and per-call arrays. Balancer state is a handful of counters captured at
 * construction; a config reload builds a fresh balancer.
 *
 * @since 0.1.0
 */
import * as HashRing from "effect/HashRing"
import * as PrimaryKey from "effect/PrimaryKey"
import type { EndpointState, PickContext } from "./Endpoint.ts"

/**
 * The balancing strategies an upstream can use, named as in the config's
 * `balance` key.
 *
 * @example
 * ```ts
 * const algorithm: BalanceAlgorithm = "least_request"
 * ```
 *
 * @since 0.1.0
 */
export type BalanceAlgorithm = "round_robin" | "weighted" | "random" | "least_request" | "ewma" | "consistent_hash"

/**
 * Where `consistent_hash` takes its key from. Header names are lower-case
 * because `PickContext.header` looks headers up lower-cased.
 *
 * @example
 * ```ts
 * const hashOn: HashOn = { _tag: "cookie", name: "session" }
 * ```
 *
 * @since 0.1.0
 */
export type HashOn =
  | { readonly _tag: "ip" }
  | { readonly _tag: "path" }
  | { readonly _tag: "header"; readonly name: string }
  | { readonly _tag: "cookie"; readonly name: string }

/**
 * Picks an endpoint per request attempt. Implementations keep mutable state
 * (cursors, smooth-weight counters) and are meant to be shared by all requests
 * of one upstream.
 *
 * @example
 * ```ts
 * const endpoint = balancer.pick(ctx, (e) => healthy.has(e.id) && !tried.has(e))
 * if (endpoint !== undefined) {
 *   const started = performance.now()
 *   // ... forward the request ...
 *   balancer.observe(endpoint, performance.now() - started)
 * }
 * ```
 *
 * @since 0.1.0
 */
export interface Balancer {
  readonly algorithm: BalanceAlgorithm
  /** Pick an endpoint among `candidates`-eligible ones; `eligible(e)` false means skip it (unhealthy / already tried). Returns undefined when none is eligible. */
  pick(ctx: PickContext, eligible?: (e: EndpointState) => boolean): EndpointState | undefined
  /** Record a finished attempt's latency (ms) for ewma. */
  observe(e: EndpointState, latencyMs: number): void
}

/**
 * Smoothing factor for the latency EWMA: each sample moves the average 30% of
 * the way, so a latency shift dominates after ~5 samples while a single
 * outlier cannot swing routing on its own. Decay is per sample rather than per
 * unit of time so `observe` needs no clock read.
 */
const EWMA_ALPHA = 0.3

/**
 * Cost assumed for an endpoint with no latency sample yet. Deliberately small
 * (optimistic) so new or recovered endpoints get probed and earn a real sample
 * instead of being starved by endpoints that already have one.
 */
const EWMA_DEFAULT_MS = 1

/**
 * How many `key#attempt` rehashes `consistent_hash` tries before falling back
 * to a linear scan. Rehashing spreads an ineligible endpoint's keys over all
 * the others (rather than dumping them on its ring neighbour), and a bound
 * keeps the worst case cheap when most endpoints are down.
 */
const MAX_REHASH = 16

/**
 * Builds a balancer over a fixed endpoint list. The endpoint objects are
 * shared, not copied: the forwarder mutates `active`/`ewma` on them and the
 * balancer reads those live values.
 *
 * - `round_robin`: cycles in order, ignoring weight.
 * - `weighted`: nginx's smooth weighted round robin; deterministic and
 *   interleaved (weights 5,1,1 give `a a b a c a a`).
 * - `random`: weight-proportional random choice.
 * - `least_request`: Envoy's power of two choices on `active`, ignoring weight.
 * - `ewma`: power of two choices on `(ewma || 1ms) * (active + 1)`; `observe`
 *   folds samples in with alpha 0.3, the first sample setting the average.
 * - `consistent_hash`: Effect's `HashRing`, weighted by `weight`, keyed by
 *   `hashOn` (default `ip`; a missing key falls back to the client IP).
 *
 * `random` defaults to `Math.random`; inject a seeded one for reproducible
 * tests.
 *
 * @example
 * ```ts
 * const balancer = makeBalancer({
 *   algorithm: "weighted",
 *   endpoints: [makeEndpointState("http://a:80", 5), makeEndpointState("http://b:80", 1)]
 * })
 * balancer.pick(ctx)?.id // "http://a:80"
 * ```
 *
 * @since 0.1.0
 */
export const makeBalancer = (options: {
  algorithm: BalanceAlgorithm
  endpoints: ReadonlyArray<EndpointState>
  hashOn?: HashOn
  random?: () => number
}): Balancer => {
  // Our own copy, so a caller mutating its array cannot desynchronise the
  // per-index state below.
  const endpoints = options.endpoints.slice()
  const random = options.random ?? Math.random
  switch (options.algorithm) {
    case "round_robin":
      return roundRobin(endpoints)
    case "weighted":
      return smoothWeighted(endpoints)
    case "random":
      return weightedRandom(endpoints, random)
    case "least_request":
      return powerOfTwo("least_request", endpoints, random, activeCost)
    case "ewma":
      return powerOfTwo("ewma", endpoints, random, ewmaCost)
    case "consistent_hash":
      return consistentHash(endpoints, options.hashOn ?? { _tag: "ip" })
  }
}

/**
 * Folds one latency sample into `e.ewma`. Applied for every algorithm, not
 * just `ewma`, so the admin API can show live latency whatever the strategy.
 */
const observeLatency = (e: EndpointState, latencyMs: number): void => {
  if (!Number.isFinite(latencyMs)) return
  const sample = latencyMs < 0 ? 0 : latencyMs
  e.ewma = e.ewma === 0 ? sample : e.ewma + EWMA_ALPHA * (sample - e.ewma)
}

const roundRobin = (endpoints: ReadonlyArray<EndpointState>): Balancer => {
  const n = endpoints.length
  let next = 0
  return {
    algorithm: "round_robin",
    pick(_ctx, eligible) {
      for (let step = 0; step < n; step++) {
        const i = (next + step) % n
        const e = endpoints[i]
        if (eligible === undefined || eligible(e)) {
          next = (i + 1) % n
          return e
        }
      }
      return undefined
    },
    observe: observeLatency
  }
}

/**
 * nginx's smooth weighted round robin (ngx_http_upstream_get_peer): every
 * eligible peer gains its weight, the richest wins and pays the eligible total.
 * Unlike naive WRR this interleaves picks, so a heavy endpoint never receives a
 * burst of consecutive requests, and every full cycle of `sum(weights)` picks
 * hits each endpoint exactly `weight` times.
 */
const smoothWeighted = (endpoints: ReadonlyArray<EndpointState>): Balancer => {
  const n = endpoints.length
  const current = new Float64Array(n)
  return {
    algorithm: "weighted",
    pick(_ctx, eligible) {
      let best = -1
      let total = 0
      for (let i = 0; i < n; i++) {
        const e = endpoints[i]
        if (eligible !== undefined && !eligible(e)) continue
        current[i] += e.weight
        total += e.weight
        if (best === -1 || current[i] > current[best]) best = i
      }
      if (best === -1) return undefined
      current[best] -= total
      return endpoints[best]
    },
    observe: observeLatency
  }
}

const weightedRandom = (endpoints: ReadonlyArray<EndpointState>, random: () => number): Balancer => {
  const n = endpoints.length
  let allWeight = 0
  for (const e of endpoints) allWeight += e.weight
  return {
    algorithm: "random",
    pick(_ctx, eligible) {
      // Two passes over the endpoints instead of collecting the eligible ones,
      // to keep the hot path allocation-free.
      let total = allWeight
      if (eligible !== undefined) {
        total = 0
        for (let i = 0; i < n; i++) if (eligible(endpoints[i])) total += endpoints[i].weight
      }
      if (total <= 0) return undefined
      const target = random() * total
      let acc = 0
      let last: EndpointState | undefined
      for (let i = 0; i < n; i++) {
        const e = endpoints[i]
        if (eligible !== undefined && !eligible(e)) continue
        acc += e.weight
        if (target < acc) return e
        last = e
      }
      // Only reachable through floating-point rounding at the top of the range.
      return last
    },
    observe: observeLatency
  }
}

const activeCost = (e: EndpointState): number => e.active

const ewmaCost = (e: EndpointState): number => (e.ewma || EWMA_DEFAULT_MS) * (e.active + 1)

/**
 * Power of two choices (Mitzenmacher; Envoy's least_request, Finagle/Linkerd's
 * P2C): sampling two endpoints and keeping the cheaper avoids both the herd
 * effect of "always the global minimum" (every proxy instance stampeding the
 * same idle endpoint) and an O(n) scan, while still shunning loaded endpoints:
 * the costliest endpoint is never picked. Ties keep the first sample, which is
 * itself random.
 */
const powerOfTwo = (
  algorithm: "least_request" | "ewma",
  endpoints: ReadonlyArray<EndpointState>,
  random: () => number,
  cost: (e: EndpointState) => number
): Balancer => {
  const n = endpoints.length
  // The k-th eligible endpoint, found without materialising the eligible list.
  const nthEligible = (k: number, eligible: (e: EndpointState) => boolean): EndpointState => {
    for (let i = 0; i < n; i++) {
      const e = endpoints[i]
      if (eligible(e) && k-- === 0) return e
    }
    // Unreachable while `eligible` is pure; the caller counted at least k+1.
    return endpoints[n - 1]
  }
  return {
    algorithm,
    pick(_ctx, eligible) {
      let m = n
      if (eligible !== undefined) {
        m = 0
        for (let i = 0; i < n; i++) if (eligible(endpoints[i])) m++
      }
      if (m === 0) return undefined
      const i = Math.min(Math.floor(random() * m), m - 1)
      if (m === 1) return eligible === undefined ? endpoints[0] : nthEligible(0, eligible)
      // Draw from the m-1 others and shift past i, so the two are distinct.
      let j = Math.min(Math.floor(random() * (m - 1)), m - 2)
      if (j >= i) j++
      const a = eligible === undefined ? endpoints[i] : nthEligible(i, eligible)
      const b = eligible === undefined ? endpoints[j] : nthEligible(j, eligible)
      return cost(a) <= cost(b) ? a : b
    },
    observe: observeLatency
  }
}

/** A ring member: HashRing identifies nodes by `PrimaryKey`, we by `id`. */
class RingNode implements PrimaryKey.PrimaryKey {
  readonly endpoint: EndpointState
  constructor(endpoint: EndpointState) {
    this.endpoint = endpoint
  }
  [PrimaryKey.symbol](): string {
    return this.endpoint.id
  }
}

/**
 * The value of cookie `name` in a `Cookie` header (`a=1; b=2`), or undefined.
 * A hand-rolled scan rather than a full parse: only one cookie is wanted and
 * this runs per request.
 */
const cookieValue = (header: string, name: string): string | undefined => {
  const len = header.length
  let start = 0
  while (start < len) {
    let end = header.indexOf(";", start)
    if (end === -1) end = len
    while (start < end && (header.charCodeAt(start) === 32 || header.charCodeAt(start) === 9)) start++
    const eq = header.indexOf("=", start)
    if (eq !== -1 && eq < end && eq - start === name.length && header.startsWith(name, start)) {
      let valueEnd = end
      while (valueEnd > eq + 1 && (header.charCodeAt(valueEnd - 1) === 32 || header.charCodeAt(valueEnd - 1) === 9)) {
        valueEnd--
      }
      return header.slice(eq + 1, valueEnd)
    }
    start = end + 1
  }
  return undefined
}

/**
 * The hash key for one request. An absent or empty key falls back to the
 * client IP, so clients without the cookie/header still stick somewhere
 * instead of all landing on a single endpoint.
 */
const hashKey = (ctx: PickContext, hashOn: HashOn): string => {
  let key: string | undefined
  switch (hashOn._tag) {
    case "ip":
      return ctx.clientIp
    case "path":
      key = ctx.path
      break
    case "header":
      key = ctx.header(hashOn.name)
      break
    case "cookie": {
      const header = ctx.header("cookie")
      key = header === undefined ? undefined : cookieValue(header, hashOn.name)
      break
    }
  }
  return key === undefined || key === "" ? ctx.clientIp : key
}

/**
 * Consistent hashing on Effect's weighted `HashRing` (128 virtual points per
 * unit of weight): adding or removing one of N endpoints remaps only ~1/N of
 * the keys. An ineligible owner is stepped over by rehashing `key#1`,
 * `key#2`, ... which is deterministic (a key keeps its fallback while the
 * owner is down, and returns home when it recovers) and spreads the owner's
 * keys across all the others; a final linear scan guarantees that any
 * eligible endpoint is found.
 */
const consistentHash = (endpoints: ReadonlyArray<EndpointState>, hashOn: HashOn): Balancer => {
  const ring = HashRing.make<RingNode>()
  for (const e of endpoints) HashRing.add(ring, new RingNode(e), { weight: e.weight })
  const n = endpoints.length
  return {
    algorithm: "consistent_hash",
    pick(ctx, eligible) {
      if (n === 0) return undefined
      const key = hashKey(ctx, hashOn)
      const owner = HashRing.get(ring, key)!.endpoint
      if (eligible === undefined || eligible(owner)) return owner
      for (let attempt = 1; attempt <= MAX_REHASH; attempt++) {
        const e = HashRing.get(ring, `${key}#${attempt}`)!.endpoint
        if (e !== owner && eligible(e)) return e
      }
      // Start the scan at a key-derived offset so that, even here, different
      // keys spread out rather than all landing on the first eligible endpoint.
      const offset = endpoints.indexOf(HashRing.get(ring, `${key}#0`)!.endpoint)
      for (let step = 0; step < n; step++) {
        const e = endpoints[(offset + step) % n]
        if (eligible(e)) return e
      }
      return undefined
    },
    observe: observeLatency
  }
}
