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
    ["Unauthorized", () => new E.Unauthorized({ message: "m" }), "client", 401],
    ["Forbidden", () => new E.Forbidden({ message: "m" }), "client", 403],
    ["RateLimited", () => new E.RateLimited({ message: "m", retryAfter: 1 }), "client", 429],
    ["ConcurrencyLimited", () => new E.ConcurrencyLimited({ message: "m" }), "internal", 503],
    ["RateLimiterUnavailable", () => new E.RateLimiterUnavailable({ message: "m" }), "internal", 503],
    ["AuthUnavailable", () => new E.AuthUnavailable({ message: "m" }), "upstream", 503],
    ["InternalError", () => new E.InternalError({ message: "m" }), "internal", 500]
  ] as const)("%s comes from the %s and answers %d", (_name, make, source, status) => {
    // Made inside the test, so that coverage per test (Stryker's) sees the constructor run.
    const error = make()
    assert.strictEqual(error.source, source)
    assert.strictEqual(E.errorResponse(error).status, status)
    assert.deepStrictEqual(JSON.parse(E.errorResponse(error).body), { error: error._tag, message: "m" })
  })
})

describe("the headers an error's status calls for", () => {
  it("Unauthorized carries its challenge as WWW-Authenticate; RateLimited its Retry-After and the IETF headers it has; others none", () => {
    assert.deepStrictEqual(E.errorResponse(new E.Unauthorized({ message: "m", challenge: `Basic realm="x"` })).headers, ["www-authenticate", `Basic realm="x"`])
    assert.deepStrictEqual(E.errorResponse(new E.Unauthorized({ message: "m" })).headers, [])
    assert.deepStrictEqual(E.errorResponse(new E.RateLimited({ message: "m", retryAfter: 3 })).headers, ["retry-after", "3"])
    assert.deepStrictEqual(E.errorResponse(new E.RateLimited({ message: "m", retryAfter: 3, policy: "p" })).headers, ["retry-after", "3", "ratelimit-policy", "p"])
    assert.deepStrictEqual(E.errorResponse(new E.RateLimited({ message: "m", retryAfter: 3, rate: "r" })).headers, ["retry-after", "3", "ratelimit", "r"])
    assert.deepStrictEqual(E.errorResponse(new E.Forbidden({ message: "m" })).headers, [])
  })
})

describe("gateway errors to gRPC clients", () => {
  it("a gRPC call is application/grpc, alone or with +format or ;parameters", () => {
    assert.isTrue(E.isGrpc("application/grpc"))
    assert.isTrue(E.isGrpc("Application/GRPC+proto"))
    assert.isTrue(E.isGrpc("application/grpc;charset=utf-8"))
    assert.isFalse(E.isGrpc("application/grpc-web"))
    assert.isFalse(E.isGrpc("application/json"))
    assert.isFalse(E.isGrpc("application/grp"))
    assert.isFalse(E.isGrpc(undefined))
  })

  it.each([
    [new E.RouteNotFound({ message: "m" }), "12"],
    [new E.NoHealthyUpstream({ message: "m" }), "14"],
    [new E.CircuitOpen({ message: "m" }), "14"],
    [new E.UpstreamTimeout({ message: "m" }), "4"],
    [new E.UpstreamResponseTimeout({ message: "m" }), "4"],
    [new E.RateLimited({ message: "m", retryAfter: 3 }), "8"],
    [new E.Unauthorized({ message: "m" }), "16"],
    [new E.Forbidden({ message: "m" }), "7"],
    [new E.BadRequest({ message: "m" }), "3"],
    [new E.InternalError({ message: "m" }), "13"]
  ])("%s → grpc-status %s", (error, status) => {
    assert.deepStrictEqual(E.grpcErrorHeaders(error).slice(0, 2), ["grpc-status", status])
  })

  it("grpc-message is percent-encoded outside printable ASCII, and % itself; the error's own headers follow", () => {
    assert.deepStrictEqual(E.grpcErrorHeaders(new E.RateLimited({ message: "100% — wait", retryAfter: 3 })), [
      "grpc-status", "8", "grpc-message", "100%25 %E2%80%94 wait", "retry-after", "3"
    ])
  })
})
