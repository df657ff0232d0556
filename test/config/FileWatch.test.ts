/**
 * How the config file is followed, at the node:fs boundary: which directories are watched (and
 * that the watches neither keep the process alive nor outlive their scope), which events count
 * as a change of the file, and the fallback to polling when a directory cannot be watched.
 * `watch`/`watchFile` are the real ones, wrapped to record what was asked; events are fed to
 * the real watcher objects with `emit`, so no test waits on the filesystem except the last one
 * of the polling fallback.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Logger, References, Stream } from "effect"
import { type FSWatcher, mkdirSync, type Stats, symlinkSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { vi } from "vitest"
import { watchFileChanges } from "../../src/config/FileWatch.ts"
import { tempDir } from "../support/liveGateway.ts"

interface WatchRecord {
  readonly dir: string
  readonly options: unknown
  readonly watcher: FSWatcher
  closed: boolean
}
interface PollRecord {
  readonly path: string
  readonly options: unknown
  readonly listener: (now: Stats, before: Stats) => void
  unwatched: boolean
}

const fsLog = vi.hoisted(() => ({
  watches: [] as Array<WatchRecord>,
  polls: [] as Array<PollRecord>,
  /** When set, `watch` throws it (an inotify limit, say). */
  failWatch: undefined as Error | undefined
}))

vi.mock("node:fs", async (importOriginal) => {
  const actual = await importOriginal<typeof import("node:fs")>()
  const watch = (dir: string, options: unknown, listener: (event: string, filename: string | null) => void) => {
    if (fsLog.failWatch !== undefined) throw fsLog.failWatch
    const watcher = actual.watch(dir, options as { persistent?: boolean }, listener)
    const record: WatchRecord = { dir, options, watcher, closed: false }
    const close = watcher.close.bind(watcher)
    watcher.close = () => {
      record.closed = true
      close()
    }
    fsLog.watches.push(record)
    return watcher
  }
  const watchFile = (path: string, options: { interval: number }, listener: PollRecord["listener"]) => {
    fsLog.polls.push({ path, options, listener, unwatched: false })
    return actual.watchFile(path, options, listener)
  }
  const unwatchFile = (path: string, listener: PollRecord["listener"]) => {
    for (const poll of fsLog.polls) if (poll.path === path && poll.listener === listener) poll.unwatched = true
    return actual.unwatchFile(path, listener)
  }
  return { ...actual, watch, watchFile, unwatchFile }
})

/** Lets the consumer fiber take what was offered (no I/O involved, so a few turns suffice). */
const settle = Effect.gen(function*() {
  for (let i = 0; i < 20; i++) yield* Effect.yieldNow
})

/** Follows `path` for the life of the scope, counting change notifications and capturing warnings. */
const follow = (path: string) =>
  Effect.gen(function*() {
    fsLog.watches.length = 0
    fsLog.polls.length = 0
    const warnings: Array<string> = []
    const capture = Logger.make((options) => {
      if (options.logLevel === "Warn") warnings.push(String(options.message))
    })
    const changes = yield* watchFileChanges(path).pipe(
      Effect.provide(Logger.layer([capture])),
      Effect.provideService(References.MinimumLogLevel, "Info")
    )
    let count = 0
    yield* Effect.forkScoped(Stream.runForEach(changes, () => Effect.sync(() => void count++)))
    yield* settle
    return { changes: () => count, warnings, watches: [...fsLog.watches], polls: fsLog.polls }
  })

const emit = (record: WatchRecord, filename: string | null) =>
  Effect.andThen(Effect.sync(() => void record.watcher.emit("change", "rename", filename)), settle)

const stats = (s: { mtimeMs: number; ino: number; size: number }) => s as Stats

describe("config file watch: what is watched", () => {
  it.live("the file's directory is watched without keeping the process alive, and the watch is closed with its scope", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const path = join(dir, "c.yaml")
      writeFileSync(path, "a: 1\n")
      const watches = yield* Effect.scoped(Effect.gen(function*() {
        const { watches } = yield* follow(path)
        assert.deepStrictEqual(watches.map((w) => [w.dir, w.options, w.closed]), [[dir, { persistent: false }, false]])
        return watches
      }))
      assert.isTrue(watches[0].closed, "the directory watch outlived its scope")
    }))

  it.live("a link to a file in another directory also watches the target's directory; both watches closed with the scope", () =>
    Effect.gen(function*() {
      const linkDir = yield* tempDir
      const targetDir = yield* tempDir
      writeFileSync(join(targetDir, "real.yaml"), "a: 1\n")
      const link = join(linkDir, "fibergate.yaml")
      symlinkSync(join(targetDir, "real.yaml"), link)
      const watches = yield* Effect.scoped(Effect.gen(function*() {
        const { watches } = yield* follow(link)
        assert.deepStrictEqual(watches.map((w) => [w.dir, w.options]), [[linkDir, { persistent: false }], [targetDir, { persistent: false }]])
        return watches
      }))
      assert.deepStrictEqual(watches.map((w) => w.closed), [true, true])
    }))

  it.live("a link to a file in the same directory needs one watch", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      writeFileSync(join(dir, "real.yaml"), "a: 1\n")
      symlinkSync("real.yaml", join(dir, "c.yaml"))
      const { watches } = yield* follow(join(dir, "c.yaml"))
      assert.deepStrictEqual(watches.map((w) => w.dir), [dir])
    }))

  it.live("a dangling link is followed through its directory", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      symlinkSync(join(dir, "gone", "real.yaml"), join(dir, "c.yaml"))
      const { changes, watches } = yield* follow(join(dir, "c.yaml"))
      assert.deepStrictEqual(watches.map((w) => w.dir), [dir])
      yield* emit(watches[0], "..data")
      assert.strictEqual(changes(), 1)
    }))
})

describe("config file watch: which events are changes", () => {
  it.live("an event naming the file is a change, one naming another file is not, one without a name is", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const path = join(dir, "c.yaml")
      writeFileSync(path, "a: 1\n")
      const { changes, watches } = yield* follow(path)
      yield* emit(watches[0], "other.yaml")
      yield* emit(watches[0], "c.yaml.swp")
      assert.strictEqual(changes(), 0)
      yield* emit(watches[0], "c.yaml")
      assert.strictEqual(changes(), 1)
      // Some platforms do not report the name: that may be the file, so it counts.
      yield* emit(watches[0], null)
      assert.strictEqual(changes(), 2)
    }))

  it.live("a file that does not exist yet: only events naming it are changes", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const { changes, watches } = yield* follow(join(dir, "c.yaml"))
      yield* emit(watches[0], "other.yaml")
      assert.strictEqual(changes(), 0)
      yield* emit(watches[0], "c.yaml")
      assert.strictEqual(changes(), 1)
    }))

  it.live("for a link into another directory, any event in the link's directory is a change; in the target's, only the target's name or no name", () =>
    Effect.gen(function*() {
      const linkDir = yield* tempDir
      const targetDir = yield* tempDir
      writeFileSync(join(targetDir, "real.yaml"), "a: 1\n")
      symlinkSync(join(targetDir, "real.yaml"), join(linkDir, "fibergate.yaml"))
      const { changes, watches } = yield* follow(join(linkDir, "fibergate.yaml"))
      const [linkWatch, targetWatch] = watches
      yield* emit(targetWatch, "other.yaml")
      yield* emit(targetWatch, "fibergate.yaml")
      assert.strictEqual(changes(), 0)
      yield* emit(targetWatch, "real.yaml")
      assert.strictEqual(changes(), 1)
      yield* emit(targetWatch, null)
      assert.strictEqual(changes(), 2)
      // A ConfigMap swaps `..data`: the link's own name never shows up there.
      yield* emit(linkWatch, "..data")
      assert.strictEqual(changes(), 3)
    }))

  it.live("an error on the target's directory watch closes that watch only; the link's directory is still followed", () =>
    Effect.gen(function*() {
      const linkDir = yield* tempDir
      const targetDir = yield* tempDir
      writeFileSync(join(targetDir, "real.yaml"), "a: 1\n")
      symlinkSync(join(targetDir, "real.yaml"), join(linkDir, "fibergate.yaml"))
      const { changes, polls, warnings, watches } = yield* follow(join(linkDir, "fibergate.yaml"))
      watches[1].watcher.emit("error", new Error("EACCES"))
      assert.deepStrictEqual(watches.map((w) => w.closed), [false, true])
      assert.deepStrictEqual([polls.length, warnings], [0, []])
      yield* emit(watches[0], "..data")
      assert.strictEqual(changes(), 1)
    }))
})

describe("config file watch: polling when the directory cannot be watched", () => {
  it.live("an error on the directory watch closes it and polls the file every 1000 ms, with a warning; the poll stops with the scope", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const path = join(dir, "c.yaml")
      writeFileSync(path, "a: 1\n")
      const polls = yield* Effect.scoped(Effect.gen(function*() {
        const { polls, warnings, watches } = yield* follow(path)
        assert.strictEqual(polls.length, 0)
        watches[0].watcher.emit("error", new Error("EMFILE: too many open files"))
        assert.isTrue(watches[0].closed)
        assert.deepStrictEqual(polls.map((p) => [p.path, p.options]), [[path, { interval: 1000, persistent: false }]])
        assert.deepStrictEqual(warnings, [
          `cannot watch the directory of ${path} (EMFILE: too many open files); polling the file every 1000 ms instead`
        ])
        return [...polls]
      }))
      assert.isTrue(polls[0].unwatched, "the poll outlived its scope")
    }))

  it.live("a directory that cannot be watched at all (an inotify limit) is polled instead, with a warning naming the error", () =>
    Effect.gen(function*() {
      const path = join(yield* tempDir, "c.yaml")
      writeFileSync(path, "a: 1\n")
      fsLog.failWatch = new Error("ENOSPC: System limit for number of file watchers reached")
      const { polls, warnings, watches } = yield* follow(path).pipe(Effect.ensuring(Effect.sync(() => (fsLog.failWatch = undefined))))
      assert.strictEqual(watches.length, 0)
      assert.deepStrictEqual(polls.map((p) => p.path), [path])
      assert.deepStrictEqual(warnings, [
        `cannot watch the directory of ${path} (ENOSPC: System limit for number of file watchers reached); polling the file every 1000 ms instead`
      ])
    }))

  it.live("a poll is a change when the file's mtime, inode or size changed, not when only other attributes did", () =>
    Effect.gen(function*() {
      const path = join(yield* tempDir, "c.yaml")
      writeFileSync(path, "a: 1\n")
      fsLog.failWatch = new Error("ENOSPC")
      const { changes, polls } = yield* follow(path).pipe(Effect.ensuring(Effect.sync(() => (fsLog.failWatch = undefined))))
      const poll = (now: { mtimeMs: number; ino: number; size: number }) =>
        Effect.andThen(Effect.sync(() => polls[0].listener(stats(now), stats({ mtimeMs: 1, ino: 1, size: 1 }))), settle)
      yield* poll({ mtimeMs: 1, ino: 1, size: 1 }) // a chmod, or a read updating atime
      assert.strictEqual(changes(), 0)
      yield* poll({ mtimeMs: 2, ino: 1, size: 1 })
      assert.strictEqual(changes(), 1)
      yield* poll({ mtimeMs: 1, ino: 2, size: 1 }) // a file renamed over it
      assert.strictEqual(changes(), 2)
      yield* poll({ mtimeMs: 1, ino: 1, size: 2 })
      assert.strictEqual(changes(), 3)
    }))

  it.live("a config file in a directory that does not exist yet is polled, and noticed once it is created", () =>
    Effect.gen(function*() {
      const dir = join(yield* tempDir, "conf.d")
      const path = join(dir, "c.yaml")
      const { changes, polls, warnings } = yield* follow(path)
      assert.deepStrictEqual(polls.map((p) => p.path), [path])
      assert.strictEqual(warnings.length, 1)
      assert.include(warnings[0], `cannot watch the directory of ${path} (ENOENT`)
      mkdirSync(dir)
      // The poll's first stat runs in the background: a file written before it is the poll's
      // starting point, not a change. So the file keeps changing (a new size each time) until
      // a poll (every 1 s) notices; bounded at 5 s.
      for (let i = 0; i < 50 && changes() === 0; i++) {
        writeFileSync(path, `a: ${"1".repeat(i + 1)}\n`)
        yield* Effect.sleep("100 millis")
      }
      assert.isAbove(changes(), 0, "the file was not noticed within 5 s")
    }))
})
