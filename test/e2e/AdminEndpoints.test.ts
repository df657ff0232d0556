/**
 * Admin API claims of the README checked at their edges on a real gateway: `admin` is optional,
 * the 1 MiB limit of a
 * config body at exactly 1 MiB and one byte more (declared and chunked), HEAD on every GET
 * endpoint, the redaction of every secret-like key name in what `/config` and `/routes` show,
 * and the `<redacted>` placeholder refused by `/config/validate` as by `PUT /config`.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { request as httpRequest } from "node:http"
import { request, simpleConfig, startGateway, startUpstream } from "../support/harness.ts"
import { send } from "../support/http.ts"

const MiB = 1024 * 1024

/** A gateway with its admin API, in front of one echo upstream. */
const withAdmin = (route: Record<string, unknown> = {}) =>
  Effect.gen(function*() {
    const app = yield* startUpstream("app")
    const config = simpleConfig([app.url], route)
    const gateway = yield* startGateway(config)
    return { config, gateway, admin: (path: string) => `http://127.0.0.1:${gateway.adminPort}${path}` }
  })

/** `value` as JSON padded with trailing spaces (still one JSON document) to exactly `bytes` bytes. */
const jsonOfSize = (value: unknown, bytes: number) => {
  const text = JSON.stringify(value)
  assert.isAtMost(Buffer.byteLength(text), bytes)
  return Buffer.from(text + " ".repeat(bytes - Buffer.byteLength(text)))
}

/** PUT `body` to `url`, declared with Content-Length or sent chunked in 64 KiB pieces. */
const put = (url: string, body: Buffer, framing: "length" | "chunked") =>
  Effect.callback<{ readonly status: number; readonly json: Record<string, unknown> }>((resume) => {
    const req = httpRequest(url, {
      method: "PUT",
      agent: false,
      headers: { "content-type": "application/json", ...(framing === "length" ? { "content-length": body.length } : {}) }
    }, (res) => {
      const chunks: Array<Buffer> = []
      res.on("data", (c: Buffer) => chunks.push(c))
      res.on("end", () => resume(Effect.succeed({ status: res.statusCode ?? 0, json: JSON.parse(Buffer.concat(chunks).toString()) })))
    })
    // A 413 may close the connection while the rest of the body is still going out.
    req.on("error", () => undefined)
    for (let at = 0; at < body.length; at += 64 * 1024) req.write(body.subarray(at, at + 64 * 1024))
    req.end()
    return Effect.sync(() => req.destroy())
  }).pipe(Effect.timeout("5 seconds"))

describe("admin API: the 1 MiB limit of a config body", () => {
  for (const framing of ["length", "chunked"] as const) {
    it.live(`${framing === "length" ? "Content-Length" : "chunked"}: a config of exactly 1 MiB is applied; 1 MiB and one byte gets 413 and changes nothing`, () =>
      Effect.gen(function*() {
        const { admin, config, gateway } = yield* withAdmin()
        const next = { ...config, log: { level: "warn" } }
        const atLimit = yield* put(admin("/config"), jsonOfSize(next, MiB), framing)
        assert.strictEqual(atLimit.status, 200, JSON.stringify(atLimit.json))
        assert.strictEqual(atLimit.json.applied, true)
        assert.strictEqual(gateway.services.routes.generation(), 2)
        const over = yield* put(admin("/config"), jsonOfSize(config, MiB + 1), framing)
        assert.strictEqual(over.status, 413)
        assert.deepStrictEqual([over.json.error, over.json.limit], ["PayloadTooLarge", MiB])
        assert.strictEqual(gateway.services.routes.generation(), 2, "the body over the limit is not applied")
      }))
  }
})

describe("admin API: optional", () => {
  it.live("a config without an admin section runs the gateway with no admin listener", () =>
    Effect.gen(function*() {
      const app = yield* startUpstream("app")
      const { admin: _admin, ...withoutAdmin } = simpleConfig([app.url])
      const gateway = yield* startGateway(withoutAdmin)
      assert.isUndefined(gateway.adminPort)
      assert.strictEqual((yield* request(gateway.url("/served"))).status, 200)
    }))
})

describe("admin API: HEAD", () => {
  it.live("every GET endpoint answers HEAD with its status and length and no body", () =>
    Effect.gen(function*() {
      const { admin } = yield* withAdmin()
      for (const path of ["/health", "/ready", "/config", "/routes", "/upstreams", "/stats", "/metrics"]) {
        const res = yield* send(admin(path), { method: "HEAD" })
        assert.strictEqual(res.status, 200, path)
        assert.isAbove(Number(res.headers["content-length"]), 0, path)
        assert.strictEqual(res.body, "", path)
      }
      assert.strictEqual((yield* send(admin("/config/validate"), { method: "HEAD" })).status, 405, "HEAD only where GET is")
    }))
})

describe("admin API: redaction of secret-like key names", () => {
  const secrets: Record<string, string> = {
    "x-token": "tok-1f",
    "x-password": "pw-2e",
    "x-secret": "sec-3d",
    "x-key": "key-4c",
    "x-credentials": "cred-5b",
    authorization: "Bearer auth-6a"
  }

  it.live("GET /config and GET /routes show a value under each of token, password, secret, key, credentials and authorization as <redacted>, and the others as set", () =>
    Effect.gen(function*() {
      const { admin } = yield* withAdmin({
        match: { headers: { authorization: { present: true } }, query: { password: "pw-q7" } },
        headers: { request: { set: { ...secrets, "x-team": "blue" } } }
      })
      const shown = yield* request(admin("/config"))
      assert.strictEqual(shown.status, 200)
      for (const value of [...Object.values(secrets), "pw-q7"]) assert.notInclude(shown.body, value)
      const route = JSON.parse(shown.body).servers[0].routes[0]
      assert.deepStrictEqual(route.headers.request.set, {
        ...Object.fromEntries(Object.keys(secrets).map((name) => [name, "<redacted>"])),
        "x-team": "blue"
      })
      assert.deepStrictEqual(route.match, { headers: { authorization: { present: "<redacted>" } }, query: { password: "<redacted>" } })
      const routes = yield* request(admin("/routes"))
      assert.notInclude(routes.body, "pw-q7")
      assert.deepStrictEqual(JSON.parse(routes.body).listeners[0].routes[0].match.query, { password: "<redacted>" })
    }))

  it.live("POST /config/validate refuses GET /config's output with <redacted> in it (400 naming each path), like PUT /config", () =>
    Effect.gen(function*() {
      const { admin, gateway } = yield* withAdmin({ headers: { request: { set: { "x-api-key": "k-9" } } } })
      const shown = (yield* request(admin("/config"))).body
      const paths = ["servers[0].routes[0].headers.request.set.x-api-key"]
      const validated = yield* request(admin("/config/validate"), { method: "POST", body: shown })
      assert.strictEqual(validated.status, 400)
      assert.deepStrictEqual(
        [JSON.parse(validated.body).valid, JSON.parse(validated.body).problems.map((p: { path: string }) => p.path)],
        [false, paths]
      )
      const applied = yield* request(admin("/config"), { method: "PUT", body: shown })
      assert.strictEqual(applied.status, 400)
      assert.deepStrictEqual(JSON.parse(applied.body).problems.map((p: { path: string }) => p.path), paths)
      assert.strictEqual(gateway.services.routes.generation(), 1)
    }))
})
