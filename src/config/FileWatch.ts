/**
 * Following a file for changes. The watch is on the file's directory, filtered by the file's
 * name: editors and `kubectl`/ConfigMap updates replace a file by renaming another one over it,
 * after which a watch on the file itself sees nothing more. A burst of events (an editor's
 * truncate-then-write, a temp file renamed into place, several saves) becomes one notification
 * once the file has been quiet for the debounce time.
 */
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { lstatSync, realpathSync, unwatchFile, watch, watchFile, type Stats } from "node:fs"
import { basename, dirname } from "node:path"

/** Quiet time after the last change event before the file is read again. */
export const DEFAULT_DEBOUNCE: Duration.Input = "250 millis"

/** Poll interval when the platform cannot watch the directory (inotify limits, odd filesystems). */
const POLL_INTERVAL_MS = 1000

const isSymlink = (path: string): boolean => {
  try {
    return lstatSync(path).isSymbolicLink()
  } catch {
    return false
  }
}

/** Starts watching; returns the function that stops it. */
const startWatching = (path: string, notify: () => void, warn: (message: string) => void): (() => void) => {
  const name = basename(path)
  // A Kubernetes ConfigMap volume mounts the file as a symlink into a `..data` directory that
  // each update swaps, so the file's own name never shows up in the events: follow the whole
  // directory then (the reader skips a reload when the content did not change).
  const anyName = isSymlink(path)
  let stop = () => {}
  const poll = (reason: string) => {
    warn(`cannot watch the directory of ${path} (${reason}); polling the file every ${POLL_INTERVAL_MS} ms instead`)
    const listener = (now: Stats, before: Stats) => {
      if (now.mtimeMs !== before.mtimeMs || now.ino !== before.ino || now.size !== before.size) notify()
    }
    watchFile(path, { interval: POLL_INTERVAL_MS, persistent: false }, listener)
    stop = () => unwatchFile(path, listener)
  }
  try {
    const watcher = watch(dirname(path), { persistent: false }, (_event, filename) => {
      if (anyName || filename === null || filename === name) notify()
    })
    watcher.on("error", (error) => {
      watcher.close()
      poll(error.message)
    })
    stop = () => watcher.close()
  } catch (error) {
    poll((error as Error).message)
  }
  // A link to a file elsewhere (`/etc/fibergate.yaml -> /srv/conf/fibergate.yaml`): an edit of
  // the target in place shows up only in the target's directory, so follow that one as well.
  // Best effort: when the link is swapped (a ConfigMap update) the link's directory sees it.
  const target = anyName ? realTarget(path) : undefined
  if (target !== undefined && dirname(target) !== dirname(path)) {
    try {
      const targetName = basename(target)
      const second = watch(dirname(target), { persistent: false }, (_event, filename) => {
        if (filename === null || filename === targetName) notify()
      })
      second.on("error", () => second.close())
      const first = stop
      stop = () => {
        first()
        second.close()
      }
    } catch {
      // The link's directory is still watched.
    }
  }
  return () => stop()
}

const realTarget = (path: string): string | undefined => {
  try {
    return realpathSync(path)
  } catch {
    return undefined
  }
}

/**
 * Change notifications for `path` for the life of the scope (one element per raw event, to be
 * debounced). The watch is in place when this effect returns, so a change made right after is
 * not missed. When the directory cannot be watched it falls back to polling the file, with a
 * warning.
 *
 * @example
 * const changes = yield* watchFileChanges("config/fibergate.yaml")
 * yield* debounceChanges(changes, DEFAULT_DEBOUNCE, Effect.log("changed"))
 */
export const watchFileChanges = (path: string): Effect.Effect<Stream.Stream<void>, never, Scope.Scope> =>
  Effect.gen(function*() {
    // One pending event is as good as many: the consumer only needs to know that something changed.
    const events = yield* Queue.sliding<void>(1)
    const context = yield* Effect.context<never>()
    const warn = (message: string) => Effect.runSyncWith(context)(Effect.logWarning(message))
    yield* Effect.acquireRelease(
      Effect.sync(() => startWatching(path, () => void Queue.offerUnsafe(events, undefined), warn)),
      (stop) => Effect.sync(stop)
    )
    return Stream.fromQueue(events)
  })

/**
 * Runs `onChange` once per burst of `changes`: when `debounce` has passed with no further
 * change. Changes that arrive while `onChange` runs lead to one more run after it. Time is
 * Effect's Clock, so TestClock drives it.
 *
 * @example
 * yield* debounceChanges(changes, "250 millis", source.reload).pipe(Effect.forkScoped)
 */
export const debounceChanges = <E, R>(
  changes: Stream.Stream<unknown>,
  debounce: Duration.Input,
  onChange: Effect.Effect<unknown, E, R>
): Effect.Effect<void, E, R> => changes.pipe(Stream.debounce(debounce), Stream.runForEach(() => onChange))
