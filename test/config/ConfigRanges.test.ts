/**
 * Ranges and forms the README's configuration block states, at their edges: `retry.attempts`
 * 1-10, `listen` as `host:port`, `:port` and `[::1]:port`, and `sample_ratio`,
 * `max_ejected_percent` and `retry_budget.percent` within their bounds.
 */
import { assert, describe, it } from "@effect/vitest"
import { Result } from "effect"
import { decodeConfig } from "../../src/config/ConfigLoader.ts"
import { parseListen } from "../../src/config/Schema.ts"

const base = (route: Record<string, unknown> = {}, upstream: Record<string, unknown> = {}, top: Record<string, unknown> = {}) => ({
  servers: [{ name: "web", listen: "127.0.0.1:0", routes: [{ id: "all", upstream: "app", ...route }] }],
  upstreams: { app: { endpoints: [{ url: "http://127.0.0.1:3000" }], ...upstream } },
  ...top
})

/** The paths of the problems decoding reports; [] when the value decodes. */
const problems = (value: unknown): Array<string> => {
  const result = decodeConfig(value, "<test>")
  return Result.isFailure(result) ? result.failure.problems.map((p) => p.path) : []
}

describe("config ranges at their edges", () => {
  it("retry.attempts: 1 and 10 decode; 0 and 11 are refused at their path", () => {
    for (const attempts of [1, 10]) assert.deepStrictEqual(problems(base({ retry: { attempts } })), [], String(attempts))
    for (const attempts of [0, 11]) assert.deepStrictEqual(problems(base({ retry: { attempts } })), ["servers[0].routes[0].retry.attempts"], String(attempts))
  })

  it("telemetry.tracing.sample_ratio: 0 and 1 decode; -0.01 and 1.01 are refused", () => {
    const ratio = (sample_ratio: number) => base({}, {}, { telemetry: { tracing: { sample_ratio } } })
    for (const r of [0, 1]) assert.deepStrictEqual(problems(ratio(r)), [], String(r))
    for (const r of [-0.01, 1.01]) assert.deepStrictEqual(problems(ratio(r)), ["telemetry.tracing.sample_ratio"], String(r))
  })

  it("outlier.max_ejected_percent and retry_budget.percent: 0 and 100 decode; 100.5 is refused", () => {
    for (const p of [0, 100]) {
      assert.deepStrictEqual(problems(base({}, { outlier: { max_ejected_percent: p }, retry_budget: { percent: p } })), [], String(p))
    }
    assert.deepStrictEqual(
      problems(base({}, { outlier: { max_ejected_percent: 100.5 }, retry_budget: { percent: 100.5 } })),
      ["upstreams.app.outlier.max_ejected_percent", "upstreams.app.retry_budget.percent"]
    )
  })
})

describe("listen address forms", () => {
  it("host:port, :port (every interface), [::1]:port, and port 0; a port past 65535 is refused", () => {
    assert.deepStrictEqual(parseListen("127.0.0.1:8080"), { host: "127.0.0.1", port: 8080 })
    assert.deepStrictEqual(parseListen(":8080"), { host: "0.0.0.0", port: 8080 })
    assert.deepStrictEqual(parseListen("[::1]:8080"), { host: "::1", port: 8080 })
    assert.deepStrictEqual(parseListen("127.0.0.1:0"), { host: "127.0.0.1", port: 0 })
    assert.deepStrictEqual(parseListen("127.0.0.1:65535"), { host: "127.0.0.1", port: 65535 })
    assert.isUndefined(parseListen("127.0.0.1:65536"))
    for (const listen of [":8080", "[::1]:8080", "0.0.0.0:0"]) {
      assert.deepStrictEqual(problems({ ...base(), servers: [{ ...base().servers[0], listen }] }), [], listen)
    }
  })
})
