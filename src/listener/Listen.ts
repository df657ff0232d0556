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
 * Binds `server` to `at`. `onBound` runs as soon as the socket listens, before any connection
 * is accepted (to attach per-connection hooks such as a connection count).
 *
 * @example
 * const address = yield* listen("public", server, { host: "127.0.0.1", port: 0 })
 */
export const listen = (
  name: string,
  server: Server,
  at: { readonly host: string; readonly port: number },
  onBound?: () => void
): Effect.Effect<BoundAddress, ListenError> =>
  Effect.callback<BoundAddress, ListenError>((resume) => {
    const onError = (error: Error) =>
      resume(Effect.fail(new ListenError({ listener: name, address: `${at.host}:${at.port}`, message: error.message })))
    server.once("error", onError)
    server.listen({ host: at.host, port: at.port }, () => {
      server.removeListener("error", onError)
      onBound?.()
      const info = server.address() as AddressInfo
      resume(Effect.succeed({ host: info.address, port: info.port }))
    })
  })

/**
 * Stops accepting at once (the listening socket is closed before this effect first yields),
 * closes idle keep-alive connections, and completes once the requests in flight have finished;
 * connections still open after `drainTimeoutMs` are cut (`cutRest` cuts those node:http does
 * not track, such as HTTP/2 connections).
 *
 * @example
 * yield* drain(server, 30_000)
 */
export const drain = (server: Server, drainTimeoutMs: number, cutRest?: () => void): Effect.Effect<void> =>
  Effect.callback<void>((resume) => {
    // Cleared once the drain is over, so no timer outlives the server (a library user's
    // program ends when its gateway's scope closes, not a drain timeout later).
    const deadline = setTimeout(() => {
      server.closeAllConnections()
      cutRest?.()
    }, drainTimeoutMs)
    server.close(() => {
      clearTimeout(deadline)
      resume(Effect.void)
    })
    server.closeIdleConnections()
  })

/**
 * `listen` for the life of the scope, released with `drain`. The drain timeout may be given as
 * a function, read when the drain starts (a reload can change it).
 *
 * @example
 * const address = yield* listenScoped("public", server, { host: "127.0.0.1", port: 0 }, 30_000)
 */
export const listenScoped = (
  name: string,
  server: Server,
  at: { readonly host: string; readonly port: number },
  drainTimeoutMs: number | (() => number),
  onBound?: () => void,
  cutRest?: () => void
): Effect.Effect<BoundAddress, ListenError, Scope.Scope> =>
  Effect.acquireRelease(
    listen(name, server, at, onBound),
    () => drain(server, typeof drainTimeoutMs === "number" ? drainTimeoutMs : drainTimeoutMs(), cutRest)
  )
