/**
 * Route and server middlewares through a real gateway and a real upstream: ip_filter, api_key,
 * basic_auth (bcrypt, apr1, scrypt), cors, rate_limit, concurrency_limit, named middlewares,
 * their order, and a library user's middleware that requires its own service.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Layer, Result, SubscriptionRef } from "effect"
import { decodeConfig } from "../../src/config/ConfigLoader.ts"
import bcrypt from "bcryptjs"
import { createHash, randomBytes, scryptSync } from "node:crypto"
import { createRequire } from "node:module"
import { AccountsLive, suspendedCheck } from "../../examples/custom-middleware.ts"
import type { Middleware } from "../../src/middleware/Middleware.ts"
import { captureAccessLog } from "../support/accessLog.ts"
import { simpleConfig, startGateway, startUpstream } from "../support/harness.ts"
import { send, type Reply } from "../support/http.ts"
import { eventually, tempDir } from "../support/liveGateway.ts"
import { writeFileSync } from "node:fs"
import { join } from "node:path"
import { growth, scrapeAdmin } from "../support/prometheus.ts"

const aprMd5 = createRequire(import.meta.url)("apache-md5") as (password: string, salt?: string) => string

const sha256 = (text: string) => createHash("sha256").update(text).digest("hex")
const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`

/** A gateway whose only route runs `middlewares`; `server` adds server-level ones. */
const gatewayWith = (upstream: string, middlewares: ReadonlyArray<unknown>, extra: Record<string, unknown> = {}, options: Parameters<typeof startGateway>[1] = {}) => {
  const config = simpleConfig([upstream], { middlewares })
  return startGateway({ ...config, log: { level: "none", access_log: true, format: "json" }, ...extra }, options)
}

describe("middlewares", () => {
  it.live("ip_filter: a denied address and one outside the allow list get 403 and never reach the upstream; an allowed one passes", () =>
    Effect.gen(function*() {
      const app = yield* startUpstream("app")
      const gateway = yield* gatewayWith(app.url, [{ ip_filter: { allow: ["127.0.0.0/29"], deny: ["127.0.0.2"] } }])
      const before = yield* scrapeAdmin(gateway.adminPort)
      const denied = yield* send(gateway.url("/"), { localAddress: "127.0.0.2" })
      const outside = yield* send(gateway.url("/"), { localAddress: "127.0.0.9" })
      const allowed = yield* send(gateway.url("/"), { localAddress: "127.0.0.3" })
      assert.strictEqual(denied.status, 403)
      assert.strictEqual(JSON.parse(denied.body).error, "Forbidden")
      assert.strictEqual(outside.status, 403)
      assert.strictEqual(allowed.status, 200)
      assert.strictEqual(app.seen.length, 1)
      const after = yield* scrapeAdmin(gateway.adminPort)
      assert.strictEqual(growth(before, after, "fibergate_rejected_requests_total", { reason: "Forbidden", route: "all" }), 2)
    }))

  it.live("ip_filter judges the client behind trusted_proxies, not the proxy", () =>
    Effect.gen(function*() {
      const app = yield* startUpstream("app")
      const config = simpleConfig([app.url], { middlewares: [{ ip_filter: { deny: ["203.0.113.0/24"] } }] })
      const gateway = yield* startGateway({ ...config, servers: [{ ...config.servers[0], trusted_proxies: ["127.0.0.1"] }] })
      assert.strictEqual((yield* send(gateway.url("/"), { headers: { "x-forwarded-for": "203.0.113.5" } })).status, 403)
      assert.strictEqual((yield* send(gateway.url("/"), { headers: { "x-forwarded-for": "198.51.100.5" } })).status, 200)
    }))

  it.live("api_key in a header: missing or unknown answers 401; a known key passes without the key, and names the consumer in the access log", () =>
    Effect.gen(function*() {
      const capture = yield* captureAccessLog
      const app = yield* startUpstream("app")
      const gateway = yield* gatewayWith(app.url, [{ api_key: { keys: [{ name: "ci", sha256: sha256("s3cret") }, { name: "ops", sha256: sha256("other") }] } }])
      const missing = yield* send(gateway.url("/"))
      const wrong = yield* send(gateway.url("/"), { headers: { "x-api-key": "s3cre" } })
      const right = yield* send(gateway.url("/"), { headers: { "x-api-key": "other" } })
      assert.deepStrictEqual([missing.status, wrong.status, right.status], [401, 401, 200])
      assert.strictEqual(JSON.parse(wrong.body).error, "Unauthorized")
      assert.strictEqual(app.seen.length, 1)
      assert.isUndefined(app.seen[0].headers["x-api-key"])
      yield* eventually(Effect.sync(() => capture.lines.length >= 3), "three access-log lines")
      const byStatus = (status: number) => capture.lines.filter((l) => l.status === status)
      assert.strictEqual(byStatus(200)[0].consumer, "ops")
      assert.strictEqual(byStatus(401)[0].error, "Unauthorized")
    }))

  it.live("api_key in a query parameter is taken out of the upstream's query; forward: true keeps a header key", () =>
    Effect.gen(function*() {
      const app = yield* startUpstream("app")
      const keys = [{ name: "ci", sha256: sha256("k e y") }]
      const config = simpleConfig([app.url], { match: { path: { prefix: "/q" } }, middlewares: [{ api_key: { query: "key", keys } }] })
      const gateway = yield* startGateway({
        ...config,
        servers: [{
          ...config.servers[0],
          routes: [...config.servers[0].routes, { id: "kept", upstream: "app", middlewares: [{ api_key: { header: "x-token", keys, forward: true } }] }]
        }]
      })
      assert.strictEqual((yield* send(gateway.url("/q/a?x=1&key=k+e%20y&y=2"))).status, 200)
      assert.strictEqual(app.seen[0].url, "/q/a?x=1&y=2")
      assert.strictEqual((yield* send(gateway.url("/q/a?key=nope"))).status, 401)
      assert.strictEqual((yield* send(gateway.url("/other"), { headers: { "x-token": "k e y" } })).status, 200)
      assert.strictEqual(app.seen[1].headers["x-token"], "k e y")
    }))

  it.live("basic_auth: bcrypt, apr1 and scrypt hashes; 401 with the realm's challenge; the user is the consumer and Authorization stays behind", () =>
    Effect.gen(function*() {
      const capture = yield* captureAccessLog
      const app = yield* startUpstream("app")
      const salt = randomBytes(16)
      const scrypted = `$scrypt$ln=14,r=8,p=1$${salt.toString("base64")}$${scryptSync("pw-c", salt, 32, { N: 2 ** 14, r: 8, p: 1 }).toString("base64")}`
      const users = [
        { name: "alice", hash: bcrypt.hashSync("pw-a", 4) },
        { name: "bob", hash: aprMd5("pw-b") },
        { name: "carol", hash: scrypted }
      ]
      const gateway = yield* gatewayWith(app.url, [{ basic_auth: { realm: "api", users } }])
      const none = yield* send(gateway.url("/"))
      assert.strictEqual(none.status, 401)
      assert.strictEqual(none.headers["www-authenticate"], `Basic realm="api", charset="UTF-8"`)
      for (const [user, password] of [["alice", "pw-a"], ["bob", "pw-b"], ["carol", "pw-c"]]) {
        assert.strictEqual((yield* send(gateway.url("/"), { headers: { authorization: basic(user, password) } })).status, 200, user)
        assert.strictEqual((yield* send(gateway.url("/"), { headers: { authorization: basic(user, `${password}x`) } })).status, 401, `${user} wrong`)
      }
      assert.strictEqual((yield* send(gateway.url("/"), { headers: { authorization: basic("mallory", "pw-a") } })).status, 401)
      assert.strictEqual(app.seen.length, 3)
      assert.isTrue(app.seen.every((s) => s.headers.authorization === undefined))
      yield* eventually(Effect.sync(() => capture.lines.filter((l) => l.status === 200).length >= 3), "three admitted lines")
      assert.deepStrictEqual(capture.lines.filter((l) => l.status === 200).map((l) => l.consumer), ["alice", "bob", "carol"])
    }))

  it.live("basic_auth from an htpasswd file: bcrypt and apr1 lines work; comments and lines of other hash forms are skipped", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const file = join(dir, "users.htpasswd")
      writeFileSync(file, [`# team`, `alice:${bcrypt.hashSync("pw-a", 4)}`, "", `bob:${aprMd5("pw-b")}`, "carol:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g="].join("\n"))
      const app = yield* startUpstream("app")
      const gateway = yield* gatewayWith(app.url, [{ basic_auth: { htpasswd_file: file } }])
      assert.strictEqual((yield* send(gateway.url("/"), { headers: { authorization: basic("alice", "pw-a") } })).status, 200)
      assert.strictEqual((yield* send(gateway.url("/"), { headers: { authorization: basic("bob", "pw-b") } })).status, 200)
      assert.strictEqual((yield* send(gateway.url("/"), { headers: { authorization: basic("carol", "password") } })).status, 401)
      const none = yield* send(gateway.url("/"))
      assert.strictEqual(none.headers["www-authenticate"], `Basic realm="fibergate", charset="UTF-8"`)
    }))

  it.live("cors: a preflight is answered by the gateway, before auth, and the upstream never sees it; an actual request gets the allow headers", () =>
    Effect.gen(function*() {
      const app = yield* startUpstream("app")
      const gateway = yield* gatewayWith(app.url, [
        { api_key: { keys: [{ name: "ci", sha256: sha256("k") }] } },
        { cors: { origins: ["https://app.example.com", "https://*.example.org"], methods: ["GET", "PUT"], headers: ["x-api-key"], expose: ["x-upstream"], credentials: true, max_age: "10m" } }
      ])
      const preflight = yield* send(gateway.url("/"), {
        method: "OPTIONS",
        headers: { origin: "https://a.b.example.org", "access-control-request-method": "PUT", "access-control-request-headers": "X-Api-Key" }
      })
      assert.strictEqual(preflight.status, 204)
      assert.strictEqual(preflight.headers["access-control-allow-origin"], "https://a.b.example.org")
      assert.strictEqual(preflight.headers["access-control-allow-methods"], "GET, PUT")
      assert.strictEqual(preflight.headers["access-control-allow-headers"], "x-api-key")
      assert.strictEqual(preflight.headers["access-control-allow-credentials"], "true")
      assert.strictEqual(preflight.headers["access-control-max-age"], "600")
      assert.include(String(preflight.headers.vary), "Origin")
      const refused = yield* send(gateway.url("/"), { method: "OPTIONS", headers: { origin: "https://example.org", "access-control-request-method": "GET" } })
      assert.strictEqual(refused.status, 204)
      assert.isUndefined(refused.headers["access-control-allow-origin"])
      assert.strictEqual(app.seen.length, 0)
      const actual = yield* send(gateway.url("/"), { headers: { origin: "https://app.example.com", "x-api-key": "k" } })
      assert.strictEqual(actual.status, 200)
      assert.strictEqual(actual.headers["access-control-allow-origin"], "https://app.example.com")
      assert.strictEqual(actual.headers["access-control-expose-headers"], "x-upstream")
      // Without an Origin a request is not CORS: it passes (with its API key) and gets no CORS headers.
      const plain = yield* send(gateway.url("/"), { headers: { "x-api-key": "k" } })
      assert.strictEqual(plain.status, 200)
      assert.isUndefined(plain.headers["access-control-allow-origin"])
      // The browser can read the gateway's refusal too.
      const denied = yield* send(gateway.url("/"), { headers: { origin: "https://app.example.com" } })
      assert.strictEqual(denied.status, 401)
      assert.strictEqual(denied.headers["access-control-allow-origin"], "https://app.example.com")
    }))

  it.live("rate_limit: the limit passes with RateLimit headers, one more answers 429 with Retry-After; keys by IP keep clients apart", () =>
    Effect.gen(function*() {
      const app = yield* startUpstream("app")
      const gateway = yield* gatewayWith(app.url, [{ rate_limit: { key: "ip", limit: 3, window: "1m", algorithm: "fixed_window" } }])
      const statuses: Array<number> = []
      let last: Reply | undefined
      for (let i = 0; i < 4; i++) {
        last = yield* send(gateway.url("/"), { localAddress: "127.0.0.2" })
        statuses.push(last.status)
        if (i === 0) {
          assert.strictEqual(last.headers["ratelimit-policy"], `"default";q=3;w=60`)
          assert.match(String(last.headers.ratelimit), /^"default";r=2;t=\d+$/)
        }
      }
      assert.deepStrictEqual(statuses, [200, 200, 200, 429])
      assert.strictEqual(JSON.parse(last!.body).error, "RateLimited")
      const retryAfter = Number(last!.headers["retry-after"])
      assert.isTrue(retryAfter >= 1 && retryAfter <= 60, String(retryAfter))
      assert.strictEqual((yield* send(gateway.url("/"), { localAddress: "127.0.0.3" })).status, 200)
      assert.strictEqual(app.seen.length, 4)
    }))

  it.live("rate_limit keyed by consumer counts each API key on its own", () =>
    Effect.gen(function*() {
      const app = yield* startUpstream("app")
      const gateway = yield* gatewayWith(app.url, [
        { api_key: { keys: [{ name: "a", sha256: sha256("ka") }, { name: "b", sha256: sha256("kb") }] } },
        { rate_limit: { key: "consumer", limit: 1, window: "1m" } }
      ])
      const a1 = yield* send(gateway.url("/"), { headers: { "x-api-key": "ka" } })
      const a2 = yield* send(gateway.url("/"), { headers: { "x-api-key": "ka" } })
      const b1 = yield* send(gateway.url("/"), { headers: { "x-api-key": "kb" } })
      assert.deepStrictEqual([a1.status, a2.status, b1.status], [200, 429, 200])
    }))

  it.live("concurrency_limit: with the slot held by a slow request, one more answers 503 at once; the slot is free again after the response", () =>
    Effect.gen(function*() {
      let release: (() => void) | undefined
      const app = yield* startUpstream("app", {
        handler: (req, res) => {
          const answer = () => res.end("ok")
          if (req.url === "/slow") release = answer
          else answer()
        }
      })
      const gateway = yield* gatewayWith(app.url, [{ concurrency_limit: { max: 1 } }])
      const slow = yield* Effect.forkChild(send(gateway.url("/slow")))
      yield* eventually(Effect.sync(() => release !== undefined), "the slow request at the upstream")
      const refused = yield* send(gateway.url("/fast"))
      assert.strictEqual(refused.status, 503)
      assert.strictEqual(JSON.parse(refused.body).error, "ConcurrencyLimited")
      release!()
      assert.strictEqual((yield* Fiber.join(slow)).status, 200)
      assert.strictEqual((yield* send(gateway.url("/fast"))).status, 200)
    }))

  it.live("concurrency_limit keeps its slots across a reload that keeps its max: a request held before the reload still counts", () =>
    Effect.gen(function*() {
      let release: (() => void) | undefined
      const app = yield* startUpstream("app", {
        handler: (req, res) => {
          const answer = () => res.end("ok")
          if (req.url === "/slow") release = answer
          else answer()
        }
      })
      const config = simpleConfig([app.url], { middlewares: ["one"] })
      const named = { one: { concurrency_limit: { max: 1 } } }
      const gateway = yield* startGateway({ ...config, middlewares: named })
      const slow = yield* Effect.forkChild(send(gateway.url("/slow")))
      yield* eventually(Effect.sync(() => release !== undefined), "the slow request at the upstream")
      const before = gateway.services.routes.generation()
      const next = decodeConfig({ ...config, middlewares: named, log: { level: "warn", access_log: false } }, "test")
      assert.isTrue(Result.isSuccess(next))
      if (Result.isSuccess(next)) yield* SubscriptionRef.set(gateway.services.config.config, next.success)
      yield* eventually(Effect.sync(() => gateway.services.routes.generation() > before), "the reload applied")
      assert.strictEqual((yield* send(gateway.url("/fast"))).status, 503)
      release!()
      assert.strictEqual((yield* Fiber.join(slow)).status, 200)
      assert.strictEqual((yield* send(gateway.url("/fast"))).status, 200)
    }))

  it.live("named and server middlewares: the server's run first, a named one is shared by the routes that name it", () =>
    Effect.gen(function*() {
      const app = yield* startUpstream("app")
      const config = simpleConfig([app.url], { match: { path: { prefix: "/a" } }, middlewares: ["limited"] })
      const gateway = yield* startGateway({
        ...config,
        middlewares: { limited: { rate_limit: { key: "global", limit: 2, window: "1m", algorithm: "fixed_window" } } },
        servers: [{
          ...config.servers[0],
          middlewares: [{ ip_filter: { deny: ["127.0.0.5"] } }],
          routes: [...config.servers[0].routes, { id: "b", upstream: "app", middlewares: ["limited"] }]
        }]
      })
      // The server's ip_filter refuses before the named limit counts anything.
      assert.strictEqual((yield* send(gateway.url("/a"), { localAddress: "127.0.0.5" })).status, 403)
      const statuses = [
        (yield* send(gateway.url("/a"))).status,
        (yield* send(gateway.url("/b"))).status,
        (yield* send(gateway.url("/a"))).status
      ]
      assert.deepStrictEqual(statuses, [200, 200, 429])
    }))

  it.live("a library user's middleware runs with the user's own service, may refuse or set a header upstream", () =>
    Effect.gen(function*() {
      const context = yield* Layer.build(AccountsLive)
      const provided: Middleware = (request) => Effect.provideContext(suspendedCheck(request), context)
      const app = yield* startUpstream("app")
      const gateway = yield* gatewayWith(app.url, [{ custom: "suspended" }], {}, { middlewares: { suspended: provided } })
      const refused = yield* send(gateway.url("/"), { headers: { "x-user": "mallory" } })
      assert.strictEqual(refused.status, 403)
      assert.strictEqual(JSON.parse(refused.body).message, "This account is suspended")
      assert.strictEqual((yield* send(gateway.url("/"), { headers: { "x-user": "alice", "x-account": "forged" } })).status, 200)
      assert.strictEqual(app.seen.length, 1)
      assert.deepStrictEqual(app.seen[0].rawHeaders.filter((_, i, a) => i % 2 === 0 && a[i].toLowerCase() === "x-account").length, 1)
      assert.strictEqual(app.seen[0].headers["x-account"], "alice")
    }))
})
