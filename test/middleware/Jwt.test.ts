/**
 * The jwt step on the Effect Clock (TestClock): exp and nbf with the skew, and the memory of
 * verified tokens, which never outlives a token's exp.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit } from "effect"
import { TestClock } from "effect/testing"
import { createLocalJWKSet, exportJWK, generateKeyPair, SignJWT, type JWTVerifyGetKey } from "jose"
import type { Unauthorized } from "../../src/middleware/GatewayError.ts"
import type { JwksCache } from "../../src/middleware/JwksCache.ts"
import type { Step } from "../../src/middleware/Middleware.ts"
import { compileJwt, VERIFIED_MAX as VERIFIED_MAX_TOKENS, VERIFIED_TTL_MS } from "../../src/middleware/Jwt.ts"
import { requestFrom } from "../support/pipelineRequest.ts"

const secret = new TextEncoder().encode("a-long-shared-secret-for-the-jwt-tests")
const sign = (claims: { readonly exp?: number; readonly nbf?: number; readonly sub?: string }) =>
  Effect.promise(() => {
    let jwt = new SignJWT({ sub: claims.sub ?? "u" }).setProtectedHeader({ alg: "HS256" }).setIssuer("iss")
    if (claims.exp !== undefined) jwt = jwt.setExpirationTime(claims.exp)
    if (claims.nbf !== undefined) jwt = jwt.setNotBefore(claims.nbf)
    return jwt.sign(secret)
  })

const step = compileJwt({ algorithms: ["HS256"], issuer: "iss", secret_file: "-", clock_skew: 10_000 }, { secret })
const run = (token: string) => {
  const { request } = requestFrom("10.0.0.1", { header: (name) => (name === "authorization" ? `Bearer ${token}` : undefined) })
  return Effect.exit(step(request, () => Effect.void))
}

describe("jwt (TestClock)", () => {
  it.effect("exp and nbf are checked with the skew on the Effect Clock", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(1_000_000)
      const expiring = yield* sign({ exp: 1_005 }) // 5 s from now, in seconds
      const early = yield* sign({ nbf: 1_015, exp: 2_000 }) // 15 s from now
      const soon = yield* sign({ nbf: 1_008, exp: 2_000 }) // 8 s from now: within the 10 s skew
      assert.isTrue(Exit.isSuccess(yield* run(expiring)))
      assert.isTrue(Exit.isFailure(yield* run(early)))
      assert.isTrue(Exit.isSuccess(yield* run(soon)))
    }))

  it.effect("a remembered token is admitted without a new check, but never past its exp (+ skew)", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(1_000_000)
      const token = yield* sign({ exp: 1_020 })
      assert.isTrue(Exit.isSuccess(yield* run(token)))
      yield* TestClock.adjust(29_000) // 1_029 s: exp + skew is 1_030
      assert.isTrue(Exit.isSuccess(yield* run(token)))
      yield* TestClock.adjust(1_000)
      const exit = yield* run(token)
      assert.isTrue(Exit.isFailure(exit))
    }))

  it.effect("a long-lived token is checked again after the memory's minute", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(1_000_000)
      const token = yield* sign({ exp: 1_000_000 })
      assert.isTrue(Exit.isSuccess(yield* run(token)))
      yield* TestClock.adjust(VERIFIED_TTL_MS + 1)
      // Still valid after a new check.
      assert.isTrue(Exit.isSuccess(yield* run(token)))
      // A token signed with another secret never passes, remembered or not.
      const forged = (yield* Effect.promise(() => new SignJWT({ sub: "u" }).setProtectedHeader({ alg: "HS256" }).setIssuer("iss").sign(new TextEncoder().encode("another-secret-of-enough-length-here-xx"))))
      assert.isTrue(Exit.isFailure(yield* run(forged)))
      assert.isTrue(Exit.isFailure(yield* run(forged)))
    }))
})

/** A JWKS cache whose sets are given by the test; counts how often the step asks for one. */
const fakeJwks = (sets: { current: JWTVerifyGetKey | undefined; refreshed: JWTVerifyGetKey | undefined }) => {
  const calls = { current: 0, refresh: 0 }
  const cache: JwksCache = {
    current: Effect.sync(() => (calls.current++, sets.current)),
    refresh: Effect.sync(() => (calls.refresh++, sets.refreshed))
  }
  return { cache, calls }
}
// jose's key sets take asymmetric keys only: two ES256 pairs made for the tests.
const pairA = await generateKeyPair("ES256", { extractable: true })
const pairB = await generateKeyPair("ES256", { extractable: true })
type Pair = typeof pairA
const jwkOf = async (kid: string, pair: Pair) => ({ ...(await exportJWK(pair.publicKey)), kid, alg: "ES256" })
const esSet = async (kid: string, pair: Pair) => createLocalJWKSet({ keys: [await jwkOf(kid, pair)] })
const setA = await esSet("a", pairA)
const setB = await esSet("b", pairB)
const signKid = (kid: string, pair: Pair, claims: Record<string, unknown> = { sub: "u" }, exp = 10_000) =>
  Effect.promise(() => new SignJWT(claims).setProtectedHeader({ alg: "ES256", kid }).setIssuer("iss").setExpirationTime(exp).sign(pair.privateKey))

const runWith = (s: Step, authorization: string | undefined, extra: Record<string, string> = {}) => {
  const h: Record<string, string> = { ...extra }
  if (authorization !== undefined) h.authorization = authorization
  const r = requestFrom("10.0.0.1", { header: (name) => h[name] })
  return Effect.map(Effect.exit(s(r.request, () => Effect.void)), (exit) => ({ exit, ...r }))
}
const errorOf = (exit: Exit.Exit<void, unknown>) =>
  Exit.isFailure(exit) && exit.cause.reasons[0]?._tag === "Fail" ? (exit.cause.reasons[0] as unknown as { error: Unauthorized | { _tag: string } }).error : undefined

describe("jwt with a key set (a fake JWKS cache)", () => {
  const config = { algorithms: ["ES256" as const], issuer: "iss", jwks_url: "http://x/j", claims_to_headers: { sub: "x-user-id", email: "x-email", tier: "x-tier" } }

  it.effect("sub is the consumer and claims go to headers; an absent or null claim removes its header; forward: false removes the token", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(1_000_000)
      const { cache } = fakeJwks({ current: setA, refreshed: undefined })
      const token = yield* signKid("a", pairA, { sub: "alice", tier: null })
      const r = yield* runWith(compileJwt(config, { jwks: cache }), `Bearer ${token}`)
      assert.isTrue(Exit.isSuccess(r.exit))
      assert.strictEqual(r.request.consumer, "alice")
      assert.deepStrictEqual(r.set, { "x-user-id": "alice" })
      assert.includeMembers(r.removed, ["x-email", "x-tier"])
      assert.notInclude(r.removed, "authorization")
      const numeric = yield* runWith(compileJwt({ ...config, forward: false }, { jwks: cache }), `Bearer ${yield* signKid("a", pairA, { sub: 42 })}`)
      assert.isUndefined(numeric.request.consumer)
      assert.include(numeric.removed, "authorization")
    }))

  it.effect("each refusal says why in error_description", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(1_000_000)
      const { cache } = fakeJwks({ current: setA, refreshed: undefined })
      const step = compileJwt({ ...config, clock_skew: 0, audiences: ["api"] }, { jwks: cache })
      const cases: Array<[string | undefined, string]> = [
        ["Basic dTpw", "malformed"],
        ["Bearer a.b.c", "malformed"],
        [`Bearer ${yield* signKid("a", pairA, { sub: "u", aud: "api" }, 999)}`, "expired"],
        [`Bearer ${yield* signKid("a", pairA, { sub: "u", aud: "other" })}`, "aud claim check failed"],
        [`Bearer ${yield* signKid("a", pairB, { sub: "u", aud: "api" })}`, "signature"],
        [`Bearer ${yield* signKid("zz", pairA, { sub: "u", aud: "api" })}`, "no key for its kid"]
      ]
      for (const [authorization, why] of cases) {
        const error = errorOf((yield* runWith(step, authorization)).exit) as Unauthorized
        assert.strictEqual(error?.message, `The bearer token is not valid: ${why}`, why)
        assert.strictEqual(error?.challenge, `Bearer realm="fibergate", error="invalid_token", error_description="${why}"`, why)
      }
      const es = compileJwt({ ...config, algorithms: ["RS256"] }, { jwks: cache })
      assert.strictEqual((errorOf((yield* runWith(es, `Bearer ${yield* signKid("a", pairA)}`)).exit) as Unauthorized).challenge, `Bearer realm="fibergate", error="invalid_token", error_description="algorithm not allowed"`)
    }))

  it.effect("no key set at all is AuthUnavailable; an unknown kid asks for a refreshed set, and a refreshed set that has it admits", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(1_000_000)
      const none = fakeJwks({ current: undefined, refreshed: undefined })
      assert.strictEqual(errorOf((yield* runWith(compileJwt(config, { jwks: none.cache }), `Bearer ${yield* signKid("a", pairA)}`)).exit)?._tag, "AuthUnavailable")
      const rotated = fakeJwks({ current: setA, refreshed: setB })
      const fresh = yield* runWith(compileJwt(config, { jwks: rotated.cache }), `Bearer ${yield* signKid("b", pairB)}`)
      assert.isTrue(Exit.isSuccess(fresh.exit))
      assert.strictEqual(rotated.calls.refresh, 1)
      // The refreshed set has the kid but the signature is another key's: invalid, not admitted.
      const forged = yield* runWith(compileJwt(config, { jwks: rotated.cache }), `Bearer ${yield* signKid("b", pairA)}`)
      assert.strictEqual((errorOf(forged.exit) as Unauthorized).message, "The bearer token is not valid: signature")
      // No refreshed set, or the same one: the kid stays unknown.
      const same = setA
      for (const refreshed of [undefined, same]) {
        const f = fakeJwks({ current: same, refreshed })
        const r = yield* runWith(compileJwt(config, { jwks: f.cache }), `Bearer ${yield* signKid("c", pairB)}`)
        assert.strictEqual((errorOf(r.exit) as Unauthorized).message, "The bearer token is not valid: no key for its kid")
      }
      // A token that fails for another reason does not ask for a refresh.
      const quiet = fakeJwks({ current: setA, refreshed: setA })
      yield* runWith(compileJwt(config, { jwks: quiet.cache }), `Bearer ${yield* signKid("a", pairB)}`)
      assert.strictEqual(quiet.calls.refresh, 0)
    }))

  it.effect("a verified token is not checked again until its exp + skew or a minute, whichever comes first", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(1_000_000)
      const f = fakeJwks({ current: setA, refreshed: undefined })
      const step = compileJwt({ ...config, clock_skew: 10_000 }, { jwks: f.cache })
      const short = `Bearer ${yield* signKid("a", pairA, { sub: "u" }, 1_020)}` // exp + skew = 1_030 s
      assert.isTrue(Exit.isSuccess((yield* runWith(step, short)).exit))
      yield* TestClock.adjust(29_999)
      const cached = yield* runWith(step, short)
      assert.isTrue(Exit.isSuccess(cached.exit))
      assert.strictEqual(cached.request.consumer, "u")
      assert.strictEqual(f.calls.current, 1)
      yield* TestClock.adjust(1)
      assert.isTrue(Exit.isFailure((yield* runWith(step, short)).exit))
      assert.strictEqual(f.calls.current, 2)
      // A long-lived token: the minute bounds the memory.
      const long = `Bearer ${yield* signKid("a", pairA, { sub: "u" }, 100_000)}`
      yield* runWith(step, long)
      yield* TestClock.adjust(VERIFIED_TTL_MS - 1)
      yield* runWith(step, long)
      assert.strictEqual(f.calls.current, 3)
      yield* TestClock.adjust(1)
      yield* runWith(step, long)
      yield* runWith(step, long)
      assert.strictEqual(f.calls.current, 4)
    }))

  it.effect(`the memory holds at most ${VERIFIED_MAX_TOKENS} tokens: when full it starts again`, () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(1_000_000)
      const f = fakeJwks({ current: setA, refreshed: undefined })
      const step = compileJwt(config, { jwks: f.cache })
      const tokens = yield* Effect.forEach(Array.from({ length: VERIFIED_MAX_TOKENS + 1 }, (_, i) => i), (i) => signKid("a", pairA, { sub: `u${i}` }))
      for (const t of tokens) yield* runWith(step, `Bearer ${t}`)
      assert.strictEqual(f.calls.current, VERIFIED_MAX_TOKENS + 1)
      yield* runWith(step, `Bearer ${tokens[VERIFIED_MAX_TOKENS]}`)
      assert.strictEqual(f.calls.current, VERIFIED_MAX_TOKENS + 1)
      yield* runWith(step, `Bearer ${tokens[0]}`)
      assert.strictEqual(f.calls.current, VERIFIED_MAX_TOKENS + 2)
    }), 60_000)
})
