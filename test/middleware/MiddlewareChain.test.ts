/**
 * Compiling a route's middlewares outside a gateway: what cannot work is reported with its
 * path and answered 500 (an unreadable htpasswd or secret file, an unregistered custom name),
 * htpasswd lines without a supported hash are reported and skipped, a secret file loses only
 * its trailing newline, and inline rate limits count per route while a named one is shared.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit } from "effect"
import { SignJWT } from "jose"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Agent } from "undici"
import { Schema } from "effect"
import { Config } from "../../src/config/Schema.ts"
import type { GatewayError } from "../../src/middleware/GatewayError.ts"
import { Limiters, redisStore } from "../../src/middleware/Limiters.ts"
import { compileChain, type ChainServices } from "../../src/middleware/MiddlewareChain.ts"
import { composeSteps } from "../../src/middleware/Middleware.ts"
import { makeJwksCache } from "../../src/middleware/JwksCache.ts"
import { requestFrom } from "../support/pipelineRequest.ts"

const configWith = (routes: ReadonlyArray<{ id: string; middlewares: ReadonlyArray<unknown> }>, named: Record<string, unknown> = {}) =>
  Schema.decodeUnknownSync(Config)({
    middlewares: named,
    servers: [{ name: "web", listen: "127.0.0.1:0", routes: routes.map((r) => ({ ...r, upstream: "app" })) }],
    upstreams: { app: { endpoints: [{ url: "http://127.0.0.1:1" }] } }
  })

const withServices = <A>(f: (services: ChainServices, problems: Array<[string, string]>) => Effect.Effect<A>) =>
  Effect.scoped(Effect.gen(function*() {
    const limiters = yield* Limiters.make
    const problems: Array<[string, string]> = []
    const services: ChainServices = {
      limiters,
      redisStore: redisStore(limiters, () => {}),
      custom: new Map(),
      problem: (where, message) => void problems.push([where, message]),
      jwks: (url) => makeJwksCache(url),
      dispatcher: new Agent()
    }
    return yield* f(services, problems)
  }))

/** Runs route `i`'s chain on a request with `headers`; the failure's tag, or "passed". */
const run = (config: Config, i: number, services: ChainServices, headers: Record<string, string> = {}) => {
  const server = config.servers[0]
  const steps = compileChain(config, server, server.routes[i], services) ?? []
  const { request } = requestFrom("10.0.0.1", { header: (name) => headers[name] })
  return Effect.exit(composeSteps(steps, () => Effect.void)(request)).pipe(Effect.map((exit) =>
    Exit.isSuccess(exit) ? "passed" : ((exit.cause.reasons[0] as { error?: GatewayError }).error?._tag ?? "defect")
  ))
}

const tempDir = () => {
  const dir = mkdtempSync(join(tmpdir(), "fibergate-chain-"))
  return Effect.acquireRelease(Effect.succeed(dir), () => Effect.sync(() => rmSync(dir, { recursive: true, force: true })))
}

describe("middleware chain", () => {
  it.effect("an htpasswd file's lines without a bcrypt, apr1 or scrypt hash are reported and skipped; a clean file reports nothing", () =>
    Effect.scoped(Effect.gen(function*() {
      const dir = yield* tempDir()
      writeFileSync(join(dir, "mixed"), "alice:$apr1$abcdefgh$abcdefghijklmnopqrstuv\nbob:plain\ncarol:{SHA}x\n")
      writeFileSync(join(dir, "clean"), "alice:$apr1$abcdefgh$abcdefghijklmnopqrstuv\n")
      const config = configWith([
        { id: "a", middlewares: [{ basic_auth: { htpasswd_file: join(dir, "mixed") } }] },
        { id: "b", middlewares: [{ basic_auth: { htpasswd_file: join(dir, "clean") } }] }
      ])
      yield* withServices((services, problems) => Effect.gen(function*() {
        assert.strictEqual(yield* run(config, 0, services), "Unauthorized")
        assert.strictEqual(yield* run(config, 1, services), "Unauthorized")
        assert.deepStrictEqual(problems, [[
          "servers[0].routes[0].middlewares[0].basic_auth.htpasswd_file",
          `${join(dir, "mixed")}: line(s) 2, 3 have no bcrypt, apr1 or scrypt hash and are ignored`
        ]])
      }))
    })))

  it.effect("unreadable files and unregistered custom names are reported with their paths, and their routes fail closed", () =>
    Effect.gen(function*() {
      const config = configWith([
        { id: "a", middlewares: [{ basic_auth: { htpasswd_file: "/nonexistent/htpasswd" } }] },
        { id: "b", middlewares: [{ jwt: { secret_file: "/nonexistent/secret", algorithms: ["HS256"] } }] },
        { id: "c", middlewares: [{ custom: "audit" }] }
      ])
      yield* withServices((services, problems) => Effect.gen(function*() {
        for (const i of [0, 1, 2]) assert.strictEqual(yield* run(config, i, services), "InternalError")
        assert.deepStrictEqual(problems.map(([where]) => where), [
          "servers[0].routes[0].middlewares[0].basic_auth.htpasswd_file",
          "servers[0].routes[1].middlewares[0].jwt.secret_file",
          "servers[0].routes[2].middlewares[0]"
        ])
        assert.match(problems[0][1], /^cannot read \/nonexistent\/htpasswd: ENOENT.*; its requests are answered 500$/)
        assert.match(problems[1][1], /^cannot read \/nonexistent\/secret: ENOENT.*; its requests are answered 500$/)
        assert.strictEqual(problems[2][1], `no custom middleware is registered as "audit"; its requests are answered 500`)
      }))
    }))

  it.effect("a secret file loses its one trailing newline (LF or CRLF), nothing inside it", () =>
    Effect.scoped(Effect.gen(function*() {
      const dir = yield* tempDir()
      const cases = [["lf", "first-secret-of-enough-length-for-hs256\n"], ["crlf", "second-secret-of-enough-length-for-hs256\r\n"], ["inner", "third\nsecret-of-enough-length-for-hs256\n"]] as const
      for (const [name, text] of cases) writeFileSync(join(dir, name), text)
      const config = configWith(cases.map(([name]) => ({ id: name, middlewares: [{ jwt: { secret_file: join(dir, name), algorithms: ["HS256"] } }] })))
      const token = (secret: string) =>
        Effect.promise(() => new SignJWT({ sub: "u" }).setProtectedHeader({ alg: "HS256" }).setExpirationTime("1h").sign(new TextEncoder().encode(secret)))
      yield* withServices((services, problems) => Effect.gen(function*() {
        for (const [i, [, text]] of cases.entries()) {
          const secret = text.replace(/\r?\n$/, "")
          assert.strictEqual(yield* run(config, i, services, { authorization: `Bearer ${yield* token(secret)}` }), "passed", `case ${i}`)
          assert.strictEqual(yield* run(config, i, services, { authorization: `Bearer ${yield* token(text)}` }), "Unauthorized", `case ${i} with the newline`)
        }
        assert.deepStrictEqual(problems, [])
      }))
    })))

  it.effect("inline rate limits count each route on its own; a named one is shared by the routes naming it", () =>
    Effect.gen(function*() {
      const limit = { rate_limit: { key: "global", limit: 1, window: "1m" } }
      const config = configWith([
        { id: "a", middlewares: [limit] },
        { id: "b", middlewares: [limit] },
        { id: "c", middlewares: ["shared"] },
        { id: "d", middlewares: ["shared"] }
      ], { shared: limit })
      yield* withServices((services) => Effect.gen(function*() {
        assert.deepStrictEqual(
          [yield* run(config, 0, services), yield* run(config, 1, services), yield* run(config, 0, services)],
          ["passed", "passed", "RateLimited"]
        )
        assert.deepStrictEqual([yield* run(config, 2, services), yield* run(config, 3, services)], ["passed", "RateLimited"])
      }))
    }))
})
