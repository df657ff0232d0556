/**
 * A middleware written as an Effect that needs the program's own service (the README's
 * example): it asks `Accounts` whether the caller is suspended, refuses with 403 if so, and
 * tells the upstream who the caller is. `custom: suspended` in the config refers to it.
 */
import { Context, Effect, Layer } from "effect"
import { type ConfigError, type ConfigSource, Forbidden, Gateway, type Middleware } from "../src/index.ts"

export class Accounts extends Context.Service<Accounts, {
  readonly suspended: (user: string) => Effect.Effect<boolean>
}>()("app/Accounts") {}

export const suspendedCheck: Middleware<Accounts> = (request) =>
  Effect.gen(function*() {
    const user = request.header("x-user") ?? "anonymous"
    const accounts = yield* Accounts
    if (yield* accounts.suspended(user)) return yield* Effect.fail(new Forbidden({ message: "This account is suspended" }))
    request.setHeader("x-account", user)
  })

/** Your own implementation of the service; here mallory is suspended. */
export const AccountsLive = Layer.succeed(Accounts, Accounts.of({ suspended: (user) => Effect.succeed(user === "mallory") }))

/** The gateway with the middleware registered; its Layer requires Accounts, provided by AccountsLive. */
export const gateway = (source: Layer.Layer<ConfigSource, ConfigError>) =>
  Gateway.layerWith(source, { middlewares: { suspended: suspendedCheck } }).pipe(Layer.provide(AccountsLive))

// Layer.launch(gateway(ConfigSource.layerFile("fibergate.yaml"))).pipe(NodeRuntime.runMain)
