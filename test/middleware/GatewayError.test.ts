/**
 * Every gateway error records where it came from (DESIGN.md: client, upstream, internal) and
 * maps to its one status; `errorResponse` is the only place that turns one into a response.
 */
import { assert, describe, it } from "@effect/vitest"
import * as E from "../../src/middleware/GatewayError.ts"

describe("gateway errors", () => {
  it.each([
    ["RouteNotFound", () => new E.RouteNotFound({ message: "m" }), "client", 404],
    ["BadRequest", () => new E.BadRequest({ message: "m" }), "client", 400],
    ["PayloadTooLarge", () => new E.PayloadTooLarge({ message: "m" }), "client", 413],
    ["RequestTimeout", () => new E.RequestTimeout({ message: "m" }), "client", 408],
    ["NotImplemented", () => new E.NotImplemented({ message: "m" }), "client", 501],
    ["HeadersTooLarge", () => new E.HeadersTooLarge({ message: "m" }), "client", 431],
    ["MethodNotAllowed", () => new E.MethodNotAllowed({ message: "m" }), "client", 405],
    ["NoHealthyUpstream", () => new E.NoHealthyUpstream({ message: "m" }), "upstream", 503],
    ["CircuitOpen", () => new E.CircuitOpen({ message: "m" }), "upstream", 503],
    ["UpstreamConnectError", () => new E.UpstreamConnectError({ message: "m" }), "upstream", 502],
    ["UpstreamTimeout", () => new E.UpstreamTimeout({ message: "m" }), "upstream", 504],
    ["UpstreamConnectTimeout", () => new E.UpstreamConnectTimeout({ message: "m" }), "upstream", 504],
    ["UpstreamResponseTimeout", () => new E.UpstreamResponseTimeout({ message: "m" }), "upstream", 504],
    ["UpstreamBodyTimeout", () => new E.UpstreamBodyTimeout({ message: "m" }), "upstream", 504],
    ["UpstreamReset", () => new E.UpstreamReset({ message: "m" }), "upstream", 502],
    ["UpstreamProtocolError", () => new E.UpstreamProtocolError({ message: "m" }), "upstream", 502],
    ["InternalError", () => new E.InternalError({ message: "m" }), "internal", 500]
  ] as const)("%s comes from the %s and answers %d", (_name, make, source, status) => {
    // Made inside the test, so that coverage per test (Stryker's) sees the constructor run.
    const error = make()
    assert.strictEqual(error.source, source)
    assert.strictEqual(E.errorResponse(error).status, status)
    assert.deepStrictEqual(JSON.parse(E.errorResponse(error).body), { error: error._tag, message: "m" })
  })
})
