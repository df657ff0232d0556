/**
 * "A burst of writes is read once after 250 ms of quiet": the default debounce of the file watch,
 * measured from the last write of a burst to the reload it causes, on a real gateway following
 * a real file.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { join } from "node:path"
import * as Gateway from "../../src/gateway/Gateway.ts"
import { startUpstream } from "../support/harness.ts"
import { startLiveGateway, tempDir, writeInPlace } from "../support/liveGateway.ts"

const fileConfig = (upstream: string, tag: string) => ({
  log: { level: "none", access_log: false },
  servers: [{ name: "web", listen: "127.0.0.1:0", routes: [{ id: `all-${tag}`, upstream: "a" }] }],
  upstreams: { a: { endpoints: [{ url: upstream }] } }
})

describe("hot reload: the file watch's default debounce", () => {
  it.live("writes 100 ms apart make one reload, about 250 ms after the last of them (not sooner, not much later)", () =>
    Effect.gen(function*() {
      const a = yield* startUpstream("a")
      const path = join(yield* tempDir, "fibergate.yaml")
      yield* writeInPlace(path, fileConfig(a.url, "0"))
      const gateway = yield* startLiveGateway(Gateway.layerFile(path, {}))
      assert.strictEqual(gateway.routes.generation(), 1)
      let lastWrite = 0
      for (let i = 1; i <= 4; i++) {
        yield* writeInPlace(path, fileConfig(a.url, String(i)))
        lastWrite = performance.now()
        if (i < 4) yield* Effect.sleep("100 millis")
      }
      // Polled every 5 ms (bounded); the time of the first change is what is measured.
      const deadline = performance.now() + 3_000
      while (gateway.routes.generation() === 1 && performance.now() < deadline) yield* Effect.sleep("5 millis")
      const after = performance.now() - lastWrite
      assert.strictEqual(gateway.routes.generation(), 2, "one reload for the burst")
      assert.isAtLeast(after, 240, "not before 250 ms of quiet")
      // A 1 s debounce would take over 1 s; a reload itself takes milliseconds.
      assert.isBelow(after, 1_000)
    }))
})
