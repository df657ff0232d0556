/**
 * Path rewrites and header rules end to end: what the upstream receives and what the client
 * gets back, through a real listening gateway and a real upstream.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { simpleConfig, startGateway, startUpstream, type UpstreamHandler } from "../support/harness.ts"
import { headerValues, send } from "../support/http.ts"

/** A gateway with one catch-all route (plus `route`) to an echo upstream; returns both. */
const proxyWith = (route: Record<string, unknown>, handler?: UpstreamHandler) =>
  Effect.gen(function*() {
    const upstream = yield* startUpstream("a", handler === undefined ? {} : { handler })
    const gateway = yield* startGateway(simpleConfig([upstream.url], route))
    return { upstream, gateway }
  })

/** The request-target the upstream received for a request to `path`. */
const upstreamSees = (route: Record<string, unknown>, path: string) =>
  Effect.gen(function*() {
    const { upstream, gateway } = yield* proxyWith(route)
    const res = yield* send(gateway.url(path))
    assert.strictEqual(res.status, 200)
    assert.strictEqual(upstream.seen.length, 1)
    return upstream.seen[0].url
  })

describe("rewrites: path", () => {
  it.live("strip_prefix removes the prefix and keeps the query", () =>
    Effect.gen(function*() {
      assert.strictEqual(yield* upstreamSees({ rewrite: { strip_prefix: "/api" } }, "/api/users?x=1"), "/users?x=1")
    }))

  it.live("strip_prefix of the whole path leaves \"/\"", () =>
    Effect.gen(function*() {
      assert.strictEqual(yield* upstreamSees({ rewrite: { strip_prefix: "/api" } }, "/api"), "/")
    }))

  it.live("strip_prefix of the whole path leaves \"/\" and keeps the query", () =>
    Effect.gen(function*() {
      assert.strictEqual(yield* upstreamSees({ rewrite: { strip_prefix: "/api" } }, "/api?x=1"), "/?x=1")
    }))

  it.live("strip_prefix only strips on a segment boundary", () =>
    Effect.gen(function*() {
      assert.strictEqual(yield* upstreamSees({ rewrite: { strip_prefix: "/api" } }, "/apix/users"), "/apix/users")
    }))

  it.live("strip_prefix on a route matched by that prefix forwards the rest of the path", () =>
    Effect.gen(function*() {
      const route = { match: { path: { prefix: "/api" } }, rewrite: { strip_prefix: "/api" } }
      assert.strictEqual(yield* upstreamSees(route, "/api/v2/orders/7"), "/v2/orders/7")
    }))

  it.live("add_prefix prepends the prefix and keeps the query", () =>
    Effect.gen(function*() {
      assert.strictEqual(yield* upstreamSees({ rewrite: { add_prefix: "/v1" } }, "/users?x=1"), "/v1/users?x=1")
    }))

  it.live("strip_prefix and add_prefix together replace one prefix with another", () =>
    Effect.gen(function*() {
      const route = { rewrite: { strip_prefix: "/api", add_prefix: "/v1" } }
      assert.strictEqual(yield* upstreamSees(route, "/api/users?x=1"), "/v1/users?x=1")
    }))

  it.live("regex/replace rewrites the path with a $1 group and keeps the query", () =>
    Effect.gen(function*() {
      const route = { rewrite: { regex: "^/old/(.*)$", replace: "/new/$1" } }
      assert.strictEqual(yield* upstreamSees(route, "/old/a/b?x=1"), "/new/a/b?x=1")
    }))

  it.live("regex/replace leaves a path the regex does not match unchanged", () =>
    Effect.gen(function*() {
      const route = { rewrite: { regex: "^/old/(.*)$", replace: "/new/$1" } }
      assert.strictEqual(yield* upstreamSees(route, "/other/a"), "/other/a")
    }))
})

describe("rewrites: query", () => {
  it.live("a prefix rewrite forwards the query byte for byte, encoded characters included", () =>
    Effect.gen(function*() {
      const route = { rewrite: { strip_prefix: "/api", add_prefix: "/v1" } }
      assert.strictEqual(
        yield* upstreamSees(route, "/api/search?q=a%20b&r=%2F&s=%2e&t=a+b&u&u=2"),
        "/v1/search?q=a%20b&r=%2F&s=%2e&t=a+b&u&u=2"
      )
    }))

  it.live("a regex rewrite is applied to the path only, never to the query", () =>
    Effect.gen(function*() {
      // The regex would also match inside the query if it were applied to it.
      const route = { rewrite: { regex: "a", replace: "A" } }
      assert.strictEqual(yield* upstreamSees(route, "/a/search?q=a%20b&r=%2F"), "/A/search?q=a%20b&r=%2F")
    }))

  it.live("without a rewrite the query is forwarded byte for byte", () =>
    Effect.gen(function*() {
      assert.strictEqual(yield* upstreamSees({}, "/search?q=a%20b&r=%2F&x=%C3%A9"), "/search?q=a%20b&r=%2F&x=%C3%A9")
    }))
})

describe("rewrites: request headers", () => {
  it.live("request set replaces the client's value", () =>
    Effect.gen(function*() {
      const { upstream, gateway } = yield* proxyWith({ headers: { request: { set: { "X-Env": "prod" } } } })
      yield* send(gateway.url("/"), { headers: { "x-env": "dev" } })
      assert.deepStrictEqual(headerValues(upstream.seen[0].rawHeaders, "x-env"), ["prod"])
    }))

  it.live("request set adds the header when the client sent none", () =>
    Effect.gen(function*() {
      const { upstream, gateway } = yield* proxyWith({ headers: { request: { set: { "x-env": "prod" } } } })
      yield* send(gateway.url("/"))
      assert.deepStrictEqual(headerValues(upstream.seen[0].rawHeaders, "x-env"), ["prod"])
    }))

  it.live("request add sends the value alongside the client's", () =>
    Effect.gen(function*() {
      const { upstream, gateway } = yield* proxyWith({ headers: { request: { add: { "x-tag": "gateway" } } } })
      yield* send(gateway.url("/"), { headers: { "x-tag": "client" } })
      assert.deepStrictEqual(headerValues(upstream.seen[0].rawHeaders, "x-tag"), ["client", "gateway"])
    }))

  it.live("request remove drops the client's header whatever its case", () =>
    Effect.gen(function*() {
      const { upstream, gateway } = yield* proxyWith({ headers: { request: { remove: ["x-debug"] } } })
      yield* send(gateway.url("/"), { headers: { "X-Debug": "1", "x-keep": "yes" } })
      const raw = upstream.seen[0].rawHeaders
      assert.deepStrictEqual(headerValues(raw, "x-debug"), [])
      assert.deepStrictEqual(headerValues(raw, "x-keep"), ["yes"])
    }))
})

/** An upstream handler answering with the given extra headers (a flat name/value list). */
const answerWith = (extra: ReadonlyArray<string>): UpstreamHandler => (_req, res) => {
  res.writeHead(200, ["content-type", "text/plain", "content-length", "2", ...extra])
  res.end("ok")
}

describe("rewrites: response headers", () => {
  it.live("response set replaces the upstream's value", () =>
    Effect.gen(function*() {
      const { gateway } = yield* proxyWith(
        { headers: { response: { set: { "x-served-by": "gateway" } } } },
        answerWith(["X-Served-By", "app"])
      )
      const res = yield* send(gateway.url("/"))
      assert.deepStrictEqual(headerValues(res.rawHeaders, "x-served-by"), ["gateway"])
    }))

  it.live("response add sends the value alongside the upstream's", () =>
    Effect.gen(function*() {
      const { gateway } = yield* proxyWith(
        { headers: { response: { add: { "x-tag": "gateway" } } } },
        answerWith(["x-tag", "app"])
      )
      const res = yield* send(gateway.url("/"))
      assert.deepStrictEqual(headerValues(res.rawHeaders, "x-tag"), ["app", "gateway"])
    }))

  it.live("response remove drops the upstream's header", () =>
    Effect.gen(function*() {
      const { gateway } = yield* proxyWith(
        { headers: { response: { remove: ["X-Internal"] } } },
        answerWith(["x-internal", "secret", "x-public", "yes"])
      )
      const res = yield* send(gateway.url("/"))
      assert.deepStrictEqual(headerValues(res.rawHeaders, "x-internal"), [])
      assert.deepStrictEqual(headerValues(res.rawHeaders, "x-public"), ["yes"])
    }))

  it.live("two set-cookie headers from the upstream reach the client as two values", () =>
    Effect.gen(function*() {
      const { gateway } = yield* proxyWith({}, answerWith(["set-cookie", "a=1; Path=/", "set-cookie", "b=2; HttpOnly"]))
      const res = yield* send(gateway.url("/"))
      assert.deepStrictEqual(res.headers["set-cookie"], ["a=1; Path=/", "b=2; HttpOnly"])
    }))

  it.live("response add of a set-cookie keeps the upstream's cookies as separate values", () =>
    Effect.gen(function*() {
      const { gateway } = yield* proxyWith(
        { headers: { response: { add: { "set-cookie": "gw=1" } } } },
        answerWith(["set-cookie", "a=1", "set-cookie", "b=2"])
      )
      const res = yield* send(gateway.url("/"))
      assert.deepStrictEqual(res.headers["set-cookie"], ["a=1", "b=2", "gw=1"])
    }))
})
