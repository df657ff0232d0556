import { assert, describe, it } from "@effect/vitest"
import { healthCheckRequest, servingStatusOf } from "../../src/resilience/Probe.ts"

const framed = (bytes: ReadonlyArray<number>) => {
  const prefix = Buffer.alloc(5)
  prefix.writeUInt32BE(bytes.length, 1)
  return Buffer.concat([prefix, Buffer.from(bytes)])
}

describe("grpc.health.v1 messages", () => {
  it("encodes HealthCheckRequest: no field for the empty service, a varint length past 127", () => {
    assert.deepStrictEqual([...healthCheckRequest("")], [0, 0, 0, 0, 0])
    assert.deepStrictEqual([...healthCheckRequest("a.B")], [0, 0, 0, 0, 5, 0x0a, 3, 0x61, 0x2e, 0x42])
    const long = healthCheckRequest("x".repeat(200))
    assert.deepStrictEqual([...long.subarray(0, 8)], [0, 0, 0, 0, 203, 0x0a, 200 % 128 | 0x80, 1])
  })

  it("reads HealthCheckResponse's status; skips other fields; refuses what is not a message", () => {
    assert.strictEqual(servingStatusOf(framed([0x08, 1])), 1)
    assert.strictEqual(servingStatusOf(framed([0x08, 2])), 2)
    assert.strictEqual(servingStatusOf(framed([])), 0)
    // An unknown length-delimited field 2 before the status.
    assert.strictEqual(servingStatusOf(framed([0x12, 2, 9, 9, 0x08, 1])), 1)
    assert.isUndefined(servingStatusOf(Buffer.from([0, 0, 0])))
    assert.isUndefined(servingStatusOf(Buffer.from([1, 0, 0, 0, 2, 0x08, 1])), "compressed")
    assert.isUndefined(servingStatusOf(Buffer.from([0, 0, 0, 0, 9, 0x08, 1])), "shorter than its length")
    assert.isUndefined(servingStatusOf(framed([0x08, 0x80])), "a varint cut short")
    assert.isUndefined(servingStatusOf(framed([0x0d, 1, 2, 3, 4])), "a wire type it does not read")
  })
})
