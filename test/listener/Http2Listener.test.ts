/**
 * The HTTP/2 listener's rules as functions: which session errors count as which GOAWAY, when
 * client resets end a connection (Rapid Reset), and a header list's size as RFC 9113 counts it.
 */
import { assert, describe, it } from "@effect/vitest"
import * as fc from "fast-check"
import { goawayReason, headerListBytes, RAPID_RESET_MIN, tooManyResets } from "../../src/listener/Http2Listener.ts"

const withCode = (code: string, message = "x") => Object.assign(new Error(message), { code })

describe("Http2Listener rules", () => {
  it("nghttp2's errors are counted by reason; a socket's error is no GOAWAY of the gateway's", () => {
    assert.strictEqual(goawayReason(withCode("ERR_HTTP2_ERROR", "Too many CONTINUATION frames following a HEADER frame")), "continuation_flood")
    assert.strictEqual(goawayReason(withCode("ERR_HTTP2_ERROR", "Protocol error")), "protocol_error")
    assert.strictEqual(goawayReason(withCode("ERR_HTTP2_TOO_MANY_INVALID_FRAMES")), "invalid_frames")
    assert.isUndefined(goawayReason(withCode("ECONNRESET")))
    assert.isUndefined(goawayReason(new Error("Rapid Reset")))
  })

  it("Rapid Reset: a connection ends once it has reset RAPID_RESET_MIN streams and they are at least half of those it opened", () => {
    assert.isFalse(tooManyResets(RAPID_RESET_MIN - 1, RAPID_RESET_MIN - 1))
    assert.isTrue(tooManyResets(RAPID_RESET_MIN, RAPID_RESET_MIN))
    assert.isTrue(tooManyResets(RAPID_RESET_MIN, 2 * RAPID_RESET_MIN))
    assert.isFalse(tooManyResets(RAPID_RESET_MIN, 2 * RAPID_RESET_MIN + 1))
    fc.assert(fc.property(fc.nat(10_000), fc.nat(10_000), (resets, answered) => {
      const opened = resets + answered
      assert.strictEqual(tooManyResets(resets, opened), resets >= RAPID_RESET_MIN && resets >= answered)
    }))
  })

  it("a header list counts its names, values and 32 bytes per field", () => {
    assert.strictEqual(headerListBytes([]), 0)
    assert.strictEqual(headerListBytes([":path", "/"]), 5 + 1 + 32)
    assert.strictEqual(headerListBytes(["x", "é", "y", "zz"]), 1 + 2 + 32 + 1 + 2 + 32)
  })
})
