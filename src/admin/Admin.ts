/**
 * The admin API on its own listener (`admin.listen`; bind it to loopback: it can change the
 * running config). Never on a public listener. Not on the request path, so it favours clarity
 * over speed: each request is a small Effect whose failures are tagged errors mapped to replies
 * in one place (`AdminReply.ts`).
 *
 * | Method      | Path               | Answer                                                                    |
 * | ----------- | ------------------ | ------------------------------------------------------------------------- |
 * | GET         | `/health`          | 200 `{status: "ok"}` while the process is up                              |
 * | GET         | `/ready`           | 200 when every listener is bound, 503 before and once a drain starts      |
 * | GET         | `/config`          | the config in force, as the file would write it, secrets `<redacted>`     |
 * | PUT         | `/config`          | apply a JSON config: 200 with a summary and what changed, or 400 with every problem; 413 over 1 MiB |
 * | POST        | `/config/validate` | the same checks without applying: 200 `{valid: true, …}` or 400          |
 * | POST        | `/reload`          | re-read the config source (the file), answered as `PUT /config`          |
 * | GET         | `/routes`          | each listener's routes in config order                                    |
 * | GET         | `/upstreams`       | each upstream's endpoints: health, ejection, circuit, in flight, latency  |
 * | GET         | `/stats`           | uptime, config, memory, listeners, upstream counts, request totals        |
 * | GET         | `/metrics`         | Prometheus text                                                           |
 *
 * GET endpoints answer HEAD too. An unknown path is 404 listing the endpoints; a known path with
 * another method is 405 with `Allow`.
 *
 * With `admin.token` set, every request needs `Authorization: Bearer <token>` (401 with
 * `WWW-Authenticate: Bearer` otherwise, before the path is even looked up), except `/health`
 * and `/ready`: orchestrator probes (Kubernetes, load balancers) carry no credentials, and
 * those two reveal nothing but up/ready. The token is read from the config in force at each
 * request, so a reload that changes it takes effect at once; a config without `admin.token`
 * turns the check off.
 */
import { Certificates } from "../listener/Certificates.ts"
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as FiberSet from "effect/FiberSet"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Result from "effect/Result"
import * as Schema from "effect/Schema"
import * as SubscriptionRef from "effect/SubscriptionRef"
import type { IncomingMessage, ServerResponse } from "node:http"
import { nodeHttp } from "../config/NodeModules.ts"
import { ConfigError, formatPath } from "../config/ConfigError.ts"
import { decodeConfig } from "../config/ConfigLoader.ts"
import { ConfigSource, publishConfig } from "../config/ConfigSource.ts"
import { Config, parseListen } from "../config/Schema.ts"
import { RouteTable } from "../proxy/RouteTable.ts"
import { Upstreams } from "../upstream/Upstreams.ts"
import { Readiness } from "../listener/Readiness.ts"
import { configReloads, scrapeMetrics } from "../telemetry/Metrics.ts"
import { listenScoped, type BoundAddress, type ListenError } from "../listener/Listen.ts"
import {
  type AdminError,
  type AdminReply,
  errorReply,
  jsonReply,
  MethodNotAllowed,
  RouteNotFound,
  Unauthorized
} from "./AdminReply.ts"
import { checkBearer } from "./BearerAuth.ts"
import { configChanges, summarizeConfig } from "./ConfigSummary.ts"
import { readJsonBody } from "./JsonBody.ts"
import { placeholderPaths, REDACTED, redactConfig } from "./Redact.ts"
import { listRoutes } from "./RouteListing.ts"
import { makeStats } from "./Stats.ts"
import { upstreamStatus } from "./UpstreamStatus.ts"

const encodeConfig = Schema.encodeSync(Config)
const MAX_CONFIG_BYTES = 1024 * 1024
/** Paths open without the token, for orchestrator probes. */
const OPEN_PATHS: ReadonlySet<string> = new Set(["/health", "/ready"])
const rejectedReload = Metric.withAttributes(configReloads, { result: "rejected" })

type Handler = (req: IncomingMessage, res: ServerResponse) => Effect.Effect<AdminReply, AdminError | ConfigError>
type Endpoints = Readonly<Record<string, Readonly<Record<string, Handler>>>>

/** The methods a path answers: its own, and HEAD wherever GET is. */
const methodsOf = (handlers: Readonly<Record<string, Handler>>): Array<string> =>
  Object.keys(handlers).flatMap((m) => (m === "GET" ? ["GET", "HEAD"] : [m]))

/** Finds the handler for a request, or why there is none (404 listing the endpoints, 405 with Allow). */
const dispatch = (endpoints: Endpoints, method: string, path: string): Effect.Effect<Handler, RouteNotFound | MethodNotAllowed> => {
  const handlers = Object.hasOwn(endpoints, path) ? endpoints[path] : undefined
  if (handlers === undefined) {
    const list = Object.entries(endpoints).flatMap(([p, hs]) => Object.keys(hs).map((m) => `${m} ${p}`))
    return Effect.fail(new RouteNotFound({ message: `No admin endpoint at ${path}`, endpoints: list }))
  }
  const handler = handlers[method === "HEAD" ? "GET" : method]
  if (handler !== undefined) return Effect.succeed(handler)
  const allow = methodsOf(handlers)
  return Effect.fail(new MethodNotAllowed({ message: `${path} answers ${allow.join(", ")}`, allow }))
}

/** Decodes a config sent to the admin API; the `<redacted>` placeholder anywhere is a problem too. */
const decodeSent = (value: unknown, origin: string, checks: ConfigSource["Service"]["checks"]): Result.Result<Config, ConfigError> => {
  const placeholders = placeholderPaths(value).map((path) => ({
    path: formatPath(path),
    message: `${REDACTED} is what GET /config shows for a secret; send the real value`
  }))
  const decoded = decodeConfig(value, origin, { checks })
  if (placeholders.length === 0) return decoded
  const others = Result.isFailure(decoded) ? decoded.failure.problems : []
  return Result.fail(new ConfigError({ source: origin, problems: [...placeholders, ...others] }))
}

const send = (res: ServerResponse, reply: AdminReply) => {
  if (res.headersSent) return void res.end()
  res.writeHead(reply.status, { ...reply.headers, "content-length": Buffer.byteLength(reply.text), "cache-control": "no-store" })
  res.end(reply.text)
}

export class Admin extends Context.Service<Admin, {
  /** Where the admin API is bound; undefined when `admin` is not configured. */
  readonly address: BoundAddress | undefined
}>()("fibergate/admin/Admin") {
  /** Binds the admin API; `/ready` reflects the `Readiness` the listeners maintain. */
  static readonly layer: Layer.Layer<Admin, ListenError, ConfigSource | RouteTable | Upstreams | Readiness | Certificates> = Layer.effect(
    Admin,
    Effect.gen(function*() {
      const source = yield* ConfigSource
      const routes = yield* RouteTable
      const upstreams = yield* Upstreams
      const certificates = yield* Certificates
      const initial = yield* SubscriptionRef.get(source.config)
      if (initial.admin === undefined) return Admin.of({ address: undefined })
      const readiness = yield* Readiness
      // The same registry the request path records into (Effect's default MetricRegistry).
      const context = yield* Effect.context<never>()
      const clock = yield* Clock.Clock
      const startedAt = clock.currentTimeMillisUnsafe()
      const inForce = () => SubscriptionRef.getUnsafe(source.config)

      const authorize = (req: IncomingMessage, path: string): Effect.Effect<void, Unauthorized> => {
        const token = inForce().admin?.token
        if (token === undefined || OPEN_PATHS.has(path)) return Effect.void
        const reason = checkBearer(req.headers.authorization, token)
        if (reason === undefined) return Effect.void
        const message = reason === "missing" ? "This admin API needs Authorization: Bearer <admin.token>" : "The bearer token does not match"
        return Effect.fail(new Unauthorized({ message, reason }))
      }

      // A published config is compiled by the RouteTable's own fiber: let it run, so the reply
      // reports the generation that includes the change.
      const generationAfter = Effect.fnUntraced(function*(before: number) {
        for (let i = 0; i < 100 && routes.generation() === before; i++) yield* Effect.yieldNow
        return routes.generation()
      })

      const applied = Effect.fnUntraced(function*(change: Effect.Effect<Config, ConfigError>) {
        const previous = inForce()
        const before = routes.generation()
        const next = yield* change
        if (previous.admin?.token !== undefined && next.admin?.token === undefined) {
          yield* Effect.logWarning("the new config has no admin.token: the admin API no longer asks for one")
        }
        return jsonReply(200, {
          applied: true,
          generation: yield* generationAfter(before),
          summary: summarizeConfig(next),
          changes: configChanges(previous, next)
        })
      })

      const putConfig: Handler = (req, res) =>
        readJsonBody(req, res, MAX_CONFIG_BYTES).pipe(Effect.flatMap((value) => {
          const origin = "admin PUT /config"
          // publishConfig decodes, applies and counts the reload; a placeholder is refused before it.
          return applied(
            placeholderPaths(value).length > 0
              ? Effect.fromResult(decodeSent(value, origin, source.checks)).pipe(Effect.tapError(() => Metric.update(rejectedReload, 1)))
              : publishConfig(source, value, origin)
          )
        }))

      const validateConfig: Handler = (req, res) =>
        readJsonBody(req, res, MAX_CONFIG_BYTES).pipe(Effect.map((value) => {
          const decoded = decodeSent(value, "admin POST /config/validate", source.checks)
          if (Result.isFailure(decoded)) {
            const error = decoded.failure
            return jsonReply(400, { valid: false, error: error._tag, problems: error.problems, message: error.message })
          }
          return jsonReply(200, { valid: true, summary: summarizeConfig(decoded.success), changes: configChanges(inForce(), decoded.success) })
        }))

      const endpoints: Endpoints = {
        "/health": { GET: () => Effect.succeed(jsonReply(200, { status: "ok" })) },
        "/ready": {
          GET: () => Effect.sync(() => jsonReply(readiness.isReady() ? 200 : 503, { ready: readiness.isReady(), generation: routes.generation() }))
        },
        "/config": {
          GET: () => Effect.sync(() => jsonReply(200, redactConfig(encodeConfig(inForce())))),
          PUT: putConfig
        },
        "/config/validate": { POST: validateConfig },
        "/reload": { POST: () => applied(source.reload) },
        "/routes": {
          GET: () => Effect.sync(() => jsonReply(200, { generation: routes.generation(), listeners: listRoutes(encodeConfig(inForce())) }))
        },
        "/upstreams": {
          GET: () => Effect.sync(() => jsonReply(200, { generation: routes.generation(), upstreams: upstreamStatus(upstreams.current()) }))
        },
        "/certificates": {
          GET: () => Effect.sync(() => jsonReply(200, { certificates: certificates.list() }))
        },
        "/stats": {
          GET: () =>
            Effect.sync(() =>
              jsonReply(200, makeStats({
                uptimeMs: clock.currentTimeMillisUnsafe() - startedAt,
                ready: readiness.isReady(),
                generation: routes.generation(),
                source: source.source,
                config: inForce(),
                memory: process.memoryUsage(),
                groups: upstreams.current(),
                metrics: Metric.snapshotUnsafe(context)
              }))
            )
        },
        "/metrics": {
          GET: () =>
            Effect.promise(() => scrapeMetrics(context)).pipe(Effect.map((text) => ({
              status: 200,
              headers: { "content-type": "text/plain; version=0.0.4" },
              text
            })))
        }
      }

      const serve = (req: IncomingMessage, res: ServerResponse) => {
        const path = (req.url ?? "/").split("?")[0]
        return authorize(req, path).pipe(
          Effect.andThen(dispatch(endpoints, req.method ?? "GET", path)),
          Effect.flatMap((handler) => handler(req, res)),
          Effect.catch((error) => Effect.succeed(errorReply(error))),
          Effect.catchCause((cause) =>
            Effect.logError("admin request failed", cause).pipe(
              Effect.as(jsonReply(500, { error: "InternalError", message: Cause.pretty(cause).split("\n")[0] }))
            )
          ),
          Effect.flatMap((reply) => Effect.sync(() => send(res, reply)))
        )
      }

      // Request fibers belong to this layer's scope: closed after the server has drained.
      const runFork = yield* FiberSet.makeRuntime<never>()
      const server = nodeHttp.createServer((req, res) => void runFork(serve(req, res)))
      // `Expect: 100-continue` reaches the handler, which sends 100 only when it reads the body.
      server.on("checkContinue", (req, res) => void runFork(serve(req, res)))
      const address = yield* listenScoped("admin", server, parseListen(initial.admin.listen)!, 1000)
      yield* Effect.logInfo(`admin API on http://${address.host}:${address.port}`)
      return Admin.of({ address })
    })
  )
}
