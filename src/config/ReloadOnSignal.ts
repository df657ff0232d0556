/**
 * SIGHUP re-reads the config (nginx's convention). The handler only enqueues; a scoped fiber
 * performs reloads one at a time, and a rejected config leaves the running one in force.
 * The listener stays installed for the life of the layer, so a second SIGHUP arriving during a
 * reload is queued rather than killing the process with the default action.
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Queue from "effect/Queue"
import { ConfigSource } from "./ConfigSource.ts"

export const layerReloadOnSighup: Layer.Layer<never, never, ConfigSource> = Layer.effectDiscard(
  Effect.gen(function*() {
    const source = yield* ConfigSource
    const signals = yield* Queue.unbounded<void>()
    const onSignal = () => void Queue.offerUnsafe(signals, undefined)
    yield* Effect.acquireRelease(
      Effect.sync(() => process.on("SIGHUP", onSignal)),
      () => Effect.sync(() => process.removeListener("SIGHUP", onSignal))
    )
    yield* Queue.take(signals).pipe(
      Effect.andThen(source.reload),
      Effect.tap((config) => Effect.logInfo(`config reloaded from ${source.source} (${config.servers.length} server(s))`)),
      Effect.ignore,
      Effect.forever,
      Effect.forkScoped
    )
  })
)
