/**
 * The middleware state kept across reloads: a Redis limiter is kept while its settings are the
 * same (each of url, key_prefix, timeout, on_error counts) and replaced or dropped otherwise;
 * a concurrency semaphore is kept while its max is the same; the Redis store follows the
 * limiter in force and falls back to the defaults without one.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, References } from "effect"
import { connect } from "node:net"
import { Limiters, redisStore } from "../../src/middleware/Limiters.ts"
import { eventually } from "../support/liveGateway.ts"
import { startRedis } from "../support/redis.ts"

/** How many clients the Redis server at `port` has, itself asking included (CLIENT LIST). */
const redisClients = (port: number) =>
  Effect.promise(() => new Promise<number>((resolve, reject) => {
    const socket = connect(port, "127.0.0.1", () => socket.write("CLIENT LIST\r\n"))
    let text = ""
    socket.on("data", (chunk) => {
      text += chunk
      // A bulk string: $<length>\r\n<lines>\r\n
      const header = /^\$(\d+)\r\n/.exec(text)
      if (header !== null && text.length >= header[0].length + Number(header[1]) + 2) {
        socket.end()
        resolve(text.slice(header[0].length, header[0].length + Number(header[1])).split("\n").filter((l) => l.startsWith("id=")).length)
      }
    })
    socket.on("error", reject)
  }))

// Nothing listens there: the client keeps reconnecting in the background, which is all these tests need.
const base = { url: "redis://127.0.0.1:1" }
const quiet = <A, E, R>(effect: Effect.Effect<A, E, R>) => effect.pipe(Effect.provideService(References.MinimumLogLevel, "None"))

describe("Limiters", () => {
  it.effect("the same Redis settings keep the limiter; a change of any of them replaces it; none drops it", () =>
    quiet(Effect.scoped(Effect.gen(function*() {
      const limiters = yield* Limiters.make
      assert.isUndefined(limiters.redis())
      yield* limiters.useRedis(base)
      const first = limiters.redis()
      assert.strictEqual(first?.url, base.url)
      yield* limiters.useRedis({ ...base })
      assert.strictEqual(limiters.redis(), first)
      // Each step changes one setting of the one before, so each comparison is what replaces it.
      let previous = first
      let settings: Parameters<typeof limiters.useRedis>[0] = base
      for (const change of [{ key_prefix: "other:" }, { timeout: 75 }, { on_error: "deny" as const }, { url: "redis://127.0.0.1:2" }]) {
        settings = { ...settings!, ...change }
        yield* limiters.useRedis(settings)
        const next = limiters.redis()
        assert.notStrictEqual(next, previous, JSON.stringify(change))
        assert.isDefined(next)
        previous = next
      }
      yield* limiters.useRedis(null)
      assert.isUndefined(limiters.redis())
      yield* limiters.useRedis(undefined)
      assert.isUndefined(limiters.redis())
    }))))

  it.live("a replaced or dropped Redis limiter closes its connection", () =>
    quiet(Effect.scoped(Effect.gen(function*() {
      const redis = yield* startRedis
      const limiters = yield* Limiters.make
      yield* limiters.useRedis({ url: redis.url })
      yield* eventually(Effect.sync(() => limiters.redis()?.limiter !== undefined), "connected", 5_000)
      assert.strictEqual(yield* redisClients(redis.port), 2)
      yield* limiters.useRedis({ url: redis.url, key_prefix: "other:" })
      yield* eventually(Effect.sync(() => limiters.redis()?.limiter !== undefined), "connected again", 5_000)
      yield* eventually(redisClients(redis.port).pipe(Effect.map((n) => n === 2)), "the first connection closed", 5_000)
      yield* limiters.useRedis(null)
      yield* eventually(redisClients(redis.port).pipe(Effect.map((n) => n === 1)), "the second connection closed", 5_000)
    }))))

  it.effect("a Redis limiter's defaults: key prefix fibergate:, 50 ms, on_error allow; each as set otherwise", () =>
    quiet(Effect.scoped(Effect.gen(function*() {
      const limiters = yield* Limiters.make
      yield* limiters.useRedis(base)
      const d = limiters.redis()!
      assert.deepStrictEqual([d.prefix, d.timeoutMs, d.failOpen, d.limiter], ["fibergate:", 50, true, undefined])
      yield* limiters.useRedis({ ...base, key_prefix: "", timeout: 5, on_error: "allow" })
      const set = limiters.redis()!
      assert.deepStrictEqual([set.prefix, set.timeoutMs, set.failOpen], ["", 5, true])
      yield* limiters.useRedis({ ...base, on_error: "deny" })
      assert.strictEqual(limiters.redis()!.failOpen, false)
    }))))

  it.effect("the Redis store reads the limiter in force: its timeout and on_error, else 50 ms and allow", () =>
    quiet(Effect.scoped(Effect.gen(function*() {
      const limiters = yield* Limiters.make
      const store = redisStore(limiters, () => {})
      assert.deepStrictEqual([store.limiter(), store.timeoutMs(), store.failOpen()], [undefined, 50, true])
      yield* limiters.useRedis({ ...base, timeout: 200, on_error: "deny" })
      assert.deepStrictEqual([store.timeoutMs(), store.failOpen()], [200, false])
      assert.strictEqual(store.limiter(), limiters.redis()?.limiter)
    }))))

  it.effect("a concurrency limit's semaphore is kept while its max is the same, replaced when it changes", () =>
    Effect.scoped(Effect.gen(function*() {
      const limiters = yield* Limiters.make
      const a = limiters.semaphore("routes.api#0", 2)
      assert.strictEqual(limiters.semaphore("routes.api#0", 2), a)
      assert.notStrictEqual(limiters.semaphore("routes.other#0", 2), a)
      const b = limiters.semaphore("routes.api#0", 3)
      assert.notStrictEqual(b, a)
      assert.strictEqual(limiters.semaphore("routes.api#0", 3), b)
    })))
})
