/**
 * Compiles a route's middlewares (its server's first, then its own; names resolved through
 * the top-level `middlewares:` map) into the steps of its pipeline. Every `cors` runs first,
 * whatever its place in the list, so a preflight is answered before any auth refuses it.
 */
import * as Effect from "effect/Effect"
import type { InlineMiddleware, MiddlewareItem } from "../config/MiddlewareSchema.ts"
import type { Config, Route, Server } from "../config/Schema.ts"
import { compileApiKey } from "./ApiKey.ts"
import { compileBasicAuth, parseHtpasswd } from "./BasicAuth.ts"
import { compileConcurrencyLimit } from "./ConcurrencyLimit.ts"
import { compileCors } from "./Cors.ts"
import { InternalError } from "./GatewayError.ts"
import { compileIpFilter } from "./IpFilter.ts"
import type { Limiters } from "./Limiters.ts"
import { fromMiddleware, type Middleware, type Step } from "./Middleware.ts"
import { compileRateLimit, memoryStore, type RateLimitStore } from "./RateLimit.ts"
import { readFileSync } from "node:fs"
import type { Dispatcher } from "undici"
import { compileForwardAuth } from "./ForwardAuth.ts"
import type { JwksCache } from "./JwksCache.ts"
import { compileJwt } from "./Jwt.ts"

export interface ChainServices {
  readonly limiters: Limiters["Service"]
  readonly custom: ReadonlyMap<string, Middleware<never>>
  /** Told about a middleware that cannot work (an unregistered `custom:`, an unreadable secret); its step answers 500. */
  readonly problem: (where: string, message: string) => void
  /** The JWKS cache of a URL, kept across reloads. */
  readonly jwks: (url: string) => JwksCache
  /** Where forward_auth sends its requests (one keep-alive agent for the gateway). */
  readonly dispatcher: Dispatcher
  /** The store of rate limits with `store: redis`. */
  readonly redisStore: RateLimitStore
}

interface Resolved {
  /** Identifies the middleware's state (counters, semaphores): shared by every route using one named middleware. */
  readonly key: string
  readonly where: string
  readonly spec: InlineMiddleware
}

const compileOne = (m: Resolved, services: ChainServices): Step => {
  const spec = m.spec
  if (spec.cors !== undefined) return compileCors(spec.cors)
  if (spec.ip_filter !== undefined) return compileIpFilter(spec.ip_filter)
  if (spec.api_key !== undefined) return compileApiKey(spec.api_key)
  if (spec.basic_auth !== undefined) {
    const basic = spec.basic_auth
    if (basic.users !== undefined) return compileBasicAuth({ ...basic, users: basic.users })
    let text: string
    try {
      text = readFileSync(basic.htpasswd_file!, "utf8")
    } catch (e) {
      services.problem(`${m.where}.basic_auth.htpasswd_file`, `cannot read ${basic.htpasswd_file}: ${(e as Error).message}; its requests are answered 500`)
      return failClosed
    }
    const { skipped, users } = parseHtpasswd(text)
    if (skipped.length > 0) {
      services.problem(`${m.where}.basic_auth.htpasswd_file`, `${basic.htpasswd_file}: line(s) ${skipped.join(", ")} have no bcrypt, apr1 or scrypt hash and are ignored`)
    }
    return compileBasicAuth({ ...basic, users })
  }
  if (spec.forward_auth !== undefined) return compileForwardAuth(spec.forward_auth, services.dispatcher)
  if (spec.jwt !== undefined) {
    const jwt = spec.jwt
    if (jwt.jwks_url !== undefined) return compileJwt(jwt, { jwks: services.jwks(jwt.jwks_url) })
    let secret: Uint8Array
    try {
      // A trailing newline is the editor's, not the secret's.
      secret = Buffer.from(readFileSync(jwt.secret_file!, "utf8").replace(/\r?\n$/, ""), "utf8")
    } catch (e) {
      services.problem(`${m.where}.jwt.secret_file`, `cannot read ${jwt.secret_file}: ${(e as Error).message}; its requests are answered 500`)
      return failClosed
    }
    return compileJwt(jwt, { secret })
  }
  if (spec.rate_limit !== undefined) {
    const store = spec.rate_limit.store === "redis" ? services.redisStore : memoryStore(services.limiters.rateLimiter)
    return compileRateLimit(spec.rate_limit, store, `${m.key}:`)
  }
  if (spec.concurrency_limit !== undefined) return compileConcurrencyLimit(services.limiters.semaphore(m.key, spec.concurrency_limit.max))
  const name = spec.custom!
  const custom = services.custom.get(name)
  if (custom !== undefined) return fromMiddleware(custom)
  services.problem(m.where, `no custom middleware is registered as ${JSON.stringify(name)}; its requests are answered 500`)
  return failClosed
}

// Fail closed: a middleware that cannot work (auth, most likely) must not let requests through.
const unavailable = new InternalError({ message: "A middleware of this route is not available" })
const failClosed: Step = () => Effect.fail(unavailable)

/** The steps of `route` on `server`, or undefined when it has none. */
export const compileChain = (config: Config, server: Server, route: Route, services: ChainServices): ReadonlyArray<Step> | undefined => {
  const named = config.middlewares ?? {}
  const resolve = (items: ReadonlyArray<MiddlewareItem> | undefined, owner: string, where: string): Array<Resolved> =>
    (items ?? []).map((item, i) =>
      typeof item === "string"
        ? { key: `middlewares.${item}`, where: `middlewares.${item}`, spec: named[item] }
        : { key: `${owner}#${i}`, where: `${where}[${i}]`, spec: item }
    )
  const serverIndex = config.servers.indexOf(server)
  const routeIndex = server.routes.indexOf(route)
  const all = [
    ...resolve(server.middlewares, `servers.${server.name}`, `servers[${serverIndex}].middlewares`),
    ...resolve(route.middlewares, `routes.${route.id}`, `servers[${serverIndex}].routes[${routeIndex}].middlewares`)
  ]
  if (all.length === 0) return undefined
  const cors = all.filter((m) => m.spec.cors !== undefined)
  const rest = all.filter((m) => m.spec.cors === undefined)
  return [...cors, ...rest].map((m) => compileOne(m, services))
}
