/**
 * Data-path claims of the README not pinned elsewhere, end to end through a real gateway: a
 * response streams with backpressure (an upstream writing faster than the client reads is held
 * back, nothing buffers the whole body), and the exact JSON bodies of the route timeout (the
 * README's example) and of a per-try timeout.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { connect } from "node:net"
import { request, simpleConfig, startGateway, startUpstream } from "../support/harness.ts"

const MiB = 1024 * 1024

describe("bodies stream with backpressure", () => {
  it.live("an upstream sending 64 MiB to a client that does not read is held back: it gets at most a few MiB ahead, and the client then reads it all", () =>
    Effect.gen(function*() {
      const TOTAL = 64 * MiB
      const chunk = Buffer.alloc(64 * 1024, 0x61)
      const upstreamState = { written: 0, waiting: false, finished: false }
      const upstream = yield* startUpstream("fast", {
        rawHandler: (_req, res) => {
          res.writeHead(200, { "content-type": "application/octet-stream", "content-length": TOTAL })
          // Writes as fast as the socket takes it, honouring its own backpressure.
          const pump = () => {
            while (upstreamState.written < TOTAL) {
              upstreamState.written += chunk.length
              if (!res.write(chunk)) {
                upstreamState.waiting = true
                res.once("drain", () => {
                  upstreamState.waiting = false
                  pump()
                })
                return
              }
            }
            res.end()
            upstreamState.finished = true
          }
          pump()
        }
      })
      const gateway = yield* startGateway(simpleConfig([upstream.url]))
      const outcome = yield* Effect.callback<{ readonly ahead: number; readonly received: number; readonly heldBack: boolean }>((resume) => {
        const socket = connect(gateway.port, "127.0.0.1")
        let received = 0
        let ahead = -1
        let heldBack = false
        socket.on("data", (c: Buffer) => void (received += c.length))
        socket.on("end", () => resume(Effect.succeed({ ahead, received, heldBack })))
        socket.on("error", () => undefined)
        // The client reads nothing until the upstream has either finished writing (no
        // backpressure) or is stuck waiting for its socket to drain (held back).
        socket.pause()
        socket.write("GET /big HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        let last = -1
        let unchanged = 0
        const poll = setInterval(() => {
          const stuck = upstreamState.waiting && upstreamState.written === last && ++unchanged >= 3
          if (upstreamState.written !== last) unchanged = 0
          last = upstreamState.written
          if (!upstreamState.finished && !stuck) return
          clearInterval(poll)
          heldBack = !upstreamState.finished
          ahead = upstreamState.written - received
          socket.resume()
        }, 20)
        return Effect.sync(() => {
          clearInterval(poll)
          socket.destroy()
        })
      }).pipe(Effect.timeout("10 seconds"))
      // Loopback socket buffers on both hops hold some MiB; without backpressure the upstream
      // would have written all 64 MiB with the client having read nothing.
      assert.isTrue(outcome.heldBack, `the upstream finished writing ${TOTAL} bytes while the client read nothing`)
      assert.isBelow(outcome.ahead, 32 * MiB)
      assert.isAbove(outcome.received, TOTAL, "the whole body (and the head) reached the client")
    }))
})

describe("error bodies", () => {
  it.live("the route timeout answers 504 with exactly {\"error\":\"UpstreamTimeout\",\"message\":\"The route timeout expired\"}", () =>
    Effect.gen(function*() {
      const upstream = yield* startUpstream("hung", { rawHandler: () => undefined })
      const gateway = yield* startGateway({ ...simpleConfig([upstream.url], { timeout: "100ms" }), shutdown: { drain_timeout: "200ms" } })
      const res = yield* request(gateway.url("/slow"))
      assert.strictEqual(res.status, 504)
      assert.strictEqual(res.headers.get("content-type"), "application/json")
      assert.strictEqual(res.body, "{\"error\":\"UpstreamTimeout\",\"message\":\"The route timeout expired\"}")
    }))

  it.live("a per-try timeout with no retry left answers 504 UpstreamResponseTimeout", () =>
    Effect.gen(function*() {
      const upstream = yield* startUpstream("hung", { rawHandler: () => undefined })
      const gateway = yield* startGateway({
        ...simpleConfig([upstream.url], { retry: { attempts: 1, per_try_timeout: "100ms" } }),
        shutdown: { drain_timeout: "200ms" }
      })
      const res = yield* request(gateway.url("/slow"))
      assert.strictEqual(res.status, 504)
      assert.deepStrictEqual(JSON.parse(res.body), { error: "UpstreamResponseTimeout", message: "The per-try timeout expired" })
    }))
})
