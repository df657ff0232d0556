/**
 * Finds routes that can never match because another route of the same listener takes every
 * request they would take. Such a config is valid (it may be a step in an edit), so this yields
 * warnings, not errors: `check` prints them and `RouteTable` logs them on start and every reload.
 *
 * A route B is reported when a route A of the same listener, with the same host (so the same
 * host class), has no method, header or query conditions, is tried before B in the router's
 * order (`Router.ts`: priority descending, then exact < regex < prefix, then the longer prefix,
 * then declaration order), and matches every path B matches. That last part is only claimed
 * where it is certain:
 *
 * - the same path matcher (`exact`, `prefix` or `regex` with the same value; no path is `prefix: /`);
 * - a prefix that covers B's prefix on a segment boundary (`/api` covers `/api/v1`; with
 *   longest-prefix-wins this shadows only with a higher priority);
 * - a prefix or regex that matches B's exact path (again only with a higher priority);
 * - prefix `/` (or no path), which covers a regex route (with a higher priority).
 *
 * A regex that happens to cover a prefix route is not detected (it would take reasoning about
 * regular languages), nor is a route covered only by several routes together.
 */
import type { Config, PathMatch, Route } from "../config/Schema.ts"

/** A route that can never match, and the route that takes its requests. */
export interface ShadowWarning {
  /** Where the shadowed route is, as errors name it: `servers[0].routes[3]`. */
  readonly path: string
  readonly id: string
  /** Where the shadowing route is: `servers[0].routes[1]`. */
  readonly by: string
  readonly byId: string
  /** `never matches: shadowed by routes[1] (id "y"): why`. */
  readonly message: string
}

type Kind = "exact" | "regex" | "prefix"

interface Entry {
  readonly index: number
  readonly id: string
  readonly priority: number
  readonly kind: Kind
  /** The exact path, the prefix or the regex source; `/` for a route without a path. */
  readonly value: string
  readonly noPath: boolean
  readonly unconditional: boolean
}

const KIND_RANK: Record<Kind, number> = { exact: 0, regex: 1, prefix: 2 }

const kindOf = (path: PathMatch | undefined): readonly [Kind, string] =>
  path === undefined
    ? ["prefix", "/"]
    : path.exact !== undefined
    ? ["exact", path.exact]
    : path.prefix !== undefined
    ? ["prefix", path.prefix]
    : ["regex", path.regex!]

const entryOf = (route: Route, index: number): Entry => {
  const match = route.match ?? {}
  const [kind, value] = kindOf(match.path)
  return {
    index,
    id: route.id,
    priority: route.priority ?? 0,
    kind,
    value,
    noPath: match.path === undefined,
    unconditional: match.methods === undefined && Object.keys(match.headers ?? {}).length === 0 &&
      Object.keys(match.query ?? {}).length === 0
  }
}

/** Whether the router tries `a` before `b` when both are in the same host class (Router.ts's order). */
const triedBefore = (a: Entry, b: Entry): boolean => {
  if (a.priority !== b.priority) return a.priority > b.priority
  if (a.kind !== b.kind) return KIND_RANK[a.kind] < KIND_RANK[b.kind]
  if (a.kind === "prefix" && a.value.length !== b.value.length) return a.value.length > b.value.length
  return a.index < b.index
}

const matcherKey = (kind: Kind, value: string) => `${kind}:${value}`

/**
 * The prefixes that match every path `entry` matches (for an exact path or a prefix), found the
 * way the router walks a path: at every "/", the part with and without that slash.
 */
const coveringPrefixes = (entry: Entry): ReadonlyArray<string> => {
  if (entry.kind === "regex") return ["/"]
  const value = entry.value
  const found = new Set<string>()
  if (entry.kind === "exact") found.add(value)
  for (let i = value.indexOf("/"); i >= 0; i = value.indexOf("/", i + 1)) {
    found.add(value.slice(0, i + 1))
    if (i > 0) found.add(value.slice(0, i))
  }
  if (entry.kind === "prefix") found.delete(value)
  return [...found]
}

const describe = (e: Entry): string =>
  e.kind === "exact" ? `exact path "${e.value}"` : e.kind === "regex" ? `regex "${e.value}"` : e.noPath ? `prefix "/" (no path)` : `prefix "${e.value}"`

const NO_CONDITIONS = "no method, header or query conditions"

const explain = (a: Entry, b: Entry, same: boolean): string => {
  const order = a.priority > b.priority ? `higher priority (${a.priority} > ${b.priority})` : "declared first"
  const why = same
    ? `same host and path, ${order}`
    : `its ${describe(a)} ${a.kind === "regex" ? "matches" : "covers"} ${describe(b)}, ${order}`
  return `never matches: shadowed by routes[${a.index}] (id "${a.id}"): ${why}, ${NO_CONDITIONS}`
}

/** Warnings for the routes of one host of one listener (`entries` in declaration order). */
const shadowedInHost = (entries: ReadonlyArray<Entry>): Array<readonly [Entry, Entry, boolean]> => {
  // The routes that can shadow, by path matcher, each list in the router's order.
  const byMatcher = new Map<string, Array<Entry>>()
  const regexes: Array<readonly [Entry, RegExp]> = []
  for (const e of entries) {
    if (!e.unconditional) continue
    const key = matcherKey(e.kind, e.value)
    const list = byMatcher.get(key)
    if (list === undefined) byMatcher.set(key, [e])
    else list.push(e)
    if (e.kind === "regex") regexes.push([e, new RegExp(e.value)])
  }
  for (const list of byMatcher.values()) list.sort((x, y) => (triedBefore(x, y) ? -1 : 1))

  const found: Array<readonly [Entry, Entry, boolean]> = []
  for (const b of entries) {
    let best: Entry | undefined
    let same = false
    const consider = (a: Entry | undefined, isSame: boolean) => {
      if (a === undefined || a === b || !triedBefore(a, b)) return
      if (best === undefined || triedBefore(a, best)) {
        best = a
        same = isSame
      }
    }
    consider(byMatcher.get(matcherKey(b.kind, b.value))?.find((a) => a !== b), true)
    for (const prefix of coveringPrefixes(b)) consider(byMatcher.get(matcherKey("prefix", prefix))?.[0], false)
    if (b.kind === "exact") for (const [a, re] of regexes) if (re.test(b.value)) consider(a, false)
    if (best !== undefined) found.push([b, best, same])
  }
  return found
}

/**
 * Every route of `config` that can never match, in config order.
 *
 * @example
 * findShadowedRoutes(config).map((w) => formatShadowWarning("fibergate.yaml", w))
 * // => ['fibergate.yaml: servers[0].routes[2] (id "api-v1"): never matches: shadowed by routes[0] (id "api"): same host and path, declared first, no method, header or query conditions']
 */
export const findShadowedRoutes = (config: Config): ReadonlyArray<ShadowWarning> => {
  const warnings: Array<ShadowWarning & { readonly order: readonly [number, number] }> = []
  config.servers.forEach((server, s) => {
    // Only routes with the same host compete for the same requests in the same host class.
    const byHost = new Map<string | undefined, Array<Entry>>()
    server.routes.forEach((route, index) => {
      const host = route.match?.host?.toLowerCase()
      const list = byHost.get(host)
      const entry = entryOf(route, index)
      if (list === undefined) byHost.set(host, [entry])
      else list.push(entry)
    })
    for (const entries of byHost.values()) {
      for (const [b, a, same] of shadowedInHost(entries)) {
        warnings.push({
          path: `servers[${s}].routes[${b.index}]`,
          id: b.id,
          by: `servers[${s}].routes[${a.index}]`,
          byId: a.id,
          message: explain(a, b, same),
          order: [s, b.index]
        })
      }
    }
  })
  warnings.sort((x, y) => x.order[0] - y.order[0] || x.order[1] - y.order[1])
  return warnings.map(({ order: _, ...warning }) => warning)
}

/**
 * Renders a warning the way config errors are rendered: `source: path (id "x"): what`.
 *
 * @example
 * formatShadowWarning("config/fibergate.yaml", warning)
 * // => 'config/fibergate.yaml: servers[0].routes[3] (id "x"): never matches: shadowed by routes[1] (id "y"): ...'
 */
export const formatShadowWarning = (source: string, warning: ShadowWarning): string =>
  `${source}: ${warning.path} (id "${warning.id}"): ${warning.message}`
