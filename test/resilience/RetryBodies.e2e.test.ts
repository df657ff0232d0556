/**
 * "A streamed or chunked body is sent once and its request is never retried": a small chunked
 * PUT (well within `buffer_bytes`, but without a Content-Length) whose try is reset after the
 * upstream read its body is answered 502, not replayed on the other endpoint; the same body with
 * a Content-Length is replayed (the control).
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { request as httpRequest } from "node:http"
import { resetThenEcho } from "../support/replay.ts"

/** A PUT of `body` to `url`, chunked or with a Content-Length; the status and body. */
const put = (url: string, body: string, chunked: boolean) =>
  Effect.callback<{ readonly status: number; readonly body: string }>((resume) => {
    const req = httpRequest(url, { method: "PUT", agent: false, headers: chunked ? {} : { "content-length": Buffer.byteLength(body) } }, (res) => {
      let text = ""
      res.on("data", (c: Buffer) => (text += c.toString()))
      res.on("end", () => resume(Effect.succeed({ status: res.statusCode ?? 0, body: text })))
    })
    req.on("error", (e) => resume(Effect.die(e)))
    if (chunked) {
      req.write(body.slice(0, 3))
      req.end(body.slice(3))
    } else req.end(body)
    return Effect.sync(() => req.destroy())
  }).pipe(Effect.timeout("3 seconds"))

const putThrough = (chunked: boolean) =>
  Effect.gen(function*() {
    const { gateway, b, resets } = yield* resetThenEcho
    const res = yield* put(gateway.url("/put"), "hello body", chunked)
    return { ...res, resets, b }
  })

describe("retries: chunked request bodies", () => {
  it.live("a chunked PUT of 10 bytes is sent once: its reset is answered 502 UpstreamReset, the other endpoint never sees it", () =>
    Effect.gen(function*() {
      const { b, body, resets, status } = yield* putThrough(true)
      assert.strictEqual(resets(), 1)
      assert.strictEqual(status, 502)
      assert.strictEqual(JSON.parse(body).error, "UpstreamReset")
      assert.deepStrictEqual(b.seen, [])
    }))

  it.live("control: the same 10 bytes with a Content-Length are buffered and replayed on the other endpoint", () =>
    Effect.gen(function*() {
      const { b, resets, status } = yield* putThrough(false)
      assert.strictEqual(resets(), 1)
      assert.strictEqual(status, 200)
      assert.deepStrictEqual(b.seen.map((s) => s.body.toString()), ["hello body"])
    }))
})
