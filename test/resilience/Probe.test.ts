/**
 * The active health probes against real local servers: what a TCP probe and an HTTP probe send,
 * what they count as healthy, and that an interrupted probe closes its connection.
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Fiber } from "effect"
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from "node:http"
import { createServer as createTcpServer, type AddressInfo, type Server, type Socket } from "node:net"
import type { HealthCheck } from "../../src/config/Schema.ts"
import { httpProbe, parseStatusRange, probeFor, tcpProbe } from "../../src/resilience/Probe.ts"
import { freePort } from "../support/net.ts"

interface Seen {
  readonly method: string | undefined
  readonly url: string | undefined
  readonly headers: IncomingMessage["headers"]
}

/** An HTTP server answering with `answer`; every request it saw, and how many TCP connections it got. */
const httpServer = (answer: (req: IncomingMessage, res: ServerResponse) => void) =>
  Effect.acquireRelease(
    Effect.callback<{ readonly server: HttpServer; readonly origin: URL; readonly seen: Array<Seen>; readonly connections: Array<Socket> }>((resume) => {
      const seen: Array<Seen> = []
      const connections: Array<Socket> = []
      const server = createHttpServer((req, res) => {
        seen.push({ method: req.method, url: req.url, headers: req.headers })
        answer(req, res)
      })
      server.on("connection", (socket) => void connections.push(socket))
      server.listen(0, "127.0.0.1", () => {
        const { port } = server.address() as AddressInfo
        resume(Effect.succeed({ server, origin: new URL(`http://127.0.0.1:${port}`), seen, connections }))
      })
    }),
    ({ server }) => Effect.callback<void>((resume) => {
      server.closeAllConnections()
      server.close(() => resume(Effect.void))
    })
  )

const reply = (status: number, body = "") => (_req: IncomingMessage, res: ServerResponse) => {
  res.writeHead(status, { "content-type": "text/plain" })
  res.end(body)
}

describe("parseStatusRange", () => {
  it("defaults to 200-299, reads a single status and a range", () => {
    assert.deepStrictEqual(parseStatusRange(undefined), [200, 299])
    assert.deepStrictEqual(parseStatusRange("204"), [204, 204])
    assert.deepStrictEqual(parseStatusRange("200-399"), [200, 399])
  })
})

describe("tcpProbe", () => {
  it.live("is true when the endpoint accepts the connection, and closes it at once", () =>
    Effect.gen(function*() {
      const closed = yield* Deferred.make<void>()
      const server = createTcpServer((socket) => socket.on("close", () => Deferred.doneUnsafe(closed, Effect.void)))
      yield* Effect.acquireRelease(
        Effect.callback<void>((resume) => void server.listen(0, "127.0.0.1", () => resume(Effect.void))),
        () => Effect.sync(() => server.close())
      )
      const { port } = server.address() as AddressInfo
      assert.isTrue(yield* tcpProbe("127.0.0.1", port))
      yield* Deferred.await(closed).pipe(Effect.timeout("5 seconds"))
    }))

  it.live("is false when the connection is refused", () =>
    Effect.gen(function*() {
      const port = yield* freePort
      assert.isFalse(yield* tcpProbe("127.0.0.1", port))
    }))
})

describe("httpProbe", () => {
  it.live("sends GET <path> over a fresh connection with the check's Host, its own user agent and Connection: close", () =>
    Effect.gen(function*() {
      const up = yield* httpServer(reply(200))
      const check: HealthCheck = { path: "/healthz", host: "api.internal" }
      assert.isTrue(yield* httpProbe(up.origin, check))
      assert.isTrue(yield* httpProbe(up.origin, check))
      assert.strictEqual(up.seen.length, 2)
      for (const s of up.seen) {
        assert.strictEqual(s.method, "GET")
        assert.strictEqual(s.url, "/healthz")
        assert.strictEqual(s.headers.host, "api.internal")
        assert.strictEqual(s.headers["user-agent"], "fibergate-health-check")
        assert.strictEqual(s.headers.connection, "close")
      }
      assert.strictEqual(up.connections.length, 2, "each probe opens its own connection")
    }))

  it.live("defaults to GET / with the endpoint's host:port as Host", () =>
    Effect.gen(function*() {
      const up = yield* httpServer(reply(200))
      assert.isTrue(yield* httpProbe(up.origin, {}))
      assert.strictEqual(up.seen[0].url, "/")
      assert.strictEqual(up.seen[0].headers.host, up.origin.host)
    }))

  it.live("counts a status inside expect_status as healthy, one outside it (either side) as not", () =>
    Effect.gen(function*() {
      for (const [status, expect, ok] of [
        [200, undefined, true],
        [299, undefined, true],
        [300, undefined, false],
        [201, "201-299", true],
        [200, "201-299", false],
        [503, undefined, false],
        [503, "503", true],
        [502, "503", false],
        [504, "503", false],
        [404, "200-404", true],
        [405, "200-404", false]
      ] as const) {
        const up = yield* httpServer(reply(status))
        const check: HealthCheck = expect === undefined ? {} : { expect_status: expect }
        assert.strictEqual(yield* httpProbe(up.origin, check), ok, `status ${status} with expect_status ${expect}`)
      }
    }).pipe(Effect.scoped))

  it.live("with expect_body, needs the substring in the body (and a good status)", () =>
    Effect.gen(function*() {
      const good = yield* httpServer(reply(200, "status: ok\n"))
      const bad = yield* httpServer(reply(200, "status: degraded\n"))
      const failing = yield* httpServer(reply(500, "ok"))
      assert.isTrue(yield* httpProbe(good.origin, { expect_body: "ok" }))
      assert.isFalse(yield* httpProbe(bad.origin, { expect_body: "ok" }))
      // Only the body counts: nothing else is searched along with it.
      assert.isFalse(yield* httpProbe(bad.origin, { expect_body: "here" }))
      assert.isFalse(yield* httpProbe(failing.origin, { expect_body: "ok" }))
    }))

  it.live("reads at most 64 KiB of the body: a substring past it is not found, one before it is", () =>
    Effect.gen(function*() {
      // 20 chunks of 16 KiB: the probe stops keeping data once it holds 64 KiB. The late marker
      // is at 256 KiB, far past any read that could start below 64 KiB.
      const body = (marker: string, at: number) => (_req: IncomingMessage, res: ServerResponse) => {
        res.writeHead(200)
        const chunk = "x".repeat(16 * 1024)
        for (let i = 0; i < 20; i++) res.write(i === at ? marker + chunk.slice(marker.length) : chunk)
        res.end()
      }
      const early = yield* httpServer(body("MARK", 3))
      const late = yield* httpServer(body("MARK", 16))
      assert.isTrue(yield* httpProbe(early.origin, { expect_body: "MARK" }))
      assert.isFalse(yield* httpProbe(late.origin, { expect_body: "MARK" }))
    }))

  it.live("is false when the connection is refused or reset", () =>
    Effect.gen(function*() {
      const port = yield* freePort
      assert.isFalse(yield* httpProbe(new URL(`http://127.0.0.1:${port}`), {}))
      const resetting = yield* httpServer((req) => req.socket.destroy())
      assert.isFalse(yield* httpProbe(resetting.origin, {}))
    }))

  it.live("an interrupted probe (its timeout) closes its connection", () =>
    Effect.gen(function*() {
      const up = yield* httpServer(() => undefined)
      const fiber = yield* Effect.forkChild(httpProbe(up.origin, {}))
      for (let i = 0; i < 500 && up.seen.length === 0; i++) yield* Effect.sleep("10 millis")
      assert.strictEqual(up.seen.length, 1, "the probe reached the server")
      const closed = yield* Deferred.make<void>()
      up.connections[0].once("close", () => Deferred.doneUnsafe(closed, Effect.void))
      yield* Fiber.interrupt(fiber)
      yield* Deferred.await(closed).pipe(Effect.timeout("5 seconds"))
    }))
})

describe("probeFor", () => {
  it.live("type tcp only connects: a server that never answers HTTP is healthy", () =>
    Effect.gen(function*() {
      const up = yield* httpServer(() => undefined)
      assert.isTrue(yield* probeFor(up.origin.origin, { type: "tcp" }))
      assert.strictEqual(up.seen.length, 0, "a tcp probe sends no request")
    }))

  it.live("type http (the default) sends a request and reads its status", () =>
    Effect.gen(function*() {
      const up = yield* httpServer(reply(503))
      assert.isFalse(yield* probeFor(up.origin.origin, {}))
      assert.isFalse(yield* probeFor(up.origin.origin, { type: "http" }))
      assert.strictEqual(up.seen.length, 2)
    }))
})
