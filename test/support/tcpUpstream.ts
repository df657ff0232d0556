/**
 * Test support: a bare HTTP/1.1 upstream on a `node:net` server, for tests about connections
 * rather than requests: it records every TCP connection (and when it closes) and every request
 * on it, can hold responses until released, and sends a `Keep-Alive: timeout=N` hint only when
 * asked (node:http always sends one).
 */
import { createServer, type AddressInfo, type Server, type Socket } from "node:net"

export interface SeenConnection {
  readonly id: number
  /** Requests received on this connection so far. */
  requests: number
  closedAt: number | undefined
  /** Resolves when the connection closes (either side). */
  readonly closed: Promise<void>
}

export interface HeldRequest {
  readonly connection: SeenConnection
  /** Sends the `200 ok` response. */
  readonly release: () => void
}

export interface TcpUpstream {
  readonly origin: string
  readonly port: number
  readonly connections: Array<SeenConnection>
  /** Requests received and not yet answered (only when `hold` is on). */
  readonly held: Array<HeldRequest>
  /** Resolves once `n` requests have been received in all. */
  readonly received: (n: number) => Promise<void>
  readonly close: () => Promise<void>
}

const RESPONSE = (hint: number | undefined) =>
  `HTTP/1.1 200 OK\r\nContent-Length: 2\r\n${hint === undefined ? "" : `Keep-Alive: timeout=${hint}\r\n`}\r\nok`

/**
 * Starts the upstream on 127.0.0.1:0. Requests are GETs without a body (a head ending in an
 * empty line); each gets `200 ok` at once, or when released with `hold`.
 */
export const startTcpUpstream = (options: { readonly hold?: boolean; readonly keepAliveHint?: number } = {}): Promise<TcpUpstream> =>
  new Promise((resolve) => {
    const connections: Array<SeenConnection> = []
    const held: Array<HeldRequest> = []
    const sockets = new Set<Socket>()
    let total = 0
    const waiters: Array<{ readonly n: number; readonly resolve: () => void }> = []
    const server: Server = createServer((socket) => {
      sockets.add(socket)
      let onClose: () => void = () => undefined
      const connection: SeenConnection = {
        id: connections.length + 1,
        requests: 0,
        closedAt: undefined,
        closed: new Promise<void>((r) => (onClose = r))
      }
      connections.push(connection)
      socket.on("close", () => {
        sockets.delete(socket)
        connection.closedAt = Date.now()
        onClose()
      })
      socket.on("error", () => undefined)
      let buffered = ""
      socket.setEncoding("latin1")
      socket.on("data", (chunk: string) => {
        buffered += chunk
        for (let end = buffered.indexOf("\r\n\r\n"); end !== -1; end = buffered.indexOf("\r\n\r\n")) {
          buffered = buffered.slice(end + 4)
          connection.requests++
          total++
          const release = () => void (socket.destroyed || socket.write(RESPONSE(options.keepAliveHint)))
          if (options.hold === true) held.push({ connection, release })
          else release()
          for (const w of waiters.splice(0)) {
            if (total >= w.n) w.resolve()
            else waiters.push(w)
          }
        }
      })
    })
    server.listen(0, "127.0.0.1", () => {
      const port = (server.address() as AddressInfo).port
      resolve({
        origin: `http://127.0.0.1:${port}`,
        port,
        connections,
        held,
        received: (n) => (total >= n ? Promise.resolve() : new Promise((r) => void waiters.push({ n, resolve: r }))),
        close: () =>
          new Promise<void>((r) => {
            for (const s of sockets) s.destroy()
            server.close(() => r())
          })
      })
    })
  })

/** `promise`, or a rejection naming `what` after `ms` (a bound on a wait, not a proof). */
export const within = <A>(ms: number, what: string, promise: Promise<A>): Promise<A> => {
  let timer: ReturnType<typeof setTimeout> | undefined
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms)))
  ]).finally(() => clearTimeout(timer))
}
