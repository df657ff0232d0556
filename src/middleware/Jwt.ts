/**
 * `jwt`: a Bearer token in `Authorization`, verified with jose: the signature with a key of
 * the JWKS at `jwks_url` (asymmetric algorithms) or the secret in `secret_file` (HS*), only
 * the listed `algorithms`, and `iss`, `aud`, `exp`, `nbf` with `clock_skew` (default 30 s) on
 * the Effect Clock. The `sub` claim is the consumer; `claims_to_headers` copies claims onto
 * the request sent upstream (any header of those names the client sent is replaced or
 * removed). 401 with `WWW-Authenticate: Bearer …` (RFC 6750) for a missing or invalid token.
 * A verified token is remembered until its exp, for a minute at most, so a client's repeated
 * token is not checked again on every request.
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import { errors, jwtVerify, type JWTPayload, type JWTVerifyGetKey } from "jose"
import type { Jwt } from "../config/MiddlewareSchema.ts"
import { AuthUnavailable, Unauthorized, type GatewayError } from "./GatewayError.ts"
import type { JwksCache } from "./JwksCache.ts"
import type { Next, PipelineRequest, Step } from "./Middleware.ts"

/** How long a verified token is trusted without checking its signature again (never past its exp). */
export const VERIFIED_TTL_MS = 60_000
/** Verified tokens remembered at most; the memory is cleared when it is full. */
export const VERIFIED_MAX = 10_000

const bearer = /^bearer[ \t]+([A-Za-z0-9\-_]+\.[A-Za-z0-9\-_]+\.[A-Za-z0-9\-_]*)[ \t]*$/i

/** Where the keys come from: a JWKS cache, or one secret. */
export type JwtKeys = { readonly jwks: JwksCache } | { readonly secret: Uint8Array }

const claimText = (value: unknown): string | undefined =>
  value === undefined || value === null ? undefined : typeof value === "string" ? value : JSON.stringify(value)

/**
 * @example
 * compileJwt({ issuer: "https://id.example.com", algorithms: ["HS256"], secret_file: "hs.key" }, { secret: new TextEncoder().encode("…") })
 */
export const compileJwt = (config: Jwt, keys: JwtKeys): Step => {
  const missing = new Unauthorized({ message: "A bearer token is required", challenge: `Bearer realm="fibergate"` })
  const invalid = (why: string) =>
    new Unauthorized({
      message: `The bearer token is not valid: ${why}`,
      challenge: `Bearer realm="fibergate", error="invalid_token", error_description="${why.replaceAll(/["\\]/g, "")}"`
    })
  const unavailable = new AuthUnavailable({ message: "The token's signing keys could not be fetched" })
  const skewSeconds = Math.round((config.clock_skew ?? 30_000) / 1000)
  const options = {
    algorithms: [...config.algorithms],
    clockTolerance: skewSeconds,
    ...(config.issuer === undefined ? {} : { issuer: config.issuer }),
    ...(config.audiences === undefined ? {} : { audience: [...config.audiences] })
  }
  const claims = Object.entries(config.claims_to_headers ?? {}).map(([claim, header]) => [claim, header.toLowerCase()] as const)
  const forward = config.forward !== false

  const verify = (token: string, key: JWTVerifyGetKey | Uint8Array, now: number) =>
    Effect.tryPromise({
      try: () => jwtVerify(token, key as JWTVerifyGetKey, { ...options, currentDate: new Date(now) }),
      catch: (e) => e
    })

  const why = (e: unknown): string =>
    e instanceof errors.JWTExpired
      ? "expired"
      : e instanceof errors.JWTClaimValidationFailed
      ? `${e.claim} claim check failed`
      : e instanceof errors.JOSEAlgNotAllowed
      ? "algorithm not allowed"
      : e instanceof errors.JWSSignatureVerificationFailed
      ? "signature"
      : e instanceof errors.JWKSNoMatchingKey
      ? "no key for its kid"
      : "malformed"

  const payloadOf = (token: string, now: number): Effect.Effect<JWTPayload, GatewayError> => {
    if ("secret" in keys) return Effect.mapError(verify(token, keys.secret, now), (e) => invalid(why(e))).pipe(Effect.map((r) => r.payload))
    const jwks = keys.jwks
    return Effect.flatMap(jwks.current, (set): Effect.Effect<JWTPayload, GatewayError> => {
      if (set === undefined) return Effect.fail(unavailable)
      return verify(token, set, now).pipe(
        Effect.map((r) => r.payload),
        Effect.catch((e) => {
          if (!(e instanceof errors.JWKSNoMatchingKey)) return Effect.fail(invalid(why(e)))
          // A kid the set lacks: the issuer may have rotated its keys since the last fetch.
          return Effect.flatMap(jwks.refresh, (fresh) =>
            fresh === undefined || fresh === set
              ? Effect.fail(invalid(why(e)))
              : Effect.mapError(verify(token, fresh, now), (e2) => invalid(why(e2))).pipe(Effect.map((r) => r.payload)))
        })
      )
    })
  }

  // Tokens verified recently, with the time they stop being valid here: the earlier of their
  // exp (plus skew) and a minute from the check. Signature checks (WebCrypto, async) cost
  // about as much as the rest of the request; a client sends the same token many times.
  const verified = new Map<string, { readonly payload: JWTPayload; readonly until: number }>()
  const admit = (request: PipelineRequest, next: Next, payload: JWTPayload) => {
    if (typeof payload.sub === "string") request.setConsumer(payload.sub)
    for (const [claim, header] of claims) {
      const value = claimText(payload[claim])
      if (value === undefined) request.removeHeader(header)
      else request.setHeader(header, value)
    }
    if (!forward) request.removeHeader("authorization")
    return next(request)
  }

  return (request: PipelineRequest, next) => {
    const m = bearer.exec(request.header("authorization") ?? "")
    if (m === null) return Effect.fail(request.header("authorization") === undefined ? missing : invalid("malformed"))
    const token = m[1]
    return Effect.flatMap(Clock.currentTimeMillis, (now) => {
      const hit = verified.get(token)
      if (hit !== undefined) {
        if (now < hit.until) return admit(request, next, hit.payload)
        verified.delete(token)
      }
      return Effect.flatMap(payloadOf(token, now), (payload) => {
        const expires = typeof payload.exp === "number" ? payload.exp * 1000 + skewSeconds * 1000 : Number.POSITIVE_INFINITY
        if (verified.size >= VERIFIED_MAX) verified.clear()
        verified.set(token, { payload, until: Math.min(expires, now + VERIFIED_TTL_MS) })
        return admit(request, next, payload)
      })
    })
  }
}
