/**
 * Test support: loopback ports and raw TCP exchanges, so that nothing is cleaned up by a
 * client library before it reaches the gateway.
 */
import { Effect, type Scope } from "effect"
import { connect, createServer, type AddressInfo } from "node:net"

/** A port on 127.0.0.1 that was free a moment ago (nothing listens on it): bind port 0, read it, close. */
export const freePort = Effect.callback<number>((resume) => {
  const server = createServer()
  server.listen(0, "127.0.0.1", () => {
    const port = (server.address() as AddressInfo).port
    server.close(() => resume(Effect.succeed(port)))
  })
})

export interface RawResponse {
  /** The status line as sent, e.g. `HTTP/1.1 200 OK` (empty when no head arrived). */
  readonly statusLine: string
  /** The status code (0 when no head arrived). */
  readonly status: number
  /** Header values by lower-case name, in the order they arrived. */
  readonly headers: ReadonlyMap<string, ReadonlyArray<string>>
  /** The body as latin1 text (everything received, when no head arrived). */
  readonly body: string
  /** Whether the gateway closed the connection. */
  readonly closed: boolean
}

/** Splits a response head from `text` (latin1), or undefined while the head is incomplete. */
const parseHead = (text: string) => {
  const end = text.indexOf("\r\n\r\n")
  if (end === -1) return undefined
  const lines = text.slice(0, end).split("\r\n")
  const m = /^HTTP\/1\.[01] (\d{3}) /.exec(lines[0])
  const headers = new Map<string, Array<string>>()
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(":")
    const name = line.slice(0, colon).trim().toLowerCase()
    headers.set(name, [...(headers.get(name) ?? []), line.slice(colon + 1).trim()])
  }
  return { statusLine: lines[0], status: m === null ? 0 : Number(m[1]), headers, bodyStart: end + 4 }
}

/**
 * Writes `data` on a fresh TCP connection to 127.0.0.1:port and reads one response: until it
 * is complete (by Content-Length) or, with `untilClose`, until the gateway closes the connection.
 */
export const raw = (port: number, data: string, options: { readonly untilClose?: boolean } = {}) =>
  Effect.callback<RawResponse>((resume) => {
    const socket = connect(port, "127.0.0.1")
    let text = ""
    const result = (closed: boolean): RawResponse => {
      const head = parseHead(text)
      return head === undefined
        ? { statusLine: "", status: 0, headers: new Map(), body: text, closed }
        : { statusLine: head.statusLine, status: head.status, headers: head.headers, body: text.slice(head.bodyStart), closed }
    }
    socket.setEncoding("latin1")
    socket.on("data", (chunk: string) => {
      text += chunk
      if (options.untilClose === true) return
      const head = parseHead(text)
      const length = head?.headers.get("content-length")?.[0]
      if (head !== undefined && length !== undefined && text.length - head.bodyStart >= Number(length)) {
        resume(Effect.succeed(result(false)))
        socket.destroy()
      }
    })
    socket.on("error", () => undefined)
    socket.on("close", () => resume(Effect.succeed(result(true))))
    socket.write(data)
    return Effect.sync(() => void socket.destroy())
  }).pipe(Effect.timeout("1500 millis"))

/** Holds a port on 127.0.0.1 (another program's socket) for the life of the scope, or until released. */
export const holdPort: Effect.Effect<{ readonly port: number; readonly release: Effect.Effect<void> }, never, Scope.Scope> = Effect.acquireRelease(
  Effect.callback<ReturnType<typeof createServer>>((resume) => {
    const server = createServer()
    server.listen(0, "127.0.0.1", () => resume(Effect.succeed(server)))
  }),
  (server) => Effect.sync(() => void (server.listening && server.close()))
).pipe(Effect.map((server) => ({
  port: (server.address() as AddressInfo).port,
  release: Effect.callback<void>((resume) => void server.close(() => resume(Effect.void)))
})))
