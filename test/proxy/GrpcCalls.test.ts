import { assert, describe, it } from "@effect/vitest"
import * as fc from "fast-check"
import { GrpcFraming, grpcTimeoutMs } from "../../src/proxy/GrpcCalls.ts"
import { scanRequestHeaders } from "../../src/proxy/RequestHeaders.ts"

describe("grpcTimeoutMs", () => {
  it("reads each unit, rounding up to whole milliseconds", () => {
    assert.strictEqual(grpcTimeoutMs("2H"), 7_200_000)
    assert.strictEqual(grpcTimeoutMs("3M"), 180_000)
    assert.strictEqual(grpcTimeoutMs("2S"), 2_000)
    assert.strictEqual(grpcTimeoutMs("250m"), 250)
    assert.strictEqual(grpcTimeoutMs("1500u"), 2)
    assert.strictEqual(grpcTimeoutMs("1n"), 1)
    assert.strictEqual(grpcTimeoutMs("0m"), 0)
    assert.strictEqual(grpcTimeoutMs("99999999S"), 99_999_999_000)
  })

  it("refuses what is not 1 to 8 digits and a unit", () => {
    // ":" and "a" sit just past "9" and far past it; "/" just before "0".
    for (const bad of ["", "S", "m5", "1.5S", "123456789S", "10s", "10", "-1S", " 1S", "1 S", "1:S", "9aS", "1/S"]) {
      assert.isUndefined(grpcTimeoutMs(bad), bad)
    }
  })
})

/** A message of `length` bytes; `compressed` sets the flag byte, which is not part of the length. */
const message = (length: number, compressed = false): Uint8Array => {
  const bytes = new Uint8Array(5 + length)
  bytes[0] = compressed ? 1 : 0
  new DataView(bytes.buffer).setUint32(1, length)
  return bytes
}

describe("GrpcFraming", () => {
  it("is at a boundary exactly after whole messages, however the body is chunked", () =>
    fc.assert(fc.property(
      fc.array(fc.tuple(fc.integer({ min: 0, max: 300 }), fc.boolean()), { maxLength: 6 }),
      fc.integer({ min: 0, max: 400 }),
      fc.array(fc.integer({ min: 1, max: 64 }), { minLength: 1, maxLength: 20 }),
      (messages, cutAt, chunkSizes) => {
        const lengths = messages.map(([length]) => length)
        const whole = Buffer.concat(messages.map(([length, compressed]) => message(length, compressed)))
        const sent = whole.subarray(0, Math.min(cutAt, whole.length))
        const framing = new GrpcFraming()
        let i = 0
        let k = 0
        while (i < sent.length) {
          const size = chunkSizes[k++ % chunkSizes.length]
          framing.feed(sent.subarray(i, i + size))
          i += size
        }
        let ends = 0
        const boundaries = new Set([0])
        for (const l of lengths) boundaries.add(ends += 5 + l)
        assert.strictEqual(framing.atBoundary, boundaries.has(sent.length))
      }
    )))

  it("reads the four length bytes big-endian (a length past 255)", () => {
    const framing = new GrpcFraming()
    framing.feed(Buffer.from([0, 0, 0, 1, 0]))
    framing.feed(Buffer.alloc(255))
    assert.isFalse(framing.atBoundary)
    framing.feed(Buffer.alloc(1))
    assert.isTrue(framing.atBoundary)
  })
})

describe("scanRequestHeaders: TE and grpc-timeout", () => {
  it("passes TE on as `trailers` alone, once; drops a TE without it; takes grpc-timeout out", () => {
    const te = (raw: Array<string>) => {
      const { headers } = scanRequestHeaders(raw)
      return headers.filter((_, i) => i % 2 === 0 && headers[i] === "te").length > 0 ? headers[headers.indexOf("te") + 1] : undefined
    }
    assert.strictEqual(te(["TE", "trailers"]), "trailers")
    assert.strictEqual(te(["te", "gzip, Trailers"]), "trailers")
    assert.strictEqual(te(["te", "gzip"]), undefined)
    assert.strictEqual(te(["te", "trailersx"]), undefined)
    const twice = scanRequestHeaders(["te", "trailers", "te", "trailers"]).headers
    assert.deepStrictEqual(twice, ["te", "trailers"])
    const scan = scanRequestHeaders(["grpc-timeout", "5S", "x", "y"])
    assert.strictEqual(scan.grpcTimeout, "5S")
    assert.deepStrictEqual(scan.headers, ["x", "y"])
  })
})
