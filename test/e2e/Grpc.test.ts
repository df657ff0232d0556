/**
 * gRPC through the gateway, with @grpc/grpc-js clients and servers: the four kinds of call over
 * h2c and over https (ALPN h2) to HTTP/2 upstreams, metadata and trailers both ways, large
 * messages under flow control, `grpc-timeout` (capped by the route timeout), a call cut after its
 * head, and the gateway's own refusals as the statuses a gRPC client reads.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, type Scope } from "effect"
import { createHash } from "node:crypto"
import { readFileSync } from "node:fs"
import { constants, createServer, type Http2Server, type IncomingHttpHeaders, type ServerHttp2Stream } from "node:http2"
import type { AddressInfo } from "node:net"
import { makeCa, makeCert } from "../support/certs.ts"
import { clientStream, grpc, grpcClient, serverStream, startGrpcServer, unary, type EchoClient, type EchoHandlers, type Message } from "../support/grpc.ts"
import { h2Request, h2Session } from "../support/h2.ts"
import { startGateway } from "../support/harness.ts"
import { scopedCertDir } from "../support/https.ts"
import { within } from "../support/liveGateway.ts"

const config = (upstream: string, options: {
  readonly server?: Record<string, unknown>
  readonly route?: Record<string, unknown>
  /** The listener's routes, instead of the one route `all` (with `route` added to it). */
  readonly routes?: ReadonlyArray<Record<string, unknown>>
  readonly upstream?: Record<string, unknown>
} = {}) => ({
  admin: { listen: "127.0.0.1:0" },
  log: { level: "none", access_log: false },
  servers: [{ name: "grpc", listen: "127.0.0.1:0", protocol: "h2c", routes: options.routes ?? [{ id: "all", upstream: "app", ...options.route }], ...options.server }],
  upstreams: { app: { endpoints: [{ url: upstream }], pool: { http2: true }, ...options.upstream } }
})

/** Echo calls that answer with what they were sent, and with metadata to check. */
const echoHandlers: EchoHandlers = {
  unary: (call, callback) => {
    if (call.request.fail === true) {
      const trailers = new grpc.Metadata()
      trailers.set("x-why", "asked to")
      callback({ code: grpc.status.NOT_FOUND, details: "no such thing", metadata: trailers })
      return
    }
    const initial = new grpc.Metadata()
    initial.set("x-initial", "from the server")
    call.sendMetadata(initial)
    const trailers = new grpc.Metadata()
    trailers.set("x-trailing", "at the end")
    const seen = call.metadata.getMap()
    callback(null, { echo: call.request, client: seen["x-client"] ?? null, via: seen.via ?? null }, trailers)
  },
  serverStream: (call) => {
    const count = Number(call.request.count)
    const size = Number(call.request.size ?? 0)
    for (let i = 0; i < count; i++) call.write({ i, pad: "x".repeat(size) })
    call.end()
  },
  clientStream: (call, callback) => {
    let sum = 0
    let bytes = 0
    call.on("data", (m: Message) => {
      sum += Number(m.n)
      bytes += String(m.pad ?? "").length
    })
    call.on("end", () => callback(null, { sum, bytes }))
  },
  bidi: (call) => {
    call.on("data", (m: Message) => call.write({ reply: m.n }))
    call.on("end", () => call.end())
  }
}
const echoing = startGrpcServer(echoHandlers)

/** Ping-pong: each message goes only once the reply to the one before came back. */
const pingPong = (client: EchoClient, rounds: number) =>
  Effect.callback<{ readonly replies: Array<unknown>; readonly code: grpc.status }>((resume) => {
    const call = client.bidi()
    const replies: Array<unknown> = []
    call.on("data", (m: Message) => {
      replies.push(m.reply)
      if (replies.length < rounds) call.write({ n: replies.length })
      else call.end()
    })
    call.on("error", (e: grpc.ServiceError) => resume(Effect.succeed({ replies, code: e.code })))
    call.on("status", (s: grpc.StatusObject) => {
      if (s.code === grpc.status.OK) resume(Effect.succeed({ replies, code: s.code }))
    })
    call.write({ n: 0 })
  })

const fourKinds = (client: EchoClient) =>
  Effect.gen(function*() {
    const metadata = new grpc.Metadata()
    metadata.set("x-client", "from the client")
    const one = yield* unary(client, { hello: "world" }, metadata)
    assert.strictEqual(one.code, grpc.status.OK, one.details)
    assert.deepStrictEqual(one.value, { echo: { hello: "world" }, client: "from the client", via: "2 fibergate" })
    assert.deepStrictEqual(one.headers?.get("x-initial"), ["from the server"])
    assert.deepStrictEqual(one.trailers?.get("x-trailing"), ["at the end"])

    const failed = yield* unary(client, { fail: true })
    assert.strictEqual(failed.code, grpc.status.NOT_FOUND)
    assert.strictEqual(failed.details, "no such thing")
    assert.deepStrictEqual(failed.trailers?.get("x-why"), ["asked to"])

    const streamed = yield* serverStream(client, { count: 50 })
    assert.strictEqual(streamed.code, grpc.status.OK, streamed.details)
    assert.deepStrictEqual(streamed.value?.map((m) => m.i), Array.from({ length: 50 }, (_, i) => i))

    const summed = yield* clientStream(client, Array.from({ length: 50 }, (_, n) => ({ n })))
    assert.strictEqual(summed.code, grpc.status.OK, summed.details)
    assert.deepStrictEqual(summed.value, { sum: 1225, bytes: 0 })

    const rounds = yield* pingPong(client, 20)
    assert.strictEqual(rounds.code, grpc.status.OK)
    assert.deepStrictEqual(rounds.replies, Array.from({ length: 20 }, (_, i) => i))
  })

/** A raw HTTP/2 upstream that records each request's headers and answers as `respond` says. */
const rawUpstream = (respond: (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => void): Effect.Effect<{ readonly url: string; readonly seen: Array<IncomingHttpHeaders> }, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.callback<{ readonly url: string; readonly seen: Array<IncomingHttpHeaders>; readonly server: Http2Server }>((resume) => {
      const seen: Array<IncomingHttpHeaders> = []
      const server = createServer()
      server.on("stream", (stream, headers) => {
        seen.push(headers)
        stream.on("error", () => {})
        stream.resume()
        respond(stream, headers)
      })
      server.listen(0, "127.0.0.1", () => resume(Effect.succeed({ url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen, server })))
    }),
    (u) => Effect.sync(() => u.server.close())
  )

/** A gRPC length-prefixed message holding `value` as JSON. */
const framed = (value: unknown): Buffer => {
  const body = Buffer.from(JSON.stringify(value))
  const prefix = Buffer.alloc(5)
  prefix.writeUInt32BE(body.length, 1)
  return Buffer.concat([prefix, body])
}

const grpcHeaders = (path: string, extra: Record<string, string> = {}) => ({ ":path": path, "content-type": "application/grpc", te: "trailers", ...extra })

describe("gRPC through the gateway", () => {
  it.live("unary, server-streaming, client-streaming and bidi calls over h2c to an HTTP/2 upstream: messages, metadata both ways, the server's status and trailers", () =>
    Effect.gen(function*() {
      const app = yield* echoing
      const gateway = yield* startGateway(config(app.url))
      yield* fourKinds(yield* grpcClient(gateway.port))
    }))

  it.live("the same four over https (ALPN h2) to a TLS gRPC upstream", () =>
    Effect.gen(function*() {
      const { dir } = yield* scopedCertDir
      const ca = makeCa(dir)
      const site = makeCert(dir, ca, { cn: "site.test", names: ["site.test"] })
      const backend = makeCert(dir, ca, { cn: "backend", names: ["localhost", "127.0.0.1"] })
      const app = yield* startGrpcServer(echoHandlers, { cert: readFileSync(backend.cert, "utf8"), key: readFileSync(backend.key, "utf8") })
      const gateway = yield* startGateway({
        ...config(app.url, { server: { protocol: "https", tls: { certificates: [{ cert: site.cert, key: site.key }] } }, upstream: { tls: { ca: ca.cert } } })
      })
      yield* fourKinds(yield* grpcClient(gateway.port, { ca: ca.pem(), servername: "site.test" }))
    }))

  it.live("large messages stream under flow control: 16 MiB down a server stream and 8 MiB up a client stream, in order", () =>
    Effect.gen(function*() {
      const app = yield* echoing
      const gateway = yield* startGateway(config(app.url))
      const client = yield* grpcClient(gateway.port)
      const down = yield* within(serverStream(client, { count: 64, size: 256 * 1024 }), "the server stream")
      assert.strictEqual(down.code, grpc.status.OK, down.details)
      assert.deepStrictEqual(down.value?.map((m) => m.i), Array.from({ length: 64 }, (_, i) => i))
      assert.isTrue(down.value?.every((m) => String(m.pad).length === 256 * 1024))
      const pad = "y".repeat(256 * 1024)
      const up = yield* within(clientStream(client, Array.from({ length: 32 }, (_, n) => ({ n, pad }))), "the client stream")
      assert.strictEqual(up.code, grpc.status.OK, up.details)
      assert.deepStrictEqual(up.value, { sum: 496, bytes: 32 * 256 * 1024 })
    }))

  it.live("a client stream past the listener's max_body_bytes ends with RESOURCE_EXHAUSTED and a reset asking the client to stop; the gateway goes on", () =>
    Effect.gen(function*() {
      const app = yield* echoing
      const gateway = yield* startGateway(config(app.url, { server: { limits: { max_body_bytes: 1024 * 1024 } } }))
      const session = yield* h2Session(gateway.port)
      // node:http2 rather than grpc-js: grpc-js closes its stream with writes still queued, which
      // spins node 24's HTTP/2 session in the test's own process (see closeStream in Http2Streams.ts).
      const ended = yield* within(Effect.callback<{ readonly status: unknown; readonly rstCode: number }>((resume) => {
        const stream = session.request({ ":method": "POST", ":path": "/test.Echo/ClientStream", "content-type": "application/grpc", te: "trailers" })
        let status: unknown
        stream.on("response", (h) => {
          status = h["grpc-status"]
        })
        stream.on("error", () => {})
        stream.on("close", () => resume(Effect.succeed({ status, rstCode: stream.rstCode ?? -1 })))
        stream.resume()
        for (let n = 0; n < 32; n++) stream.write(framed({ n, pad: "z".repeat(64 * 1024) }))
      }), "the refused client stream")
      assert.deepStrictEqual(ended, { status: "8", rstCode: constants.NGHTTP2_NO_ERROR })
      const after = yield* unary(yield* grpcClient(gateway.port), { still: "here" })
      assert.strictEqual(after.code, grpc.status.OK, after.details)
    }))

  it.live("TE: trailers reaches the upstream; grpc-timeout ends the call at the client's deadline with DEADLINE_EXCEEDED, and a shorter route timeout caps it and is what the upstream is told", () =>
    Effect.gen(function*() {
      // Never answers: only the gateway's deadline can end these calls.
      const app = yield* rawUpstream(() => {})
      const gateway = yield* startGateway(config(app.url, {
        routes: [
          { id: "capped", match: { path: { prefix: "/capped.Svc" } }, upstream: "app", timeout: "300ms" },
          { id: "long", match: { path: { prefix: "/long.Svc" } }, upstream: "app", timeout: "10s" },
          { id: "open", upstream: "app" }
        ]
      }))
      const session = yield* h2Session(gateway.port)
      const timed = (path: string, timeout: string) =>
        Effect.gen(function*() {
          const started = performance.now()
          const response = yield* Effect.promise(() => h2Request(session, grpcHeaders(path, { "grpc-timeout": timeout }), framed({})))
          return { response, elapsed: performance.now() - started, upstreamSaw: app.seen[app.seen.length - 1] }
        })

      const own = yield* timed("/open.Svc/Get", "200m")
      assert.deepStrictEqual([own.response.status, own.response.headers["grpc-status"], own.response.headers["grpc-message"]], [200, "4", "The call's grpc-timeout expired"])
      assert.isAtLeast(own.elapsed, 190)
      assert.isBelow(own.elapsed, 3000)
      assert.strictEqual(own.upstreamSaw["grpc-timeout"], "200m")
      assert.strictEqual(own.upstreamSaw.te, "trailers")

      const capped = yield* timed("/capped.Svc/Get", "10S")
      assert.deepStrictEqual([capped.response.headers["grpc-status"], capped.response.headers["grpc-message"]], ["4", "The route timeout expired"])
      assert.isAtLeast(capped.elapsed, 290)
      assert.isBelow(capped.elapsed, 5000)
      assert.strictEqual(capped.upstreamSaw["grpc-timeout"], "300m")

      // Shorter than the route timeout: the client's deadline, passed on as it came.
      const shorter = yield* timed("/long.Svc/Get", "150000u")
      assert.deepStrictEqual([shorter.response.headers["grpc-status"], shorter.response.headers["grpc-message"]], ["4", "The call's grpc-timeout expired"])
      assert.isBelow(shorter.elapsed, 5000)
      assert.strictEqual(shorter.upstreamSaw["grpc-timeout"], "150000u")

      // Not a timeout gRPC defines: no deadline of the gateway's; the upstream gets it and decides.
      const malformed = yield* timed("/capped.Svc/Get", "1.5S")
      assert.deepStrictEqual([malformed.response.headers["grpc-status"], malformed.response.headers["grpc-message"]], ["4", "The route timeout expired"])
      assert.strictEqual(malformed.upstreamSaw["grpc-timeout"], "1.5S")

      // A real client with a deadline reads the gateway's answer as DEADLINE_EXCEEDED.
      const client = yield* grpcClient(gateway.port)
      const late = yield* unary(client, {}, new grpc.Metadata(), { deadline: Date.now() + 300 })
      assert.strictEqual(late.code, grpc.status.DEADLINE_EXCEEDED)
    }))

  it.live("TE is passed on as `trailers` alone, from HTTP/1.1 clients too; a TE without it is dropped", () =>
    Effect.gen(function*() {
      const app = yield* rawUpstream((stream) => {
        stream.respond({ ":status": 200 })
        stream.end("ok")
      })
      const gateway = yield* startGateway(config(app.url))
      const session = yield* h2Session(gateway.port)
      yield* Effect.promise(() => h2Request(session, { ":path": "/h2", te: "trailers" }))
      assert.strictEqual(app.seen[0].te, "trailers")
      const h1 = (te: string) =>
        Effect.promise(() => fetch(`http://127.0.0.1:${gateway.port}/h1`, { headers: { te } }).then((r) => r.text()))
      yield* h1("gzip, Trailers;q=0.5, trailers")
      yield* h1("gzip")
      assert.deepStrictEqual(app.seen.slice(1).map((h) => h.te), ["trailers", undefined])
    }))

  it.live("a call cut after its head: between messages a route timeout ends it with DEADLINE_EXCEEDED in trailers; an upstream reset, between or inside messages, is INTERNAL", () =>
    Effect.gen(function*() {
      const app = yield* rawUpstream((stream, headers) => {
        stream.respond({ ":status": 200, "content-type": "application/grpc" })
        stream.write(Buffer.concat([framed({ i: 0 }), framed({ i: 1 })]))
        const mode = headers["x-mode"]
        if (mode === "reset") setTimeout(() => stream.close(constants.NGHTTP2_INTERNAL_ERROR), 50)
        else if (mode === "partial") {
          stream.write(framed({ i: 2 }).subarray(0, 7))
          setTimeout(() => stream.close(constants.NGHTTP2_INTERNAL_ERROR), 50)
        }
        // "stall": the route timeout ends it.
      })
      const gateway = yield* startGateway(config(app.url, { route: { timeout: "400ms" } }))
      const client = yield* grpcClient(gateway.port)
      const cut = (mode: string) =>
        Effect.callback<{ readonly messages: number; readonly code: grpc.status; readonly details: string }>((resume) => {
          const metadata = new grpc.Metadata()
          metadata.set("x-mode", mode)
          const call = client.serverStream({}, metadata)
          let messages = 0
          call.on("data", () => messages++)
          call.on("error", (e: grpc.ServiceError) => resume(Effect.succeed({ messages, code: e.code, details: e.details })))
          call.on("status", (s: grpc.StatusObject) => {
            if (s.code === grpc.status.OK) resume(Effect.succeed({ messages, code: s.code, details: s.details }))
          })
        })
      assert.deepStrictEqual(yield* cut("stall"), { messages: 2, code: grpc.status.DEADLINE_EXCEEDED, details: "The route timeout expired" })
      const reset = yield* cut("reset")
      // undici reports an upstream RST_STREAM after whole messages as the response's end: the
      // client sees a call that ended without a status (grpc-js: INTERNAL), not a clean OK.
      assert.deepStrictEqual([reset.messages, reset.code], [2, grpc.status.INTERNAL])
      const partial = yield* cut("partial")
      assert.deepStrictEqual([partial.messages, partial.code], [2, grpc.status.INTERNAL])
    }))

  it.live("the gateway's own refusals reach a grpc-js client as UNIMPLEMENTED, UNAVAILABLE, RESOURCE_EXHAUSTED and UNAUTHENTICATED", () =>
    Effect.gen(function*() {
      const app = yield* echoing
      const key = createHash("sha256").update("secret").digest("hex")
      const gateway = yield* startGateway({
        ...config(app.url, {
          routes: [
            { id: "limited", match: { path: { exact: "/test.Echo/Unary" }, headers: { "x-route": "limited" } }, upstream: "app", middlewares: [{ rate_limit: { key: "global", limit: 1, window: "1m" } }] },
            { id: "auth", match: { path: { exact: "/test.Echo/Unary" }, headers: { "x-route": "auth" } }, upstream: "app", middlewares: [{ api_key: { keys: [{ name: "k", sha256: key }] } }] },
            { id: "down", match: { path: { exact: "/test.Echo/Unary" }, headers: { "x-route": "down" } }, upstream: "down" },
            { id: "streams", match: { path: { exact: "/test.Echo/ServerStream" } }, upstream: "app" }
          ]
        }),
        upstreams: { app: { endpoints: [{ url: app.url }], pool: { http2: true } }, down: { endpoints: [{ url: "http://127.0.0.1:1" }], pool: { http2: true } } }
      })
      const client = yield* grpcClient(gateway.port)
      const on = (route: string, extra: Record<string, string> = {}) => {
        const metadata = new grpc.Metadata()
        metadata.set("x-route", route)
        for (const [k, v] of Object.entries(extra)) metadata.set(k, v)
        return unary(client, {}, metadata)
      }
      assert.strictEqual((yield* on("none")).code, grpc.status.UNIMPLEMENTED)
      assert.strictEqual((yield* on("down")).code, grpc.status.UNAVAILABLE)
      assert.strictEqual((yield* on("limited")).code, grpc.status.OK)
      const limited = yield* on("limited")
      assert.strictEqual(limited.code, grpc.status.RESOURCE_EXHAUSTED)
      assert.isNotEmpty(limited.trailers?.get("retry-after"))
      assert.strictEqual((yield* on("auth")).code, grpc.status.UNAUTHENTICATED)
      assert.strictEqual((yield* on("auth", { "x-api-key": "secret" })).code, grpc.status.OK)
      // A route that exists still answers its calls.
      const streamed = yield* serverStream(client, { count: 3 })
      assert.strictEqual(streamed.value?.length, 3)
    }))
})
