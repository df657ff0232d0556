import { assert, describe, it } from "@effect/vitest"
import { Clock, Effect, Queue, Stream } from "effect"
import { TestClock } from "effect/testing"
import { debounceChanges } from "../../src/config/FileWatch.ts"
import { settle } from "../support/effects.ts"

/** A change feed driven by the test and a reload that counts its runs (and can take time). */
const setup = (reloadTakes: number = 0) =>
  Effect.gen(function*() {
    const changes = yield* Queue.unbounded<void>()
    const runs: Array<number> = []
    const reload = Effect.gen(function*() {
      runs.push(yield* Clock.currentTimeMillis)
      if (reloadTakes > 0) yield* Effect.sleep(reloadTakes)
    })
    yield* Effect.forkChild(debounceChanges(Stream.fromQueue(changes), "250 millis", reload))
    yield* settle
    const change = Effect.andThen(Queue.offer(changes, undefined), settle)
    const advance = (ms: number) => Effect.andThen(TestClock.adjust(ms), settle)
    return { change, advance, runs }
  })

describe("config file change debounce", () => {
  it.effect("no change, no reload", () =>
    Effect.gen(function*() {
      const { advance, change, runs } = yield* setup()
      yield* advance(10_000)
      assert.deepStrictEqual(runs, [])
      // The debounce was running all along: a change now reloads once, 250 ms later.
      yield* change
      yield* advance(250)
      assert.deepStrictEqual(runs, [10_250])
    }))

  it.effect("a burst of changes makes one reload, once the file has been quiet for the debounce time", () =>
    Effect.gen(function*() {
      const { advance, change, runs } = yield* setup()
      for (let i = 0; i < 5; i++) {
        yield* change
        yield* advance(50)
      }
      // The last change came at 200 ms: nothing before 450 ms.
      yield* advance(199)
      assert.deepStrictEqual(runs, [])
      yield* advance(1)
      assert.deepStrictEqual(runs, [450])
      yield* advance(5_000)
      assert.deepStrictEqual(runs, [450])
    }))

  it.effect("changes further apart than the debounce time reload once each", () =>
    Effect.gen(function*() {
      const { advance, change, runs } = yield* setup()
      yield* change
      yield* advance(300)
      yield* change
      yield* advance(300)
      assert.deepStrictEqual(runs, [250, 550])
    }))

  it.effect("a change during a reload leads to one more reload after it, not one per event", () =>
    Effect.gen(function*() {
      const { advance, change, runs } = yield* setup(1_000)
      yield* change
      yield* advance(250)
      assert.deepStrictEqual(runs, [250])
      // Three changes while the first reload still runs (it takes until 1250 ms).
      yield* change
      yield* change
      yield* advance(100)
      yield* change
      yield* advance(900)
      assert.deepStrictEqual(runs, [250], "the running reload is not interrupted nor overlapped")
      yield* advance(250)
      assert.strictEqual(runs.length, 2)
      yield* advance(5_000)
      assert.strictEqual(runs.length, 2)
    }))
})
