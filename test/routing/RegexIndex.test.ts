/**
 * The regex index: which regex route a path gets (the first in declaration order whose regex
 * matches and whose conditions hold, exactly as trying them all in order would), and which
 * regexes it runs for that path (only those of the path's first segment, plus those whose
 * regex says nothing about the first segment). Router.test.ts checks the same through the
 * router's precedence.
 */
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { type RegexEntry, RegexIndex } from "../../src/routing/RegexIndex.ts"

interface Entry extends RegexEntry<string> {
  readonly source: string
}

/** An index of `sources` in declaration order whose entries accept every request. */
const indexOf = (sources: ReadonlyArray<string>, accepts: (source: string, request: string) => boolean = () => true) => {
  const index = new RegexIndex<string, Entry>()
  for (const [order, source] of sources.entries()) {
    index.add({ source, re: new RegExp(source), order, accepts: (request) => accepts(source, request) })
  }
  return index
}

/** The source of the entry found for `path`. */
const found = (sources: ReadonlyArray<string>, path: string) => indexOf(sources).find(path, "request")?.source

/** The sources whose regex the index runs on `path`, in the order it runs them. */
const tested = (sources: ReadonlyArray<string>, path: string): Array<string> => {
  const runs: Array<string> = []
  const index = new RegexIndex<string, Entry>()
  for (const [order, source] of sources.entries()) {
    const re = new RegExp(source)
    const test = re.test.bind(re)
    re.test = (s) => {
      runs.push(source)
      return test(s)
    }
    // Accepting nothing makes the index go on to every candidate.
    index.add({ source, re, order, accepts: () => false })
  }
  expect(index.find(path, "request")).toBeUndefined()
  return runs
}

/** The first segment of an absolute path. */
const firstSegment = (path: string) => path.slice(1).split("/")[0]

describe("RegexIndex: a path tests only the regexes that can match its first segment", () => {
  const anchored = ["^/users/[0-9]+$", "^/health$", "^\\/orders\\/", "^/file\\.txt$", "^/a\\-b/", "^/$"]

  it("a path of one anchored segment tests that segment's regex and no other", () => {
    expect(tested(anchored, "/users/42")).toEqual(["^/users/[0-9]+$"])
    expect(tested(anchored, "/health")).toEqual(["^/health$"])
    expect(tested(anchored, "/orders/7")).toEqual(["^\\/orders\\/"])
    expect(tested(anchored, "/file.txt")).toEqual(["^/file\\.txt$"])
    expect(tested(anchored, "/a-b/c")).toEqual(["^/a\\-b/"])
    expect(tested(anchored, "/")).toEqual(["^/$"])
  })

  it("a path of a segment no regex is anchored on tests none of them", () => {
    expect(tested(anchored, "/other/x")).toEqual([])
    expect(tested(anchored, "/healthz")).toEqual([])
    expect(tested(anchored, "/user/42")).toEqual([])
  })

  it("regexes that do not name their first segment are tested for every path, in declaration order", () => {
    const sources = ["\\.png$", "^/users/", "^/v[0-9]+/", "^/api", "^/ab?/", "^/a/|^/b/", "users/", "^/s/*t", "^/s/{0,1}t", "^/a\\d/"]
    const unbound = sources.filter((s) => s !== "^/users/")
    expect(tested(sources, "/zzz")).toEqual(unbound)
    expect(tested(sources, "/users/1")).toEqual(sources)
  })

  it("all regexes anchored on one segment are tested for it, in declaration order", () => {
    const sources = ["^/users/$", "^/v1/", "^/users/[0-9]+$", "^\\/users\\/me$"]
    expect(tested(sources, "/users/me")).toEqual(["^/users/$", "^/users/[0-9]+$", "^\\/users\\/me$"])
    expect(tested(sources, "/v1")).toEqual(["^/v1/"])
  })
})

describe("RegexIndex: the route found is the one trying every regex in order would find", () => {
  it("an anchored regex is found for paths deeper in its segment", () => {
    expect(found(["^/users/[0-9]+$"], "/users/42")).toBe("^/users/[0-9]+$")
    expect(found(["^\\/v1\\/"], "/v1/a/b/c")).toBe("^\\/v1\\/")
    expect(found(["^/health$"], "/health")).toBe("^/health$")
  })

  it("a regex that is not anchored at the start matches wherever its text is", () => {
    expect(found(["x/users/"], "/x/users/1")).toBe("x/users/")
    expect(found(["users/"], "/v1/users/1")).toBe("users/")
    expect(found(["\\.png$"], "/img/a.png")).toBe("\\.png$")
  })

  it("an escape other than \\/, \\. and \\- is not read as a literal character", () => {
    expect(found(["^/a\\d/"], "/a1/x")).toBe("^/a\\d/")
    expect(found(["^/a\\w+/"], "/abc/x")).toBe("^/a\\w+/")
  })

  it("a slash made optional by ?, * or {} does not end the first segment", () => {
    expect(found(["^/api/?"], "/apiv2")).toBe("^/api/?")
    expect(found(["^/s/*t"], "/st")).toBe("^/s/*t")
    expect(found(["^/s/{0,1}t"], "/st")).toBe("^/s/{0,1}t")
  })

  it("the first declared match wins, between indexed and unindexed regexes", () => {
    expect(found(["\\.png$", "^/img/"], "/img/a.png")).toBe("\\.png$")
    expect(found(["^/img/", "\\.png$"], "/img/a.png")).toBe("^/img/")
    expect(found(["^/img/a", "\\.gif$", "^/img/"], "/img/b.gif")).toBe("\\.gif$")
  })

  it("a regex that matches but whose conditions fail gives way to the next one", () => {
    const index = indexOf(["^/img/", "\\.png$", "^/img/a"], (source, request) => source !== "^/img/" || request === "admin")
    expect(index.find("/img/a.png", "guest")?.source).toBe("\\.png$")
    expect(index.find("/img/a.png", "admin")?.source).toBe("^/img/")
    expect(index.find("/img/a.gif", "guest")?.source).toBe("^/img/a")
  })

  it("nothing is found when no regex matches", () => {
    expect(found([], "/x")).toBeUndefined()
    expect(found(["^/users/[0-9]+$", "\\.png$"], "/users/me")).toBeUndefined()
  })
})

// ---------------------------------------------------------------------------------------------
// Property: the index finds what a scan of every regex in declaration order finds, and never
// skips a regex that matches the path.

const CHARS = ["a", "b", ".", "-", "1"] as const
const segmentArb = fc.array(fc.constantFrom(...CHARS), { maxLength: 3 }).map((cs) => cs.join(""))
const pathArb = fc.array(segmentArb, { minLength: 1, maxLength: 3 }).map((segments) => "/" + segments.join("/"))

// Regex sources built from the pieces the segment reader looks at: anchors, literal text,
// escapes (the three it reads and one it must not), quantifiers, classes and alternation.
const pieceArb = fc.constantFrom(
  "/", "a", "b", "ab", "1", "-", "\\/", "\\.", "\\-", "\\d", ".", "?", "*", "+", "{0,1}", "[ab]", "$", "|", "(a|b)"
)
const sourceArb = fc
  .tuple(fc.boolean(), fc.array(pieceArb, { minLength: 1, maxLength: 6 }))
  .map(([anchored, pieces]) => (anchored ? "^" : "") + pieces.join(""))
  .filter((source) => {
    try {
      new RegExp(source)
      return true
    } catch {
      return false
    }
  })

describe("RegexIndex: property", () => {
  it("finds the first regex in declaration order that matches and accepts, as a plain scan does", () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(sourceArb, fc.boolean()), { minLength: 1, maxLength: 12 }),
        fc.array(pathArb, { minLength: 1, maxLength: 10 }),
        (entries, paths) => {
          const index = new RegexIndex<string, Entry>()
          for (const [order, [source, accepting]] of entries.entries()) {
            index.add({ source, re: new RegExp(source), order, accepts: () => accepting })
          }
          for (const path of paths) {
            const scan = entries.findIndex(([source, accepting]) => new RegExp(source).test(path) && accepting)
            expect(index.find(path, "request")?.order).toBe(scan === -1 ? undefined : scan)
          }
        }
      ),
      { numRuns: 500 }
    )
  })

  it("every regex the index skips for a path cannot match it", () => {
    fc.assert(
      fc.property(fc.array(sourceArb, { minLength: 1, maxLength: 8 }), pathArb, (sources, path) => {
        const run = new Set(tested(sources, path))
        for (const source of sources) {
          if (!run.has(source)) expect(new RegExp(source).test(path), `${source} skipped for ${path}`).toBe(false)
        }
      }),
      { numRuns: 500 }
    )
  })

  it("an anchored literal first segment is tested exactly for the paths in that segment", () => {
    fc.assert(
      fc.property(
        fc.array(fc.constantFrom("a", "b", "1", "-"), { minLength: 1, maxLength: 3 }).map((cs) => cs.join("")),
        fc.constantFrom("/", "$", "/[0-9]+$", "/.*"),
        pathArb,
        (segment, tail, path) => {
          const source = "^/" + segment + tail
          const expected = firstSegment(path) === segment ? [source] : []
          expect(tested([source], path)).toEqual(expected)
        }
      )
    )
  })
})
