/**
 * fibergate as a library: the gateway Layer, the config contract and the services it is
 * made of, so an Effect program can run fibergate inside itself, swap the config source, or
 * read its state.
 *
 * @example
 * import { Effect, Layer } from "effect"
 * import { Gateway } from "fibergate"
 *
 * Layer.launch(Gateway.layer({
 *   servers: [{ name: "web", listen: "127.0.0.1:8080", routes: [{ id: "all", upstream: "app" }] }],
 *   upstreams: { app: { endpoints: [{ url: "http://127.0.0.1:3000" }] } }
 * })).pipe(Effect.runFork)
 */
export * as Gateway from "./gateway/Gateway.ts"
export { Config, type ConfigEncoded } from "./config/Schema.ts"
export { ConfigError, type ConfigProblem } from "./config/ConfigError.ts"
export { ConfigSource } from "./config/ConfigSource.ts"
export { decodeConfig, loadConfigFile, parseConfigText } from "./config/ConfigLoader.ts"
export { Upstreams } from "./upstream/Upstreams.ts"
export { makeBalancer, type Balancer, type BalanceAlgorithm, type HashOn } from "./upstream/Balancer.ts"
export { HealthChecks, runHealthCheck, type ProbeFactory } from "./upstream/HealthChecks.ts"
export { initialHealth, observeProbe, type HealthState } from "./resilience/HealthState.ts"
export { RouteTable } from "./proxy/RouteTable.ts"
export { compileRouter, type Router, type RouteRequest } from "./routing/Router.ts"
export { Listeners } from "./listener/Listeners.ts"
export { Certificates, type CertificateView } from "./listener/Certificates.ts"
export { Readiness } from "./listener/Readiness.ts"
export { ListenError, type BoundAddress } from "./listener/Listen.ts"
export { Admin } from "./admin/Admin.ts"
export { Tracing, parseTraceParent, type TraceParent } from "./telemetry/Tracing.ts"
export {
  BadRequest,
  CircuitOpen,
  ConcurrencyLimited,
  Forbidden,
  RateLimited,
  RateLimiterUnavailable,
  Unauthorized,
  errorResponse,
  HeadersTooLarge,
  InternalError,
  MethodNotAllowed,
  NoHealthyUpstream,
  PayloadTooLarge,
  RouteNotFound,
  UpstreamConnectError,
  UpstreamBodyTimeout,
  UpstreamConnectTimeout,
  UpstreamReset,
  UpstreamResponseTimeout,
  UpstreamTimeout,
  type GatewayError
} from "./middleware/GatewayError.ts"
export type { Middleware, Reply, RequestView } from "./middleware/Middleware.ts"
export { CustomMiddlewares } from "./middleware/CustomMiddlewares.ts"
export { Limiters } from "./middleware/Limiters.ts"
