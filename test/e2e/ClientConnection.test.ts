/**
 * One client connection as a sequence of responses: what the gateway writes on it when the
 * client pipelines, sends bytes the parser rejects while a response is in flight, or is
 * answered with `Connection: close`. Raw sockets on both sides where framing matters.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Metric } from "effect"
import type { IncomingMessage, ServerResponse } from "node:http"
import { simpleConfig, startGateway, startUpstream } from "../support/harness.ts"
import { converse, sendAll } from "../support/wire.ts"
import { openConnection } from "../support/connection.ts"
import { eventually } from "../support/liveGateway.ts"
import { send } from "../support/http.ts"
import { awaitSignal, fire, signal } from "../support/signals.ts"

const tagOf = (body: string): unknown => JSON.parse(body).error

/** An upstream whose `/stream` response sends 10 bytes, waits for `release`, then 30 more. */
const streamingUpstream = () => {
  const waiting: Array<() => void> = []
  let released = false
  const release = () => {
    released = true
    for (const w of waiting.splice(0)) w()
  }
  return Effect.map(
    startUpstream("s", {
      rawHandler: (req: IncomingMessage, res: ServerResponse) => {
        req.resume()
        if (req.url !== "/stream") {
          const body = `ok ${req.url}`
          res.writeHead(200, { "content-length": Buffer.byteLength(body) })
          res.end(body)
          return
        }
        res.writeHead(200, { "content-length": "40" })
        res.write("0123456789")
        const rest = () => res.end("abcdefghijklmnopqrstuvwxyz0123")
        if (released) setTimeout(rest, 10)
        else waiting.push(rest)
      }
    }),
    (upstream) => ({ upstream, release })
  )
}

/**
 * A client that sends a whole upload of `bytes` before it reads anything (and waits a while
 * more): a close without lingering resets the connection and the response is lost.
 */
const uploadThenRead = (port: number, bytes: number, before = "") => {
  const body = Buffer.alloc(bytes, 0x79)
  return converse(port, (socket) => {
    socket.pause()
    socket.write(`${before}POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: ${body.length}\r\n\r\n`)
    socket.write(body, () => setTimeout(() => socket.resume(), 300))
  }, { responses: 1, maxMs: 8_000 })
}

/**
 * An upstream that answers each request `delayMs(req)` after its body is in, with the body
 * `METHOD /path`, and records what it saw: `arrived …` and `answered …` events in order, and
 * the most requests it held at once.
 */
const pacedUpstream = (delayMs: (req: IncomingMessage) => number) => {
  const events: Array<string> = []
  const stats = { inFlight: 0, maxInFlight: 0 }
  return Effect.map(
    startUpstream("a", {
      rawHandler: (req, res) => {
        const line = `${req.method} ${req.url}`
        stats.maxInFlight = Math.max(stats.maxInFlight, ++stats.inFlight)
        events.push(`arrived ${line}`)
        req.resume()
        req.on("end", () =>
          setTimeout(() => {
            stats.inFlight--
            events.push(`answered ${line}`)
            res.writeHead(200, { "content-length": Buffer.byteLength(line) })
            res.end(line)
          }, delayMs(req)))
      }
    }),
    (upstream) => ({ upstream, events, stats, arrived: () => events.filter((e) => e.startsWith("arrived ")).map((e) => e.slice(8)) })
  )
}

describe("a client connection", () => {
  it.live("bytes the parser rejects during a streamed response never land inside that response", () =>
    Effect.gen(function*() {
      const { upstream, release } = yield* streamingUpstream()
      const gateway = yield* startGateway(simpleConfig([upstream.url]))
      const conversation = yield* converse(gateway.port, (socket, received) => {
        socket.write("GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
        const poll = setInterval(() => {
          if (!received().includes("0123456789")) return
          clearInterval(poll)
          socket.write("this is not http\r\n\r\n")
          setTimeout(release, 50)
        }, 5)
      }, { responses: 2 })
      const [first, second] = conversation.responses
      assert.strictEqual(first.status, 200)
      assert.strictEqual(first.body, "0123456789abcdefghijklmnopqrstuvwxyz0123")
      // After the response in flight, the error answer and the close.
      assert.strictEqual(second?.status, 400)
      assert.strictEqual(tagOf(second.body), "BadRequest")
      assert.strictEqual(conversation.rest, "")
      assert.isTrue(conversation.closed)
    }))

  it.live("a request pipelined before an unparseable line is answered before the 400", () =>
    Effect.gen(function*() {
      const upstream = yield* startUpstream("a")
      const gateway = yield* startGateway(simpleConfig([upstream.url]))
      const conversation = yield* converse(gateway.port, sendAll("GET /first HTTP/1.1\r\nHost: x\r\n\r\nGARBAGE\r\n\r\n"), { responses: 2 })
      assert.deepStrictEqual(upstream.seen.map((r) => r.url), ["/first"])
      assert.deepStrictEqual(conversation.responses.map((r) => r.status), [200, 400])
      assert.strictEqual(JSON.parse(conversation.responses[0].body).url, "/first")
      assert.isTrue(conversation.closed)
    }))

  it.live("several requests pipelined before an unparseable line are all answered, in order, then the 400", () =>
    Effect.gen(function*() {
      const upstream = yield* startUpstream("a")
      const gateway = yield* startGateway(simpleConfig([upstream.url]))
      const conversation = yield* converse(
        gateway.port,
        sendAll("GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\nGET /3 HTTP/1.1\r\nHost: x\r\n\r\n\x01\x02\r\n\r\n"),
        { responses: 4 }
      )
      assert.deepStrictEqual(conversation.responses.map((r) => r.status), [200, 200, 200, 400])
      assert.deepStrictEqual(conversation.responses.slice(0, 3).map((r) => JSON.parse(r.body).url), ["/1", "/2", "/3"])
      assert.isTrue(conversation.closed)
    }))

  for (
    const [what, first] of [
      ["a bad percent-escape", "GET /%zz HTTP/1.1\r\nHost: x\r\n\r\n"],
      ["a missing Host", "GET /nohost HTTP/1.1\r\n\r\n"],
      ["a repeated Host", "GET /twohosts HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n"]
    ] as const
  ) {
    it.live(`after a 400 with Connection: close for ${what}, a pipelined request is not forwarded`, () =>
      Effect.gen(function*() {
        const upstream = yield* startUpstream("a")
        const gateway = yield* startGateway(simpleConfig([upstream.url]))
        // A warm pool, so that a forwarded request would reach the upstream before the close.
        yield* converse(gateway.port, sendAll("GET /warm HTTP/1.1\r\nHost: x\r\n\r\n"), { responses: 1, settleMs: 0 })
        const conversation = yield* converse(gateway.port, sendAll(`${first}GET /second HTTP/1.1\r\nHost: x\r\n\r\n`), { responses: 1, settleMs: 200 })
        assert.deepStrictEqual(conversation.responses.map((r) => r.status), [400])
        assert.deepStrictEqual(conversation.responses[0].headers.get("connection"), ["close"])
        assert.strictEqual(conversation.rest, "")
        assert.isTrue(conversation.closed)
        assert.deepStrictEqual(upstream.seen.map((r) => r.url), ["/warm"])
      }))
  }

  it.live("a request pipelined after the client's own Connection: close is not forwarded", () =>
    Effect.gen(function*() {
      const upstream = yield* startUpstream("a")
      const gateway = yield* startGateway(simpleConfig([upstream.url]))
      const conversation = yield* converse(
        gateway.port,
        sendAll("GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nDELETE /after HTTP/1.1\r\nHost: x\r\n\r\n"),
        { responses: 1, settleMs: 200 }
      )
      assert.deepStrictEqual(conversation.responses.map((r) => r.status), [200])
      assert.isTrue(conversation.closed)
      assert.deepStrictEqual(upstream.seen.map((r) => r.url), ["/last"])
    }))

  it.live("pipelined unsafe requests reach the upstream one at a time, in the client's order", () =>
    Effect.gen(function*() {
      // The first request is the slowest, so a parallel pipeline would overtake it.
      const { upstream, arrived, stats } = yield* pacedUpstream((req) => req.url === "/1" ? 60 : 5)
      const gateway = yield* startGateway(simpleConfig([upstream.url]))
      const sent = ["POST /1", "PUT /2", "DELETE /3", "PATCH /4", "POST /5"]
      const data = sent.map((line) => `${line} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi`).join("")
      const conversation = yield* converse(gateway.port, sendAll(data), { responses: 5 })
      assert.deepStrictEqual(arrived(), sent)
      assert.strictEqual(stats.maxInFlight, 1)
      assert.deepStrictEqual(conversation.responses.map((r) => r.body), sent)
    }))

  it.live("a GET pipelined behind a POST waits for it (a safe request does not overtake an unsafe one)", () =>
    Effect.gen(function*() {
      const { upstream, events } = yield* pacedUpstream((req) => req.method === "POST" ? 50 : 0)
      const gateway = yield* startGateway(simpleConfig([upstream.url]))
      const conversation = yield* converse(
        gateway.port,
        sendAll("POST /write HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nxGET /read HTTP/1.1\r\nHost: x\r\n\r\n"),
        { responses: 2 }
      )
      assert.deepStrictEqual(conversation.responses.map((r) => r.status), [200, 200])
      assert.deepStrictEqual(events, ["arrived POST /write", "answered POST /write", "arrived GET /read", "answered GET /read"])
    }))

  it.live("pipelined GETs are still forwarded together (safe requests may run in parallel)", () =>
    Effect.gen(function*() {
      const { upstream, stats } = yield* pacedUpstream(() => 40)
      const gateway = yield* startGateway(simpleConfig([upstream.url]))
      const conversation = yield* converse(
        gateway.port,
        sendAll("GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\nGET /3 HTTP/1.1\r\nHost: x\r\n\r\n"),
        { responses: 3 }
      )
      assert.deepStrictEqual(conversation.responses.map((r) => r.body), ["GET /1", "GET /2", "GET /3"])
      // More than one at a time (all three unless the machine is slow to open upstream connections).
      assert.isAtLeast(stats.maxInFlight, 2)
    }))

  for (const method of ["OPTIONS", "TRACE"]) {
    it.live(`pipelined ${method} requests are forwarded together too (${method} is a safe method)`, () =>
      Effect.gen(function*() {
        const { upstream, stats } = yield* pacedUpstream(() => 40)
        const gateway = yield* startGateway(simpleConfig([upstream.url]))
        const request = (n: number) => `${method} /${n} HTTP/1.1\r\nHost: x\r\n\r\n`
        const conversation = yield* converse(gateway.port, sendAll(request(1) + request(2) + request(3)), { responses: 3 })
        assert.deepStrictEqual(conversation.responses.map((r) => r.body), [`${method} /1`, `${method} /2`, `${method} /3`])
        assert.isAtLeast(stats.maxInFlight, 2)
      }))
  }

  it.live("413 on a chunked body over max_body_bytes says Connection: close, reaches the client, and closes", () =>
    Effect.gen(function*() {
      const upstream = yield* startUpstream("a", { rawHandler: (req) => void req.resume() })
      const config = simpleConfig([upstream.url])
      const gateway = yield* startGateway({ ...config, servers: config.servers.map((s) => ({ ...s, limits: { max_body_bytes: 1024 * 1024 } })) })
      const chunk = "x".repeat(64 * 1024)
      const conversation = yield* converse(gateway.port, (socket) => {
        socket.write("POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        // 1.1 MiB in 64 KiB chunks, then a request pipelined behind it.
        for (let i = 0; i < 18; i++) socket.write(`${chunk.length.toString(16)}\r\n${chunk}\r\n`)
        socket.write("0\r\n\r\nGET /next HTTP/1.1\r\nHost: x\r\n\r\n")
      }, { responses: 2, maxMs: 5_000 })
      const [first] = conversation.responses
      assert.strictEqual(first?.status, 413)
      assert.strictEqual(tagOf(first.body), "PayloadTooLarge")
      assert.deepStrictEqual(first.headers.get("connection"), ["close"])
      assert.strictEqual(conversation.responses.length, 1)
      assert.isTrue(conversation.closed)
    }))

  it.live("413 for a Content-Length over max_body_bytes reaches the client while it is still sending", () =>
    Effect.gen(function*() {
      const upstream = yield* startUpstream("a")
      const config = simpleConfig([upstream.url])
      const gateway = yield* startGateway({ ...config, servers: config.servers.map((s) => ({ ...s, limits: { max_body_bytes: 1024 } })) })
      const body = "y".repeat(4 * 1024 * 1024)
      const conversation = yield* converse(gateway.port, (socket) => {
        socket.write(`POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: ${body.length}\r\n\r\n`)
        socket.write(body)
      }, { responses: 1, maxMs: 5_000 })
      assert.strictEqual(conversation.responses[0]?.status, 413)
      assert.deepStrictEqual(conversation.responses[0].headers.get("connection"), ["close"])
      assert.deepStrictEqual(upstream.seen, [])
    }))

  it.live("a request with an Upgrade header other than websocket is answered as a plain request and the connection closes cleanly", () =>
    Effect.gen(function*() {
      const upstream = yield* startUpstream("a")
      const gateway = yield* startGateway(simpleConfig([upstream.url]))
      const conversation = yield* converse(
        gateway.port,
        sendAll("GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\nGET /after HTTP/1.1\r\nHost: x\r\n\r\n"),
        { responses: 2, settleMs: 300 }
      )
      const [first, second] = conversation.responses
      assert.strictEqual(first?.status, 200)
      assert.strictEqual(JSON.parse(first.body).url, "/ws")
      assert.isUndefined(JSON.parse(first.body).headers.upgrade)
      // node:http dropped what came with the upgrade's head: the first response says close and
      // the connection ends, never an open connection that swallowed a request.
      assert.isUndefined(second)
      assert.deepStrictEqual(first.headers.get("connection"), ["close"])
      assert.isTrue(conversation.closed)
      assert.deepStrictEqual(upstream.seen.map((r) => r.url), ["/ws"])
    }))
  it.live("a held request whose chunked body is bad is answered in turn; the held request before it still runs", () =>
    Effect.gen(function*() {
      const { upstream, arrived } = yield* pacedUpstream((req) => req.url === "/slow" ? 60 : 0)
      const gateway = yield* startGateway(simpleConfig([upstream.url]))
      const conversation = yield* converse(
        gateway.port,
        sendAll(
          "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n" +
            "POST /u HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi" +
            "POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nbad\r\n"
        ),
        { responses: 3 }
      )
      assert.deepStrictEqual(conversation.responses.map((r) => r.status), [200, 200, 400])
      assert.deepStrictEqual(conversation.responses.slice(0, 2).map((r) => r.body), ["GET /slow", "POST /u"])
      assert.deepStrictEqual(arrived(), ["GET /slow", "POST /u"])
      assert.isTrue(conversation.closed)
    }))

  it.live("a held request answered with Connection: close stops the held requests behind it", () =>
    Effect.gen(function*() {
      const { upstream, arrived } = yield* pacedUpstream(() => 40)
      const gateway = yield* startGateway(simpleConfig([upstream.url]))
      yield* converse(gateway.port, sendAll("GET /warm HTTP/1.1\r\nHost: x\r\n\r\n"), { responses: 1, settleMs: 0 })
      const conversation = yield* converse(
        gateway.port,
        sendAll("POST /u HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhiGET /%zz HTTP/1.1\r\nHost: x\r\n\r\nGET /after HTTP/1.1\r\nHost: x\r\n\r\n"),
        { responses: 2, settleMs: 200 }
      )
      assert.deepStrictEqual(conversation.responses.map((r) => r.status), [200, 400])
      assert.isTrue(conversation.closed)
      assert.deepStrictEqual(arrived(), ["GET /warm", "POST /u"])
    }))

  it.live("a pipelined response that fails after its head was queued cuts the connection after the responses before it", () =>
    Effect.gen(function*() {
      const upstream = yield* startUpstream("a", {
        rawHandler: (req, res) => {
          req.resume()
          if (req.url === "/slow") {
            setTimeout(() => {
              res.writeHead(200, { "content-length": "5" })
              res.end("first")
            }, 80)
            return
          }
          res.writeHead(200, { "content-length": "100" })
          res.write("0123456789")
          setTimeout(() => res.socket?.destroy(), 10)
        }
      })
      const gateway = yield* startGateway(simpleConfig([upstream.url]))
      const conversation = yield* converse(
        gateway.port,
        sendAll("GET /slow HTTP/1.1\r\nHost: x\r\n\r\nGET /broken HTTP/1.1\r\nHost: x\r\n\r\n"),
        { maxMs: 2_000 }
      )
      assert.deepStrictEqual(conversation.responses.map((r) => r.body), ["first"])
      // The second response is cut (a truncated response, never a complete-looking one) and the connection closes.
      assert.isFalse(conversation.rest.includes("HTTP/1.1 4"), "no error status after a cut response")
      assert.isTrue(conversation.closed)
    }))

  it.live("a 413 to a client that reads only after sending its whole body still reaches it (the close lingers)", () =>
    Effect.gen(function*() {
      const upstream = yield* startUpstream("a")
      const config = simpleConfig([upstream.url])
      const gateway = yield* startGateway({ ...config, servers: config.servers.map((s) => ({ ...s, limits: { max_body_bytes: 1024 } })) })
      const conversation = yield* uploadThenRead(gateway.port, 16 * 1024 * 1024)
      assert.isFalse(conversation.reset, "no reset")
      assert.strictEqual(conversation.responses[0]?.status, 413)
    }))

  it.live("an early upstream answer to a large upload reaches a client that reads only after sending (the close lingers)", () =>
    Effect.gen(function*() {
      const upstream = yield* startUpstream("a", {
        rawHandler: (_req, res) => {
          res.writeHead(401, { "content-length": "4" })
          res.end("nope")
        }
      })
      const gateway = yield* startGateway(simpleConfig([upstream.url]))
      const conversation = yield* uploadThenRead(gateway.port, 9 * 1024 * 1024)
      assert.isFalse(conversation.reset, "no reset")
      assert.strictEqual(conversation.responses[0]?.status, 401)
      assert.deepStrictEqual(conversation.responses[0].headers.get("connection"), ["close"])
    }))

  it.live("a refusal that closes the connection lingers past a large upload pipelined behind it, which never runs", () =>
    Effect.gen(function*() {
      const upstream = yield* startUpstream("a")
      const gateway = yield* startGateway(simpleConfig([upstream.url]))
      // Two Host headers: a 400 that closes the connection, answered before the upload is read.
      const conversation = yield* uploadThenRead(gateway.port, 16 * 1024 * 1024, "GET /first HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n")
      assert.isFalse(conversation.reset, "no reset")
      assert.deepStrictEqual(conversation.responses.map((r) => r.status), [400])
      assert.strictEqual(upstream.seen.length, 0)
    }))

  it.live("a lingering close ends once the client is idle for 5 s (nginx's lingering_timeout), long before its 30 s cap", () =>
    Effect.gen(function*() {
      const upstream = yield* startUpstream("a")
      const config = simpleConfig([upstream.url])
      const gateway = yield* startGateway({ ...config, servers: config.servers.map((s) => ({ ...s, limits: { max_body_bytes: 16 } })) })
      // A body far over the limit, of which only a part is sent: the 413 goes out, then the
      // connection lingers for the rest, which never comes.
      const client = yield* openConnection(gateway.port, { allowHalfOpen: true })
      yield* client.write("POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + "y".repeat(1000))
      const [refused] = yield* client.responses(1)
      const answered = performance.now()
      assert.strictEqual(refused.status, 413)
      // The gateway's side: the client keeps its half open, so only the gateway's count of its
      // connections shows when it let go.
      const open = Effect.map(Metric.snapshot, (all) => {
        const series = all.find((m) => m.id === "fibergate_client_connections" && m.attributes?.listener === "web")
        return series === undefined ? assert.fail("no fibergate_client_connections{listener=web}") : Number((series.state as { readonly value: number }).value)
      })
      assert.strictEqual(yield* open, 1)
      yield* eventually(Effect.map(open, (n) => n === 0), "the gateway closes the idle lingering connection", 20_000)
      const took = performance.now() - answered
      assert.isAtLeast(took, 4_500)
      assert.isBelow(took, 20_000)
    }), 30_000)

  it.live("GETs held behind a POST run together once it is answered (only an unsafe request runs alone)", () =>
    Effect.gen(function*() {
      const events: Array<string> = []
      const waiting: Array<() => void> = []
      const upstream = yield* startUpstream("a", {
        rawHandler: (req, res) => {
          const line = `${req.method} ${req.url}`
          events.push(`arrived ${line}`)
          req.resume()
          const answer = () => {
            events.push(`answered ${line}`)
            res.writeHead(200, { "content-length": Buffer.byteLength(line) })
            res.end(line)
          }
          if (req.method === "POST") return void req.on("end", answer)
          // Each GET waits for the other (at most 1.5 s, so that a serial run still ends).
          waiting.push(answer)
          if (waiting.length === 2) for (const w of waiting.splice(0)) w()
          else setTimeout(() => waiting.splice(0).forEach((w) => w()), 1_500)
        }
      })
      const gateway = yield* startGateway(simpleConfig([upstream.url]))
      const conversation = yield* converse(
        gateway.port,
        sendAll("POST /w HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nxGET /b HTTP/1.1\r\nHost: x\r\n\r\nGET /c HTTP/1.1\r\nHost: x\r\n\r\n"),
        { responses: 3, maxMs: 5_000 }
      )
      assert.deepStrictEqual(conversation.responses.map((r) => r.body), ["POST /w", "GET /b", "GET /c"])
      assert.deepStrictEqual(events.slice(0, 4), ["arrived POST /w", "answered POST /w", "arrived GET /b", "arrived GET /c"])
    }))

  it.live("a client that leaves while requests are held: the held ones never run", () =>
    Effect.gen(function*() {
      const arrived = signal()
      const seen: Array<string> = []
      const upstream = yield* startUpstream("a", {
        rawHandler: (req, res) => {
          seen.push(req.url ?? "")
          req.resume()
          if (req.url === "/slow") return fire(arrived, undefined) // never answered
          res.writeHead(200, { "content-length": "2" })
          res.end("ok")
        }
      })
      const base = simpleConfig([upstream.url])
      // One upstream connection: a held request started by mistake would reach it before /after.
      const gateway = yield* startGateway({ ...base, upstreams: { app: { ...base.upstreams.app, pool: { connections: 1 } } } })
      const client = yield* openConnection(gateway.port)
      yield* client.write("POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nxGET /held HTTP/1.1\r\nHost: x\r\n\r\n")
      yield* awaitSignal(arrived)
      client.socket.destroy()
      assert.strictEqual((yield* send(gateway.url("/after"))).status, 200)
      assert.deepStrictEqual(seen, ["/slow", "/after"])
    }))

  it.live("a bad chunk in the body of a request running beside an earlier one that has finished is still that request's 400", () =>
    Effect.gen(function*() {
      const upstream = yield* startUpstream("a", {
        rawHandler: (req, res) => {
          req.resume()
          if (req.url === "/a") return void setTimeout(() => res.writeHead(200, { "content-length": "1" }).end("a"), 100)
          req.on("end", () => res.writeHead(200, { "content-length": "1" }).end("b"))
        }
      })
      const gateway = yield* startGateway(simpleConfig([upstream.url]))
      const client = yield* openConnection(gateway.port)
      // Two safe requests run together; the second one's chunked body is still coming.
      yield* client.write("GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
      const [first] = yield* client.responses(1)
      assert.strictEqual(first.body, "a")
      yield* client.write("zz\r\n")
      const responses = yield* client.responses(2)
      assert.strictEqual(responses[1].status, 400)
      yield* client.closed()
    }))
})
