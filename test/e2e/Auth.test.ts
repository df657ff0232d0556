/**
 * jwt and forward_auth through a real gateway: a JWKS server the test runs (keys made by the
 * test, rotated mid-test), an HS256 secret in a file, and a forward-auth server that lets
 * some requests through with an identity and refuses others with its own answer.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from "jose"
import { writeFileSync } from "node:fs"
import { createServer, type IncomingMessage, type ServerResponse } from "node:http"
import type { AddressInfo } from "node:net"
import { join } from "node:path"
import { simpleConfig, startGateway, startUpstream } from "../support/harness.ts"
import { send } from "../support/http.ts"
import { tempDir } from "../support/liveGateway.ts"
import { unansweredPort } from "../support/blackhole.ts"

/** A loopback HTTP server for the life of the scope; its handler can be swapped. */
const startServer = (handler: (req: IncomingMessage, res: ServerResponse) => void) =>
  Effect.acquireRelease(
    Effect.callback<{ url: string; server: ReturnType<typeof createServer>; seen: Array<IncomingMessage>; handler: { current: typeof handler } }>((resume) => {
      const seen: Array<IncomingMessage> = []
      const state = { current: handler }
      const server = createServer((req, res) => {
        seen.push(req)
        state.current(req, res)
      })
      server.listen(0, "127.0.0.1", () => resume(Effect.succeed({ url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server, seen, handler: state })))
    }),
    (s) => Effect.callback<void>((resume) => {
      s.server.closeAllConnections()
      s.server.close(() => resume(Effect.void))
    })
  )

interface SigningKey {
  readonly kid: string
  readonly privateKey: CryptoKey
  readonly jwk: JWK
}
const signingKey = (kid: string, alg: "RS256" | "ES256") =>
  Effect.promise(async (): Promise<SigningKey> => {
    const { privateKey, publicKey } = await generateKeyPair(alg)
    return { kid, privateKey, jwk: { ...(await exportJWK(publicKey)), kid, alg, use: "sig" } }
  })

const ISSUER = "https://id.example.test"
const sign = (key: SigningKey, alg: string, claims: Record<string, unknown>, options: { readonly exp?: string | number; readonly issuer?: string; readonly audience?: string } = {}) =>
  Effect.promise(() =>
    new SignJWT(claims)
      .setProtectedHeader({ alg, kid: key.kid })
      .setIssuer(options.issuer ?? ISSUER)
      .setAudience(options.audience ?? "api")
      .setIssuedAt()
      .setExpirationTime(options.exp ?? "5m")
      .sign(key.privateKey)
  )

const serveJwks = (keys: { current: ReadonlyArray<JWK> }) => (_req: IncomingMessage, res: ServerResponse) => {
  const body = JSON.stringify({ keys: keys.current })
  res.writeHead(200, { "content-type": "application/json", "cache-control": "max-age=600", "content-length": Buffer.byteLength(body) })
  res.end(body)
}

const jwtGateway = (upstream: string, jwt: Record<string, unknown>) =>
  startGateway(simpleConfig([upstream], { middlewares: [{ jwt: { issuer: ISSUER, audiences: ["api"], algorithms: ["RS256"], claims_to_headers: { sub: "x-user-id", scope: "x-scope" }, ...jwt } }] }))

describe("jwt", () => {
  it.live("a valid RS256 token from the JWKS passes; sub and claims go upstream as headers, replacing the client's", () =>
    Effect.gen(function*() {
      const key = yield* signingKey("k1", "RS256")
      const jwks = yield* startServer(serveJwks({ current: [key.jwk] }))
      const app = yield* startUpstream("app")
      const gateway = yield* jwtGateway(app.url, { jwks_url: `${jwks.url}/jwks` })
      const token = yield* sign(key, "RS256", { sub: "user-1", scope: ["read", "write"] })
      const res = yield* send(gateway.url("/"), { headers: { authorization: `Bearer ${token}`, "x-user-id": "forged" } })
      assert.strictEqual(res.status, 200)
      assert.strictEqual(app.seen[0].headers["x-user-id"], "user-1")
      assert.strictEqual(app.seen[0].headers["x-scope"], `["read","write"]`)
      assert.strictEqual(app.seen[0].headers.authorization, `Bearer ${token}`)
      // Second request: the cached set, no second fetch.
      assert.strictEqual((yield* send(gateway.url("/"), { headers: { authorization: `Bearer ${token}` } })).status, 200)
      assert.strictEqual(jwks.seen.length, 1)
    }))

  it.live("missing, malformed, expired, wrong issuer, wrong audience and a disallowed algorithm each answer 401 with a Bearer challenge", () =>
    Effect.gen(function*() {
      const rsa = yield* signingKey("k1", "RS256")
      const ec = yield* signingKey("k2", "ES256")
      const jwks = yield* startServer(serveJwks({ current: [rsa.jwk, ec.jwk] }))
      const app = yield* startUpstream("app")
      const gateway = yield* jwtGateway(app.url, { jwks_url: `${jwks.url}/jwks`, clock_skew: "0s" })
      const none = yield* send(gateway.url("/"))
      assert.strictEqual(none.status, 401)
      assert.strictEqual(none.headers["www-authenticate"], `Bearer realm="fibergate"`)
      const cases: Array<[string, string]> = [
        ["malformed", "Bearer not.a.jwt"],
        ["expired", `Bearer ${yield* sign(rsa, "RS256", { sub: "u" }, { exp: Math.floor(Date.now() / 1000) - 60 })}`],
        ["iss", `Bearer ${yield* sign(rsa, "RS256", { sub: "u" }, { issuer: "https://evil.test" })}`],
        ["aud", `Bearer ${yield* sign(rsa, "RS256", { sub: "u" }, { audience: "other" })}`],
        ["algorithm", `Bearer ${yield* sign(ec, "ES256", { sub: "u" })}`],
        ["basic", "Basic dTpw"]
      ]
      for (const [name, authorization] of cases) {
        const res = yield* send(gateway.url("/"), { headers: { authorization } })
        assert.strictEqual(res.status, 401, name)
        assert.include(String(res.headers["www-authenticate"]), `error="invalid_token"`, name)
        assert.strictEqual(JSON.parse(res.body).error, "Unauthorized", name)
      }
      assert.strictEqual(app.seen.length, 0)
    }))

  it.live("rotation: a token with a kid the cached set lacks makes the gateway fetch the JWKS again (once per 30 s, however many unknown kids come)", () =>
    Effect.gen(function*() {
      const old = yield* signingKey("old", "RS256")
      const next = yield* signingKey("new", "RS256")
      const keys = { current: [old.jwk] as ReadonlyArray<JWK> }
      const jwks = yield* startServer(serveJwks(keys))
      const app = yield* startUpstream("app")
      const gateway = yield* jwtGateway(app.url, { jwks_url: `${jwks.url}/jwks` })
      assert.strictEqual((yield* send(gateway.url("/"), { headers: { authorization: `Bearer ${yield* sign(old, "RS256", { sub: "a" })}` } })).status, 200)
      keys.current = [old.jwk, next.jwk]
      assert.strictEqual((yield* send(gateway.url("/"), { headers: { authorization: `Bearer ${yield* sign(next, "RS256", { sub: "b" })}` } })).status, 200)
      assert.strictEqual(jwks.seen.length, 2)
      const stranger = yield* signingKey("stranger", "RS256")
      for (let i = 0; i < 3; i++) {
        const res = yield* send(gateway.url("/"), { headers: { authorization: `Bearer ${yield* sign(stranger, "RS256", { sub: "c" })}` } })
        assert.strictEqual(res.status, 401)
      }
      assert.strictEqual(jwks.seen.length, 2)
    }))

  it.live("HS256 with secret_file: the secret's token passes, another secret's does not", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const file = join(dir, "hs.key")
      writeFileSync(file, "a-long-shared-secret-for-hs256-tests\n")
      const app = yield* startUpstream("app")
      const gateway = yield* jwtGateway(app.url, { secret_file: file, algorithms: ["HS256"] })
      const good = { kid: "s", privateKey: new TextEncoder().encode("a-long-shared-secret-for-hs256-tests") as unknown as CryptoKey, jwk: {} }
      const bad = { kid: "s", privateKey: new TextEncoder().encode("another-secret-of-the-same-length-xx") as unknown as CryptoKey, jwk: {} }
      assert.strictEqual((yield* send(gateway.url("/"), { headers: { authorization: `Bearer ${yield* sign(good, "HS256", { sub: "h" })}` } })).status, 200)
      assert.strictEqual((yield* send(gateway.url("/"), { headers: { authorization: `Bearer ${yield* sign(bad, "HS256", { sub: "h" })}` } })).status, 401)
      assert.strictEqual(app.seen[0].headers["x-user-id"], "h")
    }))
})

describe("forward_auth", () => {
  const authServer = (req: IncomingMessage, res: ServerResponse) => {
    if (req.headers.authorization === "Bearer good") {
      res.writeHead(204, { "x-user-id": "u-1", "x-other": "not copied" })
      res.end()
    } else {
      res.writeHead(401, { "www-authenticate": `Bearer realm="sso"`, "set-cookie": ["a=1", "b=2"], "content-type": "text/plain" })
      res.end("go away")
    }
  }

  it.live("a 2xx lets the request (and its body) through with the listed headers copied; anything else goes back to the client as it came", () =>
    Effect.gen(function*() {
      const auth = yield* startServer(authServer)
      const app = yield* startUpstream("app")
      const gateway = yield* startGateway(simpleConfig([app.url], { middlewares: [{ forward_auth: { url: `${auth.url}/verify`, response_headers: ["x-user-id", "x-absent"] } }] }))
      const ok = yield* Effect.promise(() =>
        fetch(gateway.url("/orders?id=7"), { method: "POST", headers: { authorization: "Bearer good", "x-user-id": "forged" }, body: "payload" }).then(async (r) => ({ status: r.status, body: await r.text() }))
      )
      assert.strictEqual(ok.status, 200)
      assert.strictEqual(app.seen[0].headers["x-user-id"], "u-1")
      assert.isUndefined(app.seen[0].headers["x-other"])
      assert.isUndefined(app.seen[0].headers["x-absent"])
      assert.strictEqual(app.seen[0].body.toString(), "payload")
      const asked = auth.seen[0]
      assert.strictEqual(asked.method, "GET")
      assert.strictEqual(asked.url, "/verify")
      assert.strictEqual(asked.headers["x-forwarded-method"], "POST")
      assert.strictEqual(asked.headers["x-forwarded-uri"], "/orders?id=7")
      assert.strictEqual(asked.headers["x-forwarded-for"], "127.0.0.1")
      assert.isUndefined(asked.headers["content-length"])
      const refused = yield* send(gateway.url("/orders"), { headers: { authorization: "Bearer bad" } })
      assert.strictEqual(refused.status, 401)
      assert.strictEqual(refused.body, "go away")
      assert.strictEqual(refused.headers["www-authenticate"], `Bearer realm="sso"`)
      assert.deepStrictEqual(refused.headers["set-cookie"], ["a=1", "b=2"])
      assert.strictEqual(app.seen.length, 1)
    }))

  it.live("request_headers limits what the auth service sees; an auth service that does not answer within timeout gives 503", () =>
    Effect.gen(function*() {
      const auth = yield* startServer((req, res) => {
        if (req.url === "/hang") return
        authServer(req, res)
      })
      const app = yield* startUpstream("app")
      const config = simpleConfig([app.url], { match: { path: { prefix: "/a" } }, middlewares: [{ forward_auth: { url: `${auth.url}/verify`, request_headers: ["authorization"] } }] })
      const gateway = yield* startGateway({
        ...config,
        servers: [{ ...config.servers[0], routes: [...config.servers[0].routes, { id: "slow", upstream: "app", middlewares: [{ forward_auth: { url: `${auth.url}/hang`, timeout: "200ms" } }] }] }]
      })
      assert.strictEqual((yield* send(gateway.url("/a"), { headers: { authorization: "Bearer good", cookie: "secret=1" } })).status, 200)
      assert.isUndefined(auth.seen[0].headers.cookie)
      assert.strictEqual(auth.seen[0].headers.authorization, "Bearer good")
      const started = Date.now()
      const res = yield* send(gateway.url("/b"))
      assert.strictEqual(res.status, 503)
      assert.strictEqual(JSON.parse(res.body).error, "AuthUnavailable")
      assert.strictEqual(JSON.parse(res.body).message, "The auth service did not answer")
      assert.isBelow(Date.now() - started, 5_000)
      assert.strictEqual(app.seen.length, 1)
    }))

  it.live("the timeout covers connecting too: an auth service whose port never completes the handshake gives 503 within it", () =>
    Effect.gen(function*() {
      const port = yield* unansweredPort
      const app = yield* startUpstream("app")
      const gateway = yield* startGateway(simpleConfig([app.url], { middlewares: [{ forward_auth: { url: `http://127.0.0.1:${port}/verify`, timeout: "300ms" } }] }))
      const started = Date.now()
      const res = yield* send(gateway.url("/"))
      assert.strictEqual(res.status, 503)
      // undici's own connect timeout is 10 s; the middleware's is what counts.
      assert.isBelow(Date.now() - started, 5_000)
    }))

  it.live("2xx is 200 to 299: a 200 with a body lets the request through, a 300 goes back to the client; a long refusal body is cut at 64 KiB", () =>
    Effect.gen(function*() {
      const auth = yield* startServer((req, res) => {
        if (req.headers["x-case"] === "200") return void res.writeHead(200, { "content-type": "text/plain" }).end("welcome")
        if (req.headers["x-case"] === "300") return void res.writeHead(300, { location: "/elsewhere" }).end()
        res.writeHead(403, { "content-type": "text/plain", "content-length": String(100 * 1024) }).end("x".repeat(100 * 1024))
      })
      const app = yield* startUpstream("app")
      const gateway = yield* startGateway(simpleConfig([app.url], { middlewares: [{ forward_auth: { url: `${auth.url}/verify` } }] }))
      assert.strictEqual((yield* send(gateway.url("/"), { headers: { "x-case": "200" } })).status, 200)
      assert.strictEqual(app.seen.length, 1)
      const multiple = yield* send(gateway.url("/"), { headers: { "x-case": "300" } })
      assert.strictEqual(multiple.status, 300)
      assert.strictEqual(multiple.headers.location, "/elsewhere")
      const long = yield* send(gateway.url("/"))
      assert.strictEqual(long.status, 403)
      assert.isTrue(long.body.length > 0 && long.body.length <= 64 * 1024, String(long.body.length))
      // The auth service's Content-Length described its whole body; the client's describes what it gets.
      assert.strictEqual(Number(long.headers["content-length"]), long.body.length)
      assert.strictEqual(app.seen.length, 1)
    }))
})
