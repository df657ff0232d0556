/**
 * A JWKS fetched over HTTP and kept by its `Cache-Control: max-age` within bounds (1 min to
 * 24 h; 10 min without one). A token whose `kid` the set does not have makes it fetch again
 * at once, but such refetches come at most every 30 s (a stream of made-up kids cannot turn
 * into a stream of fetches).
 * When the endpoint is down or answers garbage, the last good set keeps serving. Key selection
 * and import are jose's (`createLocalJWKSet`); time is the Effect Clock.
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import { createLocalJWKSet, type JSONWebKeySet, type JWTVerifyGetKey } from "jose"
import type { Dispatcher } from "undici"
import { Agent } from "../upstream/Undici.ts"

export const JWKS_MIN_MS = 60_000
export const JWKS_MAX_MS = 86_400_000
export const JWKS_DEFAULT_MS = 600_000
/** Fetches for an unknown kid (or after a failure), at most one per this. */
export const JWKS_REFETCH_MS = 30_000
const FETCH_TIMEOUT_MS = 5_000

/** How long a JWKS response may be kept, from its Cache-Control. */
export const jwksLifetimeMs = (cacheControl: string | undefined): number => {
  if (cacheControl === undefined) return JWKS_DEFAULT_MS
  if (/(^|,)\s*(no-store|no-cache)\s*(,|$)/i.test(cacheControl)) return JWKS_MIN_MS
  const m = /(?:^|,)\s*max-age\s*=\s*"?(\d+)"?\s*(?:,|$)/i.exec(cacheControl)
  if (m === null) return JWKS_DEFAULT_MS
  return Math.min(JWKS_MAX_MS, Math.max(JWKS_MIN_MS, Number(m[1]) * 1000))
}

export interface JwksCache {
  /** The key set in force, fetching it when there is none yet or it has expired; undefined when none could be had. */
  readonly current: Effect.Effect<JWTVerifyGetKey | undefined>
  /** Fetches again for a kid the set lacks, unless such a refetch happened less than 30 s ago; the set in force after it. */
  readonly refresh: Effect.Effect<JWTVerifyGetKey | undefined>
}

export const makeJwksCache = (url: string, dispatcher: Dispatcher = new Agent({ keepAliveTimeout: 30_000 })): JwksCache => {
  const target = new URL(url)
  let keys: JWTVerifyGetKey | undefined
  let expiresAt = 0
  let lastFetch = Number.NEGATIVE_INFINITY
  let lastRefresh = Number.NEGATIVE_INFINITY
  let inFlight: Promise<void> | undefined

  const fetchOnce = (now: number): Promise<void> => {
    lastFetch = now
    return (async () => {
      try {
        const res = await dispatcher.request({
          origin: target.origin,
          path: target.pathname + target.search,
          method: "GET",
          headers: { accept: "application/json" },
          headersTimeout: FETCH_TIMEOUT_MS,
          bodyTimeout: FETCH_TIMEOUT_MS,
          signal: AbortSignal.timeout(FETCH_TIMEOUT_MS)
        })
        const text = await res.body.text()
        if (res.statusCode === 200) {
          keys = createLocalJWKSet(JSON.parse(text) as JSONWebKeySet)
          const cc = res.headers["cache-control"]
          expiresAt = now + jwksLifetimeMs(Array.isArray(cc) ? cc.join(", ") : cc)
        }
      } catch {
        // The last good set stays; the next try waits for the refetch interval.
      }
      if (keys !== undefined && expiresAt <= now) expiresAt = now + JWKS_REFETCH_MS
    })().finally(() => {
      inFlight = undefined
    })
  }

  const fetchFrom = (now: number) =>
    Effect.promise(() => inFlight ??= fetchOnce(now)).pipe(Effect.map(() => keys))

  return {
    current: Effect.flatMap(Clock.currentTimeMillis, (now) => {
      if (keys !== undefined && now < expiresAt) return Effect.succeed(keys)
      if (keys === undefined && now - lastFetch < JWKS_REFETCH_MS && inFlight === undefined) return Effect.succeed(undefined)
      return fetchFrom(now)
    }),
    refresh: Effect.flatMap(Clock.currentTimeMillis, (now) => {
      if (inFlight !== undefined) return fetchFrom(now)
      if (now - lastRefresh < JWKS_REFETCH_MS) return Effect.succeed(keys)
      lastRefresh = now
      return fetchFrom(now)
    })
  }
}
