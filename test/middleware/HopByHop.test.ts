/**
 * The names a `Connection` header makes hop-by-hop, and a route's header rules compiled for the
 * one pass that copies headers: exact shapes, since the hot path tests `undefined` to skip work.
 */
import { assert, describe, it } from "@effect/vitest"
import { compileHeaderRules, noHeaderRules } from "../../src/proxy/HeaderRules.ts"
import { connectionTokens } from "../../src/middleware/HopByHop.ts"

describe("connectionTokens", () => {
  it("names nothing extra for the usual values (no set is made)", () => {
    assert.isUndefined(connectionTokens(undefined))
    assert.isUndefined(connectionTokens("close"))
    assert.isUndefined(connectionTokens("Close"))
    assert.isUndefined(connectionTokens("keep-alive"))
    assert.isUndefined(connectionTokens("Keep-Alive"))
  })

  it("lists every other token lower-cased, without empty ones", () => {
    assert.deepStrictEqual(connectionTokens("keep-alive, X-Secret"), new Set(["keep-alive", "x-secret"]))
    assert.deepStrictEqual(connectionTokens(" X-A , ,x-b,"), new Set(["x-a", "x-b"]))
    assert.deepStrictEqual(connectionTokens("close, upgrade"), new Set(["close", "upgrade"]))
  })
})

describe("compileHeaderRules", () => {
  it("no rules: the shared empty rules", () => {
    assert.strictEqual(compileHeaderRules(undefined), noHeaderRules)
  })

  it("set drops the names it replaces and appends them; add only appends; remove only drops", () => {
    assert.deepStrictEqual(compileHeaderRules({ set: { "X-Env": "prod" } }), { drop: new Set(["x-env"]), append: ["X-Env", "prod"] })
    assert.deepStrictEqual(compileHeaderRules({ add: { "x-a": "1" } }), { drop: undefined, append: ["x-a", "1"] })
    assert.deepStrictEqual(compileHeaderRules({ remove: ["X-Debug"] }), { drop: new Set(["x-debug"]), append: [] })
    assert.deepStrictEqual(
      compileHeaderRules({ remove: ["x-debug"], set: { "x-env": "prod" }, add: { "x-a": "1" } }),
      { drop: new Set(["x-debug", "x-env"]), append: ["x-env", "prod", "x-a", "1"] }
    )
    assert.deepStrictEqual(compileHeaderRules({}), { drop: undefined, append: [] })
  })
})
