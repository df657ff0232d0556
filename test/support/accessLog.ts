/**
 * Test support: the JSON access-log lines a gateway in this process writes to stdout, captured
 * while the test's scope is open (stdout is still written to).
 */
import { Effect } from "effect"

export type Line = Record<string, unknown>

export const captureAccessLog = Effect.acquireRelease(
  Effect.sync(() => {
    const lines: Array<Line> = []
    const original = process.stdout.write
    let pending = ""
    process.stdout.write = function(this: NodeJS.WriteStream, chunk: unknown, ...rest: Array<unknown>) {
      const text = typeof chunk === "string" ? chunk : Buffer.from(chunk as Uint8Array).toString()
      pending += text
      let nl: number
      while ((nl = pending.indexOf("\n")) !== -1) {
        const line = pending.slice(0, nl)
        pending = pending.slice(nl + 1)
        if (line.startsWith("{\"time\":")) lines.push(JSON.parse(line) as Line)
      }
      return (original as (...args: Array<unknown>) => boolean).call(this, chunk, ...rest)
    } as typeof process.stdout.write
    return { lines, restore: () => void (process.stdout.write = original) }
  }),
  (capture) => Effect.sync(capture.restore)
)

