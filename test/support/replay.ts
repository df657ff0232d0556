/** Upstreams for testing whether a request body is replayed on retry. */
import { Effect } from "effect"
import { simpleConfig, startGateway, startUpstream } from "./harness.ts"

/**
 * A gateway over [a, b] (round robin, `retry: {}`): `a` resets the connection once it has read a
 * request body, `b` echoes. The first try goes to `a`; a buffered body is replayed on `b`.
 */
export const resetThenEcho = Effect.gen(function*() {
  let resets = 0
  const a = yield* startUpstream("a", {
    rawHandler: (req) => {
      req.resume()
      req.on("end", () => {
        resets++
        req.socket.destroy()
      })
    }
  })
  const b = yield* startUpstream("b")
  const gateway = yield* startGateway(simpleConfig([a.url, b.url], { retry: {} }, { balance: "round_robin" }))
  return { gateway, b, resets: () => resets }
})
