/**
 * HTTP/2 downstream through a real gateway: h2 over ALPN on https (h2 and http/1.1 on one port),
 * h2c with prior knowledge (HTTP/1.1 on the same port, told apart by the preface), streams run
 * through the same routing, middlewares and errors as HTTP/1.1, and the abuse bounds, each met
 * by a hostile client that writes its frames by hand.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Exit, Fiber, Layer, References, Scope } from "effect"
import { execFile } from "node:child_process"
import { createHash } from "node:crypto"
import { connect as connectH2, constants } from "node:http2"
import { connect } from "node:net"
import * as Gateway from "../../src/gateway/Gateway.ts"
import { headerListBytes, RAPID_RESET_MIN } from "../../src/listener/Http2Listener.ts"
import { Listeners } from "../../src/listener/Listeners.ts"
import { makeCa, makeCert } from "../support/certs.ts"
import { FLAG, FRAME, frame, getFields, goawayCode, h2Get, h2Request, h2Session, headerBlock, rawH2, rstStream, type ReceivedFrame } from "../support/h2.ts"
import { request, startGateway, startUpstream } from "../support/harness.ts"
import { httpsConfig, scopedCertDir } from "../support/https.ts"
import { eventually, within } from "../support/liveGateway.ts"
import { eventually as spansArrive, startOtlpReceiver } from "../support/otlp.ts"
import { assertAbsent, growth, hasSeries, samplesOf, scrapeAdmin, series } from "../support/prometheus.ts"
import { tlsGet } from "../support/tlsClient.ts"

const h2cConfig = (upstream: string, server: Record<string, unknown> = {}, routes?: ReadonlyArray<Record<string, unknown>>) => ({
  admin: { listen: "127.0.0.1:0" },
  log: { level: "none", access_log: false },
  servers: [{ name: "web", listen: "127.0.0.1:0", protocol: "h2c", routes: routes ?? [{ id: "all", upstream: "app" }], ...server }],
  upstreams: { app: { endpoints: [{ url: upstream }] } }
})

/** A CA, a certificate for site.test it signed, and an echo upstream, for an https listener. */
const siteAndUpstream = Effect.gen(function*() {
  const { dir } = yield* scopedCertDir
  const ca = makeCa(dir)
  const site = makeCert(dir, ca, { cn: "site.test", names: ["site.test"] })
  const app = yield* startUpstream("app")
  return { ca, site, app }
})

const echoed = (body: Buffer) => JSON.parse(body.toString()) as { url: string; method: string; headers: Record<string, string>; bodyBytes: number }

const curl = (args: ReadonlyArray<string>) =>
  Effect.callback<{ readonly stdout: string; readonly stderr: string }, Error>((resume) => {
    execFile("curl", ["-sS", "--max-time", "10", ...args], (error, stdout, stderr) =>
      resume(error === null ? Effect.succeed({ stdout, stderr }) : Effect.fail(error)))
  })

describe("HTTP/2 downstream", () => {
  it.live("h2c: a stream is routed by :authority; the upstream gets Host, no pseudo-header fields, one Cookie, Via 2; bodies go both ways", () =>
    Effect.gen(function*() {
      const a = yield* startUpstream("a")
      const b = yield* startUpstream("b")
      const gateway = yield* startGateway({
        ...h2cConfig(a.url, {}, [{ id: "a", match: { host: "a.test" }, upstream: "app" }, { id: "b", upstream: "other" }]),
        upstreams: { app: { endpoints: [{ url: a.url }] }, other: { endpoints: [{ url: b.url }] } }
      })
      const session = yield* h2Session(gateway.port)
      const first = yield* h2Get(session, "/p?q=1", { ":authority": "a.test", cookie: ["x=1", "y=2"], "x-custom": "v" })
      assert.strictEqual(first.status, 200)
      assert.strictEqual(first.headers["x-upstream"], "a")
      const seen = a.seen[0]
      assert.strictEqual(seen.url, "/p?q=1")
      assert.strictEqual(seen.headers.host, "a.test")
      assert.strictEqual(seen.headers.cookie, "x=1; y=2")
      assert.strictEqual(seen.headers["x-custom"], "v")
      assert.strictEqual(seen.headers.via, "2 fibergate")
      assert.strictEqual(seen.headers["x-forwarded-proto"], "http")
      assert.isFalse(seen.rawHeaders.some((name, i) => i % 2 === 0 && name.startsWith(":")))
      assert.strictEqual(seen.rawHeaders.filter((name, i) => i % 2 === 0 && name.toLowerCase() === "cookie").length, 1)

      // A Host that names another authority than :authority is malformed (RFC 9113 §8.3.1).
      const mismatched = yield* h2Get(session, "/", { ":authority": "a.test", host: "b.test" })
      assert.strictEqual(mismatched.status, 400)
      assert.strictEqual((yield* h2Get(session, "/", { ":authority": "a.test", host: "a.test" })).headers["x-upstream"], "a")
      // Another authority on the same connection goes to the other route.
      const second = yield* h2Get(session, "/", { ":authority": "b.test" })
      assert.strictEqual(second.headers["x-upstream"], "b")

      // A body with Content-Length, and one without (HTTP/2 frames it; HTTP/1.1 upstream gets it chunked).
      const body = Buffer.alloc(300_000, 7)
      const sized = yield* Effect.promise(() => h2Request(session, { ":path": "/sized", ":authority": "a.test", "content-length": String(body.length) }, body))
      assert.strictEqual(echoed(sized.body).bodyBytes, body.length)
      assert.strictEqual(a.seen.at(-1)!.headers["content-length"], String(body.length))
      const unsized = yield* Effect.promise(() => h2Request(session, { ":path": "/unsized", ":authority": "a.test" }, body))
      assert.strictEqual(echoed(unsized.body).bodyBytes, body.length)
      assert.strictEqual(a.seen.at(-1)!.headers["transfer-encoding"], "chunked")
      assert.isTrue(a.seen.at(-1)!.body.equals(body))
    }))

  it.live("a traced h2 request: the server span says network.protocol.version 2 and continues the client's traceparent", () =>
    Effect.gen(function*() {
      const receiver = yield* startOtlpReceiver
      const app = yield* startUpstream("app")
      const gateway = yield* startGateway({
        ...h2cConfig(app.url),
        telemetry: { tracing: { otlp_endpoint: receiver.url, export_interval: "20ms", service_name: "h2-test" } }
      })
      const session = yield* h2Session(gateway.port)
      const trace = "4bf92f3577b34da6a3ce929d0e0e4736"
      assert.strictEqual((yield* h2Get(session, "/traced", { traceparent: `00-${trace}-00f067aa0ba902b7-01` })).status, 200)
      assert.isTrue(yield* spansArrive(() => receiver.spans.some((s) => s.kind === 2)))
      const server = receiver.spans.find((s) => s.kind === 2)!
      assert.strictEqual(server.traceId, trace)
      assert.deepInclude(server.attributes, { "network.protocol.version": "2", "url.path": "/traced", "http.response.status_code": 200 })
      assert.strictEqual(app.seen[0].headers.traceparent?.slice(0, 35), `00-${trace}`)
    }))

  it.live("h2c: HTTP/1.1 on the same port, also when the first bytes come one at a time; a preface that comes slowly is still HTTP/2", () =>
    Effect.gen(function*() {
      const app = yield* startUpstream("app")
      const gateway = yield* startGateway(h2cConfig(app.url))
      const plain = yield* request(gateway.url("/h1"))
      assert.strictEqual(plain.status, 200)
      assert.strictEqual(JSON.parse(plain.body).headers.via, "1.1 fibergate")
      const trickled = yield* Effect.promise(() => new Promise<string>((resolve) => {
        const socket = connect(gateway.port, "127.0.0.1")
        let got = ""
        socket.on("data", (d) => {
          got += d.toString()
          if (got.includes("\r\n\r\n") && got.includes("\"upstream\"")) socket.end()
        })
        socket.on("close", () => resolve(got))
        const bytes = Buffer.from("GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        let i = 0
        const next = () => {
          if (i < bytes.length) {
            socket.write(bytes.subarray(i, ++i))
            setTimeout(next, 2)
          }
        }
        socket.once("connect", next)
      }))
      assert.match(trickled, /^HTTP\/1\.1 200 /)
      const raw = yield* rawH2WithSlowPreface(gateway.port)
      assert.strictEqual(raw, FRAME.SETTINGS)
    }))

  it.live("h2c: a connection that sends nothing, or part of the preface, is cut after header_timeout; one that decided keeps going past it", () =>
    Effect.gen(function*() {
      const app = yield* startUpstream("app")
      const gateway = yield* startGateway(h2cConfig(app.url, { limits: { header_timeout: "300ms", idle_timeout: "10s" } }))
      const closedAfter = (first: string) =>
        Effect.promise(() => new Promise<number>((resolve) => {
          const started = Date.now()
          const socket = connect(gateway.port, "127.0.0.1", () => {
            if (first !== "") socket.write(first)
          })
          socket.on("error", () => {})
          socket.resume()
          socket.on("close", () => resolve(Date.now() - started))
        }))
      const silent = yield* within(closedAfter(""), "a silent connection cut", 3_000)
      assert.isAtLeast(silent, 250)
      yield* within(closedAfter("PRI * HTTP/2.0\r\n"), "a stalled preface cut", 3_000)
      // Decided (HTTP/2): the sniffing's timeout is gone; the connection lives on past it.
      const session = yield* h2Session(gateway.port)
      assert.strictEqual((yield* h2Get(session, "/first")).status, 200)
      yield* Effect.sleep("700 millis")
      assert.isFalse(session.closed || session.destroyed)
      assert.strictEqual((yield* h2Get(session, "/later")).status, 200)
    }))

  it.live("https offers h2 and http/1.1 on one port over ALPN; alpn: [http/1.1] leaves h2 out", () =>
    Effect.gen(function*() {
      const { ca, site, app } = yield* siteAndUpstream
      const gateway = yield* startGateway(httpsConfig(app.url, { certificates: [{ cert: site.cert, key: site.key }] }))
      const session = yield* h2Session(gateway.port, { ca: ca.pem() })
      assert.strictEqual(session.alpnProtocol, "h2")
      const res = yield* h2Get(session, "/over-h2", { ":authority": "site.test" })
      assert.strictEqual(res.status, 200)
      assert.strictEqual(echoed(res.body).headers["x-forwarded-proto"], "https")
      assert.strictEqual(echoed(res.body).headers.via, "2 fibergate")
      const h1 = yield* tlsGet({ port: gateway.port, servername: "site.test", ca: ca.pem() })
      assert.strictEqual(h1.status, 200)

      const only = yield* startGateway(httpsConfig(app.url, { certificates: [{ cert: site.cert, key: site.key }], alpn: ["http/1.1"] }))
      const refused = yield* Effect.exit(h2Session(only.port, { ca: ca.pem() }).pipe(Effect.flatMap((s) => h2Get(s, "/"))))
      assert.isTrue(Exit.isFailure(refused))
      assert.strictEqual((yield* tlsGet({ port: only.port, servername: "site.test", ca: ca.pem() })).status, 200)
    }))

  it.live("curl: --http2 over https and --http2-prior-knowledge on h2c", () =>
    Effect.gen(function*() {
      const { ca, site, app } = yield* siteAndUpstream
      const secure = yield* startGateway(httpsConfig(app.url, { certificates: [{ cert: site.cert, key: site.key }] }))
      const overTls = yield* curl([
        "--http2", "--cacert", ca.cert, "--resolve", `site.test:${secure.port}:127.0.0.1`, "-w", "\n%{http_version}", `https://site.test:${secure.port}/curl`
      ])
      assert.match(overTls.stdout, /\n2$/)
      assert.strictEqual(echoed(Buffer.from(overTls.stdout.replace(/\n2$/, ""))).url, "/curl")
      const plain = yield* startGateway(h2cConfig(app.url))
      const prior = yield* curl(["--http2-prior-knowledge", "-w", "\n%{http_version}", `http://127.0.0.1:${plain.port}/prior`])
      assert.match(prior.stdout, /\n2$/)
    }))

  it.live("h2load: 2000 requests over 4 connections of 25 concurrent streams each, over TLS, all answered 200", () =>
    Effect.gen(function*() {
      const { ca, site, app } = yield* siteAndUpstream
      const gateway = yield* startGateway(httpsConfig(app.url, { certificates: [{ cert: site.cert, key: site.key }] }))
      const out = yield* Effect.callback<string, Error>((resume) => {
        execFile("h2load", ["-n", "2000", "-c", "4", "-m", "25", `https://127.0.0.1:${gateway.port}/load`], { timeout: 20_000 }, (error, stdout) =>
          resume(error === null ? Effect.succeed(stdout) : Effect.fail(new Error(`h2load (apt-get install nghttp2-client): ${error.message}`))))
      })
      assert.match(out, /Application protocol: h2/)
      assert.match(out, /requests: 2000 total, 2000 started, 2000 done, 2000 succeeded, 0 failed, 0 errored, 0 timeout/)
      assert.match(out, /status codes: 2000 2xx/)
      assert.strictEqual(app.seen.length, 2000)
    }))

  it.live("streams are multiplexed: 50 at once on one connection, each with its own answer", () =>
    Effect.gen(function*() {
      const app = yield* startUpstream("app", {
        handler: (req, res) => setTimeout(() => res.end(req.url), 20)
      })
      const gateway = yield* startGateway(h2cConfig(app.url))
      const session = yield* h2Session(gateway.port)
      const paths = Array.from({ length: 50 }, (_, i) => `/n/${i}`)
      const answers = yield* Effect.promise(() => Promise.all(paths.map((p) => h2Request(session, { ":path": p }))))
      assert.deepStrictEqual(answers.map((r) => r.body.toString()), paths)
      assert.strictEqual(app.seen.length, 50)
    }))

  it.live("the gateway's own answers over h2: no route 404, a middleware's 401, an unreachable upstream 502; a big response streams whole", () =>
    Effect.gen(function*() {
      const big = Buffer.alloc(4 * 1024 * 1024)
      for (let i = 0; i < big.length; i++) big[i] = (i * 7) & 255
      const app = yield* startUpstream("app", {
        handler: (req, res) => {
          if (req.url === "/big") {
            res.writeHead(200, { "content-type": "application/octet-stream", "http2-settings": "x", "set-cookie": ["a=1", "b=2"] })
            res.end(big)
          } else res.end("ok")
        }
      })
      const gateway = yield* startGateway({
        ...h2cConfig(app.url, {}, [
          { id: "big", match: { path: { exact: "/big" } }, upstream: "app" },
          { id: "auth", match: { path: { prefix: "/auth" } }, upstream: "app", middlewares: [{ api_key: { keys: [{ name: "k", sha256: createHash("sha256").update("s3cret").digest("hex") }] } }] },
          { id: "down", match: { path: { prefix: "/down" } }, upstream: "down" }
        ]),
        upstreams: { app: { endpoints: [{ url: app.url }] }, down: { endpoints: [{ url: "http://127.0.0.1:1" }] } }
      })
      const session = yield* h2Session(gateway.port)
      const none = yield* h2Get(session, "/nothing")
      assert.strictEqual(none.status, 404)
      assert.strictEqual(none.headers["content-type"], "application/json")
      assert.strictEqual(JSON.parse(none.body.toString()).error, "RouteNotFound")
      assert.strictEqual((yield* h2Get(session, "/auth")).status, 401)
      assert.strictEqual((yield* h2Get(session, "/auth", { "x-api-key": "s3cret" })).status, 200)
      assert.strictEqual((yield* h2Get(session, "/down")).status, 502)
      const got = yield* h2Get(session, "/big")
      assert.strictEqual(got.status, 200)
      assert.strictEqual(createHash("sha256").update(got.body).digest("hex"), createHash("sha256").update(big).digest("hex"))
      assert.deepStrictEqual(got.headers["set-cookie"], ["a=1", "b=2"])
      assert.isUndefined(got.headers["http2-settings"])
    }))

  it.live("a gRPC call the gateway refuses gets HTTP 200 with grpc-status and grpc-message (Trailers-Only); other requests keep the JSON errors", () =>
    Effect.gen(function*() {
      const app = yield* startUpstream("app")
      const gateway = yield* startGateway({
        ...h2cConfig(app.url, {}, [
          { id: "auth", match: { path: { prefix: "/auth.Svc/" } }, upstream: "app", middlewares: [{ api_key: { keys: [{ name: "k", sha256: createHash("sha256").update("s").digest("hex") }] } }] },
          { id: "limited", match: { path: { prefix: "/limited.Svc/" } }, upstream: "app", middlewares: [{ rate_limit: { key: "global", limit: 1, window: "1m" } }] },
          { id: "down", match: { path: { prefix: "/down.Svc/" } }, upstream: "down" }
        ]),
        upstreams: { app: { endpoints: [{ url: app.url }] }, down: { endpoints: [{ url: "http://127.0.0.1:1" }] } }
      })
      const session = yield* h2Session(gateway.port)
      const call = (path: string) => Effect.promise(() => h2Request(session, { ":path": path, "content-type": "application/grpc+proto", te: "trailers" }, Buffer.alloc(5)))
      const statusOf = (r: Awaited<ReturnType<typeof h2Request>>) => [r.status, r.headers["grpc-status"], r.body.length]
      assert.deepStrictEqual(statusOf(yield* call("/nothing.Svc/Get")), [200, "12", 0])
      const unauthenticated = yield* call("/auth.Svc/Get")
      assert.deepStrictEqual(statusOf(unauthenticated), [200, "16", 0])
      assert.strictEqual(unauthenticated.headers["content-type"], "application/grpc")
      assert.isString(unauthenticated.headers["grpc-message"])
      assert.strictEqual((yield* call("/limited.Svc/Get")).status, 200)
      const limited = yield* call("/limited.Svc/Get")
      assert.deepStrictEqual(statusOf(limited), [200, "8", 0])
      assert.isDefined(limited.headers["retry-after"])
      assert.deepStrictEqual(statusOf(yield* call("/down.Svc/Get")), [200, "14", 0])
      // Not gRPC: the JSON error as before.
      const plain = yield* h2Get(session, "/nothing")
      assert.strictEqual(plain.status, 404)
      assert.isUndefined(plain.headers["grpc-status"])
    }))

  it.live("a route timeout mid-response to a client that stopped reading: the stream is reset and the gateway goes on answering (its queued writes dropped)", () =>
    Effect.gen(function*() {
      const app = yield* startUpstream("app", {
        handler: (req, res) => {
          if (req.url === "/big") {
            res.writeHead(200, { "content-length": String(8 * 1024 * 1024) })
            // Then stalls: the route timeout ends the exchange with the gateway's writes queued.
            res.write(Buffer.alloc(4 * 1024 * 1024))
          } else res.end("fine")
        }
      })
      const gateway = yield* startGateway(h2cConfig(app.url, {}, [{ id: "all", upstream: "app", timeout: "500ms" }]))
      const slow = yield* h2Session(gateway.port)
      const reset = yield* within(Effect.callback<number>((resume) => {
        // Never read: the gateway's writes to this stream stay queued when the upstream fails.
        const stream = slow.request({ ":path": "/big" })
        stream.pause()
        stream.on("error", () => {})
        stream.on("close", () => resume(Effect.succeed(stream.rstCode ?? -1)))
      }), "the reset of the unread stream")
      assert.strictEqual(reset, constants.NGHTTP2_INTERNAL_ERROR)
      // A spinning session would hold the event loop: a new connection would get no answer.
      const other = yield* h2Session(gateway.port)
      const fine = yield* within(h2Get(other, "/fine"), "a request after the reset", 2000)
      assert.strictEqual(fine.status, 200)
    }))

  it.live("an upstream that fails after its head resets only that stream (INTERNAL_ERROR); the connection goes on", () =>
    Effect.gen(function*() {
      const app = yield* startUpstream("app", {
        handler: (req, res) => {
          if (req.url === "/cut") {
            res.writeHead(200, { "content-length": "1000" })
            res.write("partial")
            setTimeout(() => res.socket?.destroy(), 20)
          } else res.end("fine")
        }
      })
      const gateway = yield* startGateway(h2cConfig(app.url))
      const session = yield* h2Session(gateway.port)
      const cut = yield* Effect.promise(() => new Promise<number>((resolve) => {
        const stream = session.request({ ":path": "/cut" })
        stream.on("error", () => {})
        stream.resume()
        stream.on("close", () => resolve(stream.rstCode))
      }))
      assert.strictEqual(cut, constants.NGHTTP2_INTERNAL_ERROR)
      assert.strictEqual((yield* h2Get(session, "/after")).body.toString(), "fine")
    }))

  it.live("h2_max_concurrent_streams: streams past it are refused (REFUSED_STREAM) while the first ones are answered", () =>
    Effect.gen(function*() {
      const app = yield* startUpstream("app", { handler: (_req, res) => setTimeout(() => res.end("ok"), 200) })
      const gateway = yield* startGateway(h2cConfig(app.url, { limits: { h2_max_concurrent_streams: 2 } }))
      const raw = yield* rawH2(gateway.port)
      const out: Array<Buffer> = []
      for (let i = 0; i < 5; i++) out.push(frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, 1 + 2 * i, headerBlock(getFields(`/s/${i}`))))
      raw.write(Buffer.concat(out))
      yield* eventually(Effect.sync(() => raw.frames().filter((f) => f.type === FRAME.DATA && (f.flags & FLAG.END_STREAM) !== 0).length === 2), "two answered streams")
      const resets = raw.frames().filter((f) => f.type === FRAME.RST_STREAM)
      assert.deepStrictEqual(resets.map((f) => f.stream), [5, 7, 9])
      assert.isTrue(resets.every((f) => f.payload.readUInt32BE(0) === constants.NGHTTP2_REFUSED_STREAM))
      const settings = raw.frames().find((f) => f.type === FRAME.SETTINGS && f.payload.length > 0)!
      assert.strictEqual(settingOf(settings.payload, constants.NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS), 2)
      assert.strictEqual(app.seen.length, 2)
    }))

  it.live("h2_max_header_list_bytes: a header list past it resets its stream (ENHANCE_YOUR_CALM); one within it and the connection go on", () =>
    Effect.gen(function*() {
      const app = yield* startUpstream("app")
      const gateway = yield* startGateway(h2cConfig(app.url, { limits: { h2_max_header_list_bytes: 8192 } }))
      const session = yield* h2Session(gateway.port)
      assert.strictEqual(session.remoteSettings.maxHeaderListSize, 8192)
      // RFC 9113 §6.5.2: each field counts its name, its value and 32 bytes.
      const fits = yield* h2Get(session, "/ok", { "x-big": "a".repeat(7000) })
      assert.strictEqual(fits.status, 200)
      // Held by nghttp2 once the client acknowledged the setting, by the gateway before.
      for (const acknowledge of [true, false]) {
        const past = yield* headerListPast(gateway.port, 9000, acknowledge)
        assert.strictEqual(past.reset, constants.NGHTTP2_ENHANCE_YOUR_CALM)
        assert.strictEqual(past.next, 200)
      }
      assert.deepStrictEqual(app.seen.map((r) => r.url), ["/ok", "/next", "/next"])
      // The bound is inclusive, and 150 refusals on one connection are the gateway's resets, not
      // the client's: no Rapid Reset, and none of them became a request.
      const before = yield* scrapeAdmin(gateway.adminPort)
      const outcome = yield* manyOversized(gateway.port, 8192, 150)
      assert.deepStrictEqual(outcome, { exact: 200, refused: 150, last: 200, goaway: false })
      const after = yield* scrapeAdmin(gateway.adminPort)
      assert.strictEqual(requestsOf(after) - requestsOf(before), 2)
      assert.strictEqual(rapidResets(after) - rapidResets(before), 0)
    }))

  it.live("Rapid Reset: streams opened and reset in a loop end the connection with GOAWAY ENHANCE_YOUR_CALM, counted; the upstream sees a bounded few", () =>
    Effect.gen(function*() {
      const app = yield* startUpstream("app", { handler: (_req, res) => setTimeout(() => res.end("ok"), 50) })
      const gateway = yield* startGateway(h2cConfig(app.url))
      const before = yield* scrapeAdmin(gateway.adminPort)
      const raw = yield* rawH2(gateway.port)
      const out: Array<Buffer> = []
      for (let i = 0; i < 2_000; i++) {
        const id = 1 + 2 * i
        out.push(frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, id, headerBlock(getFields(`/r/${i}`))))
        out.push(rstStream(id, constants.NGHTTP2_CANCEL))
      }
      raw.write(Buffer.concat(out))
      yield* within(Effect.promise(() => raw.closed), "the gateway closes the connection")
      assert.strictEqual(goawayCode(raw.frames()), constants.NGHTTP2_ENHANCE_YOUR_CALM)
      yield* eventually(
        scrapeAdmin(gateway.adminPort).pipe(Effect.map((after) => growth(before, after, "fibergate_http2_goaways_total", { listener: "web", reason: "rapid_reset" }) === 1)),
        "one rapid_reset GOAWAY counted"
      )
      assert.isAtMost(app.seen.length, 2 * RAPID_RESET_MIN)
      // The streams the rest of the read opened were refused before they became requests.
      const started = requestsOf(yield* scrapeAdmin(gateway.adminPort)) - requestsOf(before)
      assert.isAtMost(started, 2 * RAPID_RESET_MIN, `${started} requests started`)
      // Other clients are served as before.
      const session = yield* h2Session(gateway.port)
      assert.strictEqual((yield* h2Get(session, "/after")).status, 200)
    }))

  it.live("a client cancelling some of its streams is not taken for Rapid Reset", () =>
    Effect.gen(function*() {
      const app = yield* startUpstream("app", { handler: (_req, res) => setTimeout(() => res.end("ok"), 5) })
      const gateway = yield* startGateway(h2cConfig(app.url))
      const session = yield* h2Session(gateway.port)
      for (let round = 0; round < 3 * RAPID_RESET_MIN; round++) {
        // One cancelled stream for every two answered ones.
        const cancelled = session.request({ ":path": `/c/${round}` })
        cancelled.on("error", () => {})
        cancelled.close(constants.NGHTTP2_CANCEL)
        if (round % 2 === 0) {
          const res = yield* Effect.promise(() => Promise.all([h2Request(session, { ":path": "/a" }), h2Request(session, { ":path": "/b" })]))
          assert.isTrue(res.every((r) => r.status === 200))
        }
      }
      assert.isFalse(session.destroyed || session.closed)
      assert.strictEqual((yield* h2Get(session, "/last")).status, 200)
    }))

  it.live("the gateway's own resets are no Rapid Reset: 150 responses the upstream cuts on one connection are each reset, and the connection goes on", () =>
    Effect.gen(function*() {
      const app = yield* startUpstream("app", {
        handler: (req, res) => {
          if (req.url === "/ok") return res.end("ok")
          res.writeHead(200, { "content-length": "100" })
          res.write("part")
          setTimeout(() => res.socket?.destroy(), 5)
        }
      })
      const gateway = yield* startGateway(h2cConfig(app.url))
      const before = yield* scrapeAdmin(gateway.adminPort)
      const session = yield* h2Session(gateway.port)
      const codes: Array<number> = []
      for (let batch = 0; batch < 5; batch++) {
        codes.push(...(yield* Effect.promise(() => Promise.all(Array.from({ length: 30 }, (_, i) => new Promise<number>((resolve) => {
          const stream = session.request({ ":path": `/cut/${batch}/${i}` })
          stream.on("error", () => {})
          stream.resume()
          stream.on("close", () => resolve(stream.rstCode))
        }))))))
      }
      assert.strictEqual(codes.length, 150)
      assert.isTrue(codes.every((c) => c === constants.NGHTTP2_INTERNAL_ERROR))
      assert.isFalse(session.closed || session.destroyed)
      assert.strictEqual((yield* h2Get(session, "/ok")).body.toString(), "ok")
      assert.strictEqual(rapidResets(yield* scrapeAdmin(gateway.adminPort)) - rapidResets(before), 0)
    }))

  it.live("a client that leaves with 100 streams open is no Rapid Reset", () =>
    Effect.gen(function*() {
      let arrived = 0
      const app = yield* startUpstream("app", {
        rawHandler: (_req, res) => {
          arrived++
          setTimeout(() => res.end("late"), 2_000)
        }
      })
      const gateway = yield* startGateway(h2cConfig(app.url))
      const before = yield* scrapeAdmin(gateway.adminPort)
      const raw = yield* rawH2(gateway.port)
      const out: Array<Buffer> = []
      for (let i = 0; i < 100; i++) out.push(frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, 1 + 2 * i, headerBlock(getFields(`/open/${i}`))))
      raw.write(Buffer.concat(out))
      yield* eventually(Effect.sync(() => arrived === 100), "100 requests at the upstream")
      raw.socket.destroy()
      // Each of them ends when the connection goes (counted as 499s).
      yield* eventually(
        scrapeAdmin(gateway.adminPort).pipe(Effect.map((s) => requestsOf(s) - requestsOf(before) === 100)),
        "the 100 requests ended"
      )
      yield* eventually(
        scrapeAdmin(gateway.adminPort).pipe(Effect.map((s) => series(s, "fibergate_http2_connections", { listener: "web" }) === 0)),
        "the connection is closed on the gateway's side too"
      )
      assert.strictEqual(rapidResets(yield* scrapeAdmin(gateway.adminPort)) - rapidResets(before), 0)
    }))

  it.live("a CONTINUATION flood ends the connection with a GOAWAY, counted as continuation_flood", () =>
    Effect.gen(function*() {
      const app = yield* startUpstream("app")
      const gateway = yield* startGateway(h2cConfig(app.url))
      const before = yield* scrapeAdmin(gateway.adminPort)
      const raw = yield* rawH2(gateway.port)
      const parts = [frame(FRAME.HEADERS, FLAG.END_STREAM, 1, headerBlock(getFields("/flood")))]
      const filler = headerBlock([["x-f", "v".repeat(10)]])
      for (let i = 0; i < 10_000; i++) parts.push(frame(FRAME.CONTINUATION, 0, 1, filler))
      raw.write(Buffer.concat(parts))
      yield* within(Effect.promise(() => raw.closed), "the gateway closes the connection")
      assert.isDefined(goawayCode(raw.frames()))
      yield* eventually(
        scrapeAdmin(gateway.adminPort).pipe(Effect.map((after) =>
          growth(before, after, "fibergate_http2_goaways_total", { listener: "web", reason: "continuation_flood" }) === 1
        )),
        "one continuation_flood GOAWAY counted"
      )
      assert.strictEqual(app.seen.length, 0)
    }))

  it.live("a drain sends GOAWAY: the stream in flight is answered, the connection then closes", () =>
    Effect.gen(function*() {
      const app = yield* startUpstream("app", { handler: (_req, res) => setTimeout(() => res.end("late"), 300) })
      const scope = yield* Scope.make()
      const context = yield* Layer.buildWithScope(Gateway.layer({ ...h2cConfig(app.url), shutdown: { drain_timeout: "5s" } }), scope).pipe(
        Effect.provideService(References.MinimumLogLevel, "Warn")
      )
      const port = Context.get(context, Listeners).addresses.get("web")!.port
      const session = yield* h2Session(port)
      const goaway = new Promise<number>((resolve) => session.once("goaway", (code: number) => resolve(code)))
      const inFlight = h2Request(session, { ":path": "/slow" })
      yield* eventually(Effect.sync(() => app.seen.length === 1), "the request reached the upstream")
      const closing = yield* Effect.forkChild(Scope.close(scope, Exit.void))
      assert.strictEqual(yield* Effect.promise(() => goaway), constants.NGHTTP2_NO_ERROR)
      const answer = yield* Effect.promise(() => inFlight)
      assert.strictEqual(answer.body.toString(), "late")
      yield* within(Fiber.join(closing), "the drain ends once the connection closed", 4_000)
    }))

  it.live("a connection idle for idle_timeout is closed with a GOAWAY; the next connection is served", () =>
    Effect.gen(function*() {
      const app = yield* startUpstream("app")
      const gateway = yield* startGateway(h2cConfig(app.url, { limits: { idle_timeout: "300ms" } }))
      const before = yield* scrapeAdmin(gateway.adminPort)
      const session = yield* h2Session(gateway.port)
      const goaway = new Promise<number>((resolve) => session.once("goaway", (code: number) => resolve(code)))
      assert.strictEqual((yield* h2Get(session, "/once")).status, 200)
      assert.strictEqual(series(yield* scrapeAdmin(gateway.adminPort), "fibergate_http2_connections", { listener: "web" }), 1)
      assert.strictEqual(yield* within(Effect.promise(() => goaway), "a GOAWAY after the idle timeout", 3_000), constants.NGHTTP2_NO_ERROR)
      yield* eventually(Effect.sync(() => session.closed || session.destroyed), "the connection closed")
      yield* eventually(
        scrapeAdmin(gateway.adminPort).pipe(Effect.map((s) => series(s, "fibergate_http2_connections", { listener: "web" }) === 0)),
        "no HTTP/2 connection counted open"
      )
      const next = yield* h2Session(gateway.port)
      assert.strictEqual((yield* h2Get(next, "/again")).status, 200)
      const after = yield* scrapeAdmin(gateway.adminPort)
      // Idle closes are no abuse.
      for (const reason of ["rapid_reset", "continuation_flood", "invalid_frames", "protocol_error"]) {
        const labels = { listener: "web", reason }
        assert.isTrue(!hasSeries(after, "fibergate_http2_goaways_total", labels) || growth(before, after, "fibergate_http2_goaways_total", labels) === 0, reason)
      }
    }))

  it.live("a reload's h2_max_concurrent_streams reaches new connections; a change of protocol re-binds", () =>
    Effect.gen(function*() {
      const app = yield* startUpstream("app")
      const config = h2cConfig(app.url, { limits: { h2_max_concurrent_streams: 10 } })
      const gateway = yield* startGateway(config)
      const first = yield* h2Session(gateway.port)
      assert.strictEqual(first.remoteSettings.maxConcurrentStreams, 10)
      const admin = `http://127.0.0.1:${gateway.adminPort}/config`
      const put = (next: unknown) => request(admin, { method: "PUT", headers: { "content-type": "application/json" }, body: JSON.stringify(next) })
      assert.strictEqual((yield* put(h2cConfig(app.url, { limits: { h2_max_concurrent_streams: 3 } }))).status, 200)
      const second = yield* h2Session(gateway.port)
      assert.strictEqual(second.remoteSettings.maxConcurrentStreams, 3)
      assert.strictEqual((yield* h2Get(first, "/old")).status, 200)
      // Plain http: HTTP/2's preface is no request there.
      assert.strictEqual((yield* put({ ...config, servers: [{ ...config.servers[0], protocol: "http" }] })).status, 200)
      const refused = yield* Effect.promise(() => new Promise<boolean>((resolve) => {
        const session = connectH2(`http://127.0.0.1:${gateway.port}`)
        session.on("error", () => resolve(true))
        const stream = session.request({ ":path": "/" })
        stream.on("error", () => resolve(true))
        stream.on("response", () => resolve(false))
        stream.resume()
      }))
      assert.isTrue(refused)
      assert.strictEqual((yield* request(gateway.url("/h1"))).status, 200)
      // The re-bound listener speaks no HTTP/2: its HTTP/2 connection gauge went with the old one.
      assertAbsent(yield* scrapeAdmin(gateway.adminPort), "fibergate_http2_connections", { listener: "web" })
    }))
})

const sum = (scrape: Parameters<typeof samplesOf>[0], name: string, labels: Record<string, string>) =>
  samplesOf(scrape, name, labels).reduce((total, sample) => total + sample.value, 0)
/** Requests the route `all` of listener `web` counted, whatever their status. */
const requestsOf = (scrape: Parameters<typeof samplesOf>[0]) => sum(scrape, "fibergate_requests_total", { listener: "web", route: "all" })
const rapidResets = (scrape: Parameters<typeof samplesOf>[0]) => sum(scrape, "fibergate_http2_goaways_total", { listener: "web", reason: "rapid_reset" })

/** The :status of the response on `stream` (200 when HPACK's indexed 200), undefined until one came. */
const statusOn = (frames: ReadonlyArray<ReceivedFrame>, stream: number): number | undefined => {
  const head = frames.find((f) => f.type === FRAME.HEADERS && f.stream === stream)
  return head === undefined ? undefined : head.payload[0] === 0x88 ? 200 : -1
}

/** The RST_STREAM code on `stream`, undefined until one came. */
const resetOn = (frames: ReadonlyArray<ReceivedFrame>, stream: number): number | undefined =>
  frames.find((f) => f.type === FRAME.RST_STREAM && f.stream === stream)?.payload.readUInt32BE(0)

/**
 * On a raw connection that never acknowledges the SETTINGS: a request whose header list is
 * exactly `limit` bytes, `count` requests one byte past it, then a plain one. The statuses of
 * the first and last, how many were reset with ENHANCE_YOUR_CALM, and whether a GOAWAY came.
 */
const manyOversized = (port: number, limit: number, count: number) =>
  Effect.gen(function*() {
    const raw = yield* rawH2(port)
    const sized = (path: string, bytes: number): Array<readonly [string, string]> => {
      const pad = bytes - headerListBytes([...getFields(path), ["x-pad", ""]].flat())
      return [...getFields(path), ["x-pad", "p".repeat(pad)]]
    }
    const last = 3 + 2 * count
    raw.write(frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, 1, headerBlock(sized("/exact", limit))))
    for (let i = 0; i < count; i++) {
      raw.write(frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, 3 + 2 * i, headerBlock(sized(`/over/${i}`, limit + 1))))
    }
    raw.write(frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, last, headerBlock(getFields("/last"))))
    yield* eventually(Effect.sync(() => statusOn(raw.frames(), last) !== undefined), "the last request answered")
    const frames = raw.frames()
    return {
      exact: statusOn(frames, 1),
      refused: frames.filter((f) => f.type === FRAME.RST_STREAM && f.payload.readUInt32BE(0) === constants.NGHTTP2_ENHANCE_YOUR_CALM).length,
      last: statusOn(frames, last),
      goaway: goawayCode(frames) !== undefined
    }
  })

/**
 * Sends a stream whose header list is `bytes` long (past the limit), split over HEADERS and
 * CONTINUATION, then a plain GET on the same connection: the first's RST_STREAM code and the
 * second's status. node:http2's own client checks the size itself; a hand-made block does not.
 */
const headerListPast = (port: number, bytes: number, acknowledge: boolean) =>
  Effect.gen(function*() {
    const raw = yield* rawH2(port)
    if (acknowledge) raw.write(frame(FRAME.SETTINGS, 1, 0))
    const block = headerBlock([...getFields("/past"), ["x-big", "b".repeat(bytes)]])
    const half = Math.floor(block.length / 2)
    raw.write(frame(FRAME.HEADERS, FLAG.END_STREAM, 1, block.subarray(0, half)))
    raw.write(frame(FRAME.CONTINUATION, FLAG.END_HEADERS, 1, block.subarray(half)))
    raw.write(frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, 3, headerBlock(getFields("/next"))))
    yield* eventually(Effect.sync(() => resetOn(raw.frames(), 1) !== undefined && statusOn(raw.frames(), 3) !== undefined), `a reset (acknowledged: ${acknowledge})`)
    return { reset: resetOn(raw.frames(), 1), next: statusOn(raw.frames(), 3) }
  })

/** The value of setting `id` in a SETTINGS payload. */
const settingOf = (payload: Buffer, id: number): number | undefined => {
  for (let at = 0; at + 6 <= payload.length; at += 6) if (payload.readUInt16BE(at) === id) return payload.readUInt32BE(at + 2)
  return undefined
}

/** Sends the preface a few bytes at a time; resolves with the type of the first frame that comes back. */
const rawH2WithSlowPreface = (port: number) =>
  Effect.promise(() => new Promise<number>((resolve) => {
    const socket = connect(port, "127.0.0.1")
    socket.on("error", () => {})
    socket.once("data", (d: Buffer) => {
      resolve(d[3])
      socket.destroy()
    })
    const preface = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    socket.once("connect", async () => {
      for (let at = 0; at < preface.length; at += 5) {
        socket.write(preface.subarray(at, at + 5))
        await new Promise((r) => setTimeout(r, 10))
      }
      socket.write(frame(FRAME.SETTINGS, 0, 0))
    })
  }))
