/**
 * Checks a config must pass beyond its Schema that only the running gateway can make (the
 * `custom:` middlewares registered with it). A config source runs them wherever it decodes a
 * config, so a failing one is rejected like a Schema error: at start, the gateway does not
 * start; on reload, the running config stays in force.
 */
import * as Context from "effect/Context"
import type { Config } from "./Schema.ts"

/** One thing a check found, at a path inside the config (`servers[0].routes[1].middlewares[0].custom`). */
export interface CheckProblem {
  readonly path: ReadonlyArray<PropertyKey>
  readonly message: string
}

export type ConfigCheck = (config: Config) => ReadonlyArray<CheckProblem>

/** The checks config sources run; none unless a gateway provides them. */
export const ConfigChecks = Context.Reference<ReadonlyArray<ConfigCheck>>("fibergate/config/ConfigChecks", {
  defaultValue: () => []
})
