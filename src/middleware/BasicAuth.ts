/**
 * `basic_auth`: HTTP Basic credentials (RFC 7617) checked against bcrypt, scrypt or apr1
 * hashes. A missing or wrong credential answers 401 with `WWW-Authenticate: Basic realm=…`;
 * the user becomes the request's consumer and the Authorization header is not forwarded.
 * A successful check is remembered for a minute (by a digest of the credentials, never the
 * password), so bcrypt's deliberate cost is not paid on every request of a client.
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import { createHash } from "node:crypto"
import type { BasicAuth } from "../config/MiddlewareSchema.ts"
import { Unauthorized } from "./GatewayError.ts"
import type { PipelineRequest, Step } from "./Middleware.ts"
import { verifyPassword } from "./PasswordHash.ts"

/** How long a verified credential is trusted without checking its hash again. */
export const VERIFIED_TTL_MS = 60_000
/** Verified credentials remembered at most; the memory is cleared when it is full. */
export const VERIFIED_MAX = 10_000

/** The user and password of a `Basic` Authorization value, or undefined when it is not one. */
export const parseBasic = (authorization: string | undefined): { readonly user: string; readonly password: string } | undefined => {
  if (authorization === undefined) return undefined
  const m = /^basic[ \t]+([A-Za-z0-9+/]+={0,2})[ \t]*$/i.exec(authorization)
  if (m === null) return undefined
  const decoded = Buffer.from(m[1], "base64").toString("utf8")
  const colon = decoded.indexOf(":")
  if (colon <= 0) return undefined
  return { user: decoded.slice(0, colon), password: decoded.slice(colon + 1) }
}

/** Supported hash forms, as the config schema checks them. */
const HASH_FORM = /^(\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}|\$apr1\$[./A-Za-z0-9]{1,8}\$[./A-Za-z0-9]{22}|\$scrypt\$ln=\d{1,2},r=\d{1,2},p=\d{1,2}\$[A-Za-z0-9+/]+={0,2}\$[A-Za-z0-9+/]+={0,2})$/

/**
 * The users of an htpasswd file's text: `user:hash` lines; blank lines and `#` comments
 * skipped. A line whose hash is of another form ({SHA}, crypt, plain) is reported by its line
 * number and left out (it can never match).
 */
export const parseHtpasswd = (text: string): { readonly users: ReadonlyArray<{ readonly name: string; readonly hash: string }>; readonly skipped: ReadonlyArray<number> } => {
  const users: Array<{ name: string; hash: string }> = []
  const skipped: Array<number> = []
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim()
    if (line === "" || line.startsWith("#")) return
    const colon = line.indexOf(":")
    const hash = line.slice(colon + 1)
    if (colon <= 0 || !HASH_FORM.test(hash)) skipped.push(i + 1)
    else users.push({ name: line.slice(0, colon), hash })
  })
  return { users, skipped }
}

/**
 * @example
 * compileBasicAuth({ realm: "api", users: [{ name: "alice", hash: "$2y$10$…" }] })
 */
export const compileBasicAuth = (
  config: BasicAuth & { readonly users: NonNullable<BasicAuth["users"]> },
  verify: (password: string, hash: string) => Effect.Effect<boolean> = verifyPassword
): Step => {
  const realm = config.realm ?? "fibergate"
  const challenge = `Basic realm="${realm}", charset="UTF-8"`
  const required = new Unauthorized({ message: "Credentials are required", challenge })
  const wrong = new Unauthorized({ message: "The credentials are not valid", challenge })
  const users = new Map(config.users.map((u) => [u.name, u.hash]))
  const verified = new Map<string, number>()
  return (request: PipelineRequest, next) => {
    const authorization = request.header("authorization")
    const credentials = parseBasic(authorization)
    if (credentials === undefined) return Effect.fail(required)
    const hash = users.get(credentials.user)
    if (hash === undefined) return Effect.fail(wrong)
    const go = () => {
      request.setConsumer(credentials.user)
      request.removeHeader("authorization")
      return next(request)
    }
    const key = createHash("sha256").update(authorization!).update("\0").update(hash).digest("base64")
    return Effect.flatMap(Clock.currentTimeMillis, (now) => {
      const until = verified.get(key)
      if (until !== undefined && until > now) return go()
      return Effect.flatMap(verify(credentials.password, hash), (ok) => {
        if (!ok) return Effect.fail(wrong)
        if (verified.size >= VERIFIED_MAX) verified.clear()
        verified.set(key, now + VERIFIED_TTL_MS)
        return go()
      })
    })
  }
}
