/**
 * Checks a password against a stored hash in one of the forms htpasswd files and their tools
 * write: bcrypt (`$2a$`, `$2b$`, `$2y$`, through bcryptjs), apr1 (Apache's MD5, through
 * apache-md5) and scrypt as `$scrypt$ln=<log2 N>,r=<r>,p=<p>$<salt base64>$<hash base64>`
 * (node:crypto). The comparison is in constant time for apr1 and scrypt; bcryptjs's own for bcrypt.
 */
import * as Effect from "effect/Effect"
import bcrypt from "bcryptjs"
import { scrypt, timingSafeEqual } from "node:crypto"
import { createRequire } from "node:module"

// A CommonJS module whose typings declare an ES default export it does not have.
const aprMd5 = createRequire(import.meta.url)("apache-md5") as (password: string, salt?: string) => string

const sameText = (a: string, b: string): boolean => {
  const x = Buffer.from(a)
  const y = Buffer.from(b)
  return x.length === y.length && timingSafeEqual(x, y)
}

const scryptForm = /^\$scrypt\$ln=(\d+),r=(\d+),p=(\d+)\$([A-Za-z0-9+/]+={0,2})\$([A-Za-z0-9+/]+={0,2})$/

const verifyScrypt = (password: string, hash: string): Effect.Effect<boolean> => {
  const m = scryptForm.exec(hash)
  if (m === null) return Effect.succeed(false)
  const expected = Buffer.from(m[5], "base64")
  const N = 2 ** Number(m[1])
  const r = Number(m[2])
  const p = Number(m[3])
  return Effect.callback<boolean>((resume) => {
    scrypt(password, Buffer.from(m[4], "base64"), expected.length, { N, r, p, maxmem: 256 * N * r + 1024 * 1024 }, (error, derived) => {
      resume(Effect.succeed(error === null && timingSafeEqual(derived, expected)))
    })
  })
}

/** Whether `password` is the one `hash` was made from. bcrypt and scrypt run off the event loop's hot path (async). */
export const verifyPassword = (password: string, hash: string): Effect.Effect<boolean> => {
  if (hash.startsWith("$apr1$")) return Effect.sync(() => sameText(aprMd5(password, hash), hash))
  if (hash.startsWith("$scrypt$")) return verifyScrypt(password, hash)
  if (hash.startsWith("$2")) return Effect.promise(() => bcrypt.compare(password, hash))
  return Effect.succeed(false)
}
