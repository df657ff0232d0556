import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { request, simpleConfig, startGateway, startUpstream } from "../support/harness.ts"
import { headerValues, send } from "../support/http.ts"
import { raw } from "../support/net.ts"

describe("forwarding", () => {
  it.live("proxies a GET to the upstream and returns its response", () =>
    Effect.gen(function*() {
      const upstream = yield* startUpstream("a")
      const gateway = yield* startGateway(simpleConfig([upstream.url]))
      const res = yield* request(gateway.url("/hello?x=1"))
      assert.strictEqual(res.status, 200)
      assert.strictEqual(JSON.parse(res.body).url, "/hello?x=1")
      assert.strictEqual(res.headers.get("x-upstream"), "a")
    }))
})

describe("forwarding: the header rules of the data path", () => {
  it.live("Proxy-Authorization and the other hop-by-hop request headers never reach the upstream; end-to-end ones do", () =>
    Effect.gen(function*() {
      const upstream = yield* startUpstream("a")
      const gateway = yield* startGateway(simpleConfig([upstream.url]))
      const res = yield* raw(
        gateway.port,
        "GET /hop HTTP/1.1\r\nHost: x\r\nProxy-Authorization: Basic dXNlcjpzZWNyZXQ=\r\nAuthorization: Bearer end-to-end\r\n" +
          "Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: gzip\r\nTrailer: x-sum\r\nX-Kept: k\r\n\r\n"
      )
      assert.strictEqual(res.status, 200)
      const seen = upstream.seen[0]
      const names = new Set(seen.rawHeaders.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase()))
      for (const hop of ["proxy-authorization", "keep-alive", "proxy-connection", "te", "trailer"]) {
        assert.isFalse(names.has(hop), `${hop} was forwarded`)
      }
      assert.notInclude(seen.rawHeaders.join("\n"), "dXNlcjpzZWNyZXQ=")
      assert.strictEqual(seen.headers.authorization, "Bearer end-to-end", "Authorization is end to end: it is forwarded")
      assert.strictEqual(seen.headers["x-kept"], "k")
    }))

  it.live("headers named in any of several Connection headers, in any case, are not forwarded", () =>
    Effect.gen(function*() {
      const upstream = yield* startUpstream("a")
      const gateway = yield* startGateway(simpleConfig([upstream.url]))
      const res = yield* raw(
        gateway.port,
        "GET /named HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, X-First\r\nConnection: x-SECOND\r\n" +
          "X-First: 1\r\nX-Second: 2\r\nX-Third: 3\r\n\r\n"
      )
      assert.strictEqual(res.status, 200)
      const seen = upstream.seen[0]
      assert.isUndefined(seen.headers["x-first"])
      assert.isUndefined(seen.headers["x-second"])
      assert.strictEqual(seen.headers["x-third"], "3")
    }))

  it.live("several X-Forwarded-For headers from the client are all kept, in order, with the client's address appended", () =>
    Effect.gen(function*() {
      const upstream = yield* startUpstream("a")
      const gateway = yield* startGateway(simpleConfig([upstream.url]))
      const res = yield* send(gateway.url("/xff"), {
        headers: { "x-forwarded-for": ["198.51.100.1", "203.0.113.7, 192.0.2.44"] },
        localAddress: "127.0.0.5"
      })
      assert.strictEqual(res.status, 200)
      const seen = upstream.seen[0]
      assert.deepStrictEqual(headerValues(seen.rawHeaders, "x-forwarded-for"), ["198.51.100.1, 203.0.113.7, 192.0.2.44, 127.0.0.5"])
    }))

  it.live("Via: the client's Via headers are kept in order and 1.1 fibergate is appended; without one it is the only entry", () =>
    Effect.gen(function*() {
      const upstream = yield* startUpstream("a")
      const gateway = yield* startGateway(simpleConfig([upstream.url]))
      assert.strictEqual((yield* send(gateway.url("/via"), { headers: { via: ["1.0 edge-a", "1.1 edge-b (proxy)"] } })).status, 200)
      assert.strictEqual((yield* send(gateway.url("/no-via"))).status, 200)
      assert.deepStrictEqual(headerValues(upstream.seen[0].rawHeaders, "via"), ["1.0 edge-a, 1.1 edge-b (proxy), 1.1 fibergate"])
      assert.deepStrictEqual(headerValues(upstream.seen[1].rawHeaders, "via"), ["1.1 fibergate"])
    }))

  it.live("Proxy-Authenticate and the other hop-by-hop response headers never reach the client", () =>
    Effect.gen(function*() {
      const upstream = yield* startUpstream("a", {
        handler: (_req, res) => {
          res.setHeader("proxy-authenticate", "Basic realm=\"upstream\"")
          res.setHeader("keep-alive", "timeout=99")
          res.setHeader("x-end-to-end", "kept")
          res.writeHead(200, { "content-type": "text/plain", "content-length": 2 })
          res.end("ok")
        }
      })
      const gateway = yield* startGateway(simpleConfig([upstream.url]))
      const res = yield* send(gateway.url("/response-hop"))
      assert.strictEqual(res.status, 200)
      assert.strictEqual(res.body, "ok")
      assert.deepStrictEqual(headerValues(res.rawHeaders, "proxy-authenticate"), [])
      assert.notInclude(headerValues(res.rawHeaders, "keep-alive"), "timeout=99")
      assert.deepStrictEqual(headerValues(res.rawHeaders, "x-end-to-end"), ["kept"])
    }))
})
