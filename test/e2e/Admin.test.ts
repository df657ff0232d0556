/**
 * The admin API end to end: a real gateway with its admin listener on loopback, in front of
 * real upstreams, driven over real sockets. Request totals come from the process-wide metric
 * registry, which the gateways of this file share, so they are checked as differences.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import { request as httpRequest } from "node:http"
import type { IncomingMessage, ServerResponse } from "node:http"
import {
  echoHandler,
  request,
  simpleConfig,
  startGateway,
  startUpstream,
  type TestGateway,
  type UpstreamHandler
} from "../support/harness.ts"
import { send } from "../support/http.ts"
import { awaitSignal, fire, onSignal, signal } from "../support/signals.ts"

const TOKEN = "admin-token-7f3a9c"
const MiB = 1024 * 1024

/** A gateway with the admin API on a free port, in front of one echo upstream. */
const withAdmin = (route: Record<string, unknown> = {}, upstream: Record<string, unknown> = {}) =>
  Effect.gen(function*() {
    const app = yield* startUpstream("app")
    const config = simpleConfig([app.url], route, upstream)
    const gateway = yield* startGateway(config)
    const port = gateway.adminPort ?? assert.fail("admin API not bound")
    return { app, config, gateway, admin: (path: string) => `http://127.0.0.1:${port}${path}` }
  })

const adminUrl = (gateway: TestGateway) => (path: string) => `http://127.0.0.1:${gateway.adminPort}${path}`

const bearer = (token: string) => ({ authorization: `Bearer ${token}` })

/** A request whose body is parsed as JSON (the admin API answers JSON everywhere but /metrics). */
const fetchJson = (url: string, init?: RequestInit) =>
  Effect.map(request(url, init), (res) => ({ ...res, json: JSON.parse(res.body) }))

const sendJson = (method: string, url: string, body: unknown, headers: Record<string, string> = {}) =>
  fetchJson(url, { method, body: JSON.stringify(body), headers: { "content-type": "application/json", ...headers } })

/** Sends `n` requests one after another; their statuses. */
const sequential = (url: (i: number) => string, n: number) =>
  Effect.gen(function*() {
    const statuses: Array<number> = []
    for (let i = 0; i < n; i++) statuses.push((yield* send(url(i))).status)
    return statuses
  })

/** An upstream that answers 500 to everything. */
const failing: UpstreamHandler = (_req, res) => {
  res.writeHead(500, { "content-type": "text/plain", "content-length": 4 })
  res.end("boom")
}

/**
 * A PUT with `Expect: 100-continue` and a declared length: the body goes out only if the server
 * sends 100 Continue. Resolves with the final status and whether 100 came.
 */
const putExpectingContinue = (url: string, body: Buffer, declaredLength: number = body.length) =>
  Effect.callback<{ readonly status: number; readonly continued: boolean; readonly body: string }>((resume) => {
    let continued = false
    const req = httpRequest(url, {
      method: "PUT",
      agent: false,
      headers: { "content-type": "application/json", "content-length": declaredLength, expect: "100-continue" }
    })
    req.on("continue", () => {
      continued = true
      req.end(body)
    })
    req.on("response", (res) => {
      const chunks: Array<Buffer> = []
      res.on("data", (c: Buffer) => chunks.push(c))
      res.on("end", () => {
        resume(Effect.succeed({ status: res.statusCode ?? 0, continued, body: Buffer.concat(chunks).toString() }))
        req.destroy()
      })
    })
    req.on("error", (e) => resume(Effect.die(e)))
    req.flushHeaders()
    return Effect.sync(() => req.destroy())
  })

describe("admin API: health, readiness, errors", () => {
  it.live("GET /health answers 200 {status: \"ok\"}", () =>
    Effect.gen(function*() {
      const { admin } = yield* withAdmin()
      const res = yield* request(admin("/health"))
      assert.strictEqual(res.status, 200)
      assert.strictEqual(res.headers.get("content-type"), "application/json")
      assert.strictEqual(res.headers.get("cache-control"), "no-store")
      assert.deepStrictEqual(JSON.parse(res.body), { status: "ok" })
    }))

  it.live("GET /ready answers 200 with ready: true once the gateway is up", () =>
    Effect.gen(function*() {
      const { admin } = yield* withAdmin()
      const res = yield* request(admin("/ready"))
      assert.strictEqual(res.status, 200)
      assert.strictEqual(JSON.parse(res.body).ready, true)
    }))

  it.live("an unknown admin path answers 404 listing every endpoint", () =>
    Effect.gen(function*() {
      const { admin } = yield* withAdmin()
      const res = yield* fetchJson(admin("/nope"))
      assert.strictEqual(res.status, 404)
      assert.strictEqual(res.json.error, "RouteNotFound")
      assert.includeMembers(res.json.endpoints, [
        "GET /health",
        "GET /ready",
        "GET /config",
        "PUT /config",
        "POST /config/validate",
        "POST /reload",
        "GET /routes",
        "GET /upstreams",
        "GET /stats",
        "GET /metrics"
      ])
    }))

  it.live("POST to a GET endpoint answers 405 with Allow: GET, HEAD", () =>
    Effect.gen(function*() {
      const { admin } = yield* withAdmin()
      const res = yield* request(admin("/health"), { method: "POST", body: "x" })
      assert.strictEqual(res.status, 405)
      assert.strictEqual(res.headers.get("allow"), "GET, HEAD")
      assert.strictEqual(JSON.parse(res.body).error, "MethodNotAllowed")
    }))

  it.live("DELETE /config answers 405 with Allow: GET, HEAD, PUT; GET /config/validate with Allow: POST", () =>
    Effect.gen(function*() {
      const { admin } = yield* withAdmin()
      const del = yield* fetchJson(admin("/config"), { method: "DELETE" })
      assert.strictEqual(del.status, 405)
      assert.strictEqual(del.headers.get("allow"), "GET, HEAD, PUT")
      assert.deepStrictEqual(del.json.allow, ["GET", "HEAD", "PUT"])
      const get = yield* request(admin("/config/validate"))
      assert.strictEqual(get.status, 405)
      assert.strictEqual(get.headers.get("allow"), "POST")
    }))

  it.live("HEAD on a GET endpoint answers its status and length without a body", () =>
    Effect.gen(function*() {
      const { admin } = yield* withAdmin()
      const res = yield* send(admin("/stats"), { method: "HEAD" })
      assert.strictEqual(res.status, 200)
      assert.isAbove(Number(res.headers["content-length"]), 0)
      assert.strictEqual(res.body, "")
    }))

  it.live("GET /metrics answers Prometheus text", () =>
    Effect.gen(function*() {
      const { admin } = yield* withAdmin()
      const res = yield* request(admin("/metrics"))
      assert.strictEqual(res.status, 200)
      assert.strictEqual(res.headers.get("content-type"), "text/plain; version=0.0.4")
      assert.include(res.body, "# TYPE ")
    }))
})

describe("admin API: bearer token", () => {
  /** A gateway whose admin API requires `token`. */
  const withToken = (token = TOKEN) =>
    Effect.gen(function*() {
      const app = yield* startUpstream("app")
      const base = simpleConfig([app.url])
      const config = { ...base, admin: { listen: "127.0.0.1:0", token } }
      const gateway = yield* startGateway(config)
      return { config, gateway, admin: adminUrl(gateway) }
    })

  it.live("without Authorization a request answers 401 with WWW-Authenticate: Bearer and a JSON error", () =>
    Effect.gen(function*() {
      const { admin } = yield* withToken()
      for (const path of ["/config", "/routes", "/upstreams", "/stats", "/metrics"]) {
        const res = yield* fetchJson(admin(path))
        assert.strictEqual(res.status, 401, path)
        assert.match(res.headers.get("www-authenticate") ?? "", /^Bearer realm="fibergate-admin"$/, path)
        assert.strictEqual(res.json.error, "Unauthorized")
      }
    }))

  it.live("a wrong token, a prefix of it, or another scheme answers 401", () =>
    Effect.gen(function*() {
      const { admin } = yield* withToken()
      for (const authorization of [`Bearer wrong`, `Bearer ${TOKEN.slice(0, -1)}`, `Bearer ${TOKEN}x`, `Basic ${TOKEN}`, TOKEN]) {
        const res = yield* fetchJson(admin("/config"), { headers: { authorization } })
        assert.strictEqual(res.status, 401, authorization)
        assert.strictEqual(res.json.error, "Unauthorized")
      }
      const wrong = yield* request(admin("/config"), { headers: bearer("wrong") })
      assert.include(wrong.headers.get("www-authenticate") ?? "", `error="invalid_token"`)
    }))

  it.live("the right token is accepted on every endpoint, the scheme in any case", () =>
    Effect.gen(function*() {
      const { admin } = yield* withToken()
      for (const path of ["/config", "/routes", "/upstreams", "/stats", "/metrics"]) {
        assert.strictEqual((yield* request(admin(path), { headers: bearer(TOKEN) })).status, 200, path)
      }
      assert.strictEqual((yield* request(admin("/stats"), { headers: { authorization: `bearer ${TOKEN}` } })).status, 200)
    }))

  it.live("/health and /ready answer without the token, for orchestrator probes", () =>
    Effect.gen(function*() {
      const { admin } = yield* withToken()
      assert.strictEqual((yield* request(admin("/health"))).status, 200)
      assert.strictEqual((yield* request(admin("/ready"))).status, 200)
      assert.strictEqual((yield* request(admin("/health"), { headers: bearer("wrong") })).status, 200)
    }))

  it.live("without the token an unknown path answers 401, not the list of endpoints", () =>
    Effect.gen(function*() {
      const { admin } = yield* withToken()
      const res = yield* request(admin("/nope"))
      assert.strictEqual(res.status, 401)
      assert.notInclude(res.body, "/config")
      assert.strictEqual((yield* request(admin("/nope"), { headers: bearer(TOKEN) })).status, 404)
    }))

  it.live("PUT /config without the token is refused and changes nothing", () =>
    Effect.gen(function*() {
      const { admin, config, gateway } = yield* withToken()
      const res = yield* sendJson("PUT", admin("/config"), { ...config, admin: { listen: "127.0.0.1:0" } })
      assert.strictEqual(res.status, 401)
      assert.strictEqual(gateway.services.routes.generation(), 1)
      assert.strictEqual((yield* request(admin("/config"))).status, 401, "the token is still required")
    }))

  it.live("GET /config shows admin.token as <redacted> and nowhere contains the token", () =>
    Effect.gen(function*() {
      const { admin } = yield* withToken()
      const res = yield* fetchJson(admin("/config"), { headers: bearer(TOKEN) })
      assert.strictEqual(res.status, 200)
      assert.strictEqual(res.json.admin.token, "<redacted>")
      assert.notInclude(res.body, TOKEN)
      for (const path of ["/routes", "/upstreams", "/stats", "/metrics"]) {
        assert.notInclude((yield* request(admin(path), { headers: bearer(TOKEN) })).body, TOKEN, path)
      }
    }))

  it.live("a PUT that changes admin.token takes effect at once: the old token is refused, the new one accepted", () =>
    Effect.gen(function*() {
      const { admin, config } = yield* withToken()
      const next = { ...config, admin: { listen: "127.0.0.1:0", token: "rotated-token" } }
      const res = yield* sendJson("PUT", admin("/config"), next, bearer(TOKEN))
      assert.strictEqual(res.status, 200)
      assert.deepStrictEqual(res.json.changes.sections, ["admin"])
      assert.strictEqual((yield* request(admin("/config"), { headers: bearer(TOKEN) })).status, 401)
      assert.strictEqual((yield* request(admin("/config"), { headers: bearer("rotated-token") })).status, 200)
    }))

  it.live("sending back GET /config's output is refused (400 naming admin.token): the token is not set to <redacted>", () =>
    Effect.gen(function*() {
      const { admin, gateway } = yield* withToken()
      const shown = (yield* fetchJson(admin("/config"), { headers: bearer(TOKEN) })).json
      const res = yield* sendJson("PUT", admin("/config"), shown, bearer(TOKEN))
      assert.strictEqual(res.status, 400)
      assert.strictEqual(res.json.error, "ConfigError")
      assert.deepStrictEqual(res.json.problems.map((p: { path: string }) => p.path), ["admin.token"])
      assert.strictEqual(gateway.services.routes.generation(), 1)
      assert.strictEqual((yield* request(admin("/config"), { headers: bearer(TOKEN) })).status, 200, "the token still works")
    }))
})

describe("admin API: GET /config", () => {
  it.live("returns the running config encoded as the file would write it", () =>
    Effect.gen(function*() {
      const { admin, config } = yield* withAdmin({ timeout: "5s" }, { pool: { connect_timeout: "1500ms", keep_alive: "2m" } })
      const res = yield* request(admin("/config"))
      assert.strictEqual(res.status, 200)
      const body = JSON.parse(res.body)
      assert.strictEqual(body.servers[0].routes[0].timeout, "5s")
      assert.strictEqual(body.upstreams.app.pool.connect_timeout, "1500ms")
      assert.strictEqual(body.upstreams.app.pool.keep_alive, "2m")
      assert.deepStrictEqual(body, config)
    }))

  it.live("redacts a header value set under a secret-looking name and keeps the others", () =>
    Effect.gen(function*() {
      const { admin } = yield* withAdmin({ headers: { request: { set: { "x-api-key": "upstream-key-42", "x-team": "blue" } } } })
      const res = yield* fetchJson(admin("/config"))
      assert.notInclude(res.body, "upstream-key-42")
      assert.deepStrictEqual(res.json.servers[0].routes[0].headers.request.set, { "x-api-key": "<redacted>", "x-team": "blue" })
    }))
})

describe("admin API: PUT /config", () => {
  it.live("a valid config answers 200 with the generation, a summary and what changed; the new route serves at once", () =>
    Effect.gen(function*() {
      const { admin, config, gateway } = yield* withAdmin()
      const b = yield* startUpstream("b")
      const next = {
        ...config,
        servers: [{ ...config.servers[0], routes: [{ id: "to-b", match: { path: { prefix: "/b" } }, upstream: "other" }, ...config.servers[0].routes] }],
        upstreams: { ...config.upstreams, other: { endpoints: [{ url: b.url }] } }
      }
      const res = yield* sendJson("PUT", admin("/config"), next)
      assert.strictEqual(res.status, 200)
      assert.deepStrictEqual(res.json, {
        applied: true,
        generation: 2,
        summary: { listeners: 1, routes: 2, upstreams: 2, endpoints: 2 },
        changes: {
          listeners: { added: [], removed: [], changed: [] },
          routes: { added: ["to-b"], removed: [], changed: [] },
          upstreams: { added: ["other"], removed: [], changed: [] },
          sections: []
        }
      })
      assert.strictEqual((yield* request(gateway.url("/b/x"))).headers.get("x-upstream"), "b")
    }))

  it.live("an invalid config answers 400 listing every problem, and traffic keeps flowing on the old routes", () =>
    Effect.gen(function*() {
      const { admin, config, gateway } = yield* withAdmin()
      const before = (yield* request(admin("/config"))).body
      const bad = {
        ...config,
        servers: [{ ...config.servers[0], routes: [{ id: "all", upstream: "app", timeout: "soon", retries: 3 }] }],
        upstreams: { app: { endpoints: [{ url: "ftp://127.0.0.1:21" }] } }
      }
      const res = yield* sendJson("PUT", admin("/config"), bad)
      assert.strictEqual(res.status, 400)
      assert.strictEqual(res.json.error, "ConfigError")
      const paths = res.json.problems.map((p: { path: string }) => p.path)
      assert.includeMembers(paths, ["servers[0].routes[0].timeout", "servers[0].routes[0].retries", "upstreams.app.endpoints[0].url"])
      for (const p of res.json.problems) assert.isString(p.message)
      assert.include(res.json.message, "servers[0].routes[0].retries")
      assert.strictEqual(gateway.services.routes.generation(), 1)
      assert.strictEqual((yield* request(admin("/config"))).body, before)
      const served = yield* request(gateway.url("/still"))
      assert.strictEqual(served.status, 200)
      assert.strictEqual(served.headers.get("x-upstream"), "app")
    }))

  it.live("an empty body and a body that is not JSON answer 400 BadRequest", () =>
    Effect.gen(function*() {
      const { admin } = yield* withAdmin()
      for (const body of ["", "servers: [", "{\"servers\": "]) {
        const res = yield* fetchJson(admin("/config"), { method: "PUT", body })
        assert.strictEqual(res.status, 400, JSON.stringify(body))
        assert.strictEqual(res.json.error, "BadRequest")
      }
    }))

  it.live("a body over 1 MiB answers 413 and changes nothing", () =>
    Effect.gen(function*() {
      const { admin, gateway } = yield* withAdmin()
      const res = yield* fetchJson(admin("/config"), { method: "PUT", body: `"${"x".repeat(MiB)}"` })
      assert.strictEqual(res.status, 413)
      assert.strictEqual(res.json.error, "PayloadTooLarge")
      assert.strictEqual(res.json.limit, MiB)
      assert.strictEqual(gateway.services.routes.generation(), 1)
    }))

  it.live("a chunked body that passes 1 MiB answers 413", () =>
    Effect.gen(function*() {
      const { admin } = yield* withAdmin()
      const chunk = new TextEncoder().encode("x".repeat(64 * 1024))
      const body = new ReadableStream<Uint8Array>({
        start(controller) {
          for (let i = 0; i < 20; i++) controller.enqueue(chunk)
          controller.close()
        }
      })
      const res = yield* fetchJson(admin("/config"), { method: "PUT", body, duplex: "half" } as RequestInit)
      assert.strictEqual(res.status, 413)
    }))

  it.live("with Expect: 100-continue, a declared length over 1 MiB gets 413 before any byte of the body is sent", () =>
    Effect.gen(function*() {
      const { admin } = yield* withAdmin()
      const res = yield* putExpectingContinue(admin("/config"), Buffer.alloc(0), 2 * MiB)
      assert.strictEqual(res.status, 413)
      assert.isFalse(res.continued)
    }))

  it.live("with Expect: 100-continue, a small config gets 100 Continue and is applied", () =>
    Effect.gen(function*() {
      const { admin, config } = yield* withAdmin()
      const res = yield* putExpectingContinue(admin("/config"), Buffer.from(JSON.stringify({ ...config, log: { level: "warn" } })))
      assert.isTrue(res.continued)
      assert.strictEqual(res.status, 200)
      assert.deepStrictEqual(JSON.parse(res.body).changes.sections, ["log"])
    }))
})

describe("admin API: POST /config/validate", () => {
  it.live("a valid config answers 200 {valid: true} with a summary and what it would change, and applies nothing", () =>
    Effect.gen(function*() {
      const { admin, config, gateway } = yield* withAdmin()
      const b = yield* startUpstream("b")
      const before = (yield* request(admin("/config"))).body
      const next = {
        ...config,
        servers: [{ ...config.servers[0], routes: [{ id: "to-b", match: { path: { prefix: "/b" } }, upstream: "other" }, ...config.servers[0].routes] }],
        upstreams: { ...config.upstreams, other: { endpoints: [{ url: b.url }] } }
      }
      const res = yield* sendJson("POST", admin("/config/validate"), next)
      assert.strictEqual(res.status, 200)
      assert.isTrue(res.json.valid)
      assert.deepStrictEqual(res.json.summary, { listeners: 1, routes: 2, upstreams: 2, endpoints: 2 })
      assert.deepStrictEqual(res.json.changes.routes.added, ["to-b"])
      assert.strictEqual(gateway.services.routes.generation(), 1)
      assert.strictEqual(JSON.parse((yield* request(admin("/ready"))).body).generation, 1)
      assert.strictEqual((yield* request(admin("/config"))).body, before)
      assert.strictEqual((yield* request(gateway.url("/b/x"))).headers.get("x-upstream"), "app", "the new route is not in force")
      assert.strictEqual(b.seen.length, 0)
    }))

  it.live("an invalid config answers 400 {valid: false} with every problem", () =>
    Effect.gen(function*() {
      const { admin, config, gateway } = yield* withAdmin()
      const bad = { ...config, servers: [{ ...config.servers[0], routes: [{ id: "all", upstream: "nope" }, { id: "all", upstream: "app" }] }] }
      const res = yield* sendJson("POST", admin("/config/validate"), bad)
      assert.strictEqual(res.status, 400)
      assert.isFalse(res.json.valid)
      assert.strictEqual(res.json.error, "ConfigError")
      assert.deepStrictEqual(res.json.problems.map((p: { path: string }) => p.path), ["servers[0].routes[0].upstream", "servers[0].routes[1].id"])
      assert.strictEqual(gateway.services.routes.generation(), 1)
    }))

  it.live("a body that is not JSON answers 400 BadRequest", () =>
    Effect.gen(function*() {
      const { admin } = yield* withAdmin()
      const res = yield* fetchJson(admin("/config/validate"), { method: "POST", body: "nope" })
      assert.strictEqual(res.status, 400)
      assert.strictEqual(res.json.error, "BadRequest")
    }))
})

describe("admin API: GET /routes", () => {
  it.live("lists each listener's routes in config order, as configured, unset settings null", () =>
    Effect.gen(function*() {
      const app = yield* startUpstream("app")
      const match = {
        host: "api.example.com",
        path: { prefix: "/api" },
        methods: ["GET", "POST"],
        headers: { "x-canary": "true", "x-api-key": { present: true } },
        query: { version: "2" }
      }
      const retry = { attempts: 3, per_try_timeout: "1s", backoff: { base: "25ms", max: "1s", jitter: true }, on: ["connect-failure", 503], methods: ["GET"] }
      const gateway = yield* startGateway({
        admin: { listen: "127.0.0.1:0" },
        log: { level: "none", access_log: false },
        servers: [
          {
            name: "public",
            listen: "127.0.0.1:0",
            routes: [
              { id: "api", match, upstream: "app", rewrite: { strip_prefix: "/api", add_prefix: "/v1" }, timeout: "5s", retry },
              { id: "all", priority: -1, upstream: "app" }
            ]
          },
          { name: "internal", listen: "127.0.0.1:0", routes: [{ id: "ops", match: { path: { exact: "/ops" } }, upstream: "app" }] }
        ],
        upstreams: { app: { endpoints: [{ url: app.url }] } }
      })
      const res = yield* fetchJson(adminUrl(gateway)("/routes"))
      assert.strictEqual(res.status, 200)
      assert.deepStrictEqual(res.json, {
        generation: 1,
        listeners: [
          {
            name: "public",
            listen: "127.0.0.1:0",
            routes: [
              {
                id: "api",
                priority: 0,
                match: { ...match, headers: { "x-canary": "true", "x-api-key": { present: "<redacted>" } } },
                upstream: "app",
                rewrite: { strip_prefix: "/api", add_prefix: "/v1" },
                timeout: "5s",
                retry
              },
              { id: "all", priority: -1, match: {}, upstream: "app", rewrite: null, timeout: null, retry: null }
            ]
          },
          {
            name: "internal",
            listen: "127.0.0.1:0",
            routes: [{ id: "ops", priority: 0, match: { path: { exact: "/ops" } }, upstream: "app", rewrite: null, timeout: null, retry: null }]
          }
        ]
      })
    }))

  it.live("follows a reload", () =>
    Effect.gen(function*() {
      const { admin, config } = yield* withAdmin()
      const next = { ...config, servers: [{ ...config.servers[0], routes: [{ id: "renamed", upstream: "app", timeout: "2s" }] }] }
      assert.strictEqual((yield* sendJson("PUT", admin("/config"), next)).status, 200)
      const res = yield* fetchJson(admin("/routes"))
      assert.strictEqual(res.json.generation, 2)
      assert.deepStrictEqual(res.json.listeners[0].routes.map((r: { id: string; timeout: string }) => [r.id, r.timeout]), [["renamed", "2s"]])
    }))
})

describe("admin API: GET /upstreams", () => {
  it.live("shows every endpoint of a healthy upstream: weight, health, circuit, in flight and a latency EWMA once it answered", () =>
    Effect.gen(function*() {
      const a = yield* startUpstream("a")
      const b = yield* startUpstream("b")
      const config = simpleConfig([a.url, b.url])
      const gateway = yield* startGateway({
        ...config,
        upstreams: { app: { balance: "round_robin", endpoints: [{ url: a.url, weight: 3 }, { url: b.url }] } }
      })
      const admin = adminUrl(gateway)
      const fresh = (yield* fetchJson(admin("/upstreams"))).json
      assert.strictEqual(fresh.generation, 1)
      assert.deepStrictEqual(Object.keys(fresh.upstreams), ["app"])
      assert.strictEqual(fresh.upstreams.app.balance, "round_robin")
      assert.strictEqual(fresh.upstreams.app.in_flight, 0)
      assert.deepStrictEqual(fresh.upstreams.app.endpoints, [
        { url: a.url, weight: 3, available: true, healthy: true, ejected: false, ejections: 0, circuit: "closed", in_flight: 0, latency_ewma_ms: 0 },
        { url: b.url, weight: 1, available: true, healthy: true, ejected: false, ejections: 0, circuit: "closed", in_flight: 0, latency_ewma_ms: 0 }
      ])
      assert.deepStrictEqual(yield* sequential((i) => gateway.url(`/${i}`), 2), [200, 200])
      const after = (yield* fetchJson(admin("/upstreams"))).json
      for (const e of after.upstreams.app.endpoints) {
        assert.isNumber(e.latency_ewma_ms)
        assert.isAbove(e.latency_ewma_ms, 0, `${e.url} has answered once`)
      }
    }))

  it.live("counts a request in flight on its endpoint and its upstream while the upstream holds it", () =>
    Effect.gen(function*() {
      const arrived = signal()
      const release = signal()
      const held = yield* startUpstream("held", {
        handler: (req: IncomingMessage, res: ServerResponse, body: Buffer) => {
          fire(arrived, undefined)
          onSignal(release, () => echoHandler("held")(req, res, body))
        }
      })
      const gateway = yield* startGateway(simpleConfig([held.url]))
      // Released on the way out even if an assertion fails, so the gateway can drain.
      yield* Effect.addFinalizer(() => Effect.sync(() => fire(release, undefined)))
      const inFlight = yield* Effect.forkChild(send(gateway.url("/slow")))
      yield* awaitSignal(arrived)
      const during = (yield* fetchJson(adminUrl(gateway)("/upstreams"))).json
      assert.strictEqual(during.upstreams.app.in_flight, 1)
      assert.strictEqual(during.upstreams.app.endpoints[0].in_flight, 1)
      const stats = (yield* fetchJson(adminUrl(gateway)("/stats"))).json
      assert.strictEqual(stats.upstreams.app.in_flight, 1)
      fire(release, undefined)
      assert.strictEqual((yield* Fiber.join(inFlight)).status, 200)
    }))

  it.live("an endpoint answering 500 is shown ejected by outlier detection, with its ejection counted", () =>
    Effect.gen(function*() {
      const a = yield* startUpstream("a")
      const b = yield* startUpstream("b", { handler: failing })
      const gateway = yield* startGateway({
        ...simpleConfig([a.url, b.url]),
        upstreams: {
          app: { balance: "round_robin", endpoints: [{ url: a.url }, { url: b.url }], outlier: { consecutive_failures: 2, base_ejection: "30s" } }
        }
      })
      assert.deepStrictEqual(yield* sequential((i) => gateway.url(`/${i}`), 4), [200, 500, 200, 500])
      const [ea, eb] = (yield* fetchJson(adminUrl(gateway)("/upstreams"))).json.upstreams.app.endpoints
      assert.deepStrictEqual([ea.ejected, ea.available, ea.ejections], [false, true, 0])
      assert.deepStrictEqual([eb.ejected, eb.available, eb.ejections, eb.healthy, eb.circuit], [true, false, 1, true, "closed"])
      const stats = (yield* fetchJson(adminUrl(gateway)("/stats"))).json
      assert.deepStrictEqual(stats.upstreams.app.endpoints, { total: 2, available: 1, unhealthy: 0, ejected: 1, circuit_open: 0, circuit_half_open: 0 })
    }))

  it.live("an endpoint answering 500 is shown with its circuit open once the breaker trips", () =>
    Effect.gen(function*() {
      const b = yield* startUpstream("b", { handler: failing })
      const gateway = yield* startGateway({
        ...simpleConfig([b.url]),
        upstreams: { app: { endpoints: [{ url: b.url }], circuit_breaker: { consecutive_failures: 2, open_for: "30s" } } }
      })
      assert.deepStrictEqual(yield* sequential((i) => gateway.url(`/${i}`), 3), [500, 500, 503])
      const [endpoint] = (yield* fetchJson(adminUrl(gateway)("/upstreams"))).json.upstreams.app.endpoints
      assert.strictEqual(endpoint.circuit, "open")
      assert.isFalse(endpoint.available)
      assert.isFalse(endpoint.ejected)
      const stats = (yield* fetchJson(adminUrl(gateway)("/stats"))).json
      assert.strictEqual(stats.upstreams.app.endpoints.circuit_open, 1)
      assert.strictEqual(stats.upstreams.app.endpoints.available, 0)
    }))
})

describe("admin API: GET /stats", () => {
  it.live("reports uptime, the config in force, memory, listeners and upstreams", () =>
    Effect.gen(function*() {
      const { admin } = yield* withAdmin()
      const res = yield* fetchJson(admin("/stats"))
      assert.strictEqual(res.status, 200)
      const stats = res.json
      assert.isNumber(stats.uptime_seconds)
      assert.isAtLeast(stats.uptime_seconds, 0)
      assert.isTrue(stats.ready)
      assert.deepStrictEqual(stats.config, { generation: 1, source: "<value>", listeners: 1, routes: 1, upstreams: 1, endpoints: 1 })
      assert.strictEqual(stats.process.pid, process.pid)
      assert.isAbove(stats.process.rss_bytes, 0)
      assert.isAbove(stats.process.heap_used_bytes, 0)
      assert.isAtLeast(stats.process.heap_total_bytes, stats.process.heap_used_bytes)
      assert.deepStrictEqual(stats.listeners, [{ name: "web", listen: "127.0.0.1:0", routes: 1 }])
      assert.deepStrictEqual(stats.upstreams, {
        app: { in_flight: 0, endpoints: { total: 1, available: 1, unhealthy: 0, ejected: 0, circuit_open: 0, circuit_half_open: 0 } }
      })
      assert.isTrue(stats.requests.metrics_enabled)
    }))

  it.live("counts the requests answered, by status class and listener", () =>
    Effect.gen(function*() {
      const { admin, gateway } = yield* withAdmin()
      const before = (yield* fetchJson(admin("/stats"))).json.requests
      assert.deepStrictEqual(yield* sequential((i) => gateway.url(`/${i}`), 3), [200, 200, 200])
      const after = (yield* fetchJson(admin("/stats"))).json.requests
      assert.strictEqual(after.total - before.total, 3)
      assert.strictEqual(after.by_status_class["2xx"] - before.by_status_class["2xx"], 3)
      assert.strictEqual(after.by_status_class["5xx"] - before.by_status_class["5xx"], 0)
      // Absent before only while no listener named "web" has answered in this process; after, it must be there.
      const webBefore = Object.hasOwn(before.by_listener, "web") ? before.by_listener.web : 0
      assert.isNumber(after.by_listener.web)
      assert.strictEqual(after.by_listener.web - webBefore, 3)
    }))

  it.live("the generation follows a PUT /config", () =>
    Effect.gen(function*() {
      const { admin, config } = yield* withAdmin()
      assert.strictEqual((yield* sendJson("PUT", admin("/config"), config)).status, 200)
      assert.strictEqual((yield* fetchJson(admin("/stats"))).json.config.generation, 2)
    }))
})
