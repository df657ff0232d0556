import { assert, describe, it } from "@effect/vitest"
import type { IncomingMessage } from "node:http"
import { PassThrough } from "node:stream"
import { makeAccessLog } from "../../src/telemetry/AccessLog.ts"

const fakeRequest = (method: string) => ({ method, socket: { remoteAddress: "127.0.0.9" } }) as unknown as IncomingMessage

const capture = (format: "json" | "text", write: (log: ReturnType<typeof makeAccessLog>) => void): string => {
  const out = new PassThrough()
  const chunks: Array<Buffer> = []
  out.on("data", (c: Buffer) => chunks.push(c))
  write(makeAccessLog(format, out))
  return Buffer.concat(chunks).toString("utf8")
}

describe("AccessLog", () => {
  it("writes one JSON object per request with the request's facts", () => {
    const line = capture("json", (log) => log.write(fakeRequest("GET"), "/a/b", 200, 12, 1.23456, "api", "http://127.0.0.1:3000"))
    assert.isTrue(line.endsWith("\n"))
    const entry = JSON.parse(line)
    assert.strictEqual(entry.client, "127.0.0.9")
    assert.strictEqual(entry.method, "GET")
    assert.strictEqual(entry.path, "/a/b")
    assert.strictEqual(entry.status, 200)
    assert.strictEqual(entry.bytes, 12)
    assert.strictEqual(entry.duration_ms, 1.235)
    assert.strictEqual(entry.route, "api")
    assert.strictEqual(entry.upstream, "http://127.0.0.1:3000")
    assert.isFalse(Number.isNaN(Date.parse(entry.time)))
  })

  it("escapes quotes, backslashes and control characters so every line stays valid JSON", () => {
    const line = capture("json", (log) => log.write(fakeRequest("GET"), "/\"x\"\\\u0001\u2028é", 404, 0, 0, "r\"", "-"))
    const entry = JSON.parse(line)
    assert.strictEqual(entry.path, "/\"x\"\\\u0001\u2028é")
    assert.strictEqual(entry.route, "r\"")
    assert.strictEqual(line.split("\n").length, 2)
  })

  it("writes a single text line in the text format", () => {
    const line = capture("text", (log) => log.write(fakeRequest("POST"), "/p", 502, 5, 2, "all", "http://u:1"))
    assert.match(line, /^\S+ 127\.0\.0\.9 "POST \/p" 502 5 2\.000ms route=all upstream=http:\/\/u:1\n$/)
  })
  it("names the gateway error that ended a request in its own field, and only then", () => {
    const failed = JSON.parse(capture("json", (log) => log.write(fakeRequest("GET"), "/t", 504, 0, 300, "all", "http://u:1", "UpstreamConnectTimeout")))
    assert.strictEqual(failed.error, "UpstreamConnectTimeout")
    const ok = JSON.parse(capture("json", (log) => log.write(fakeRequest("GET"), "/t", 200, 2, 1, "all", "http://u:1")))
    assert.isFalse("error" in ok)
    const text = capture("text", (log) => log.write(fakeRequest("GET"), "/t", 499, 0, 1, "all", "http://u:1", "ClientClosed"))
    assert.match(text, / error=ClientClosed\n$/)
  })
})
