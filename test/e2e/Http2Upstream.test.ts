/**
 * HTTP/2 to upstreams (`pool.http2`): prior knowledge to an http:// endpoint, ALPN to an
 * https:// one, multiplexed on the pool's connections, from HTTP/1.1 and HTTP/2 clients alike;
 * without `http2` the gateway speaks HTTP/1.1 even to an endpoint that would take h2.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, type Scope } from "effect"
import { createSecureServer, createServer, type Http2Server, type Http2ServerRequest, type Http2ServerResponse, type Http2SecureServer } from "node:http2"
import { connect, type AddressInfo } from "node:net"
import { makeCa, makeCert } from "../support/certs.ts"
import { h2Request, h2Session } from "../support/h2.ts"
import { request, startGateway, startUpstream } from "../support/harness.ts"
import { scopedCertDir } from "../support/https.ts"

interface Seen {
  readonly version: string
  readonly method: string
  readonly path: string
  readonly authority: string | undefined
  readonly headers: Record<string, string | Array<string> | undefined>
  readonly body: Buffer
}

/** An HTTP/2 upstream (h2c, or TLS with `tls`) answering with what it saw; counts its connections. */
const startH2Upstream = (tls?: { readonly cert: string; readonly key: string; readonly allowHTTP1: boolean }) =>
  Effect.acquireRelease(
    Effect.callback<{ readonly url: string; readonly seen: Array<Seen>; readonly sessions: () => number; readonly server: Http2Server | Http2SecureServer }>((resume) => {
      const seen: Array<Seen> = []
      let sessions = 0
      const handler = (req: Http2ServerRequest, res: Http2ServerResponse) => {
        const chunks: Array<Buffer> = []
        req.on("data", (c: Buffer) => chunks.push(c))
        req.on("end", () => {
          seen.push({ version: req.httpVersion, method: req.method, path: req.url, authority: req.authority, headers: { ...req.headers }, body: Buffer.concat(chunks) })
          res.writeHead(201, { "content-type": "text/plain", "x-upstream-version": req.httpVersion })
          res.end(`${req.httpVersion} ${req.method} ${req.url} ${Buffer.concat(chunks).length}`)
        })
      }
      const server = tls === undefined ? createServer(handler) : createSecureServer({ cert: tls.cert, key: tls.key, allowHTTP1: tls.allowHTTP1 }, handler)
      server.on("session", () => sessions++)
      server.listen(0, "127.0.0.1", () => {
        const port = (server.address() as AddressInfo).port
        resume(Effect.succeed({ url: `${tls === undefined ? "http" : "https"}://127.0.0.1:${port}`, seen, sessions: () => sessions, server }))
      })
    }),
    (u) => Effect.callback<void>((resume) => {
      u.server.close(() => resume(Effect.void))
      // Sessions the gateway keeps open would hold close() up.
      setTimeout(() => resume(Effect.void), 200).unref()
    })
  )

const config = (url: string, upstream: Record<string, unknown>, server: Record<string, unknown> = {}) => ({
  admin: { listen: "127.0.0.1:0" },
  log: { level: "none", access_log: false },
  servers: [{ name: "web", listen: "127.0.0.1:0", routes: [{ id: "all", upstream: "app" }], ...server }],
  upstreams: { app: { endpoints: [{ url }], ...upstream } }
})

const certs: Effect.Effect<{ readonly caPem: string; readonly caFile: string; readonly cert: string; readonly key: string }, never, Scope.Scope> = Effect.gen(function*() {
  const { dir } = yield* scopedCertDir
  const ca = makeCa(dir)
  const site = makeCert(dir, ca, { cn: "localhost", names: ["localhost", "127.0.0.1"] })
  const { readFileSync } = yield* Effect.promise(() => import("node:fs"))
  return { caPem: ca.pem(), caFile: ca.cert, cert: readFileSync(site.cert, "utf8"), key: readFileSync(site.key, "utf8") }
})

describe("HTTP/2 upstreams (pool.http2)", () => {
  it.live("trailers go on: an HTTP/2 upstream's to an h2 client, an HTTP/1.1 upstream's chunked ones to h2 and HTTP/1.1 clients", () =>
    Effect.gen(function*() {
      const h2Up = yield* Effect.acquireRelease(
        Effect.callback<{ readonly server: Http2Server; readonly url: string }>((resume) => {
          const server = createServer((_req, res) => {
            res.writeHead(200, { "content-type": "application/grpc" })
            res.addTrailers({ "grpc-status": "0", "grpc-message": "fine" })
            res.end("payload")
          })
          server.listen(0, "127.0.0.1", () => resume(Effect.succeed({ server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` })))
        }),
        (u) => Effect.sync(() => u.server.close())
      )
      const h1Up = yield* startUpstream("h1", {
        rawHandler: (_req, res) => {
          res.writeHead(200, { "content-type": "text/plain", trailer: "x-checksum" })
          res.write("chunk")
          res.addTrailers({ "x-checksum": "abc123" })
          res.end()
        }
      })
      const gateway = yield* startGateway({
        ...config(h2Up.url, { pool: { http2: true } }, { protocol: "h2c", routes: [{ id: "h1", match: { path: { prefix: "/h1" } }, upstream: "h1" }, { id: "all", upstream: "app" }] }),
        upstreams: { app: { endpoints: [{ url: h2Up.url }], pool: { http2: true } }, h1: { endpoints: [{ url: h1Up.url }] } }
      })
      const session = yield* h2Session(gateway.port)
      const fromH2 = yield* Effect.promise(() => h2Request(session, { ":path": "/grpc" }))
      assert.strictEqual(fromH2.body.toString(), "payload")
      assert.strictEqual(fromH2.trailers?.["grpc-status"], "0")
      assert.strictEqual(fromH2.trailers?.["grpc-message"], "fine")
      const fromH1 = yield* Effect.promise(() => h2Request(session, { ":path": "/h1" }))
      assert.strictEqual(fromH1.body.toString(), "chunk")
      assert.strictEqual(fromH1.trailers?.["x-checksum"], "abc123")
      // An HTTP/1.1 client gets them after the last chunk.
      const raw = yield* Effect.promise(() => new Promise<string>((resolve) => {
        const socket = connect(gateway.port, "127.0.0.1", () => socket.write("GET /h1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
        let got = ""
        socket.on("data", (d) => (got += d.toString()))
        socket.on("close", () => resolve(got))
      }))
      assert.match(raw, /\r\n0\r\nx-checksum: abc123\r\n\r\n$/)
    }))

  it.live("h2c by prior knowledge to an http:// endpoint: an HTTP/1.1 client's request arrives as HTTP/2 with its authority, headers and body", () =>
    Effect.gen(function*() {
      const up = yield* startH2Upstream()
      const gateway = yield* startGateway(config(up.url, { pool: { http2: true } }))
      const res = yield* request(gateway.url("/items?x=1"), { method: "POST", headers: { "x-custom": "v", "content-type": "text/plain" }, body: "hello" })
      assert.strictEqual(res.status, 201)
      assert.strictEqual(res.body, "2.0 POST /items?x=1 5")
      const seen = up.seen[0]
      assert.strictEqual(seen.version, "2.0")
      assert.strictEqual(seen.authority, `127.0.0.1:${gateway.port}`)
      assert.strictEqual(seen.headers["x-custom"], "v")
      assert.strictEqual(seen.headers["x-forwarded-for"], "127.0.0.1")
      assert.strictEqual(seen.body.toString(), "hello")
    }))

  it.live("an http:// endpoint that does not speak HTTP/2 is a 502 (prior knowledge has no fallback), and the gateway goes on", () =>
    Effect.gen(function*() {
      const h1 = yield* startUpstream("h1")
      const gateway = yield* startGateway(config(h1.url, { pool: { http2: true } }))
      const res = yield* request(gateway.url("/x"))
      assert.strictEqual(res.status, 502)
      assert.strictEqual((yield* request(gateway.url("/y"))).status, 502)
    }))

  it.live("requests share the pool's HTTP/2 connection: 20 at once over one connection (connections: 1)", () =>
    Effect.gen(function*() {
      const up = yield* startH2Upstream()
      const gateway = yield* startGateway(config(up.url, { pool: { http2: true, connections: 1 } }))
      const answers = yield* Effect.all(Array.from({ length: 20 }, (_, i) => request(gateway.url(`/m/${i}`))), { concurrency: "unbounded" })
      assert.isTrue(answers.every((r) => r.status === 201))
      assert.strictEqual(up.seen.length, 20)
      assert.strictEqual(up.sessions(), 1)
    }))

  it.live("h2 over TLS (ALPN) from an h2 client; without pool.http2 the same endpoint is spoken to in HTTP/1.1", () =>
    Effect.gen(function*() {
      const tls = yield* certs
      const up = yield* startH2Upstream({ cert: tls.cert, key: tls.key, allowHTTP1: true })
      const withH2 = yield* startGateway(config(up.url, { pool: { http2: true }, tls: { ca: tls.caFile } }, { protocol: "h2c" }))
      const session = yield* h2Session(withH2.port)
      const res = yield* Effect.promise(() => h2Request(session, { ":path": "/over-tls" }, "body!"))
      assert.strictEqual(res.status, 201)
      assert.strictEqual(res.body.toString(), "2.0 POST /over-tls 5")
      const plain = yield* startGateway(config(up.url, { tls: { ca: tls.caFile } }))
      const h1 = yield* request(plain.url("/default"))
      assert.strictEqual(h1.headers.get("x-upstream-version"), "1.1")
    }))
})
