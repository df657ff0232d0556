/** CORS decisions (the Fetch standard's preflight and actual-request rules) and origin patterns. */
import { describe, expect, it } from "@effect/vitest"
import fc from "fast-check"
import { compileCorsDecision, compileOriginMatcher } from "../../src/middleware/Cors.ts"

const headersOf = (h: Record<string, string>) => (name: string) => h[name]

describe("compileOriginMatcher", () => {
  it("matches exact origins in any case, and subdomain patterns by one or more labels", () => {
    const allowed = compileOriginMatcher(["https://app.example.com", "https://*.example.org", "http://*.local:8080"])
    expect(allowed("https://app.example.com")).toBe(true)
    expect(allowed("HTTPS://APP.EXAMPLE.COM")).toBe(true)
    expect(allowed("http://app.example.com")).toBe(false)
    expect(allowed("https://app.example.com:8443")).toBe(false)
    expect(allowed("https://a.example.org")).toBe(true)
    expect(allowed("https://a.b.example.org")).toBe(true)
    expect(allowed("https://example.org")).toBe(false)
    expect(allowed("https://.example.org")).toBe(false)
    expect(allowed("https://evil.com/.example.org")).toBe(false)
    expect(allowed("https://evilexample.org")).toBe(false)
    expect(allowed("http://x.local:8080")).toBe(true)
    expect(allowed("http://x.local")).toBe(false)
    expect(allowed("null")).toBe(false)
  })

  it("* matches every origin", () => {
    fc.assert(fc.property(fc.string(), (origin) => compileOriginMatcher(["*"])(origin)))
  })

  it("property: a pattern matches exactly the origins made of its scheme, some labels and its suffix", () => {
    const label = fc.stringMatching(/^[a-z0-9-]{1,8}$/)
    fc.assert(fc.property(fc.array(label, { minLength: 1, maxLength: 3 }), fc.constantFrom("https://", "http://"), (labels, scheme) => {
      const allowed = compileOriginMatcher(["https://*.example.org"])
      expect(allowed(`${scheme}${labels.join(".")}.example.org`)).toBe(scheme === "https://")
    }))
  })
})

describe("compileCorsDecision", () => {
  const decide = compileCorsDecision({
    origins: ["https://app.example.com"],
    methods: ["GET", "PUT"],
    headers: ["Authorization", "x-api-key"],
    expose: ["x-request-id"],
    credentials: true,
    max_age: 600_000
  })

  it("a request without Origin is not CORS", () => {
    expect(decide("GET", headersOf({}))).toEqual({ kind: "not-cors" })
    // OPTIONS without Origin is an ordinary OPTIONS for the upstream.
    expect(decide("OPTIONS", headersOf({ "access-control-request-method": "PUT" }))).toEqual({ kind: "not-cors" })
  })

  it("OPTIONS with Origin but without Access-Control-Request-Method is an actual request", () => {
    expect(decide("OPTIONS", headersOf({ origin: "https://app.example.com" })).kind).toBe("actual")
  })

  it("an allowed preflight gets the origin, methods, headers, credentials and max age", () => {
    const d = decide("OPTIONS", headersOf({ origin: "https://app.example.com", "access-control-request-method": "PUT", "access-control-request-headers": "authorization, X-API-KEY" }))
    expect(d).toEqual({
      kind: "preflight",
      reply: {
        status: 204,
        headers: {
          "access-control-allow-origin": "https://app.example.com",
          "access-control-allow-methods": "GET, PUT",
          "access-control-allow-headers": "authorization, x-api-key",
          "access-control-allow-credentials": "true",
          "access-control-max-age": "600",
          vary: "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"
        }
      }
    })
  })

  it("a preflight is refused (no allow headers) for another origin, an unlisted method or an unlisted header; safelisted methods need no listing", () => {
    const refused = { kind: "preflight", reply: { status: 204, headers: { vary: "Origin, Access-Control-Request-Method, Access-Control-Request-Headers" } } }
    expect(decide("OPTIONS", headersOf({ origin: "https://other.example.com", "access-control-request-method": "GET" }))).toEqual(refused)
    expect(decide("OPTIONS", headersOf({ origin: "https://app.example.com", "access-control-request-method": "DELETE" }))).toEqual(refused)
    expect(decide("OPTIONS", headersOf({ origin: "https://app.example.com", "access-control-request-method": "GET", "access-control-request-headers": "x-other" }))).toEqual(refused)
    expect(decide("OPTIONS", headersOf({ origin: "https://app.example.com", "access-control-request-method": "POST" })).kind).toBe("preflight")
    const post = decide("OPTIONS", headersOf({ origin: "https://app.example.com", "access-control-request-method": "POST" }))
    expect(post.kind === "preflight" && post.reply.headers?.["access-control-allow-origin"]).toBe("https://app.example.com")
  })

  it("an actual request from an allowed origin gets the origin, credentials and exposed headers; another origin only Vary", () => {
    expect(decide("GET", headersOf({ origin: "https://app.example.com" }))).toEqual({
      kind: "actual",
      headers: ["access-control-allow-origin", "https://app.example.com", "vary", "Origin", "access-control-allow-credentials", "true", "access-control-expose-headers", "x-request-id"]
    })
    expect(decide("GET", headersOf({ origin: "https://other.example.com" }))).toEqual({ kind: "actual", headers: ["vary", "Origin"] })
  })

  it("origins: * answers * without credentials, and no max age or allowed headers when none are configured", () => {
    const open = compileCorsDecision({ origins: ["*"] })
    expect(open("GET", headersOf({ origin: "https://x.test" }))).toEqual({ kind: "actual", headers: ["access-control-allow-origin", "*", "vary", "Origin"] })
    const d = open("OPTIONS", headersOf({ origin: "https://x.test", "access-control-request-method": "GET" }))
    expect(d.kind === "preflight" && d.reply.headers).toStrictEqual({
      "access-control-allow-origin": "*",
      "access-control-allow-methods": "GET, HEAD, POST",
      vary: "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"
    })
  })
})
