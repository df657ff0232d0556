/**
 * One node:http server per `servers[]` entry, each bound for the life of the layer's scope.
 * The request handler reads the listener's current table from the RouteTable per request, so
 * routes, upstreams and rewrites follow reloads without rebinding.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as SubscriptionRef from "effect/SubscriptionRef"
import { createServer } from "node:http"
import { ConfigSource } from "../config/ConfigSource.ts"
import { parseListen, type Server } from "../config/Schema.ts"
import { makeRequestHandler, type ListenerTable } from "../proxy/ProxyHandler.ts"
import { compileRouter } from "../routing/Router.ts"
import { limitDefaults, RouteTable } from "../routing/RouteTable.ts"
import { onClientError, onConnect } from "./ClientErrors.ts"
import { listenScoped, type BoundAddress, type ListenError } from "./Listen.ts"
import { Readiness } from "./Readiness.ts"
import type { DrainState } from "../proxy/Exchange.ts"

export const DEFAULT_DRAIN_TIMEOUT_MS = 30_000

// A listener removed from the config by a reload answers 404 until it is unbound.
const emptyTable: ListenerTable = { router: compileRouter([]), maxBodyBytes: 0, accessLog: undefined }

export class Listeners extends Context.Service<Listeners, {
  /** Where each listener is bound, by server name (useful with port 0). */
  readonly addresses: ReadonlyMap<string, BoundAddress>
}>()("fibergate/listener/Listeners") {
  static readonly layer: Layer.Layer<Listeners, ListenError, ConfigSource | RouteTable | Readiness> = Layer.effect(
    Listeners,
    Effect.gen(function*() {
      const config = yield* SubscriptionRef.get((yield* ConfigSource).config)
      const routes = yield* RouteTable
      const drainTimeout = config.shutdown?.drain_timeout ?? DEFAULT_DRAIN_TIMEOUT_MS
      const readiness = yield* Readiness
      const drain: DrainState = { draining: false }
      const bind = (server: Server) => {
        const limits = server.limits ?? {}
        const http = createServer({
          maxHeaderSize: limits.max_header_bytes ?? limitDefaults.max_header_bytes,
          insecureHTTPParser: false,
          requireHostHeader: false, // checked by the handler, which answers with the JSON error body
          keepAliveTimeout: limits.idle_timeout ?? limitDefaults.idle_timeout,
          headersTimeout: 60_000,
          requestTimeout: 300_000
        })
        http.maxConnections = limits.max_connections ?? limitDefaults.max_connections
        const name = server.name
        http.on("request", makeRequestHandler(() => routes.current(name) ?? emptyTable, drain))
        http.on("clientError", onClientError)
        http.on("connect", onConnect)
        const at = parseListen(server.listen)!
        return listenScoped(name, http, at, drainTimeout).pipe(Effect.map((address) => [name, address] as const))
      }
      const bound = yield* Effect.forEach(config.servers, bind, { concurrency: "unbounded" })
      for (const [name, address] of bound) yield* Effect.logInfo(`listener ${name} on http://${address.host}:${address.port}`)
      readiness.set(true)
      // Registered after the listeners, so it runs first when the scope closes: readiness turns
      // false and responses still in flight close their connections, then the servers drain.
      yield* Effect.addFinalizer(() =>
        Effect.sync(() => {
          readiness.set(false)
          drain.draining = true
        })
      )
      return Listeners.of({ addresses: new Map(bound) })
    })
  )
}

