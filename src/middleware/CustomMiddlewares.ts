/**
 * The middlewares library users register by name (`custom: <name>` in the config). The
 * registering Layer requires what the middlewares require, so users provide their own
 * services with their own Layers; each middleware runs with the services captured then.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type { Middleware } from "./Middleware.ts"

export class CustomMiddlewares extends Context.Service<CustomMiddlewares, ReadonlyMap<string, Middleware<never>>>()(
  "fibergate/middleware/CustomMiddlewares"
) {
  /** No custom middlewares: a config naming one is answered 500 (see MiddlewareChain). */
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
