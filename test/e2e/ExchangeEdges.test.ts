/**
 * The edges of one exchange (client request ↔ upstream tries) that the happy path never
 * reaches: a per-try timer that must stop at the response head, a backoff that must be waited
 * and must not outlive its client, a retry's endpoint released, a retry with nowhere left to go,
 * a connect timeout counted and retried as a connect failure, a half-open probe whose client
 * leaves, and a 304's Content-Length.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Metric } from "effect"
import type { IncomingMessage, ServerResponse } from "node:http"
import { unansweredPort } from "../support/blackhole.ts"
import { getRequest, openConnection } from "../support/connection.ts"
import { request, startGateway, startUpstream } from "../support/harness.ts"
import { send } from "../support/http.ts"
import { eventually } from "../support/liveGateway.ts"
import { freePort } from "../support/net.ts"
import { awaitSignal, fire, onSignal, signal } from "../support/signals.ts"

/** One route `all` over upstream `app` (`urls`, round robin, in order), with an admin API. */
const gatewayOver = (urls: ReadonlyArray<string>, route: Record<string, unknown>, upstream: Record<string, unknown> = {}) =>
  startGateway({
    admin: { listen: "127.0.0.1:0" },
    log: { level: "none", access_log: false },
    shutdown: { drain_timeout: "200ms" },
    servers: [{ name: "web", listen: "127.0.0.1:0", routes: [{ id: "all", upstream: "app", ...route }] }],
    upstreams: { app: { balance: "round_robin", endpoints: urls.map((url) => ({ url })), ...upstream } }
  })

const answer = (res: ServerResponse, status: number, body: string, headers: Record<string, string> = {}) => {
  res.writeHead(status, { "content-length": String(Buffer.byteLength(body)), ...headers })
  res.end(body)
}

/** The counter `name` with these attributes now; a missing series fails (it is never read as 0). */
const counter = (name: string, attributes: Record<string, string>) =>
  Metric.snapshot.pipe(Effect.map((all) => {
    const series = all.find((m) => m.id === name && Object.entries(attributes).every(([k, v]) => m.attributes?.[k] === v))
    if (series === undefined) return assert.fail(`no series ${name} ${JSON.stringify(attributes)}`)
    return Number((series.state as { readonly count: number }).count)
  }))

describe("an exchange at its edges", () => {
  it.live("the per-try timeout covers the wait for the head only: a body slower than it still arrives whole", () =>
    Effect.gen(function*() {
      const upstream = yield* startUpstream("slow-body", {
        rawHandler: (req, res) => {
          req.resume()
          res.writeHead(200, { "content-length": "10" })
          res.write("01234")
          res.flushHeaders()
          setTimeout(() => res.end("56789"), 450)
        }
      })
      const gateway = yield* gatewayOver([upstream.url], { retry: { attempts: 2, per_try_timeout: "150ms", backoff: { base: "1ms", max: "1ms" } } })
      const res = yield* request(gateway.url("/slow"))
      assert.strictEqual(res.status, 200)
      assert.strictEqual(res.body, "0123456789")
    }))

  it.live("a retry waits its backoff: the second try comes at least `base` after the first", () =>
    Effect.gen(function*() {
      const arrivals: Array<number> = []
      const upstream = yield* startUpstream("flaky", {
        handler: (_req, res) => {
          arrivals.push(performance.now())
          answer(res, arrivals.length === 1 ? 503 : 200, `try ${arrivals.length}`)
        }
      })
      const gateway = yield* gatewayOver([upstream.url], { retry: { attempts: 2, on: [503], backoff: { base: "250ms", max: "250ms", jitter: false } } })
      const res = yield* request(gateway.url("/r"))
      assert.strictEqual(res.body, "try 2")
      assert.strictEqual(arrivals.length, 2)
      // A lower bound only: a loaded machine can make it later, never earlier.
      assert.isAtLeast(arrivals[1] - arrivals[0], 240)
    }))

  it.live("a client that leaves during the backoff: its retry never starts", () =>
    Effect.gen(function*() {
      const seen: Array<string> = []
      const firstTry = signal()
      const upstream = yield* startUpstream("flaky", {
        handler: (req, res) => {
          seen.push(req.url ?? "")
          if (req.url === "/left") fire(firstTry, undefined)
          answer(res, seen.filter((u) => u === req.url).length === 1 ? 503 : 200, "x")
        }
      })
      const gateway = yield* gatewayOver([upstream.url], { retry: { attempts: 2, on: [503], backoff: { base: "200ms", max: "200ms", jitter: false } } })
      const client = yield* openConnection(gateway.port)
      yield* client.write(getRequest("/left"))
      yield* awaitSignal(firstTry)
      client.socket.destroy()
      // Backoff timers of one length fire in the order they were set: once /later's retry has
      // reached the upstream, /left's backoff is over too.
      const later = yield* request(gateway.url("/later"))
      assert.strictEqual(later.status, 200)
      assert.deepStrictEqual(seen, ["/left", "/later", "/later"])
    }))

  it.live("a try answered with a status that is retried releases its endpoint: nothing stays in flight", () =>
    Effect.gen(function*() {
      let n = 0
      const upstream = yield* startUpstream("flaky", { handler: (_req, res) => answer(res, ++n === 1 ? 503 : 200, "x") })
      const gateway = yield* gatewayOver([upstream.url], { retry: { attempts: 2, on: [503], backoff: { base: "1ms", max: "1ms" } } })
      assert.strictEqual((yield* request(gateway.url("/r"))).status, 200)
      assert.strictEqual(n, 2)
      const status = JSON.parse((yield* request(`http://127.0.0.1:${gateway.adminPort}/upstreams`)).body)
      assert.strictEqual(status.upstreams.app.in_flight, 0)
      assert.deepStrictEqual(status.upstreams.app.endpoints.map((e: { in_flight: number }) => e.in_flight), [0])
    }))

  it.live("the last try's retryable status goes to the client as it came: head, headers and a body larger than the socket buffers, whole", () =>
    Effect.gen(function*() {
      let n = 0
      // 1 MiB: the response is paused while the retries decide, then streams through.
      const big = Buffer.alloc(1 << 20, 0x61)
      for (let i = 0; i < big.length; i += 4096) big[i] = 0x30 + (i / 4096) % 10
      const upstream = yield* startUpstream("busy", {
        handler: (_req, res) => {
          n++
          res.writeHead(503, "Busy Here", { "content-length": String(big.length), "x-try": String(n), "retry-after": "7" })
          res.end(big)
        }
      })
      const gateway = yield* gatewayOver([upstream.url], { retry: { attempts: 3, on: [503], backoff: { base: "1ms", max: "1ms" } } })
      const res = yield* Effect.promise(() => fetch(gateway.url("/r")).then(async (r) => ({ r, body: Buffer.from(await r.arrayBuffer()) })))
      assert.strictEqual(n, 3, "three tries")
      assert.strictEqual(res.r.status, 503)
      assert.strictEqual(res.r.statusText, "Busy Here")
      assert.strictEqual(res.r.headers.get("x-try"), "3", "the last try's response")
      assert.strictEqual(res.r.headers.get("retry-after"), "7")
      assert.isTrue(res.body.equals(big), "the body arrives whole")
      const status = JSON.parse((yield* request(`http://127.0.0.1:${gateway.adminPort}/upstreams`)).body)
      assert.deepStrictEqual(status.upstreams.app.endpoints.map((e: { in_flight: number }) => e.in_flight), [0])
    }))

  it.live("a retry the budget refuses lets the held response through at once: the first try's 503, one try", () =>
    Effect.gen(function*() {
      let n = 0
      const upstream = yield* startUpstream("busy", { handler: (_req, res) => answer(res, 503, `try ${++n}`) })
      const gateway = yield* gatewayOver(
        [upstream.url],
        { retry: { attempts: 3, on: [503], backoff: { base: "1ms", max: "1ms" } } },
        { retry_budget: { percent: 0, min_per_second: 0 } }
      )
      const res = yield* request(gateway.url("/r"))
      assert.deepStrictEqual([res.status, res.body, n], [503, "try 1", 1])
      // The series exists from the first refusal on (other tests' gateways share the registry).
      const after1 = yield* counter("fibergate_upstream_retries_refused_total", { upstream: "app" })
      const again = yield* request(gateway.url("/r"))
      assert.deepStrictEqual([again.status, again.body, n], [503, "try 2", 2])
      assert.strictEqual(yield* counter("fibergate_upstream_retries_refused_total", { upstream: "app" }), after1 + 1)
    }))

  it.live("a failed try that opens the only endpoint's circuit leaves no endpoint to retry on: the try's own 502, after one try", () =>
    Effect.gen(function*() {
      const closed = `http://127.0.0.1:${yield* freePort}`
      const gateway = yield* gatewayOver(
        [closed],
        { retry: { attempts: 3, on: ["connect-failure"], backoff: { base: "1ms", max: "1ms" } } },
        { circuit_breaker: { consecutive_failures: 1, open_for: "10s", failures: ["connect-failure"] }, retry_budget: { percent: 100 } }
      )
      const res = yield* request(gateway.url("/once"))
      assert.strictEqual(res.status, 502)
      assert.strictEqual(JSON.parse(res.body).error, "UpstreamConnectError")
      const status = JSON.parse((yield* request(`http://127.0.0.1:${gateway.adminPort}/upstreams`)).body)
      assert.strictEqual(status.upstreams.app.endpoints[0].circuit, "open")
      assert.strictEqual(yield* counter("fibergate_upstream_attempts_total", { upstream: "app", result: "connect_error" }), 1)
    }))

  it.live("a connect timeout is a connect failure: counted as connect_error and retried on another endpoint", () =>
    Effect.gen(function*() {
      const port = yield* unansweredPort
      const ok = yield* startUpstream("ok")
      const before = yield* Metric.snapshot.pipe(Effect.map((all) =>
        all.filter((m) => m.id === "fibergate_upstream_attempts_total" && m.attributes?.upstream === "ct" && m.attributes?.result === "connect_error")
          .reduce((n, m) => n + Number((m.state as { readonly count: number }).count), 0)
      ))
      const gateway = yield* startGateway({
        log: { level: "none", access_log: false },
        servers: [{
          name: "web",
          listen: "127.0.0.1:0",
          routes: [{ id: "all", upstream: "ct", retry: { attempts: 2, on: ["connect-failure"], backoff: { base: "1ms", max: "1ms" } } }]
        }],
        upstreams: {
          ct: { balance: "round_robin", pool: { connect_timeout: "150ms" }, endpoints: [{ url: `http://127.0.0.1:${port}` }, { url: ok.url }] }
        }
      })
      const res = yield* request(gateway.url("/ct"))
      assert.strictEqual(res.status, 200)
      assert.strictEqual(JSON.parse(res.body).upstream, "ok")
      assert.strictEqual((yield* counter("fibergate_upstream_attempts_total", { upstream: "ct", result: "connect_error" })) - before, 1)
    }))

  it.live("a half-open probe whose client leaves frees the probe slot: the next request is the probe", () =>
    Effect.gen(function*() {
      const probeArrived = signal()
      const arrived: Array<string> = []
      const b = yield* startUpstream("b", {
        rawHandler: (req: IncomingMessage, res: ServerResponse) => {
          req.resume()
          arrived.push(req.url ?? "")
          if (req.url?.startsWith("/fail") === true) return answer(res, 500, "")
          if (req.url === "/probe") return fire(probeArrived, undefined) // never answered: its client leaves
          answer(res, 200, "ok")
        }
      })
      const gateway = yield* gatewayOver([b.url], {}, { circuit_breaker: { consecutive_failures: 2, open_for: "200ms", half_open_probes: 1 } })
      const admin = (path: string) => `http://127.0.0.1:${gateway.adminPort}${path}`
      const circuit = Effect.map(request(admin("/upstreams")), (r) => JSON.parse(r.body).upstreams.app.endpoints[0].circuit as string)
      assert.deepStrictEqual([(yield* send(gateway.url("/fail/1"))).status, (yield* send(gateway.url("/fail/2"))).status], [500, 500])
      yield* eventually(Effect.map(circuit, (c) => c === "half-open"), "the circuit is half-open")
      const client = yield* openConnection(gateway.port)
      yield* client.write(getRequest("/probe"))
      yield* awaitSignal(probeArrived)
      client.socket.destroy()
      // The slot is free once the gateway has seen the client go; until then it answers 503.
      yield* eventually(Effect.map(send(gateway.url("/next")), (r) => r.status === 200), "the next request is let through as the probe")
      assert.strictEqual(yield* circuit, "closed")
      assert.deepStrictEqual(arrived, ["/fail/1", "/fail/2", "/probe", "/next"])
    }))

  it.live("a 304 keeps the upstream's Content-Length (the size of what it stands for); a 204 never has one", () =>
    Effect.gen(function*() {
      const upstream = yield* startUpstream("cache", {
        rawHandler: (req, res) => {
          req.resume()
          if (req.url === "/304") res.writeHead(304, { etag: "\"v1\"", "content-length": "1234" })
          else res.writeHead(204, { "content-length": "0" })
          res.end()
        }
      })
      const gateway = yield* gatewayOver([upstream.url], {})
      const notModified = yield* send(gateway.url("/304"), { headers: { "if-none-match": "\"v1\"" } })
      assert.strictEqual(notModified.status, 304)
      assert.strictEqual(notModified.headers["content-length"], "1234")
      assert.strictEqual(notModified.headers.etag, "\"v1\"")
      const empty = yield* send(gateway.url("/204"))
      assert.strictEqual(empty.status, 204)
      assert.isUndefined(empty.headers["content-length"])
    }))

  it.live("a buffered body that completes after the route timeout answered 504 starts no try", () =>
    Effect.gen(function*() {
      const upstream = yield* startUpstream("app")
      // One pool connection: a try started by the late body would reach the upstream before /after.
      const gateway = yield* gatewayOver([upstream.url], { timeout: "150ms", retry: { methods: ["PUT"], buffer_bytes: 4096 } }, { pool: { connections: 1 } })
      const client = yield* openConnection(gateway.port, { allowHalfOpen: true })
      yield* client.write("PUT /late HTTP/1.1\r\nHost: t\r\nContent-Length: 20\r\n\r\n0123456789")
      const [timedOut] = yield* client.responses(1)
      assert.strictEqual(timedOut.status, 504)
      yield* client.write("0123456789")
      client.socket.end()
      yield* client.closed()
      assert.strictEqual((yield* request(gateway.url("/after"))).status, 200)
      console.error("SEEN", upstream.seen.map((r) => r.url)); assert.deepStrictEqual(upstream.seen.map((r) => r.url), ["/after"])
    }))

  it.live("a chunked upload cut at max_body_bytes is the client's fault: counted as result error, never against the endpoint's circuit", () =>
    Effect.gen(function*() {
      const upstream = yield* startUpstream("app", { rawHandler: (req, res) => void req.on("end", () => answer(res, 200, "ok")).resume() })
      const gateway = yield* startGateway({
        admin: { listen: "127.0.0.1:0" },
        log: { level: "none", access_log: false },
        servers: [{ name: "web", listen: "127.0.0.1:0", limits: { max_body_bytes: 16 }, routes: [{ id: "all", upstream: "cut" }] }],
        upstreams: { cut: { endpoints: [{ url: upstream.url }], circuit_breaker: { consecutive_failures: 1, open_for: "10s" } } }
      })
      const client = yield* openConnection(gateway.port)
      yield* client.write("POST /big HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n01234567\r\n")
      yield* client.write("10\r\n0123456789abcdef\r\n0\r\n\r\n")
      const [refused] = yield* client.responses(1)
      assert.strictEqual(refused.status, 413)
      assert.strictEqual(yield* counter("fibergate_upstream_attempts_total", { upstream: "cut", result: "error" }), 1)
      const all = yield* Metric.snapshot
      assert.isUndefined(all.find((m) => m.id === "fibergate_upstream_attempts_total" && m.attributes?.upstream === "cut" && m.attributes?.result === "protocol_error"))
      const status = JSON.parse((yield* request(`http://127.0.0.1:${gateway.adminPort}/upstreams`)).body)
      assert.strictEqual(status.upstreams.cut.endpoints[0].circuit, "closed")
      assert.strictEqual((yield* request(gateway.url("/next"))).status, 200)
    }))

  it.live("a client that leaves mid-try releases the endpoint it was waiting on: nothing stays in flight", () =>
    Effect.gen(function*() {
      const arrived = signal()
      const upstream = yield* startUpstream("hold", { rawHandler: () => fire(arrived, undefined) })
      const gateway = yield* gatewayOver([upstream.url], {})
      const client = yield* openConnection(gateway.port)
      yield* client.write(getRequest("/held"))
      yield* awaitSignal(arrived)
      client.socket.destroy()
      const inFlight = Effect.map(request(`http://127.0.0.1:${gateway.adminPort}/upstreams`), (r) => {
        const app = JSON.parse(r.body).upstreams.app
        return [app.in_flight, app.endpoints[0].in_flight] as const
      })
      yield* eventually(Effect.map(inFlight, ([group]) => group === 0), "the exchange has ended")
      assert.deepStrictEqual(yield* inFlight, [0, 0])
    }))

  it.live("an upstream failure answered with 502 leaves the client's connection open for its next request", () =>
    Effect.gen(function*() {
      const closed = `http://127.0.0.1:${yield* freePort}`
      const gateway = yield* gatewayOver([closed], {})
      const client = yield* openConnection(gateway.port)
      yield* client.write(getRequest("/one"))
      const [first] = yield* client.responses(1)
      assert.strictEqual(first.status, 502)
      assert.notInclude(first.headers.get("connection") ?? [], "close")
      yield* client.write(getRequest("/two"))
      const responses = yield* client.responses(2)
      assert.strictEqual(responses[1].status, 502)
      assert.isFalse(client.isClosed())
    }))

  it.live("every request earns its share of the retry budget: at 50% and no floor, the 2nd request's retry is granted and the 3rd's refused", () =>
    Effect.gen(function*() {
      const tries: Record<string, number> = {}
      const upstream = yield* startUpstream("flaky", {
        handler: (req, res) => {
          const n = tries[req.url ?? ""] = (tries[req.url ?? ""] ?? 0) + 1
          answer(res, n === 1 ? 503 : 200, `try ${n}`)
        }
      })
      const gateway = yield* gatewayOver(
        [upstream.url],
        { retry: { attempts: 2, on: [503], backoff: { base: "1ms", max: "1ms" } } },
        { retry_budget: { percent: 50, min_per_second: 0 } }
      )
      // 1 request counted: 50% of 1 is half a retry, none granted.
      assert.strictEqual((yield* request(gateway.url("/1"))).status, 503)
      // 2 requests: one retry.
      assert.strictEqual((yield* request(gateway.url("/2"))).status, 200)
      // 3 requests, one retry spent: 1.5, so no second one.
      assert.strictEqual((yield* request(gateway.url("/3"))).status, 503)
      assert.deepStrictEqual(tries, { "/1": 1, "/2": 2, "/3": 1 })
    }))

  it.live("a per-try timeout while the try still waits for a pool connection: 504, and the queued try never reaches the upstream", () =>
    Effect.gen(function*() {
      const arrived = signal()
      const release = signal()
      const seen: Array<string> = []
      const upstream = yield* startUpstream("busy", {
        rawHandler: (req, res) => {
          seen.push(req.url ?? "")
          req.resume()
          if (req.url === "/hold") {
            fire(arrived, undefined)
            return onSignal(release, () => answer(res, 200, "held"))
          }
          answer(res, 200, "ok")
        }
      })
      // /hold has no per-try timeout of its own, so it keeps the one pool connection busy.
      const gateway = yield* startGateway({
        log: { level: "none", access_log: false },
        shutdown: { drain_timeout: "200ms" },
        servers: [{
          name: "web",
          listen: "127.0.0.1:0",
          routes: [
            { id: "hold", match: { path: { exact: "/hold" } }, upstream: "app" },
            { id: "timed", upstream: "app", retry: { attempts: 1, per_try_timeout: "150ms" } }
          ]
        }],
        upstreams: { app: { endpoints: [{ url: upstream.url }], pool: { connections: 1 } } }
      })
      yield* Effect.addFinalizer(() => Effect.sync(() => fire(release, undefined)))
      const hold = yield* Effect.forkChild(send(gateway.url("/hold")))
      yield* awaitSignal(arrived)
      // The one connection is busy: this try waits in undici's queue until its timeout.
      const queued = yield* request(gateway.url("/queued"))
      assert.strictEqual(queued.status, 504)
      fire(release, undefined)
      assert.strictEqual((yield* Fiber.join(hold)).status, 200)
      assert.strictEqual((yield* request(gateway.url("/after"))).status, 200)
      assert.deepStrictEqual(seen, ["/hold", "/after"])
    }))

  it.live("a try answered 500 counts as result 5xx, one answered 499 as success (5xx starts at 500)", () =>
    Effect.gen(function*() {
      const upstream = yield* startUpstream("codes", { handler: (req, res) => answer(res, Number(req.url?.slice(1)), "") })
      const g = yield* startGateway({
        log: { level: "none", access_log: false },
        servers: [{ name: "web", listen: "127.0.0.1:0", routes: [{ id: "all", upstream: "codes" }] }],
        upstreams: { codes: { endpoints: [{ url: upstream.url }] } }
      })
      assert.strictEqual((yield* request(g.url("/500"))).status, 500)
      assert.strictEqual(yield* counter("fibergate_upstream_attempts_total", { upstream: "codes", result: "5xx" }), 1)
      assert.strictEqual((yield* request(g.url("/499"))).status, 499)
      assert.strictEqual(yield* counter("fibergate_upstream_attempts_total", { upstream: "codes", result: "success" }), 1)
      assert.strictEqual(yield* counter("fibergate_upstream_attempts_total", { upstream: "codes", result: "5xx" }), 1)
    }))
})
