/**
 * The circuit breaker end to end: real upstreams on loopback behind the real gateway, round_robin,
 * no retries, so every request is exactly one try and the sequence of tries is deterministic.
 * The gateway records a try's outcome before it answers the client, so sequential requests see
 * each opening at once. Which endpoint served a request is read from the upstreams' own logs;
 * the open → half-open step runs on real time here (300ms), observed by bounded polling.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import type { IncomingMessage, ServerResponse } from "node:http"
import { echoHandler, request, startGateway, startUpstream, type TestGateway } from "../support/harness.ts"
import { send } from "../support/http.ts"
import { eventually } from "../support/liveGateway.ts"
import { awaitSignal, fire, onSignal, signal } from "../support/signals.ts"

type Answer = "ok" | "500"

/**
 * An upstream named `name` that appends its name to `log` for every request, then answers as
 * `answer()` says at that moment (so a test can switch it): echo (200) or 500.
 */
const upstream = (log: Array<string>, name: string, answer: () => Answer) =>
  startUpstream(name, {
    handler: (req: IncomingMessage, res: ServerResponse, body: Buffer) => {
      log.push(name)
      if (answer() === "ok") return echoHandler(name)(req, res, body)
      const text = `500 from ${name}`
      res.writeHead(500, { "content-type": "text/plain", "content-length": Buffer.byteLength(text), "x-upstream": name })
      res.end(text)
    }
  })

/** The gateway with one route over upstream `app` = `urls` (in order), round_robin, with `circuit_breaker`. */
const gatewayOver = (urls: ReadonlyArray<string>, circuit: Record<string, unknown>) =>
  startGateway({
    log: { level: "none", access_log: false },
    servers: [{ name: "web", listen: "127.0.0.1:0", routes: [{ id: "all", upstream: "app" }] }],
    upstreams: { app: { balance: "round_robin", endpoints: urls.map((url) => ({ url })), circuit_breaker: circuit } }
  })

/** Sends `n` requests one after another; their statuses. */
const sequential = (url: (i: number) => string, n: number) =>
  Effect.gen(function*() {
    const statuses: Array<number> = []
    for (let i = 0; i < n; i++) statuses.push((yield* send(url(i))).status)
    return statuses
  })

const repeat = <A>(n: number, pattern: ReadonlyArray<A>): Array<A> => Array.from({ length: n }, (_, i) => pattern[i % pattern.length])

/**
 * Sends requests one after another (pausing `pauseMs` between them) until `name` gets one;
 * bounded by `deadlineMs`. Returns the time that took and the statuses of the requests sent.
 */
const untilServedBy = (log: Array<string>, name: string, url: (i: number) => string, deadlineMs = 5_000, pauseMs = 15) =>
  Effect.gen(function*() {
    const started = performance.now()
    const statuses: Array<number> = []
    for (let i = 0; performance.now() - started < deadlineMs; i++) {
      const before = log.length
      statuses.push((yield* send(url(i))).status)
      if (log.slice(before).includes(name)) return { ms: performance.now() - started, statuses }
      yield* Effect.sleep(`${pauseMs} millis`)
    }
    return assert.fail(`${name} got no request within ${deadlineMs}ms`)
  })

const CIRCUIT_OPEN = /^\{"error":"CircuitOpen","message":/

describe("circuit breaker: opening", () => {
  it.live("the only endpoint answering 500 opens after 3: the route answers 503 CircuitOpen at once, and the upstream gets nothing more", () =>
    Effect.gen(function*() {
      const log: Array<string> = []
      const b = yield* upstream(log, "b", () => "500")
      const gateway = yield* gatewayOver([b.url], { consecutive_failures: 3, open_for: "10s" })
      assert.deepStrictEqual(yield* sequential((i) => gateway.url(`/first/${i}`), 3), [500, 500, 500])
      assert.strictEqual(b.seen.length, 3)
      for (let i = 0; i < 20; i++) {
        const started = performance.now()
        const reply = yield* send(gateway.url(`/after/${i}`))
        const ms = performance.now() - started
        assert.strictEqual(reply.status, 503, `request ${i} after the opening`)
        assert.match(reply.body, CIRCUIT_OPEN)
        assert.strictEqual(reply.headers["content-type"], "application/json")
        assert.isBelow(ms, 250, "answered without waiting on the upstream")
      }
      assert.strictEqual(b.seen.length, 3, "no request reached the upstream while its circuit is open")
    }))

  it.live("with two endpoints, B answering 500 opens after its 3rd 500 and A takes all traffic while it is open", () =>
    Effect.gen(function*() {
      const log: Array<string> = []
      const a = yield* upstream(log, "a", () => "ok")
      const b = yield* upstream(log, "b", () => "500")
      const gateway = yield* gatewayOver([a.url, b.url], { consecutive_failures: 3, open_for: "10s" })
      assert.deepStrictEqual(yield* sequential((i) => gateway.url(`/first/${i}`), 6), repeat(6, [200, 500]))
      assert.deepStrictEqual(log, repeat(6, ["a", "b"]))
      assert.deepStrictEqual(yield* sequential((i) => gateway.url(`/after/${i}`), 20), repeat(20, [200]))
      assert.deepStrictEqual(log.slice(6), repeat(20, ["a"]))
      assert.strictEqual(b.seen.length, 3)
    }))

  it.live("a success resets the run: B alternating 500/200 with consecutive_failures 2 never opens", () =>
    Effect.gen(function*() {
      const log: Array<string> = []
      let n = 0
      const a = yield* upstream(log, "a", () => "ok")
      const b = yield* upstream(log, "b", () => (++n % 2 === 1 ? "500" : "ok"))
      const gateway = yield* gatewayOver([a.url, b.url], { consecutive_failures: 2, open_for: "10s" })
      assert.deepStrictEqual(yield* sequential((i) => gateway.url(`/${i}`), 24), repeat(24, [200, 500, 200, 200]))
      assert.strictEqual(b.seen.length, 12)
      assert.strictEqual(a.seen.length, 12)
    }))

  it.live("with failures: [connect-failure], 500s never open the circuit: every request reaches the only endpoint", () =>
    Effect.gen(function*() {
      const log: Array<string> = []
      const b = yield* upstream(log, "b", () => "500")
      const gateway = yield* gatewayOver([b.url], { consecutive_failures: 3, open_for: "10s", failures: ["connect-failure"] })
      assert.deepStrictEqual(yield* sequential((i) => gateway.url(`/${i}`), 20), repeat(20, [500]))
      assert.strictEqual(b.seen.length, 20)
    }))
})

describe("circuit breaker: half-open after open_for (real time)", () => {
  it.live("after open_for one probe goes through; B now answering 200 closes the circuit and gets its share again", () =>
    Effect.gen(function*() {
      const log: Array<string> = []
      let answer: Answer = "500"
      const a = yield* upstream(log, "a", () => "ok")
      const b = yield* upstream(log, "b", () => answer)
      const gateway = yield* gatewayOver([a.url, b.url], { consecutive_failures: 3, open_for: "300ms", max_open_for: "5s" })
      assert.deepStrictEqual(yield* sequential((i) => gateway.url(`/first/${i}`), 6), repeat(6, [200, 500]))
      answer = "ok"
      const probe = yield* untilServedBy(log, "b", (i) => gateway.url(`/poll/${i}`))
      assert.isAtLeast(probe.ms, 280, `B got a request ${probe.ms.toFixed(0)}ms after opening, before open_for`)
      assert.deepStrictEqual(probe.statuses, repeat(probe.statuses.length, [200]))
      assert.strictEqual(b.seen.length, 4, "exactly one probe")
      // Closed again: B is back in the rotation.
      const before = log.length
      assert.deepStrictEqual(yield* sequential((i) => gateway.url(`/after/${i}`), 20), repeat(20, [200]))
      const after = log.slice(before)
      assert.strictEqual(after.filter((x) => x === "b").length, 10, `B's share after closing: ${after.join(",")}`)
    }))

  it.live("the only endpoint: 503 while open, one probe after open_for; answering 200 closes, every request then goes through", () =>
    Effect.gen(function*() {
      const log: Array<string> = []
      let answer: Answer = "500"
      const b = yield* upstream(log, "b", () => answer)
      const gateway = yield* gatewayOver([b.url], { consecutive_failures: 3, open_for: "300ms" })
      assert.deepStrictEqual(yield* sequential((i) => gateway.url(`/first/${i}`), 3), [500, 500, 500])
      answer = "ok"
      const probe = yield* untilServedBy(log, "b", (i) => gateway.url(`/poll/${i}`))
      assert.isAtLeast(probe.ms, 280)
      assert.deepStrictEqual(probe.statuses, [...repeat(probe.statuses.length - 1, [503]), 200], "503s while open, then the probe's 200")
      assert.strictEqual(b.seen.length, 4)
      assert.deepStrictEqual(yield* sequential((i) => gateway.url(`/after/${i}`), 10), repeat(10, [200]))
      assert.strictEqual(b.seen.length, 14)
    }))

  it.live("a probe answered 500 reopens the circuit for twice open_for; the next probe comes after ~600ms", () =>
    Effect.gen(function*() {
      const log: Array<string> = []
      const a = yield* upstream(log, "a", () => "ok")
      const b = yield* upstream(log, "b", () => "500")
      const gateway = yield* gatewayOver([a.url, b.url], { consecutive_failures: 3, open_for: "300ms", max_open_for: "5s" })
      assert.deepStrictEqual(yield* sequential((i) => gateway.url(`/first/${i}`), 6), repeat(6, [200, 500]))
      const first = yield* untilServedBy(log, "b", (i) => gateway.url(`/poll1/${i}`))
      assert.isAtLeast(first.ms, 280)
      assert.strictEqual(b.seen.length, 4, "one probe")
      assert.strictEqual(first.statuses[first.statuses.length - 1], 500, "the probe's 500 reaches the client")
      // Reopened at once by the failed probe: A takes everything again.
      assert.deepStrictEqual(yield* sequential((i) => gateway.url(`/between/${i}`), 5), repeat(5, [200]))
      assert.strictEqual(b.seen.length, 4)
      const second = yield* untilServedBy(log, "b", (i) => gateway.url(`/poll2/${i}`))
      assert.isAtLeast(second.ms, 560, `second probe after ${second.ms.toFixed(0)}ms, before 2 x open_for`)
      assert.strictEqual(b.seen.length, 5, "one probe again")
    }))

  it.live("the only endpoint still answering 500: each probe's 500 reopens it, with 503 CircuitOpen in between", () =>
    Effect.gen(function*() {
      const log: Array<string> = []
      const b = yield* upstream(log, "b", () => "500")
      const gateway = yield* gatewayOver([b.url], { consecutive_failures: 3, open_for: "300ms", max_open_for: "5s" })
      assert.deepStrictEqual(yield* sequential((i) => gateway.url(`/first/${i}`), 3), [500, 500, 500])
      const first = yield* untilServedBy(log, "b", (i) => gateway.url(`/poll1/${i}`))
      assert.deepStrictEqual(first.statuses, [...repeat(first.statuses.length - 1, [503]), 500])
      const reply = yield* send(gateway.url("/right-after"))
      assert.strictEqual(reply.status, 503)
      assert.match(reply.body, CIRCUIT_OPEN)
      const second = yield* untilServedBy(log, "b", (i) => gateway.url(`/poll2/${i}`))
      assert.isAtLeast(second.ms, 560)
      assert.strictEqual(b.seen.length, 5)
    }))
})

describe("circuit breaker: CircuitOpen versus NoHealthyUpstream", () => {
  /** A gateway with the admin API, one route over upstream `app` = `urls`, and the given upstream settings. */
  const gatewayWithAdmin = (urls: ReadonlyArray<string>, upstreamSettings: Record<string, unknown>) =>
    startGateway({
      admin: { listen: "127.0.0.1:0" },
      log: { level: "none", access_log: false },
      // A failing run must not wait 30 s at shutdown for a held probe.
      shutdown: { drain_timeout: "200ms" },
      servers: [{ name: "web", listen: "127.0.0.1:0", routes: [{ id: "all", upstream: "app" }] }],
      upstreams: { app: { balance: "round_robin", endpoints: urls.map((url) => ({ url })), ...upstreamSettings } }
    })

  /** The endpoints of upstream `app` as `GET /upstreams` shows them. */
  const endpointsOf = (gateway: TestGateway) =>
    Effect.map(
      request(`http://127.0.0.1:${gateway.adminPort}/upstreams`),
      (res) => JSON.parse(res.body).upstreams.app.endpoints as ReadonlyArray<{ readonly circuit: string; readonly healthy: boolean }>
    )

  it.live("half-open with its probe slot taken: the route answers 503 CircuitOpen, not NoHealthyUpstream", () =>
    Effect.gen(function*() {
      const probeArrived = signal()
      const releaseProbe = signal()
      const arrived: Array<string> = []
      const b = yield* startUpstream("b", {
        rawHandler: (req, res) => {
          req.resume()
          arrived.push(req.url ?? "")
          if (req.url === "/probe") {
            fire(probeArrived, undefined)
            return onSignal(releaseProbe, () => echoHandler("b")(req, res, Buffer.alloc(0)))
          }
          if (req.url?.startsWith("/fail") === true) {
            res.writeHead(500, { "content-length": "0" })
            return res.end()
          }
          echoHandler("b")(req, res, Buffer.alloc(0))
        }
      })
      const gateway = yield* gatewayWithAdmin([b.url], { circuit_breaker: { consecutive_failures: 2, open_for: "200ms", half_open_probes: 1 } })
      assert.deepStrictEqual(yield* sequential((i) => gateway.url(`/fail/${i}`), 2), [500, 500])
      yield* eventually(Effect.map(endpointsOf(gateway), (es) => es[0].circuit === "half-open"), "the circuit is half-open")

      const probe = yield* Effect.forkChild(send(gateway.url("/probe")))
      yield* awaitSignal(probeArrived)
      assert.strictEqual((yield* endpointsOf(gateway))[0].circuit, "half-open")
      const during = yield* send(gateway.url("/during-probe"))
      assert.strictEqual(during.status, 503)
      assert.match(during.body, CIRCUIT_OPEN)

      fire(releaseProbe, undefined)
      assert.strictEqual((yield* Fiber.join(probe)).status, 200)
      assert.strictEqual((yield* endpointsOf(gateway))[0].circuit, "closed")
      assert.strictEqual((yield* send(gateway.url("/after"))).status, 200)
      assert.deepStrictEqual(arrived, ["/fail/0", "/fail/1", "/probe", "/after"], "the request refused during the probe never reached the upstream")
    }))

  it.live("health checks failing while the circuit is closed: the route answers 503 NoHealthyUpstream, not CircuitOpen", () =>
    Effect.gen(function*() {
      let served = 0
      const b = yield* startUpstream("b", {
        handler: (req, res, body) => {
          if (req.url === "/health") {
            res.writeHead(503, { "content-length": "0" })
            return res.end()
          }
          served++
          echoHandler("b")(req, res, body)
        }
      })
      const gateway = yield* gatewayWithAdmin([b.url], {
        health_check: { path: "/health", interval: "50ms", timeout: "1s", unhealthy_threshold: 1, healthy_threshold: 1 },
        circuit_breaker: { consecutive_failures: 2, open_for: "10s" }
      })
      yield* eventually(Effect.map(endpointsOf(gateway), (es) => es[0].healthy === false), "the endpoint is unhealthy")
      const reply = yield* send(gateway.url("/unhealthy"))
      assert.strictEqual(reply.status, 503)
      assert.match(reply.body, /^\{"error":"NoHealthyUpstream","message":/)
      const [endpoint] = yield* endpointsOf(gateway)
      assert.strictEqual(endpoint.circuit, "closed")
      assert.strictEqual(served, 0)
    }))

  it.live("one endpoint unhealthy and the other's circuit open: 503 CircuitOpen, since a circuit is what keeps traffic out", () =>
    Effect.gen(function*() {
      const served: Array<string> = []
      const endpoint = (name: string, health: number, status: number) =>
        startUpstream(name, {
          handler: (req, res) => {
            if (req.url !== "/health") served.push(name)
            const code = req.url === "/health" ? health : status
            res.writeHead(code, { "content-length": "0" })
            res.end()
          }
        })
      const a = yield* endpoint("a", 503, 200)
      const b = yield* endpoint("b", 200, 500)
      const gateway = yield* gatewayWithAdmin([a.url, b.url], {
        health_check: { path: "/health", interval: "50ms", timeout: "1s", unhealthy_threshold: 1, healthy_threshold: 1 },
        circuit_breaker: { consecutive_failures: 2, open_for: "10s" }
      })
      yield* eventually(Effect.map(endpointsOf(gateway), (es) => es[0].healthy === false && es[1].healthy), "a is unhealthy, b healthy")
      assert.deepStrictEqual(yield* sequential((i) => gateway.url(`/fail/${i}`), 2), [500, 500])
      assert.deepStrictEqual(served, ["b", "b"])
      const es = yield* endpointsOf(gateway)
      assert.deepStrictEqual(es.map((e) => [e.healthy, e.circuit]), [[false, "closed"], [true, "open"]])
      const reply = yield* send(gateway.url("/refused"))
      assert.strictEqual(reply.status, 503)
      assert.match(reply.body, CIRCUIT_OPEN)
      assert.deepStrictEqual(served, ["b", "b"])
    }))
})
