/**
 * Retries end to end: real upstreams on loopback (some answering 5xx, hanging, resetting, or a
 * closed port) behind the real gateway, configs written out by hand. Every upstream records
 * each try it saw in one shared log, so a test can tell which endpoint got which try.
 * Backoffs are tiny ("1ms") and there are no sleeps: waits are the requests themselves, bounded
 * by the route timeout or the helpers' guards.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Metric } from "effect"
import type { IncomingMessage, ServerResponse } from "node:http"
import { echoHandler, request, startGateway, startUpstream, type TestUpstream } from "../support/harness.ts"
import { send } from "../support/http.ts"
import { freePort, raw } from "../support/net.ts"

/** One try as an upstream saw it. */
interface SeenTry {
  readonly upstream: string
  readonly method: string
  readonly url: string
  readonly body: string
}

/** The tries every upstream of one test saw, in order of arrival (of the whole request body). */
type TryLog = Array<SeenTry>

type Behaviour =
  | { readonly _tag: "echo" }
  | { readonly _tag: "status"; readonly status: number }
  | { readonly _tag: "hang" }
  | { readonly _tag: "reset" }
  | { readonly _tag: "reset-after-head" }

const echo: Behaviour = { _tag: "echo" }
const hang: Behaviour = { _tag: "hang" }
const reset: Behaviour = { _tag: "reset" }
const resetAfterHead: Behaviour = { _tag: "reset-after-head" }
const status = (code: number): Behaviour => ({ _tag: "status", status: code })

/**
 * An upstream named `name` that logs each try into `log` and then behaves as told: echo (200,
 * `x-upstream`), answer `status` with body `<status> from <name> (try <n>)` where n counts tries
 * over the whole log, hang (never answer), or reset (destroy the connection).
 */
const upstream = (log: TryLog, name: string, behaviour: Behaviour) =>
  startUpstream(name, {
    handler: (req, res, body) => {
      log.push({ upstream: name, method: req.method ?? "", url: req.url ?? "", body: body.toString() })
      switch (behaviour._tag) {
        case "echo":
          return echoHandler(name)(req, res, body)
        case "status": {
          const text = `${behaviour.status} from ${name} (try ${log.length})`
          res.writeHead(behaviour.status, { "content-type": "text/plain", "content-length": Buffer.byteLength(text), "x-upstream": name })
          return res.end(text)
        }
        case "hang":
          return
        case "reset":
          return req.socket.destroy()
        case "reset-after-head":
          // The head goes out on its own, then the connection dies before any body byte.
          res.writeHead(200, { "content-type": "text/plain", "content-length": 100 })
          res.flushHeaders()
          return void setImmediate(() => req.socket.destroy())
      }
    }
  })

interface GatewayOptions {
  readonly retry?: Record<string, unknown>
  readonly timeout?: string
  readonly balance?: string
  readonly retryBudget?: Record<string, unknown>
}

/** The gateway with one route `all` (with `retry`) over upstream `app` = `urls`, in that order. */
const gatewayOver = (urls: ReadonlyArray<string>, options: GatewayOptions = {}) =>
  startGateway({
    log: { level: "none", access_log: false },
    servers: [{
      name: "web",
      listen: "127.0.0.1:0",
      routes: [{
        id: "all",
        upstream: "app",
        ...(options.timeout === undefined ? {} : { timeout: options.timeout }),
        ...(options.retry === undefined ? {} : { retry: options.retry })
      }]
    }],
    upstreams: {
      app: {
        ...(options.balance === undefined ? {} : { balance: options.balance }),
        ...(options.retryBudget === undefined ? {} : { retry_budget: options.retryBudget }),
        endpoints: urls.map((url) => ({ url }))
      }
    }
  })

/** `fibergate_upstream_retries_refused_total{upstream}` in the registry now (0 before its first refusal). */
const refusedRetries = (upstream: string) =>
  Metric.snapshot.pipe(Effect.map((all) => {
    const series = all.find((m) => m.id === "fibergate_upstream_retries_refused_total" && m.attributes?.upstream === upstream)
    return series === undefined ? 0 : Number((series.state as { readonly count: number }).count)
  }))

/** A URL on 127.0.0.1 where nothing listens (connections are refused). */
const closedUrl = Effect.map(freePort, (port) => `http://127.0.0.1:${port}`)

/** Tiny backoff so tests do not wait on it. */
const fast = { base: "1ms", max: "1ms" }

const triesOf = (log: TryLog, url: string) => log.filter((t) => t.url === url)
const countBy = (log: TryLog, name: string) => log.filter((t) => t.upstream === name).length

/** Runs `effect` and measures its wall-clock time. */
const timed = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const started = performance.now()
    const value = yield* effect
    return { value, ms: performance.now() - started }
  })

describe("retries: connect failures and the retry budget", () => {
  it.live("(a) one endpoint a closed port: 100 concurrent GETs all get 200 with retries on and a 100% budget", () =>
    Effect.gen(function*() {
      const log: TryLog = []
      const dead = yield* closedUrl
      const ok = yield* upstream(log, "ok", echo)
      const gateway = yield* gatewayOver([dead, ok.url], { retry: { backoff: fast }, retryBudget: { percent: 100 } })
      const replies = yield* Effect.all(
        Array.from({ length: 100 }, (_, i) => send(gateway.url(`/a/${i}`))),
        { concurrency: "unbounded" }
      )
      const statuses = replies.map((r) => r.status)
      assert.deepStrictEqual(statuses.filter((s) => s !== 200), [], "every request got 200")
      assert.isTrue(replies.every((r) => r.headers["x-upstream"] === "ok"))
      assert.strictEqual(log.length, 100, "the live endpoint saw each request exactly once")
    }))

  it.live("(b) the same with a spent budget (retry_budget { percent: 0, min_per_second: 0 }): failing over from a refused connection is free, all get 200", () =>
    Effect.gen(function*() {
      const log: TryLog = []
      const dead = yield* closedUrl
      const ok = yield* upstream(log, "ok", echo)
      const gateway = yield* gatewayOver([dead, ok.url], {
        retry: { backoff: fast },
        retryBudget: { percent: 0, min_per_second: 0 }
      })
      const replies = yield* Effect.all(
        Array.from({ length: 100 }, (_, i) => send(gateway.url(`/b/${i}`))),
        { concurrency: "unbounded" }
      )
      assert.deepStrictEqual(replies.map((r) => r.status).filter((s) => s !== 200), [], "every request got 200")
      assert.strictEqual(log.length, 100, "the live endpoint saw each request exactly once")
    }))

  it.live("a spent budget stops retries of tries that reached an upstream: a 503 goes to the client, not to the other endpoint", () =>
    Effect.gen(function*() {
      const log: TryLog = []
      const failing = yield* upstream(log, "failing", status(503))
      const ok = yield* upstream(log, "ok", echo)
      const gateway = yield* gatewayOver([failing.url, ok.url], {
        retry: { backoff: fast },
        retryBudget: { percent: 0, min_per_second: 0 }
      })
      const refusedBefore = yield* refusedRetries("app")
      const replies = yield* Effect.all(
        Array.from({ length: 20 }, (_, i) => send(gateway.url(`/c/${i}`))),
        { concurrency: 4 }
      )
      const ok200 = replies.filter((r) => r.status === 200).length
      const bad503 = replies.filter((r) => r.status === 503).length
      assert.strictEqual(ok200 + bad503, 20, `only 200s and 503s, got ${JSON.stringify(replies.map((r) => r.status))}`)
      assert.strictEqual(bad503, countBy(log, "failing"), "every 503 try went to the client as it was")
      assert.strictEqual(ok200, countBy(log, "ok"), "no request reached the live endpoint by a retry")
      assert.strictEqual(log.length, 20, "one try a request")
      assert.isAbove(bad503, 0)
      assert.strictEqual((yield* refusedRetries("app")) - refusedBefore, bad503, "each refused retry is counted")
    }))

  it.live("without a budget setting (defaults: 20% of requests plus 10/s over 10s) sequential 503s are all retried", () =>
    Effect.gen(function*() {
      const log: TryLog = []
      const failing = yield* upstream(log, "failing", status(503))
      const ok = yield* upstream(log, "ok", echo)
      const gateway = yield* gatewayOver([failing.url, ok.url], { retry: { backoff: fast } })
      for (let i = 0; i < 6; i++) {
        const res = yield* send(gateway.url(`/seq/${i}`))
        assert.strictEqual(res.status, 200)
      }
      assert.strictEqual(countBy(log, "ok"), 6)
      assert.isAbove(countBy(log, "failing"), 0, "some first tries met the 503, and their retries were granted")
    }))

  it.live("without a retry block nothing is retried: the closed port gives 502", () =>
    Effect.gen(function*() {
      const log: TryLog = []
      const dead = yield* closedUrl
      const ok = yield* upstream(log, "ok", echo)
      const gateway = yield* gatewayOver([dead, ok.url])
      const first = yield* send(gateway.url("/none/1"))
      assert.strictEqual(first.status, 502)
      assert.strictEqual(log.length, 0)
    }))
})

describe("retries: statuses", () => {
  it.live("(c) a 503 is retried on the other endpoint: the client sees 200, never the 503 body; the 503 endpoint is called once per request", () =>
    Effect.gen(function*() {
      const log: TryLog = []
      const failing = yield* upstream(log, "failing", status(503))
      const ok = yield* upstream(log, "ok", echo)
      // round_robin from the first endpoint: every sequential request starts on "failing".
      const gateway = yield* gatewayOver([failing.url, ok.url], { retry: { backoff: fast } })
      for (let i = 0; i < 8; i++) {
        const path = `/c/${i}`
        const res = yield* send(gateway.url(path))
        assert.strictEqual(res.status, 200, path)
        assert.strictEqual(res.headers["x-upstream"], "ok")
        assert.notInclude(res.body, "503 from failing")
        assert.strictEqual(JSON.parse(res.body).upstream, "ok")
        assert.deepStrictEqual(triesOf(log, path).map((t) => t.upstream), ["failing", "ok"], path)
      }
      assert.strictEqual(countBy(log, "failing"), 8)
      assert.strictEqual(countBy(log, "ok"), 8)
    }))

  it.live("(d) attempts 3 with both endpoints answering 503: exactly 3 upstream requests, the client gets the last 503", () =>
    Effect.gen(function*() {
      const log: TryLog = []
      const a = yield* upstream(log, "a", status(503))
      const b = yield* upstream(log, "b", status(503))
      const gateway = yield* gatewayOver([a.url, b.url], { retry: { attempts: 3, backoff: fast } })
      const res = yield* send(gateway.url("/d"))
      assert.strictEqual(res.status, 503)
      assert.strictEqual(log.length, 3)
      assert.deepStrictEqual(log.map((t) => t.url), ["/d", "/d", "/d"])
      // The third try's own response, not one of the dropped ones.
      assert.strictEqual(res.body, `503 from ${log[2].upstream} (try 3)`)
      assert.strictEqual(res.headers["x-upstream"], log[2].upstream)
    }))

  it.live("a status not listed in `on` (500) is passed through without a retry", () =>
    Effect.gen(function*() {
      const log: TryLog = []
      const a = yield* upstream(log, "a", status(500))
      const b = yield* upstream(log, "b", echo)
      const gateway = yield* gatewayOver([a.url, b.url], { retry: { backoff: fast } })
      const res = yield* send(gateway.url("/not-listed"))
      assert.strictEqual(res.status, 500)
      assert.strictEqual(res.body, "500 from a (try 1)")
      assert.strictEqual(log.length, 1)
    }))

  it.live("(j) each retry goes to an endpoint not tried yet while there is one (round_robin, random, least_request)", () =>
    Effect.gen(function*() {
      for (const balance of ["round_robin", "random", "least_request"]) {
        const log: TryLog = []
        const urls: Array<string> = []
        for (const name of ["a", "b", "c"]) urls.push((yield* upstream(log, name, status(503))).url)
        const gateway = yield* gatewayOver(urls, { balance, retry: { attempts: 3, backoff: fast } })
        for (let i = 0; i < 10; i++) {
          const path = `/j/${balance}/${i}`
          const res = yield* send(gateway.url(path))
          assert.strictEqual(res.status, 503)
          const order = triesOf(log, path).map((t) => t.upstream)
          assert.strictEqual(order.length, 3, `${balance} ${path}: ${order.join(",")}`)
          assert.strictEqual(new Set(order).size, 3, `${balance} ${path}: tries went to ${order.join(",")}`)
        }
      }
    }))

  it.live("(j) with two endpoints and attempts 4, tries alternate between them (never the same one twice in a row)", () =>
    Effect.gen(function*() {
      const log: TryLog = []
      const a = yield* upstream(log, "a", status(502))
      const b = yield* upstream(log, "b", status(502))
      const gateway = yield* gatewayOver([a.url, b.url], { retry: { attempts: 4, backoff: fast } })
      const res = yield* send(gateway.url("/two"))
      assert.strictEqual(res.status, 502)
      const order = log.map((t) => t.upstream)
      assert.strictEqual(order.length, 4)
      assert.notStrictEqual(order[0], order[1], `first retry went to ${order.join(",")}`)
    }))
})

/** An upstream that answers 503 to the first `failures` tries it gets (counted in `log`), then echoes. */
const failingFirst = (log: TryLog, name: string, failures: number) =>
  startUpstream(name, {
    handler: (req, res, body) => {
      log.push({ upstream: name, method: req.method ?? "", url: req.url ?? "", body: body.toString() })
      if (log.length > failures) return echoHandler(name)(req, res, body)
      const text = `503 from ${name} (try ${log.length})`
      res.writeHead(503, { "content-type": "text/plain", "content-length": Buffer.byteLength(text) })
      res.end(text)
    }
  })

describe("retries: attempts at the limit and one past it", () => {
  for (const attempts of [1, 2, 3, 10]) {
    it.live(`attempts ${attempts}: ${attempts - 1} failures then a success give 200 after exactly ${attempts} tries; ${attempts} failures give the last 503 and no try ${attempts + 1}`, () =>
      Effect.gen(function*() {
        const atLimit: TryLog = []
        const recovers = yield* failingFirst(atLimit, "recovers", attempts - 1)
        const first = yield* gatewayOver([recovers.url], { retry: { attempts, backoff: fast } })
        const ok = yield* send(first.url("/limit"))
        assert.strictEqual(ok.status, 200, ok.body)
        assert.strictEqual(atLimit.length, attempts)

        const onePast: TryLog = []
        const stays = yield* failingFirst(onePast, "stays", attempts)
        const second = yield* gatewayOver([stays.url], { retry: { attempts, backoff: fast } })
        const failed = yield* send(second.url("/past"))
        assert.deepStrictEqual([failed.status, failed.body], [503, `503 from stays (try ${attempts})`])
        assert.strictEqual(onePast.length, attempts, "a try past `attempts` reached the upstream")
        // The upstream would have answered 200 to one more try: the gateway did not send it.
        const after = yield* send(second.url("/next"))
        assert.strictEqual(after.status, 200)
        assert.strictEqual(onePast.length, attempts + 1)
      }))
  }
})

describe("retries: methods and bodies", () => {
  it.live("(e) a POST whose body is larger than buffer_bytes is never retried, even with POST in `methods`: the upstream sees the body once, the client gets the error", () =>
    Effect.gen(function*() {
      const log: TryLog = []
      const a = yield* upstream(log, "a", status(503))
      const b = yield* upstream(log, "b", status(503))
      const gateway = yield* gatewayOver([a.url, b.url], { retry: { attempts: 3, backoff: fast, methods: ["GET", "POST"], buffer_bytes: 4 } })
      const res = yield* request(gateway.url("/e"), { method: "POST", body: "payload-123", headers: { "content-type": "text/plain" } })
      assert.strictEqual(res.status, 503)
      assert.strictEqual(res.body, "503 from a (try 1)")
      assert.deepStrictEqual(log, [{ upstream: "a", method: "POST", url: "/e", body: "payload-123" }])
    }))

  it.live("(e) a POST with a buffered body and POST in `methods` is replayed on the other endpoint: both see the same body, the client sees the retry's answer", () =>
    Effect.gen(function*() {
      const log: TryLog = []
      const a = yield* upstream(log, "a", status(503))
      const b = yield* upstream(log, "b", echo)
      const gateway = yield* gatewayOver([a.url, b.url], { retry: { attempts: 3, backoff: fast, methods: ["GET", "POST"] } })
      const res = yield* request(gateway.url("/e-replay"), { method: "POST", body: "payload-123", headers: { "content-type": "text/plain" } })
      assert.strictEqual(res.status, 200)
      assert.deepStrictEqual(triesOf(log, "/e-replay"), [
        { upstream: "a", method: "POST", url: "/e-replay", body: "payload-123" },
        { upstream: "b", method: "POST", url: "/e-replay", body: "payload-123" }
      ])
    }))

  it.live("(e) a POST with a streamed body (buffer_bytes 0) whose connection is reset is not retried: 502, one try; the same as GET is retried", () =>
    Effect.gen(function*() {
      const log: TryLog = []
      const a = yield* upstream(log, "a", reset)
      const b = yield* upstream(log, "b", echo)
      const gateway = yield* gatewayOver([a.url, b.url], { retry: { backoff: fast, methods: ["GET", "POST"], buffer_bytes: 0 } })
      // round_robin: the GET starts on "a" and its retry takes "b"; the POST then starts on "a".
      const get = yield* send(gateway.url("/e-reset-get"))
      assert.strictEqual(get.status, 200)
      assert.deepStrictEqual(log.map((t) => t.upstream), ["a", "b"])
      const post = yield* request(gateway.url("/e-reset"), { method: "POST", body: "once only" })
      assert.strictEqual(post.status, 502)
      assert.deepStrictEqual(triesOf(log, "/e-reset"), [{ upstream: "a", method: "POST", url: "/e-reset", body: "once only" }])
    }))

  it.live("(f) a POST without a body is not retried by default (not idempotent)", () =>
    Effect.gen(function*() {
      const log: TryLog = []
      const a = yield* upstream(log, "a", status(503))
      const b = yield* upstream(log, "b", echo)
      const gateway = yield* gatewayOver([a.url, b.url], { retry: { backoff: fast } })
      const res = yield* request(gateway.url("/f"), { method: "POST" })
      assert.strictEqual(res.status, 503)
      assert.strictEqual(res.body, "503 from a (try 1)")
      assert.deepStrictEqual(log.map((t) => `${t.upstream} ${t.method}`), ["a POST"])
    }))

  it.live("(f) a PATCH without a body is not retried by default either", () =>
    Effect.gen(function*() {
      const log: TryLog = []
      const a = yield* upstream(log, "a", status(502))
      const b = yield* upstream(log, "b", echo)
      const gateway = yield* gatewayOver([a.url, b.url], { retry: { backoff: fast } })
      const res = yield* request(gateway.url("/f-patch"), { method: "PATCH" })
      assert.strictEqual(res.status, 502)
      assert.strictEqual(log.length, 1)
    }))

  it.live("(f) with methods: [POST], a POST without a body is retried", () =>
    Effect.gen(function*() {
      const log: TryLog = []
      const a = yield* upstream(log, "a", status(503))
      const b = yield* upstream(log, "b", echo)
      const gateway = yield* gatewayOver([a.url, b.url], { retry: { backoff: fast, methods: ["POST"] } })
      const res = yield* request(gateway.url("/f2"), { method: "POST" })
      assert.strictEqual(res.status, 200)
      assert.strictEqual(JSON.parse(res.body).upstream, "b")
      assert.deepStrictEqual(log.map((t) => `${t.upstream} ${t.method}`), ["a POST", "b POST"])
      // GET is not in that list any more.
      const get = yield* send(gateway.url("/f2-get"))
      assert.strictEqual(get.status, 503)
      assert.strictEqual(triesOf(log, "/f2-get").length, 1)
    }))
})

describe("retries: timeouts", () => {
  it.live("(g) per_try_timeout 100ms with one endpoint hanging: retried on the other, 200 well before the route timeout", () =>
    Effect.gen(function*() {
      const log: TryLog = []
      const stuck = yield* upstream(log, "stuck", hang)
      const ok = yield* upstream(log, "ok", echo)
      const gateway = yield* gatewayOver([stuck.url, ok.url], {
        timeout: "5s",
        retry: { per_try_timeout: "100ms", on: ["timeout"], backoff: fast }
      })
      const { ms, value: res } = yield* timed(send(gateway.url("/g")))
      assert.strictEqual(res.status, 200)
      assert.strictEqual(JSON.parse(res.body).upstream, "ok")
      assert.isAtLeast(ms, 90, "the first try waited for its per-try timeout")
      assert.isBelow(ms, 1_000, "answered well before the 5s route timeout")
      assert.deepStrictEqual(log.map((t) => t.upstream), ["stuck", "ok"])
    }))

  it.live("per_try_timeout without `timeout` in `on`: the try times out with 504 and is not retried", () =>
    Effect.gen(function*() {
      const log: TryLog = []
      const stuck = yield* upstream(log, "stuck", hang)
      const ok = yield* upstream(log, "ok", echo)
      const gateway = yield* gatewayOver([stuck.url, ok.url], {
        timeout: "5s",
        retry: { per_try_timeout: "100ms", on: ["connect-failure", "reset", 502, 503, 504], backoff: fast }
      })
      const { ms, value: res } = yield* timed(send(gateway.url("/g-off")))
      assert.strictEqual(res.status, 504)
      assert.isBelow(ms, 1_000)
      assert.deepStrictEqual(log.map((t) => t.upstream), ["stuck"])
    }))

  it.live("(i) the route timeout bounds all tries: both hang, per_try 100ms, attempts 5, timeout 250ms → 504 within ~400ms, fewer than 5 tries", () =>
    Effect.gen(function*() {
      const log: TryLog = []
      const a = yield* upstream(log, "a", hang)
      const b = yield* upstream(log, "b", hang)
      const gateway = yield* gatewayOver([a.url, b.url], {
        timeout: "250ms",
        retry: { attempts: 5, per_try_timeout: "100ms", on: ["timeout"], backoff: fast }
      })
      const { ms, value: res } = yield* timed(send(gateway.url("/i")))
      assert.strictEqual(res.status, 504)
      assert.isAtLeast(ms, 240)
      assert.isBelow(ms, 450)
      assert.isAtLeast(log.length, 2, "the per-try timeout did retry before the route timeout")
      assert.isBelow(log.length, 5)
    }))

  it.live("after a retried 503 the next try still has its per-try timeout (zero backoff)", () =>
    Effect.gen(function*() {
      // backoff 1ms with jitter (the default): floor(random · 1) = 0, so the retry starts at once.
      const log: TryLog = []
      const a = yield* upstream(log, "a", status(503))
      const b = yield* upstream(log, "b", hang)
      const gateway = yield* gatewayOver([a.url, b.url], {
        timeout: "2s",
        retry: { attempts: 3, per_try_timeout: "100ms", on: [503, "timeout"], backoff: { base: "1ms", max: "1ms" } }
      })
      const { ms, value: res } = yield* timed(send(gateway.url("/k")))
      // a: 503 → b: hangs, per-try timeout after 100ms → a again (the last try): its 503 goes out.
      assert.strictEqual(res.status, 503, `got ${res.status} ${res.body} after ${Math.round(ms)}ms`)
      assert.strictEqual(res.body, "503 from a (try 3)")
      assert.isBelow(ms, 1_000)
      assert.deepStrictEqual(log.map((t) => t.upstream), ["a", "b", "a"])
    }))

  it.live("after a retried 503 the next try still has its per-try timeout (backoff without jitter)", () =>
    Effect.gen(function*() {
      const log: TryLog = []
      const a = yield* upstream(log, "a", status(503))
      const b = yield* upstream(log, "b", hang)
      const gateway = yield* gatewayOver([a.url, b.url], {
        timeout: "2s",
        retry: { attempts: 3, per_try_timeout: "100ms", on: [503, "timeout"], backoff: { base: "1ms", max: "1ms", jitter: false } }
      })
      const { ms, value: res } = yield* timed(send(gateway.url("/k2")))
      assert.strictEqual(res.status, 503, `got ${res.status} ${res.body} after ${Math.round(ms)}ms`)
      assert.strictEqual(res.body, "503 from a (try 3)")
      assert.isBelow(ms, 1_000)
      assert.deepStrictEqual(log.map((t) => t.upstream), ["a", "b", "a"])
    }))
})

describe("retries: never after the response started", () => {
  it.live("(h) headers and part of the body, then the upstream drops the connection: a truncated response, one try", () =>
    Effect.gen(function*() {
      let partialTries = 0
      const log: TryLog = []
      const partial: TestUpstream = yield* startUpstream("partial", {
        rawHandler: (req: IncomingMessage, res: ServerResponse) => {
          partialTries++
          req.resume()
          res.writeHead(200, { "content-type": "text/plain", "content-length": "100" })
          res.write("x".repeat(10), () => res.socket?.destroy())
        }
      })
      const ok = yield* upstream(log, "ok", echo)
      const gateway = yield* gatewayOver([partial.url, ok.url], { retry: { attempts: 3, backoff: fast } })
      const res = yield* raw(gateway.port, "GET /h HTTP/1.1\r\nHost: example.test\r\n\r\n", { untilClose: true })
      assert.strictEqual(res.status, 200)
      assert.strictEqual(res.headers.get("content-length")?.[0], "100")
      assert.isTrue(res.closed)
      assert.isBelow(res.body.length, 100, "the client sees a truncated body")
      assert.strictEqual(res.body, "x".repeat(10))
      assert.strictEqual(partialTries, 1, "the upstream saw exactly one request")
      assert.strictEqual(log.length, 0, "no retry went to the other endpoint")
    }))
  it.live("a reset right after the upstream's head, before any body byte, is retried: the client sees the other endpoint's 200", () =>
    Effect.gen(function*() {
      const log: TryLog = []
      const a = yield* upstream(log, "a", resetAfterHead)
      const b = yield* upstream(log, "b", echo)
      const gateway = yield* gatewayOver([a.url, b.url], { retry: { backoff: fast } })
      const res = yield* send(gateway.url("/head-reset"))
      assert.strictEqual(res.status, 200)
      assert.deepStrictEqual(log.map((t) => t.upstream), ["a", "b"])
    }))

  it.live("without retries, a reset right after the upstream's head is a clean 502 UpstreamReset, not a cut connection", () =>
    Effect.gen(function*() {
      const log: TryLog = []
      const a = yield* upstream(log, "a", resetAfterHead)
      const gateway = yield* gatewayOver([a.url])
      const res = yield* send(gateway.url("/head-reset"))
      assert.strictEqual(res.status, 502)
      assert.include(res.body, "UpstreamReset")
    }))
})
