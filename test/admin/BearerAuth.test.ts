/**
 * The admin bearer-token check: a header matches only with the exact token, whatever the case of
 * the scheme; anything else is either "missing" (no bearer credentials) or "invalid".
 */
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { challenge, checkBearer } from "../../src/admin/BearerAuth.ts"

// Header values carry no surrounding whitespace (node strips it), so neither do tokens here.
const tokenArb = fc.string({ minLength: 1, maxLength: 40 }).filter((s) => s.trim() === s && s.length > 0)

describe("checkBearer", () => {
  it("accepts the exact token, with the scheme in any case and any number of spaces after it", () => {
    expect(checkBearer("Bearer s3cret", "s3cret")).toBeUndefined()
    expect(checkBearer("bearer s3cret", "s3cret")).toBeUndefined()
    expect(checkBearer("BEARER   s3cret", "s3cret")).toBeUndefined()
  })

  it("ignores whitespace around the credentials, as a caller that did not strip the header's value passes them", () => {
    expect(checkBearer("  Bearer s3cret", "s3cret")).toBeUndefined()
    expect(checkBearer("Bearer s3cret \t", "s3cret")).toBeUndefined()
    expect(checkBearer("\tBearer s3cre ", "s3cret")).toBe("invalid")
  })

  it("says missing without bearer credentials", () => {
    expect(checkBearer(undefined, "s3cret")).toBe("missing")
    expect(checkBearer("", "s3cret")).toBe("missing")
    expect(checkBearer("Bearer", "s3cret")).toBe("missing")
    expect(checkBearer("Basic czNjcmV0", "s3cret")).toBe("missing")
    expect(checkBearer("s3cret", "s3cret")).toBe("missing")
  })

  it("says invalid for a prefix, a suffix or another case of the token", () => {
    expect(checkBearer("Bearer s3cre", "s3cret")).toBe("invalid")
    expect(checkBearer("Bearer s3crett", "s3cret")).toBe("invalid")
    expect(checkBearer("Bearer S3CRET", "s3cret")).toBe("invalid")
  })

  it("property: a presented token matches exactly when it equals the configured one", () => {
    fc.assert(fc.property(tokenArb, tokenArb, (configured, presented) => {
      expect(checkBearer(`Bearer ${presented}`, configured)).toBe(presented === configured ? undefined : "invalid")
      expect(checkBearer(`Bearer ${configured}`, configured)).toBeUndefined()
    }))
  })
})

describe("challenge", () => {
  it("names the error only when a token was presented (RFC 6750)", () => {
    expect(challenge("missing")).toBe(`Bearer realm="fibergate-admin"`)
    expect(challenge("invalid")).toBe(`Bearer realm="fibergate-admin", error="invalid_token"`)
  })
})
