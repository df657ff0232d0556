import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { normalizeHost, normalizePath, parseRequestTarget } from "../../src/routing/RequestTarget.ts"

const PROBLEMS = new Set(["invalid-target", "invalid-encoding", "invalid-host"])
const isProblem = (s: string) => PROBLEMS.has(s)

describe("normalizePath", () => {
  it("removes . and .. segments", () => {
    expect(normalizePath("/a/./b/../c")).toBe("/a/c")
    expect(normalizePath("/a/b/..")).toBe("/a/")
    expect(normalizePath("/a/b/.")).toBe("/a/b/")
    expect(normalizePath("/./a")).toBe("/a")
    expect(normalizePath("/a/..b/.c")).toBe("/a/..b/.c")
  })

  it("decodes %2e%2e to .. before removing dot segments", () => {
    expect(normalizePath("/a/%2e%2e/b")).toBe("/b")
    expect(normalizePath("/a/.%2e/b")).toBe("/b")
    expect(normalizePath("/a/%2e/b")).toBe("/a/b")
  })

  it("decodes upper-case %2E too", () => {
    expect(normalizePath("/a/%2E%2E/b")).toBe("/b")
    expect(normalizePath("/a/%2E/b")).toBe("/a/b")
  })

  it("decodes other unreserved escapes in either case", () => {
    expect(normalizePath("/%61%62%7e%2D%5f")).toBe("/ab~-_")
    expect(normalizePath("/a/./b/../%63//d")).toBe("/a/c/d")
  })

  it("merges repeated slashes", () => {
    expect(normalizePath("//a///b")).toBe("/a/b")
    expect(normalizePath("//")).toBe("/")
  })

  it("keeps a trailing slash", () => {
    expect(normalizePath("/a//b//")).toBe("/a/b/")
    expect(normalizePath("/a/b/")).toBe("/a/b/")
  })

  it("clamps .. above the root to /", () => {
    expect(normalizePath("/..")).toBe("/")
    expect(normalizePath("/../..")).toBe("/")
    expect(normalizePath("/../../a")).toBe("/a")
    expect(normalizePath("/a/../../b")).toBe("/b")
    expect(normalizePath("/%2e%2e/%2E%2E/etc")).toBe("/etc")
  })

  it("keeps %2F encoded (it is data, not a separator)", () => {
    expect(normalizePath("/a%2Fb")).toBe("/a%2Fb")
    expect(normalizePath("/a/..%2F..%2Fb")).toBe("/a/..%2F..%2Fb")
    expect(normalizePath("/a/%2e%2e%2fb")).toBe("/a/..%2Fb")
  })

  it("upper-cases the hex digits of escapes it keeps", () => {
    expect(normalizePath("/a%2fb")).toBe("/a%2Fb")
    expect(normalizePath("/caf%c3%a9")).toBe("/caf%C3%A9")
    expect(normalizePath("/%25")).toBe("/%25")
    expect(normalizePath("/%3f%23")).toBe("/%3F%23")
  })

  it("refuses malformed escapes and %00 as invalid-encoding", () => {
    for (const raw of ["/%zz", "/%", "/%0", "/%00", "/a%", "/a%g1", "/a%1g", "/%%41"]) {
      expect(normalizePath(raw), raw).toBe("invalid-encoding")
    }
  })

  it("returns an already-normal path unchanged, as the same string", () => {
    const raw = "/api/v1/users/42"
    expect(normalizePath(raw)).toBe(raw)
    expect(normalizePath("/")).toBe("/")
    expect(normalizePath("/a.b/c..d/")).toBe("/a.b/c..d/")
  })
})

// Characters that stress normalisation: separators, dots, escapes (valid and broken) and plain ones.
const rawPathArb: fc.Arbitrary<string> = fc
  .array(
    fc.oneof(
      { weight: 4, arbitrary: fc.constantFrom("/", ".", "..", "a", "b", "~", "-") },
      { weight: 2, arbitrary: fc.constantFrom("%2e", "%2E", "%2f", "%2F", "%41", "%7e", "%25", "%c3%a9", "%3F") },
      { weight: 1, arbitrary: fc.constantFrom("%", "%0", "%zz", "%00", "?", "é") }
    ),
    { maxLength: 25 }
  )
  .map((parts) => "/" + parts.join(""))

const normalOutputs = rawPathArb.map(normalizePath).filter((o) => !isProblem(o))

describe("normalizePath properties", () => {
  it("is idempotent on its outputs", () => {
    fc.assert(
      fc.property(normalOutputs, (out) => {
        expect(normalizePath(out)).toBe(out)
      }),
      { numRuns: 2000 }
    )
  })

  it("never outputs a . or .. segment nor an empty segment, and always starts with /", () => {
    fc.assert(
      fc.property(normalOutputs, (out) => {
        expect(out.startsWith("/")).toBe(true)
        expect(out).not.toContain("//")
        const segments = out.split("/").slice(1)
        expect(segments).not.toContain(".")
        expect(segments).not.toContain("..")
      }),
      { numRuns: 2000 }
    )
  })

  it("keeps only upper-case escapes of reserved or non-ASCII octets", () => {
    fc.assert(
      fc.property(normalOutputs, (out) => {
        for (const m of out.matchAll(/%(..)/g)) {
          expect(m[1]).toMatch(/^[0-9A-F]{2}$/)
          expect(String.fromCharCode(parseInt(m[1], 16))).not.toMatch(/[A-Za-z0-9._~-]/)
        }
      }),
      { numRuns: 2000 }
    )
  })

  it("only refuses inputs that contain a %", () => {
    fc.assert(
      fc.property(rawPathArb, (raw) => {
        if (!raw.includes("%")) expect(isProblem(normalizePath(raw))).toBe(false)
      }),
      { numRuns: 1000 }
    )
  })

  it("gives the same result for a path and for the path with some unreserved characters escaped", () => {
    const unreserved = fc.constantFrom(..."abzAZ09.-_~".split(""))
    const char = fc.oneof(unreserved, fc.constantFrom("/", "/", "%2F", "%C3%A9"))
    const tokens = fc.array(fc.tuple(char, fc.boolean(), fc.boolean()), { maxLength: 20 })
    fc.assert(
      fc.property(tokens, (ts) => {
        const plain = "/" + ts.map(([c]) => c).join("")
        const escaped = "/" + ts.map(([c, escape, lower]) => {
          if (!escape || c.length !== 1 || c === "/") return c
          const hex = c.charCodeAt(0).toString(16).padStart(2, "0")
          return "%" + (lower ? hex.toLowerCase() : hex.toUpperCase())
        }).join("")
        expect(normalizePath(escaped)).toBe(normalizePath(plain))
      }),
      { numRuns: 2000 }
    )
  })
})

describe("parseRequestTarget: origin-form", () => {
  it("splits path and query and normalises the path", () => {
    expect(parseRequestTarget("/a/../b?x=1", "Example.com:8080")).toEqual({ path: "/b", query: "?x=1", host: "example.com" })
  })

  it("forwards the query unchanged, even with dot segments or escapes in it", () => {
    expect(parseRequestTarget("/p?a=/../%2e&b", "h")).toEqual({ path: "/p", query: "?a=/../%2e&b", host: "h" })
    expect(parseRequestTarget("/p?", "h")).toEqual({ path: "/p", query: "?", host: "h" })
  })

  it("has an empty host when there is no Host header", () => {
    expect(parseRequestTarget("/a", undefined)).toEqual({ path: "/a", query: "", host: "" })
  })

  it("reports invalid-encoding from the path", () => {
    expect(parseRequestTarget("/a%zz", "h")).toBe("invalid-encoding")
    expect(parseRequestTarget("/a%00?x", "h")).toBe("invalid-encoding")
  })

  it("does not decode escapes in the query", () => {
    expect(parseRequestTarget("/a?%zz", "h")).toEqual({ path: "/a", query: "?%zz", host: "h" })
  })
})

describe("parseRequestTarget: absolute-form", () => {
  it("takes the host from the authority instead of the Host header", () => {
    expect(parseRequestTarget("http://Target.Example:8080/a/./b?x", "other.example")).toEqual({
      path: "/a/b",
      query: "?x",
      host: "target.example"
    })
  })

  it("accepts http and https with a case-insensitive scheme", () => {
    expect(parseRequestTarget("HTTP://h/a", undefined)).toEqual({ path: "/a", query: "", host: "h" })
    expect(parseRequestTarget("HttpS://h/a", undefined)).toEqual({ path: "/a", query: "", host: "h" })
  })

  it("uses / for an empty path", () => {
    expect(parseRequestTarget("http://h", "x")).toEqual({ path: "/", query: "", host: "h" })
  })

  it("uses / for a path that is only a query", () => {
    expect(parseRequestTarget("http://h?x", "x")).toEqual({ path: "/", query: "?x", host: "h" })
  })

  it("refuses other schemes", () => {
    expect(parseRequestTarget("ftp://h/a", "h")).toBe("invalid-target")
    expect(parseRequestTarget("http:/h/a", "h")).toBe("invalid-target")
  })

  it("reports a bad authority as invalid-host", () => {
    expect(parseRequestTarget("http://user@h/a", "h")).toBe("invalid-host")
    expect(parseRequestTarget("http://h:8x/a", "h")).toBe("invalid-host")
  })

  it("refuses an empty authority as invalid-host, whatever the Host header and the path", () => {
    expect(parseRequestTarget("http:///a", "h")).toBe("invalid-host")
    expect(parseRequestTarget("http://?x", "h")).toBe("invalid-host")
    expect(parseRequestTarget("https://", undefined)).toBe("invalid-host")
    expect(parseRequestTarget("http:///%zz", "h")).toBe("invalid-host")
  })

  it("refuses a target that only contains an http URL after other text", () => {
    expect(parseRequestTarget("xhttp://h/a", "h")).toBe("invalid-target")
    expect(parseRequestTarget("proxy:http://h/a", "h")).toBe("invalid-target")
  })
})

describe("parseRequestTarget: refused forms", () => {
  it("refuses the asterisk form", () => {
    expect(parseRequestTarget("*", "h")).toBe("invalid-target")
  })

  it("refuses the authority form", () => {
    expect(parseRequestTarget("example.com:443", "h")).toBe("invalid-target")
  })

  it("refuses a fragment in origin-form and absolute-form", () => {
    expect(parseRequestTarget("/a#frag", "h")).toBe("invalid-target")
    expect(parseRequestTarget("/a?x#frag", "h")).toBe("invalid-target")
    expect(parseRequestTarget("http://h/a#frag", "h")).toBe("invalid-target")
  })

  it("refuses an empty or relative target", () => {
    expect(parseRequestTarget("", "h")).toBe("invalid-target")
    expect(parseRequestTarget("a/b", "h")).toBe("invalid-target")
  })
})

describe("parseRequestTarget: host normalisation", () => {
  it("lower-cases the host", () => {
    expect(parseRequestTarget("/", "API.Example.COM")).toMatchObject({ host: "api.example.com" })
  })

  it("drops the port", () => {
    expect(parseRequestTarget("/", "example.com:8080")).toMatchObject({ host: "example.com" })
    expect(parseRequestTarget("/", "example.com:")).toMatchObject({ host: "example.com" })
  })

  it("drops a trailing dot", () => {
    expect(parseRequestTarget("/", "example.com.")).toMatchObject({ host: "example.com" })
    expect(parseRequestTarget("/", "Example.com.:80")).toMatchObject({ host: "example.com" })
  })

  it("keeps IPv6 literals in brackets and drops their port", () => {
    expect(parseRequestTarget("/", "[::1]:8080")).toMatchObject({ host: "[::1]" })
    expect(parseRequestTarget("/", "[::1]")).toMatchObject({ host: "[::1]" })
    expect(parseRequestTarget("/", "[2001:DB8::1]")).toMatchObject({ host: "[2001:db8::1]" })
    expect(parseRequestTarget("http://[::1]:8080/a", undefined)).toMatchObject({ host: "[::1]", path: "/a" })
  })

  it("reports a malformed Host header as invalid-host", () => {
    for (const bad of ["a b", "a/b", "a@b", "[::1", "::1", "[::1]x", "h:80:81", "h:port", "[zz::1]"]) {
      expect(parseRequestTarget("/", bad), bad).toBe("invalid-host")
    }
  })

  it("reports a host that is only dots, or starts with a dot, as invalid-host rather than as no host", () => {
    for (const bad of [".", "..", ".:80", ".example.com", "..example.com", ".example.com."]) {
      expect(parseRequestTarget("/", bad), bad).toBe("invalid-host")
      expect(normalizeHost(bad), bad).toBeUndefined()
    }
  })

  it("normalizeHost agrees with what parseRequestTarget reports", () => {
    expect(normalizeHost("Example.com.:80")).toBe("example.com")
    expect(normalizeHost("a b")).toBeUndefined()
  })
})
