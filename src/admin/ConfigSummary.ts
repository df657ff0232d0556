/**
 * What a config holds at a glance (listeners, routes, upstreams, endpoints) and what a new config
 * changes against the one in force: listeners, routes and upstreams added, removed or changed (by
 * name or route id), and the other top-level sections that differ. `PUT /config`,
 * `POST /config/validate` and `POST /reload` answer with both.
 */
import { isDeepStrictEqual } from "node:util"
import type { Config } from "../config/Schema.ts"

export interface ConfigSummary {
  readonly listeners: number
  readonly routes: number
  readonly upstreams: number
  readonly endpoints: number
}

/**
 * @example
 * summarizeConfig(config) // => { listeners: 1, routes: 2, upstreams: 1, endpoints: 3 }
 */
export const summarizeConfig = (config: Config): ConfigSummary => ({
  listeners: config.servers.length,
  routes: config.servers.reduce((n, server) => n + server.routes.length, 0),
  upstreams: Object.keys(config.upstreams).length,
  endpoints: Object.values(config.upstreams).reduce((n, upstream) => n + upstream.endpoints.length, 0)
})

/** Names (or route ids) in config order: of the new config for added/changed, of the old for removed. */
export interface NameChanges {
  readonly added: ReadonlyArray<string>
  readonly removed: ReadonlyArray<string>
  readonly changed: ReadonlyArray<string>
}

export interface ConfigChanges {
  /** By server name; changed = its listen address, protocol or limits differ (not its routes). */
  readonly listeners: NameChanges
  /** By route id; changed = any of its settings, or the listener it is on, differs. */
  readonly routes: NameChanges
  /** By upstream name; changed = any of its settings differs. */
  readonly upstreams: NameChanges
  /** Other top-level sections (`admin`, `log`, `telemetry` …) that differ. */
  readonly sections: ReadonlyArray<string>
}

const compare = <A>(before: ReadonlyMap<string, A>, after: ReadonlyMap<string, A>): NameChanges => ({
  added: [...after.keys()].filter((name) => !before.has(name)),
  removed: [...before.keys()].filter((name) => !after.has(name)),
  changed: [...after].filter(([name, value]) => before.has(name) && !isDeepStrictEqual(before.get(name), value)).map(([name]) => name)
})

const listenersOf = (config: Config) => new Map(config.servers.map(({ routes: _, ...settings }) => [settings.name, settings]))

const routesOf = (config: Config) =>
  new Map(config.servers.flatMap((server) => server.routes.map((route) => [route.id, { listener: server.name, route }] as const)))

const sectionsOf = (config: Config): Record<string, unknown> => {
  const { servers: _servers, upstreams: _upstreams, ...sections } = config
  return sections
}

/**
 * @example
 * configChanges(running, next).routes // => { added: ["to-b"], removed: [], changed: [] }
 */
export const configChanges = (before: Config, after: Config): ConfigChanges => {
  const was = sectionsOf(before)
  const now = sectionsOf(after)
  return {
    listeners: compare(listenersOf(before), listenersOf(after)),
    routes: compare(routesOf(before), routesOf(after)),
    upstreams: compare(new Map(Object.entries(before.upstreams)), new Map(Object.entries(after.upstreams))),
    sections: [...new Set([...Object.keys(was), ...Object.keys(now)])].filter((key) => !isDeepStrictEqual(was[key], now[key]))
  }
}
