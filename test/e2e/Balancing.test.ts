/**
 * Load balancing end to end: each `balance` algorithm through a real listening gateway over
 * several real upstreams. Upstreams are named "a", "b", ... and answer with an `x-upstream`
 * header, so the client sees which endpoint the balancer picked.
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Fiber } from "effect"
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from "node:http"
import { echoHandler, startGateway, startUpstream, type TestGateway, type UpstreamHandler } from "../support/harness.ts"
import { send } from "../support/http.ts"
import { fire, onSignal } from "../support/signals.ts"

interface SendOptions {
  readonly headers?: OutgoingHttpHeaders
  /** Source address of the client connection (any 127.0.0.0/8 address on Linux loopback). */
  readonly localAddress?: string
  readonly listener?: string
}

/** Which upstream answered one request, sent on its own connection over node:http. */
const pick = (gateway: TestGateway, path: string, options: SendOptions = {}) =>
  send(gateway.url(path, options.listener), options).pipe(
    Effect.map((res) => {
      const upstream = res.headers["x-upstream"]
      return typeof upstream === "string" ? upstream : `status ${res.status}`
    })
  )

/** `n` sequential requests; the upstream names in order. */
const sequence = (n: number, one: (i: number) => Effect.Effect<string>) =>
  Effect.gen(function*() {
    const out: Array<string> = []
    for (let i = 0; i < n; i++) out.push(yield* one(i))
    return out
  })

const count = (names: ReadonlyArray<string>): Record<string, number> => {
  const out: Record<string, number> = {}
  for (const n of names) out[n] = (out[n] ?? 0) + 1
  return out
}

/** Starts upstreams named by `names` (with optional handlers and weights) and one gateway over them. */
const balanced = (
  balance: Record<string, unknown>,
  names: ReadonlyArray<string>,
  options: { readonly weights?: ReadonlyArray<number>; readonly handlers?: Record<string, UpstreamHandler> } = {}
) =>
  Effect.gen(function*() {
    const endpoints: Array<Record<string, unknown>> = []
    for (const [i, name] of names.entries()) {
      const handler = options.handlers?.[name]
      const upstream = yield* startUpstream(name, handler === undefined ? {} : { handler })
      endpoints.push(options.weights === undefined ? { url: upstream.url } : { url: upstream.url, weight: options.weights[i] })
    }
    return yield* startGateway({
      log: { level: "none", access_log: false },
      servers: [{ name: "web", listen: "127.0.0.1:0", routes: [{ id: "all", upstream: "app" }] }],
      upstreams: { app: { ...balance, endpoints } }
    })
  })

describe("balancing: round_robin", () => {
  it.live("round_robin over 30 sequential requests rotates a, b, c and gives each exactly 10", () =>
    Effect.gen(function*() {
      const gateway = yield* balanced({ balance: "round_robin" }, ["a", "b", "c"])
      const names = yield* sequence(30, () => pick(gateway, "/"))
      assert.deepStrictEqual(count(names), { a: 10, b: 10, c: 10 })
      assert.deepStrictEqual(names, Array.from({ length: 30 }, (_, i) => ["a", "b", "c"][i % 3]))
    }))

  it.live("round_robin ignores endpoint weights", () =>
    Effect.gen(function*() {
      const gateway = yield* balanced({ balance: "round_robin" }, ["a", "b"], { weights: [3, 1] })
      const names = yield* sequence(20, () => pick(gateway, "/"))
      assert.deepStrictEqual(count(names), { a: 10, b: 10 })
    }))

  it.live("round_robin is the default when balance is not set", () =>
    Effect.gen(function*() {
      const gateway = yield* balanced({}, ["a", "b", "c"])
      const names = yield* sequence(6, () => pick(gateway, "/"))
      assert.deepStrictEqual(names, ["a", "b", "c", "a", "b", "c"])
    }))
})

describe("balancing: weighted", () => {
  it.live("weighted 3:1 over 40 sequential requests gives exactly 30 and 10", () =>
    Effect.gen(function*() {
      const gateway = yield* balanced({ balance: "weighted" }, ["a", "b"], { weights: [3, 1] })
      const names = yield* sequence(40, () => pick(gateway, "/"))
      assert.deepStrictEqual(count(names), { a: 30, b: 10 })
    }))

  it.live("weighted 3:1 gives exactly 3 and 1 in every cycle of 4 requests", () =>
    Effect.gen(function*() {
      const gateway = yield* balanced({ balance: "weighted" }, ["a", "b"], { weights: [3, 1] })
      const names = yield* sequence(40, () => pick(gateway, "/"))
      for (let i = 0; i < 40; i += 4) assert.deepStrictEqual(count(names.slice(i, i + 4)), { a: 3, b: 1 }, `cycle at ${i}`)
    }))
})

describe("balancing: random", () => {
  it.live("random gives every upstream a share of 200 requests", () =>
    Effect.gen(function*() {
      const gateway = yield* balanced({ balance: "random" }, ["a", "b", "c"])
      const counts = count(yield* sequence(200, () => pick(gateway, "/")))
      assert.deepStrictEqual(Object.keys(counts).sort(), ["a", "b", "c"])
      // Expected 66.7 each, standard deviation 6.7: 30 is more than five deviations below.
      for (const name of ["a", "b", "c"]) assert.isAtLeast(counts[name], 30, `share of ${name}`)
    }))

  it.live("random follows endpoint weights over 200 requests", () =>
    Effect.gen(function*() {
      const gateway = yield* balanced({ balance: "random" }, ["a", "b"], { weights: [3, 1] })
      const counts = count(yield* sequence(200, () => pick(gateway, "/")))
      // Expected 150 / 50, standard deviation 6.1.
      assert.isAtLeast(counts.a, 115)
      assert.isAtLeast(counts.b, 15)
    }))
})

/**
 * A handler that holds the first request reaching any upstream using it until `release`
 * completes, and reports that upstream's name in `arrived`; later requests are echoed at once.
 */
const holdFirst = (arrived: Deferred.Deferred<string>, release: Deferred.Deferred<void>) => {
  let received = 0
  return (name: string): UpstreamHandler => (req: IncomingMessage, res: ServerResponse, body: Buffer) => {
    if (received++ > 0) return echoHandler(name)(req, res, body)
    fire(arrived, name)
    onSignal(release, () => echoHandler(name)(req, res, body))
  }
}

describe("balancing: least_request", () => {
  it.live("least_request sends new requests away from an upstream holding a request open", () =>
    Effect.gen(function*() {
      const arrived = yield* Deferred.make<string>()
      const release = yield* Deferred.make<void>()
      const hold = holdFirst(arrived, release)
      const gateway = yield* balanced({ balance: "least_request" }, ["a", "b"], { handlers: { a: hold("a"), b: hold("b") } })
      // Released on the way out even if an assertion fails, so the gateway can drain.
      yield* Effect.addFinalizer(() => Deferred.succeed(release, undefined))
      const held = yield* Effect.forkChild(pick(gateway, "/held"))
      const busy = yield* Deferred.await(arrived)
      const free = busy === "a" ? "b" : "a"
      const names = yield* sequence(10, () => pick(gateway, "/"))
      yield* Deferred.succeed(release, undefined)
      assert.strictEqual(yield* Fiber.join(held), busy)
      assert.deepStrictEqual(names, Array.from({ length: 10 }, () => free))
    }))
})

describe("balancing: ewma", () => {
  it.live("ewma sends sequential traffic to the faster upstream once both have answered", () =>
    Effect.gen(function*() {
      // Warm-up: the first two requests are each held until both have reached an upstream, so
      // the second is picked while the first is in flight and lands on the other upstream.
      // After that "fast" answers at once and "slow" after 50ms (its own behaviour).
      let arrived = 0
      const waiting: Array<() => void> = []
      const gate = (answer: () => void) => {
        arrived++
        if (arrived > 2) return answer()
        waiting.push(answer)
        if (arrived === 2) for (const w of waiting.splice(0)) w()
      }
      const fast: UpstreamHandler = (req, res, body) => gate(() => echoHandler("fast")(req, res, body))
      const slow: UpstreamHandler = (req, res, body) =>
        gate(() => void setTimeout(() => echoHandler("slow")(req, res, body), 50))
      const gateway = yield* balanced({ balance: "ewma" }, ["fast", "slow"], { handlers: { fast, slow } })

      const warmUp = yield* Effect.all([pick(gateway, "/"), pick(gateway, "/")], { concurrency: 2 })
      assert.deepStrictEqual([...warmUp].sort(), ["fast", "slow"])

      const names = yield* sequence(20, () => pick(gateway, "/"))
      assert.deepStrictEqual(count(names), { fast: 20 })
    }))
})

describe("balancing: consistent_hash", () => {
  const upstreams = ["a", "b", "c"]
  /** A distinct loopback source address per index (127.0.0.10 and up). */
  const source = (i: number) => `127.0.0.${10 + i}`

  it.live("hash_on ip sends every request from one client address to the same upstream", () =>
    Effect.gen(function*() {
      const gateway = yield* balanced({ balance: "consistent_hash", hash_on: "ip" }, upstreams)
      // Path, headers and cookies vary; only the address stays.
      const names = yield* sequence(20, (i) =>
        pick(gateway, `/p${i}`, { localAddress: "127.0.0.7", headers: { "x-user": `u${i}`, cookie: `session=s${i}` } }))
      assert.strictEqual(new Set(names).size, 1)
    }))

  it.live("hash_on ip spreads 50 client addresses over all upstreams", () =>
    Effect.gen(function*() {
      const gateway = yield* balanced({ balance: "consistent_hash", hash_on: "ip" }, upstreams)
      const names = yield* sequence(50, (i) => pick(gateway, "/", { localAddress: source(i) }))
      assert.deepStrictEqual(Object.keys(count(names)).sort(), upstreams)
    }))

  it.live("hash_on header:x-user sends every request with the same x-user to the same upstream", () =>
    Effect.gen(function*() {
      const gateway = yield* balanced({ balance: "consistent_hash", hash_on: "header:x-user" }, upstreams)
      // From 20 different client addresses, so the header and not the address keeps them together.
      const names = yield* sequence(20, (i) => pick(gateway, `/p${i}`, { localAddress: source(i), headers: { "x-user": "alice" } }))
      assert.strictEqual(new Set(names).size, 1)
    }))

  it.live("hash_on header:x-user spreads 50 distinct users over all upstreams", () =>
    Effect.gen(function*() {
      const gateway = yield* balanced({ balance: "consistent_hash", hash_on: "header:x-user" }, upstreams)
      const names = yield* sequence(50, (i) => pick(gateway, "/", { headers: { "x-user": `user-${i}` } }))
      assert.deepStrictEqual(Object.keys(count(names)).sort(), upstreams)
    }))

  it.live("hash_on header matches the header name case-insensitively", () =>
    Effect.gen(function*() {
      const gateway = yield* balanced({ balance: "consistent_hash", hash_on: "header:X-User" }, upstreams)
      const names = yield* sequence(50, (i) => pick(gateway, "/", { headers: { "x-user": `user-${i}` } }))
      assert.deepStrictEqual(Object.keys(count(names)).sort(), upstreams)
    }))

  it.live("hash_on header falls back to the client address when the header is missing", () =>
    Effect.gen(function*() {
      const gateway = yield* balanced({ balance: "consistent_hash", hash_on: "header:x-user" }, upstreams)
      const first = yield* sequence(50, (i) => pick(gateway, "/", { localAddress: source(i) }))
      const again = yield* sequence(50, (i) => pick(gateway, "/", { localAddress: source(i) }))
      assert.deepStrictEqual(again, first)
      assert.deepStrictEqual(Object.keys(count(first)).sort(), upstreams)
    }))

  it.live("hash_on cookie:session sends every request with the same session cookie to the same upstream", () =>
    Effect.gen(function*() {
      const gateway = yield* balanced({ balance: "consistent_hash", hash_on: "cookie:session" }, upstreams)
      // Other cookies and the client address vary; only the session cookie stays.
      const names = yield* sequence(20, (i) =>
        pick(gateway, "/", {
          localAddress: source(i),
          headers: { cookie: i % 2 === 0 ? `theme=t${i}; session=abc123` : `session=abc123; lang=l${i}` }
        }))
      assert.strictEqual(new Set(names).size, 1)
    }))

  it.live("hash_on cookie:session spreads 50 distinct sessions over all upstreams", () =>
    Effect.gen(function*() {
      const gateway = yield* balanced({ balance: "consistent_hash", hash_on: "cookie:session" }, upstreams)
      const names = yield* sequence(50, (i) => pick(gateway, "/", { headers: { cookie: `theme=dark; session=sess-${i}` } }))
      assert.deepStrictEqual(Object.keys(count(names)).sort(), upstreams)
    }))

  it.live("hash_on cookie:session does not take its key from a cookie whose name only ends with session", () =>
    Effect.gen(function*() {
      const gateway = yield* balanced({ balance: "consistent_hash", hash_on: "cookie:session" }, upstreams)
      // With the same session cookie, a varying `xsession` cookie must not move the request.
      const names = yield* sequence(20, (i) => pick(gateway, "/", { headers: { cookie: `xsession=${i}; session=fixed` } }))
      assert.strictEqual(new Set(names).size, 1)
    }))

  it.live("hash_on path sends every request for the same path to the same upstream", () =>
    Effect.gen(function*() {
      const gateway = yield* balanced({ balance: "consistent_hash", hash_on: "path" }, upstreams)
      // Query strings and client addresses vary; the path is the key.
      const names = yield* sequence(20, (i) => pick(gateway, `/catalog/item?v=${i}`, { localAddress: source(i) }))
      assert.strictEqual(new Set(names).size, 1)
    }))

  it.live("hash_on path spreads 50 distinct paths over all upstreams", () =>
    Effect.gen(function*() {
      const gateway = yield* balanced({ balance: "consistent_hash", hash_on: "path" }, upstreams)
      const names = yield* sequence(50, (i) => pick(gateway, `/catalog/item-${i}`))
      assert.deepStrictEqual(Object.keys(count(names)).sort(), upstreams)
    }))
})

describe("balancing: shared state", () => {
  it.live("an upstream routed to from two listeners keeps one balancer: round_robin rotates across both", () =>
    Effect.gen(function*() {
      const endpoints: Array<{ url: string }> = []
      for (const name of ["a", "b", "c"]) endpoints.push({ url: (yield* startUpstream(name)).url })
      const gateway = yield* startGateway({
        log: { level: "none", access_log: false },
        servers: [
          { name: "one", listen: "127.0.0.1:0", routes: [{ id: "r1", upstream: "app" }] },
          { name: "two", listen: "127.0.0.1:0", routes: [{ id: "r2", upstream: "app" }] }
        ],
        upstreams: { app: { balance: "round_robin", endpoints } }
      })
      const names = yield* sequence(6, (i) => pick(gateway, "/", { listener: i % 2 === 0 ? "one" : "two" }))
      assert.deepStrictEqual(names, ["a", "b", "c", "a", "b", "c"])
    }))

  it.live("an upstream routed to from two listeners shares its in-flight counts: least_request avoids the busy one", () =>
    Effect.gen(function*() {
      const arrived = yield* Deferred.make<string>()
      const release = yield* Deferred.make<void>()
      const hold = holdFirst(arrived, release)
      const a = yield* startUpstream("a", { handler: hold("a") })
      const b = yield* startUpstream("b", { handler: hold("b") })
      const gateway = yield* startGateway({
        log: { level: "none", access_log: false },
        servers: [
          { name: "one", listen: "127.0.0.1:0", routes: [{ id: "r1", upstream: "app" }] },
          { name: "two", listen: "127.0.0.1:0", routes: [{ id: "r2", upstream: "app" }] }
        ],
        upstreams: { app: { balance: "least_request", endpoints: [{ url: a.url }, { url: b.url }] } }
      })
      // Released on the way out even if an assertion fails, so the gateway can drain.
      yield* Effect.addFinalizer(() => Deferred.succeed(release, undefined))
      const held = yield* Effect.forkChild(pick(gateway, "/held", { listener: "one" }))
      const busy = yield* Deferred.await(arrived)
      const names = yield* sequence(10, () => pick(gateway, "/", { listener: "two" }))
      yield* Deferred.succeed(release, undefined)
      assert.strictEqual(yield* Fiber.join(held), busy)
      assert.deepStrictEqual(names, Array.from({ length: 10 }, () => (busy === "a" ? "b" : "a")))
    }))
})
