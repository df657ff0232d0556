/**
 * Routing end to end: every match rule and the precedence between routes, through a real
 * listening gateway and real upstreams. Each upstream is named after its upstream group, so
 * the `x-upstream` response header says which route took the request.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { publishConfig } from "../../src/config/ConfigSource.ts"
import * as Gateway from "../../src/gateway/Gateway.ts"
import { startGateway, startUpstream, type TestGateway } from "../support/harness.ts"
import { send } from "../support/http.ts"
import { eventually, startLiveGateway } from "../support/liveGateway.ts"

/** Which upstream answered (its name), or the status code when none did. */
const routedTo = (
  gateway: TestGateway,
  path: string,
  init: { readonly method?: string; readonly headers?: Record<string, string>; readonly listener?: string } = {}
) =>
  send(gateway.url(path, init.listener), init).pipe(
    Effect.map((res) => {
      const upstream = res.headers["x-upstream"]
      return typeof upstream === "string" ? upstream : String(res.status)
    })
  )

/**
 * A gateway with one listener holding `routes`, and one single-endpoint upstream group per
 * name in `names`, each backed by an echo upstream of the same name.
 */
const gatewayWith = (routes: ReadonlyArray<Record<string, unknown>>, names: ReadonlyArray<string> = ["a", "b"]) =>
  Effect.gen(function*() {
    const upstreams: Record<string, unknown> = {}
    for (const name of names) {
      const upstream = yield* startUpstream(name)
      upstreams[name] = { endpoints: [{ url: upstream.url }] }
    }
    return yield* startGateway({
      log: { level: "none", access_log: false },
      servers: [{ name: "web", listen: "127.0.0.1:0", routes }],
      upstreams
    })
  })

const host = (name: string) => ({ headers: { host: name } })

describe("routing: host", () => {
  it.live("an exact host route takes requests for that host", () =>
    Effect.gen(function*() {
      const gateway = yield* gatewayWith([
        { id: "api", match: { host: "api.example.test" }, upstream: "a" },
        { id: "rest", upstream: "b" }
      ])
      assert.strictEqual(yield* routedTo(gateway, "/", host("api.example.test")), "a")
    }))

  it.live("an exact host route does not take requests for another host", () =>
    Effect.gen(function*() {
      const gateway = yield* gatewayWith([
        { id: "api", match: { host: "api.example.test" }, upstream: "a" },
        { id: "rest", upstream: "b" }
      ])
      assert.strictEqual(yield* routedTo(gateway, "/", host("www.example.test")), "b")
      assert.strictEqual(yield* routedTo(gateway, "/", host("api.example.test.evil")), "b")
    }))

  it.live("a wildcard host matches a subdomain", () =>
    Effect.gen(function*() {
      const gateway = yield* gatewayWith([
        { id: "wild", match: { host: "*.example.test" }, upstream: "a" },
        { id: "rest", upstream: "b" }
      ])
      assert.strictEqual(yield* routedTo(gateway, "/", host("shop.example.test")), "a")
    }))

  it.live("a wildcard host matches a sub-subdomain", () =>
    Effect.gen(function*() {
      const gateway = yield* gatewayWith([
        { id: "wild", match: { host: "*.example.test" }, upstream: "a" },
        { id: "rest", upstream: "b" }
      ])
      assert.strictEqual(yield* routedTo(gateway, "/", host("eu.shop.example.test")), "a")
    }))

  it.live("a wildcard host does not match the apex domain", () =>
    Effect.gen(function*() {
      const gateway = yield* gatewayWith([
        { id: "wild", match: { host: "*.example.test" }, upstream: "a" },
        { id: "rest", upstream: "b" }
      ])
      assert.strictEqual(yield* routedTo(gateway, "/", host("example.test")), "b")
    }))

  it.live("a wildcard host does not match a host that merely ends with the same letters", () =>
    Effect.gen(function*() {
      const gateway = yield* gatewayWith([
        { id: "wild", match: { host: "*.example.test" }, upstream: "a" },
        { id: "rest", upstream: "b" }
      ])
      assert.strictEqual(yield* routedTo(gateway, "/", host("myexample.test")), "b")
    }))

  it.live("the Host header is matched case-insensitively", () =>
    Effect.gen(function*() {
      const gateway = yield* gatewayWith([
        { id: "api", match: { host: "api.example.test" }, upstream: "a" },
        { id: "rest", upstream: "b" }
      ])
      assert.strictEqual(yield* routedTo(gateway, "/", host("API.Example.TEST")), "a")
    }))

  it.live("a host pattern written in upper case matches a lower-case Host", () =>
    Effect.gen(function*() {
      const gateway = yield* gatewayWith([
        { id: "api", match: { host: "API.Example.test" }, upstream: "a" },
        { id: "wild", match: { host: "*.Wild.TEST" }, upstream: "b" },
        { id: "rest", upstream: "c" }
      ], ["a", "b", "c"])
      assert.strictEqual(yield* routedTo(gateway, "/", host("api.example.test")), "a")
      assert.strictEqual(yield* routedTo(gateway, "/", host("x.wild.test")), "b")
    }))

  it.live("the port in the Host header is ignored", () =>
    Effect.gen(function*() {
      const gateway = yield* gatewayWith([
        { id: "api", match: { host: "api.example.test" }, upstream: "a" },
        { id: "wild", match: { host: "*.example.test" }, upstream: "b" },
        { id: "rest", upstream: "c" }
      ], ["a", "b", "c"])
      assert.strictEqual(yield* routedTo(gateway, "/", host("api.example.test:8443")), "a")
      assert.strictEqual(yield* routedTo(gateway, "/", host("www.example.test:8080")), "b")
    }))
})

describe("routing: path", () => {
  it.live("an exact path matches only that path", () =>
    Effect.gen(function*() {
      const gateway = yield* gatewayWith([
        { id: "health", match: { path: { exact: "/health" } }, upstream: "a" },
        { id: "rest", upstream: "b" }
      ])
      assert.strictEqual(yield* routedTo(gateway, "/health"), "a")
      assert.strictEqual(yield* routedTo(gateway, "/health?verbose=1"), "a")
      assert.strictEqual(yield* routedTo(gateway, "/health/"), "b")
      assert.strictEqual(yield* routedTo(gateway, "/health/live"), "b")
      assert.strictEqual(yield* routedTo(gateway, "/healthz"), "b")
    }))

  it.live("a prefix matches the prefix itself and every path below it", () =>
    Effect.gen(function*() {
      const gateway = yield* gatewayWith([
        { id: "api", match: { path: { prefix: "/api" } }, upstream: "a" },
        { id: "rest", upstream: "b" }
      ])
      assert.strictEqual(yield* routedTo(gateway, "/api"), "a")
      assert.strictEqual(yield* routedTo(gateway, "/api/"), "a")
      assert.strictEqual(yield* routedTo(gateway, "/api/x"), "a")
      assert.strictEqual(yield* routedTo(gateway, "/api/x/y?z=1"), "a")
    }))

  it.live("a prefix matches only on a segment boundary", () =>
    Effect.gen(function*() {
      const gateway = yield* gatewayWith([
        { id: "api", match: { path: { prefix: "/api" } }, upstream: "a" },
        { id: "rest", upstream: "b" }
      ])
      assert.strictEqual(yield* routedTo(gateway, "/apix"), "b")
      assert.strictEqual(yield* routedTo(gateway, "/apix/y"), "b")
      assert.strictEqual(yield* routedTo(gateway, "/ap"), "b")
    }))

  it.live("a regex path matches the paths its pattern accepts", () =>
    Effect.gen(function*() {
      // No catch-all here, so a path the regex rejects gets 404.
      const gateway = yield* gatewayWith([{ id: "user", match: { path: { regex: "^/users/[0-9]+$" } }, upstream: "a" }], ["a"])
      assert.strictEqual(yield* routedTo(gateway, "/users/42"), "a")
      assert.strictEqual(yield* routedTo(gateway, "/users/abc"), "404")
      assert.strictEqual(yield* routedTo(gateway, "/users/42/posts"), "404")
    }))

  it.live("a regex path is tested against the path without the query string", () =>
    Effect.gen(function*() {
      const gateway = yield* gatewayWith([{ id: "user", match: { path: { regex: "^/users/[0-9]+$" } }, upstream: "a" }], ["a"])
      assert.strictEqual(yield* routedTo(gateway, "/users/42?tab=posts"), "a")
    }))
})

describe("routing: methods", () => {
  it.live("a methods condition admits only the listed methods", () =>
    Effect.gen(function*() {
      const gateway = yield* gatewayWith([
        { id: "write", match: { methods: ["POST", "PUT"] }, upstream: "a" },
        { id: "rest", upstream: "b" }
      ])
      assert.strictEqual(yield* routedTo(gateway, "/items", { method: "POST" }), "a")
      assert.strictEqual(yield* routedTo(gateway, "/items", { method: "PUT" }), "a")
      assert.strictEqual(yield* routedTo(gateway, "/items", { method: "GET" }), "b")
      assert.strictEqual(yield* routedTo(gateway, "/items", { method: "DELETE" }), "b")
    }))
})

describe("routing: header conditions", () => {
  it.live("a header value condition requires exactly that value", () =>
    Effect.gen(function*() {
      const gateway = yield* gatewayWith([
        { id: "canary", match: { headers: { "x-canary": "true" } }, upstream: "a" },
        { id: "rest", upstream: "b" }
      ])
      assert.strictEqual(yield* routedTo(gateway, "/", { headers: { "x-canary": "true" } }), "a")
      assert.strictEqual(yield* routedTo(gateway, "/", { headers: { "x-canary": "false" } }), "b")
      assert.strictEqual(yield* routedTo(gateway, "/", { headers: { "x-canary": "true2" } }), "b")
      assert.strictEqual(yield* routedTo(gateway, "/"), "b")
    }))

  it.live("a header condition's name is case-insensitive", () =>
    Effect.gen(function*() {
      const gateway = yield* gatewayWith([
        { id: "canary", match: { headers: { "X-Canary": "true" } }, upstream: "a" },
        { id: "rest", upstream: "b" }
      ])
      assert.strictEqual(yield* routedTo(gateway, "/", { headers: { "x-CANARY": "true" } }), "a")
    }))

  it.live("a header { present: true } condition requires the header with any value", () =>
    Effect.gen(function*() {
      const gateway = yield* gatewayWith([
        { id: "auth", match: { headers: { authorization: { present: true } } }, upstream: "a" },
        { id: "rest", upstream: "b" }
      ])
      assert.strictEqual(yield* routedTo(gateway, "/", { headers: { authorization: "Bearer x" } }), "a")
      assert.strictEqual(yield* routedTo(gateway, "/", { headers: { authorization: "" } }), "a")
      assert.strictEqual(yield* routedTo(gateway, "/"), "b")
    }))

  it.live("a header { present: false } condition requires the header to be absent", () =>
    Effect.gen(function*() {
      const gateway = yield* gatewayWith([
        { id: "anonymous", match: { headers: { authorization: { present: false } } }, upstream: "a" },
        { id: "rest", upstream: "b" }
      ])
      assert.strictEqual(yield* routedTo(gateway, "/"), "a")
      assert.strictEqual(yield* routedTo(gateway, "/", { headers: { authorization: "Bearer x" } }), "b")
    }))

  it.live("a header { regex } condition requires a value the pattern accepts", () =>
    Effect.gen(function*() {
      const gateway = yield* gatewayWith([
        { id: "mobile", match: { headers: { "user-agent": { regex: "^MyApp/[0-9]+\\." } } }, upstream: "a" },
        { id: "rest", upstream: "b" }
      ])
      assert.strictEqual(yield* routedTo(gateway, "/", { headers: { "user-agent": "MyApp/3.1 (iOS)" } }), "a")
      assert.strictEqual(yield* routedTo(gateway, "/", { headers: { "user-agent": "curl/8.0" } }), "b")
      assert.strictEqual(yield* routedTo(gateway, "/", { headers: { "user-agent": "MyApp/beta" } }), "b")
    }))

  it.live("a header { regex } condition is not met when the header is absent", () =>
    Effect.gen(function*() {
      const gateway = yield* gatewayWith([
        { id: "any", match: { headers: { "x-tenant": { regex: ".*" } } }, upstream: "a" },
        { id: "rest", upstream: "b" }
      ])
      assert.strictEqual(yield* routedTo(gateway, "/", { headers: { "x-tenant": "t1" } }), "a")
      assert.strictEqual(yield* routedTo(gateway, "/"), "b")
    }))

  it.live("every header condition of a route must hold", () =>
    Effect.gen(function*() {
      const gateway = yield* gatewayWith([
        { id: "both", match: { headers: { "x-a": "1", "x-b": { present: true } } }, upstream: "a" },
        { id: "rest", upstream: "b" }
      ])
      assert.strictEqual(yield* routedTo(gateway, "/", { headers: { "x-a": "1", "x-b": "z" } }), "a")
      assert.strictEqual(yield* routedTo(gateway, "/", { headers: { "x-a": "1" } }), "b")
      assert.strictEqual(yield* routedTo(gateway, "/", { headers: { "x-b": "z" } }), "b")
    }))
})

describe("routing: query conditions", () => {
  it.live("a query value condition requires exactly that value", () =>
    Effect.gen(function*() {
      const gateway = yield* gatewayWith([
        { id: "v2", match: { query: { version: "2" } }, upstream: "a" },
        { id: "rest", upstream: "b" }
      ])
      assert.strictEqual(yield* routedTo(gateway, "/items?version=2"), "a")
      assert.strictEqual(yield* routedTo(gateway, "/items?a=1&version=2&b=3"), "a")
      assert.strictEqual(yield* routedTo(gateway, "/items?version=1"), "b")
      assert.strictEqual(yield* routedTo(gateway, "/items?version=20"), "b")
      assert.strictEqual(yield* routedTo(gateway, "/items"), "b")
    }))

  it.live("a query value condition compares the decoded value", () =>
    Effect.gen(function*() {
      const gateway = yield* gatewayWith([
        { id: "space", match: { query: { q: "a b" } }, upstream: "a" },
        { id: "rest", upstream: "b" }
      ])
      assert.strictEqual(yield* routedTo(gateway, "/search?q=a%20b"), "a")
      assert.strictEqual(yield* routedTo(gateway, "/search?q=a+b"), "a")
    }))

  it.live("a query { present: true } condition requires the parameter with any value", () =>
    Effect.gen(function*() {
      const gateway = yield* gatewayWith([
        { id: "debug", match: { query: { debug: { present: true } } }, upstream: "a" },
        { id: "rest", upstream: "b" }
      ])
      assert.strictEqual(yield* routedTo(gateway, "/?debug=1"), "a")
      assert.strictEqual(yield* routedTo(gateway, "/?debug"), "a")
      assert.strictEqual(yield* routedTo(gateway, "/?x=1"), "b")
      assert.strictEqual(yield* routedTo(gateway, "/"), "b")
    }))

  it.live("a query { present: false } condition requires the parameter to be absent", () =>
    Effect.gen(function*() {
      const gateway = yield* gatewayWith([
        { id: "nodebug", match: { query: { debug: { present: false } } }, upstream: "a" },
        { id: "rest", upstream: "b" }
      ])
      assert.strictEqual(yield* routedTo(gateway, "/?x=1"), "a")
      assert.strictEqual(yield* routedTo(gateway, "/?debug=1"), "b")
    }))

  it.live("a query { regex } condition requires a value the pattern accepts", () =>
    Effect.gen(function*() {
      const gateway = yield* gatewayWith([
        { id: "numeric", match: { query: { page: { regex: "^[0-9]+$" } } }, upstream: "a" },
        { id: "rest", upstream: "b" }
      ])
      assert.strictEqual(yield* routedTo(gateway, "/list?page=12"), "a")
      assert.strictEqual(yield* routedTo(gateway, "/list?page=last"), "b")
      assert.strictEqual(yield* routedTo(gateway, "/list"), "b")
    }))
})

describe("routing: precedence", () => {
  // Declared in the reverse of the order they are tried in, so declaration order alone would
  // pick the wrong one: exact, then regex, then the longest prefix.
  const ranked = [
    { id: "short", match: { path: { prefix: "/api" } }, upstream: "b" },
    { id: "long", match: { path: { prefix: "/api/users" } }, upstream: "c" },
    { id: "regex", match: { path: { regex: "^/api/users/[a-z0-9]+$" } }, upstream: "a" },
    { id: "exact", match: { path: { exact: "/api/users/me" } }, upstream: "d" }
  ]

  it.live("an exact path beats regexes and prefixes declared before it", () =>
    Effect.gen(function*() {
      const gateway = yield* gatewayWith(ranked, ["a", "b", "c", "d"])
      assert.strictEqual(yield* routedTo(gateway, "/api/users/me"), "d")
    }))

  it.live("a regex beats every prefix, even a longer one declared before it", () =>
    Effect.gen(function*() {
      const gateway = yield* gatewayWith(ranked, ["a", "b", "c", "d"])
      assert.strictEqual(yield* routedTo(gateway, "/api/users/42"), "a")
    }))

  it.live("the longest matching prefix wins over a shorter one declared before it", () =>
    Effect.gen(function*() {
      const gateway = yield* gatewayWith(ranked, ["a", "b", "c", "d"])
      assert.strictEqual(yield* routedTo(gateway, "/api/users"), "c")
      assert.strictEqual(yield* routedTo(gateway, "/api/users/42/posts"), "c")
      assert.strictEqual(yield* routedTo(gateway, "/api/orders"), "b")
    }))

  it.live("between regex routes the first declared wins", () =>
    Effect.gen(function*() {
      const gateway = yield* gatewayWith([
        { id: "first", match: { path: { regex: "^/files/" } }, upstream: "a" },
        { id: "second", match: { path: { regex: "\\.png$" } }, upstream: "b" }
      ])
      assert.strictEqual(yield* routedTo(gateway, "/files/logo.png"), "a")
      assert.strictEqual(yield* routedTo(gateway, "/img/logo.png"), "b")
    }))

  it.live("between routes with the same path the first declared wins", () =>
    Effect.gen(function*() {
      const gateway = yield* gatewayWith([
        { id: "first", match: { path: { prefix: "/api" } }, upstream: "a" },
        { id: "second", match: { path: { prefix: "/api" } }, upstream: "b" }
      ])
      assert.strictEqual(yield* routedTo(gateway, "/api/x"), "a")
    }))

  it.live("a regex route declared before a catch-all prefix \"/\" takes the paths it matches", () =>
    Effect.gen(function*() {
      const gateway = yield* gatewayWith([
        { id: "versioned", match: { path: { regex: "^/v[0-9]+/" } }, upstream: "a" },
        { id: "rest", match: { path: { prefix: "/" } }, upstream: "b" }
      ])
      assert.strictEqual(yield* routedTo(gateway, "/v2/things"), "a")
      assert.strictEqual(yield* routedTo(gateway, "/things"), "b")
    }))

  it.live("a route with a higher priority is tried before the path rule's order", () =>
    Effect.gen(function*() {
      const gateway = yield* gatewayWith([
        { id: "login", match: { path: { exact: "/v1/login" } }, upstream: "a" },
        { id: "versioned", match: { path: { regex: "^/v[0-9]+/" } }, upstream: "b" },
        { id: "maintenance", priority: 10, match: { path: { prefix: "/v1" } }, upstream: "c" }
      ], ["a", "b", "c"])
      assert.strictEqual(yield* routedTo(gateway, "/v1/login"), "c")
      assert.strictEqual(yield* routedTo(gateway, "/v1/things"), "c")
      assert.strictEqual(yield* routedTo(gateway, "/v2/things"), "b")
    }))

  it.live("an exact host beats a wildcard host, which beats a route without host", () =>
    Effect.gen(function*() {
      const gateway = yield* gatewayWith([
        { id: "any", upstream: "c" },
        { id: "wild", match: { host: "*.example.test" }, upstream: "b" },
        { id: "api", match: { host: "api.example.test" }, upstream: "a" }
      ], ["a", "b", "c"])
      assert.strictEqual(yield* routedTo(gateway, "/", host("api.example.test")), "a")
      assert.strictEqual(yield* routedTo(gateway, "/", host("www.example.test")), "b")
      assert.strictEqual(yield* routedTo(gateway, "/", host("other.test")), "c")
    }))

  it.live("the wildcard with the longest suffix wins", () =>
    Effect.gen(function*() {
      const gateway = yield* gatewayWith([
        { id: "wide", match: { host: "*.example.test" }, upstream: "a" },
        { id: "narrow", match: { host: "*.eu.example.test" }, upstream: "b" }
      ])
      assert.strictEqual(yield* routedTo(gateway, "/", host("shop.eu.example.test")), "b")
      assert.strictEqual(yield* routedTo(gateway, "/", host("shop.us.example.test")), "a")
    }))

  it.live("the host is decided before the path: a host route beats a no-host route with a more specific path", () =>
    Effect.gen(function*() {
      const gateway = yield* gatewayWith([
        { id: "exact-path", match: { path: { exact: "/login" } }, upstream: "b" },
        { id: "api", match: { host: "api.example.test" }, upstream: "a" }
      ])
      assert.strictEqual(yield* routedTo(gateway, "/login", host("api.example.test")), "a")
      assert.strictEqual(yield* routedTo(gateway, "/login", host("www.example.test")), "b")
    }))
})

describe("routing: fall-through", () => {
  it.live("a route whose method does not fit falls through to the next path candidate", () =>
    Effect.gen(function*() {
      const gateway = yield* gatewayWith([
        { id: "login-post", match: { path: { exact: "/login" }, methods: ["POST"] }, upstream: "a" },
        { id: "rest", match: { path: { prefix: "/" } }, upstream: "b" }
      ])
      assert.strictEqual(yield* routedTo(gateway, "/login", { method: "POST" }), "a")
      assert.strictEqual(yield* routedTo(gateway, "/login", { method: "GET" }), "b")
    }))

  it.live("a route whose header condition fails falls through to a less specific prefix", () =>
    Effect.gen(function*() {
      const gateway = yield* gatewayWith([
        { id: "beta", match: { path: { prefix: "/api/v2" }, headers: { "x-beta": "1" } }, upstream: "a" },
        { id: "api", match: { path: { prefix: "/api" } }, upstream: "b" }
      ])
      assert.strictEqual(yield* routedTo(gateway, "/api/v2/x", { headers: { "x-beta": "1" } }), "a")
      assert.strictEqual(yield* routedTo(gateway, "/api/v2/x"), "b")
    }))

  it.live("a route whose query condition fails falls through to the next route with the same path", () =>
    Effect.gen(function*() {
      const gateway = yield* gatewayWith([
        { id: "v2", match: { path: { prefix: "/api" }, query: { v: "2" } }, upstream: "a" },
        { id: "v1", match: { path: { prefix: "/api" } }, upstream: "b" }
      ])
      assert.strictEqual(yield* routedTo(gateway, "/api/x?v=2"), "a")
      assert.strictEqual(yield* routedTo(gateway, "/api/x?v=1"), "b")
    }))

  it.live("a host route whose conditions fail falls through to the wildcard and then the no-host routes", () =>
    Effect.gen(function*() {
      const gateway = yield* gatewayWith([
        { id: "api", match: { host: "api.example.test", methods: ["POST"] }, upstream: "a" },
        { id: "wild", match: { host: "*.example.test", headers: { "x-wild": "1" } }, upstream: "b" },
        { id: "any", upstream: "c" }
      ], ["a", "b", "c"])
      assert.strictEqual(yield* routedTo(gateway, "/", { method: "POST", headers: { host: "api.example.test" } }), "a")
      assert.strictEqual(yield* routedTo(gateway, "/", { headers: { host: "api.example.test", "x-wild": "1" } }), "b")
      assert.strictEqual(yield* routedTo(gateway, "/", { headers: { host: "api.example.test" } }), "c")
    }))

  it.live("a regex route whose method does not fit falls through to the prefix routes", () =>
    Effect.gen(function*() {
      const gateway = yield* gatewayWith([
        { id: "upload", match: { path: { regex: "^/files/[0-9]+$" }, methods: ["PUT"] }, upstream: "a" },
        { id: "rest", match: { path: { prefix: "/" } }, upstream: "b" }
      ])
      assert.strictEqual(yield* routedTo(gateway, "/files/7", { method: "PUT" }), "a")
      assert.strictEqual(yield* routedTo(gateway, "/files/7"), "b")
    }))

  it.live("a regex route whose conditions fail falls through to the next regex", () =>
    Effect.gen(function*() {
      const gateway = yield* gatewayWith([
        { id: "first", match: { path: { regex: "^/r/" }, methods: ["DELETE"] }, upstream: "a" },
        { id: "second", match: { path: { regex: "^/r/" } }, upstream: "b" }
      ])
      assert.strictEqual(yield* routedTo(gateway, "/r/1", { method: "DELETE" }), "a")
      assert.strictEqual(yield* routedTo(gateway, "/r/1"), "b")
    }))
})

describe("routing: no match", () => {
  it.live("a request no route matches gets 404 with a RouteNotFound JSON body and reaches no upstream", () =>
    Effect.gen(function*() {
      const upstream = yield* startUpstream("a")
      const gateway = yield* startGateway({
        log: { level: "none", access_log: false },
        servers: [{ name: "web", listen: "127.0.0.1:0", routes: [{ id: "api", match: { path: { prefix: "/api" } }, upstream: "a" }] }],
        upstreams: { a: { endpoints: [{ url: upstream.url }] } }
      })
      const res = yield* send(gateway.url("/other"))
      assert.strictEqual(res.status, 404)
      assert.strictEqual(res.headers["content-type"], "application/json")
      assert.strictEqual(JSON.parse(res.body).error, "RouteNotFound")
      assert.strictEqual(upstream.seen.length, 0)
    }))
})

describe("routing: routes that can never match", () => {
  const configWith = (upstream: string, routes: ReadonlyArray<Record<string, unknown>>) => ({
    log: { level: "none", access_log: false },
    servers: [{ name: "web", listen: "127.0.0.1:0", routes }],
    upstreams: { a: { endpoints: [{ url: upstream }] } }
  })
  const never = (logs: ReadonlyArray<{ readonly level: string; readonly message: string }>) =>
    logs.filter((l) => l.level === "Warn" && l.message.includes("never matches")).map((l) => l.message)

  it.live("start and every reload log a warning for each route that can never match, and still serve", () =>
    Effect.gen(function*() {
      const upstream = yield* startUpstream("a")
      const gateway = yield* startLiveGateway(Gateway.layer(configWith(upstream.url, [
        { id: "api", match: { path: { prefix: "/api" } }, upstream: "a" },
        { id: "api-again", match: { path: { prefix: "/api" } }, upstream: "a" }
      ])))
      assert.deepStrictEqual(never(gateway.logs), [
        "<value>: servers[0].routes[1] (id \"api-again\"): never matches: shadowed by routes[0] (id \"api\"): " +
        "same host and path, declared first, no method, header or query conditions"
      ])

      yield* publishConfig(gateway.source, configWith(upstream.url, [
        { id: "root", priority: 1, match: { path: { prefix: "/" } }, upstream: "a" },
        { id: "api", match: { path: { prefix: "/api" } }, upstream: "a" }
      ]), "test")
      yield* eventually(Effect.sync(() => gateway.routes.generation() === 2), "the reload is applied")
      assert.deepStrictEqual(never(gateway.logs).slice(1), [
        "<value>: servers[0].routes[1] (id \"api\"): never matches: shadowed by routes[0] (id \"root\"): " +
        "its prefix \"/\" covers prefix \"/api\", higher priority (1 > 0), no method, header or query conditions"
      ])
      const res = yield* send(`http://127.0.0.1:${gateway.port("web")}/api/x`)
      assert.strictEqual(res.status, 200)
    }))

  it.live("a config whose routes can all match logs no such warning", () =>
    Effect.gen(function*() {
      const upstream = yield* startUpstream("a")
      const gateway = yield* startLiveGateway(Gateway.layer(configWith(upstream.url, [
        { id: "versioned", match: { path: { regex: "^/v[0-9]+/" } }, upstream: "a" },
        { id: "post", match: { path: { prefix: "/" }, methods: ["POST"] }, upstream: "a" },
        { id: "rest", match: { path: { prefix: "/" } }, upstream: "a" }
      ])))
      assert.deepStrictEqual(never(gateway.logs), [])
    }))
})

describe("routing: listeners", () => {
  it.live("two listeners route independently, each with its own routes", () =>
    Effect.gen(function*() {
      const a = yield* startUpstream("a")
      const b = yield* startUpstream("b")
      const gateway = yield* startGateway({
        log: { level: "none", access_log: false },
        servers: [
          { name: "public", listen: "127.0.0.1:0", routes: [{ id: "pub", match: { path: { prefix: "/shop" } }, upstream: "a" }] },
          { name: "internal", listen: "127.0.0.1:0", routes: [{ id: "int", match: { path: { prefix: "/admin" } }, upstream: "b" }] }
        ],
        upstreams: { a: { endpoints: [{ url: a.url }] }, b: { endpoints: [{ url: b.url }] } }
      })
      assert.notStrictEqual(gateway.ports.get("public"), gateway.ports.get("internal"))
      assert.strictEqual(yield* routedTo(gateway, "/shop/cart", { listener: "public" }), "a")
      assert.strictEqual(yield* routedTo(gateway, "/admin/users", { listener: "internal" }), "b")
      assert.strictEqual(yield* routedTo(gateway, "/admin/users", { listener: "public" }), "404")
      assert.strictEqual(yield* routedTo(gateway, "/shop/cart", { listener: "internal" }), "404")
    }))
})
