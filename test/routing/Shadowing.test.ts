import { Result } from "effect"
import { describe, expect, it } from "vitest"
import { configFromValue } from "../../src/config/ConfigSource.ts"
import type { Config } from "../../src/config/Schema.ts"
import { findShadowedRoutes, formatShadowWarning } from "../../src/routing/Shadowing.ts"

/** A decoded config with one listener per routes list; every route goes to upstream `a`. */
const config = (...servers: ReadonlyArray<ReadonlyArray<Record<string, unknown>>>): Config => {
  const decoded = configFromValue({
    servers: servers.map((routes, i) => ({
      name: `s${i}`,
      listen: "127.0.0.1:0",
      routes: routes.map((route) => ({ upstream: "a", ...route }))
    })),
    upstreams: { a: { endpoints: [{ url: "http://127.0.0.1:1" }] } }
  })
  if (Result.isFailure(decoded)) throw new Error(decoded.failure.message)
  return decoded.success
}

/** `shadowed <- shadowing` ids, one per warning. */
const shadowed = (...servers: ReadonlyArray<ReadonlyArray<Record<string, unknown>>>) =>
  findShadowedRoutes(config(...servers)).map((w) => `${w.id} <- ${w.byId}`)

const route = (id: string, match?: Record<string, unknown>, priority?: number) => ({
  id,
  ...(match === undefined ? {} : { match }),
  ...(priority === undefined ? {} : { priority })
})

const prefix = (p: string) => ({ path: { prefix: p } })
const exact = (p: string) => ({ path: { exact: p } })
const regex = (r: string) => ({ path: { regex: r } })

describe("Shadowing: the same host and path", () => {
  it("a route after one with the same prefix and no conditions never matches", () => {
    expect(shadowed([route("first", prefix("/api")), route("second", prefix("/api"))])).toEqual(["second <- first"])
  })

  it("the same holds for an exact path and for a regex", () => {
    expect(shadowed([
      route("e1", exact("/login")),
      route("r1", regex("^/v[0-9]+/")),
      route("e2", exact("/login")),
      route("r2", regex("^/v[0-9]+/"))
    ])).toEqual(["e2 <- e1", "r2 <- r1"])
  })

  it("a route without a path is the same matcher as prefix \"/\"", () => {
    expect(shadowed([route("any"), route("root", prefix("/"))])).toEqual(["root <- any"])
  })

  it("host names are compared case-insensitively, as the router matches them", () => {
    expect(shadowed([
      route("upper", { host: "API.example.com" }),
      route("lower", { host: "api.example.com" })
    ])).toEqual(["lower <- upper"])
  })

  it("the later route is reported even when it has conditions of its own", () => {
    expect(shadowed([route("all", prefix("/a")), route("posts", { ...prefix("/a"), methods: ["POST"] })])).toEqual([
      "posts <- all"
    ])
  })

  it("a higher priority shadows an identical route declared before it", () => {
    expect(shadowed([route("early", prefix("/a")), route("late", prefix("/a"), 1)])).toEqual(["early <- late"])
  })

  it("a route with a higher priority than the identical one before it is not shadowed", () => {
    expect(shadowed([route("low", prefix("/a"), -1), route("high", { ...prefix("/a"), methods: ["GET"] })])).toEqual([])
  })

  it("among identical routes the one the router tries first is named, whatever the declaration order", () => {
    expect(shadowed([route("a", prefix("/a")), route("b", prefix("/a"), 1), route("c", prefix("/a"))])).toEqual([
      "a <- b",
      "c <- b"
    ])
  })

  it("a route with conditions whose path no other route has is not reported", () => {
    expect(shadowed([route("posts", { ...prefix("/a"), methods: ["POST"] }), route("rest", prefix("/b"))])).toEqual([])
  })
})

describe("Shadowing: prefixes", () => {
  it("a longer prefix is not shadowed by a shorter one of the same priority: the longest prefix wins", () => {
    expect(shadowed([route("root", prefix("/")), route("api", prefix("/api"))])).toEqual([])
  })

  it("a shorter prefix with a higher priority and no conditions shadows a longer one", () => {
    expect(shadowed([route("api", prefix("/api/v1")), route("root", prefix("/api"), 2)])).toEqual(["api <- root"])
    expect(shadowed([route("api", prefix("/api")), route("any", undefined, 1)])).toEqual(["api <- any"])
  })

  it("a prefix covers only on a segment boundary", () => {
    expect(shadowed([route("apix", prefix("/apix")), route("api", prefix("/api"), 1)])).toEqual([])
    expect(shadowed([route("bare", prefix("/api")), route("slash", prefix("/api/"), 1)])).toEqual([])
    expect(shadowed([route("slash", prefix("/api/")), route("bare", prefix("/api"), 1)])).toEqual(["slash <- bare"])
  })

  it("the route tried first is named when several shadow a route", () => {
    expect(shadowed([
      route("deep", prefix("/a/b/c")),
      route("mid", prefix("/a/b"), 1),
      route("top", prefix("/a"), 2)
    ])).toEqual(["deep <- top", "mid <- top"])
  })

  it("of higher-priority prefixes of one priority covering a route, the longest is named: it is tried first", () => {
    expect(shadowed([
      route("deep", prefix("/a/b/c")),
      route("top", prefix("/a"), 1),
      route("mid", prefix("/a/b"), 1)
    ])).toEqual(["deep <- mid"])
  })

  it("of identical prefixes covering a route, the one with the highest priority is named", () => {
    expect(shadowed([
      route("deep", prefix("/a/b")),
      route("low", prefix("/a"), 1),
      route("high", prefix("/a"), 2)
    ])).toEqual(["deep <- high", "low <- high"])
  })
})

describe("Shadowing: exact paths and regex routes", () => {
  it("an exact path is shadowed by a higher-priority prefix or regex that matches it", () => {
    expect(shadowed([route("login", exact("/api/login")), route("api", prefix("/api"), 1)])).toEqual(["login <- api"])
    expect(shadowed([route("login", exact("/api/login")), route("re", regex("^/api/"), 1)])).toEqual(["login <- re"])
  })

  it("an exact path is not shadowed by a prefix or regex of the same priority, nor by a regex that does not match it", () => {
    expect(shadowed([route("api", prefix("/api")), route("re", regex("^/api/")), route("login", exact("/api/login"))])).toEqual([])
    expect(shadowed([route("login", exact("/login")), route("re", regex("^/api/"), 1)])).toEqual([])
  })

  it("an exact path is shadowed by a higher-priority prefix equal to it", () => {
    expect(shadowed([route("api", exact("/api")), route("all-api", prefix("/api"), 1)])).toEqual(["api <- all-api"])
  })

  it("an exact path is not shadowed by a prefix its text merely contains", () => {
    expect(shadowed([route("deep", exact("/v1/api")), route("api", prefix("/api"), 1)])).toEqual([])
    expect(shadowed([route("apis", exact("/apis")), route("api", prefix("/api"), 1)])).toEqual([])
  })

  it("of a regex and a prefix of one priority matching an exact path, the regex is named: regexes are tried before prefixes", () => {
    expect(shadowed([
      route("login", exact("/api/login")),
      route("api", prefix("/api"), 1),
      route("re", regex("^/api/"), 1)
    ])).toEqual(["login <- re"])
  })

  it("of two regexes of one priority matching an exact path, the first declared is named", () => {
    expect(shadowed([
      route("login", exact("/api/login")),
      route("short", regex("^/api/"), 1),
      route("long", regex("^/api/log"), 1)
    ])).toEqual(["login <- short"])
  })

  it("a regex that matches a prefix route's own path does not shadow it: the paths under the prefix still reach it", () => {
    expect(shadowed([route("v1", prefix("/api/v1")), route("re", regex("^/api/v1$"), 1)])).toEqual([])
  })

  it("a regex route is shadowed by a catch-all with a higher priority", () => {
    expect(shadowed([route("re", regex("^/v[0-9]+/")), route("all", prefix("/"), 1)])).toEqual(["re <- all"])
  })
})

describe("Shadowing: no false warnings", () => {
  it("a regex route before a catch-all prefix, or after it", () => {
    expect(shadowed([route("re", regex("^/v[0-9]+/")), route("rest", prefix("/"))])).toEqual([])
    expect(shadowed([route("rest"), route("re", regex("^/v[0-9]+/"))])).toEqual([])
  })

  it("an earlier route with a method, header or query condition", () => {
    expect(shadowed([
      route("post", { ...prefix("/a"), methods: ["POST"] }),
      route("beta", { ...prefix("/a"), headers: { "x-beta": "1" } }),
      route("v2", { ...prefix("/a"), query: { v: "2" } }),
      route("rest", prefix("/a"))
    ])).toEqual([])
  })

  it("routes with other hosts, or on other listeners", () => {
    expect(shadowed([
      route("none", prefix("/a")),
      route("host", { host: "a.example.com", ...prefix("/a") }),
      route("wild", { host: "*.example.com", ...prefix("/a") }),
      route("other", { host: "b.example.com", ...prefix("/a") })
    ])).toEqual([])
    expect(shadowed([route("one", prefix("/a"))], [route("two", prefix("/a"))])).toEqual([])
  })

  it("a lower-priority catch-all, which is tried last", () => {
    expect(shadowed([route("rest", undefined, -1), route("api", prefix("/api")), route("re", regex("^/x"))])).toEqual([])
  })
})

describe("Shadowing: warnings", () => {
  it("a warning names both routes by path and id, and why", () => {
    const [warning] = findShadowedRoutes(config([], [route("y", prefix("/api")), route("z", exact("/health")), route("x", prefix("/api"))]))
    expect(warning).toEqual({
      path: "servers[1].routes[2]",
      id: "x",
      by: "servers[1].routes[0]",
      byId: "y",
      message: "never matches: shadowed by routes[0] (id \"y\"): same host and path, declared first, no method, header or query conditions"
    })
    expect(formatShadowWarning("fibergate.yaml", warning)).toBe(
      "fibergate.yaml: servers[1].routes[2] (id \"x\"): never matches: shadowed by routes[0] (id \"y\"): " +
        "same host and path, declared first, no method, header or query conditions"
    )
  })

  it("a warning about priority says which priorities and which matcher covers which", () => {
    const messages = findShadowedRoutes(config([
      route("login", exact("/v1/login")),
      route("v1", prefix("/v1"), 3),
      route("versioned", regex("^/v1/"), 2),
      route("all", undefined, 5),
      route("same", prefix("/v1"), 1)
    ])).map((w) => `${w.id}: ${w.message}`)
    expect(messages).toEqual([
      "login: never matches: shadowed by routes[3] (id \"all\"): its prefix \"/\" (no path) covers exact path \"/v1/login\", higher priority (5 > 0), no method, header or query conditions",
      "v1: never matches: shadowed by routes[3] (id \"all\"): its prefix \"/\" (no path) covers prefix \"/v1\", higher priority (5 > 3), no method, header or query conditions",
      "versioned: never matches: shadowed by routes[3] (id \"all\"): its prefix \"/\" (no path) covers regex \"^/v1/\", higher priority (5 > 2), no method, header or query conditions",
      "same: never matches: shadowed by routes[3] (id \"all\"): its prefix \"/\" (no path) covers prefix \"/v1\", higher priority (5 > 1), no method, header or query conditions"
    ])
    const [byRegex] = findShadowedRoutes(config([route("login", exact("/v1/login")), route("versioned", regex("^/v1/"), 1)]))
    expect(byRegex.message).toBe(
      "never matches: shadowed by routes[1] (id \"versioned\"): its regex \"^/v1/\" matches exact path \"/v1/login\", higher priority (1 > 0), no method, header or query conditions"
    )
    const [byPriority] = findShadowedRoutes(config([route("low", prefix("/v1")), route("high", prefix("/v1"), 1)]))
    expect(byPriority.message).toBe(
      "never matches: shadowed by routes[1] (id \"high\"): same host and path, higher priority (1 > 0), no method, header or query conditions"
    )
  })

  it("warnings come in config order, listener by listener, whatever the hosts of the routes", () => {
    const routes = (listener: string) => [
      route(`${listener}-a0`, { host: "a.example.com", ...prefix("/x") }),
      route(`${listener}-b0`, { host: "b.example.com", ...prefix("/x") }),
      route(`${listener}-b1`, { host: "b.example.com", ...prefix("/x") }),
      route(`${listener}-a1`, { host: "a.example.com", ...prefix("/x") })
    ]
    expect(findShadowedRoutes(config(routes("s0"), routes("s1"))).map((w) => w.path)).toEqual([
      "servers[0].routes[2]",
      "servers[0].routes[3]",
      "servers[1].routes[2]",
      "servers[1].routes[3]"
    ])
  })
})

describe("Shadowing: priority in the config", () => {
  it("priority must be an integer", () => {
    const decoded = configFromValue({
      servers: [{ name: "s", listen: "127.0.0.1:0", routes: [{ id: "r", upstream: "a", priority: 1.5 }] }],
      upstreams: { a: { endpoints: [{ url: "http://127.0.0.1:1" }] } }
    })
    expect(Result.isFailure(decoded) && decoded.failure.message).toContain("servers[0].routes[0].priority: Expected an integer")
  })
})
