/**
 * The request's fiber at its edges, through a real gateway: a middleware's own reply carries
 * the response headers earlier middlewares added; a client that leaves while a middleware is
 * still deciding interrupts it, and the request is logged and counted as 499 ClientClosed.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { connect } from "node:net"
import type { Middleware } from "../../src/middleware/Middleware.ts"
import { captureAccessLog } from "../support/accessLog.ts"
import { simpleConfig, startGateway, startUpstream } from "../support/harness.ts"
import { send } from "../support/http.ts"
import { eventually } from "../support/liveGateway.ts"
import { growth, scrapeAdmin } from "../support/prometheus.ts"

const tagging: Middleware = (request) => Effect.sync(() => {
  request.addResponseHeader("x-tag-a", "1")
  request.addResponseHeader("x-tag-b", "2")
})
const replying: Middleware = () => Effect.succeed({ status: 200, headers: { "x-own": "yes" }, body: "from the middleware" })

describe("the request's fiber at its edges", () => {
  it.live("a middleware's own reply carries every response header the middlewares before it added", () =>
    Effect.gen(function*() {
      const app = yield* startUpstream("app")
      const gateway = yield* startGateway(
        { ...simpleConfig([app.url], { middlewares: [{ custom: "tagging" }, { custom: "replying" }] }), log: { level: "none", access_log: false } },
        { middlewares: { tagging, replying } }
      )
      const res = yield* send(gateway.url("/"))
      assert.deepStrictEqual([res.status, res.body, res.headers["x-own"], res.headers["x-tag-a"], res.headers["x-tag-b"]], [200, "from the middleware", "yes", "1", "2"])
      assert.strictEqual(res.headers["content-length"], String("from the middleware".length))
      assert.strictEqual(app.seen.length, 0)
    }))

  it.live("a client that leaves while a middleware decides interrupts it: logged and counted as 499 ClientClosed, never forwarded", () =>
    Effect.gen(function*() {
      const capture = yield* captureAccessLog
      const app = yield* startUpstream("app")
      let started = 0
      let interrupted = 0
      const waiting: Middleware = () =>
        Effect.sync(() => void started++).pipe(Effect.andThen(Effect.never), Effect.onInterrupt(() => Effect.sync(() => void interrupted++)))
      const gateway = yield* startGateway(
        { ...simpleConfig([app.url], { middlewares: [{ custom: "waiting" }] }), log: { level: "none", access_log: true, format: "json" } },
        { middlewares: { waiting } }
      )
      const before = yield* scrapeAdmin(gateway.adminPort)
      const socket = connect(Number(new URL(gateway.url("/")).port), "127.0.0.1")
      socket.write("GET /leaving HTTP/1.1\r\nhost: t\r\n\r\n")
      yield* eventually(Effect.sync(() => started === 1), "the middleware started")
      assert.strictEqual(interrupted, 0)
      socket.destroy()
      yield* eventually(Effect.sync(() => interrupted === 1), "the middleware was interrupted")
      yield* eventually(Effect.sync(() => capture.lines.some((l) => l.path === "/leaving")), "an access log line")
      const line = capture.lines.find((l) => l.path === "/leaving")!
      assert.deepStrictEqual([line.status, line.error, line.upstream], [499, "ClientClosed", "-"])
      assert.isAtLeast(Number(line.duration_ms ?? line.durationMs ?? 0), 0)
      const after = yield* scrapeAdmin(gateway.adminPort)
      assert.strictEqual(growth(before, after, "fibergate_requests_total", { listener: "web", route: "all", method: "GET", status_class: "other" }), 1)
      assert.strictEqual(app.seen.length, 0)
    }))
})
