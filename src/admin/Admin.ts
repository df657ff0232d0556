/**
 * The admin listener (`admin.listen`): `GET /health` (the process is up), `GET /ready`
 * (every listener is bound), `GET /config` (the running config, encoded back as the file
 * would write it), `GET /upstreams` (each endpoint's health, in-flight requests and latency). Not on the request path, so it favours clarity over speed.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import * as SubscriptionRef from "effect/SubscriptionRef"
import { createServer, type IncomingMessage, type ServerResponse } from "node:http"
import { ConfigSource } from "../config/ConfigSource.ts"
import { Config, parseListen } from "../config/Schema.ts"
import { RouteTable } from "../routing/RouteTable.ts"
import { Upstreams } from "../upstream/Upstreams.ts"
import { Readiness } from "../listener/Readiness.ts"
import { listenScoped, type BoundAddress, type ListenError } from "../listener/Listen.ts"

const encodeConfig = Schema.encodeSync(Config)

const json = (res: ServerResponse, status: number, body: unknown) => {
  const text = JSON.stringify(body, null, 2) + "\n"
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text), "cache-control": "no-store" })
  res.end(text)
}

export class Admin extends Context.Service<Admin, {
  /** Where the admin API is bound; undefined when `admin` is not configured. */
  readonly address: BoundAddress | undefined
}>()("fibergate/admin/Admin") {
  /** Binds the admin API; `/ready` reflects the `Readiness` the listeners maintain. */
  static readonly layer: Layer.Layer<Admin, ListenError, ConfigSource | RouteTable | Upstreams | Readiness> = Layer.effect(
    Admin,
    Effect.gen(function*() {
      const source = yield* ConfigSource
      const routes = yield* RouteTable
      const upstreams = yield* Upstreams
      const initial = yield* SubscriptionRef.get(source.config)
      if (initial.admin === undefined) return Admin.of({ address: undefined })
      const readiness = yield* Readiness
      const handle = (req: IncomingMessage, res: ServerResponse) => {
        const path = (req.url ?? "/").split("?")[0]
        if (req.method !== "GET" && req.method !== "HEAD") return json(res, 405, { error: "MethodNotAllowed" })
        switch (path) {
          case "/health":
            return json(res, 200, { status: "ok" })
          case "/ready":
            return json(res, readiness.isReady() ? 200 : 503, { ready: readiness.isReady(), generation: routes.generation() })
          case "/upstreams":
            return json(
              res,
              200,
              Object.fromEntries(
                [...upstreams.current()].map(([name, group]) => [
                  name,
                  group.endpoints.map((e) => ({ url: e.origin, weight: e.weight, healthy: e.healthy, active: e.active, ewma_ms: e.ewma }))
                ])
              )
            )
          case "/config":
            return json(res, 200, encodeConfig(Effect.runSync(SubscriptionRef.get(source.config))))
          default:
            return json(res, 404, { error: "RouteNotFound", message: "Admin endpoints: /health, /ready, /config, /upstreams" })
        }
      }
      const server = createServer(handle)
      const address = yield* listenScoped("admin", server, parseListen(initial.admin.listen)!, 1000)
      yield* Effect.logInfo(`admin API on http://${address.host}:${address.port}`)
      return Admin.of({ address })
    })
  )
}
