/**
 * `GET /routes`: every listener with its routes in config order, each as configured (durations
 * as written, `250ms`): id, priority (0 when unset), match, upstream, rewrite, timeout and retry. Unset settings are
 * `null` (no match conditions: `{}`), so every route has the same shape. Header and query
 * conditions on secret-looking names (`authorization`, `x-api-key`) are redacted like `/config`.
 * Config order is declaration order; which route wins a request is the router's rule
 * (exact paths, then regex routes in declaration order, then the longest prefix; `priority` first).
 */
import type { ConfigEncoded } from "../config/Schema.ts"
import { redactSecrets } from "./Redact.ts"

type RouteEncoded = ConfigEncoded["servers"][number]["routes"][number]

export interface RouteView {
  readonly id: string
  readonly priority: number
  readonly match: unknown
  readonly upstream: string
  readonly rewrite: RouteEncoded["rewrite"] | null
  readonly timeout: string | null
  readonly retry: RouteEncoded["retry"] | null
}

export interface ListenerRoutes {
  readonly name: string
  readonly listen: string
  readonly routes: ReadonlyArray<RouteView>
}

const viewOf = (route: RouteEncoded): RouteView => ({
  id: route.id,
  priority: route.priority ?? 0,
  match: redactSecrets(route.match ?? {}),
  upstream: route.upstream,
  rewrite: route.rewrite ?? null,
  timeout: route.timeout ?? null,
  retry: route.retry ?? null
})

/**
 * @example
 * listRoutes(encodeConfig(config))
 * // => [{ name: "web", listen: ":8080", routes: [{ id: "all", priority: 0, match: {}, upstream: "app", rewrite: null, … }] }]
 */
export const listRoutes = (config: ConfigEncoded): ReadonlyArray<ListenerRoutes> =>
  config.servers.map((server) => ({ name: server.name, listen: server.listen, routes: server.routes.map(viewOf) }))
