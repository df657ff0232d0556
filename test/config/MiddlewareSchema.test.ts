/** Middleware config errors name the file, the path inside it and what was expected. */
import { describe, expect, it } from "@effect/vitest"
import { Result } from "effect"
import { parseConfigText } from "../../src/config/ConfigLoader.ts"

const withMiddlewares = (list: string, head = "") => `${head}
middlewares:
  auth: { api_key: { keys: [ { name: ci, sha256: "${"a".repeat(64)}" } ] } }
servers:
  - name: web
    listen: 127.0.0.1:0
    routes:
      - id: r
        upstream: app
        middlewares: ${list}
upstreams: { app: { endpoints: [ { url: "http://127.0.0.1:1" } ] } }
`

const errorOf = (list: string, head = ""): string => {
  const r = parseConfigText(withMiddlewares(list, head), "gw.yaml", {})
  return Result.isFailure(r) ? r.failure.message : "accepted"
}

describe("middleware config", () => {
  it("accepts named and inline middlewares of every kind", () => {
    const all = `[auth, { ip_filter: { allow: [10.0.0.0/8] } }, { cors: { origins: ["https://a.example.com"] } }, { basic_auth: { users: [ { name: u, hash: "$apr1$abcdefgh$abcdefghijklmnopqrstuv" } ] } }, { jwt: { jwks_url: "http://127.0.0.1:1/jwks", algorithms: [RS256] } }, { forward_auth: { url: "http://127.0.0.1:1/v" } }, { rate_limit: { limit: 5, window: 1s, store: redis } }, { concurrency_limit: { max: 2 } }, { custom: audit }]`
    expect(errorOf(all, `redis: { url: "redis://127.0.0.1:6379" }`)).toBe("accepted")
  })

  it("refuses, with the path and what is wrong", () => {
    const cases: Array<[string, string, string?]> = [
      ["[nope]", `gw.yaml:10:23: servers[0].routes[0].middlewares[0]: Unknown middleware "nope" (defined in middlewares: auth)`],
      ["[ { jwt: { algorithms: [RS256] }, cors: { origins: [\"*\"] } } ]", "servers[0].routes[0].middlewares[0].jwt: Expected jwks_url or secret_file (exactly one)"],
      ["[ { cors: { origins: ['*'], credentials: true } } ]", "servers[0].routes[0].middlewares[0].cors: origins: * cannot be combined with credentials: true"],
      ["[ { cors: { origins: [\"https://a.example.com\"] }, ip_filter: { allow: [10.0.0.0/8] } } ]", "servers[0].routes[0].middlewares[0]: Expected exactly one middleware kind"],
      ["[ { wasm: {} } ]", "servers[0].routes[0].middlewares[0].wasm: Unknown key"],
      ["[ { ip_filter: {} } ]", "servers[0].routes[0].middlewares[0].ip_filter: Expected allow, deny or both"],
      ["[ { ip_filter: { deny: [10.0.0.0/33] } } ]", "servers[0].routes[0].middlewares[0].ip_filter.deny[0]: Expected an IP address or a CIDR range"],
      ["[ { rate_limit: { limit: 5, window: 0s } } ]", "servers[0].routes[0].middlewares[0].rate_limit.window: Expected a value greater than or equal to 1"],
      ["[ { rate_limit: { limit: 5, window: 1s, key: cookie } } ]", "rate_limit.key: Expected ip, route, global, consumer or header:<name>"],
      ["[ { rate_limit: { limit: 5, window: 1s, store: redis } } ]", "servers[0].routes[0].middlewares[0].rate_limit.store: store: redis needs the top-level redis section"],
      ["[ { api_key: { keys: [ { name: ci, sha256: abc } ] } } ]", "api_key.keys[0].sha256: Expected the key's SHA-256 as 64 hex digits"],
      ["[ { basic_auth: { users: [ { name: u, hash: plain } ] } } ]", "basic_auth.users[0].hash: Expected a bcrypt ($2y$…), apr1 ($apr1$…) or scrypt"],
      ["[ { basic_auth: { htpasswd_file: f, users: [ { name: u, hash: \"$apr1$abcdefgh$abcdefghijklmnopqrstuv\" } ] } } ]", "basic_auth: Expected users or htpasswd_file (exactly one)"],
      ["[ { jwt: { secret_file: k, algorithms: [RS256] } } ]", "jwt: secret_file takes only HS256, HS384 or HS512"],
      ["[ { jwt: { jwks_url: \"http://x/j\", algorithms: [HS256] } } ]", "jwt: jwks_url takes asymmetric algorithms only"],
      ["[ { forward_auth: { url: \"ftp://x\" } } ]", "forward_auth.url: Expected an http:// or https:// URL"],
      ["[]", "redis.url: Expected a redis:// or rediss:// URL", `redis: { url: "http://127.0.0.1:6379" }`]
    ]
    for (const [list, expected, head] of cases) expect(errorOf(list, head), list).toContain(expected)
  })
})
