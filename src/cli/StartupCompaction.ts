/**
 * One memory-reducing garbage collection a second after `fibergate run` has started: loading
 * the CLI, parsing and compiling the config leave a young generation grown to its cap and an
 * old one with room to spare, which nothing collects while the gateway waits for traffic. V8's
 * "last resort" collection (what it runs on a low-memory notification) compacts the heap and
 * returns those pages: committed heap 21 -> 14 MB, idle RSS on the shipped config about 74 ->
 * 68.5 MB (README, "Footprint"). It costs one pause, two mark-compacts of about 16 ms each
 * (--trace-gc), once; a plain major collection frees the same objects but keeps the spaces
 * committed. Only the CLI calls it, never the library.
 */
import { setFlagsFromString } from "node:v8"
import { runInNewContext } from "node:vm"

type Gc = (options: { readonly type: "major"; readonly execution: "sync"; readonly flavor: "last-resort" }) => void

export const STARTUP_COMPACTION_DELAY_MS = 1_000

/**
 * Runs the collection now; false when the runtime has no gc extension (the memory stays).
 * The `gc` function comes from a fresh context, so the global scope of user code stays as it is.
 */
export const compactHeap = (): boolean => {
  try {
    setFlagsFromString("--expose-gc")
    ;(runInNewContext("gc") as Gc)({ type: "major", execution: "sync", flavor: "last-resort" })
    return true
  } catch {
    return false
  }
}

/** Schedules compactHeap (an unref'd timer: it never keeps a stopping process alive). */
export const compactAfterStartup = (delayMs = STARTUP_COMPACTION_DELAY_MS): void => {
  setTimeout(compactHeap, delayMs).unref()
}
