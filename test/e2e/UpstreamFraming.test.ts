/**
 * Message framing the gateway does not implement or that breaks the rules: transfer codings
 * other than chunked (both ways), bodiless statuses that come with a body, and upstream
 * replies the parser rejects. Raw sockets on both sides, so no library cleans anything up.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { request, simpleConfig, startGateway, startUpstream } from "../support/harness.ts"
import { rawUpstream } from "../support/rawUpstream.ts"
import { converse, sendAll } from "../support/wire.ts"

const tagOf = (body: string): unknown => JSON.parse(body).error

const get = (port: number, path = "/") =>
  converse(port, sendAll(`GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`), { responses: 1, settleMs: 20 }).pipe(Effect.map((c) => c.responses[0]))

describe("transfer codings", () => {
  for (const coding of ["gzip, chunked", "foo, chunked", "deflate,chunked"]) {
    it.live(`a request with Transfer-Encoding: ${coding} gets 501 and never reaches the upstream`, () =>
      Effect.gen(function*() {
        const upstream = yield* startUpstream("a")
        const gateway = yield* startGateway(simpleConfig([upstream.url]))
        const conversation = yield* converse(
          gateway.port,
          sendAll(`POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: ${coding}\r\n\r\n5\r\nhello\r\n0\r\n\r\n`),
          { responses: 1 }
        )
        assert.strictEqual(conversation.responses[0]?.status, 501)
        assert.strictEqual(tagOf(conversation.responses[0].body), "NotImplemented")
        assert.deepStrictEqual(conversation.responses[0].headers.get("connection"), ["close"])
        assert.isTrue(conversation.closed)
        assert.deepStrictEqual(upstream.seen, [])
      }))
  }

  it.live("a request with chunked listed twice gets 400", () =>
    Effect.gen(function*() {
      const upstream = yield* startUpstream("a")
      const gateway = yield* startGateway(simpleConfig([upstream.url]))
      const conversation = yield* converse(
        gateway.port,
        sendAll("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
        { responses: 1 }
      )
      assert.strictEqual(conversation.responses[0]?.status, 400)
      assert.deepStrictEqual(upstream.seen, [])
    }))

  it.live("a plain chunked request body still goes through", () =>
    Effect.gen(function*() {
      const upstream = yield* startUpstream("a")
      const gateway = yield* startGateway(simpleConfig([upstream.url]))
      const conversation = yield* converse(
        gateway.port,
        sendAll("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
        { responses: 1 }
      )
      assert.strictEqual(conversation.responses[0]?.status, 200)
      assert.strictEqual(upstream.seen[0]?.body.toString(), "hello")
    }))

  it.live("an upstream reply with Transfer-Encoding: gzip, chunked keeps its gzip coding on the way to the client", () =>
    Effect.gen(function*() {
      const upstream = yield* rawUpstream("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n4\r\n\x1f\x8b\x08\x00\r\n0\r\n\r\n")
      const gateway = yield* startGateway(simpleConfig([upstream.url]))
      const response = yield* get(gateway.port)
      assert.strictEqual(response?.status, 200)
      assert.deepStrictEqual(response.headers.get("transfer-encoding"), ["gzip, chunked"])
      assert.strictEqual(response.body, "\x1f\x8b\x08\x00")
    }))

  it.live("an upstream reply with gzip, chunked to an HTTP/1.0 client is a 502 (it cannot take Transfer-Encoding)", () =>
    Effect.gen(function*() {
      const upstream = yield* rawUpstream("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n")
      const gateway = yield* startGateway(simpleConfig([upstream.url]))
      const conversation = yield* converse(gateway.port, sendAll("GET / HTTP/1.0\r\nHost: x\r\n\r\n"), { responses: 1 })
      assert.strictEqual(conversation.responses[0]?.status, 502)
      assert.strictEqual(tagOf(conversation.responses[0].body), "UpstreamProtocolError")
      assert.isUndefined(conversation.responses[0].headers.get("transfer-encoding"))
    }))
})

describe("upstream replies that break the rules", () => {
  it.live("a 204 with Content-Length reaches the client without it, and the connection stays usable", () =>
    Effect.gen(function*() {
      const upstream = yield* rawUpstream("HTTP/1.1 204 No Content\r\nContent-Length: 5\r\nX-Kept: yes\r\n\r\n")
      const gateway = yield* startGateway(simpleConfig([upstream.url]))
      const conversation = yield* converse(
        gateway.port,
        sendAll("GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n"),
        { responses: 2 }
      )
      assert.deepStrictEqual(conversation.responses.map((r) => r.status), [204, 204])
      for (const r of conversation.responses) {
        assert.isUndefined(r.headers.get("content-length"))
        assert.isUndefined(r.headers.get("transfer-encoding"))
        assert.deepStrictEqual(r.headers.get("x-kept"), ["yes"])
      }
      assert.strictEqual(conversation.rest, "")
    }))

  it.live("a 304 reaches the client with no body and no Transfer-Encoding", () =>
    Effect.gen(function*() {
      const upstream = yield* rawUpstream("HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\n\r\n")
      const gateway = yield* startGateway(simpleConfig([upstream.url]))
      const conversation = yield* converse(gateway.port, sendAll("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), { responses: 1 })
      assert.strictEqual(conversation.responses[0]?.status, 304)
      assert.isUndefined(conversation.responses[0].headers.get("transfer-encoding"))
      assert.deepStrictEqual(conversation.responses[0].headers.get("etag"), ["\"v1\""])
      assert.strictEqual(conversation.rest, "")
    }))

  for (
    const [what, reply] of [
      ["a bare LF", "HTTP/1.1 200 OK\nContent-Length: 2\n\nok"],
      ["an obs-fold header", "HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 2\r\n\r\nok"],
      ["a bad status line", "HTTP/1.1 2x0 OK\r\nContent-Length: 2\r\n\r\nok"],
      ["no HTTP at all", "hello\r\n\r\n"]
    ] as const
  ) {
    it.live(`an upstream reply with ${what} is a 502 UpstreamProtocolError`, () =>
      Effect.gen(function*() {
        const upstream = yield* rawUpstream(reply)
        const gateway = yield* startGateway(simpleConfig([upstream.url]))
        const response = yield* get(gateway.port)
        assert.strictEqual(response?.status, 502)
        assert.strictEqual(tagOf(response.body), "UpstreamProtocolError")
      }))
  }

  it.live("an upstream protocol error is counted as result=\"protocol_error\" in fibergate_upstream_attempts_total", () =>
    Effect.gen(function*() {
      const upstream = yield* rawUpstream("HTTP/1.1 200 OK\nContent-Length: 2\n\nok")
      const config = simpleConfig([upstream.url])
      const gateway = yield* startGateway({ ...config, upstreams: { "framing-bad": config.upstreams.app }, servers: config.servers.map((s) => ({ ...s, routes: [{ id: "all", upstream: "framing-bad" }] })) })
      assert.strictEqual((yield* get(gateway.port))?.status, 502)
      const text = (yield* request(`http://127.0.0.1:${gateway.adminPort}/metrics`)).body
      const line = text.split("\n").find((l) => l.startsWith("fibergate_upstream_attempts_total{") && l.includes('upstream="framing-bad"') && l.includes('result="protocol_error"'))
      assert.isDefined(line, "the series exists")
      assert.strictEqual(Number(line!.slice(line!.lastIndexOf(" ") + 1)), 1)
    }))

  it.live("an upstream protocol error is retried where 502 is, and counts as a 5xx for outlier detection", () =>
    Effect.gen(function*() {
      const bad = yield* rawUpstream("HTTP/1.1 200 OK\nContent-Length: 2\n\nok")
      const good = yield* startUpstream("good")
      const config = simpleConfig([bad.url, good.url], { retry: { attempts: 2, on: [502] } }, {
        balance: "round_robin",
        outlier: { consecutive_failures: 2, base_ejection: "30s", max_ejected_percent: 50 }
      })
      const gateway = yield* startGateway(config)
      const statuses: Array<number> = []
      for (let i = 0; i < 6; i++) statuses.push((yield* get(gateway.port, `/${i}`))?.status ?? 0)
      // Every request is answered by the good endpoint, the bad one tried and then ejected.
      assert.deepStrictEqual(statuses, [200, 200, 200, 200, 200, 200])
      assert.strictEqual(bad.requests(), 2)
    }))
})
