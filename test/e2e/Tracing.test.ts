import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { connect } from "node:net"
import * as Gateway from "../../src/gateway/Gateway.ts"
import { eventually as until, startLiveGateway } from "../support/liveGateway.ts"
import { eventually, startOtlpReceiver, startOtlpReceiverWith, type ReceivedSpan } from "../support/otlp.ts"
import { request, simpleConfig, startGateway, startUpstream } from "../support/harness.ts"
import { freePort } from "../support/net.ts"
import { countBefore, hasSeries, scrapeAdmin, series, type Scrape } from "../support/prometheus.ts"

const CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
const CLIENT_SPAN = "00f067aa0ba902b7"
const SERVER = 2
const CLIENT = 3

const tracedConfig = (upstreams: ReadonlyArray<string>, otlp: string, tracing: Record<string, unknown> = {}, route: Record<string, unknown> = {}) => ({
  ...simpleConfig(upstreams, route),
  telemetry: { tracing: { otlp_endpoint: otlp, export_interval: "20ms", service_name: "edge-test", ...tracing } }
})

const traceparentOf = (headers: Record<string, unknown>): string | undefined => headers["traceparent"] as string | undefined

const FAILURES = "fibergate_tracing_export_failures_total"

/**
 * Whether the export-failure counter for `reason` grew by at least `by` since `before`. The
 * series must be present after; before, it is either present or provably absent (never counted
 * in this process yet), which `countBefore` checks on the parsed scrape.
 */
const failuresGrew = (before: Scrape, reason: string, by: number, adminPort: number | undefined) =>
  Effect.map(scrapeAdmin(adminPort), (after) =>
    hasSeries(after, FAILURES, { reason }) && series(after, FAILURES, { reason }) - countBefore(before, FAILURES, { reason }) >= by)

describe("tracing", () => {
  it.live("a sampled request makes a server span continuing the client's trace and a client span that goes upstream as the parent", () =>
    Effect.gen(function*() {
      const receiver = yield* startOtlpReceiver
      const upstream = yield* startUpstream("traced")
      const gateway = yield* startGateway(tracedConfig([upstream.url], receiver.url))
      const res = yield* request(gateway.url("/items/7?x=1"), {
        headers: { traceparent: `00-${CLIENT_TRACE}-${CLIENT_SPAN}-01`, tracestate: "vendor=abc", "user-agent": "trace-test" }
      })
      assert.strictEqual(res.status, 200)
      assert.isTrue(yield* eventually(() => receiver.spans.length >= 2))
      const server = receiver.spans.find((s) => s.kind === SERVER)!
      const client = receiver.spans.find((s) => s.kind === CLIENT)!
      assert.strictEqual(server.serviceName, "edge-test")
      assert.strictEqual(server.name, "GET all")
      assert.strictEqual(server.traceId, CLIENT_TRACE)
      assert.strictEqual(server.parentSpanId, CLIENT_SPAN)
      assert.deepInclude(server.attributes, {
        "http.request.method": "GET",
        "http.route": "all",
        "http.response.status_code": 200,
        "server.address": "127.0.0.1",
        "url.path": "/items/7",
        "user_agent.original": "trace-test",
        "fibergate.listener": "web"
      })
      assert.strictEqual(server.status, 1)
      assert.strictEqual(client.traceId, CLIENT_TRACE)
      assert.strictEqual(client.parentSpanId, server.spanId)
      assert.strictEqual(client.name, "GET")
      assert.deepInclude(client.attributes, {
        "http.request.method": "GET",
        "http.response.status_code": 200,
        "server.address": "127.0.0.1",
        "server.port": upstream.port,
        "url.full": `${upstream.url}/items/7?x=1`
      })
      assert.isTrue(client.startTimeUnixNano >= server.startTimeUnixNano && client.endTimeUnixNano <= server.endTimeUnixNano)
      // The upstream sees the client span as its parent, and the client's tracestate untouched.
      const seen = upstream.seen[0]
      assert.strictEqual(traceparentOf(seen.headers), `00-${CLIENT_TRACE}-${client.spanId}-01`)
      assert.strictEqual(seen.headers["tracestate"], "vendor=abc")
      assert.strictEqual(seen.rawHeaders.filter((h) => h.toLowerCase() === "traceparent").length, 1)
    }))

  it.live("a request without traceparent starts a new trace when sampled", () =>
    Effect.gen(function*() {
      const receiver = yield* startOtlpReceiver
      const upstream = yield* startUpstream("root")
      const gateway = yield* startGateway(tracedConfig([upstream.url], receiver.url))
      assert.strictEqual((yield* request(gateway.url("/a"))).status, 200)
      assert.isTrue(yield* eventually(() => receiver.spans.length >= 2))
      const server = receiver.spans.find((s) => s.kind === SERVER)!
      assert.isUndefined(server.parentSpanId)
      assert.match(server.traceId, /^[0-9a-f]{32}$/)
      assert.notStrictEqual(server.traceId, "0".repeat(32))
      const client = receiver.spans.find((s) => s.kind === CLIENT)!
      assert.strictEqual(traceparentOf(upstream.seen[0].headers), `00-${server.traceId}-${client.spanId}-01`)
    }))

  it.live("retries are sibling client spans under one server span, the retry counting its resend", () =>
    Effect.gen(function*() {
      const receiver = yield* startOtlpReceiver
      let calls = 0
      const flaky = yield* startUpstream("flaky", {
        handler: (_req, res) => {
          calls++
          res.writeHead(calls === 1 ? 503 : 200, { "content-length": "2" })
          res.end("ok")
        }
      })
      const gateway = yield* startGateway(
        tracedConfig([flaky.url], receiver.url, {}, { retry: { attempts: 3, on: [503], backoff: { base: "1ms", max: "1ms" } } })
      )
      assert.strictEqual((yield* request(gateway.url("/r"))).status, 200)
      assert.isTrue(yield* eventually(() => receiver.spans.length >= 3))
      const server = receiver.spans.find((s) => s.kind === SERVER)!
      const tries = receiver.spans.filter((s) => s.kind === CLIENT).sort((a, b) => Number(a.startTimeUnixNano - b.startTimeUnixNano))
      assert.strictEqual(tries.length, 2)
      for (const t of tries) assert.strictEqual(t.parentSpanId, server.spanId)
      assert.strictEqual(tries[0].attributes["http.response.status_code"], 503)
      assert.strictEqual(tries[0].status, 2, "a 503 try is an error")
      assert.isUndefined(tries[0].attributes["http.request.resend_count"])
      assert.strictEqual(tries[1].attributes["http.request.resend_count"], 1)
      assert.strictEqual(tries[1].attributes["http.response.status_code"], 200)
      // Each try carried its own span as the upstream's parent.
      assert.deepStrictEqual(
        flaky.seen.map((s) => traceparentOf(s.headers)),
        tries.map((t) => `00-${server.traceId}-${t.spanId}-01`)
      )
      assert.strictEqual(server.attributes["http.response.status_code"], 200)
    }))

  it.live("a failed request's spans carry the gateway error, and a 5xx server span is an error", () =>
    Effect.gen(function*() {
      const receiver = yield* startOtlpReceiver
      const gateway = yield* startGateway(tracedConfig(["http://127.0.0.1:1"], receiver.url))
      assert.strictEqual((yield* request(gateway.url("/down"))).status, 502)
      assert.isTrue(yield* eventually(() => receiver.spans.length >= 2))
      const server = receiver.spans.find((s) => s.kind === SERVER)!
      const client = receiver.spans.find((s) => s.kind === CLIENT)!
      assert.strictEqual(server.attributes["http.response.status_code"], 502)
      assert.strictEqual(server.attributes["error.type"], "UpstreamConnectError")
      assert.strictEqual(server.status, 2)
      assert.strictEqual(client.attributes["error.type"], "UpstreamConnectError")
      assert.strictEqual(client.status, 2)
      // The try got no response: its span has no status code (not a 0).
      assert.notProperty(client.attributes, "http.response.status_code")
    }))

  it.live("sample_ratio 0 exports nothing and passes the client's traceparent through untouched", () =>
    Effect.gen(function*() {
      const receiver = yield* startOtlpReceiver
      const upstream = yield* startUpstream("unsampled")
      const gateway = yield* startGateway(tracedConfig([upstream.url], receiver.url, { sample_ratio: 0 }))
      const unsampledParent = `00-${CLIENT_TRACE}-${CLIENT_SPAN}-00`
      for (let i = 0; i < 20; i++) assert.strictEqual((yield* request(gateway.url(`/n${i}`))).status, 200)
      assert.strictEqual((yield* request(gateway.url("/p"), { headers: { traceparent: unsampledParent } })).status, 200)
      // Give an export interval many times over the chance to (wrongly) send something.
      assert.isFalse(yield* eventually(() => receiver.requests() > 0, 300))
      assert.strictEqual(receiver.spans.length, 0)
      assert.isTrue(upstream.seen.slice(0, 20).every((s) => traceparentOf(s.headers)?.endsWith("-00")))
      assert.strictEqual(traceparentOf(upstream.seen[20].headers), unsampledParent)
    }))

  it.live("a client's sampled traceparent is followed even at sample_ratio 0 (parent-based sampling)", () =>
    Effect.gen(function*() {
      const receiver = yield* startOtlpReceiver
      const upstream = yield* startUpstream("parent-based")
      const gateway = yield* startGateway(tracedConfig([upstream.url], receiver.url, { sample_ratio: 0 }))
      yield* request(gateway.url("/s"), { headers: { traceparent: `00-${CLIENT_TRACE}-${CLIENT_SPAN}-01` } })
      assert.isTrue(yield* eventually(() => receiver.spans.length >= 2))
      assert.isTrue(receiver.spans.every((s: ReceivedSpan) => s.traceId === CLIENT_TRACE))
    }))

  it.live("a malformed traceparent is not continued: the request starts its own trace", () =>
    Effect.gen(function*() {
      const receiver = yield* startOtlpReceiver
      const upstream = yield* startUpstream("malformed")
      const gateway = yield* startGateway(tracedConfig([upstream.url], receiver.url))
      yield* request(gateway.url("/m"), { headers: { traceparent: `00-${"0".repeat(32)}-${CLIENT_SPAN}-01` } })
      assert.isTrue(yield* eventually(() => receiver.spans.length >= 2))
      const server = receiver.spans.find((s) => s.kind === SERVER)!
      assert.isUndefined(server.parentSpanId)
      assert.notStrictEqual(server.traceId, "0".repeat(32))
      assert.match(traceparentOf(upstream.seen[0].headers)!, new RegExp(`^00-${server.traceId}-[0-9a-f]{16}-01$`))
    }))

  it.live("a ratio between 0 and 1 samples about that share of new traces", () =>
    Effect.gen(function*() {
      const receiver = yield* startOtlpReceiver
      const upstream = yield* startUpstream("ratio")
      const gateway = yield* startGateway(tracedConfig([upstream.url], receiver.url, { sample_ratio: 0.25 }))
      const n = 400
      for (let i = 0; i < n; i++) yield* request(gateway.url(`/r${i}`))
      const traced = upstream.seen.filter((s) => traceparentOf(s.headers)?.endsWith("-01")).length
      // Binomial(400, 0.25): mean 100, sd ≈ 8.7; ±5 sd.
      assert.isTrue(traced > 56 && traced < 144, `traced ${traced} of ${n}`)
      assert.isTrue(yield* eventually(() => receiver.spans.filter((s) => s.kind === SERVER).length === traced))
    }))

  it.live("an unsampled request still sends the upstream a traceparent, flagged not sampled, with a fresh trace id", () =>
    Effect.gen(function*() {
      const receiver = yield* startOtlpReceiver
      const upstream = yield* startUpstream("unsampled-new")
      const gateway = yield* startGateway(tracedConfig([upstream.url], receiver.url, { sample_ratio: 0 }))
      yield* request(gateway.url("/a"))
      yield* request(gateway.url("/b"))
      const sent = upstream.seen.map((s) => traceparentOf(s.headers) ?? "")
      for (const t of sent) assert.match(t, /^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/)
      assert.notStrictEqual(sent[0].slice(3, 35), sent[1].slice(3, 35), "each request has its own trace id")
      assert.isFalse(yield* eventually(() => receiver.requests() > 0, 200))
    }))

  it.live("a client that aborts while its buffered body is read still ends the server span (ClientClosed, exported once)", () =>
    Effect.gen(function*() {
      const receiver = yield* startOtlpReceiver
      const upstream = yield* startUpstream("never-reached")
      const gateway = yield* startGateway(
        tracedConfig([upstream.url], receiver.url, {}, { retry: { methods: ["PUT"], buffer_bytes: 4096 } })
      )
      yield* Effect.callback<void>((resume) => {
        const socket = connect(gateway.port, "127.0.0.1", () => {
          socket.write("PUT /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n0123456789")
          setTimeout(() => {
            socket.destroy()
            resume(Effect.void)
          }, 50)
        })
      })
      assert.isTrue(yield* eventually(() => receiver.spans.length >= 1))
      assert.isFalse(yield* eventually(() => receiver.spans.length > 1, 200), "exported exactly once")
      const [server] = receiver.spans
      assert.strictEqual(server.kind, SERVER)
      assert.strictEqual(server.attributes["error.type"], "ClientClosed")
      assert.strictEqual(upstream.seen.length, 0)
    }))

  it.live("the route timeout ends the try's client span and the server span with UpstreamTimeout", () =>
    Effect.gen(function*() {
      const receiver = yield* startOtlpReceiver
      const hung = yield* startUpstream("hung", { rawHandler: () => undefined })
      const gateway = yield* startGateway(tracedConfig([hung.url], receiver.url, {}, { timeout: "100ms" }))
      assert.strictEqual((yield* request(gateway.url("/slow"))).status, 504)
      assert.isTrue(yield* eventually(() => receiver.spans.length >= 2))
      const server = receiver.spans.find((s) => s.kind === SERVER)!
      const client = receiver.spans.find((s) => s.kind === CLIENT)!
      assert.strictEqual(server.attributes["error.type"], "UpstreamTimeout")
      assert.strictEqual(server.attributes["http.response.status_code"], 504)
      assert.strictEqual(client.attributes["error.type"], "UpstreamTimeout")
      assert.strictEqual(client.parentSpanId, server.spanId)
    }))

  it.live("a per-try timeout then a retry: one client span per try, each exported once", () =>
    Effect.gen(function*() {
      const receiver = yield* startOtlpReceiver
      let calls = 0
      const slowFirst = yield* startUpstream("slow-first", {
        rawHandler: (_req, res) => {
          if (++calls === 1) return
          res.end("ok")
        }
      })
      const gateway = yield* startGateway(
        tracedConfig([slowFirst.url], receiver.url, {}, { retry: { attempts: 2, per_try_timeout: "100ms", backoff: { base: "1ms", max: "1ms" } } })
      )
      assert.strictEqual((yield* request(gateway.url("/t"))).status, 200)
      assert.isTrue(yield* eventually(() => receiver.spans.length >= 3))
      assert.isFalse(yield* eventually(() => receiver.spans.length > 3, 200), "no span exported twice")
      const server = receiver.spans.find((s) => s.kind === SERVER)!
      const tries = receiver.spans.filter((s) => s.kind === CLIENT).sort((a, b) => Number(a.startTimeUnixNano - b.startTimeUnixNano))
      assert.deepStrictEqual(tries.map((t) => t.attributes["error.type"]), ["UpstreamResponseTimeout", undefined])
      assert.deepStrictEqual(tries.map((t) => t.parentSpanId), [server.spanId, server.spanId])
      assert.strictEqual(new Set(receiver.spans.map((s) => s.spanId)).size, 3)
    }))

  it.live("a reload that removes the OTLP endpoint stops tracing; the client's traceparent passes through again", () =>
    Effect.gen(function*() {
      const receiver = yield* startOtlpReceiver
      const upstream = yield* startUpstream("reloaded")
      const config = tracedConfig([upstream.url], receiver.url, { sample_ratio: 1 })
      const gateway = yield* startGateway(config)
      yield* request(gateway.url("/before"))
      assert.isTrue(yield* eventually(() => receiver.spans.length >= 2))
      const put = yield* request(`http://127.0.0.1:${gateway.adminPort}/config`, {
        method: "PUT",
        body: JSON.stringify({ ...config, telemetry: { tracing: { otlp_endpoint: null } } })
      })
      assert.strictEqual(put.status, 200)
      const spansBefore = receiver.spans.length
      const parent = `00-${CLIENT_TRACE}-${CLIENT_SPAN}-01`
      yield* request(gateway.url("/after"), { headers: { traceparent: parent } })
      assert.strictEqual(traceparentOf(upstream.seen[1].headers), parent)
      assert.isFalse(yield* eventually(() => receiver.spans.length > spansBefore, 200))
    }))

  it.live("an otlp_endpoint without a path exports to /v1/traces, as OTLP's base URL does", () =>
    Effect.gen(function*() {
      const receiver = yield* startOtlpReceiver
      const upstream = yield* startUpstream("base-url")
      const gateway = yield* startGateway(tracedConfig([upstream.url], receiver.origin))
      assert.strictEqual((yield* request(gateway.url("/base"))).status, 200)
      assert.isTrue(yield* eventually(() => receiver.spans.length >= 2), `spans arrive (targets: ${receiver.targets.join(", ")})`)
      assert.deepStrictEqual([...new Set(receiver.targets)], ["/v1/traces"])
    }))

  it.live("an otlp_endpoint with a path exports to exactly that path", () =>
    Effect.gen(function*() {
      const receiver = yield* startOtlpReceiverWith({ path: "/custom/traces" })
      const upstream = yield* startUpstream("custom-path")
      const gateway = yield* startGateway(tracedConfig([upstream.url], receiver.url))
      assert.strictEqual(receiver.url, `${receiver.origin}/custom/traces`)
      assert.strictEqual((yield* request(gateway.url("/custom"))).status, 200)
      assert.isTrue(yield* eventually(() => receiver.spans.length >= 2), `spans arrive (targets: ${receiver.targets.join(", ")})`)
      assert.deepStrictEqual([...new Set(receiver.targets)], ["/custom/traces"])
    }))

  it.live("a collector answering 404 is counted as reason http_404 and logged as a warning naming the status", () =>
    Effect.gen(function*() {
      const receiver = yield* startOtlpReceiverWith({ status: 404 })
      const upstream = yield* startUpstream("collector-404")
      const gateway = yield* startLiveGateway(Gateway.layer(tracedConfig([upstream.url], receiver.origin)))
      const before = yield* scrapeAdmin(gateway.adminPort)
      assert.strictEqual((yield* request(`http://127.0.0.1:${gateway.port("web")}/lost`)).status, 200)
      assert.isTrue(yield* eventually(() => receiver.targets.length >= 1), "the export reaches the collector")
      // A missing series fails here: it is not read as 0.
      yield* until(failuresGrew(before, "http_404", 1, gateway.adminPort), `${FAILURES}{reason="http_404"} counts the failed export`)
      const warnings = gateway.logs.filter((l) => l.level === "Warn" && l.message.includes("OTLP"))
      assert.strictEqual(warnings.length, 1, JSON.stringify(gateway.logs))
      assert.include(warnings[0].message, "HTTP 404")
      assert.include(warnings[0].message, `${receiver.origin}/v1/traces`)
    }))

  it.live("an unreachable collector's failed tries (retried by the exporter) are counted as network errors, one warning for all", () =>
    Effect.gen(function*() {
      const upstream = yield* startUpstream("collector-down")
      const closed = yield* freePort
      const gateway = yield* startLiveGateway(Gateway.layer(tracedConfig([upstream.url], `http://127.0.0.1:${closed}`)))
      const before = yield* scrapeAdmin(gateway.adminPort)
      assert.strictEqual((yield* request(`http://127.0.0.1:${gateway.port("web")}/unreachable`)).status, 200)
      // Effect's exporter retries a transport error after 1 s: wait for the first retry's failure too.
      yield* until(failuresGrew(before, "network", 2, gateway.adminPort), `${FAILURES}{reason="network"} counts each failed try`, 8_000)
      const warnings = gateway.logs.filter((l) => l.level === "Warn" && l.message.includes("OTLP"))
      assert.strictEqual(warnings.length, 1, JSON.stringify(gateway.logs))
      assert.include(warnings[0].message, `network error: connect ECONNREFUSED 127.0.0.1:${closed}`)
    }))
})
