import type { HeaderOps } from "../config/Schema.ts"

/**
 * A route's `headers.request` or `headers.response` rules compiled for a single pass while
 * headers are copied: `drop` holds the lower-case names not to copy (`remove` and the names
 * `set` replaces), `append` the name/value pairs to add after the copy (`set`, then `add`).
 */
export interface HeaderRules {
  readonly drop: ReadonlySet<string> | undefined
  readonly append: ReadonlyArray<string>
}

export const noHeaderRules: HeaderRules = { drop: undefined, append: [] }

/**
 * @example
 * compileHeaderRules({ set: { "x-env": "prod" }, remove: ["x-debug"] })
 * // => { drop: Set { "x-debug", "x-env" }, append: ["x-env", "prod"] }
 */
export const compileHeaderRules = (ops: HeaderOps | undefined): HeaderRules => {
  if (ops === undefined) return noHeaderRules
  const drop = new Set<string>()
  const append: Array<string> = []
  for (const name of ops.remove ?? []) drop.add(name.toLowerCase())
  for (const [name, value] of Object.entries(ops.set ?? {})) {
    drop.add(name.toLowerCase())
    append.push(name, value)
  }
  for (const [name, value] of Object.entries(ops.add ?? {})) append.push(name, value)
  return { drop: drop.size > 0 ? drop : undefined, append }
}
