/**
 * Graceful shutdown of the real `fibergate run` process: SIGTERM turns readiness off, stops
 * accepting, closes idle keep-alive connections, lets responses in flight finish with
 * `Connection: close` up to `shutdown.drain_timeout`, then exits 0.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import { request as httpRequest } from "node:http"
import { connect, type Socket } from "node:net"
import { exitOf, oneRouteConfig, spawnCli, tempFile } from "../support/cli.ts"
import { send } from "../support/http.ts"
import { startUpstream } from "../support/harness.ts"
import { freePort } from "../support/net.ts"
import { awaitSignal, fire, onSignal, signal } from "../support/signals.ts"
import { eventually, refuses } from "../support/liveGateway.ts"
import { startOtlpReceiver } from "../support/otlp.ts"

const configText = (port: number, adminPort: number, upstream: string, drain: string) =>
  oneRouteConfig({
    port,
    adminPort,
    upstream,
    name: "edge",
    head: ["log: { level: warn, access_log: false }", `shutdown: { drain_timeout: ${drain} }`]
  })


const status = (url: string) => Effect.promise(() => fetch(url).then((r) => r.status, () => 0))

/** An idle keep-alive connection: one request answered, then left open; resolves when the gateway closes it. */
const idleConnection = (port: number) =>
  Effect.callback<{ readonly socket: Socket; readonly closed: Promise<void> }>((resume) => {
    const socket = connect({ host: "127.0.0.1", port })
    const closed = new Promise<void>((done) => socket.once("close", () => done()))
    socket.on("error", () => undefined)
    socket.once("data", () => resume(Effect.succeed({ socket, closed })))
    socket.write("GET /idle HTTP/1.1\r\nHost: edge\r\n\r\n")
  })

describe("graceful shutdown (fibergate run)", () => {
  it.live("SIGTERM: readiness off, idle connections closed, new connections refused, the slow request in flight completes, exit 0", () =>
    Effect.gen(function*() {
      const arrived = signal()
      const release = signal()
      const upstream = yield* startUpstream("slow", {
        rawHandler: (req, res) => {
          if (req.url !== "/slow") return void res.end("quick")
          fire(arrived, undefined)
          onSignal(release, () => res.end("done"))
        }
      })
      const [port, adminPort] = [yield* freePort, yield* freePort]
      const cli = yield* spawnCli(["run", "-c", yield* tempFile("shutdown.yaml", configText(port, adminPort, upstream.url, "10s"))])
      yield* eventually(Effect.map(status(`http://127.0.0.1:${adminPort}/ready`), (s) => s === 200), "the gateway is ready")
      const idle = yield* idleConnection(port)
      const inFlight = yield* Effect.forkChild(send(`http://127.0.0.1:${port}/slow`))
      yield* awaitSignal(arrived)

      cli.child.kill("SIGTERM")
      yield* eventually(Effect.map(status(`http://127.0.0.1:${adminPort}/ready`), (s) => s === 503), "/ready answers 503")
      yield* eventually(refuses(port), "the listener refuses new connections")
      yield* Effect.promise(() => idle.closed).pipe(Effect.timeout("3 seconds"))
      assert.isFalse(cli.hasExited(), "the process waits for the request in flight")

      fire(release, undefined)
      const res = yield* Fiber.join(inFlight)
      assert.deepStrictEqual([res.status, res.headers.connection, res.body], [200, "close", "done"])
      const exit = yield* exitOf(cli)
      assert.deepStrictEqual(exit, { code: 0, signal: null }, cli.stderr())
    }))

  it.live("a response still in flight at shutdown.drain_timeout is cut, and the process exits 0 right after", () =>
    Effect.gen(function*() {
      const arrived = signal()
      const upstream = yield* startUpstream("hung", {
        rawHandler: (_req, res) => {
          res.writeHead(200, { "content-length": "10" })
          res.write("part")
          fire(arrived, undefined)
        }
      })
      const [port, adminPort] = [yield* freePort, yield* freePort]
      const cli = yield* spawnCli(["run", "-c", yield* tempFile("shutdown.yaml", configText(port, adminPort, upstream.url, "300ms"))])
      yield* eventually(Effect.map(status(`http://127.0.0.1:${adminPort}/ready`), (s) => s === 200), "the gateway is ready")
      const cut = Effect.callback<string>((resume) => {
        const req = httpRequest({ host: "127.0.0.1", port, path: "/hang", agent: false }, (res) => {
          res.on("data", () => undefined)
          res.on("error", (e: Error & { code?: string }) => resume(Effect.succeed(e.code ?? e.message)))
          res.on("end", () => resume(Effect.succeed("ended")))
        })
        req.on("error", (e: Error & { code?: string }) => resume(Effect.succeed(e.code ?? e.message)))
        req.end()
      })
      const client = yield* Effect.forkChild(cut)
      yield* awaitSignal(arrived)
      const sentAt = Date.now()
      cli.child.kill("SIGTERM")
      const exit = yield* exitOf(cli)
      const took = Date.now() - sentAt
      assert.deepStrictEqual(exit, { code: 0, signal: null }, cli.stderr())
      assert.isTrue(took >= 250 && took < 5000, `exited ${took} ms after SIGTERM`)
      assert.strictEqual(yield* Fiber.join(client), "ECONNRESET", "the unfinished response is cut, not completed")
    }))

  it.live("spans still buffered are flushed at shutdown: with export_interval 10m, SIGTERM sends the request's spans before the process exits", () =>
    Effect.gen(function*() {
      const receiver = yield* startOtlpReceiver
      const upstream = yield* startUpstream("traced")
      const [port, adminPort] = [yield* freePort, yield* freePort]
      const config = oneRouteConfig({
        port,
        adminPort,
        upstream: upstream.url,
        name: "edge",
        head: [
          "log: { level: warn, access_log: false }",
          `telemetry: { tracing: { otlp_endpoint: "${receiver.url}", export_interval: 10m, service_name: flushed } }`
        ]
      })
      const cli = yield* spawnCli(["run", "-c", yield* tempFile("traced.yaml", config)])
      yield* eventually(Effect.map(status(`http://127.0.0.1:${adminPort}/ready`), (s) => s === 200), "the gateway is ready")
      const res = yield* send(`http://127.0.0.1:${port}/traced`)
      assert.strictEqual(res.status, 200)
      // Nothing has been exported yet: the next export is 10 minutes away.
      assert.strictEqual(receiver.requests(), 0)
      cli.child.kill("SIGTERM")
      const exit = yield* exitOf(cli)
      assert.deepStrictEqual(exit, { code: 0, signal: null }, cli.stderr())
      // The receiver has them by the time the process is gone: the exporter awaited its answer.
      const spans = receiver.spans.map((s) => ({ name: s.name, kind: s.kind, service: s.serviceName, path: s.attributes["url.path"] }))
      assert.deepStrictEqual(spans.filter((s) => s.kind === 2), [{ name: "GET all", kind: 2, service: "flushed", path: "/traced" }])
      assert.strictEqual(spans.filter((s) => s.kind === 3).length, 1, JSON.stringify(spans))
    }))
})
