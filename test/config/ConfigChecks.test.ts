/**
 * Checks beyond the Schema (ConfigChecks) as the decoder runs them, and the gateway's one check,
 * that every `custom:` names a registered middleware: which items it finds, by path and line,
 * and what it says.
 */
import { assert, describe, it } from "@effect/vitest"
import { Result } from "effect"
import type { ConfigCheck } from "../../src/config/ConfigChecks.ts"
import { decodeConfig, parseConfigText } from "../../src/config/ConfigLoader.ts"
import { registeredCustomCheck } from "../../src/middleware/CustomMiddlewares.ts"

const base = (routeMiddlewares: ReadonlyArray<unknown>, extra: Record<string, unknown> = {}) => ({
  servers: [{ name: "web", listen: "127.0.0.1:0", routes: [{ id: "all", upstream: "app", middlewares: routeMiddlewares }] }],
  upstreams: { app: { endpoints: [{ url: "http://127.0.0.1:1" }] } },
  ...extra
})

const problemsOf = (result: ReturnType<typeof decodeConfig>) =>
  Result.isFailure(result) ? result.failure.problems.map((p) => [p.path, p.message]) : []

describe("decodeConfig with checks", () => {
  const never: ConfigCheck = () => []
  const always: ConfigCheck = () => [{ path: ["servers", 0, "name"], message: "not this one" }]

  it("a config that passes every check decodes; one check's problem is a ConfigError at its path", () => {
    assert.isTrue(Result.isSuccess(decodeConfig(base([]), "<t>", { checks: [] })))
    assert.isTrue(Result.isSuccess(decodeConfig(base([]), "<t>", { checks: [never] })))
    const failed = decodeConfig(base([]), "<t>", { checks: [never, always] })
    assert.isTrue(Result.isFailure(failed))
    assert.deepStrictEqual(problemsOf(failed), [["servers[0].name", "not this one"]])
    assert.strictEqual(Result.isFailure(failed) ? failed.failure.source : "", "<t>")
  })

  it("checks run only on a config that decoded: Schema problems come alone", () => {
    let ran = 0
    const counting: ConfigCheck = () => (ran++, [])
    const bad = decodeConfig({ servers: [] }, "<t>", { checks: [counting, always] })
    assert.isTrue(Result.isFailure(bad))
    assert.strictEqual(ran, 0)
    assert.notInclude(problemsOf(bad).map((p) => p[1]), "not this one")
  })

  it("from a file, a check's problem has the line of its path", () => {
    const text = "servers:\n  - name: web\n    listen: 127.0.0.1:0\n    routes: []\nupstreams: {}\n"
    const result = parseConfigText(text, "f.yaml", {}, [always])
    assert.isTrue(Result.isFailure(result))
    if (Result.isFailure(result)) {
      assert.deepStrictEqual(result.failure.problems, [{ path: "servers[0].name", message: "not this one", line: 2, column: 5 }])
      assert.strictEqual(result.failure.message, "f.yaml:2:5: servers[0].name: not this one")
    }
  })
})

describe("registeredCustomCheck", () => {
  it("finds every custom: naming no registered middleware: in the named map, on servers and on routes; names of map entries are not custom names", () => {
    const config = decodeConfig(base(["audit-named", { custom: "audit" }, { custom: "audti" }, { cors: { origins: ["https://a.example"] } }], {
      middlewares: { "audit-named": { custom: "gone" }, fine: { custom: "audit" } }
    }), "<t>")
    assert.isTrue(Result.isSuccess(config))
    if (!Result.isSuccess(config)) return
    const withServer = { ...config.success, servers: [{ ...config.success.servers[0], middlewares: [{ custom: "srv" }, "fine"] }] }
    assert.deepStrictEqual(registeredCustomCheck(["audit"])(withServer as typeof config.success), [
      { path: ["middlewares", "audit-named", "custom"], message: `No custom middleware is registered as "gone" (registered: "audit")` },
      { path: ["servers", 0, "middlewares", 0, "custom"], message: `No custom middleware is registered as "srv" (registered: "audit")` },
      { path: ["servers", 0, "routes", 0, "middlewares", 2, "custom"], message: `No custom middleware is registered as "audti" (registered: "audit")` }
    ])
    assert.deepStrictEqual(registeredCustomCheck(["audit", "gone", "srv", "audti"])(withServer as typeof config.success), [])
  })

  it("says `none` when nothing is registered, and lists the registered names otherwise", () => {
    const config = decodeConfig(base([{ custom: "x" }]), "<t>")
    if (!Result.isSuccess(config)) return assert.fail("decodes")
    assert.deepStrictEqual(registeredCustomCheck([])(config.success).map((p) => p.message), [`No custom middleware is registered as "x" (registered: none)`])
    assert.deepStrictEqual(registeredCustomCheck(["a", "b"])(config.success).map((p) => p.message), [`No custom middleware is registered as "x" (registered: "a", "b")`])
  })
})
