/**
 * The middlewares library users register by name (`custom: <name>` in the config). The
 * registering Layer requires what the middlewares require, so users provide their own
 * services with their own Layers; each middleware runs with the services captured then.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type { CheckProblem, ConfigCheck } from "../config/ConfigChecks.ts"
import type { MiddlewareItem } from "../config/MiddlewareSchema.ts"
import type { Config } from "../config/Schema.ts"
import type { Middleware } from "./Middleware.ts"

export class CustomMiddlewares extends Context.Service<CustomMiddlewares, ReadonlyMap<string, Middleware<never>>>()(
  "fibergate/middleware/CustomMiddlewares"
) {
  /** No custom middlewares (a gateway rejects a config naming one: see registeredCustomCheck). */
  static readonly layerNone: Layer.Layer<CustomMiddlewares> = Layer.succeed(CustomMiddlewares, new Map())

  /**
   * @example
   * CustomMiddlewares.layer({ audit: (request) => Effect.log(request.method, request.path) })
   */
  static readonly layer = <R>(middlewares: Readonly<Record<string, Middleware<R>>>): Layer.Layer<CustomMiddlewares, never, R> =>
    Layer.effect(
      CustomMiddlewares,
      Effect.map(Effect.context<R>(), (context) =>
        new Map(Object.entries(middlewares).map(([name, middleware]) => [
          name,
          ((request) => Effect.provideContext(middleware(request), context)) satisfies Middleware<never>
        ])))
    )
}

/**
 * Every `custom:` middleware in a config must name one of `registered`: a config naming another
 * is rejected with the path of each such item (a typo would otherwise answer 500 at run time).
 */
export const registeredCustomCheck = (registered: ReadonlyArray<string>): ConfigCheck => (config: Config) => {
  const known = new Set(registered)
  const list = registered.length === 0 ? "none" : registered.map((n) => JSON.stringify(n)).join(", ")
  const problems: Array<CheckProblem> = []
  const check = (spec: MiddlewareItem, path: ReadonlyArray<PropertyKey>) => {
    if (typeof spec === "string" || spec.custom === undefined || known.has(spec.custom)) return
    problems.push({ path: [...path, "custom"], message: `No custom middleware is registered as ${JSON.stringify(spec.custom)} (registered: ${list})` })
  }
  for (const [name, spec] of Object.entries(config.middlewares ?? {})) check(spec, ["middlewares", name])
  config.servers.forEach((server, s) => {
    server.middlewares?.forEach((item, i) => check(item, ["servers", s, "middlewares", i]))
    server.routes.forEach((route, r) => route.middlewares?.forEach((item, i) => check(item, ["servers", s, "routes", r, "middlewares", i])))
  })
  return problems
}
