/**
 * node:cluster workers behind the `WorkerSpawner` interface. Each worker re-runs the same
 * command line and, seeing it is a cluster worker, runs the whole gateway; the listening sockets
 * are shared through the primary.
 */
import cluster from "node:cluster"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type { WorkerExit, WorkerHandle, WorkerSpawner } from "./Supervisor.ts"

/**
 * @param stopTimeoutMs how long a stopped worker may drain before it is killed (SIGKILL, logged)
 */
export const clusterSpawner = (stopTimeoutMs: number): WorkerSpawner => (slot) =>
  Effect.sync((): WorkerHandle => {
    const worker = cluster.fork()
    // Captured at once: the exit may happen before anyone waits for it.
    const exited = Deferred.makeUnsafe<WorkerExit>()
    worker.once("exit", (code, signal) => Deferred.doneUnsafe(exited, Exit.succeed({ code, signal })))
    const signal = (name: NodeJS.Signals) => {
      if (!worker.isDead()) worker.process.kill(name)
    }
    return {
      id: worker.id,
      pid: worker.process.pid,
      exited: Deferred.await(exited),
      signal,
      stop: Effect.sync(() => signal("SIGTERM")).pipe(
        Effect.andThen(Deferred.await(exited)),
        Effect.timeoutOrElse({
          duration: stopTimeoutMs,
          orElse: () =>
            Effect.logWarning(`worker ${slot} (pid ${worker.process.pid}) did not exit within ${stopTimeoutMs} ms of SIGTERM; sending SIGKILL`).pipe(
              Effect.andThen(Effect.sync(() => signal("SIGKILL"))),
              Effect.andThen(Deferred.await(exited))
            )
        }),
        Effect.asVoid
      )
    }
  })
