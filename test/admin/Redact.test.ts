/**
 * Redaction of secrets in what the admin API shows: which keys are secret (word by word), and
 * fast-check properties over arbitrary JSON: nothing under a secret key survives, everything
 * else is unchanged, the shape is kept, and redacting twice changes nothing more.
 */
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import type { ConfigEncoded } from "../../src/config/Schema.ts"
import { isSecretKey, placeholderPaths, REDACTED, redactConfig, redactSecrets } from "../../src/admin/Redact.ts"

const SECRET_KEYS = [
  "token",
  "password",
  "secret",
  "api_key",
  "apikey",
  "apiKey",
  "API_KEY",
  "key",
  "keys",
  "credentials",
  "clientSecret",
  "password_hash",
  "key_sha256",
  "x-api-key",
  "authorization",
  "Authorization",
  "private.key"
]
const PLAIN_KEYS = ["listen", "name", "keep_alive", "hash_on", "monkey", "keycloak", "url", "weight", "tokenizer", "upstream", "routes"]

describe("isSecretKey", () => {
  it.each(SECRET_KEYS)("%s is secret", (key) => expect(isSecretKey(key)).toBe(true))
  it.each(PLAIN_KEYS)("%s is not secret", (key) => expect(isSecretKey(key)).toBe(false))
})

describe("redactSecrets: examples", () => {
  it("redacts admin.token and keeps admin.listen", () => {
    expect(redactSecrets({ admin: { listen: "127.0.0.1:9901", token: "s3cret" } })).toEqual({
      admin: { listen: "127.0.0.1:9901", token: REDACTED }
    })
  })

  it("redacts every scalar below a secret key, keeping keys, list lengths and nulls", () => {
    expect(redactSecrets({ credentials: { user: "alice", pin: 1234, ok: true, extra: null, list: ["a", { b: "c" }] } })).toEqual({
      credentials: { user: REDACTED, pin: REDACTED, ok: REDACTED, extra: null, list: [REDACTED, { b: REDACTED }] }
    })
  })

  it("redacts header values set under a secret-looking header name, not the others", () => {
    const route = { id: "r", headers: { request: { set: { "x-api-key": "k-123", "x-team": "blue" } } } }
    expect(redactSecrets(route)).toEqual({ id: "r", headers: { request: { set: { "x-api-key": REDACTED, "x-team": "blue" } } } })
  })

  it("leaves an undefined secret undefined: nothing to hide, and JSON still omits the key", () => {
    const out = redactSecrets({ admin: { token: undefined, listen: ":9901" } }) as { admin: Record<string, unknown> }
    expect(out.admin.token).toBeUndefined()
    expect(JSON.stringify(out)).toBe(`{"admin":{"listen":":9901"}}`)
  })

  it("keeps a `__proto__` key as a key", () => {
    const value = JSON.parse(`{"__proto__": {"token": "t"}, "a": 1}`)
    const out = redactSecrets(value) as Record<string, unknown>
    expect(Object.hasOwn(out, "__proto__")).toBe(true)
    expect(JSON.stringify(out)).toBe(`{"__proto__":{"token":"${REDACTED}"},"a":1}`)
  })
})

describe("redactConfig", () => {
  it("judges upstream names as names: an upstream called api-key keeps its endpoints, its settings are still judged", () => {
    const config = {
      admin: { listen: ":9901", token: "tok" },
      servers: [{ name: "web", listen: ":8080", routes: [{ id: "all", upstream: "api-key" }] }],
      upstreams: { "api-key": { endpoints: [{ url: "http://127.0.0.1:3000", weight: 2 }] } }
    } satisfies ConfigEncoded
    expect(redactConfig(config)).toEqual({ ...config, admin: { listen: ":9901", token: REDACTED } })
  })
})

// ---------------------------------------------------------------------------------------------
// Properties over arbitrary JSON whose keys are drawn from secret names, plain names and noise.

const keyArb = fc.oneof(fc.constantFrom(...SECRET_KEYS), fc.constantFrom(...PLAIN_KEYS), fc.string({ maxLength: 8 }))
const scalarArb = fc.oneof(fc.string({ maxLength: 10 }), fc.integer(), fc.boolean(), fc.constant(null))
const { json: jsonArb } = fc.letrec<{ json: unknown }>((tie) => ({
  json: fc.oneof(
    { depthSize: "small", maxDepth: 5 },
    scalarArb,
    fc.array(tie("json"), { maxLength: 4 }),
    fc.dictionary(keyArb, tie("json"), { maxKeys: 5 })
  )
}))

interface Leaf {
  readonly path: ReadonlyArray<string | number>
  readonly value: unknown
  readonly underSecret: boolean
}

/** Every scalar of a value with its path and whether a secret key is on the way to it. */
const leaves = (value: unknown, path: ReadonlyArray<string | number> = [], underSecret = false): Array<Leaf> => {
  if (Array.isArray(value)) return value.flatMap((v, i) => leaves(v, [...path, i], underSecret))
  if (typeof value === "object" && value !== null) {
    return Object.entries(value).flatMap(([k, v]) => leaves(v, [...path, k], underSecret || isSecretKey(k)))
  }
  return [{ path, value, underSecret }]
}

/** The value's shape: the same tree with every scalar replaced by a marker. */
const shape = (value: unknown): unknown =>
  Array.isArray(value)
    ? value.map(shape)
    : typeof value === "object" && value !== null
    ? Object.fromEntries(Object.entries(value).map(([k, v]) => [k, shape(v)]))
    : "•"

describe("redactSecrets: properties", () => {
  it("no scalar under a secret key survives (null stays null)", () => {
    fc.assert(fc.property(jsonArb, (value) => {
      for (const leaf of leaves(redactSecrets(value))) {
        if (leaf.underSecret) expect(leaf.value === REDACTED || leaf.value === null, leaf.path.join(".")).toBe(true)
      }
    }))
  })

  it("every value not under a secret key is unchanged, at the same path", () => {
    fc.assert(fc.property(jsonArb, (value) => {
      const before = leaves(value)
      const after = leaves(redactSecrets(value))
      expect(after.map((l) => l.path)).toEqual(before.map((l) => l.path))
      before.forEach((leaf, i) => {
        if (!leaf.underSecret) expect(after[i].value).toEqual(leaf.value)
      })
    }))
  })

  it("keeps the shape: the same keys and list lengths everywhere", () => {
    fc.assert(fc.property(jsonArb, (value) => {
      expect(shape(redactSecrets(value))).toEqual(shape(value))
    }))
  })

  it("a secret planted anywhere under a secret key never appears in the output", () => {
    const marker = "\u2603planted-secret\u2603"
    fc.assert(fc.property(jsonArb, fc.constantFrom(...SECRET_KEYS), fc.array(keyArb, { maxLength: 3 }), (value, secretKey, below) => {
      const planted = below.reduceRight<unknown>((inner, key) => ({ [key]: inner }), marker)
      const doc = { wrapper: [value, { [secretKey]: planted }] }
      expect(JSON.stringify(redactSecrets(doc))).not.toContain(marker)
    }))
  })

  it("is idempotent", () => {
    fc.assert(fc.property(jsonArb, (value) => {
      expect(redactSecrets(redactSecrets(value))).toEqual(redactSecrets(value))
    }))
  })

  it("placeholderPaths finds every redacted secret, so a redacted config sent back is caught", () => {
    fc.assert(fc.property(jsonArb, (value) => {
      const redacted = redactSecrets(value)
      const secretPaths = leaves(redacted).filter((l) => l.underSecret && l.value === REDACTED).map((l) => l.path)
      const found = placeholderPaths(redacted)
      for (const path of secretPaths) expect(found).toContainEqual(path)
    }))
  })
})

describe("placeholderPaths", () => {
  it("names where the placeholder is, and nothing when there is none", () => {
    expect(placeholderPaths({ admin: { token: REDACTED }, list: ["x", REDACTED] })).toEqual([["admin", "token"], ["list", 1]])
    expect(placeholderPaths({ admin: { token: "real" } })).toEqual([])
  })
})
