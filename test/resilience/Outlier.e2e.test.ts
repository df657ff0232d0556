/**
 * Outlier detection end to end: real upstreams on loopback (answering 200, 500, resetting, or a
 * closed port) behind the real gateway with round_robin and no retries, so every request is
 * exactly one try and the sequence of tries is deterministic. The gateway records a try's
 * outcome before it answers the client, so sequential requests see each ejection at once.
 * Which endpoint served a request is read from the upstreams' own logs.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import type { IncomingMessage, ServerResponse } from "node:http"
import { echoHandler, startGateway, startUpstream } from "../support/harness.ts"
import { send } from "../support/http.ts"
import { freePort } from "../support/net.ts"

/** What an upstream does with its n-th request (1-based). */
type Behaviour = (n: number) => "ok" | "500" | "reset"

const always = (b: "ok" | "500" | "reset"): Behaviour => () => b

/**
 * An upstream named `name` that appends its name to `log` for every request it receives, then
 * behaves as `behaviour` says for that request: echo (200), 500, or destroy the connection.
 */
const upstream = (log: Array<string>, name: string, behaviour: Behaviour) => {
  let n = 0
  return startUpstream(name, {
    handler: (req: IncomingMessage, res: ServerResponse, body: Buffer) => {
      log.push(name)
      switch (behaviour(++n)) {
        case "ok":
          return echoHandler(name)(req, res, body)
        case "500": {
          const text = `500 from ${name}`
          res.writeHead(500, { "content-type": "text/plain", "content-length": Buffer.byteLength(text), "x-upstream": name })
          return res.end(text)
        }
        case "reset":
          return req.socket.destroy()
      }
    }
  })
}

/** The gateway with one route over upstream `app` = `urls` (in order), round_robin, with `outlier`. */
const gatewayOver = (urls: ReadonlyArray<string>, outlier: Record<string, unknown>) =>
  startGateway({
    log: { level: "none", access_log: false },
    servers: [{ name: "web", listen: "127.0.0.1:0", routes: [{ id: "all", upstream: "app" }] }],
    upstreams: { app: { balance: "round_robin", endpoints: urls.map((url) => ({ url })), outlier } }
  })

/** A URL on 127.0.0.1 where nothing listens (connections are refused). */
const closedUrl = Effect.map(freePort, (port) => `http://127.0.0.1:${port}`)

/** Sends `n` requests one after another; their statuses. */
const sequential = (url: (i: number) => string, n: number) =>
  Effect.gen(function*() {
    const statuses: Array<number> = []
    for (let i = 0; i < n; i++) statuses.push((yield* send(url(i))).status)
    return statuses
  })

const repeat = <A>(n: number, pattern: ReadonlyArray<A>): Array<A> => Array.from({ length: n }, (_, i) => pattern[i % pattern.length])

describe("outlier detection: ejection by traffic", () => {
  it.live("B answering 500 is ejected after its 3rd consecutive 500: the next 20 requests all go to A", () =>
    Effect.gen(function*() {
      const log: Array<string> = []
      const a = yield* upstream(log, "a", always("ok"))
      const b = yield* upstream(log, "b", always("500"))
      const gateway = yield* gatewayOver([a.url, b.url], { consecutive_failures: 3, base_ejection: "10s" })
      const first = yield* sequential((i) => gateway.url(`/first/${i}`), 6)
      assert.deepStrictEqual(first, repeat(6, [200, 500]))
      assert.deepStrictEqual(log, repeat(6, ["a", "b"]))
      const after = yield* sequential((i) => gateway.url(`/after/${i}`), 20)
      assert.deepStrictEqual(after, repeat(20, [200]), "every request after the ejection is served by A")
      assert.deepStrictEqual(log.slice(6), repeat(20, ["a"]))
      assert.strictEqual(b.seen.length, 3, "B got exactly the 3 tries that ejected it")
    }))

  it.live("with max_ejected_percent: 0 B is never ejected and keeps getting every other request", () =>
    Effect.gen(function*() {
      const log: Array<string> = []
      const a = yield* upstream(log, "a", always("ok"))
      const b = yield* upstream(log, "b", always("500"))
      const gateway = yield* gatewayOver([a.url, b.url], { consecutive_failures: 3, base_ejection: "10s", max_ejected_percent: 0 })
      const statuses = yield* sequential((i) => gateway.url(`/${i}`), 26)
      assert.deepStrictEqual(statuses, repeat(26, [200, 500]))
      assert.deepStrictEqual(log, repeat(26, ["a", "b"]))
      assert.strictEqual(b.seen.length, 13)
    }))

  it.live("with the default max_ejected_percent (50) of 2 endpoints both failing, only the first to reach 3 is ejected", () =>
    Effect.gen(function*() {
      const log: Array<string> = []
      const a = yield* upstream(log, "a", always("500"))
      const b = yield* upstream(log, "b", always("500"))
      const gateway = yield* gatewayOver([a.url, b.url], { consecutive_failures: 3, base_ejection: "10s" })
      const statuses = yield* sequential((i) => gateway.url(`/${i}`), 26)
      assert.deepStrictEqual(statuses, repeat(26, [500]))
      // a, b, a, b, a (A ejected), then B alone: its ejection would pass 50%, so it stays in.
      assert.deepStrictEqual(log, [...repeat(5, ["a", "b"]), ...repeat(21, ["b"])])
      assert.strictEqual(a.seen.length, 3)
    }))

  it.live("max_ejected_percent 50 of 4 endpoints all failing: the first 2 are ejected (exactly 50%), the 3rd and 4th never", () =>
    Effect.gen(function*() {
      const log: Array<string> = []
      const urls: Array<string> = []
      for (const name of ["a", "b", "c", "d"]) urls.push((yield* upstream(log, name, always("500"))).url)
      const gateway = yield* gatewayOver(urls, { consecutive_failures: 1, base_ejection: "10s", max_ejected_percent: 50 })
      assert.deepStrictEqual(yield* sequential((i) => gateway.url(`/first/${i}`), 4), repeat(4, [500]))
      assert.deepStrictEqual(log, ["a", "b", "c", "d"])
      yield* sequential((i) => gateway.url(`/after/${i}`), 20)
      const after = log.slice(4)
      assert.deepStrictEqual(
        { a: after.filter((n) => n === "a").length, b: after.filter((n) => n === "b").length, c: after.filter((n) => n === "c").length, d: after.filter((n) => n === "d").length },
        { a: 0, b: 0, c: 10, d: 10 },
        after.join(",")
      )
    }))

  it.live("a closed-port endpoint (connect failures) is ejected after 3 tries", () =>
    Effect.gen(function*() {
      const log: Array<string> = []
      const dead = yield* closedUrl
      const a = yield* upstream(log, "a", always("ok"))
      const gateway = yield* gatewayOver([dead, a.url], { consecutive_failures: 3, base_ejection: "10s" })
      const first = yield* sequential((i) => gateway.url(`/first/${i}`), 6)
      assert.deepStrictEqual(first, repeat(6, [502, 200]), "dead, a, dead, a, dead, a")
      const after = yield* sequential((i) => gateway.url(`/after/${i}`), 20)
      assert.deepStrictEqual(after, repeat(20, [200]), "no request reaches the closed port after its 3rd failure")
      assert.strictEqual(a.seen.length, 23)
    }))

  it.live("an endpoint resetting every connection is ejected after 3 resets", () =>
    Effect.gen(function*() {
      const log: Array<string> = []
      const a = yield* upstream(log, "a", always("ok"))
      const b = yield* upstream(log, "b", always("reset"))
      const gateway = yield* gatewayOver([a.url, b.url], { consecutive_failures: 3, base_ejection: "10s" })
      const first = yield* sequential((i) => gateway.url(`/first/${i}`), 6)
      assert.deepStrictEqual(first, repeat(6, [200, 502]))
      const after = yield* sequential((i) => gateway.url(`/after/${i}`), 20)
      assert.deepStrictEqual(after, repeat(20, [200]))
      assert.strictEqual(b.seen.length, 3)
    }))
})

describe("outlier detection: which failures count", () => {
  it.live("with failures: [connect-failure] only, 500s never eject B", () =>
    Effect.gen(function*() {
      const log: Array<string> = []
      const a = yield* upstream(log, "a", always("ok"))
      const b = yield* upstream(log, "b", always("500"))
      const gateway = yield* gatewayOver([a.url, b.url], { consecutive_failures: 3, base_ejection: "10s", failures: ["connect-failure"] })
      const statuses = yield* sequential((i) => gateway.url(`/${i}`), 26)
      assert.deepStrictEqual(statuses, repeat(26, [200, 500]))
      assert.strictEqual(b.seen.length, 13)
    }))

  it.live("with failures: [connect-failure] only, a closed port is still ejected after 3 tries", () =>
    Effect.gen(function*() {
      const log: Array<string> = []
      const dead = yield* closedUrl
      const a = yield* upstream(log, "a", always("ok"))
      const gateway = yield* gatewayOver([dead, a.url], { consecutive_failures: 3, base_ejection: "10s", failures: ["connect-failure"] })
      const statuses = yield* sequential((i) => gateway.url(`/${i}`), 16)
      assert.deepStrictEqual(statuses, [...repeat(6, [502, 200]), ...repeat(10, [200])])
    }))

  it.live("a success resets the count: B alternating 500/200 is never ejected with consecutive_failures 2", () =>
    Effect.gen(function*() {
      const log: Array<string> = []
      const a = yield* upstream(log, "a", always("ok"))
      // B's own requests go 500, 200, 500, 200, ...: never two failures in a row.
      const b = yield* upstream(log, "b", (n) => (n % 2 === 1 ? "500" : "ok"))
      const gateway = yield* gatewayOver([a.url, b.url], { consecutive_failures: 2, base_ejection: "10s" })
      const statuses = yield* sequential((i) => gateway.url(`/${i}`), 40)
      // a, b(500), a, b(200), ...
      assert.deepStrictEqual(statuses, repeat(40, [200, 500, 200, 200]))
      assert.deepStrictEqual(log, repeat(40, ["a", "b"]))
      assert.strictEqual(b.seen.length, 20)
    }))

  it.live("control: B failing twice in a row with consecutive_failures 2 is ejected after its 2nd 500", () =>
    Effect.gen(function*() {
      const log: Array<string> = []
      const a = yield* upstream(log, "a", always("ok"))
      // 500, 200, then 500 forever: the run that ejects starts at B's 3rd request.
      const b = yield* upstream(log, "b", (n) => (n === 2 ? "ok" : "500"))
      const gateway = yield* gatewayOver([a.url, b.url], { consecutive_failures: 2, base_ejection: "10s" })
      const statuses = yield* sequential((i) => gateway.url(`/${i}`), 28)
      assert.deepStrictEqual(statuses, [...repeat(8, [200, 500, 200, 200, 200, 500, 200, 500]), ...repeat(20, [200])])
      assert.strictEqual(b.seen.length, 4)
    }))

  it.live("an uncounted failure neither counts nor resets: with failures [5xx], 500, reset, 500 ejects on the 2nd 500", () =>
    Effect.gen(function*() {
      const log: Array<string> = []
      const a = yield* upstream(log, "a", always("ok"))
      const b = yield* upstream(log, "b", (n) => (n === 2 ? "reset" : "500"))
      const gateway = yield* gatewayOver([a.url, b.url], { consecutive_failures: 2, base_ejection: "10s", failures: ["5xx"] })
      const statuses = yield* sequential((i) => gateway.url(`/${i}`), 26)
      assert.deepStrictEqual(statuses, [200, 500, 200, 502, 200, 500, ...repeat(20, [200])])
      assert.strictEqual(b.seen.length, 3)
    }))
})

/** Sends requests one after another (pausing `pauseMs` between them) until `name` serves one; bounded by `deadlineMs`. */
const untilServedBy = (log: Array<string>, name: string, url: (i: number) => string, deadlineMs: number, pauseMs = 20) =>
  Effect.gen(function*() {
    const started = performance.now()
    for (let i = 0; performance.now() - started < deadlineMs; i++) {
      const before = log.length
      yield* send(url(i))
      if (log.slice(before).includes(name)) return performance.now() - started
      yield* Effect.sleep(`${pauseMs} millis`)
    }
    return assert.fail(`${name} got no traffic within ${deadlineMs}ms`)
  })

describe("outlier detection: re-admission (real time)", () => {
  it.live("B ejected with base_ejection 300ms gets traffic again after ~300ms; its 2nd ejection lasts ~600ms", () =>
    Effect.gen(function*() {
      const log: Array<string> = []
      const a = yield* upstream(log, "a", always("ok"))
      const b = yield* upstream(log, "b", always("500"))
      const gateway = yield* gatewayOver([a.url, b.url], { consecutive_failures: 3, base_ejection: "300ms", max_ejection: "5s" })
      assert.deepStrictEqual(yield* sequential((i) => gateway.url(`/first/${i}`), 6), repeat(6, [200, 500]))
      // Ejected now (the 3rd 500 was recorded before the gateway answered it).
      const first = yield* untilServedBy(log, "b", (i) => gateway.url(`/poll1/${i}`), 5_000)
      assert.isAtLeast(first, 280, `re-admitted after ${first.toFixed(0)}ms, before base_ejection`)
      assert.strictEqual(b.seen.length, 4, "B's first try after re-admission")
      // The run starts over: two more 500s (with A in between) eject it again, for 2 x 300ms.
      assert.deepStrictEqual(yield* sequential((i) => gateway.url(`/second/${i}`), 4), [200, 500, 200, 500])
      assert.strictEqual(b.seen.length, 6)
      const second = yield* untilServedBy(log, "b", (i) => gateway.url(`/poll2/${i}`), 5_000)
      assert.isAtLeast(second, 580, `re-admitted after ${second.toFixed(0)}ms, before 2 x base_ejection`)
      assert.strictEqual(b.seen.length, 7)
    }))
})
