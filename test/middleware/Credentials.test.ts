/** Taking an API key out of a query, reading Basic credentials, and checking password hashes. */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import bcrypt from "bcryptjs"
import { randomBytes, scryptSync } from "node:crypto"
import { createRequire } from "node:module"
import { takeQueryParam } from "../../src/middleware/ApiKey.ts"
import { parseBasic, parseHtpasswd } from "../../src/middleware/BasicAuth.ts"
import { verifyPassword } from "../../src/middleware/PasswordHash.ts"

const aprMd5 = createRequire(import.meta.url)("apache-md5") as (password: string, salt?: string) => string

describe("takeQueryParam", () => {
  it("takes the first value of the parameter (decoded) and keeps every other pair as it came", () => {
    expect(takeQueryParam("?a=1&key=s%20e+c&b=%2F&key=again", "key")).toEqual({ value: "s e c", rest: "?a=1&b=%2F" })
    expect(takeQueryParam("?key=x", "key")).toEqual({ value: "x", rest: "" })
    expect(takeQueryParam("?key", "key")).toEqual({ value: "", rest: "" })
    expect(takeQueryParam("?a=1", "key")).toEqual({ value: undefined, rest: "?a=1" })
    expect(takeQueryParam("", "key")).toEqual({ value: undefined, rest: "" })
    expect(takeQueryParam("?k%65y=v", "key")).toEqual({ value: "v", rest: "" })
    expect(takeQueryParam("?key=%zz", "key")).toEqual({ value: "%zz", rest: "" })
  })
})

describe("parseBasic", () => {
  const encode = (text: string) => `Basic ${Buffer.from(text).toString("base64")}`
  it("reads user and password (the password may hold colons), in any case of the scheme", () => {
    expect(parseBasic(encode("alice:pa:ss"))).toEqual({ user: "alice", password: "pa:ss" })
    expect(parseBasic(`bAsIc ${Buffer.from("bob:").toString("base64")}`)).toEqual({ user: "bob", password: "" })
    expect(parseBasic(encode("zoë:ünï"))).toEqual({ user: "zoë", password: "ünï" })
  })
  it("refuses what is not Basic credentials", () => {
    expect(parseBasic(undefined)).toBeUndefined()
    expect(parseBasic("Bearer abc")).toBeUndefined()
    expect(parseBasic(encode("no-colon"))).toBeUndefined()
    expect(parseBasic(encode(":nouser"))).toBeUndefined()
    expect(parseBasic("Basic !!!")).toBeUndefined()
    expect(parseBasic("Basic")).toBeUndefined()
  })
})

describe("verifyPassword", () => {
  const salt = randomBytes(16)
  const scrypted = `$scrypt$ln=10,r=8,p=1$${salt.toString("base64")}$${scryptSync("right", salt, 32, { N: 1024, r: 8, p: 1 }).toString("base64")}`
  const hashes = { bcrypt: bcrypt.hashSync("right", 4), apr1: aprMd5("right"), scrypt: scrypted }
  for (const [kind, hash] of Object.entries(hashes)) {
    it.effect(`${kind}: the right password passes, a wrong one does not`, () =>
      Effect.gen(function*() {
        expect(yield* verifyPassword("right", hash)).toBe(true)
        expect(yield* verifyPassword("wrong", hash)).toBe(false)
        expect(yield* verifyPassword("righ", hash)).toBe(false)
      }))
  }
  it.effect("an unknown hash form never passes", () =>
    Effect.gen(function*() {
      expect(yield* verifyPassword("right", "right")).toBe(false)
      expect(yield* verifyPassword("right", "$scrypt$garbage")).toBe(false)
    }))
})

describe("parseHtpasswd", () => {
  it("reads user:hash lines, skips blanks and comments, and reports lines of other hash forms by number", () => {
    const apr = aprMd5("x")
    const { skipped, users } = parseHtpasswd(`# c\nalice:${apr}\r\n\nbob:{SHA}abc\nnocolon\n:${apr}\n`)
    expect(users).toEqual([{ name: "alice", hash: apr }])
    expect(skipped).toEqual([4, 5, 6])
  })
})
