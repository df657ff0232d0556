// What a request's fiber costs by itself: run, suspend on the forwarder's Effect.callback,
// resume, exit, for a route without middlewares (the exchange's own work left out).
// Run: npx node bench/fiber-cost.ts   (prints µs of CPU per request fiber, five rounds)
import * as Effect from "effect/Effect"
import * as Context from "effect/Context"
import { composeSteps, forwarder } from "../src/middleware/Middleware.ts"
const pipeline = composeSteps([], forwarder)
const ctx = Context.empty()
const run = Effect.runCallbackWith(ctx)
const N = 300_000
const fake = { forward: (done: () => void) => void pending.push(done) } as unknown as Parameters<typeof pipeline>[0]
let pending: Array<() => void> = []
let exits = 0
const once = () => {
  run(pipeline(fake), { onExit: () => { exits++ } })
}
for (let round = 0; round < 5; round++) {
  const t0 = process.cpuUsage()
  for (let i = 0; i < N; i++) {
    once()
    // resume later, as the exchange does at the response's end (a different tick in reality)
    if (pending.length >= 50) { for (const d of pending) d(); pending = [] }
  }
  for (const d of pending) d(); pending = []
  const t = process.cpuUsage(t0)
  console.log(`round ${round}: ${((t.user + t.system) / N).toFixed(2)} µs CPU per request fiber (run + suspend + resume + exit), exits ${exits}`)
}
