/**
 * Test support: one client connection kept open across steps of a test (a keep-alive client
 * that sends, waits for a response, sends again on the same socket, and can tell when and how
 * the gateway closed it). Every wait is for an event (bytes arriving, the socket closing),
 * bounded so that a hang fails the test.
 */
import { assert } from "@effect/vitest"
import { Effect, type Scope } from "effect"
import { connect, type Socket } from "node:net"
import { parseResponses, type WireResponse } from "./wire.ts"

export interface Connection {
  readonly socket: Socket
  /** Everything received so far, latin1. */
  readonly text: () => string
  /** Whether the connection has closed (either side). */
  readonly isClosed: () => boolean
  /** Writes bytes as given. */
  readonly write: (data: string | Buffer) => Effect.Effect<void>
  /** Waits until `n` complete responses arrived on this connection (at most `ms`); returns them all. */
  readonly responses: (n: number, ms?: number) => Effect.Effect<ReadonlyArray<WireResponse>>
  /** Waits until the connection closes (at most `ms`); the time it took from the call. */
  readonly closed: (ms?: number) => Effect.Effect<number>
}

/**
 * Opens a connection to 127.0.0.1:port for the life of the scope; resolves once it is connected.
 * With `allowHalfOpen` the client keeps its side open after the gateway ends its own (to send
 * more, or to end it with `socket.end()` later), and `closed` waits for both.
 */
export const openConnection = (
  port: number,
  options: { readonly allowHalfOpen?: boolean } = {}
): Effect.Effect<Connection, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.callback<Connection>((resume) => {
      const socket = connect({ port, host: "127.0.0.1", allowHalfOpen: options.allowHalfOpen ?? false })
      let text = ""
      let closed = false
      const waiters = new Set<() => void>()
      const wake = () => {
        for (const w of [...waiters]) w()
      }
      socket.setEncoding("latin1")
      socket.on("data", (chunk: string) => {
        text += chunk
        wake()
      })
      socket.on("error", () => undefined)
      socket.on("close", () => {
        closed = true
        wake()
      })
      /** Waits until `ready()` returns a value, re-checking on every event; fails after `ms`. */
      const until = <A>(ready: () => A | undefined, what: string, ms: number) =>
        Effect.callback<A>((done) => {
          const now = ready()
          if (now !== undefined) return done(Effect.succeed(now))
          const check = () => {
            const value = ready()
            if (value === undefined) return
            waiters.delete(check)
            clearTimeout(timer)
            done(Effect.succeed(value))
          }
          const timer = setTimeout(() => {
            waiters.delete(check)
            done(Effect.sync(() => assert.fail(`timed out after ${ms} ms waiting for ${what}; received: ${JSON.stringify(text)}`)))
          }, ms)
          waiters.add(check)
          return Effect.sync(() => {
            waiters.delete(check)
            clearTimeout(timer)
          })
        })
      const connection: Connection = {
        socket,
        text: () => text,
        isClosed: () => closed,
        write: (data) => Effect.sync(() => void socket.write(data)),
        responses: (n, ms = 3_000) =>
          until(() => {
            const { responses } = parseResponses(text)
            return responses.length >= n ? responses : undefined
          }, `${n} response(s)`, ms),
        closed: (ms = 3_000) => {
          const started = performance.now()
          return until(() => (closed ? performance.now() - started : undefined), "the connection to close", ms)
        }
      }
      socket.once("connect", () => resume(Effect.succeed(connection)))
      socket.once("error", (e) => resume(Effect.die(e)))
      return Effect.sync(() => void socket.destroy())
    }).pipe(Effect.timeout("2 seconds"), Effect.orDie),
    (c) => Effect.sync(() => void c.socket.destroy())
  )

/** A GET request head for a keep-alive connection. */
export const getRequest = (path: string, extra = "") => `GET ${path} HTTP/1.1\r\nHost: t\r\n${extra}\r\n`

/** A POST with a Content-Length body. */
export const postRequest = (path: string, body: string, extra = "") =>
  `POST ${path} HTTP/1.1\r\nHost: t\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${extra}\r\n${body}`
