/**
 * Every gateway error records where it came from (DESIGN.md: client, upstream, internal) and
 * maps to its one status; `errorResponse` is the only place that turns one into a response.
 */
import { assert, describe, it } from "@effect/vitest"
import * as E from "../../src/proxy/GatewayError.ts"

describe("gateway errors", () => {
  it.each([
    [new E.RouteNotFound({ message: "m" }), "client", 404],
    [new E.BadRequest({ message: "m" }), "client", 400],
    [new E.PayloadTooLarge({ message: "m" }), "client", 413],
    [new E.RequestTimeout({ message: "m" }), "client", 408],
    [new E.NotImplemented({ message: "m" }), "client", 501],
    [new E.HeadersTooLarge({ message: "m" }), "client", 431],
    [new E.MethodNotAllowed({ message: "m" }), "client", 405],
    [new E.NoHealthyUpstream({ message: "m" }), "upstream", 503],
    [new E.CircuitOpen({ message: "m" }), "upstream", 503],
    [new E.UpstreamConnectError({ message: "m" }), "upstream", 502],
    [new E.UpstreamTimeout({ message: "m" }), "upstream", 504],
    [new E.UpstreamConnectTimeout({ message: "m" }), "upstream", 504],
    [new E.UpstreamResponseTimeout({ message: "m" }), "upstream", 504],
    [new E.UpstreamBodyTimeout({ message: "m" }), "upstream", 504],
    [new E.UpstreamReset({ message: "m" }), "upstream", 502],
    [new E.UpstreamProtocolError({ message: "m" }), "upstream", 502],
    [new E.InternalError({ message: "m" }), "internal", 500]
  ] as const)("%s comes from the %s and answers %d", (error, source, status) => {
    assert.strictEqual(error.source, source)
    assert.strictEqual(E.errorResponse(error).status, status)
    assert.deepStrictEqual(JSON.parse(E.errorResponse(error).body), { error: error._tag, message: "m" })
  })
})
