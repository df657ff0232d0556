/**
 * The jwt step on the Effect Clock (TestClock): exp and nbf with the skew, and the memory of
 * verified tokens, which never outlives a token's exp.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit } from "effect"
import { TestClock } from "effect/testing"
import { SignJWT } from "jose"
import { compileJwt, VERIFIED_TTL_MS } from "../../src/middleware/Jwt.ts"
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
