/**
 * `cors`: the Fetch standard's CORS protocol answered at the gateway. A preflight (OPTIONS
 * with Origin and Access-Control-Request-Method) is answered here and never reaches the
 * upstream; an actual request from an allowed origin gets the Access-Control-* headers on its
 * response. Every answer that depends on the Origin says `Vary: Origin` so caches keep them apart.
 */
import * as Effect from "effect/Effect"
import type { Cors } from "../config/MiddlewareSchema.ts"
import type { PipelineRequest, Reply, Step } from "./Middleware.ts"

/** Methods a preflight need not list (Fetch: CORS-safelisted methods). */
const SAFE_METHODS = new Set(["GET", "HEAD", "POST"])

const LABELS = /^[a-z0-9-]+(\.[a-z0-9-]+)*$/

/** Decides whether an Origin is one of the configured origins or patterns. */
export const compileOriginMatcher = (origins: ReadonlyArray<string>): ((origin: string) => boolean) => {
  if (origins.includes("*")) return () => true
  const exact = new Set<string>()
  const patterns: Array<{ readonly scheme: string; readonly suffix: string }> = []
  for (const origin of origins) {
    const star = origin.indexOf("://*.")
    if (star === -1) exact.add(origin.toLowerCase())
    else patterns.push({ scheme: origin.slice(0, star + 3).toLowerCase(), suffix: origin.slice(star + 4).toLowerCase() })
  }
  return (origin) => {
    const o = origin.toLowerCase()
    if (exact.has(o)) return true
    for (const { scheme, suffix } of patterns) {
      // One or more labels in place of the `*`: `https://*.example.org` takes a.example.org and
      // a.b.example.org, not example.org itself, nor another port or a path.
      // (An origin shorter than scheme + suffix leaves no labels, which the pattern refuses.)
      if (o.startsWith(scheme) && o.endsWith(suffix) && LABELS.test(o.slice(scheme.length, o.length - suffix.length))) return true
    }
    return false
  }
}

/** What the compiled middleware decides for one request; exported for the decision tests. */
export type CorsDecision =
  | { readonly kind: "not-cors" }
  | { readonly kind: "preflight"; readonly reply: Reply }
  | { readonly kind: "actual"; readonly headers: ReadonlyArray<string> }

const lowerList = (text: string): Array<string> => {
  const out: Array<string> = []
  for (const part of text.split(",")) {
    const name = part.trim().toLowerCase()
    if (name !== "") out.push(name)
  }
  return out
}

/**
 * @example
 * const decide = compileCorsDecision({ origins: ["https://app.example.com"] })
 * decide("GET", (name) => name === "origin" ? "https://app.example.com" : undefined)
 * // => { kind: "actual", headers: ["access-control-allow-origin", "https://app.example.com", "vary", "Origin"] }
 */
export const compileCorsDecision = (config: Cors) => {
  const allowed = compileOriginMatcher(config.origins)
  const anyOrigin = config.origins.includes("*") && config.credentials !== true
  const credentials = config.credentials === true
  const methods = new Set(config.methods ?? ["GET", "HEAD", "POST"])
  const allowMethods = [...methods].join(", ")
  const headers = new Set((config.headers ?? []).map((h) => h.toLowerCase()))
  const allowHeaders = [...headers].join(", ")
  const expose = config.expose === undefined || config.expose.length === 0 ? undefined : config.expose.join(", ")
  const maxAge = config.max_age === undefined ? undefined : String(Math.floor(config.max_age / 1000))
  const preflightVary = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"
  const refusedPreflight: Reply = { status: 204, headers: { vary: preflightVary } }
  return (method: string, header: (name: string) => string | undefined): CorsDecision => {
    const origin = header("origin")
    if (origin === undefined) return { kind: "not-cors" }
    const requested = method === "OPTIONS" ? header("access-control-request-method") : undefined
    if (requested !== undefined) {
      // A refused preflight is still answered (with no Access-Control-Allow-* headers): the
      // browser then refuses the actual request, and the upstream never sees either.
      if (!allowed(origin)) return { kind: "preflight", reply: refusedPreflight }
      if (!SAFE_METHODS.has(requested) && !methods.has(requested)) return { kind: "preflight", reply: refusedPreflight }
      const asked = header("access-control-request-headers")
      if (asked !== undefined) for (const name of lowerList(asked)) if (!headers.has(name)) return { kind: "preflight", reply: refusedPreflight }
      const out: Record<string, string> = {
        "access-control-allow-origin": anyOrigin ? "*" : origin,
        "access-control-allow-methods": allowMethods,
        vary: preflightVary
      }
      if (allowHeaders !== "") out["access-control-allow-headers"] = allowHeaders
      if (credentials) out["access-control-allow-credentials"] = "true"
      if (maxAge !== undefined) out["access-control-max-age"] = maxAge
      return { kind: "preflight", reply: { status: 204, headers: out } }
    }
    if (!allowed(origin)) return { kind: "actual", headers: ["vary", "Origin"] }
    const out = ["access-control-allow-origin", anyOrigin ? "*" : origin, "vary", "Origin"]
    if (credentials) out.push("access-control-allow-credentials", "true")
    if (expose !== undefined) out.push("access-control-expose-headers", expose)
    return { kind: "actual", headers: out }
  }
}

/** The middleware; the chain runs every `cors` first, so preflights are answered before auth. */
export const compileCors = (config: Cors): Step => {
  const decide = compileCorsDecision(config)
  return (request: PipelineRequest, next) => {
    const decision = decide(request.method, request.header)
    if (decision.kind === "preflight") {
      request.respond(decision.reply)
      return Effect.void
    }
    if (decision.kind === "actual") {
      const h = decision.headers
      for (let i = 0; i < h.length; i += 2) request.addResponseHeader(h[i], h[i + 1])
    }
    return next(request)
  }
}
