/**
 * `api_key`: the request carries one of the configured keys in a header (default `x-api-key`)
 * or a query parameter. Keys are stored as SHA-256 digests and compared in constant time; the
 * key's name becomes the request's consumer; the key is removed before the request goes
 * upstream unless `forward: true`. A missing or unknown key answers 401.
 */
import { createHash, timingSafeEqual } from "node:crypto"
import type { ApiKey } from "../config/MiddlewareSchema.ts"
import { Unauthorized } from "./GatewayError.ts"
import { before, type PipelineRequest, type Step } from "./Middleware.ts"

const missing = new Unauthorized({ message: "An API key is required" })
const unknown = new Unauthorized({ message: "The API key is not valid" })

/** The value of query parameter `name` in a raw query (`?a=1&b=2`), and the query without it. */
export const takeQueryParam = (query: string, name: string): { readonly value: string | undefined; readonly rest: string } => {
  if (query === "") return { value: undefined, rest: query }
  let value: string | undefined
  const kept: Array<string> = []
  for (const pair of query.slice(1).split("&")) {
    const eq = pair.indexOf("=")
    const key = eq === -1 ? pair : pair.slice(0, eq)
    let decoded: string
    try {
      decoded = decodeURIComponent(key.replaceAll("+", " "))
    } catch {
      decoded = key
    }
    if (decoded === name) {
      if (value === undefined) {
        const raw = eq === -1 ? "" : pair.slice(eq + 1)
        try {
          value = decodeURIComponent(raw.replaceAll("+", " "))
        } catch {
          value = raw
        }
      }
    } else kept.push(pair)
  }
  return { value, rest: kept.length === 0 ? "" : `?${kept.join("&")}` }
}

/**
 * @example
 * compileApiKey({ keys: [{ name: "ci", sha256: createHash("sha256").update("secret").digest("hex") }] })
 */
export const compileApiKey = (config: ApiKey): Step => {
  const digests = config.keys.map((k) => ({ name: k.name, digest: Buffer.from(k.sha256, "hex") }))
  const header = (config.header ?? "x-api-key").toLowerCase()
  const query = config.query
  const forward = config.forward === true
  const find = (key: string): string | undefined => {
    const digest = createHash("sha256").update(key, "utf8").digest()
    // Every key is compared, so the time taken says nothing about which one nearly matched.
    let name: string | undefined
    for (const k of digests) if (timingSafeEqual(k.digest, digest) && name === undefined) name = k.name
    return name
  }
  return before((request: PipelineRequest) => {
    let key: string | undefined
    if (query !== undefined) {
      const taken = takeQueryParam(request.query, query)
      key = taken.value
      if (key !== undefined && !forward) request.setQuery(taken.rest)
    } else {
      key = request.header(header)
      if (key !== undefined && !forward) request.removeHeader(header)
    }
    if (key === undefined || key === "") return missing
    const name = find(key)
    if (name === undefined) return unknown
    request.setConsumer(name)
    return undefined
  })
}
