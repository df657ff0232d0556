/**
 * The data path end to end: headers, bodies, streaming, upstream failures, aborts, 100-continue,
 * keep-alive and body limits, with real upstream servers and the real gateway on loopback.
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Fiber } from "effect"
import { createHash, randomBytes } from "node:crypto"
import {
  Agent,
  type ClientRequest,
  type IncomingHttpHeaders,
  type IncomingMessage,
  request as httpRequest,
  type RequestOptions,
  type ServerResponse
} from "node:http"
import { request, simpleConfig, startGateway, startUpstream } from "../support/harness.ts"
import { headerValues } from "../support/http.ts"
import { freePort, raw } from "../support/net.ts"
import { awaitSignal, fire, onSignal, signal } from "../support/signals.ts"

// ---------------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------------

const sha256 = (data: Uint8Array) => createHash("sha256").update(data).digest("hex")

interface Reply {
  readonly status: number
  readonly headers: IncomingHttpHeaders
  readonly rawHeaders: ReadonlyArray<string>
  readonly body: Buffer
}

/**
 * One request with node:http (no agent unless given: a fresh connection, `Connection: close`).
 * `write` sends the body itself; otherwise `body` (or nothing) is sent and the request ended.
 */
const send = (
  port: number,
  options: RequestOptions,
  body?: { readonly data?: Buffer | string; readonly write?: (req: ClientRequest) => void }
) =>
  Effect.callback<Reply, Error>((resume) => {
    const req = httpRequest({ host: "127.0.0.1", port, agent: false, ...options }, (res) => {
      const chunks: Array<Buffer> = []
      res.on("data", (c: Buffer) => chunks.push(c))
      res.on("end", () =>
        resume(Effect.succeed({ status: res.statusCode ?? 0, headers: res.headers, rawHeaders: res.rawHeaders, body: Buffer.concat(chunks) })))
      res.on("error", (e) => resume(Effect.fail(e)))
    })
    req.on("error", (e) => resume(Effect.fail(e)))
    if (body?.write !== undefined) body.write(req)
    else req.end(body?.data)
    return Effect.sync(() => void req.destroy())
  }).pipe(Effect.timeout("1500 millis"))

/** fetch returning the body as bytes. */
const fetchBytes = (url: string, init?: RequestInit) =>
  Effect.promise(async () => {
    const res = await fetch(url, init)
    return { status: res.status, headers: res.headers, body: Buffer.from(await res.arrayBuffer()) }
  })

/** `simpleConfig` with `servers[0].limits` set. */
const withLimits = (config: ReturnType<typeof simpleConfig>, limits: Record<string, unknown>) => ({
  ...config,
  servers: [{ ...config.servers[0], limits }]
})

/** Reads the whole request body, then calls `f`. */
const readBody = (req: IncomingMessage, f: (body: Buffer) => void) => {
  const chunks: Array<Buffer> = []
  req.on("data", (c: Buffer) => chunks.push(c))
  req.on("end", () => f(Buffer.concat(chunks)))
}

const respond = (res: ServerResponse, status: number, body: string | Buffer, headers: Record<string, string> = {}) => {
  res.writeHead(status, { "content-length": String(Buffer.byteLength(body)), ...headers })
  res.end(body)
}

// ---------------------------------------------------------------------------------------------
// headers
// ---------------------------------------------------------------------------------------------

describe("request headers", () => {
  it.live("removes hop-by-hop request headers", () =>
    Effect.gen(function*() {
      const upstream = yield* startUpstream("a")
      const gateway = yield* startGateway(simpleConfig([upstream.url]))
      const res = yield* raw(
        gateway.port,
        "GET /hop HTTP/1.1\r\nHost: x\r\nConnection: close\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\n" +
          "TE: deflate\r\nTrailer: x-checksum\r\nUpgrade: h2c\r\nX-Kept: k\r\n\r\n",
        { untilClose: true }
      )
      assert.match(res.statusLine, /^HTTP\/1\.1 200 /)
      const seen = upstream.seen[0].headers
      assert.strictEqual(seen["x-kept"], "k")
      assert.isUndefined(seen["keep-alive"])
      assert.isUndefined(seen["proxy-connection"])
      assert.isUndefined(seen.te)
      assert.isUndefined(seen.trailer)
      assert.isUndefined(seen.upgrade)
      assert.strictEqual(seen.connection, "keep-alive") // the gateway's own hop to the upstream
    }))

  it.live("removes request headers named in Connection", () =>
    Effect.gen(function*() {
      const upstream = yield* startUpstream("a")
      const gateway = yield* startGateway(simpleConfig([upstream.url]))
      const res = yield* send(gateway.port, {
        path: "/hop",
        headers: { connection: "close, X-Secret", "x-secret": "s3cr3t", "x-kept": "k" }
      })
      assert.strictEqual(res.status, 200)
      const seen = upstream.seen[0]
      assert.strictEqual(seen.headers["x-kept"], "k")
      assert.isUndefined(seen.headers["x-secret"])
      assert.notInclude(seen.rawHeaders.join("\n").toLowerCase(), "x-secret")
    }))

  it.live("appends the client address to an existing X-Forwarded-For", () =>
    Effect.gen(function*() {
      const upstream = yield* startUpstream("a")
      const gateway = yield* startGateway(simpleConfig([upstream.url]))
      const res = yield* request(gateway.url("/xff"), { headers: { "x-forwarded-for": "1.2.3.4" } })
      assert.strictEqual(res.status, 200)
      assert.strictEqual(upstream.seen[0].headers["x-forwarded-for"], "1.2.3.4, 127.0.0.1")
    }))

  it.live("sets X-Forwarded-For to the client address when the client sent none", () =>
    Effect.gen(function*() {
      const upstream = yield* startUpstream("a")
      const gateway = yield* startGateway(simpleConfig([upstream.url]))
      const res = yield* request(gateway.url("/xff"))
      assert.strictEqual(res.status, 200)
      assert.strictEqual(upstream.seen[0].headers["x-forwarded-for"], "127.0.0.1")
    }))

  it.live("replaces a client-sent X-Forwarded-Proto with http", () =>
    Effect.gen(function*() {
      const upstream = yield* startUpstream("a")
      const gateway = yield* startGateway(simpleConfig([upstream.url]))
      const res = yield* request(gateway.url("/xfp"), { headers: { "x-forwarded-proto": "https" } })
      assert.strictEqual(res.status, 200)
      assert.deepStrictEqual(headerValues(upstream.seen[0].rawHeaders, "x-forwarded-proto"), ["http"])
    }))

  it.live("sets X-Forwarded-Host to the original Host, replacing a client-sent value", () =>
    Effect.gen(function*() {
      const upstream = yield* startUpstream("a")
      const gateway = yield* startGateway(simpleConfig([upstream.url]))
      const res = yield* send(gateway.port, {
        path: "/xfh",
        headers: { host: "shop.example:8080", "x-forwarded-host": "evil.example" }
      })
      assert.strictEqual(res.status, 200)
      assert.deepStrictEqual(headerValues(upstream.seen[0].rawHeaders, "x-forwarded-host"), ["shop.example:8080"])
    }))

  it.live("appends 1.1 fibergate to an existing Via", () =>
    Effect.gen(function*() {
      const upstream = yield* startUpstream("a")
      const gateway = yield* startGateway(simpleConfig([upstream.url]))
      const res = yield* request(gateway.url("/via"), { headers: { via: "1.0 edge" } })
      assert.strictEqual(res.status, 200)
      assert.strictEqual(upstream.seen[0].headers.via, "1.0 edge, 1.1 fibergate")
    }))

  it.live("passes the Host header through unchanged", () =>
    Effect.gen(function*() {
      const upstream = yield* startUpstream("a")
      const gateway = yield* startGateway(simpleConfig([upstream.url]))
      const res = yield* send(gateway.port, { path: "/host", headers: { host: "Shop.Example:8080" } })
      assert.strictEqual(res.status, 200)
      assert.deepStrictEqual(headerValues(upstream.seen[0].rawHeaders, "host"), ["Shop.Example:8080"])
    }))

  it.live("does not forward the Expect header", () =>
    Effect.gen(function*() {
      const upstream = yield* startUpstream("a")
      const gateway = yield* startGateway(simpleConfig([upstream.url]))
      const res = yield* send(
        gateway.port,
        { method: "POST", path: "/expect", headers: { expect: "100-continue", "content-length": "5" } },
        { write: (req) => req.once("continue", () => req.end("hello")) }
      )
      assert.strictEqual(res.status, 200)
      assert.strictEqual(upstream.seen[0].body.toString(), "hello")
      assert.isUndefined(upstream.seen[0].headers.expect)
    }))
})

describe("response headers", () => {
  it.live("removes hop-by-hop response headers", () =>
    Effect.gen(function*() {
      const upstream = yield* startUpstream("a", {
        rawHandler: (_req, res) => {
          res.writeHead(200, [
            "keep-alive", "timeout=7",
            "proxy-connection", "keep-alive",
            "te", "trailers",
            "trailer", "x-checksum",
            "upgrade", "h2c",
            "x-kept", "k"
          ])
          res.write("ok")
          res.addTrailers({ "x-checksum": "1" })
          res.end()
        }
      })
      const gateway = yield* startGateway(simpleConfig([upstream.url]))
      const res = yield* send(gateway.port, { path: "/hop" })
      assert.strictEqual(res.status, 200)
      assert.strictEqual(res.body.toString(), "ok")
      assert.strictEqual(res.headers["x-kept"], "k")
      assert.isUndefined(res.headers["keep-alive"])
      assert.isUndefined(res.headers["proxy-connection"])
      assert.isUndefined(res.headers.te)
      assert.isUndefined(res.headers.trailer)
      assert.isUndefined(res.headers.upgrade)
    }))

  it.live("removes response headers named in the upstream's Connection header", () =>
    Effect.gen(function*() {
      const upstream = yield* startUpstream("a", {
        handler: (_req, res) => respond(res, 200, "ok", { connection: "x-private", "x-private": "1", "x-kept": "k" })
      })
      const gateway = yield* startGateway(simpleConfig([upstream.url]))
      const res = yield* send(gateway.port, { path: "/private" })
      assert.strictEqual(res.status, 200)
      assert.strictEqual(res.headers["x-kept"], "k")
      assert.isUndefined(res.headers["x-private"])
      assert.strictEqual(res.headers.connection, "close")
    }))

  it.live("does not pass the upstream's Transfer-Encoding to an HTTP/1.0 client", () =>
    Effect.gen(function*() {
      const upstream = yield* startUpstream("a", {
        handler: (_req, res) => {
          res.writeHead(200, { "content-type": "text/plain" })
          res.write("abc")
          res.end("def")
        }
      })
      const gateway = yield* startGateway(simpleConfig([upstream.url]))
      const res = yield* raw(gateway.port, "GET /te HTTP/1.0\r\nHost: x\r\n\r\n", { untilClose: true })
      assert.match(res.statusLine, /^HTTP\/1\.1 200 /)
      assert.isUndefined(res.headers.get("transfer-encoding"))
      assert.strictEqual(res.body, "abcdef")
    }))
})

// ---------------------------------------------------------------------------------------------
// bodies
// ---------------------------------------------------------------------------------------------

describe("bodies", () => {
  it.live("forwards a 1 MiB request body byte-exact with its Content-Length", () =>
    Effect.gen(function*() {
      const upstream = yield* startUpstream("a")
      const gateway = yield* startGateway(simpleConfig([upstream.url]))
      const payload = randomBytes(1024 * 1024)
      const res = yield* request(gateway.url("/upload"), { method: "POST", body: payload })
      assert.strictEqual(res.status, 200)
      assert.strictEqual(upstream.seen[0].headers["content-length"], String(payload.length))
      assert.strictEqual(upstream.seen[0].body.length, payload.length)
      assert.strictEqual(sha256(upstream.seen[0].body), sha256(payload))
    }))

  it.live("forwards a chunked request body intact", () =>
    Effect.gen(function*() {
      const upstream = yield* startUpstream("a")
      const gateway = yield* startGateway(simpleConfig([upstream.url]))
      const parts = [randomBytes(1000), randomBytes(20_000), randomBytes(7)]
      const res = yield* send(gateway.port, { method: "POST", path: "/chunked" }, {
        write: (req) => {
          for (const p of parts) req.write(p)
          req.end()
        }
      })
      assert.strictEqual(res.status, 200)
      assert.strictEqual(upstream.seen[0].body.length, 21_007)
      assert.strictEqual(sha256(upstream.seen[0].body), sha256(Buffer.concat(parts)))
    }))

  it.live("returns a 1 MiB response body byte-exact", () =>
    Effect.gen(function*() {
      const payload = randomBytes(1024 * 1024)
      const upstream = yield* startUpstream("a", {
        handler: (_req, res) => respond(res, 200, payload, { "content-type": "application/octet-stream" })
      })
      const gateway = yield* startGateway(simpleConfig([upstream.url]))
      const res = yield* fetchBytes(gateway.url("/download"))
      assert.strictEqual(res.status, 200)
      assert.strictEqual(res.headers.get("content-length"), String(payload.length))
      assert.strictEqual(sha256(res.body), sha256(payload))
    }))

  it.live("returns a chunked upstream response intact", () =>
    Effect.gen(function*() {
      const parts = [randomBytes(10), randomBytes(50_000), randomBytes(3)]
      const upstream = yield* startUpstream("a", {
        handler: (_req, res) => {
          res.writeHead(200, { "content-type": "application/octet-stream" })
          for (const p of parts) res.write(p)
          res.end()
        }
      })
      const gateway = yield* startGateway(simpleConfig([upstream.url]))
      const res = yield* send(gateway.port, { path: "/chunks" })
      assert.strictEqual(res.status, 200)
      assert.deepStrictEqual(headerValues(res.rawHeaders, "transfer-encoding"), ["chunked"])
      assert.strictEqual(sha256(res.body), sha256(Buffer.concat(parts)))
    }))

  it.live("answers HEAD with the upstream's headers and no body", () =>
    Effect.gen(function*() {
      const upstream = yield* startUpstream("a", {
        handler: (req, res) => {
          res.writeHead(200, { "content-type": "text/plain", "content-length": "1234", "x-method": req.method ?? "" })
          res.end()
        }
      })
      const gateway = yield* startGateway(simpleConfig([upstream.url]))
      const res = yield* raw(gateway.port, "HEAD /h HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", { untilClose: true })
      assert.match(res.statusLine, /^HTTP\/1\.1 200 /)
      assert.deepStrictEqual(res.headers.get("content-length"), ["1234"])
      assert.deepStrictEqual(res.headers.get("x-method"), ["HEAD"])
      assert.strictEqual(res.body.length, 0)
    }))

  it.live("passes a 204 through", () =>
    Effect.gen(function*() {
      const upstream = yield* startUpstream("a", {
        handler: (_req, res) => {
          res.writeHead(204, { "x-upstream": "a" })
          res.end()
        }
      })
      const gateway = yield* startGateway(simpleConfig([upstream.url]))
      const res = yield* request(gateway.url("/nothing"), { method: "DELETE" })
      assert.strictEqual(res.status, 204)
      assert.strictEqual(res.headers.get("x-upstream"), "a")
      assert.strictEqual(res.body, "")
    }))

  it.live("passes a 304 through", () =>
    Effect.gen(function*() {
      const upstream = yield* startUpstream("a", {
        handler: (req, res) => {
          if (req.headers["if-none-match"] === "\"v1\"") {
            res.writeHead(304, { etag: "\"v1\"" })
            res.end()
          } else respond(res, 200, "fresh", { etag: "\"v1\"" })
        }
      })
      const gateway = yield* startGateway(simpleConfig([upstream.url]))
      const res = yield* request(gateway.url("/cached"), { headers: { "if-none-match": "\"v1\"" } })
      assert.strictEqual(res.status, 304)
      assert.strictEqual(res.headers.get("etag"), "\"v1\"")
      assert.strictEqual(res.body, "")
    }))
})

// ---------------------------------------------------------------------------------------------
// streaming
// ---------------------------------------------------------------------------------------------

describe("streaming", () => {
  it.live("delivers the first response chunk before the upstream finishes", () =>
    Effect.gen(function*() {
      const release = signal()
      const upstream = yield* startUpstream("a", {
        rawHandler: (_req, res) => {
          res.writeHead(200, { "content-type": "text/plain" })
          res.write("first")
          onSignal(release, () => res.end("second"))
        }
      })
      const gateway = yield* startGateway(simpleConfig([upstream.url]))
      const firstChunk = signal<string>()
      const whole = signal<string>()
      const req = httpRequest({ host: "127.0.0.1", port: gateway.port, path: "/stream", agent: false }, (res) => {
        let text = ""
        res.on("data", (c: Buffer) => {
          if (text === "") fire(firstChunk, c.toString())
          text += c.toString()
        })
        res.on("end", () => fire(whole, text))
      })
      req.on("error", () => undefined)
      req.end()
      yield* Effect.addFinalizer(() => Effect.sync(() => void req.destroy()))

      assert.strictEqual(yield* awaitSignal(firstChunk), "first")
      assert.isFalse(Deferred.isDoneUnsafe(whole))
      fire(release, undefined)
      assert.strictEqual(yield* awaitSignal(whole), "firstsecond")
    }))

  it.live("delivers the first request chunk to the upstream before the client finishes", () =>
    Effect.gen(function*() {
      const firstChunk = signal<string>()
      const upstreamBody = signal<string>()
      const upstream = yield* startUpstream("a", {
        rawHandler: (req, res) => {
          let text = ""
          req.on("data", (c: Buffer) => {
            if (text === "") fire(firstChunk, c.toString())
            text += c.toString()
          })
          req.on("end", () => {
            fire(upstreamBody, text)
            respond(res, 200, "done")
          })
        }
      })
      const gateway = yield* startGateway(simpleConfig([upstream.url]))
      let client: ClientRequest | undefined
      const response = yield* send(gateway.port, { method: "POST", path: "/upload" }, {
        write: (req) => {
          client = req
          req.write("first")
        }
      }).pipe(Effect.forkScoped)

      assert.strictEqual(yield* awaitSignal(firstChunk), "first")
      assert.isFalse(Deferred.isDoneUnsafe(upstreamBody))
      client!.end("second")
      const res = yield* Fiber.join(response)
      assert.strictEqual(res.status, 200)
      assert.strictEqual(yield* awaitSignal(upstreamBody), "firstsecond")
    }))
})

// ---------------------------------------------------------------------------------------------
// errors
// ---------------------------------------------------------------------------------------------

describe("gateway errors", () => {
  it.live("answers 404 RouteNotFound as JSON when no route matches", () =>
    Effect.gen(function*() {
      const upstream = yield* startUpstream("a")
      const gateway = yield* startGateway(simpleConfig([upstream.url], { match: { path: { prefix: "/api" } } }))
      const res = yield* request(gateway.url("/other"))
      assert.strictEqual(res.status, 404)
      assert.strictEqual(res.headers.get("content-type"), "application/json")
      assert.strictEqual(JSON.parse(res.body).error, "RouteNotFound")
      assert.strictEqual(upstream.seen.length, 0)
    }))

  it.live("answers 502 UpstreamConnectError when the upstream refuses the connection", () =>
    Effect.gen(function*() {
      const port = yield* freePort
      const gateway = yield* startGateway(simpleConfig([`http://127.0.0.1:${port}`]))
      const res = yield* request(gateway.url("/x"))
      assert.strictEqual(res.status, 502)
      assert.strictEqual(res.headers.get("content-type"), "application/json")
      assert.strictEqual(JSON.parse(res.body).error, "UpstreamConnectError")
    }))

  it.live("answers 504 UpstreamTimeout when the route timeout expires", () =>
    Effect.gen(function*() {
      const arrived = signal()
      const upstream = yield* startUpstream("a", { rawHandler: () => fire(arrived, undefined) })
      const gateway = yield* startGateway(simpleConfig([upstream.url], { timeout: "300ms" }))
      const started = performance.now()
      const res = yield* request(gateway.url("/slow"))
      const elapsed = performance.now() - started
      assert.strictEqual(res.status, 504)
      assert.strictEqual(JSON.parse(res.body).error, "UpstreamTimeout")
      assert.isTrue(Deferred.isDoneUnsafe(arrived))
      assert.isAtLeast(elapsed, 250)
    }))

  it.live("answers 502 UpstreamReset when the upstream drops the connection before the headers", () =>
    Effect.gen(function*() {
      const upstream = yield* startUpstream("a", { rawHandler: (req) => void req.socket.destroy() })
      const gateway = yield* startGateway(simpleConfig([upstream.url]))
      const res = yield* request(gateway.url("/reset"))
      assert.strictEqual(res.status, 502)
      assert.strictEqual(JSON.parse(res.body).error, "UpstreamReset")
    }))
})

// ---------------------------------------------------------------------------------------------
// aborts
// ---------------------------------------------------------------------------------------------

describe("aborts", () => {
  it.live("closes the upstream request when the client aborts mid-request", () =>
    Effect.gen(function*() {
      const arrived = signal()
      const upstreamClosed = signal<boolean>()
      const upstream = yield* startUpstream("a", {
        rawHandler: (req, res) => {
          req.socket.once("close", () => fire(upstreamClosed, res.headersSent))
          fire(arrived, undefined)
        }
      })
      const gateway = yield* startGateway(simpleConfig([upstream.url]))
      const req = httpRequest({ host: "127.0.0.1", port: gateway.port, path: "/wait", agent: false })
      req.on("error", () => undefined)
      req.end()
      yield* Effect.addFinalizer(() => Effect.sync(() => void req.destroy()))

      yield* awaitSignal(arrived)
      req.destroy()
      // Resolves only if the gateway tears down the upstream request; false = no response was sent.
      assert.isFalse(yield* awaitSignal(upstreamClosed))
    }))

  it.live("cuts the client connection when the upstream dies mid-response", () =>
    Effect.gen(function*() {
      const upstream = yield* startUpstream("a", {
        rawHandler: (_req, res) => {
          res.writeHead(200, { "content-type": "text/plain" })
          res.write("partial", () => res.socket?.destroy())
        }
      })
      const gateway = yield* startGateway(simpleConfig([upstream.url]))
      type Outcome =
        | { readonly kind: "complete"; readonly body: string }
        | { readonly kind: "truncated"; readonly status: number; readonly body: string }
        | { readonly kind: "error"; readonly message: string }
      const outcome = yield* Effect.callback<Outcome>((resume) => {
        const req = httpRequest({ host: "127.0.0.1", port: gateway.port, path: "/die", agent: false }, (res) => {
          let body = ""
          res.on("data", (c: Buffer) => (body += c.toString()))
          res.on("error", () => undefined)
          res.on("end", () => resume(Effect.succeed({ kind: "complete", body })))
          res.on("close", () => {
            if (!res.complete) resume(Effect.succeed({ kind: "truncated", status: res.statusCode ?? 0, body }))
          })
        })
        req.on("error", (e) => resume(Effect.succeed({ kind: "error", message: e.message })))
        req.end()
        return Effect.sync(() => void req.destroy())
      }).pipe(Effect.timeout("1500 millis"))
      assert.deepStrictEqual(outcome, { kind: "truncated", status: 200, body: "partial" })
    }))
})

// ---------------------------------------------------------------------------------------------
// Expect, keep-alive, concurrency
// ---------------------------------------------------------------------------------------------

describe("connection handling", () => {
  it.live("answers Expect: 100-continue and forwards the body sent after it", () =>
    Effect.gen(function*() {
      const upstream = yield* startUpstream("a")
      const gateway = yield* startGateway(simpleConfig([upstream.url]))
      const continued = signal()
      const res = yield* send(
        gateway.port,
        { method: "POST", path: "/continue", headers: { expect: "100-continue", "content-length": "11" } },
        {
          write: (req) =>
            req.once("continue", () => {
              fire(continued, undefined)
              req.end("hello world")
            })
        }
      )
      assert.isTrue(Deferred.isDoneUnsafe(continued))
      assert.strictEqual(res.status, 200)
      assert.strictEqual(upstream.seen[0].body.toString(), "hello world")
    }))

  it.live("serves sequential requests on one keep-alive client connection", () =>
    Effect.gen(function*() {
      const upstream = yield* startUpstream("a")
      const gateway = yield* startGateway(simpleConfig([upstream.url]))
      const agent = new Agent({ keepAlive: true, maxSockets: 1 })
      yield* Effect.addFinalizer(() => Effect.sync(() => agent.destroy()))
      const localPorts = new Set<number>()
      for (let i = 0; i < 5; i++) {
        const res = yield* send(gateway.port, { path: `/seq/${i}`, agent }, {
          write: (req) => {
            req.once("socket", (s) => s.once("connect", () => localPorts.add(s.localPort ?? -1)))
            req.end()
          }
        })
        assert.strictEqual(res.status, 200)
        assert.strictEqual(JSON.parse(res.body.toString()).url, `/seq/${i}`)
      }
      assert.strictEqual(localPorts.size, 1)
      assert.strictEqual(upstream.seen.length, 5)
    }))

  it.live("answers 50 concurrent requests each with its own response", () =>
    Effect.gen(function*() {
      const upstream = yield* startUpstream("a")
      const gateway = yield* startGateway(simpleConfig([upstream.url]))
      const results = yield* Effect.forEach(
        Array.from({ length: 50 }, (_, i) => i),
        (i) => request(gateway.url(`/c/${i}`)).pipe(Effect.map((res) => ({ i, res }))),
        { concurrency: "unbounded" }
      )
      for (const { i, res } of results) {
        assert.strictEqual(res.status, 200)
        assert.strictEqual(JSON.parse(res.body).url, `/c/${i}`)
      }
      assert.strictEqual(upstream.seen.length, 50)
    }))
})

// ---------------------------------------------------------------------------------------------
// body limits
// ---------------------------------------------------------------------------------------------

describe("max_body_bytes", () => {
  it.live("answers 413 PayloadTooLarge to a Content-Length over the limit without contacting the upstream", () =>
    Effect.gen(function*() {
      let arrivals = 0
      const upstream = yield* startUpstream("a", {
        rawHandler: (req, res) => {
          arrivals++
          readBody(req, () => respond(res, 200, "ok"))
        }
      })
      const gateway = yield* startGateway(withLimits(simpleConfig([upstream.url]), { max_body_bytes: 1024 }))
      const res = yield* send(gateway.port, { method: "POST", path: "/big", headers: { "content-length": "2048" } }, {
        data: randomBytes(2048)
      })
      assert.strictEqual(res.status, 413)
      assert.strictEqual(JSON.parse(res.body.toString()).error, "PayloadTooLarge")
      assert.strictEqual(arrivals, 0)
    }))

  it.live("answers 413 PayloadTooLarge to a chunked body over the limit", () =>
    Effect.gen(function*() {
      const upstream = yield* startUpstream("a")
      const gateway = yield* startGateway(withLimits(simpleConfig([upstream.url]), { max_body_bytes: 1024 }))
      const res = yield* send(gateway.port, { method: "POST", path: "/big" }, {
        write: (req) => {
          req.on("error", () => undefined)
          req.write(randomBytes(1024))
          req.end(randomBytes(1024))
        }
      })
      assert.strictEqual(res.status, 413)
      assert.strictEqual(JSON.parse(res.body.toString()).error, "PayloadTooLarge")
      assert.strictEqual(upstream.seen.length, 0)
    }))
})
