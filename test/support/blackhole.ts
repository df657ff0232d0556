/**
 * Test support: a loopback address that never completes a TCP handshake, for connect timeouts.
 *
 * A listening socket whose accept queue is full makes Linux drop every further SYN (with
 * `net.ipv4.tcp_abort_on_overflow` = 0, the default): the client stays in SYN_SENT and
 * retransmits, exactly as towards a blackholed address. The socket belongs to a worker thread
 * that blocks its event loop (Atomics.wait) right after `listen`, so nothing ever accepts; with a
 * backlog of 1 the kernel queues two connections, which this helper makes itself before handing
 * out the port. Released at the end of the scope (the worker wakes, closes and exits).
 */
import { Effect, type Scope } from "effect"
import { connect, type Socket } from "node:net"
import { Worker } from "node:worker_threads"

const WORKER = `
const { parentPort, workerData } = require("node:worker_threads")
const net = require("node:net")
const server = net.createServer()
server.listen({ host: "127.0.0.1", port: 0, backlog: 1 }, () => {
  parentPort.postMessage(server.address().port)
  // The loop stops here: the kernel queues connections, nobody accepts them.
  Atomics.wait(workerData, 0, 0)
  server.close()
})
`

/** Connections the kernel queues for a backlog of 1 (sk_max_ack_backlog + 1). */
const QUEUED = 2

/** A port on 127.0.0.1 whose SYNs go unanswered for the life of the scope. */
export const unansweredPort: Effect.Effect<number, never, Scope.Scope> = Effect.gen(function*() {
  const wake = new Int32Array(new SharedArrayBuffer(4))
  const worker = yield* Effect.acquireRelease(
    Effect.sync(() => new Worker(WORKER, { eval: true, workerData: wake })),
    (w) =>
      Effect.callback<void>((resume) => {
        w.once("exit", () => resume(Effect.void))
        Atomics.store(wake, 0, 1)
        Atomics.notify(wake, 0)
      }).pipe(Effect.timeout("2 seconds"), Effect.ignore)
  )
  const port = yield* Effect.callback<number>((resume) => void worker.once("message", (p: number) => resume(Effect.succeed(p))))
  const fillers: Array<Socket> = []
  yield* Effect.addFinalizer(() => Effect.sync(() => fillers.forEach((s) => s.destroy())))
  for (let i = 0; i < QUEUED; i++) {
    yield* Effect.callback<void>((resume) => {
      const socket = connect(port, "127.0.0.1", () => resume(Effect.void))
      socket.on("error", () => undefined)
      fillers.push(socket)
    }).pipe(Effect.timeout("2 seconds"), Effect.orDie)
  }
  return port
})
