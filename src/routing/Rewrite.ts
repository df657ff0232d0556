import type { Rewrite } from "../config/Schema.ts"

/** Maps the normalised request path to the path sent upstream. The query is kept separately. */
export type PathRewrite = (path: string) => string

const identity: PathRewrite = (path) => path

/**
 * Compiles a route's `rewrite`. `strip_prefix` removes a prefix only on a segment boundary
 * (`/api` strips from `/api/x` and `/api`, not from `/apix`), leaving at least `/`;
 * `add_prefix` is prepended after stripping; `regex`/`replace` is a JavaScript replace of the
 * first match (`$1` names a group).
 *
 * @example
 * compilePathRewrite({ strip_prefix: "/api", add_prefix: "/v1" })("/api/users") // => "/v1/users"
 */
export const compilePathRewrite = (rewrite: Rewrite | undefined): PathRewrite => {
  if (rewrite === undefined) return identity
  if (rewrite.regex !== undefined) {
    const re = new RegExp(rewrite.regex)
    const replace = rewrite.replace ?? ""
    return (path) => {
      const out = path.replace(re, replace)
      return out.charCodeAt(0) === 47 ? out : "/" + out
    }
  }
  const strip = rewrite.strip_prefix !== undefined && rewrite.strip_prefix !== "/" ? rewrite.strip_prefix.replace(/\/$/, "") : undefined
  const add = rewrite.add_prefix !== undefined && rewrite.add_prefix !== "/" ? rewrite.add_prefix.replace(/\/$/, "") : ""
  return (path) => {
    let rest = path
    if (strip !== undefined && path.startsWith(strip) && (path.length === strip.length || path.charCodeAt(strip.length) === 47)) {
      rest = path.length === strip.length ? "/" : path.slice(strip.length)
    }
    return add === "" ? rest : rest === "/" ? add + "/" : add + rest
  }
}
