/**
 * One node:http server per `servers[]` entry, kept in line with the config on every change and
 * keyed by server name: a new server is bound, a removed one stops accepting and drains (as at
 * shutdown), one whose address or parser settings changed is re-bound, and the others are left
 * alone. The request handler reads the listener's current table from the RouteTable per
 * request, so routes, upstreams and rewrites follow reloads without rebinding.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberSet from "effect/FiberSet"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Result from "effect/Result"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as SubscriptionRef from "effect/SubscriptionRef"
import type { Server as HttpServer } from "node:http"
import { nodeHttp, nodeHttps } from "../config/NodeModules.ts"
import type { Server as TlsServer } from "node:tls"
import type { Duplex } from "node:stream"
import { ConfigSource } from "../config/ConfigSource.ts"
import { parseListen, type Config, type Server } from "../config/Schema.ts"
import type { DrainState } from "../proxy/Exchange.ts"
import { acceptWebSocketUpgrade } from "../proxy/ClientConnection.ts"
import { makeHttp2RequestHandler, makeRequestHandler, makeUpgradeHandler, type ListenerTable } from "../proxy/ProxyHandler.ts"
import { DEFAULT_ALPN } from "../config/TlsSchema.ts"
import { makeHttp2Listener, routeByAlpn, routeByPreface, type Http2Listener } from "./Http2Listener.ts"
import { compileRouter } from "../routing/Router.ts"
import { limitDefaults, RouteTable } from "../proxy/RouteTable.ts"
import { listenerBindFailures, trackClientConnections } from "../telemetry/Metrics.ts"
import { onClientError, onConnect } from "./ClientErrors.ts"
import { Certificates } from "./Certificates.ts"
import { trackHandshakeFailures } from "./HandshakeFailures.ts"
import { ListenError, listenScoped, type BoundAddress } from "./Listen.ts"
import { Readiness } from "./Readiness.ts"

export const DEFAULT_DRAIN_TIMEOUT_MS = 30_000

// A request that reaches a listener after a reload removed it (on a connection opened before)
// finds no route.
const emptyTable: ListenerTable = { router: compileRouter([]), maxBodyBytes: 0, accessLog: undefined }

type ListenAt = { readonly host: string; readonly port: number }

/** A bound listener. */
interface Live {
  readonly name: string
  /** The address as configured (port 0: any). */
  readonly at: ListenAt
  /** The address as bound. */
  readonly address: BoundAddress
  readonly scheme: string
  /** The settings a running node:http server cannot change; a change re-binds. */
  readonly fixed: string
  readonly http: HttpServer
  /** The HTTP/2 side of an https listener offering h2, or of an h2c one. */
  readonly http2: Http2Listener | undefined
  readonly drain: DrainState
  /** Closing it stops accepting, drains, and drops the listener's metrics. */
  readonly scope: Scope.Closeable
}

// Certificates are not among them: they swap into the running server (see Certificates.ts).
const fixedSettings = (server: Server): string =>
  JSON.stringify([
    server.protocol ?? "http",
    server.limits?.max_header_bytes ?? limitDefaults.max_header_bytes,
    server.tls?.min_version, server.tls?.alpn, server.tls?.client_auth
  ])

/**
 * How often node:http looks for connections past `header_timeout` / `request_timeout` (its
 * default, 30 s, would let a 1 s header timeout fire up to 31 s late). A fixed interval, so
 * that a reload can change the timeouts in place; scanning the connection list costs microseconds.
 */
const TIMEOUT_CHECK_INTERVAL_MS = 250

/** The timeouts as node:http takes them: a head cannot be given longer than the whole request. */
const timeouts = (server: Server) => {
  const request = server.limits?.request_timeout ?? limitDefaults.request_timeout
  const header = server.limits?.header_timeout ?? limitDefaults.header_timeout
  // 0 turns a timeout off; an unlimited request must not turn the head's limit off too.
  return { header: request === 0 ? header : Math.min(header, request), request }
}

/** Limits node:http reads per connection or per response, so a running server takes them as they change. */
const applyLimits = (http: HttpServer, server: Server): void => {
  http.maxConnections = server.limits?.max_connections ?? limitDefaults.max_connections
  http.keepAliveTimeout = server.limits?.idle_timeout ?? limitDefaults.idle_timeout
  // node:http waits 1 s past keepAliveTimeout by default; the configured idle timeout is the one.
  http.keepAliveTimeoutBuffer = 0
  const { header, request } = timeouts(server)
  http.headersTimeout = header
  http.requestTimeout = request
}

/** Whether `live` already listens where `at` asks; port 0 takes whichever port it has. */
const listensAt = (live: Live, at: ListenAt): boolean =>
  live.at.host === at.host && (at.port === 0 || at.port === live.address.port)

/** How long a TLS handshake may take when the head's own timeout is off (node:tls's default). */
const HANDSHAKE_TIMEOUT_MS = 120_000

/**
 * From now on responses close their connections, HTTP/2 connections get a GOAWAY, and WebSocket
 * tunnels are told to go away (1001).
 */
const startDraining = (live: Live): void => {
  live.drain.draining = true
  live.http2?.goAway()
  for (const tunnel of live.drain.tunnels ?? []) tunnel.goAway()
}

/** Whether the listener speaks HTTP/2: h2c always, https unless its ALPN leaves h2 out. */
const speaksHttp2 = (server: Server): boolean =>
  server.protocol === "h2c" || (server.protocol === "https" && (server.tls?.alpn ?? DEFAULT_ALPN).includes("h2"))

const url = (address: BoundAddress, scheme = "http") => `${scheme}://${address.host}:${address.port}`

export class Listeners extends Context.Service<Listeners, {
  /**
   * Where each listener is bound now, by server name (useful with port 0). A live view: it
   * follows reloads that add, remove or re-bind listeners.
   */
  readonly addresses: ReadonlyMap<string, BoundAddress>
}>()("fibergate/listener/Listeners") {
  static readonly layer: Layer.Layer<Listeners, ListenError, ConfigSource | RouteTable | Readiness | Certificates> = Layer.effect(
    Listeners,
    Effect.gen(function*() {
      const source = yield* ConfigSource
      const config = yield* SubscriptionRef.get(source.config)
      const routes = yield* RouteTable
      const readiness = yield* Readiness
      const certificates = yield* Certificates
      const context = yield* Effect.context<never>()
      let drainTimeout = config.shutdown?.drain_timeout ?? DEFAULT_DRAIN_TIMEOUT_MS
      const lives = new Map<string, Live>()
      const addresses = new Map<string, BoundAddress>()
      // Removed and replaced listeners drain in fibers owned by this layer.
      const retiring = yield* FiberSet.make()

      /**
       * The listener's server; an https one is also returned as the TLS server it is, and the
       * HTTP/2 side it hands connections to when it has one.
       */
      const makeServer = (server: Server, drain: DrainState): { readonly http: HttpServer; readonly tls?: TlsServer; readonly http2?: Http2Listener } | undefined => {
        const options = {
          // node:http refuses a head once its counted bytes (target, names, values) reach
          // maxHeaderSize; max_header_bytes is the largest head that passes.
          maxHeaderSize: (server.limits?.max_header_bytes ?? limitDefaults.max_header_bytes) + 1,
          insecureHTTPParser: false,
          requireHostHeader: false, // checked by the handler, which answers with the JSON error body
          connectionsCheckingInterval: TIMEOUT_CHECK_INTERVAL_MS,
          shouldUpgradeCallback: acceptWebSocketUpgrade
        }
        let http: HttpServer
        let secure: TlsServer | undefined
        if (server.protocol === "https") {
          const tls = certificates.serverOptions(server.name)
          if (tls === undefined) return undefined
          // The handshake is part of the head's time, as nginx counts it in client_header_timeout.
          const header = timeouts(server).header
          const https = nodeHttps().createServer({ ...options, ...tls, handshakeTimeout: header > 0 ? header : HANDSHAKE_TIMEOUT_MS })
          secure = https
          // An https.Server is a node:http server over TLS: the same request, drain and limit API.
          http = https as unknown as HttpServer
        } else http = nodeHttp.createServer(options)
        // The timeouts and limits a running server can change, set as a reload sets them
        // (node:http reads them per connection or per check).
        applyLimits(http, server)
        const name = server.name
        let http2: Http2Listener | undefined
        if (speaksHttp2(server)) {
          http2 = makeHttp2Listener(server, makeHttp2RequestHandler(() => routes.current(name) ?? emptyTable, drain), context)
          // Before the handshake tracking: its refusals must come first (see HandshakeFailures.ts).
          if (secure !== undefined) routeByAlpn(secure, http2)
          else routeByPreface(http, http2, () => timeouts(server).header)
        }
        if (secure !== undefined) trackHandshakeFailures(secure, server.name, context, server.tls?.client_auth?.mode === "optional")
        http.on("request", makeRequestHandler(() => routes.current(name) ?? emptyTable, drain))
        http.on("upgrade", makeUpgradeHandler(() => routes.current(name) ?? emptyTable, drain))
        http.on("clientError", (error: Error, socket: Duplex) => onClientError(error, socket, routes.current(name)?.rejections))
        http.on("connect", (req: unknown, socket: Duplex) => onConnect(req, socket, routes.current(name)?.rejections))
        return { http, ...(secure === undefined ? {} : { tls: secure }), ...(http2 === undefined ? {} : { http2 }) }
      }

      const bind = Effect.fnUntraced(function*(server: Server, at: ListenAt) {
        const drain: DrainState = { draining: false, tunnels: new Set() }
        const made = makeServer(server, drain)
        if (made === undefined) {
          return yield* new ListenError({ listener: server.name, address: server.listen, message: "its certificates did not load (see the error above)" })
        }
        const scope = yield* Scope.make()
        const { http, http2, tls } = made
        if (tls !== undefined) yield* certificates.attach(server.name, tls).pipe(Scope.provide(scope))
        if (http2 !== undefined) yield* Scope.addFinalizer(scope, Effect.sync(() => http2.close()))
        // Counted from the moment the socket listens (before any connection is accepted), and
        // dropped once the drain is over.
        let connections: Metric.Registration | undefined
        yield* Scope.addFinalizer(scope, Effect.sync(() => connections?.remove()))
        const address = yield* listenScoped(server.name, http, at, () => drainTimeout, () => {
          connections = trackClientConnections(http, server.name, context)
        }, http2?.destroyAll).pipe(Scope.provide(scope), Effect.onError(() => Scope.close(scope, Exit.void)))
        return { name: server.name, at, address, scheme: server.protocol ?? "http", fixed: fixedSettings(server), http, http2, drain, scope } satisfies Live
      })

      const keep = (live: Live) => {
        lives.set(live.name, live)
        addresses.set(live.name, live.address)
      }
      // The listening socket closes before `FiberSet.run` returns (the fiber starts at once and
      // runs up to the drain's wait), so its address is free for what the reconcile binds next.
      // A retired listener is always the one in force under its name (a move binds the new one
      // first but keeps it only after this).
      const retire = (live: Live) => {
        startDraining(live)
        lives.delete(live.name)
        addresses.delete(live.name)
        return FiberSet.run(retiring, Scope.close(live.scope, Exit.void))
      }
      const reportBindFailure = (error: ListenError, outcome: string) =>
        Effect.logError(`listener ${error.listener} cannot listen on ${error.address}: ${error.message}; ${outcome}`).pipe(
          Effect.andThen(Metric.update(Metric.withAttributes(listenerBindFailures, { listener: error.listener }), 1))
        )

      const reconcile = Effect.fnUntraced(function*(next: Config) {
        drainTimeout = next.shutdown?.drain_timeout ?? DEFAULT_DRAIN_TIMEOUT_MS
        // New certificates first: a listener re-bound below is made with them.
        yield* certificates.apply(next)
        const wanted = new Set(next.servers.map((s) => s.name))
        // Removed listeners go first, so that their addresses are free for the others.
        for (const live of [...lives.values()]) {
          if (wanted.has(live.name)) continue
          yield* retire(live)
          yield* Effect.logInfo(`listener ${live.name} removed: stopped accepting on ${url(live.address, live.scheme)}, draining`)
        }
        for (const server of next.servers) {
          const at = parseListen(server.listen)!
          const live = lives.get(server.name)
          if (live === undefined) {
            const bound = yield* Effect.result(bind(server, at))
            if (Result.isFailure(bound)) yield* reportBindFailure(bound.failure, "the listener is not bound; the next config change retries")
            else {
              keep(bound.success)
              yield* Effect.logInfo(`listener ${server.name} on ${url(bound.success.address, bound.success.scheme)}`)
            }
            continue
          }
          applyLimits(live.http, server)
          live.http2?.apply(server)
          const moved = !listensAt(live, at)
          if (!moved && live.fixed === fixedSettings(server)) continue
          if (moved) {
            // The new address is bound first: if that fails, the listener keeps serving where it is.
            const bound = yield* Effect.result(bind(server, at))
            if (Result.isFailure(bound)) {
              yield* reportBindFailure(bound.failure, `it keeps listening on ${url(live.address, live.scheme)}; the next config change retries`)
              continue
            }
            yield* retire(live)
            keep(bound.success)
            yield* Effect.logInfo(`listener ${server.name} moved from ${url(live.address, live.scheme)} to ${url(bound.success.address, bound.success.scheme)}`)
          } else {
            // Same address, settings only a new server can take: the old server stops accepting
            // (and drains what it has), then the new one binds the address it freed.
            yield* retire(live)
            const bound = yield* Effect.result(bind(server, { host: at.host, port: live.address.port }))
            if (Result.isFailure(bound)) {
              yield* reportBindFailure(bound.failure, "the listener is not bound; the next config change retries")
            } else {
              keep(bound.success)
              yield* Effect.logInfo(`listener ${server.name} re-bound on ${url(bound.success.address, bound.success.scheme)} with new settings`)
            }
          }
        }
      })

      // Shutdown: readiness turns false and responses still in flight close their connections,
      // then every listener (and any still draining after a reload) drains, all at once.
      // Registered before the first bind, so a failed start unbinds what it bound.
      yield* Effect.addFinalizer(() =>
        Effect.gen(function*() {
          readiness.set(false)
          for (const live of lives.values()) startDraining(live)
          const all = [...lives.values()]
          lives.clear()
          addresses.clear()
          yield* Effect.forEach(all, (live) => Scope.close(live.scope, Exit.void), { concurrency: "unbounded", discard: true })
          yield* FiberSet.awaitEmpty(retiring)
        })
      )

      yield* certificates.apply(config)
      for (const server of config.servers) {
        const live = yield* bind(server, parseListen(server.listen)!)
        keep(live)
        yield* Effect.logInfo(`listener ${server.name} on ${url(live.address, live.scheme)}`)
      }
      readiness.set(true)
      // `changes` starts with the config in force, which finds nothing to do unless a reload
      // came in meanwhile. A reconcile is never cut halfway: the shutdown waits for it (this
      // fiber is interrupted before the finalizer above runs).
      yield* SubscriptionRef.changes(source.config).pipe(
        Stream.runForEach((next) => Effect.uninterruptible(reconcile(next))),
        Effect.forkScoped
      )
      return Listeners.of({ addresses })
    })
  )
}
