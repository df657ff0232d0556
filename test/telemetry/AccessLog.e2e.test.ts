/**
 * The access log as an operator reads it: the real `fibergate run` process writing one line per
 * request to stdout, in each format.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { request, startUpstream } from "../support/harness.ts"
import { fetchWhenUp, oneRouteConfig, spawnCli, tempFile, type Cli } from "../support/cli.ts"
import { freePort } from "../support/net.ts"
import { getRequest, openConnection } from "../support/connection.ts"
import { awaitSignal, fire, signal } from "../support/signals.ts"

const configText = (port: number, upstream: string, format: "json" | "text") =>
  oneRouteConfig({
    port,
    upstream,
    name: "edge",
    head: [`log: { level: warn, format: ${format}, access_log: true }`],
    routes: "[{ id: items, match: { path: { prefix: /items } }, upstream: app }]"
  })

/** Waits (bounded) until the process has written `n` lines matching `pattern` to stdout. */
const linesOf = (cli: Cli, pattern: RegExp, n: number) =>
  Effect.promise(async () => {
    const deadline = Date.now() + 5000
    const matching = () => cli.stdout().split("\n").filter((l) => pattern.test(l))
    while (matching().length < n && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10))
    return matching()
  })


describe("access log (fibergate run)", () => {
  it.live("writes one JSON line per request to stdout with route, sizes, upstream, attempts, client, user agent and trace id", () =>
    Effect.gen(function*() {
      const upstream = yield* startUpstream("logged")
      const port = yield* freePort
      const cli = yield* spawnCli(["run", "-c", yield* tempFile("log.yaml", configText(port, upstream.url, "json"))])
      yield* fetchWhenUp(cli, `http://127.0.0.1:${port}/warmup`)
      const traceId = "4bf92f3577b34da6a3ce929d0e0e4736"
      const res = yield* request(`http://127.0.0.1:${port}/items/1`, {
        method: "POST",
        body: "hello",
        headers: { "user-agent": "log-test/1", traceparent: `00-${traceId}-00f067aa0ba902b7-00` }
      })
      assert.strictEqual(res.status, 200)
      const [line] = yield* linesOf(cli, /"path":"\/items\/1"/, 1)
      const entry = JSON.parse(line)
      assert.deepInclude(entry, {
        listener: "edge",
        route: "items",
        method: "POST",
        path: "/items/1",
        status: 200,
        bytes_in: 5,
        bytes_out: Buffer.byteLength(res.body),
        upstream: upstream.url,
        attempts: 1,
        client_ip: "127.0.0.1",
        user_agent: "log-test/1",
        trace_id: traceId
      })
      assert.isTrue(entry.duration_ms > 0)
      // A request the gateway answers itself is logged too, with its error and no upstream.
      const notFound = yield* request(`http://127.0.0.1:${port}/nothing-here`)
      assert.strictEqual(notFound.status, 404)
      const [missed] = yield* linesOf(cli, /"path":"\/nothing-here"/, 1)
      assert.deepInclude(JSON.parse(missed), { route: "-", status: 404, upstream: "-", attempts: 0, error: "RouteNotFound" })
    }))

  it.live("writes the combined log format plus route and duration in the text format", () =>
    Effect.gen(function*() {
      const upstream = yield* startUpstream("logged-text")
      const port = yield* freePort
      const cli = yield* spawnCli(["run", "-c", yield* tempFile("log.yaml", configText(port, upstream.url, "text"))])
      yield* fetchWhenUp(cli, `http://127.0.0.1:${port}/warmup`)
      const res = yield* request(`http://127.0.0.1:${port}/items/2?q=1`, { headers: { "user-agent": "ua", referer: "http://r/" } })
      const [line] = yield* linesOf(cli, /items\/2/, 1)
      assert.match(
        line,
        new RegExp(
          `^127\\.0\\.0\\.1 - - \\[[^\\]]+\\] "GET /items/2\\?q=1 HTTP/1\\.1" 200 ${Buffer.byteLength(res.body)} "http://r/" "ua" listener=edge route=items duration_ms=\\d+\\.\\d{3} upstream=${
            upstream.url.replace(/\./g, "\\.")
          } attempts=1 bytes_in=0 trace_id=-$`
        )
      )
    }))

  it.live("a client that disconnects before the upstream answers is logged with status 499 and error ClientClosed, and its upstream request is aborted", () =>
    Effect.gen(function*() {
      const arrived = signal()
      const upstreamClosed = signal<boolean>()
      const upstream = yield* startUpstream("logged-hang", {
        rawHandler: (req, res) => {
          if (req.url !== "/items/hang") {
            res.writeHead(200, { "content-length": "2" })
            return res.end("ok")
          }
          // Never answers; tells when the gateway gave the request up.
          res.on("close", () => fire(upstreamClosed, !res.writableEnded))
          fire(arrived, undefined)
        }
      })
      const port = yield* freePort
      const cli = yield* spawnCli(["run", "-c", yield* tempFile("log.yaml", configText(port, upstream.url, "json"))])
      yield* fetchWhenUp(cli, `http://127.0.0.1:${port}/warmup`)
      const client = yield* openConnection(port)
      yield* client.write(getRequest("/items/hang", "User-Agent: leaves-early\r\n"))
      yield* awaitSignal(arrived).pipe(Effect.timeout("5 seconds"))
      client.socket.destroy()
      assert.isTrue(yield* awaitSignal(upstreamClosed).pipe(Effect.timeout("5 seconds")), "the upstream request is aborted unanswered")
      const [line] = yield* linesOf(cli, /"path":"\/items\/hang"/, 1)
      assert.isDefined(line, `no access log line for the abandoned request:\n${cli.stdout()}`)
      const entry = JSON.parse(line)
      assert.deepInclude(entry, {
        listener: "edge",
        route: "items",
        method: "GET",
        path: "/items/hang",
        status: 499,
        error: "ClientClosed",
        upstream: upstream.url,
        attempts: 1,
        bytes_out: 0,
        user_agent: "leaves-early"
      })
    }))
})
