import { lookupHeader } from "../../src/proxy/RequestHeaders.ts"
import { assert, describe, it } from "@effect/vitest"
import type { IncomingMessage } from "node:http"
import { PassThrough } from "node:stream"
import { clfTime, makeAccessLog, type AccessRecord } from "../../src/telemetry/AccessLog.ts"

const fakeRequest = (method: string, headers: Record<string, string> = {}, url = "/a/b?x=1") =>
  ({ method, url, httpVersion: "1.1", rawHeaders: Object.entries(headers).flat(), socket: null }) as unknown as IncomingMessage

const record = (overrides: Partial<AccessRecord> = {}): AccessRecord => ({
  req: fakeRequest("GET", { "user-agent": "curl/8.0" }),
  clientIp: "127.0.0.9",
  route: "api",
  path: "/a/b",
  status: 200,
  bytesIn: 7,
  bytesOut: 12,
  durationMs: 1.23456,
  upstream: "http://127.0.0.1:3000",
  attempts: 1,
  traceId: undefined,
  error: undefined,
  ...overrides
})

const capture = (format: "json" | "text", ...records: Array<AccessRecord>): string => {
  const out = new PassThrough()
  const chunks: Array<Buffer> = []
  out.on("data", (c: Buffer) => chunks.push(c))
  const log = makeAccessLog(format, out, "public", lookupHeader)
  for (const r of records) log.write(r)
  return Buffer.concat(chunks).toString("utf8")
}

describe("AccessLog", () => {
  it("writes one JSON object per request with every field the operator needs", () => {
    const line = capture("json", record({ traceId: "4bf92f3577b34da6a3ce929d0e0e4736", attempts: 2 }))
    assert.isTrue(line.endsWith("\n"))
    const entry = JSON.parse(line)
    assert.deepStrictEqual(
      { ...entry, time: undefined },
      {
        time: undefined,
        listener: "public",
        route: "api",
        method: "GET",
        path: "/a/b",
        status: 200,
        duration_ms: 1.235,
        bytes_in: 7,
        bytes_out: 12,
        upstream: "http://127.0.0.1:3000",
        attempts: 2,
        client_ip: "127.0.0.9",
        user_agent: "curl/8.0",
        trace_id: "4bf92f3577b34da6a3ce929d0e0e4736"
      }
    )
    assert.isFalse(Number.isNaN(Date.parse(entry.time)))
  })

  it("writes null for an absent user agent and trace id", () => {
    const entry = JSON.parse(capture("json", record({ req: fakeRequest("GET") })))
    assert.isNull(entry.user_agent)
    assert.isNull(entry.trace_id)
  })

  it("escapes quotes, backslashes and control characters so every line stays valid JSON", () => {
    const line = capture(
      "json",
      record({ path: "/\"x\"\\\u0001\u2028é", route: "r\"", req: fakeRequest("GET", { "user-agent": "a\"b\n" }) })
    )
    const entry = JSON.parse(line)
    assert.strictEqual(entry.path, "/\"x\"\\\u0001\u2028é")
    assert.strictEqual(entry.route, "r\"")
    assert.strictEqual(entry.user_agent, "a\"b\n")
    assert.strictEqual(line.split("\n").length, 2)
  })

  it("writes the combined log format followed by the gateway's fields in the text format", () => {
    const line = capture(
      "text",
      record({
        req: fakeRequest("POST", { "user-agent": "k6", referer: "http://ref/" }, "/p?q=1"),
        status: 502,
        bytesOut: 5,
        durationMs: 2,
        route: "all",
        upstream: "http://u:1",
        attempts: 3,
        error: "UpstreamReset"
      })
    )
    assert.match(
      line,
      /^127\.0\.0\.9 - - \[\d{2}\/[A-Z][a-z]{2}\/\d{4}:\d{2}:\d{2}:\d{2} \+0000\] "POST \/p\?q=1 HTTP\/1\.1" 502 5 "http:\/\/ref\/" "k6" listener=public route=all duration_ms=2\.000 upstream=http:\/\/u:1 attempts=3 bytes_in=7 trace_id=- error=UpstreamReset\n$/
    )
  })

  it("formats the combined log format's time in UTC", () => {
    assert.strictEqual(clfTime(new Date(Date.UTC(2026, 0, 5, 3, 4, 9))), "05/Jan/2026:03:04:09 +0000")
  })

  it("names the gateway error that ended a request in its own field, and only then", () => {
    const failed = JSON.parse(capture("json", record({ status: 504, error: "UpstreamConnectTimeout" })))
    assert.strictEqual(failed.error, "UpstreamConnectTimeout")
    const ok = JSON.parse(capture("json", record()))
    assert.isFalse("error" in ok)
  })
})
