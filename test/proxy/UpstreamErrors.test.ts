import { assert, describe, it } from "@effect/vitest"
import { errorResponse } from "../../src/proxy/GatewayError.ts"
import { BODY_TOO_LARGE, fromUpstreamError } from "../../src/proxy/UpstreamErrors.ts"

const withCode = (code: string) => Object.assign(new Error(code), { code })

describe("undici and OS errors map to gateway errors once, at the boundary", () => {
  it.each([
    ["UND_ERR_CONNECT_TIMEOUT", "UpstreamConnectTimeout", 504],
    ["UND_ERR_HEADERS_TIMEOUT", "UpstreamResponseTimeout", 504],
    ["UND_ERR_BODY_TIMEOUT", "UpstreamBodyTimeout", 504],
    ["ECONNREFUSED", "UpstreamConnectError", 502],
    ["ENOTFOUND", "UpstreamConnectError", 502],
    ["UND_ERR_SOCKET", "UpstreamReset", 502],
    ["ECONNRESET", "UpstreamReset", 502],
    ["HPE_INVALID_CHUNK_SIZE", "UpstreamProtocolError", 502],
    [BODY_TOO_LARGE, "PayloadTooLarge", 413],
    ["SOMETHING_ELSE", "InternalError", 500]
  ] as const)("%s -> %s (%d)", (code, tag, status) => {
    const error = fromUpstreamError(withCode(code))
    assert.strictEqual(error._tag, tag)
    assert.strictEqual(errorResponse(error).status, status)
  })

  it("reads the code from the cause when undici wraps the error", () => {
    const wrapped = new Error("wrapped", { cause: withCode("ECONNREFUSED") })
    assert.strictEqual(fromUpstreamError(wrapped)._tag, "UpstreamConnectError")
  })
})
