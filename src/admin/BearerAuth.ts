/**
 * The admin API's optional bearer token (`admin.token`, RFC 6750). The presented and the
 * configured token are both hashed with SHA-256 and the digests compared with
 * `crypto.timingSafeEqual`: equal-length buffers whatever the input, so the comparison takes the
 * same time wherever the first differing byte is, and the token's length does not leak either.
 */
import { createHash, timingSafeEqual } from "node:crypto"

/** Why a request was not let in: no bearer credentials at all, or a token that does not match. */
export type BearerRejection = "missing" | "invalid"

const digest = (text: string): Buffer => createHash("sha256").update(text, "utf8").digest()

// The scheme is case-insensitive (RFC 7235 §2.1); one or more spaces separate it from the token.
const bearer = /^bearer +(.+)$/is

/**
 * Checks an `Authorization` header against `token`; undefined when it matches.
 *
 * @example
 * checkBearer("Bearer s3cret", "s3cret") // => undefined
 * checkBearer("Bearer nope", "s3cret") // => "invalid"
 * checkBearer(undefined, "s3cret") // => "missing"
 */
export const checkBearer = (authorization: string | undefined, token: string): BearerRejection | undefined => {
  const m = authorization === undefined ? null : bearer.exec(authorization.trim())
  if (m === null) return "missing"
  return timingSafeEqual(digest(m[1]), digest(token)) ? undefined : "invalid"
}

/**
 * The `WWW-Authenticate` challenge of a 401: `error="invalid_token"` only when a token was
 * presented (RFC 6750 §3.1).
 */
export const challenge = (rejection: BearerRejection): string =>
  rejection === "invalid" ? `Bearer realm="fibergate-admin", error="invalid_token"` : `Bearer realm="fibergate-admin"`
