/**
 * The defaults of the README's configuration block, each checked on a real gateway whose config
 * leaves the key out: the limits at exactly the default and one past it, the pool size by the
 * connections the upstream sees, the timeouts by what the gateway's node:http server and undici
 * run with (the long ones driven by fake timers instead of waiting a minute), and the health
 * check's defaults by what leaves rotation.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Scope } from "effect"
import diagnosticsChannel from "node:diagnostics_channel"
import type { Server } from "node:http"
import type { Socket } from "node:net"
import { vi } from "vitest"
import { unansweredPort } from "../support/blackhole.ts"
import { request, simpleConfig, startGateway, startUpstream, type TestGateway, type TestUpstream } from "../support/harness.ts"
import { resetThenEcho } from "../support/replay.ts"
import { send } from "../support/http.ts"
import { eventually } from "../support/liveGateway.ts"
import { raw } from "../support/net.ts"
import { converse } from "../support/wire.ts"
import { openConnection } from "../support/connection.ts"

const MiB = 1024 * 1024

/**
 * A request head whose header bytes total exactly `bytes` as node:http counts them against
 * `max_header_bytes`: the request target and every header name and value.
 */
const headOfSize = (bytes: number) => {
  const target = "/h"
  const counted = target.length + "Host".length + "t".length + "X-Pad".length
  return `GET ${target} HTTP/1.1\r\nHost: t\r\nX-Pad: ${"p".repeat(bytes - counted)}\r\n\r\n`
}

/** Subscribes to a diagnostics channel for the life of the scope. */
const subscribe = (name: string, onMessage: (message: unknown) => void) =>
  Effect.acquireRelease(
    Effect.sync(() => diagnosticsChannel.subscribe(name, onMessage)),
    () => Effect.sync(() => void diagnosticsChannel.unsubscribe(name, onMessage))
  )

/** The node:http server (and the server side of the connection) that served a request on `port`. */
const serverOf = (port: number) =>
  Effect.gen(function*() {
    const seen: Array<{ readonly server: Server; readonly socket: Socket }> = []
    yield* subscribe("http.server.request.start", (m) => {
      const { server, socket } = m as { server: Server; socket: Socket }
      if ((server.address() as { port?: number } | null)?.port === port) seen.push({ server, socket })
    })
    return seen
  })

/** Fake `setTimeout`/`clearTimeout` (only those) until the end of the scope. */
const fakeTimers = Effect.acquireRelease(
  Effect.sync(() => void vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] })),
  () => Effect.sync(() => void vi.useRealTimers())
)

/** Lets the event loop run (I/O and setImmediate) without any timer: fake timers stop Effect.sleep. */
const until = (check: () => boolean, what: string) =>
  Effect.gen(function*() {
    const deadline = performance.now() + 3_000
    while (!check()) {
      if (performance.now() > deadline) return assert.fail(`timed out waiting until ${what}`)
      yield* Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve)))
    }
  })

describe("defaults of servers[].limits", () => {
  it.live("max_header_bytes defaults to 16384: a head of exactly 16384 counted bytes passes, 16385 gets 431", () =>
    Effect.gen(function*() {
      const upstream = yield* startUpstream("a")
      // node:http's own default (16 KiB) would refuse the head the gateway forwards, which has more headers.
      ;(upstream.server as typeof upstream.server & { maxHeaderSize: number }).maxHeaderSize = 64 * 1024
      const gateway = yield* startGateway(simpleConfig([upstream.url]))
      const atLimit = yield* raw(gateway.port, headOfSize(16_384))
      assert.strictEqual(atLimit.status, 200)
      assert.strictEqual(upstream.seen[0]?.headers["x-pad"]?.length, 16_384 - 2 - 4 - 1 - 5)
      const over = yield* raw(gateway.port, headOfSize(16_385))
      assert.strictEqual(over.status, 431)
      assert.strictEqual(JSON.parse(over.body).error, "HeadersTooLarge")
      assert.strictEqual(upstream.seen.length, 1, "the oversized head never reaches the upstream")
    }))

  it.live("max_body_bytes defaults to 10485760: a Content-Length of exactly 10 MiB is forwarded, one byte more gets 413", () =>
    Effect.gen(function*() {
      const upstream = yield* startUpstream("a")
      const gateway = yield* startGateway(simpleConfig([upstream.url]))
      const post = (bytes: number) => `POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: ${bytes}\r\n\r\n${"b".repeat(bytes)}`
      const atLimit = yield* raw(gateway.port, post(10 * MiB))
      assert.strictEqual(atLimit.status, 200)
      assert.strictEqual(JSON.parse(atLimit.body).bodyBytes, 10_485_760)
      const over = yield* converse(gateway.port, (s) => void s.write(post(10 * MiB + 1)), { responses: 1, maxMs: 5_000 })
      assert.strictEqual(over.responses[0]?.status, 413)
      assert.strictEqual(JSON.parse(over.responses[0].body).error, "PayloadTooLarge")
      assert.strictEqual(upstream.seen.length, 1, "the body over the limit never reaches the upstream")
    }))

  it.live("idle_timeout 60s (with no grace second), header_timeout 60s, request_timeout 300s and max_connections 10000 are what the listener runs with", () =>
    Effect.gen(function*() {
      const upstream = yield* startUpstream("a")
      const gateway = yield* startGateway(simpleConfig([upstream.url]))
      const served = yield* serverOf(gateway.port)
      const reply = yield* converse(gateway.port, (s) => void s.write("GET / HTTP/1.1\r\nHost: t\r\n\r\n"), { responses: 1 })
      // The client is told the idle timeout, in seconds.
      assert.deepStrictEqual(reply.responses[0]?.headers.get("keep-alive"), ["timeout=60"])
      assert.strictEqual(served.length, 1)
      const { server } = served[0]
      assert.deepStrictEqual(
        {
          keepAliveTimeout: server.keepAliveTimeout,
          keepAliveTimeoutBuffer: (server as Server & { keepAliveTimeoutBuffer: number }).keepAliveTimeoutBuffer,
          headersTimeout: server.headersTimeout,
          requestTimeout: server.requestTimeout,
          maxConnections: server.maxConnections
        },
        { keepAliveTimeout: 60_000, keepAliveTimeoutBuffer: 0, headersTimeout: 60_000, requestTimeout: 300_000, maxConnections: 10_000 }
      )
    }))

  it.live("header_timeout is capped at request_timeout: a stalled head gets 408 at the shorter request_timeout", () =>
    Effect.gen(function*() {
      const upstream = yield* startUpstream("a")
      const config = simpleConfig([upstream.url])
      const gateway = yield* startGateway({
        ...config,
        servers: [{ ...config.servers[0], limits: { header_timeout: "30s", request_timeout: "300ms", idle_timeout: "30s" } }]
      })
      const started = performance.now()
      const conversation = yield* converse(gateway.port, (s) => void s.write("GET / HTTP/1.1\r\nHost: t\r\nX-Slow: "), { responses: 1, maxMs: 3_000 })
      const elapsed = performance.now() - started
      assert.strictEqual(conversation.responses[0]?.status, 408)
      assert.strictEqual(JSON.parse(conversation.responses[0].body).error, "RequestTimeout")
      // 300 ms plus at most one of node:http's 250 ms checks (and scheduling slack).
      assert.isAtLeast(elapsed, 280)
      assert.isBelow(elapsed, 1_500)
      assert.deepStrictEqual(upstream.seen, [])
    }))
})

describe("defaults of upstreams.<name>.pool", () => {
  it.live("connections defaults to 128: 129 requests held at once reach the upstream over 128 connections, the 129th once one is free", () =>
    Effect.gen(function*() {
      const held: Array<() => void> = []
      const sockets = new Set<Socket>()
      let arrived = 0
      const upstream = yield* startUpstream("held", {
        handler: (req, res) => {
          arrived++
          sockets.add(req.socket)
          held.push(() => {
            res.writeHead(200, { "content-length": "2" })
            res.end("ok")
          })
        }
      })
      yield* Effect.addFinalizer(() => Effect.sync(() => held.splice(0).forEach((release) => release())))
      // A failing run must not wait the default 30 s drain for requests still queued in the pool.
      const gateway = yield* startGateway({ ...simpleConfig([upstream.url]), shutdown: { drain_timeout: "200ms" } })
      const clients: Array<Fiber.Fiber<{ readonly status: number }>> = []
      for (let i = 0; i < 129; i++) clients.push(yield* Effect.forkChild(send(gateway.url(`/r${i}`))))
      yield* eventually(Effect.sync(() => arrived >= 128), "128 requests are held by the upstream", 10_000)
      // One response frees one pooled connection: the 129th request takes it.
      held.shift()!()
      yield* eventually(Effect.sync(() => arrived === 129), "the 129th request reaches the upstream", 10_000)
      held.splice(0).forEach((release) => release())
      for (const client of clients) assert.strictEqual((yield* Fiber.join(client)).status, 200)
      assert.strictEqual(upstream.seen.length, 129)
      assert.strictEqual(sockets.size, 128, "the pool opened 128 connections, not one per request")
    }))

  it.live("connect_timeout defaults to 2s: an endpoint that never answers the SYN gets 504 UpstreamConnectTimeout after about 2 s", () =>
    Effect.gen(function*() {
      const port = yield* unansweredPort
      const gateway = yield* startGateway(simpleConfig([`http://127.0.0.1:${port}`]))
      const started = performance.now()
      const res = yield* request(gateway.url("/slow-connect"))
      const elapsed = performance.now() - started
      assert.strictEqual(res.status, 504)
      assert.strictEqual(JSON.parse(res.body).error, "UpstreamConnectTimeout")
      // undici arms connect timeouts on its 499 ms low-resolution timer: 2 s fires within 2–2.5 s.
      assert.isAtLeast(elapsed, 1_950)
      assert.isBelow(elapsed, 4_500, "not a longer default (5 s would take 5–5.5 s)")
    }))

  it.live("keep_alive defaults to 60s: an idle upstream connection is closed 60 s after its last response, not before, also when the upstream offers longer", () =>
    Effect.gen(function*() {
      /** Upstreams answering without a Keep-Alive hint, and with one of 600 s (capped by keep_alive). */
      const quiet = yield* startUpstream("quiet")
      quiet.server.keepAliveTimeout = 0
      const generous = yield* startUpstream("generous", {
        handler: (_req, res) => {
          res.writeHead(200, { "content-length": "2", "keep-alive": "timeout=600" })
          res.end("ok")
        }
      })
      generous.server.keepAliveTimeout = 0
      const sockets = new Map<number, Socket>()
      yield* subscribe("undici:client:connected", (m) => {
        const { connectParams, socket } = m as { connectParams: { port: string | number }; socket: Socket }
        sockets.set(Number(connectParams.port), socket)
      })
      const gateway: TestGateway = yield* startGateway({
        ...simpleConfig([quiet.url]),
        servers: [{
          name: "web",
          listen: "127.0.0.1:0",
          routes: [{ id: "generous", match: { path: { prefix: "/g" } }, upstream: "generous" }, { id: "all", upstream: "app" }]
        }],
        upstreams: { app: { endpoints: [{ url: quiet.url }] }, generous: { endpoints: [{ url: generous.url }] } }
      })
      const ups: ReadonlyArray<readonly [TestUpstream, string]> = [[quiet, "/q"], [generous, "/g"]]
      // From here until the end of the test, undici's keep-alive timers (native setTimeout) are fake.
      yield* fakeTimers
      for (const [upstream, path] of ups) {
        assert.strictEqual((yield* send(gateway.url(path))).status, 200)
        // The response has reached the client, so undici has armed the idle timer of its connection.
        const socket = sockets.get(upstream.port) ?? assert.fail(`no pooled connection to ${upstream.name}`)
        vi.advanceTimersByTime(59_999)
        assert.isFalse(socket.destroyed, `${upstream.name}: still pooled 59.999 s after the response`)
        vi.advanceTimersByTime(1)
        assert.isTrue(socket.destroyed, `${upstream.name}: closed at 60 s`)
      }
    }))
})

describe("default of shutdown.drain_timeout", () => {
  it.live("30s: at shutdown a response in flight still has 29.999 s to finish; at 30 s its connection is cut", () =>
    Effect.gen(function*() {
      let release: (() => void) | undefined
      const upstream = yield* startUpstream("slow", {
        rawHandler: (_req, res) => {
          res.writeHead(200, { "content-length": "4" })
          res.write("pa")
          release = () => res.end("rt")
        }
      })
      yield* Effect.addFinalizer(() => Effect.sync(() => release?.()))
      const gatewayScope = yield* Scope.make()
      const gateway = yield* startGateway(simpleConfig([upstream.url])).pipe(Scope.provide(gatewayScope))
      const served = yield* serverOf(gateway.port)
      const client = yield* openConnection(gateway.port)
      yield* client.write("GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
      yield* until(() => client.text().endsWith("pa") && served.length === 1, "the response is in flight")
      const { server, socket } = served[0]
      // From here on the drain deadline (a native setTimeout) is fake.
      yield* fakeTimers
      const closing = yield* Effect.forkChild(Scope.close(gatewayScope, Exit.void))
      // The drain stops accepting and arms its deadline in one step.
      yield* until(() => !server.listening, "the listener stops accepting")
      vi.advanceTimersByTime(29_999)
      assert.isFalse(socket.destroyed, "the response in flight may still finish at 29.999 s")
      vi.advanceTimersByTime(1)
      assert.isTrue(socket.destroyed, "its connection is cut at 30 s")
      vi.useRealTimers()
      yield* client.closed()
      assert.notInclude(client.text(), "rt", "the response was cut, not completed")
      yield* Fiber.join(closing).pipe(Effect.timeout("5 seconds"))
    }))
})

describe("defaults of upstreams.<name>.health_check", () => {
  it.live("without type and expect_status the check is an HTTP GET that passes on 200-299: an endpoint answering 299 stays in rotation, one answering 300 leaves it", () =>
    Effect.gen(function*() {
      /** An upstream whose /health answers `status`; it counts the probes and the other requests. */
      const checked = (name: string, status: number) => {
        const counts = { probes: 0, methods: new Set<string>(), requests: 0 }
        return Effect.map(
          startUpstream(name, {
            handler: (req, res) => {
              if (req.url === "/health") {
                counts.probes++
                counts.methods.add(req.method ?? "")
                res.writeHead(status, { "content-length": "0" })
                return void res.end()
              }
              counts.requests++
              res.writeHead(200, { "content-length": name.length, "x-upstream": name })
              res.end(name)
            }
          }),
          (upstream) => ({ upstream, counts })
        )
      }
      const b = yield* checked("b299", 299)
      const c = yield* checked("c300", 300)
      const gateway = yield* startGateway(simpleConfig([b.upstream.url, c.upstream.url], {}, {
        balance: "round_robin",
        health_check: { path: "/health", interval: "50ms", healthy_threshold: 1, unhealthy_threshold: 1 }
      }))
      const endpoints = Effect.map(
        request(`http://127.0.0.1:${gateway.adminPort}/upstreams`),
        (res) => JSON.parse(res.body).upstreams.app.endpoints as ReadonlyArray<{ readonly url: string; readonly healthy: boolean }>
      )
      yield* eventually(
        Effect.map(endpoints, (es) => b.counts.probes >= 2 && c.counts.probes >= 2 && es.find((e) => e.url === c.upstream.url)?.healthy === false),
        "both endpoints are probed and the 300 one is unhealthy"
      )
      assert.deepStrictEqual((yield* endpoints).map((e) => [e.url, e.healthy]), [[b.upstream.url, true], [c.upstream.url, false]])
      assert.deepStrictEqual([...b.counts.methods, ...c.counts.methods], ["GET", "GET"])
      for (let i = 0; i < 4; i++) assert.strictEqual((yield* request(gateway.url(`/r${i}`))).headers.get("x-upstream"), "b299")
      assert.strictEqual(c.counts.requests, 0)
    }))
})

describe("default of routes[].retry.buffer_bytes", () => {
  /**
   * A gateway over [a, b] with `retry: {}`: `a` resets the connection once it has read a request
   * body, `b` echoes. A PUT whose body was buffered is replayed on `b`; a streamed one is not.
   */
  const putThrough = (bytes: number) =>
    Effect.gen(function*() {
      const { gateway, b, resets } = yield* resetThenEcho
      const res = yield* request(gateway.url("/put"), { method: "PUT", body: "x".repeat(bytes) })
      return { status: res.status, body: res.body, resets: resets(), b }
    })

  it.live("65536 bytes: a PUT with a body of exactly 65536 bytes is buffered and replayed on the other endpoint", () =>
    Effect.gen(function*() {
      const { b, resets, status } = yield* putThrough(65_536)
      assert.strictEqual(resets, 1, "the first try went to the resetting endpoint")
      assert.strictEqual(status, 200)
      assert.deepStrictEqual(b.seen.map((s) => s.body.length), [65_536])
    }))

  it.live("65536 bytes: a PUT with 65537 bytes streams, so the reset is not retried (502 UpstreamReset)", () =>
    Effect.gen(function*() {
      const { b, body, resets, status } = yield* putThrough(65_537)
      assert.strictEqual(resets, 1)
      assert.strictEqual(status, 502)
      assert.strictEqual(JSON.parse(body).error, "UpstreamReset")
      assert.deepStrictEqual(b.seen, [])
    }))
})
