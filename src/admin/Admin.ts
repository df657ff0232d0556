/**
 * The admin listener (`admin.listen`): `GET /health` (the process is up), `GET /ready`
 * (every listener is bound), `GET /config` (the running config, encoded back as the file
 * would write it), `GET /upstreams` (each endpoint's health, in-flight requests and latency),
 * `PUT /config` (a new config as JSON, applied only if it validates) and `POST /reload`
 * (re-read the config source). Bind it to loopback: it can change the running config. Not on the request path, so it favours clarity over speed.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import * as SubscriptionRef from "effect/SubscriptionRef"
import { createServer, type IncomingMessage, type ServerResponse } from "node:http"
import type { ConfigError } from "../config/ConfigError.ts"
import { ConfigSource, publishConfig } from "../config/ConfigSource.ts"
import { Config, parseListen } from "../config/Schema.ts"
import { RouteTable } from "../routing/RouteTable.ts"
import { Upstreams } from "../upstream/Upstreams.ts"
import { Readiness } from "../listener/Readiness.ts"
import { scrapeMetrics } from "../telemetry/Metrics.ts"
import { listenScoped, type BoundAddress, type ListenError } from "../listener/Listen.ts"

const encodeConfig = Schema.encodeSync(Config)
const MAX_CONFIG_BYTES = 1024 * 1024

/** Reads a JSON request body of at most `limit` bytes. */
const readJsonBody = (req: IncomingMessage, limit: number): Promise<unknown> =>
  new Promise((resolve, reject) => {
    const chunks: Array<Buffer> = []
    let size = 0
    req.on("data", (chunk: Buffer) => {
      size += chunk.length
      if (size > limit) {
        reject(new Error(`The config is larger than ${limit} bytes`))
        req.destroy()
      } else chunks.push(chunk)
    })
    req.on("end", () => {
      try {
        resolve(JSON.parse(Buffer.concat(chunks).toString("utf8")))
      } catch (e) {
        reject(new Error(`The body is not JSON: ${(e as Error).message}`))
      }
    })
    req.on("error", reject)
  })

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
      // The same registry the request path records into (Effect's default MetricRegistry).
      const context = yield* Effect.context<never>()
      // Config changes through the admin API run as Effects; their outcome becomes the response.
      const answerConfigChange = (res: ServerResponse, change: Effect.Effect<unknown, ConfigError>) =>
        Effect.runPromise(
          change.pipe(
            Effect.map(() => json(res, 200, { applied: true, generation: routes.generation() })),
            Effect.catch((error) =>
              Effect.sync(() => json(res, 400, { error: "ConfigError", problems: error.problems, message: error.message }))
            )
          )
        )
      const handle = (req: IncomingMessage, res: ServerResponse) => {
        const path = (req.url ?? "/").split("?")[0]
        if (req.method === "POST" && path === "/reload") return answerConfigChange(res, source.reload)
        if (req.method === "PUT" && path === "/config") {
          return readJsonBody(req, MAX_CONFIG_BYTES).then(
            (value) => answerConfigChange(res, publishConfig(source, value, "admin PUT /config")),
            (error: Error) => json(res, 400, { error: "BadRequest", message: error.message })
          )
        }
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
          case "/metrics":
            return scrapeMetrics(context, upstreams.current().values()).then((text) => {
              res.writeHead(200, { "content-type": "text/plain; version=0.0.4", "content-length": Buffer.byteLength(text), "cache-control": "no-store" })
              res.end(text)
            })
          default:
            return json(res, 404, {
              error: "RouteNotFound",
              message: "Admin endpoints: GET /health, /ready, /config, /upstreams, /metrics; PUT /config; POST /reload"
            })
        }
      }
      const server = createServer(handle)
      const address = yield* listenScoped("admin", server, parseListen(initial.admin.listen)!, 1000)
      yield* Effect.logInfo(`admin API on http://${address.host}:${address.port}`)
      return Admin.of({ address })
    })
  )
}
