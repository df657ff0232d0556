/**
 * Secrets out of what the admin API shows. A value is secret when it sits under a key whose
 * name has a secret word in it (`token`, `password`, `secret`, `key`, `api_key`, `credentials`,
 * `authorization` …, matched word by word, so `key_sha256`, `clientSecret` and `x-api-key` are
 * secret and `keep_alive` or `monkey` are not). Every scalar below such a key becomes
 * `"<redacted>"`, however deep; the shape (keys, list lengths, nulls) stays, so an operator still
 * sees that a secret is set. Everything else is returned unchanged.
 *
 * Over-redacting is the safe side: a header rule `set: { x-api-key: "…" }` or a match on
 * `authorization` is hidden too, as is every field of a future `api_key:` middleware.
 */
import type { ConfigEncoded } from "../config/Schema.ts"

/** What a secret value is shown as. A config sent back with it is refused (see `placeholderPaths`). */
export const REDACTED = "<redacted>"

const SECRET_WORDS: ReadonlySet<string> = new Set([
  "token",
  "tokens",
  "password",
  "passwords",
  "passwd",
  "passphrase",
  "secret",
  "secrets",
  "key",
  "keys",
  "apikey",
  "apikeys",
  "credential",
  "credentials",
  "authorization"
])

/** The words of a key: split at `_`, `-`, `.`, spaces and camelCase humps, lower-cased. */
const wordsOf = (key: string): Array<string> =>
  key.replace(/([a-z0-9])([A-Z])/g, "$1 $2").toLowerCase().split(/[^a-z0-9]+/)

/**
 * Whether values under `key` are secrets.
 *
 * @example
 * isSecretKey("api_key") // => true
 * isSecretKey("key_sha256") // => true
 * isSecretKey("keep_alive") // => false
 */
export const isSecretKey = (key: string): boolean => wordsOf(key).some((word) => SECRET_WORDS.has(word))

const isPlainObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value)

const redactBelow = (value: unknown, secret: boolean): unknown => {
  if (Array.isArray(value)) return value.map((item) => redactBelow(item, secret))
  // fromEntries defines own properties, so a key such as `__proto__` stays a key.
  if (isPlainObject(value)) return Object.fromEntries(Object.entries(value).map(([key, inner]) => [key, redactBelow(inner, secret || isSecretKey(key))]))
  return secret && value !== null && value !== undefined ? REDACTED : value
}

/**
 * A copy of a JSON-like value with every scalar under a secret key replaced by `REDACTED`.
 *
 * @example
 * redactSecrets({ admin: { listen: ":9901", token: "s3cret" } })
 * // => { admin: { listen: ":9901", token: "<redacted>" } }
 */
export const redactSecrets = (value: unknown): unknown => redactBelow(value, false)

/**
 * The encoded config with its secrets redacted. Upstream names are names, not settings: an
 * upstream called `api-key-service` keeps its endpoints visible (its settings are still judged).
 */
export const redactConfig = (config: ConfigEncoded): Record<string, unknown> =>
  Object.fromEntries(Object.entries(config).map(([key, value]) => [
    key,
    key === "upstreams" && isPlainObject(value)
      ? Object.fromEntries(Object.entries(value).map(([name, upstream]) => [name, redactSecrets(upstream)]))
      : redactBelow(value, isSecretKey(key))
  ]))

/**
 * Where a value holds the `REDACTED` placeholder: a config copied from `GET /config` and sent
 * back would otherwise set a token to the text `<redacted>` and lock the operator out.
 *
 * @example
 * placeholderPaths({ admin: { token: "<redacted>" } }) // => [["admin", "token"]]
 */
export const placeholderPaths = (value: unknown, at: ReadonlyArray<PropertyKey> = []): Array<ReadonlyArray<PropertyKey>> => {
  if (value === REDACTED) return [at]
  if (Array.isArray(value)) return value.flatMap((item, i) => placeholderPaths(item, [...at, i]))
  if (isPlainObject(value)) return Object.entries(value).flatMap(([key, inner]) => placeholderPaths(inner, [...at, key]))
  return []
}
