/**
 * One `upstreams.<name>` entry at run time: its endpoints (each with an undici keep-alive Pool
 * and live counters) and its balancer. Pools outlive config reloads when their endpoint and
 * pool settings do not change, so a reload keeps warm connections.
 */
import { upstreamTlsOptions, type UpstreamTlsOptions } from "../config/CertificateFiles.ts"
import { createHash } from "node:crypto"
import { isIP } from "node:net"
import type * as Undici from "undici"
import { buildConnector, Pool } from "./Undici.ts"
import type { Upstream } from "../config/Schema.ts"
import { makeBalancer, type Balancer, type HashOn } from "./Balancer.ts"
import { makeEndpointState, type EndpointState } from "./Endpoint.ts"
import { noUpstreamMetrics, type UpstreamMetrics } from "../telemetry/Metrics.ts"
import { compileRetryBudget, type RetryBudget } from "../resilience/RetryBudget.ts"
import { compileOutlierPolicy, type OutlierPolicy, type OutlierState } from "../resilience/Outlier.ts"
import { circuitAdmits, closedCircuit, compileCircuitPolicy, type CircuitPolicy, type CircuitState } from "../resilience/Circuit.ts"

/** An endpoint with its connection pool and outlier counters. */
export interface Endpoint extends EndpointState, OutlierState, CircuitState {
  readonly origin: string
  /** The origin's host and port, for trace attributes. */
  readonly hostname: string
  readonly port: number
  readonly pool: Undici.Pool
  /**
   * The name an https:// endpoint's certificate is checked for: `tls.server_name`, else the
   * URL's host, never the client's Host (undici and node:https would take that by default).
   * Passed on every request, so the pool never reconnects because the Host changed.
   */
  readonly servername: string | undefined
  /** How an https:// endpoint is connected to outside the pool (WebSocket tunnels); its servername set as above. */
  readonly tls: UpstreamTlsOptions | undefined
  /** Identity of the pool settings, to decide on reload whether the pool can be reused. */
  readonly poolKey: string
}

export interface UpstreamGroup {
  readonly name: string
  readonly endpoints: ReadonlyArray<Endpoint>
  readonly balancer: Balancer
  /** The balancer's eligibility filter: healthy endpoints when health checks run, else none. */
  readonly eligible: ((e: EndpointState) => boolean) | undefined
  /** `panic: fail_open`: with no healthy endpoint, balance over all of them instead of 503. */
  readonly failOpen: boolean
  /** Shared by the group's routes; kept across a reload that leaves its settings alone. */
  readonly retryBudget: RetryBudget
  readonly outlier: OutlierPolicy | undefined
  /** Called on the request path when outlier detection ejects an endpoint of this group. */
  readonly onEject: (endpoint: Endpoint, forMs: number) => void
  readonly circuit: CircuitPolicy | undefined
  /** Called on the request path when an endpoint's circuit opens. */
  readonly onCircuitOpen: (endpoint: Endpoint, forMs: number) => void
  readonly metrics: UpstreamMetrics
  /** Whether the endpoints are spoken to in HTTP/2 (`pool.http2`). */
  readonly http2: boolean
  /** The pool's connect timeout, also a WebSocket tunnel's time to get its 101. */
  readonly connectTimeoutMs: number
  /** Requests in flight to this upstream (all endpoints), for the admin API and the in-flight gauge. */
  active: number
}

const isAvailable = (e: EndpointState): boolean => e.healthy && !e.ejected

const availableWithCircuit = (policy: CircuitPolicy) => (e: EndpointState): boolean =>
  e.healthy && !e.ejected && circuitAdmits(policy, e as Endpoint)

/** Defaults as nginx/Envoy users expect them; DESIGN.md §3 documents each key. */
export const poolDefaults = { connections: 128, keep_alive: 60_000, connect_timeout: 2_000 } as const

/** undici's idle-read timeouts, the equivalent of nginx's `proxy_read_timeout` (60s). */
export const READ_TIMEOUT_MS = 60_000

// The TLS options are part of it, files' contents included: a reload after a CA or client
// certificate was rotated on disk gives the endpoints new pools.
const poolKeyOf = (upstream: Upstream, tls: UpstreamTlsOptions | undefined): string => {
  const pool = upstream.pool ?? {}
  const tlsKey = tls === undefined ? "" : createHash("sha256")
    .update(JSON.stringify([tls.servername, tls.rejectUnauthorized]))
    .update(tls.ca ?? "").update("\0").update(tls.cert ?? "").update("\0").update(tls.key ?? "")
    .digest("base64")
  return `${pool.connections ?? poolDefaults.connections}/${pool.keep_alive ?? poolDefaults.keep_alive}/${pool.connect_timeout ?? poolDefaults.connect_timeout}/${pool.http2 === true}/${tlsKey}`
}

/**
 * undici's TLS connector, except that an IP address as the name to check is not sent as SNI
 * (RFC 6066 has no IP names; node:tls warns), the certificate is then checked for the IP.
 */
const connectorFor = (tls: UpstreamTlsOptions, http2: boolean, timeout: number): Undici.buildConnector.connector => {
  const connect = buildConnector({ ...tls, allowH2: http2, timeout })
  return (options, callback) => connect(options.servername != null && isIP(options.servername) !== 0 ? { ...options, servername: undefined } : options, callback)
}

const makePool = (origin: string, upstream: Upstream, tls: UpstreamTlsOptions | undefined): Undici.Pool => {
  const pool = upstream.pool ?? {}
  const http2 = pool.http2 === true
  const connectTimeout = pool.connect_timeout ?? poolDefaults.connect_timeout
  return new Pool(origin, {
    ...(tls !== undefined && origin.startsWith("https:") ? { connect: connectorFor(tls, http2, connectTimeout) } : {}),
    connections: pool.connections ?? poolDefaults.connections,
    keepAliveTimeout: pool.keep_alive ?? poolDefaults.keep_alive,
    keepAliveMaxTimeout: pool.keep_alive ?? poolDefaults.keep_alive,
    connectTimeout,
    headersTimeout: READ_TIMEOUT_MS,
    bodyTimeout: READ_TIMEOUT_MS,
    pipelining: 1,
    // undici offers h2 over ALPN unless told not to; HTTP/1.1 stays the default, as in nginx and Envoy.
    allowH2: http2,
    ...(http2 && origin.startsWith("http:") ? { useH2c: true } : {})
  })
}

export const parseHashOn = (text: string | undefined): HashOn | undefined => {
  if (text === undefined) return undefined
  if (text === "ip" || text === "path") return { _tag: text }
  const colon = text.indexOf(":")
  const kind = text.slice(0, colon)
  const name = text.slice(colon + 1)
  return kind === "header" ? { _tag: "header", name: name.toLowerCase() } : { _tag: "cookie", name }
}

/**
 * Builds a group for `upstream`, reusing endpoints of `previous` whose origin and pool settings
 * are unchanged (they keep their pool and counters). Returns the pools no longer used, for the
 * caller to close once in-flight requests on them are done.
 */
export const buildUpstreamGroup = (
  name: string,
  upstream: Upstream,
  previous: UpstreamGroup | undefined,
  onEject: (endpoint: Endpoint, forMs: number) => void = () => {},
  onCircuitOpen: (endpoint: Endpoint, forMs: number) => void = () => {},
  metrics: UpstreamMetrics = noUpstreamMetrics
): { readonly group: UpstreamGroup; readonly retired: ReadonlyArray<Undici.Pool> } => {
  const tls = upstream.endpoints.some((e) => e.url.startsWith("https:")) ? upstreamTlsOptions(upstream.tls) : undefined
  const poolKey = poolKeyOf(upstream, tls)
  const circuit = compileCircuitPolicy(upstream.circuit_breaker)
  const reusable = new Map<string, Endpoint>()
  const retiredPools: Array<Undici.Pool> = []
  for (const e of previous?.endpoints ?? []) reusable.set(e.origin, e)
  const endpoints = upstream.endpoints.map((config): Endpoint => {
    const url = new URL(config.url)
    const origin = url.origin
    const weight = config.weight ?? 1
    const old = reusable.get(origin)
    if (old !== undefined && old.poolKey === poolKey) {
      reusable.delete(origin)
      if (old.weight === weight) return old
      // Requests and half-open probes in flight started on `old` and end on it (the proxy counts
      // them down there), so the copy starts with none: copied, they would stay counted for ever.
      return { ...old, ...makeEndpointState(origin, weight), active: 0, circuitProbes: 0, ewma: old.ewma, healthy: old.healthy, ejected: old.ejected, pool: old.pool }
    }
    // New pool settings mean a new pool, but the endpoint's health is still what checks found.
    if (old !== undefined) reusable.delete(origin)
    // `tls` exists whenever an endpoint is https://.
    const secure = url.protocol === "https:" ? tls : undefined
    const servername = secure === undefined ? undefined : secure.servername ?? url.hostname.replace(/^\[|\]$/g, "")
    const fresh: Endpoint = {
      ...makeEndpointState(origin, weight),
      healthy: old?.healthy ?? true,
      ejected: old?.ejected ?? false,
      consecutiveFailures: old?.consecutiveFailures ?? 0,
      ejections: old?.ejections ?? 0,
      ejectionId: old?.ejectionId ?? 0,
      ...(old === undefined ? closedCircuit() : {
        circuit: old.circuit,
        circuitFailures: old.circuitFailures,
        circuitOpens: old.circuitOpens,
        circuitProbes: 0, // probes in flight end on `old`, as above
        circuitPeriod: old.circuitPeriod,
        circuitOpenId: old.circuitOpenId
      }),
      origin,
      hostname: url.hostname,
      port: url.port === "" ? (url.protocol === "https:" ? 443 : 80) : Number(url.port),
      pool: makePool(origin, upstream, tls),
      servername,
      tls: secure === undefined ? undefined : { ...secure, servername: isIP(servername!) === 0 ? servername : "" },
      poolKey
    }
    if (old !== undefined) retiredPools.push(old.pool)
    return fresh
  })
  // Without active checks (or outlier detection) nothing would ever bring an endpoint back.
  for (const e of endpoints) {
    if (upstream.health_check === undefined) e.healthy = true
    if (upstream.outlier === undefined) e.ejected = false
    if (circuit === undefined) Object.assign(e, closedCircuit())
  }
  const balancer = makeBalancer({
    algorithm: upstream.balance ?? "round_robin",
    endpoints,
    hashOn: parseHashOn(upstream.hash_on)
  })
  return {
    group: {
      name,
      endpoints,
      balancer,
      eligible: circuit !== undefined
        ? availableWithCircuit(circuit)
        : upstream.health_check === undefined && upstream.outlier === undefined
        ? undefined
        : isAvailable,
      failOpen: upstream.panic === "fail_open",
      retryBudget: compileRetryBudget(upstream.retry_budget, previous?.retryBudget),
      outlier: compileOutlierPolicy(upstream.outlier),
      onEject,
      circuit,
      onCircuitOpen,
      metrics,
      http2: upstream.pool?.http2 === true,
      connectTimeoutMs: upstream.pool?.connect_timeout ?? poolDefaults.connect_timeout,
      active: 0
    },
    retired: [...retiredPools, ...[...reusable.values()].map((e) => e.pool)]
  }
}
