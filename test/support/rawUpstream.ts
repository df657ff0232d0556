/**
 * Test support: an upstream on a raw socket that answers every request head with the same
 * bytes, for replies no HTTP library would write (bad framing, odd reason phrases).
 */
import { Effect, type Scope } from "effect"
import { createServer, type AddressInfo, type Socket } from "node:net"

/** An upstream on a raw socket that answers every request head it reads with `reply`. */
export const rawUpstream = (reply: string): Effect.Effect<{ readonly url: string; readonly requests: () => number }, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.callback<{ server: ReturnType<typeof createServer>; url: string; requests: () => number; sockets: Set<Socket> }>((resume) => {
      let requests = 0
      const sockets = new Set<Socket>()
      const server = createServer((socket) => {
        sockets.add(socket)
        socket.on("close", () => sockets.delete(socket))
        socket.on("error", () => undefined)
        let buffered = ""
        socket.on("data", (chunk) => {
          buffered += chunk.toString("latin1")
          while (buffered.includes("\r\n\r\n")) {
            buffered = buffered.slice(buffered.indexOf("\r\n\r\n") + 4)
            requests++
            socket.write(Buffer.from(reply, "latin1"))
          }
        })
      })
      server.listen(0, "127.0.0.1", () =>
        resume(Effect.succeed({ server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, requests: () => requests, sockets })))
    }),
    ({ server, sockets }) =>
      Effect.callback<void>((resume) => {
        for (const s of sockets) s.destroy()
        server.close(() => resume(Effect.void))
      })
  )
