import { assert, describe, it } from "@effect/vitest"
import { constants } from "node:http2"
import { Http2Error } from "../../src/proxy/Http2Streams.ts"

describe("Http2Error", () => {
  it("is RFC 9113's codes, as node:http2 numbers them", () => {
    assert.deepStrictEqual(Http2Error, {
      NO_ERROR: constants.NGHTTP2_NO_ERROR,
      INTERNAL_ERROR: constants.NGHTTP2_INTERNAL_ERROR,
      REFUSED_STREAM: constants.NGHTTP2_REFUSED_STREAM,
      CANCEL: constants.NGHTTP2_CANCEL,
      ENHANCE_YOUR_CALM: constants.NGHTTP2_ENHANCE_YOUR_CALM
    })
  })
})
