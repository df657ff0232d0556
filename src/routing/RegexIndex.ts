/**
 * Regex routes in declaration order, indexed by the first path segment they can match.
 *
 * Regex routes are tried before prefix routes (nginx's order, DESIGN.md §2), so without an
 * index every request that ends on a prefix route would test every regex route first. Most
 * regex routes are anchored on a literal first segment (`^/users/[0-9]+$`, `^/v1/`): such a
 * route can only match paths in that segment, so a request only tests the routes of its own
 * segment plus the few whose regex says nothing about the first segment (`\.png$`, `^/v[0-9]+/`).
 * The index is only a filter: a route that is tested is still decided by its regex.
 */

/** A regex route as the index stores it. */
export interface RegexEntry<R> {
  readonly re: RegExp
  /** Declaration order; entries are tried from the lowest. */
  readonly order: number
  /** The route's other conditions (method, headers, query). */
  readonly accepts: (request: R) => boolean
}

const FNV_OFFSET = 0x811c9dc5
const FNV_PRIME = 0x01000193

/**
 * A hash of the first segment of `path` (`"v1"` for `/v1/x`, `""` for `/`), computed without
 * slicing the path, so a lookup allocates nothing. Collisions are harmless: the regex decides.
 *
 * @example
 * firstSegmentHash("/v1/users") === firstSegmentHash("/v1") // => true
 */
export const firstSegmentHash = (path: string): number => {
  let h = FNV_OFFSET
  for (let i = 1; i < path.length; i++) {
    const c = path.charCodeAt(i)
    if (c === 47) break // "/"
    h = Math.imul(h ^ c, FNV_PRIME)
  }
  return h | 0
}

const LITERAL = /^[A-Za-z0-9/_~%-]$/
const ESCAPED_LITERAL = new Set(["/", ".", "-"])
const QUANTIFIERS = new Set(["?", "*", "{"])

/**
 * The first path segment every match of a regex must have, or undefined when the source does
 * not say it plainly. Only the simplest form is read: `^/`, then literal characters (and `\/`,
 * `\.`, `\-`) up to a second `/` or a final `$`. A source with `|` anywhere is never read (an
 * alternative could match anything), nor is a character made optional by `?`, `*` or `{`.
 *
 * @example
 * regexFirstSegment("^/users/[0-9]+$") // => "users"
 * regexFirstSegment("^/health$")       // => "health"
 * regexFirstSegment("^/v[0-9]+/")      // => undefined
 */
export const regexFirstSegment = (source: string): string | undefined => {
  if (!source.startsWith("^") || source.includes("|")) return undefined
  // The literal text every match starts with, read until the second "/" (or a final "$").
  let text = ""
  for (let i = 1; i < source.length;) {
    let char = source[i]
    let width = 1
    if (char === "\\") {
      char = source[i + 1]
      width = 2
      if (char === undefined || !ESCAPED_LITERAL.has(char)) return undefined
    } else if (char === "$") {
      return i === source.length - 1 && text.startsWith("/") ? text.slice(1) : undefined
    } else if (!LITERAL.test(char)) {
      return undefined
    }
    if (QUANTIFIERS.has(source[i + width] ?? "")) return undefined
    if (char === "/" && text !== "") return text.startsWith("/") ? text.slice(1) : undefined
    text += char
    i += width
  }
  // `^/abc` with nothing after it also matches `/abcd`: the segment is not complete.
  return undefined
}

/**
 * Regex entries of one priority tier of one host class.
 *
 * @example
 * const index = new RegexIndex<RouteRequest>()
 * index.add({ re: /^\/users\/[0-9]+$/, order: 0, accepts: () => true })
 * index.find("/users/42", request) // => that entry
 */
export class RegexIndex<R, E extends RegexEntry<R> = RegexEntry<R>> {
  private readonly bySegment = new Map<number, Array<E>>()
  /** Entries whose first segment is not known; tried for every path. */
  private readonly anySegment: Array<E> = []
  private static readonly none: ReadonlyArray<never> = []

  get size(): number {
    return this.anySegment.length + this.bySegment.size
  }

  /** Adds an entry; entries must be added in increasing `order`. */
  add(entry: E): void {
    const segment = regexFirstSegment(entry.re.source)
    if (segment === undefined) return void this.anySegment.push(entry)
    const key = firstSegmentHash("/" + segment)
    const list = this.bySegment.get(key)
    if (list === undefined) this.bySegment.set(key, [entry])
    else list.push(entry)
  }

  /** The first entry in declaration order whose regex matches `path` and that accepts `request`. */
  find(path: string, request: R): E | undefined {
    const any = this.anySegment
    const own = this.bySegment.size === 0 ? RegexIndex.none : this.bySegment.get(firstSegmentHash(path)) ?? RegexIndex.none
    // Merge the two lists by declaration order, so the first declared match wins as if unindexed.
    let i = 0
    let j = 0
    while (i < own.length || j < any.length) {
      const entry = j >= any.length || (i < own.length && own[i].order < any[j].order) ? own[i++] : any[j++]
      if (entry.re.test(path) && entry.accepts(request)) return entry
    }
    return undefined
  }
}
