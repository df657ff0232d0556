/**
 * Which certificate answers a TLS ClientHello's server name: an exact DNS name first, then a
 * wildcard (`*.example.com` covers exactly one label, as RFC 6125 §6.4.3 has clients check
 * it), then the listener's first certificate. Among certificates claiming the same name, the
 * one listed first wins.
 */

export interface SniIndex<A> {
  /** The value for `servername` (any case; undefined or empty: no SNI sent). */
  readonly lookup: (servername: string | undefined) => A
}

/**
 * @example
 * const index = makeSniIndex([{ names: ["example.com", "*.example.com"], value: "a" }, { names: ["other.org"], value: "b" }])
 * index.lookup("www.example.com") // => "a"
 * index.lookup("unknown.net")     // => "a" (the first is the default)
 */
export interface SniEntry<A> {
  readonly names: ReadonlyArray<string>
  readonly value: A
}

export const makeSniIndex = <A>(entries: readonly [SniEntry<A>, ...ReadonlyArray<SniEntry<A>>]): SniIndex<A> => {
  const exact = new Map<string, A>()
  const wildcard = new Map<string, A>()
  for (const { names, value } of entries) {
    for (const name of names) {
      const lower = name.toLowerCase()
      if (lower.startsWith("*.")) {
        if (!wildcard.has(lower.slice(2))) wildcard.set(lower.slice(2), value)
      } else if (!exact.has(lower)) exact.set(lower, value)
    }
  }
  const fallback = entries[0].value
  return {
    lookup: (servername) => {
      if (servername === undefined || servername === "") return fallback
      const name = servername.toLowerCase()
      const hit = exact.get(name)
      if (hit !== undefined) return hit
      const dot = name.indexOf(".")
      if (dot > 0) {
        const parent = wildcard.get(name.slice(dot + 1))
        if (parent !== undefined) return parent
      }
      return fallback
    }
  }
}
