/**
 * `workers: auto` is one worker per core (README "Multi-core"): the CLI asks
 * `os.availableParallelism()`, mocked here so that no constant (and not the 2 cores of the
 * machine running the tests) can pass for it. `test/workers/Cluster.test.ts` runs a real
 * `workers: auto` primary.
 */
import { assert, describe, it } from "@effect/vitest"
import { vi } from "vitest"

const cores = vi.hoisted(() => ({ value: 1 }))
vi.mock("node:os", async (importOriginal) => ({
  ...(await importOriginal<typeof import("node:os")>()),
  availableParallelism: () => cores.value
}))

const { workerCount } = await import("../../src/cli/main.ts")

describe("workerCount (workers: n | auto)", () => {
  it("auto is os.availableParallelism(), whatever it is", () => {
    for (const n of [1, 3, 7, 64]) {
      cores.value = n
      assert.strictEqual(workerCount("auto"), n)
    }
  })

  it("a number is that many workers; absent is one process", () => {
    cores.value = 8
    assert.deepStrictEqual([workerCount(1), workerCount(2), workerCount(5), workerCount(undefined)], [1, 2, 5, 1])
  })
})
