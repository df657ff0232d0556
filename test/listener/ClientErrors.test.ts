/**
 * The listener's `clientError` handler on a real loopback socket pair: a connection the client
 * reset or broke (ECONNRESET, EPIPE) is destroyed without an answer and is not counted as a
 * refused request; a parser error is answered and counted once.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { connect, createServer, type AddressInfo, type Socket } from "node:net"
import { onClientError } from "../../src/listener/ClientErrors.ts"

interface Pair {
  /** The gateway's side, as node:http hands it to `clientError`. */
  readonly server: Socket
  /** Everything the client side received, and whether it has closed. */
  readonly received: () => string
  /** Resolves once the client side has closed. */
  readonly closed: Effect.Effect<void>
}

const socketPair = Effect.acquireRelease(
  Effect.callback<Pair & { readonly close: () => void }>((resume) => {
    const listener = createServer({ allowHalfOpen: true })
    listener.listen(0, "127.0.0.1", () => {
      const client = connect((listener.address() as AddressInfo).port, "127.0.0.1")
      let text = ""
      let done = false
      const waiters: Array<() => void> = []
      client.setEncoding("latin1")
      client.on("data", (chunk: string) => void (text += chunk))
      client.on("error", () => undefined)
      client.on("close", () => {
        done = true
        for (const w of waiters) w()
      })
      listener.once("connection", (server: Socket) => {
        server.on("error", () => undefined)
        resume(Effect.succeed({
          server,
          received: () => text,
          closed: Effect.callback<void>((wake) => {
            if (done) wake(Effect.void)
            else waiters.push(() => wake(Effect.void))
          }).pipe(Effect.timeout("3 seconds"), Effect.orDie),
          close: () => {
            client.destroy()
            server.destroy()
            listener.close()
          }
        }))
      })
    })
  }),
  (pair) => Effect.sync(pair.close)
)

const errorWithCode = (code: string) => Object.assign(new Error(code), { code })

describe("the listener's clientError handler", () => {
  for (const code of ["ECONNRESET", "EPIPE"]) {
    it.live(`${code}: the connection is destroyed, nothing is written, nothing is counted`, () =>
      Effect.gen(function*() {
        const pair = yield* socketPair
        const counted: Array<string> = []
        onClientError(errorWithCode(code), pair.server, { count: (reason) => counted.push(reason) })
        assert.isTrue(pair.server.destroyed)
        yield* pair.closed
        assert.strictEqual(pair.received(), "")
        assert.deepStrictEqual(counted, [])
      }))
  }

  it.live("a parser error (the control): answered with 400, counted once, the connection closed", () =>
    Effect.gen(function*() {
      const pair = yield* socketPair
      const counted: Array<string> = []
      onClientError(errorWithCode("HPE_INVALID_METHOD"), pair.server, { count: (reason) => counted.push(reason) })
      yield* pair.closed
      assert.match(pair.received(), /^HTTP\/1\.1 400 Bad Request\r\n/)
      assert.deepStrictEqual(counted, ["BadRequest"])
    }))
})
