/**
 * The raw change feed of a config file (before debouncing), on a real directory. Waiting for a
 * filesystem event is bounded; "no event" is checked against a sentinel: a change to another
 * watched file in the same directory, made afterwards, whose event arrives after theirs.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Option, Stream } from "effect"
import { mkdirSync, renameSync, symlinkSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { watchFileChanges } from "../../src/config/FileWatch.ts"
import { eventually, tempDir } from "../support/liveGateway.ts"

/** Whether at least one event for `path` arrives within 2 s of `act`. */
const notices = (path: string, act: () => void) =>
  Effect.gen(function*() {
    const changes = yield* watchFileChanges(path)
    const first = yield* Effect.forkChild(Stream.runHead(changes))
    act()
    const got = yield* Fiber.join(first).pipe(Effect.timeoutOption("2 seconds"))
    return Option.isSome(got)
  })

describe("config file watch", () => {
  it.live("a write in place is noticed", () =>
    Effect.gen(function*() {
      const path = join(yield* tempDir, "c.yaml")
      writeFileSync(path, "a: 1\n")
      assert.isTrue(yield* notices(path, () => writeFileSync(path, "a: 2\n")))
    }))

  it.live("a file renamed over it is noticed, and so is the next one", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const path = join(dir, "c.yaml")
      writeFileSync(path, "a: 1\n")
      const replace = (text: string) => () => {
        writeFileSync(join(dir, "c.yaml.tmp"), text)
        renameSync(join(dir, "c.yaml.tmp"), path)
      }
      assert.isTrue(yield* notices(path, replace("a: 2\n")))
      assert.isTrue(yield* notices(path, replace("a: 3\n")))
    }))

  it.live("writes to other files in the directory are not changes", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const path = join(dir, "c.yaml")
      const sentinel = join(dir, "sentinel.yaml")
      writeFileSync(path, "a: 1\n")
      writeFileSync(sentinel, "s: 1\n")
      // Which watch saw a change, in the order the events arrived (both watch the same directory).
      const seen: Array<string> = []
      for (const [file, name] of [[path, "config"], [sentinel, "sentinel"]] as const) {
        const changes = yield* watchFileChanges(file)
        yield* Effect.forkChild(Stream.runForEach(changes, () => Effect.sync(() => void seen.push(name))))
      }
      writeFileSync(join(dir, "other.yaml"), "b: 1\n")
      renameSync(join(dir, "other.yaml"), join(dir, "other2.yaml"))
      writeFileSync(sentinel, "s: 2\n")
      yield* eventually(Effect.sync(() => seen.includes("sentinel")), "the sentinel's change is seen")
      assert.deepStrictEqual(seen, ["sentinel"], "the config's watch took another file's event for a change")
      // It does see its own file.
      writeFileSync(path, "a: 2\n")
      yield* eventually(Effect.sync(() => seen.includes("config")), "the config's change is seen")
    }))

  it.live("a Kubernetes ConfigMap update (the ..data symlink swapped) is noticed", () =>
    Effect.gen(function*() {
      // The layout kubelet writes: c.yaml -> ..data/c.yaml, ..data -> ..<timestamp>/
      const dir = yield* tempDir
      mkdirSync(join(dir, "..v1"))
      writeFileSync(join(dir, "..v1", "c.yaml"), "a: 1\n")
      symlinkSync("..v1", join(dir, "..data"))
      symlinkSync(join("..data", "c.yaml"), join(dir, "c.yaml"))
      const path = join(dir, "c.yaml")
      assert.isTrue(
        yield* notices(path, () => {
          mkdirSync(join(dir, "..v2"))
          writeFileSync(join(dir, "..v2", "c.yaml"), "a: 2\n")
          symlinkSync("..v2", join(dir, "..data_tmp"))
          renameSync(join(dir, "..data_tmp"), join(dir, "..data"))
        })
      )
    }))


  it.live("a config path that links to a file in another directory notices edits of the target in place", () =>
    Effect.gen(function*() {
      const linkDir = yield* tempDir
      const targetDir = yield* tempDir
      const target = join(targetDir, "real.yaml")
      writeFileSync(target, "a: 1\n")
      const link = join(linkDir, "fibergate.yaml")
      symlinkSync(target, link)
      assert.isTrue(yield* notices(link, () => writeFileSync(target, "a: 2\n")))
    }))
})
