/**
 * Test support: a real `redis-server` (Debian's package, installed by .ci/run) on a free
 * loopback port, without persistence, for the life of the scope; it can be stopped and started
 * again on the same port to test a restart.
 */
import { Effect, type Scope } from "effect"
import { spawn, type ChildProcess } from "node:child_process"
import { connect } from "node:net"
import { freePort } from "./net.ts"

export interface TestRedis {
  readonly port: number
  readonly url: string
  readonly stop: Effect.Effect<void>
  readonly start: Effect.Effect<void>
}

const answersPing = (port: number) =>
  Effect.callback<boolean>((resume) => {
    const socket = connect({ host: "127.0.0.1", port })
    socket.once("connect", () => socket.write("PING\r\n"))
    socket.once("data", (d) => {
      socket.destroy()
      resume(Effect.succeed(d.toString().startsWith("+PONG")))
    })
    socket.once("error", () => resume(Effect.succeed(false)))
  })

export const startRedis: Effect.Effect<TestRedis, never, Scope.Scope> = Effect.gen(function*() {
  const port = yield* freePort
  let child: ChildProcess | undefined
  const start = Effect.gen(function*() {
    const c = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], { stdio: "ignore" })
    child = c
    let missing: Error | undefined
    c.once("error", (e) => {
      missing = e
    })
    for (let i = 0; i < 200; i++) {
      if (missing !== undefined) return yield* Effect.die(new Error(`cannot run redis-server (apt-get install redis-server): ${missing.message}`))
      if (yield* answersPing(port)) return
      yield* Effect.sleep(25)
    }
    return yield* Effect.die(new Error(`redis-server did not answer on 127.0.0.1:${port} within 5 s`))
  })
  const stop = Effect.promise(async () => {
    const c = child
    child = undefined
    if (c === undefined || c.exitCode !== null) return
    const gone = new Promise((resolve) => c.once("exit", resolve))
    c.kill("SIGKILL")
    await gone
  })
  yield* Effect.acquireRelease(start, () => stop)
  return { port, url: `redis://127.0.0.1:${port}`, stop, start }
})
