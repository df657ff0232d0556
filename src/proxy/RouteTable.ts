/**
 * Compiles the config into one `ListenerTable` per listener and swaps them atomically on every
 * config change (Traefik-style: build the new handler tree, then swap). A request reads the
 * table once when it starts, so in-flight requests keep the snapshot they began with.
 */
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import * as SubscriptionRef from "effect/SubscriptionRef"
import { compileCidrs } from "../config/Cidr.ts"
import { ConfigSource } from "../config/ConfigSource.ts"
import type { Config, Server } from "../config/Schema.ts"
import { compileHeaderRules } from "./HeaderRules.ts"
import { lookupHeader } from "./RequestHeaders.ts"
import type { CompiledRoute, ListenerTable } from "./ProxyHandler.ts"
import { makeAccessLog, type AccessLog } from "../telemetry/AccessLog.ts"
import { Tracing } from "../telemetry/Tracing.ts"
import type * as Tracer from "effect/Tracer"
import { makeRejections, makeRouteMetrics, makeStoreErrorCounter, makeWebSocketMetrics, noRejections, noRouteMetrics, noWebSocketMetrics, type Rejections, type RouteMetrics, type WebSocketMetrics } from "../telemetry/Metrics.ts"
import type { UpstreamGroup } from "../upstream/UpstreamGroup.ts"
import { Upstreams } from "../upstream/Upstreams.ts"
import { compileRetryPolicy } from "../resilience/RetryPolicy.ts"
import { compilePathRewrite } from "../routing/Rewrite.ts"
import { compileRouter } from "../routing/Router.ts"
import { findShadowedRoutes, formatShadowWarning } from "../routing/Shadowing.ts"
import { CustomMiddlewares } from "../middleware/CustomMiddlewares.ts"
import { Limiters, redisStore } from "../middleware/Limiters.ts"
import * as Clock from "effect/Clock"
import { composeSteps, forwarder } from "../middleware/Middleware.ts"
import { compileChain, type ChainServices } from "../middleware/MiddlewareChain.ts"
import { makeJwksCache, type JwksCache } from "../middleware/JwksCache.ts"
import { Agent } from "../upstream/Undici.ts"

/** Defaults for `servers[].limits`, as nginx and Envoy users expect them. */
/** A WebSocket tunnel with no byte either way for this long is closed (Envoy's stream idle timeout is 5m, nginx's proxy_read_timeout 60s). */
export const WEBSOCKET_IDLE_TIMEOUT_MS = 600_000

export const limitDefaults = {
  max_connections: 10_000,
  max_header_bytes: 16_384,
  max_body_bytes: 10 * 1024 * 1024,
  idle_timeout: 60_000,
  header_timeout: 60_000,
  request_timeout: 300_000,
  h2_max_concurrent_streams: 100,
  h2_max_header_list_bytes: 16_384
} as const

const compileListener = (
  config: Config,
  chain: ChainServices,
  server: Server,
  groups: ReadonlyMap<string, UpstreamGroup>,
  accessLog: ((listener: string) => AccessLog) | undefined,
  metricsFor: (listener: string, route: string) => RouteMetrics,
  tracer: Tracer.Tracer | undefined,
  sampleRatio: number,
  rejections: Rejections,
  webSocketsFor: (listener: string) => WebSocketMetrics,
  context: Context.Context<never>
): ListenerTable => ({
  router: compileRouter(server.routes.map((route) => {
    const steps = compileChain(config, server, route, chain)
    return {
    match: route.match ?? {},
    priority: route.priority,
    value: {
      id: route.id,
      group: groups.get(route.upstream)!,
      rewrite: compilePathRewrite(route.rewrite),
      requestHeaders: compileHeaderRules(route.headers?.request),
      responseHeaders: compileHeaderRules(route.headers?.response),
      timeoutMs: route.timeout,
      webSocketIdleMs: route.websocket?.idle_timeout ?? WEBSOCKET_IDLE_TIMEOUT_MS,
      retry: compileRetryPolicy(route.retry),
      metrics: metricsFor(server.name, route.id),
      pipeline: composeSteps(steps ?? [], forwarder)
    } satisfies CompiledRoute
  }
  })),
  maxBodyBytes: server.limits?.max_body_bytes ?? limitDefaults.max_body_bytes,
  scheme: server.protocol === "https" ? "https" : "http",
  clientCertificates: server.tls?.client_auth !== undefined,
  trustedProxies: server.trusted_proxies === undefined || server.trusted_proxies.length === 0 ? undefined : compileCidrs(server.trusted_proxies),
  accessLog: accessLog?.(server.name),
  tracing: tracer === undefined ? undefined : { tracer, sampleRatio, listener: server.name },
  rejections,
  webSockets: webSocketsFor(server.name),
  context
})

/** Compiles every listener of `config` against the given upstream groups. */
export const compileTables = (
  config: Config,
  groups: ReadonlyMap<string, UpstreamGroup>,
  context: Context.Context<never>,
  tracing: Tracing["Service"] | undefined = undefined,
  chain: ChainServices = defaultChain()
): ReadonlyMap<string, ListenerTable> => {
  let tracer = tracing?.tracer
  const log = config.log ?? {}
  const accessLog = log.access_log === true
    ? (listener: string) => makeAccessLog(log.format ?? "json", process.stdout, listener, lookupHeader)
    : undefined
  const metricsOff = config.telemetry?.metrics?.enabled === false
  const metricsFor = metricsOff ? () => noRouteMetrics : (listener: string, route: string) => makeRouteMetrics(context, listener, route)
  const rejections = metricsOff ? noRejections : makeRejections(context)
  const webSocketsFor = metricsOff ? () => noWebSocketMetrics : (listener: string) => makeWebSocketMetrics(context, listener)
  // OpenTelemetry's default sampler samples everything; so does a tracing section without a ratio.
  const sampleRatio = config.telemetry?.tracing?.sample_ratio ?? 1
  // A reload that removed the endpoint turns tracing off rather than exporting to the old one.
  if (tracing?.fromConfig === true && (config.telemetry?.tracing?.otlp_endpoint ?? null) === null) tracer = undefined
  return new Map(
    config.servers.map((server) => [server.name, compileListener(config, chain, server, groups, accessLog, metricsFor, tracer, sampleRatio, rejections, webSocketsFor, context)])
  )
}

/** Middleware state of its own and no custom middlewares (for compiling outside the Layer). */
const defaultChain = (): ChainServices => {
  const limiters = Effect.runSync(Effect.scoped(Limiters.make))
  return {
  limiters,
  redisStore: redisStore(limiters, () => {}),
  custom: new Map(),
  problem: () => {},
  jwks: (url) => makeJwksCache(url),
  dispatcher: new Agent()
  }
}

export class RouteTable extends Context.Service<RouteTable, {
  /** The table in force for a listener, or undefined when the config no longer has it. */
  readonly current: (listener: string) => ListenerTable | undefined
  /** How many configs have been applied (1 after start); for tests and the admin API. */
  readonly generation: () => number
}>()("fibergate/proxy/RouteTable") {
  /** Uses `Limiters` and `CustomMiddlewares` when provided (Gateway does), else its own memory limiters and none. */
  static readonly layer: Layer.Layer<RouteTable, never, ConfigSource | Upstreams | Tracing> = Layer.effect(
    RouteTable,
    Effect.gen(function*() {
      const source = yield* ConfigSource
      const tracing = yield* Tracing
      const upstreams = yield* Upstreams
      const given = yield* Effect.serviceOption(Limiters)
      const limiters = Option.isSome(given) ? given.value : yield* Limiters.make
      const custom = Option.getOrElse(yield* Effect.serviceOption(CustomMiddlewares), () => new Map())
      const context = yield* Effect.context<never>()
      // One keep-alive agent for forward_auth and JWKS fetches, closed with the table.
      const dispatcher = yield* Effect.acquireRelease(Effect.sync(() => new Agent({ keepAliveTimeout: 30_000 })), (agent) => Effect.promise(() => agent.destroy()))
      const countStoreError = makeStoreErrorCounter(context)
      const runSync = Effect.runSyncWith(context)
      let lastWarning = Number.NEGATIVE_INFINITY
      let unreported = 0
      // One warning per 10 s at most: a Redis outage under load would otherwise log per request.
      const warnStoreError = (message: string) =>
        Effect.flatMap(Clock.currentTimeMillis, (now) => {
          if (now - lastWarning < 10_000) {
            unreported++
            return Effect.void
          }
          const more = unreported > 0 ? ` (${unreported} more since the last warning)` : ""
          lastWarning = now
          unreported = 0
          return Effect.logWarning(`rate limit store (redis): ${message}${more}; on_error decided`)
        })
      const storeOfRedis = redisStore(limiters, (message) => {
        countStoreError()
        runSync(warnStoreError(message))
      })
      const jwksCaches = new Map<string, JwksCache>()
      const jwks = (url: string) => {
        let cache = jwksCaches.get(url)
        if (cache === undefined) jwksCaches.set(url, cache = makeJwksCache(url, dispatcher))
        return cache
      }
      let tables: ReadonlyMap<string, ListenerTable> = new Map()
      let generation = 0
      const applied = yield* Deferred.make<void>()
      const apply = Effect.fnUntraced(function*(config: Config) {
        const groups = yield* upstreams.reconcile(config)
        const unknown: Array<string> = []
        yield* limiters.useRedis(config.redis)
        const chain: ChainServices = {
          limiters,
          redisStore: storeOfRedis,
          custom,
          problem: (where, message) => unknown.push(`${where}: ${message}`),
          jwks,
          dispatcher
        }
        const next = compileTables(config, groups, context, tracing, chain)
        for (const problem of unknown) yield* Effect.logError(`${source.source}: ${problem}`)
        // A route that can never match is valid config (`check` says so too), but worth a warning
        // on start and on every reload; logged before the swap, so it precedes the new generation.
        for (const warning of findShadowedRoutes(config)) yield* Effect.logWarning(formatShadowWarning(source.source, warning))
        tables = next
        generation++
        yield* Deferred.succeed(applied, undefined)
      })
      // `changes` starts with the value in force, so one subscription covers start and reloads
      // with no window in which an update could be missed.
      yield* SubscriptionRef.changes(source.config).pipe(Stream.runForEach(apply), Effect.forkScoped)
      yield* Deferred.await(applied)
      return RouteTable.of({ current: (name) => tables.get(name), generation: () => generation })
    })
  )
}
