/**
 * The path a route's `rewrite` sends upstream (test/e2e/Rewrites.test.ts checks the same
 * through a live gateway, with the query). Input paths are what the router hands over: the
 * normalised, absolute request path.
 */
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import type { Rewrite } from "../../src/config/Schema.ts"
import { compilePathRewrite } from "../../src/routing/Rewrite.ts"

const upstreamPath = (rewrite: Rewrite | undefined, path: string) => compilePathRewrite(rewrite)(path)

describe("Rewrite: none", () => {
  it("a route without rewrite forwards the path unchanged", () => {
    for (const path of ["/", "/api", "/api/users/7", "/a//b"]) expect(upstreamPath(undefined, path)).toBe(path)
  })
})

describe("Rewrite: strip_prefix", () => {
  const strip = { strip_prefix: "/api" }

  it("removes the prefix in front of a sub-path", () => {
    expect(upstreamPath(strip, "/api/users")).toBe("/users")
    expect(upstreamPath(strip, "/api/v2/orders/7")).toBe("/v2/orders/7")
    expect(upstreamPath(strip, "/api/")).toBe("/")
  })

  it("the whole path stripped leaves \"/\"", () => {
    expect(upstreamPath(strip, "/api")).toBe("/")
  })

  it("strips only on a segment boundary", () => {
    expect(upstreamPath(strip, "/apix")).toBe("/apix")
    expect(upstreamPath(strip, "/apix/users")).toBe("/apix/users")
  })

  it("strips only at the start of the path, not where the path ends with the prefix", () => {
    expect(upstreamPath(strip, "/x/y/api")).toBe("/x/y/api")
    expect(upstreamPath(strip, "/v1/api/users")).toBe("/v1/api/users")
    expect(upstreamPath(strip, "/")).toBe("/")
  })

  it("a trailing slash on the prefix strips the same as without it", () => {
    const slash = { strip_prefix: "/api/" }
    expect(upstreamPath(slash, "/api/users")).toBe("/users")
    expect(upstreamPath(slash, "/api")).toBe("/")
    expect(upstreamPath(slash, "/apix")).toBe("/apix")
  })

  it("a multi-segment prefix strips all of its segments", () => {
    const deep = { strip_prefix: "/a/b" }
    expect(upstreamPath(deep, "/a/b/c")).toBe("/c")
    expect(upstreamPath(deep, "/a/b")).toBe("/")
    expect(upstreamPath(deep, "/a/bc")).toBe("/a/bc")
    expect(upstreamPath(deep, "/a/c")).toBe("/a/c")
  })
})

describe("Rewrite: add_prefix", () => {
  it("prepends the prefix", () => {
    expect(upstreamPath({ add_prefix: "/v1" }, "/users")).toBe("/v1/users")
    expect(upstreamPath({ add_prefix: "/v1" }, "/users/7")).toBe("/v1/users/7")
  })

  it("prepended to \"/\" keeps the trailing slash", () => {
    expect(upstreamPath({ add_prefix: "/v1" }, "/")).toBe("/v1/")
  })

  it("a trailing slash on the prefix does not double the slash", () => {
    expect(upstreamPath({ add_prefix: "/v1/" }, "/users")).toBe("/v1/users")
    expect(upstreamPath({ add_prefix: "/v1/" }, "/")).toBe("/v1/")
  })

  it("add_prefix \"/\" leaves every path unchanged", () => {
    for (const path of ["/", "/users", "/a/b"]) expect(upstreamPath({ add_prefix: "/" }, path)).toBe(path)
  })
})

describe("Rewrite: strip_prefix and add_prefix", () => {
  const both = { strip_prefix: "/api", add_prefix: "/v1" }

  it("replace one prefix with the other", () => {
    expect(upstreamPath(both, "/api/users")).toBe("/v1/users")
    expect(upstreamPath(both, "/api")).toBe("/v1/")
  })

  it("a path outside the stripped prefix still gets the added prefix", () => {
    expect(upstreamPath(both, "/apix")).toBe("/v1/apix")
    expect(upstreamPath(both, "/other")).toBe("/v1/other")
  })
})

describe("Rewrite: regex/replace", () => {
  it("replaces the match, $1 naming a group", () => {
    expect(upstreamPath({ regex: "^/old/(.*)$", replace: "/new/$1" }, "/old/a/b")).toBe("/new/a/b")
  })

  it("leaves a path the regex does not match unchanged", () => {
    expect(upstreamPath({ regex: "^/old/(.*)$", replace: "/new/$1" }, "/other/a")).toBe("/other/a")
  })

  it("replaces only the first match", () => {
    expect(upstreamPath({ regex: "x", replace: "y" }, "/x/x")).toBe("/y/x")
  })

  it("a result without a leading slash is made absolute", () => {
    expect(upstreamPath({ regex: "^/old/(.*)$", replace: "$1" }, "/old/a/b")).toBe("/a/b")
    expect(upstreamPath({ regex: "^/", replace: "" }, "/users")).toBe("/users")
  })

  it("a result with a leading slash is not given a second one", () => {
    expect(upstreamPath({ regex: "^/api", replace: "" }, "/api/users")).toBe("/users")
  })
})

describe("Rewrite: property", () => {
  const segment = fc.stringMatching(/^[a-z]{1,3}$/)
  const pathOf = (segments: ReadonlyArray<string>) => "/" + segments.join("/")

  it("strip_prefix then add_prefix: the prefix goes only when the path is it or lies under it", () => {
    fc.assert(
      fc.property(
        fc.array(segment, { minLength: 1, maxLength: 3 }),
        fc.array(segment, { maxLength: 4 }),
        fc.option(fc.array(segment, { minLength: 1, maxLength: 2 }), { nil: undefined }),
        fc.boolean(),
        (prefix, pathSegments, added, trailingSlash) => {
          const strip = pathOf(prefix)
          const path = pathOf(pathSegments)
          const add = added === undefined ? undefined : pathOf(added)
          const rewrite: Rewrite = {
            strip_prefix: trailingSlash ? strip + "/" : strip,
            ...(add === undefined ? {} : { add_prefix: add })
          }
          // A path lies under the prefix when its first segments are the prefix's segments.
          const under = prefix.length <= pathSegments.length && prefix.every((s, i) => pathSegments[i] === s)
          const rest = under ? pathOf(pathSegments.slice(prefix.length)) : path
          const expected = add === undefined ? rest : rest === "/" ? add + "/" : add + rest
          expect(upstreamPath(rewrite, path)).toBe(expected)
        }
      )
    )
  })
})
