/**
 * Compiles a listener's routes once per config into lookup structures, so that a request
 * costs a few map lookups however many exact and prefix routes there are.
 *
 * Precedence (DESIGN.md §2, nginx's order without `^~`):
 *
 * 1. Host class: exact host, then `*.suffix` with the longest suffix first, then routes without
 *    a host. A request only falls through to the next class when no route of its class fits.
 * 2. Within a host class, routes are tried in the order of the key
 *    (priority descending, path kind, prefix length descending, declaration order),
 *    where the path kinds rank exact, then regex, then prefix (a route without a path is
 *    prefix `/`). So with the default priority 0: exact paths, then regex routes in
 *    declaration order, then the longest matching prefix (on a segment boundary); a higher
 *    `priority` moves a route ahead of every lower-priority route of its host class,
 *    whatever their path kinds.
 * 3. A route whose host and path fit but whose method, header or query conditions do not is
 *    skipped and the next one in that order is tried.
 *
 * Compiled shape: per host class, one tier per distinct priority (highest first); per tier an
 * exact-path map, a regex index (`RegexIndex.ts`) and a prefix map walked from the longest
 * candidate prefix down. With no priorities set, a host class has a single tier.
 */
import type { PathMatch, ValueMatch } from "../config/Schema.ts"
import { RegexIndex } from "./RegexIndex.ts"

/** The parts of a request the router looks at. */
export interface RouteRequest {
  readonly host: string
  readonly path: string
  readonly method: string
  /** The query string including its `?`, or "". */
  readonly query: string
  /** Lower-case header lookup; for repeated headers, the values joined with ", ". */
  readonly header: (name: string) => string | undefined
}

export interface RouteMatchSpec {
  readonly host?: string | undefined
  readonly path?: PathMatch | undefined
  readonly methods?: ReadonlyArray<string> | undefined
  readonly headers?: Readonly<Record<string, ValueMatch>> | undefined
  readonly query?: Readonly<Record<string, ValueMatch>> | undefined
}

export interface Router<T> {
  readonly find: (request: RouteRequest) => T | undefined
}

/** One route as the router compiles it. */
export interface RouteEntry<T> {
  readonly match: RouteMatchSpec
  readonly value: T
  /** Higher is tried first within the route's host class; default 0. */
  readonly priority?: number | undefined
}

type Test = (value: string | undefined) => boolean

const compileValueMatch = (m: ValueMatch): Test => {
  if (typeof m === "string") return (v) => v === m
  if (m.regex !== undefined) {
    const re = new RegExp(m.regex)
    return (v) => v !== undefined && re.test(v)
  }
  const present = m.present === true
  return (v) => (v !== undefined) === present
}

interface Candidate<T> {
  readonly value: T
  /** Declaration order, for ordering regex routes. */
  readonly order: number
  /** Method, header and query conditions; host and path are decided by where it is stored. */
  readonly accepts: (request: RouteRequest) => boolean
}

const compileConditions = (spec: RouteMatchSpec): ((request: RouteRequest) => boolean) => {
  const methods = spec.methods === undefined ? undefined : new Set(spec.methods)
  const headers = Object.entries(spec.headers ?? {}).map(([name, m]) => [name.toLowerCase(), compileValueMatch(m)] as const)
  const query = Object.entries(spec.query ?? {}).map(([name, m]) => [name, compileValueMatch(m)] as const)
  if (methods === undefined && headers.length === 0 && query.length === 0) return () => true
  return (request) => {
    if (methods !== undefined && !methods.has(request.method)) return false
    for (const [name, test] of headers) if (!test(request.header(name))) return false
    if (query.length > 0) {
      // No query string: every parameter is absent, no need to parse.
      if (request.query === "") {
        for (const [, test] of query) if (!test(undefined)) return false
      } else {
        const params = new URLSearchParams(request.query)
        for (const [name, test] of query) if (!test(params.get(name) ?? undefined)) return false
      }
    }
    return true
  }
}

const push = <K, V>(map: Map<K, Array<V>>, key: K, value: V) => {
  const list = map.get(key)
  if (list === undefined) map.set(key, [value])
  else list.push(value)
}

/** The routes of one priority of one host class, indexed by path kind. */
class Tier<T> {
  readonly exact = new Map<string, Array<Candidate<T>>>()
  readonly prefix = new Map<string, Array<Candidate<T>>>()
  readonly regex = new RegexIndex<RouteRequest, Candidate<T> & { readonly re: RegExp }>()

  add(path: PathMatch | undefined, candidate: Candidate<T>) {
    if (path === undefined) push(this.prefix, "/", candidate)
    else if (path.exact !== undefined) push(this.exact, path.exact, candidate)
    else if (path.prefix !== undefined) push(this.prefix, path.prefix, candidate)
    else this.regex.add({ ...candidate, re: new RegExp(path.regex!) })
  }

  find(request: RouteRequest): T | undefined {
    const path = request.path
    if (this.exact.size > 0) {
      const exact = this.exact.get(path)
      if (exact !== undefined) for (const c of exact) if (c.accepts(request)) return c.value
    }
    if (this.regex.size > 0) {
      const found = this.regex.find(path, request)
      if (found !== undefined) return found.value
    }
    if (this.prefix.size > 0) {
      // Candidate prefixes from the longest down: the path itself, then at every "/" the part
      // with and without that slash. A prefix thus matches only on a segment boundary.
      let found = this.tryPrefix(path, request)
      if (found !== undefined) return found
      for (let i = path.lastIndexOf("/"); i >= 0; i = i === 0 ? -1 : path.lastIndexOf("/", i - 1)) {
        if (i + 1 < path.length) {
          found = this.tryPrefix(path.slice(0, i + 1), request)
          if (found !== undefined) return found
        }
        if (i > 0) {
          found = this.tryPrefix(path.slice(0, i), request)
          if (found !== undefined) return found
        }
      }
    }
    return undefined
  }

  private tryPrefix(prefix: string, request: RouteRequest): T | undefined {
    const list = this.prefix.get(prefix)
    if (list !== undefined) for (const c of list) if (c.accepts(request)) return c.value
    return undefined
  }
}

/** The routes of one host class: one tier per priority, highest first. */
class PathTable<T> {
  private readonly tiers: Array<Tier<T>> = []
  private readonly priorities: Array<number> = []

  add(priority: number, path: PathMatch | undefined, candidate: Candidate<T>) {
    let at = 0
    while (at < this.priorities.length && this.priorities[at] > priority) at++
    if (this.priorities[at] !== priority) {
      this.priorities.splice(at, 0, priority)
      this.tiers.splice(at, 0, new Tier<T>())
    }
    this.tiers[at].add(path, candidate)
  }

  find(request: RouteRequest): T | undefined {
    const tiers = this.tiers
    for (let i = 0; i < tiers.length; i++) {
      const found = tiers[i].find(request)
      if (found !== undefined) return found
    }
    return undefined
  }
}

/**
 * Compiles routes (in declaration order) into a router.
 *
 * @example
 * const router = compileRouter([
 *   { match: { path: { prefix: "/" } }, value: "rest" },
 *   { match: { path: { regex: "^/v[0-9]+/" } }, value: "versioned" },
 *   { match: { path: { exact: "/v1/login" } }, value: "login" },
 *   { match: { path: { prefix: "/v1/admin" } }, value: "admin", priority: 1 }
 * ])
 * const request = (path: string) => ({ host: "", path, method: "GET", query: "", header: () => undefined })
 * router.find(request("/v1/login"))   // => "login"      (exact first)
 * router.find(request("/v2/things"))  // => "versioned"  (regex before prefix)
 * router.find(request("/things"))     // => "rest"
 * router.find(request("/v1/admin/x")) // => "admin"      (higher priority)
 */
export const compileRouter = <T>(routes: ReadonlyArray<RouteEntry<T>>): Router<T> => {
  const exactHosts = new Map<string, PathTable<T>>()
  const wildcards = new Map<string, PathTable<T>>()
  const anyHost = new PathTable<T>()
  for (let order = 0; order < routes.length; order++) {
    const { match, priority, value } = routes[order]
    const candidate: Candidate<T> = { value, order, accepts: compileConditions(match) }
    const host = match.host?.toLowerCase()
    let table = anyHost
    if (host !== undefined && host.startsWith("*.")) {
      const suffix = host.slice(1)
      table = wildcards.get(suffix) ?? new PathTable<T>()
      wildcards.set(suffix, table)
    } else if (host !== undefined) {
      table = exactHosts.get(host) ?? new PathTable<T>()
      exactHosts.set(host, table)
    }
    table.add(priority ?? 0, match.path, candidate)
  }
  return {
    find(request) {
      const exact = exactHosts.get(request.host)
      if (exact !== undefined) {
        const found = exact.find(request)
        if (found !== undefined) return found
      }
      if (wildcards.size > 0) {
        // `*.example.com` matches `a.example.com` and `a.b.example.com`, not `example.com`:
        // try each suffix starting at a dot after the first label, longest first.
        const host = request.host
        for (let i = host.indexOf("."); i > 0; i = host.indexOf(".", i + 1)) {
          const table = wildcards.get(host.slice(i))
          if (table !== undefined) {
            const found = table.find(request)
            if (found !== undefined) return found
          }
        }
      }
      return anyHost.find(request)
    }
  }
}
