/**
 * The one pass over a request's raw headers: repeated headers the gateway reads are joined as
 * RFC 9110 §5.3 combines them, and whether the request has a body is decided by its framing.
 */
import { assert, describe, it } from "@effect/vitest"
import { lookupHeader, scanRequestHeaders } from "../../src/proxy/RequestHeaders.ts"

describe("scanRequestHeaders", () => {
  it("joins repeated Connection, Transfer-Encoding, X-Forwarded-For and Via headers in order", () => {
    const scan = scanRequestHeaders([
      "Connection", "x-a",
      "Transfer-Encoding", "gzip",
      "X-Forwarded-For", "10.0.0.1",
      "Via", "1.1 a",
      "Connection", "x-b",
      "Transfer-Encoding", "chunked",
      "X-Forwarded-For", "10.0.0.2",
      "Via", "1.1 b"
    ])
    assert.strictEqual(scan.connection, "x-a, x-b")
    assert.strictEqual(scan.transferEncoding, "gzip, chunked")
    assert.strictEqual(scan.forwardedFor, "10.0.0.1, 10.0.0.2")
    assert.strictEqual(scan.via, "1.1 a, 1.1 b")
    assert.isTrue(scan.chunked)
    assert.isTrue(scan.hasBody)
    assert.deepStrictEqual(scan.headers, [])
  })

  it("a body only with chunked framing or a Content-Length above 0", () => {
    assert.isFalse(scanRequestHeaders(["Content-Length", "0"]).hasBody)
    assert.isFalse(scanRequestHeaders(["Host", "t"]).hasBody)
    assert.isTrue(scanRequestHeaders(["Content-Length", "1"]).hasBody)
    assert.strictEqual(scanRequestHeaders(["Content-Length", "12"]).contentLength, 12)
    assert.isUndefined(scanRequestHeaders(["Host", "t"]).connection)
    assert.isUndefined(scanRequestHeaders(["Host", "t"]).transferEncoding)
  })
})

describe("lookupHeader", () => {
  it("finds a header whatever its case, and joins repeated ones", () => {
    const raw = ["User-Agent", "a", "x-other", "z", "user-agent", "b"]
    assert.strictEqual(lookupHeader(raw, "user-agent"), "a, b")
    assert.strictEqual(lookupHeader(raw, "x-other"), "z")
    assert.isUndefined(lookupHeader(raw, "referer"))
  })
})
