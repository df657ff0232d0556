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

describe("scanRequestHeaders on HTTP/2's raw headers", () => {
  const pseudo = [":method", "POST", ":path", "/p", ":scheme", "https", ":authority", "a.test"]

  it(":authority is the Host; the other pseudo-header fields are not forwarded", () => {
    const scan = scanRequestHeaders([...pseudo, "x-a", "1"])
    assert.strictEqual(scan.host, "a.test")
    assert.strictEqual(scan.hostCount, 1)
    assert.deepStrictEqual(scan.headers, ["x-a", "1"])
  })

  it("a Host saying what :authority says is the same field; one saying otherwise makes two", () => {
    assert.strictEqual(scanRequestHeaders([...pseudo, "host", "a.test"]).hostCount, 1)
    const other = scanRequestHeaders([...pseudo, "host", "b.test"])
    assert.strictEqual(other.hostCount, 2)
    // A Host before any :authority (HTTP/1.1) counts as it always did.
    assert.strictEqual(scanRequestHeaders(["host", "a.test", "host", "a.test"]).hostCount, 2)
  })

  it("split Cookie fields are joined into the first, in order, with '; '", () => {
    const scan = scanRequestHeaders(["cookie", "a=1", "x-b", "2", "cookie", "c=3", "cookie", "d=4"])
    assert.deepStrictEqual(scan.headers, ["cookie", "a=1; c=3; d=4", "x-b", "2"])
    assert.deepStrictEqual(scanRequestHeaders(["Cookie", "only=1"]).headers, ["Cookie", "only=1"])
  })

  it("a body HTTP/2 frames without Content-Length streams as chunked; with one, it is sized", () => {
    const unsized = scanRequestHeaders(pseudo, true)
    assert.isTrue(unsized.chunked)
    assert.isTrue(unsized.hasBody)
    const sized = scanRequestHeaders([...pseudo, "content-length", "5"], true)
    assert.isFalse(sized.chunked)
    assert.strictEqual(sized.contentLength, 5)
    assert.isFalse(scanRequestHeaders(pseudo, false).hasBody)
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
