/**
 * rate_limit with `store: redis` against a real redis-server: two gateway processes sharing
 * one Redis admit at most the limit in total per window; while Redis is down `on_error`
 * decides (allow: admitted and counted as store errors; deny: 503), no request waits longer
 * than the timeout, and once Redis is back the limit holds again.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { fetchWhenUp, oneRouteConfig, spawnCli, tempFile } from "../support/cli.ts"
import { simpleConfig, startGateway, startUpstream } from "../support/harness.ts"
import { Result, SubscriptionRef } from "effect"
import { decodeConfig } from "../../src/config/ConfigLoader.ts"
import { eventually } from "../support/liveGateway.ts"
import { freePort } from "../support/net.ts"
import { growth, hasSeries, scrapeAdmin } from "../support/prometheus.ts"
import { startRedis } from "../support/redis.ts"

const limited = (redisUrl: string, onError: "allow" | "deny", limit: number) => [
  "log: { level: warn }",
  // A timeout far above a loopback round trip: a decision of a Redis that is up must not be
  // left to on_error because a loaded machine was slow (a Redis that is down refuses at once).
  `redis: { url: "${redisUrl}", timeout: 1s, on_error: ${onError} }`,
  `middlewares: { shared: { rate_limit: { key: global, limit: ${limit}, window: 1m, algorithm: fixed_window, store: redis } } }`
]

const statusOf = (url: string) =>
  Effect.promise(() => fetch(url, { signal: AbortSignal.timeout(5_000) }).then(async (r) => (await r.text(), r.status)))

/** A gateway process in front of `upstream` with the shared limit on its only route. */
const gatewayProcess = (redisUrl: string, upstream: string, onError: "allow" | "deny", limit: number) =>
  Effect.gen(function*() {
    const port = yield* freePort
    const adminPort = yield* freePort
    const file = yield* tempFile("fibergate.yaml", oneRouteConfig({
      port,
      adminPort,
      upstream,
      head: limited(redisUrl, onError, limit),
      routes: "[ { id: all, upstream: app, middlewares: [shared] } ]"
    }))
    const cli = yield* spawnCli(["run", "-c", file])
    yield* fetchWhenUp(cli, `http://127.0.0.1:${adminPort}/ready`)
    return { url: `http://127.0.0.1:${port}/`, adminPort, cli }
  })

/** Requests until one is admitted, for a Redis connection that is still being made (at most ~5 s). */
const firstAdmitted = (url: string) =>
  Effect.gen(function*() {
    for (let i = 0; i < 100; i++) {
      if ((yield* statusOf(url)) === 200) return
      yield* Effect.sleep(50)
    }
    assert.fail(`${url} admitted nothing within 5 s`)
  })

/**
 * Requests until one is admitted by Redis itself: with `on_error: allow` a request admitted
 * while the connection is still being made counts nowhere (it is a store error), so it cannot
 * start the count the test then checks. At most ~5 s.
 */
const firstCounted = (url: string, adminPort: number) =>
  Effect.gen(function*() {
    for (let i = 0; i < 100; i++) {
      const before = yield* scrapeAdmin(adminPort)
      const status = yield* statusOf(url)
      const after = yield* scrapeAdmin(adminPort)
      const errors = hasSeries(after, "fibergate_rate_limit_store_errors_total") ? growth(before, after, "fibergate_rate_limit_store_errors_total") : 0
      if (status === 200 && errors === 0) return
      yield* Effect.sleep(50)
    }
    assert.fail(`${url} admitted nothing through Redis within 5 s`)
  })

describe("rate_limit with store: redis", () => {
  it.live("in one process: the limit through Redis, a reload to another Redis server reconnects, and removing redis: stops using it", () =>
    Effect.gen(function*() {
      const first = yield* startRedis
      const second = yield* startRedis
      const app = yield* startUpstream("app")
      const configWith = (url: string | null) => {
        const base = simpleConfig([app.url], { middlewares: ["shared"] })
        return {
          ...base,
          redis: url === null ? null : { url, timeout: "200ms", on_error: "deny" },
          middlewares: { shared: url === null ? { rate_limit: { key: "global", limit: 2, window: "1m" } } : { rate_limit: { key: "global", limit: 2, window: "1m", algorithm: "fixed_window", store: "redis" } } }
        }
      }
      const gateway = yield* startGateway(configWith(first.url))
      yield* firstAdmitted(gateway.url("/"))
      assert.deepStrictEqual([yield* statusOf(gateway.url("/")), yield* statusOf(gateway.url("/"))], [200, 429])
      const apply = (config: unknown) =>
        Effect.gen(function*() {
          const decoded = decodeConfig(config, "test")
          assert.isTrue(Result.isSuccess(decoded))
          if (!Result.isSuccess(decoded)) return
          const before = gateway.services.routes.generation()
          yield* SubscriptionRef.set(gateway.services.config.config, decoded.success)
          yield* eventually(Effect.sync(() => gateway.services.routes.generation() > before), "the reload applied")
        })
      // Another server has its own (empty) counters.
      yield* apply(configWith(second.url))
      yield* firstAdmitted(gateway.url("/"))
      assert.deepStrictEqual([yield* statusOf(gateway.url("/")), yield* statusOf(gateway.url("/"))], [200, 429])
      // Without redis: the memory store (its own counter); the old servers are no longer asked.
      yield* apply(configWith(null))
      yield* first.stop
      yield* second.stop
      assert.deepStrictEqual([yield* statusOf(gateway.url("/")), yield* statusOf(gateway.url("/")), yield* statusOf(gateway.url("/"))], [200, 200, 429])
    }), { timeout: 30_000 })

  it.live("two gateway processes sharing one Redis admit the limit in total, alternating requests between them", () =>
    Effect.gen(function*() {
      const redis = yield* startRedis
      const app = yield* startUpstream("app")
      const a = yield* gatewayProcess(redis.url, app.url, "deny", 10)
      const b = yield* gatewayProcess(redis.url, app.url, "deny", 10)
      yield* firstAdmitted(a.url)
      yield* firstAdmitted(b.url)
      const statuses: Array<number> = []
      for (let i = 0; i < 30; i++) statuses.push(yield* statusOf(i % 2 === 0 ? a.url : b.url))
      // Two admitted while waiting for the connections, eight more here.
      assert.strictEqual(statuses.filter((s) => s === 200).length, 8, statuses.join(","))
      assert.isTrue(statuses.every((s) => s === 200 || s === 429), statuses.join(","))
      assert.strictEqual(app.seen.length, 10)
    }), { timeout: 30_000 })

  it.live("on_error: allow admits while Redis is down (counted as store errors), and the limit holds again after Redis restarts", () =>
    Effect.gen(function*() {
      const redis = yield* startRedis
      const app = yield* startUpstream("app")
      const g = yield* gatewayProcess(redis.url, app.url, "allow", 3)
      yield* firstCounted(g.url, g.adminPort)
      assert.deepStrictEqual([yield* statusOf(g.url), yield* statusOf(g.url), yield* statusOf(g.url)], [200, 200, 429])
      yield* redis.stop
      const before = yield* scrapeAdmin(g.adminPort)
      const started = Date.now()
      const down = [yield* statusOf(g.url), yield* statusOf(g.url), yield* statusOf(g.url), yield* statusOf(g.url)]
      assert.deepStrictEqual(down, [200, 200, 200, 200])
      assert.isBelow(Date.now() - started, 4_000)
      const after = yield* scrapeAdmin(g.adminPort)
      assert.strictEqual(growth(before, after, "fibergate_rate_limit_store_errors_total"), 4)
      // A restarted Redis is empty: the counter starts again, and the limit holds once reconnected.
      yield* redis.start
      let statuses: Array<number> = []
      for (let i = 0; i < 100 && !statuses.includes(429); i++) {
        statuses.push(yield* statusOf(g.url))
        if (!statuses.includes(429)) yield* Effect.sleep(50)
      }
      assert.include(statuses, 429, `the limit never applied again: ${statuses.join(",")}`)
      statuses = [yield* statusOf(g.url), yield* statusOf(g.url)]
      assert.deepStrictEqual(statuses, [429, 429])
    }), { timeout: 30_000 })

  it.live("on_error: deny answers 503 RateLimiterUnavailable while Redis is down, from a start without Redis and after it goes away", () =>
    Effect.gen(function*() {
      const redis = yield* startRedis
      yield* redis.stop
      const app = yield* startUpstream("app")
      // The gateway starts and serves without its Redis; the connection comes up later.
      const g = yield* gatewayProcess(redis.url, app.url, "deny", 100)
      const refused = () => Effect.promise(() => fetch(g.url, { signal: AbortSignal.timeout(5_000) }).then(async (r) => ({ status: r.status, body: await r.json() as { error: string } })))
      const before = yield* refused()
      assert.strictEqual(before.status, 503)
      assert.strictEqual(before.body.error, "RateLimiterUnavailable")
      yield* redis.start
      yield* firstAdmitted(g.url)
      yield* redis.stop
      assert.strictEqual((yield* refused()).status, 503)
      assert.strictEqual(app.seen.length, 1)
    }), { timeout: 30_000 })
})
