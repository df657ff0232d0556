/**
 * Tracing claims of the README not pinned elsewhere, on a real gateway exporting to a real
 * OTLP/HTTP receiver: every attribute it names, which spans are errors (a 404 try is, its server
 * span is not), each malformed `traceparent` form it lists, `sample_ratio` following a reload,
 * `otlp_endpoint` not, the default `service_name`, and the trace id in the access log of sampled
 * and unsampled requests alike.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { vi } from "vitest"
import { eventually, startOtlpReceiver, type OtlpReceiver, type ReceivedSpan } from "../support/otlp.ts"
import { request, simpleConfig, startGateway, startUpstream, type SeenRequest } from "../support/harness.ts"
import { raw } from "../support/net.ts"

const CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
const CLIENT_SPAN = "00f067aa0ba902b7"
const SERVER = 2
const CLIENT = 3
const ERROR = 2

const tracedConfig = (upstreams: ReadonlyArray<string>, otlp: string, tracing: Record<string, unknown> = {}) => ({
  ...simpleConfig(upstreams),
  telemetry: { tracing: { otlp_endpoint: otlp, export_interval: "20ms", ...tracing } }
})

const traceparentOf = (seen: SeenRequest) => seen.headers["traceparent"] as string | undefined

/** The spans of the request whose server span has `url.path` = path: the server span and its tries. */
const spansOf = (receiver: OtlpReceiver, path: string) => {
  const server = receiver.spans.find((s) => s.kind === SERVER && s.attributes["url.path"] === path)
  const tries = server === undefined ? [] : receiver.spans.filter((s) => s.kind === CLIENT && s.parentSpanId === server.spanId)
  return { server, tries }
}

/** Waits until the request to `path` has its server span and `tries` client spans exported. */
const exported = (receiver: OtlpReceiver, path: string, tries = 1) =>
  Effect.gen(function*() {
    assert.isTrue(yield* eventually(() => spansOf(receiver, path).tries.length >= tries), `the spans of ${path} are exported`)
    const { server, tries: clients } = spansOf(receiver, path)
    return { server: server as ReceivedSpan, tries: clients }
  })

describe("tracing: attributes and errors", () => {
  it.live("server spans carry url.scheme and client.address, client spans server.port, url.full and fibergate.upstream", () =>
    Effect.gen(function*() {
      const receiver = yield* startOtlpReceiver
      const upstream = yield* startUpstream("attrs")
      const gateway = yield* startGateway(tracedConfig([upstream.url], receiver.url))
      assert.strictEqual((yield* request(gateway.url("/attrs?q=1"))).status, 200)
      const { server, tries } = yield* exported(receiver, "/attrs")
      assert.deepInclude(server.attributes, {
        "http.request.method": "GET",
        "http.route": "all",
        "url.path": "/attrs",
        "url.scheme": "http",
        "server.address": "127.0.0.1",
        "client.address": "127.0.0.1",
        "http.response.status_code": 200,
        "fibergate.listener": "web"
      })
      assert.deepInclude(tries[0].attributes, {
        "http.request.method": "GET",
        "server.address": "127.0.0.1",
        "server.port": upstream.port,
        "url.full": `${upstream.url}/attrs?q=1`,
        "fibergate.upstream": "app",
        "http.response.status_code": 200
      })
      assert.deepStrictEqual([server.status === ERROR, tries[0].status === ERROR], [false, false])
    }))

  it.live("behind a trusted proxy, client.address is the client X-Forwarded-For names", () =>
    Effect.gen(function*() {
      const receiver = yield* startOtlpReceiver
      const upstream = yield* startUpstream("behind")
      const config = tracedConfig([upstream.url], receiver.url)
      const gateway = yield* startGateway({ ...config, servers: [{ ...config.servers[0], trusted_proxies: ["127.0.0.1"] }] })
      assert.strictEqual((yield* request(gateway.url("/behind"), { headers: { "x-forwarded-for": "203.0.113.7" } })).status, 200)
      const { server } = yield* exported(receiver, "/behind")
      assert.strictEqual(server.attributes["client.address"], "203.0.113.7")
    }))

  it.live("a try answered 404 is an error client span (error.type 404); its server span is not an error, being below 500", () =>
    Effect.gen(function*() {
      const receiver = yield* startOtlpReceiver
      const upstream = yield* startUpstream("missing", {
        handler: (_req, res) => {
          res.writeHead(404, { "content-length": "2" })
          res.end("no")
        }
      })
      const gateway = yield* startGateway(tracedConfig([upstream.url], receiver.url))
      assert.strictEqual((yield* request(gateway.url("/gone"))).status, 404)
      const { server, tries } = yield* exported(receiver, "/gone")
      assert.strictEqual(tries[0].status, ERROR)
      assert.deepInclude(tries[0].attributes, { "http.response.status_code": 404, "error.type": "404" })
      assert.notStrictEqual(server.status, ERROR)
      assert.strictEqual(server.attributes["http.response.status_code"], 404)
      assert.isUndefined(server.attributes["error.type"])
    }))
})

describe("tracing: attributes a request may not have", () => {
  it.live("an HTTP/1.0 request with neither Host nor User-Agent: no server.address, no user_agent.original, protocol version 1.0", () =>
    Effect.gen(function*() {
      const receiver = yield* startOtlpReceiver
      const upstream = yield* startUpstream("bare")
      const gateway = yield* startGateway(tracedConfig([upstream.url], receiver.url))
      assert.strictEqual((yield* raw(gateway.port, "GET /bare HTTP/1.0\r\n\r\n", { untilClose: true })).status, 200)
      assert.strictEqual((yield* request(gateway.url("/full"), { headers: { "user-agent": "probe/2" } })).status, 200)
      const bare = (yield* exported(receiver, "/bare")).server
      assert.notProperty(bare.attributes, "server.address")
      assert.notProperty(bare.attributes, "user_agent.original")
      assert.strictEqual(bare.attributes["network.protocol.version"], "1.0")
      const full = (yield* exported(receiver, "/full")).server
      assert.strictEqual(full.attributes["server.address"], "127.0.0.1")
      assert.strictEqual(full.attributes["user_agent.original"], "probe/2")
      assert.strictEqual(full.attributes["network.protocol.version"], "1.1")
    }))
})

describe("tracing: which spans are errors, at the status boundaries", () => {
  it.live("a try answered 400 is an error client span (error.type 400); a 500 makes the server span an error too, without an error.type", () =>
    Effect.gen(function*() {
      const receiver = yield* startOtlpReceiver
      const upstream = yield* startUpstream("statuses", {
        handler: (req, res) => {
          res.writeHead(Number(req.url?.slice(1)), { "content-length": "0" })
          res.end()
        }
      })
      const gateway = yield* startGateway(tracedConfig([upstream.url], receiver.url))
      assert.strictEqual((yield* request(gateway.url("/400"))).status, 400)
      assert.strictEqual((yield* request(gateway.url("/500"))).status, 500)
      const bad = yield* exported(receiver, "/400")
      assert.strictEqual(bad.tries[0].status, ERROR)
      assert.strictEqual(bad.tries[0].attributes["error.type"], "400")
      assert.notStrictEqual(bad.server.status, ERROR)
      const failed = yield* exported(receiver, "/500")
      assert.strictEqual(failed.tries[0].status, ERROR)
      assert.strictEqual(failed.tries[0].attributes["error.type"], "500")
      assert.strictEqual(failed.server.status, ERROR)
      assert.strictEqual(failed.server.attributes["http.response.status_code"], 500)
      assert.notProperty(failed.server.attributes, "error.type")
    }))

  it.live("a response cut after its head (the upstream reset mid-body): the server span is an error, with no status code 0", () =>
    Effect.gen(function*() {
      const receiver = yield* startOtlpReceiver
      const upstream = yield* startUpstream("cut", {
        rawHandler: (req, res) => {
          req.resume()
          res.writeHead(200, { "content-length": "100" })
          res.write("0123456789")
          setTimeout(() => res.socket?.destroy(), 20)
        }
      })
      const gateway = yield* startGateway(tracedConfig([upstream.url], receiver.url))
      yield* Effect.promise(() => fetch(gateway.url("/cut")).then((r) => r.text()).catch(() => "cut"))
      const { server } = yield* exported(receiver, "/cut")
      assert.strictEqual(server.status, ERROR)
      assert.strictEqual(server.attributes["error.type"], "UpstreamReset")
      assert.notStrictEqual(server.attributes["http.response.status_code"], 0)
    }))

  it.live("a client that leaves while its try waits: the try's span ends as ClientClosed", () =>
    Effect.gen(function*() {
      const receiver = yield* startOtlpReceiver
      let arrived: () => void = () => {}
      const reached = new Promise<void>((resolve) => (arrived = resolve))
      const upstream = yield* startUpstream("hold", { rawHandler: () => arrived() })
      const gateway = yield* startGateway(tracedConfig([upstream.url], receiver.url))
      const controller = new AbortController()
      const pending = fetch(gateway.url("/left"), { signal: controller.signal }).catch(() => undefined)
      yield* Effect.promise(() => reached)
      controller.abort()
      yield* Effect.promise(() => pending)
      const { server, tries } = yield* exported(receiver, "/left")
      assert.strictEqual(tries[0].attributes["error.type"], "ClientClosed")
      assert.strictEqual(server.attributes["error.type"], "ClientClosed")
    }))
})

describe("tracing: W3C Trace Context", () => {
  const malformed: ReadonlyArray<readonly [what: string, traceparent: string]> = [
    ["a trace id one digit short (wrong length)", `00-${CLIENT_TRACE.slice(1)}-${CLIENT_SPAN}-01`],
    ["a parent id one digit long (wrong length)", `00-${CLIENT_TRACE}-${CLIENT_SPAN}0-01`],
    ["upper-case hex", `00-${CLIENT_TRACE.toUpperCase()}-${CLIENT_SPAN.toUpperCase()}-01`],
    ["an all-zero trace id", `00-${"0".repeat(32)}-${CLIENT_SPAN}-01`],
    ["an all-zero parent id", `00-${CLIENT_TRACE}-${"0".repeat(16)}-01`],
    ["version ff", `ff-${CLIENT_TRACE}-${CLIENT_SPAN}-01`]
  ]

  it.live("malformed traceparent values are not continued: each request starts its own trace, with no parent", () =>
    Effect.gen(function*() {
      const receiver = yield* startOtlpReceiver
      const upstream = yield* startUpstream("malformed")
      const gateway = yield* startGateway(tracedConfig([upstream.url], receiver.url))
      // Control: the well-formed value is continued.
      yield* request(gateway.url("/ok"), { headers: { traceparent: `00-${CLIENT_TRACE}-${CLIENT_SPAN}-01` } })
      const control = yield* exported(receiver, "/ok")
      assert.deepStrictEqual([control.server.traceId, control.server.parentSpanId], [CLIENT_TRACE, CLIENT_SPAN])
      for (const [i, [what, traceparent]] of malformed.entries()) {
        yield* request(gateway.url(`/m${i}`), { headers: { traceparent } })
        const { server, tries } = yield* exported(receiver, `/m${i}`)
        assert.isUndefined(server.parentSpanId, what)
        assert.notStrictEqual(server.traceId, CLIENT_TRACE, what)
        assert.notStrictEqual(server.traceId, "0".repeat(32), what)
        assert.strictEqual(traceparentOf(upstream.seen[i + 1]), `00-${server.traceId}-${tries[0].spanId}-01`, what)
      }
    }))

  it.live("sample_ratio follows a reload (0, then 1, then 0); tracestate passes through untouched either way", () =>
    Effect.gen(function*() {
      const receiver = yield* startOtlpReceiver
      const upstream = yield* startUpstream("ratio-reload")
      const config = tracedConfig([upstream.url], receiver.url, { sample_ratio: 0 })
      const gateway = yield* startGateway(config)
      const withRatio = (sample_ratio: number) =>
        Effect.gen(function*() {
          const res = yield* request(`http://127.0.0.1:${gateway.adminPort}/config`, {
            method: "PUT",
            body: JSON.stringify({ ...config, telemetry: { tracing: { ...config.telemetry.tracing, sample_ratio } } })
          })
          assert.strictEqual(res.status, 200, res.body)
        })
      const headers = { tracestate: "vendor=abc,other=1" }
      yield* request(gateway.url("/r0"), { headers })
      yield* withRatio(1)
      yield* request(gateway.url("/r1"), { headers })
      yield* withRatio(0)
      yield* request(gateway.url("/r2"), { headers })
      assert.deepStrictEqual(upstream.seen.map((s) => traceparentOf(s)?.slice(-2)), ["00", "01", "00"])
      assert.deepStrictEqual(upstream.seen.map((s) => s.headers["tracestate"]), Array(3).fill("vendor=abc,other=1"))
      const { server } = yield* exported(receiver, "/r1")
      assert.strictEqual(server.traceId, traceparentOf(upstream.seen[1])!.slice(3, 35))
      assert.deepStrictEqual(receiver.spans.filter((s) => s.kind === SERVER).map((s) => s.attributes["url.path"]), ["/r1"])
    }))
})

describe("tracing: otlp_endpoint and service_name", () => {
  it.live("a reload that changes otlp_endpoint does not move the export (that takes a restart): spans still go to the first collector", () =>
    Effect.gen(function*() {
      const first = yield* startOtlpReceiver
      const second = yield* startOtlpReceiver
      const upstream = yield* startUpstream("moved")
      const config = tracedConfig([upstream.url], first.url)
      const gateway = yield* startGateway(config)
      const put = yield* request(`http://127.0.0.1:${gateway.adminPort}/config`, {
        method: "PUT",
        body: JSON.stringify({ ...config, telemetry: { tracing: { ...config.telemetry.tracing, otlp_endpoint: second.url } } })
      })
      assert.strictEqual(put.status, 200)
      assert.strictEqual((yield* request(gateway.url("/after-reload"))).status, 200)
      yield* exported(first, "/after-reload")
      assert.strictEqual(second.requests(), 0)
    }))

  it.live("without service_name the spans' resource is service.name fibergate", () =>
    Effect.gen(function*() {
      const receiver = yield* startOtlpReceiver
      const upstream = yield* startUpstream("named")
      const gateway = yield* startGateway(tracedConfig([upstream.url], receiver.url))
      yield* request(gateway.url("/named"))
      const { server, tries } = yield* exported(receiver, "/named")
      assert.deepStrictEqual([server.serviceName, tries[0].serviceName], ["fibergate", "fibergate"])
    }))
})

describe("tracing and the access log", () => {
  it.live("the access log carries the trace id of every request, sampled (the exported trace) or not (the one sent upstream)", () =>
    Effect.gen(function*() {
      const receiver = yield* startOtlpReceiver
      const upstream = yield* startUpstream("logged")
      const lines: Array<string> = []
      const write = process.stdout.write.bind(process.stdout)
      const spy = vi.spyOn(process.stdout, "write").mockImplementation((chunk: string | Uint8Array, ...rest: Array<unknown>) => {
        const text = String(chunk)
        if (text.startsWith("{\"time\"")) {
          lines.push(text)
          return true
        }
        return (write as (c: string | Uint8Array, ...r: Array<unknown>) => boolean)(chunk, ...rest)
      })
      yield* Effect.addFinalizer(() => Effect.sync(() => spy.mockRestore()))
      const gateway = yield* startGateway({
        ...tracedConfig([upstream.url], receiver.url, { sample_ratio: 0 }),
        log: { level: "none", access_log: true }
      })
      // Unsampled, no traceparent: the gateway's own (unsampled) trace id, as sent upstream.
      yield* request(gateway.url("/unsampled"))
      // The client's sampled traceparent is followed: its trace id, exported.
      yield* request(gateway.url("/sampled"), { headers: { traceparent: `00-${CLIENT_TRACE}-${CLIENT_SPAN}-01` } })
      const { server } = yield* exported(receiver, "/sampled")
      const logged = (path: string) => {
        const line = lines.map((l) => JSON.parse(l)).find((entry) => entry.path === path)
        return line?.trace_id ?? assert.fail(`no access log line for ${path}: ${lines.join("")}`)
      }
      assert.strictEqual(logged("/unsampled"), traceparentOf(upstream.seen[0])!.slice(3, 35))
      assert.match(logged("/unsampled"), /^[0-9a-f]{32}$/)
      assert.strictEqual(logged("/sampled"), CLIENT_TRACE)
      assert.strictEqual(server.traceId, CLIENT_TRACE)
    }))
})
