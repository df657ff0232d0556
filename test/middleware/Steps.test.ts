/**
 * Middleware steps run on a request view without a listener: api_key's outcomes and messages,
 * basic_auth's memory of verified credentials under TestClock, and the edges of the parsers.
 */
import { assert, describe, expect, it } from "@effect/vitest"
import { Effect, Exit } from "effect"
import { TestClock } from "effect/testing"
import { createHash } from "node:crypto"
import { createRequire } from "node:module"
import { compileApiKey, takeQueryParam } from "../../src/middleware/ApiKey.ts"
import { compileBasicAuth, parseBasic, parseHtpasswd, VERIFIED_MAX, VERIFIED_TTL_MS } from "../../src/middleware/BasicAuth.ts"
import { compileCorsDecision, compileOriginMatcher } from "../../src/middleware/Cors.ts"
import { authRequestHeaders } from "../../src/middleware/ForwardAuth.ts"
import { compileIpFilter } from "../../src/middleware/IpFilter.ts"
import type { GatewayError } from "../../src/middleware/GatewayError.ts"
import { requestFrom } from "../support/pipelineRequest.ts"

const aprMd5 = createRequire(import.meta.url)("apache-md5") as (password: string, salt?: string) => string
const sha = (text: string) => createHash("sha256").update(text).digest("hex")
const headers = (h: Record<string, string>) => (name: string) => h[name]
const failure = (exit: Exit.Exit<void, GatewayError>) => (Exit.isFailure(exit) && exit.cause.reasons[0]?._tag === "Fail" ? (exit.cause.reasons[0] as { error: GatewayError }).error : undefined)

describe("api_key step", () => {
  const step = compileApiKey({ keys: [{ name: "first", sha256: sha("k") }, { name: "second", sha256: sha("k") }] })
  it.effect("no key and an empty key are 'required'; another key is 'not valid'; the first of keys with one digest names the consumer", () =>
    Effect.gen(function*() {
      for (const [h, message] of [[{}, "An API key is required"], [{ "x-api-key": "" }, "An API key is required"], [{ "x-api-key": "nope" }, "The API key is not valid"]] as const) {
        const { request } = requestFrom("10.0.0.1", { header: headers(h) })
        assert.strictEqual(failure(yield* Effect.exit(step(request, () => Effect.void)))?.message, message)
      }
      const ok = requestFrom("10.0.0.1", { header: headers({ "x-api-key": "k" }) })
      assert.isTrue(Exit.isSuccess(yield* Effect.exit(step(ok.request, () => Effect.void))))
      assert.strictEqual(ok.request.consumer, "first")
      assert.deepStrictEqual(ok.removed, ["x-api-key"])
    }))

  it.effect("a query key with forward: true stays in the query", () =>
    Effect.gen(function*() {
      let query = "?key=k&a=1"
      const kept = compileApiKey({ query: "key", forward: true, keys: [{ name: "q", sha256: sha("k") }] })
      const { request } = requestFrom("10.0.0.1", { query, setQuery: (q: string) => void (query = q) })
      assert.isTrue(Exit.isSuccess(yield* Effect.exit(kept(request, () => Effect.void))))
      assert.strictEqual(query, "?key=k&a=1")
    }))

  it("a parameter name with + is read as a space, like its value", () => {
    expect(takeQueryParam("?api+key=v&x=1", "api key")).toEqual({ value: "v", rest: "?x=1" })
  })
})

describe("basic_auth step (TestClock)", () => {
  const hash = aprMd5("pw")
  const counting = () => {
    let calls = 0
    const step = compileBasicAuth({ users: [{ name: "u", hash }] }, (password, h) =>
      Effect.sync(() => {
        calls++
        return aprMd5(password, h) === h
      }))
    return { step, calls: () => calls }
  }
  const as = (user: string, password: string) =>
    requestFrom("10.0.0.1", { header: headers({ authorization: `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}` }) }).request

  it.effect("a verified credential is not checked again for a minute, then is; a wrong one is checked every time", () =>
    Effect.gen(function*() {
      const { calls, step } = counting()
      assert.isTrue(Exit.isSuccess(yield* Effect.exit(step(as("u", "pw"), () => Effect.void))))
      yield* TestClock.adjust(VERIFIED_TTL_MS - 1)
      assert.isTrue(Exit.isSuccess(yield* Effect.exit(step(as("u", "pw"), () => Effect.void))))
      assert.strictEqual(calls(), 1)
      yield* TestClock.adjust(1)
      assert.isTrue(Exit.isSuccess(yield* Effect.exit(step(as("u", "pw"), () => Effect.void))))
      assert.strictEqual(calls(), 2)
      for (let i = 0; i < 2; i++) assert.strictEqual(failure(yield* Effect.exit(step(as("u", "px"), () => Effect.void)))?.message, "The credentials are not valid")
      assert.strictEqual(calls(), 4)
      assert.strictEqual(failure(yield* Effect.exit(step(requestFrom("10.0.0.1").request, () => Effect.void)))?.message, "Credentials are required")
    }))

  it.effect(`the memory holds at most ${VERIFIED_MAX} credentials: when full it starts again`, () =>
    Effect.gen(function*() {
      let calls = 0
      const users = Array.from({ length: VERIFIED_MAX + 1 }, (_, i) => ({ name: `u${i}`, hash }))
      const step = compileBasicAuth({ users }, () => Effect.sync(() => (calls++, true)))
      for (const { name } of users) yield* step(as(name, "pw"), () => Effect.void)
      assert.strictEqual(calls, VERIFIED_MAX + 1)
      // u0 was forgotten when the memory filled up and the last user came; the last is remembered.
      yield* step(as(`u${VERIFIED_MAX}`, "pw"), () => Effect.void)
      assert.strictEqual(calls, VERIFIED_MAX + 1)
      yield* step(as("u0", "pw"), () => Effect.void)
      assert.strictEqual(calls, VERIFIED_MAX + 2)
    }))
})

describe("parser edges", () => {
  const token = Buffer.from("u:p").toString("base64")
  it("parseBasic: one or more spaces after the scheme and trailing whitespace are fine; anything before the scheme or after the credentials is not", () => {
    expect(parseBasic(`Basic  ${token}`)).toEqual({ user: "u", password: "p" })
    expect(parseBasic(`Basic ${token} \t`)).toEqual({ user: "u", password: "p" })
    expect(parseBasic(`XBasic ${token}`)).toBeUndefined()
    expect(parseBasic(`Basic ${token}!!`)).toBeUndefined()
    expect(parseBasic(`Basic ${token} x`)).toBeUndefined()
  })
  it("parseHtpasswd: whitespace around a line is not part of the user or the hash", () => {
    const apr = aprMd5("x")
    expect(parseHtpasswd(`  alice:${apr}  \n`).users).toEqual([{ name: "alice", hash: apr }])
  })
  it("cors: a pattern's labels must be labels from their first character", () => {
    const allowed = compileOriginMatcher(["https://*.example.org"])
    expect(allowed("https://evil.com/x.example.org")).toBe(false)
    expect(allowed("https://x.example.org")).toBe(true)
  })
  it("cors: an empty entry in Access-Control-Request-Headers is ignored; only OPTIONS is a preflight; * with credentials (refused by the config) still never answers *", () => {
    const decide = compileCorsDecision({ origins: ["https://a.test"], headers: ["x-api-key"] })
    const d = decide("OPTIONS", headers({ origin: "https://a.test", "access-control-request-method": "GET", "access-control-request-headers": "x-api-key, ,," }))
    expect(d.kind === "preflight" && d.reply.headers?.["access-control-allow-origin"]).toBe("https://a.test")
    expect(decide("GET", headers({ origin: "https://a.test", "access-control-request-method": "GET" })).kind).toBe("actual")
    const unchecked = compileCorsDecision({ origins: ["*"], credentials: true })
    expect(unchecked("GET", headers({ origin: "https://a.test" }))).toEqual({
      kind: "actual",
      headers: ["access-control-allow-origin", "https://a.test", "vary", "Origin", "access-control-allow-credentials", "true"]
    })
  })
})

describe("forward_auth's request headers", () => {
  const raw = ["Host", "h", "Connection", "keep-alive", "Keep-Alive", "timeout=5", "Content-Length", "7", "Expect", "100-continue", "X-Forwarded-For", "6.6.6.6", "X-Forwarded-Proto", "https", "Authorization", "Bearer t", "Cookie", "c=1", "TE", "trailers"]
  const { request } = requestFrom("203.0.113.9", { method: "POST", path: "/orders", query: "?id=7", host: "api.test", rawHeaders: raw })
  it("the client's, without hop-by-hop, body and X-Forwarded-* headers, then the gateway's X-Forwarded-*", () => {
    expect(authRequestHeaders(request, undefined)).toEqual([
      "authorization", "Bearer t",
      "cookie", "c=1",
      "x-forwarded-method", "POST",
      "x-forwarded-proto", "http",
      "x-forwarded-host", "api.test",
      "x-forwarded-uri", "/orders?id=7",
      "x-forwarded-for", "203.0.113.9"
    ])
  })
  it("only the listed ones with request_headers", () => {
    expect(authRequestHeaders(request, new Set(["cookie"])).slice(0, 2)).toEqual(["cookie", "c=1"])
    expect(authRequestHeaders(request, new Set(["cookie"])).length).toBe(12)
  })
})

describe("ip_filter step", () => {
  const check = (config: Parameters<typeof compileIpFilter>[0], ip: string) =>
    Effect.runSync(Effect.exit(compileIpFilter(config)(requestFrom(ip).request, () => Effect.void)))
  it("allow alone: inside passes, outside is Forbidden; deny alone: only the denied; an empty deny list denies nobody, an empty allow list allows nobody", () => {
    expect(Exit.isSuccess(check({ allow: ["10.0.0.0/8"] }, "10.1.2.3"))).toBe(true)
    expect(failure(check({ allow: ["10.0.0.0/8"] }, "192.0.2.1"))?._tag).toBe("Forbidden")
    expect(Exit.isSuccess(check({ deny: ["10.0.0.0/8"] }, "192.0.2.1"))).toBe(true)
    expect(failure(check({ deny: ["10.0.0.0/8"] }, "10.0.0.1"))?.message).toBe("The client's address may not use this route")
    expect(Exit.isSuccess(check({ deny: [] }, "10.0.0.1"))).toBe(true)
    expect(Exit.isFailure(check({ allow: [] }, "10.0.0.1"))).toBe(true)
    expect(failure(check({ allow: ["10.0.0.0/8"], deny: ["10.0.0.5"] }, "10.0.0.5"))?._tag).toBe("Forbidden")
    expect(Exit.isSuccess(check({ allow: ["2001:db8::/32"] }, "2001:db8::1"))).toBe(true)
  })
})
