/**
 * The CLI's one memory-reducing collection after start: it must give committed heap back to
 * the system, not only collect (a plain major GC keeps the grown spaces committed).
 */
import { assert, describe, it } from "@effect/vitest"
import { getHeapStatistics } from "node:v8"
import { compactHeap } from "../../src/cli/StartupCompaction.ts"

describe("compactHeap", () => {
  it("returns the heap's slack: committed size shrinks after a burst of garbage", () => {
    // 40 MB of short-lived arrays grow the young and old generations, as loading does.
    let keep: Array<Array<number>> = []
    for (let i = 0; i < 400; i++) {
      keep.push(Array.from({ length: 12_500 }, (_, j) => j))
      if (keep.length > 100) keep = []
    }
    keep = []
    const before = getHeapStatistics().total_heap_size
    assert.isTrue(compactHeap())
    const after = getHeapStatistics().total_heap_size
    assert.isBelow(after, before - 4 * 2 ** 20, `committed heap ${before} -> ${after} bytes`)
  })
})
