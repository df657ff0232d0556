/**
 * Binding a node:http server as a scoped resource: acquire = listen, release = stop accepting,
 * close idle keep-alive connections, let in-flight requests finish up to the drain deadline,
 * then cut what is left.
 */
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import type { Server } from "node:http"
import type { AddressInfo } from "node:net"

/** A listener could not bind its address (in use, permission denied, bad interface). */
export class ListenError extends Schema.TaggedError<ListenError>()("ListenError", {
  listener: Schema.String,
  address: Schema.String,
  message: Schema.String
}) {}

export interface BoundAddress {
  readonly host: string
  readonly port: number
}

/**
 * @example
 * const address = yield* listenScoped("public", server, { host: "127.0.0.1", port: 0 }, 30_000)
 */
export const listenScoped = (
  name: string,
  server: Server,
  at: { readonly host: string; readonly port: number },
  drainTimeoutMs: number
): Effect.Effect<BoundAddress, ListenError, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.callback<BoundAddress, ListenError>((resume) => {
      const onError = (error: Error) =>
        resume(Effect.fail(new ListenError({ listener: name, address: `${at.host}:${at.port}`, message: error.message })))
      server.once("error", onError)
      server.listen({ host: at.host, port: at.port }, () => {
        server.removeListener("error", onError)
        const info = server.address() as AddressInfo
        resume(Effect.succeed({ host: info.address, port: info.port }))
      })
    }),
    () =>
      Effect.callback<void>((resume) => {
        server.close(() => resume(Effect.void))
        server.closeIdleConnections()
        const deadline = setTimeout(() => server.closeAllConnections(), drainTimeoutMs)
        deadline.unref()
      })
  )
