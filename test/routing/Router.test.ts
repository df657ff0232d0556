import fc from "fast-check"
import { describe, expect, it } from "vitest"
import type { PathMatch, ValueMatch } from "../../src/config/Schema.ts"
import { compileRouter, type RouteMatchSpec, type RouteRequest } from "../../src/routing/Router.ts"

interface Req {
  readonly host?: string
  readonly path?: string
  readonly method?: string
  readonly query?: string
  readonly headers?: Readonly<Record<string, string>>
}

const req = (r: Req = {}): RouteRequest => ({
  host: r.host ?? "",
  path: r.path ?? "/",
  method: r.method ?? "GET",
  query: r.query ?? "",
  header: (name) => r.headers?.[name]
})

/** Compiles routes whose values are their ids. */
const router = (routes: ReadonlyArray<readonly [string, RouteMatchSpec]>) =>
  compileRouter(routes.map(([id, match]) => ({ match, value: id })))

describe("Router: path precedence", () => {
  it("an exact path beats a prefix that also matches", () => {
    const r = router([
      ["prefix", { path: { prefix: "/api" } }],
      ["exact", { path: { exact: "/api/login" } }]
    ])
    expect(r.find(req({ path: "/api/login" }))).toBe("exact")
    expect(r.find(req({ path: "/api/logout" }))).toBe("prefix")
  })

  it("the longest matching prefix wins regardless of declaration order", () => {
    const r = router([
      ["short", { path: { prefix: "/a" } }],
      ["long", { path: { prefix: "/a/b" } }],
      ["root", { path: { prefix: "/" } }]
    ])
    expect(r.find(req({ path: "/a/b/c" }))).toBe("long")
    expect(r.find(req({ path: "/a/c" }))).toBe("short")
    expect(r.find(req({ path: "/x" }))).toBe("root")
  })

  it("a prefix without a trailing slash matches itself and sub-paths, not a longer segment", () => {
    const r = router([["api", { path: { prefix: "/api" } }]])
    expect(r.find(req({ path: "/api" }))).toBe("api")
    expect(r.find(req({ path: "/api/" }))).toBe("api")
    expect(r.find(req({ path: "/api/x" }))).toBe("api")
    expect(r.find(req({ path: "/apix" }))).toBeUndefined()
  })

  it("a prefix with a trailing slash matches sub-paths but not the path without the slash", () => {
    const r = router([["api", { path: { prefix: "/api/" } }]])
    expect(r.find(req({ path: "/api/x" }))).toBe("api")
    expect(r.find(req({ path: "/api/" }))).toBe("api")
    expect(r.find(req({ path: "/api" }))).toBeUndefined()
  })

  it("a regex path is tried after exact paths and before every prefix", () => {
    const r = router([
      ["prefix", { path: { prefix: "/a" } }],
      ["regex", { path: { regex: "^/a/y" } }],
      ["exact", { path: { exact: "/a/y" } }]
    ])
    expect(r.find(req({ path: "/a/y" }))).toBe("exact")
    expect(r.find(req({ path: "/a/yz" }))).toBe("regex")
    expect(r.find(req({ path: "/a/z" }))).toBe("prefix")
  })

  it("a regex route declared before a catch-all prefix \"/\" takes the paths it matches", () => {
    const r = router([
      ["versioned", { path: { regex: "^/v[0-9]+/" } }],
      ["rest", { path: { prefix: "/" } }]
    ])
    expect(r.find(req({ path: "/v2/things" }))).toBe("versioned")
    expect(r.find(req({ path: "/things" }))).toBe("rest")
  })

  it("a regex route declared after a catch-all prefix \"/\" also takes the paths it matches", () => {
    const r = router([
      ["rest", {}],
      ["versioned", { path: { regex: "^/v[0-9]+/" } }]
    ])
    expect(r.find(req({ path: "/v2/things" }))).toBe("versioned")
    expect(r.find(req({ path: "/things" }))).toBe("rest")
  })

  it("declaration order breaks ties between equally specific routes", () => {
    const r = router([
      ["first", { path: { prefix: "/a" } }],
      ["second", { path: { prefix: "/a" } }],
      ["re1", { path: { regex: "x$" } }],
      ["re2", { path: { regex: "^/x" } }]
    ])
    expect(r.find(req({ path: "/a/b" }))).toBe("first")
    expect(r.find(req({ path: "/x" }))).toBe("re1")
    expect(r.find(req({ path: "/xy" }))).toBe("re2")
  })

  it("a route without a path matches every path like prefix \"/\"", () => {
    const r = router([
      ["any", {}],
      ["root", { path: { prefix: "/" } }]
    ])
    expect(r.find(req({ path: "/" }))).toBe("any")
    expect(r.find(req({ path: "/deep/path/" }))).toBe("any")
    const reversed = router([
      ["root", { path: { prefix: "/" } }],
      ["any", {}]
    ])
    expect(reversed.find(req({ path: "/deep/path/" }))).toBe("root")
  })

  it("a longer prefix beats a route without a path", () => {
    const r = router([
      ["any", {}],
      ["a", { path: { prefix: "/a" } }]
    ])
    expect(r.find(req({ path: "/a/b" }))).toBe("a")
    expect(r.find(req({ path: "/b" }))).toBe("any")
  })

  it("returns undefined when nothing matches", () => {
    const r = router([
      ["exact", { path: { exact: "/a" } }],
      ["host", { host: "a.com" }]
    ])
    expect(r.find(req({ path: "/b" }))).toBeUndefined()
    expect(router([]).find(req())).toBeUndefined()
  })
})

describe("Router: host precedence", () => {
  it("an exact host beats *.suffix, which beats no host", () => {
    const r = router([
      ["none", {}],
      ["wild", { host: "*.example.com" }],
      ["exact", { host: "api.example.com" }]
    ])
    expect(r.find(req({ host: "api.example.com" }))).toBe("exact")
    expect(r.find(req({ host: "www.example.com" }))).toBe("wild")
    expect(r.find(req({ host: "other.org" }))).toBe("none")
  })

  it("host class is decided before path class", () => {
    const r = router([
      ["none-exact", { path: { exact: "/a" } }],
      ["host-regex", { host: "a.com", path: { regex: "^/" } }]
    ])
    expect(r.find(req({ host: "a.com", path: "/a" }))).toBe("host-regex")
  })

  it("the longer wildcard suffix wins", () => {
    const r = router([
      ["short", { host: "*.com" }],
      ["long", { host: "*.example.com" }]
    ])
    expect(r.find(req({ host: "a.example.com" }))).toBe("long")
    expect(r.find(req({ host: "a.other.com" }))).toBe("short")
  })

  it("*.example.com matches one or more labels in front but not example.com itself", () => {
    const r = router([["wild", { host: "*.example.com" }]])
    expect(r.find(req({ host: "a.example.com" }))).toBe("wild")
    expect(r.find(req({ host: "a.b.example.com" }))).toBe("wild")
    expect(r.find(req({ host: "example.com" }))).toBeUndefined()
    expect(r.find(req({ host: "aexample.com" }))).toBeUndefined()
    expect(r.find(req({ host: "" }))).toBeUndefined()
  })

  it("a route with a host does not match other hosts or a request without a host", () => {
    const r = router([["h", { host: "a.com" }]])
    expect(r.find(req({ host: "b.com" }))).toBeUndefined()
    expect(r.find(req({ host: "" }))).toBeUndefined()
  })

  it("host matching is case-insensitive for mixed-case spec hosts", () => {
    const r = router([
      ["exact", { host: "API.Example.COM" }],
      ["wild", { host: "*.Example.Com" }]
    ])
    expect(r.find(req({ host: "api.example.com" }))).toBe("exact")
    expect(r.find(req({ host: "www.example.com" }))).toBe("wild")
  })
})

describe("Router: conditions", () => {
  it("methods restricts a route to the listed methods", () => {
    const r = router([["post", { methods: ["POST", "PUT"] }]])
    expect(r.find(req({ method: "POST" }))).toBe("post")
    expect(r.find(req({ method: "PUT" }))).toBe("post")
    expect(r.find(req({ method: "GET" }))).toBeUndefined()
  })

  it("a header condition with a string requires that exact value", () => {
    const r = router([["h", { headers: { "X-Env": "prod" } }]])
    expect(r.find(req({ headers: { "x-env": "prod" } }))).toBe("h")
    expect(r.find(req({ headers: { "x-env": "Prod" } }))).toBeUndefined()
    expect(r.find(req({ headers: { "x-env": "prod2" } }))).toBeUndefined()
    expect(r.find(req())).toBeUndefined()
  })

  it("a header condition {present: true} requires the header, whatever its value", () => {
    const r = router([["h", { headers: { "x-a": { present: true } } }]])
    expect(r.find(req({ headers: { "x-a": "" } }))).toBe("h")
    expect(r.find(req({ headers: { "x-a": "anything" } }))).toBe("h")
    expect(r.find(req())).toBeUndefined()
  })

  it("a header condition {present: false} requires the header to be absent", () => {
    const r = router([["h", { headers: { "x-a": { present: false } } }]])
    expect(r.find(req())).toBe("h")
    expect(r.find(req({ headers: { "x-a": "" } }))).toBeUndefined()
  })

  it("a header condition {regex} requires a present header matching the regex", () => {
    const r = router([["h", { headers: { "x-v": { regex: "^v[0-9]+$" } } }]])
    expect(r.find(req({ headers: { "x-v": "v12" } }))).toBe("h")
    expect(r.find(req({ headers: { "x-v": "v" } }))).toBeUndefined()
    expect(r.find(req())).toBeUndefined()
  })

  it("all header conditions of a route must hold", () => {
    const r = router([["h", { headers: { "x-a": "1", "x-b": { present: true } } }]])
    expect(r.find(req({ headers: { "x-a": "1", "x-b": "" } }))).toBe("h")
    expect(r.find(req({ headers: { "x-a": "1" } }))).toBeUndefined()
  })

  it("a query condition with a string requires that URL-decoded value", () => {
    const r = router([["q", { query: { name: "a b/c" } }]])
    expect(r.find(req({ query: "?name=a%20b%2Fc" }))).toBe("q")
    expect(r.find(req({ query: "?x=1&name=a+b/c" }))).toBe("q")
    expect(r.find(req({ query: "?name=ab" }))).toBeUndefined()
    expect(r.find(req({ query: "" }))).toBeUndefined()
  })

  it("a query condition {present} tests whether the parameter is there", () => {
    const present = router([["q", { query: { debug: { present: true } } }]])
    expect(present.find(req({ query: "?debug" }))).toBe("q")
    expect(present.find(req({ query: "?debug=" }))).toBe("q")
    expect(present.find(req({ query: "?other=1" }))).toBeUndefined()
    const absent = router([["q", { query: { debug: { present: false } } }]])
    expect(absent.find(req({ query: "?other=1" }))).toBe("q")
    expect(absent.find(req({ query: "" }))).toBe("q")
    expect(absent.find(req({ query: "?debug=0" }))).toBeUndefined()
  })

  it("a query condition {regex} tests the URL-decoded value", () => {
    const r = router([["q", { query: { v: { regex: "^\\d+ \\d+$" } } }]])
    expect(r.find(req({ query: "?v=12%2034" }))).toBe("q")
    expect(r.find(req({ query: "?v=12+34" }))).toBe("q")
    expect(r.find(req({ query: "?v=12" }))).toBeUndefined()
    expect(r.find(req({ query: "" }))).toBeUndefined()
  })

  it("a route whose conditions fail falls through to the next candidate", () => {
    const r = router([
      ["post-a", { path: { exact: "/a" }, methods: ["POST"] }],
      ["root", { path: { prefix: "/" } }]
    ])
    expect(r.find(req({ path: "/a", method: "GET" }))).toBe("root")
    expect(r.find(req({ path: "/a", method: "POST" }))).toBe("post-a")
  })

  it("falling through crosses host classes", () => {
    const r = router([
      ["exact-host", { host: "a.example.com", headers: { "x-a": "1" } }],
      ["wild", { host: "*.example.com", methods: ["POST"] }],
      ["none", {}]
    ])
    expect(r.find(req({ host: "a.example.com", headers: { "x-a": "1" } }))).toBe("exact-host")
    expect(r.find(req({ host: "a.example.com", method: "POST" }))).toBe("wild")
    expect(r.find(req({ host: "a.example.com" }))).toBe("none")
  })

  it("falling through tries regex routes, then the same prefix's later routes, then shorter prefixes", () => {
    const r = router([
      ["a-post", { path: { prefix: "/a" }, methods: ["POST"] }],
      ["a-put", { path: { prefix: "/a" }, methods: ["PUT"] }],
      ["root-put", { path: { prefix: "/" }, methods: ["PUT", "DELETE"] }],
      ["regex-get", { path: { regex: "^/a" }, methods: ["GET"] }]
    ])
    expect(r.find(req({ path: "/a/b", method: "GET" }))).toBe("regex-get")
    expect(r.find(req({ path: "/a/b", method: "PUT" }))).toBe("a-put")
    expect(r.find(req({ path: "/a/b", method: "DELETE" }))).toBe("root-put")
    expect(r.find(req({ path: "/a/b", method: "PATCH" }))).toBeUndefined()
  })

  it("an exact route whose conditions fail falls through to the regex routes", () => {
    const r = router([
      ["regex", { path: { regex: "^/login$" } }],
      ["login-post", { path: { exact: "/login" }, methods: ["POST"] }]
    ])
    expect(r.find(req({ path: "/login", method: "POST" }))).toBe("login-post")
    expect(r.find(req({ path: "/login", method: "GET" }))).toBe("regex")
  })

  it("a regex route whose conditions fail falls through to the next regex in declaration order", () => {
    const r = router([
      ["r1", { path: { regex: "^/r/" }, headers: { "x-a": "1" } }],
      ["r2", { path: { regex: "^/r/" }, query: { q: { present: true } } }],
      ["r3", { path: { regex: "/r/" } }]
    ])
    expect(r.find(req({ path: "/r/1", headers: { "x-a": "1" }, query: "?q" }))).toBe("r1")
    expect(r.find(req({ path: "/r/1", query: "?q" }))).toBe("r2")
    expect(r.find(req({ path: "/r/1" }))).toBe("r3")
  })
})

/** Compiles [id, match, priority] routes whose values are their ids. */
const prioritized = (routes: ReadonlyArray<readonly [string, RouteMatchSpec, number?]>) =>
  compileRouter(routes.map(([id, match, priority]) => ({ match, value: id, priority })))

describe("Router: priority", () => {
  it("a higher priority prefix beats an exact path and a regex of lower priority", () => {
    const r = prioritized([
      ["exact", { path: { exact: "/a/b" } }],
      ["regex", { path: { regex: "^/a/" } }],
      ["prefix", { path: { prefix: "/a" } }, 1]
    ])
    expect(r.find(req({ path: "/a/b" }))).toBe("prefix")
    expect(r.find(req({ path: "/a/c" }))).toBe("prefix")
  })

  it("a higher priority shorter prefix beats a longer prefix", () => {
    const r = prioritized([
      ["long", { path: { prefix: "/a/b" } }],
      ["short", { path: { prefix: "/a" } }, 5]
    ])
    expect(r.find(req({ path: "/a/b/c" }))).toBe("short")
  })

  it("a higher priority regex beats an exact path", () => {
    const r = prioritized([
      ["exact", { path: { exact: "/a" } }],
      ["regex", { path: { regex: "^/a$" } }, 1]
    ])
    expect(r.find(req({ path: "/a" }))).toBe("regex")
  })

  it("among routes of equal priority the path rule decides, whatever the priority's value", () => {
    const r = prioritized([
      ["prefix", { path: { prefix: "/a" } }, 3],
      ["regex", { path: { regex: "^/a/" } }, 3],
      ["exact", { path: { exact: "/a/x" } }, 3],
      ["low", { path: { exact: "/a/y" } }, 2]
    ])
    expect(r.find(req({ path: "/a/x" }))).toBe("exact")
    expect(r.find(req({ path: "/a/y" }))).toBe("regex")
    expect(r.find(req({ path: "/a" }))).toBe("prefix")
  })

  it("no priority is priority 0, tied by the path rule and then declaration order", () => {
    const r = prioritized([
      ["none", { path: { prefix: "/a" } }],
      ["zero", { path: { prefix: "/a" } }, 0],
      ["zero-exact", { path: { exact: "/a/x" } }, 0]
    ])
    expect(r.find(req({ path: "/a/b" }))).toBe("none")
    expect(r.find(req({ path: "/a/x" }))).toBe("zero-exact")
  })

  it("a negative priority puts a route after the routes with the default priority", () => {
    const r = prioritized([
      ["exact", { path: { exact: "/a" } }, -1],
      ["rest", { path: { prefix: "/" } }]
    ])
    expect(r.find(req({ path: "/a" }))).toBe("rest")
  })

  it("a higher priority route whose conditions fail falls through to the lower priorities in order", () => {
    const r = prioritized([
      ["rest", {}],
      ["regex", { path: { regex: "^/a" } }],
      ["beta", { path: { prefix: "/a" }, headers: { "x-beta": "1" } }, 2],
      ["post", { path: { prefix: "/" }, methods: ["POST"] }, 1]
    ])
    expect(r.find(req({ path: "/a/x", headers: { "x-beta": "1" } }))).toBe("beta")
    expect(r.find(req({ path: "/a/x", method: "POST" }))).toBe("post")
    expect(r.find(req({ path: "/a/x" }))).toBe("regex")
    expect(r.find(req({ path: "/b" }))).toBe("rest")
  })

  it("priority orders routes within a host class only: the host class is still decided first", () => {
    const r = prioritized([
      ["any-host", { path: { prefix: "/" } }, 100],
      ["wild", { host: "*.example.com" }, 50],
      ["exact-host", { host: "api.example.com" }]
    ])
    expect(r.find(req({ host: "api.example.com" }))).toBe("exact-host")
    expect(r.find(req({ host: "www.example.com" }))).toBe("wild")
    expect(r.find(req({ host: "other.org" }))).toBe("any-host")
  })
})

describe("Router: regex routes by first segment", () => {
  it("anchored regex routes with a literal first segment match only their own segment", () => {
    const r = router([
      ["users", { path: { regex: "^/users/[0-9]+$" } }],
      ["escaped", { path: { regex: "^\\/v1\\/" } }],
      ["health", { path: { regex: "^/health$" } }],
      ["root", { path: { regex: "^/$" } }]
    ])
    expect(r.find(req({ path: "/users/42" }))).toBe("users")
    expect(r.find(req({ path: "/v1/x" }))).toBe("escaped")
    expect(r.find(req({ path: "/health" }))).toBe("health")
    expect(r.find(req({ path: "/" }))).toBe("root")
    expect(r.find(req({ path: "/healthz" }))).toBeUndefined()
    expect(r.find(req({ path: "/v2/x" }))).toBeUndefined()
  })

  it("a character made optional by a quantifier does not narrow the segment", () => {
    const r = router([
      ["optional", { path: { regex: "^/ab?/" } }],
      ["slash", { path: { regex: "^/s/?t" } }],
      ["star", { path: { regex: "^/xy*$" } }],
      ["braces", { path: { regex: "^/mn{0,1}$" } }],
      ["open", { path: { regex: "^/api" } }]
    ])
    expect(r.find(req({ path: "/a/x" }))).toBe("optional")
    expect(r.find(req({ path: "/ab/x" }))).toBe("optional")
    expect(r.find(req({ path: "/st" }))).toBe("slash")
    expect(r.find(req({ path: "/x" }))).toBe("star")
    expect(r.find(req({ path: "/m" }))).toBe("braces")
    expect(r.find(req({ path: "/apix" }))).toBe("open")
  })

  it("an alternation anywhere keeps a regex route tried for every segment", () => {
    const r = router([["alt", { path: { regex: "^/a/|^/b/" } }]])
    expect(r.find(req({ path: "/b/x" }))).toBe("alt")
  })

  it("declaration order holds between segment-bound and unbound regex routes", () => {
    const first = router([
      ["png", { path: { regex: "\\.png$" } }],
      ["img", { path: { regex: "^/img/" } }]
    ])
    expect(first.find(req({ path: "/img/a.png" }))).toBe("png")
    expect(first.find(req({ path: "/img/a.gif" }))).toBe("img")
    const second = router([
      ["img", { path: { regex: "^/img/" } }],
      ["png", { path: { regex: "\\.png$" } }]
    ])
    expect(second.find(req({ path: "/img/a.png" }))).toBe("img")
    expect(second.find(req({ path: "/x/a.png" }))).toBe("png")
  })
})

// ---------------------------------------------------------------------------------------------
// Property: the compiled router agrees with a direct reading of the precedence rules.

const SEGMENTS = ["", "a", "b", "ab"] as const
const ROUTE_HOSTS = [undefined, "a.com", "b.a.com", "*.a.com", "*.com"] as const
const REQUEST_HOSTS = ["", "a.com", "b.a.com", "c.b.a.com", "x.com"] as const

const pathArb: fc.Arbitrary<string> = fc
  .tuple(fc.array(fc.constantFrom(...SEGMENTS), { maxLength: 3 }), fc.boolean())
  .map(([segs, slash]) => {
    const p = "/" + segs.join("/")
    return slash && !p.endsWith("/") ? p + "/" : p
  })

// Unanchored, anchored without a complete first segment, and anchored on one (which the router
// indexes by segment), including the forms that must not be read as a segment (`?`, `|`).
const regexArb: fc.Arbitrary<string> = fc.constantFrom(
  "^/a", "b$", "/ab", "a/", ".",
  "^/$", "^/a/b", "^/ab/", "^/b$", "^\\/a\\/", "^/a/?b", "^/a/|^/b"
)

const pathMatchArb: fc.Arbitrary<PathMatch | undefined> = fc.oneof(
  fc.constant(undefined),
  pathArb.map((exact): PathMatch => ({ exact })),
  pathArb.map((prefix): PathMatch => ({ prefix })),
  regexArb.map((regex): PathMatch => ({ regex }))
)

const valueMatchArb: fc.Arbitrary<ValueMatch> = fc.constantFrom<ValueMatch>("1", { present: true }, { present: false })
const queryMatchArb: fc.Arbitrary<ValueMatch> = fc.constantFrom<ValueMatch>(
  "1",
  { present: true },
  { present: false },
  { regex: "^2$" }
)

const specArb: fc.Arbitrary<RouteMatchSpec> = fc
  .record({
    host: fc.constantFrom(...ROUTE_HOSTS),
    path: pathMatchArb,
    methods: fc.option(fc.subarray(["GET", "POST"]), { nil: undefined }),
    header: fc.option(valueMatchArb, { nil: undefined }),
    query: fc.option(queryMatchArb, { nil: undefined })
  })
  .map(({ host, path, methods, header, query }) => {
    const spec: { -readonly [K in keyof RouteMatchSpec]: RouteMatchSpec[K] } = {}
    if (host !== undefined) spec.host = host
    if (path !== undefined) spec.path = path
    if (methods !== undefined) spec.methods = methods
    if (header !== undefined) spec.headers = { "x-h": header }
    if (query !== undefined) spec.query = { q: query }
    return spec
  })

interface Entry {
  readonly match: RouteMatchSpec
  readonly priority: number | undefined
}

// Mostly no priority (the common single-tier case), sometimes a few levels either side of 0.
const entryArb: fc.Arbitrary<Entry> = fc.record({
  match: specArb,
  priority: fc.oneof(
    { arbitrary: fc.constant(undefined), weight: 3 },
    { arbitrary: fc.constantFrom(-1, 0, 1, 2), weight: 2 }
  )
})

interface PlainRequest {
  readonly host: string
  readonly path: string
  readonly method: string
  readonly xh: string | undefined
  readonly query: string
}

const requestArb: fc.Arbitrary<PlainRequest> = fc.record({
  host: fc.constantFrom(...REQUEST_HOSTS),
  path: pathArb,
  method: fc.constantFrom("GET", "POST", "PUT"),
  xh: fc.constantFrom(undefined, "1", "2"),
  // Plain, percent-encoded (`%31` is "1"), valueless and among other parameters.
  query: fc.constantFrom("", "?q=1", "?q=2", "?q=%31", "?x=1&q=2", "?q", "?q=")
})

const toRouteRequest = (r: PlainRequest): RouteRequest => ({
  host: r.host,
  path: r.path,
  method: r.method,
  query: r.query,
  header: (name) => (name === "x-h" ? r.xh : undefined)
})

/** application/x-www-form-urlencoded decoding of one component (`+` is a space), for well-formed escapes. */
const formDecode = (s: string): string => decodeURIComponent(s.replace(/\+/g, " "))

/** The first value of parameter `name` in `query`, URL-decoded ("" when it has no `=`). */
const queryValue = (query: string, name: string): string | undefined => {
  for (const pair of query.replace(/^\?/, "").split("&")) {
    if (pair === "") continue
    const eq = pair.indexOf("=")
    const key = formDecode(eq === -1 ? pair : pair.slice(0, eq))
    if (key === name) return eq === -1 ? "" : formDecode(pair.slice(eq + 1))
  }
  return undefined
}

const valueHolds = (m: ValueMatch, v: string | undefined): boolean => {
  if (typeof m === "string") return v === m
  if (m.regex !== undefined) return v !== undefined && new RegExp(m.regex).test(v)
  return (v !== undefined) === (m.present === true)
}

const hostMatches = (specHost: string | undefined, host: string): boolean => {
  if (specHost === undefined) return true
  const h = specHost.toLowerCase()
  if (h.startsWith("*.")) {
    const suffix = h.slice(1)
    return host.endsWith(suffix) && host.length > suffix.length
  }
  return host === h
}

const pathMatches = (m: PathMatch | undefined, path: string): boolean => {
  if (m === undefined) return true
  if (m.exact !== undefined) return path === m.exact
  if (m.prefix !== undefined) {
    const p = m.prefix
    return path === p || (p.endsWith("/") && path.startsWith(p)) || path.startsWith(p + "/")
  }
  return new RegExp(m.regex!).test(path)
}

const conditionsHold = (spec: RouteMatchSpec, r: PlainRequest): boolean => {
  if (spec.methods !== undefined && !spec.methods.includes(r.method)) return false
  for (const m of Object.values(spec.headers ?? {})) if (!valueHolds(m, r.xh)) return false
  for (const [name, m] of Object.entries(spec.query ?? {})) if (!valueHolds(m, queryValue(r.query, name))) return false
  return true
}

/** [class, -length] for the host; smaller sorts first. */
const hostRank = (spec: RouteMatchSpec): readonly [number, number] => {
  if (spec.host === undefined) return [2, 0]
  if (spec.host.startsWith("*.")) return [1, -spec.host.length]
  return [0, 0]
}

/** [kind, -length] for the path: exact, then regex, then the longest prefix; smaller sorts first. */
const pathRank = (m: PathMatch | undefined): readonly [number, number] => {
  if (m === undefined) return [2, -1]
  if (m.exact !== undefined) return [0, 0]
  if (m.prefix !== undefined) return [2, -m.prefix.length]
  return [1, 0]
}

/**
 * Of the routes whose host, path and conditions all hold, the first by
 * (host class, priority descending, path kind, prefix length descending, declaration order).
 */
const referenceFind = (entries: ReadonlyArray<Entry>, r: PlainRequest): number | undefined => {
  const matching = entries
    .map(({ match, priority }, index) => ({ spec: match, priority: priority ?? 0, index }))
    .filter(({ spec }) => hostMatches(spec.host, r.host) && pathMatches(spec.path, r.path) && conditionsHold(spec, r))
  const key = ({ spec, priority, index }: { spec: RouteMatchSpec; priority: number; index: number }) => [
    ...hostRank(spec),
    -priority,
    ...pathRank(spec.path),
    index
  ]
  matching.sort((x, y) => {
    const a = key(x)
    const b = key(y)
    for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i] - b[i]
    return 0
  })
  return matching[0]?.index
}

describe("Router: property", () => {
  // The answers the README's precedence rules give, written out by hand: the router must give
  // them, and so must the reference matcher the property below holds the router to (so the
  // reference cannot drift into agreeing with a broken router).
  const explicit: ReadonlyArray<{
    readonly rule: string
    readonly routes: ReadonlyArray<readonly [string, RouteMatchSpec, number?]>
    readonly answers: ReadonlyArray<readonly [Partial<PlainRequest>, string | undefined]>
  }> = [
    {
      rule: "exact host, then *.suffix, then no host",
      routes: [["none", {}], ["wild", { host: "*.a.com" }], ["exact", { host: "b.a.com" }]],
      answers: [[{ host: "b.a.com" }, "exact"], [{ host: "c.b.a.com" }, "wild"], [{ host: "a.com" }, "none"], [{ host: "x.com" }, "none"]]
    },
    {
      rule: "the longest *.suffix first",
      routes: [["short", { host: "*.com" }], ["long", { host: "*.a.com" }]],
      answers: [[{ host: "b.a.com" }, "long"], [{ host: "c.b.a.com" }, "long"], [{ host: "a.com" }, "short"], [{ host: "" }, undefined]]
    },
    {
      rule: "a route's host class comes before any priority",
      routes: [["none", {}, 2], ["wild", { host: "*.a.com" }, -1], ["exact", { host: "b.a.com" }, -2]],
      answers: [[{ host: "b.a.com" }, "exact"], [{ host: "c.b.a.com" }, "wild"], [{ host: "x.com" }, "none"]]
    },
    {
      rule: "exact path, then regex, then prefix",
      routes: [["prefix", { path: { prefix: "/a" } }], ["regex", { path: { regex: "^/a/" } }], ["exact", { path: { exact: "/a/b" } }]],
      answers: [[{ path: "/a/b" }, "exact"], [{ path: "/a/ab" }, "regex"], [{ path: "/a" }, "prefix"], [{ path: "/b" }, undefined]]
    },
    {
      rule: "the longest prefix, on a segment boundary; no path is prefix /",
      routes: [["any", {}], ["short", { path: { prefix: "/a" } }], ["long", { path: { prefix: "/a/b" } }], ["slash", { path: { prefix: "/ab/" } }]],
      answers: [
        [{ path: "/a/b/ab" }, "long"],
        [{ path: "/a/b" }, "long"],
        [{ path: "/a/ab" }, "short"],
        [{ path: "/ab" }, "any"],
        [{ path: "/ab/" }, "slash"],
        [{ path: "/b" }, "any"]
      ]
    },
    {
      rule: "a regex declared after a catch-all still comes first; regex routes in declaration order",
      routes: [["rest", { path: { prefix: "/" } }], ["re-a", { path: { regex: "^/a" } }], ["re-b", { path: { regex: "b$" } }]],
      answers: [[{ path: "/ab" }, "re-a"], [{ path: "/b" }, "re-b"], [{ path: "/x" }, "rest"]]
    },
    {
      rule: "equal routes: declaration order",
      routes: [["first", { path: { prefix: "/a" } }], ["second", { path: { prefix: "/a" } }], ["third", { path: { exact: "/a" } }], [
        "fourth",
        { path: { exact: "/a" } }
      ]],
      answers: [[{ path: "/a/b" }, "first"], [{ path: "/a" }, "third"]]
    },
    {
      rule: "priority, highest first, beats path kind and prefix length; negative after the default",
      routes: [
        ["exact", { path: { exact: "/a/b" } }],
        ["short-high", { path: { prefix: "/a" } }, 1],
        ["regex-higher", { path: { regex: "b$" } }, 2],
        ["low", { path: { exact: "/b" } }, -1],
        ["rest", {}]
      ],
      answers: [[{ path: "/a/b" }, "regex-higher"], [{ path: "/a/a" }, "short-high"], [{ path: "/b" }, "regex-higher"], [{ path: "/x" }, "rest"]]
    },
    {
      rule: "a candidate whose conditions fail is skipped for the next one, across kinds and host classes",
      routes: [
        ["exact-post", { path: { exact: "/a" }, methods: ["POST"] }],
        ["regex-h", { path: { regex: "^/a" }, headers: { "x-h": "1" } }],
        ["prefix-q", { path: { prefix: "/a" }, query: { q: "1" } }],
        ["host-put", { host: "a.com", methods: ["PUT"] }],
        ["rest", {}]
      ],
      answers: [
        [{ path: "/a", method: "POST", host: "a.com" }, "exact-post"],
        [{ path: "/a", xh: "1", host: "a.com" }, "regex-h"],
        [{ path: "/a", query: "?q=1", host: "a.com" }, "prefix-q"],
        [{ path: "/a", method: "PUT", host: "a.com" }, "host-put"],
        [{ path: "/a", host: "a.com" }, "rest"]
      ]
    },
    {
      rule: "query values are URL-decoded; {present} tests presence; the header value must be exact",
      routes: [
        ["q1", { query: { q: "1" } }],
        ["h-absent", { headers: { "x-h": { present: false } }, query: { q: { present: true } } }],
        ["q2", { query: { q: { regex: "^2$" } } }]
      ],
      answers: [
        [{ query: "?q=%31" }, "q1"],
        [{ query: "?q" }, "h-absent"],
        [{ query: "?q", xh: "2" }, undefined],
        [{ query: "?x=1&q=2", xh: "1" }, "q2"],
        [{ query: "" }, undefined]
      ]
    }
  ]

  it("gives the answers the precedence rules spell out (and so does the reference matcher)", () => {
    for (const { answers, routes, rule } of explicit) {
      const entries: Array<Entry> = routes.map(([, match, priority]) => ({ match, priority }))
      const compiled = compileRouter(routes.map(([id, match, priority]) => ({ match, priority, value: id })))
      for (const [partial, want] of answers) {
        const r: PlainRequest = { host: "", path: "/", method: "GET", xh: undefined, query: "", ...partial }
        const what = `${rule}: ${JSON.stringify(partial)}`
        expect(compiled.find(toRouteRequest(r)), what).toBe(want)
        const ref = referenceFind(entries, r)
        expect(ref === undefined ? undefined : routes[ref][0], `reference matcher, ${what}`).toBe(want)
      }
    }
  })

  it("picks the same route as a reference matcher written from the precedence rules", () => {
    fc.assert(
      fc.property(
        fc.array(entryArb, { minLength: 1, maxLength: 30 }),
        fc.array(requestArb, { minLength: 1, maxLength: 20 }),
        (entries, requests) => {
          const compiled = compileRouter(entries.map(({ match, priority }, index) => ({ match, priority, value: index })))
          for (const r of requests) {
            expect(compiled.find(toRouteRequest(r))).toBe(referenceFind(entries, r))
          }
        }
      ),
      { numRuns: 1000 }
    )
  })
})

describe("Router: a {regex} condition on an absent value", () => {
  it("a header {regex} condition never matches an absent header, even a regex that matches any text", () => {
    const r = router([
      ["any-env", { headers: { "x-env": { regex: ".*" } } }],
      ["rest", {}]
    ])
    expect(r.find(req({ headers: { "x-env": "" } }))).toBe("any-env")
    expect(r.find(req({ headers: { "x-env": "undefined" } }))).toBe("any-env")
    expect(r.find(req())).toBe("rest")
  })

  it("a query {regex} condition never matches an absent parameter, even a regex that matches any text", () => {
    const r = router([
      ["any-v", { query: { v: { regex: "^(?!1$)" } } }],
      ["rest", {}]
    ])
    expect(r.find(req({ query: "?v=2" }))).toBe("any-v")
    expect(r.find(req({ query: "?v=1" }))).toBe("rest")
    expect(r.find(req({ query: "?w=2" }))).toBe("rest")
    expect(r.find(req({ query: "" }))).toBe("rest")
  })
})
