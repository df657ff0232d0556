import { describe, expect, it } from "@effect/vitest"
import * as fc from "fast-check"
import { closeFrame, FrameTracker } from "../../src/proxy/WebSocketFrames.ts"

/** One frame as RFC 6455 §5.2 lays it out, payload bytes all `fill`. */
const frame = (opcode: number, length: number, masked: boolean, fill: number): Buffer => {
  const ext = length < 126 ? 0 : length < 65536 ? 2 : 8
  const header = Buffer.alloc(2 + ext + (masked ? 4 : 0))
  header[0] = 0x80 | opcode
  header[1] = (masked ? 0x80 : 0) | (ext === 0 ? length : ext === 2 ? 126 : 127)
  if (ext === 2) header.writeUInt16BE(length, 2)
  if (ext === 8) header.writeBigUInt64BE(BigInt(length), 2)
  return Buffer.concat([header, Buffer.alloc(length, fill)])
}

const frameArb = fc.record({
  opcode: fc.constantFrom(0, 1, 2, 8, 9, 10),
  length: fc.oneof(fc.integer({ min: 0, max: 125 }), fc.integer({ min: 126, max: 70_000 }), fc.constantFrom(125, 126, 65535, 65536)),
  masked: fc.boolean()
})

/** The stream cut into chunks at the given points. */
const chunksOf = (stream: Buffer, cuts: ReadonlyArray<number>): Array<Buffer> => {
  const points = [...new Set(cuts.map((c) => c % (stream.length + 1)))].sort((a, b) => a - b)
  const out: Array<Buffer> = []
  let from = 0
  for (const p of [...points, stream.length]) {
    if (p > from) out.push(stream.subarray(from, p))
    from = Math.max(from, p)
  }
  return out
}

describe("WebSocket frame boundaries", () => {
  it("for any frames cut into any chunks, the tracker is at a boundary exactly where a frame ends", () => {
    fc.assert(fc.property(fc.array(frameArb, { minLength: 1, maxLength: 6 }), fc.array(fc.nat(), { maxLength: 12 }), (frames, cuts) => {
      const built = frames.map((f, i) => frame(f.opcode, f.length, f.masked, i))
      const ends = new Set<number>()
      let at = 0
      for (const b of built) ends.add(at += b.length)
      const stream = Buffer.concat(built)
      const plain = new FrameTracker()
      const stopping = new FrameTracker()
      const found = new Set<number>()
      let offset = 0
      for (const chunk of chunksOf(stream, cuts)) {
        expect(plain.feed(chunk)).toBe(chunk.length)
        // The same chunk through a tracker that stops at each boundary: every boundary found, in order.
        let rest = chunk
        let at = offset
        while (rest.length > 0) {
          const n = stopping.feed(rest, true)
          if (n < 0) break
          if (n > 0) found.add(at + n)
          const step = n === 0 ? 1 : n
          if (n === 0) stopping.feed(rest.subarray(0, 1))
          rest = rest.subarray(step)
          at += step
        }
        offset += chunk.length
        expect(plain.atBoundary).toBe(ends.has(offset))
      }
      expect([...found].sort((x, y) => x - y)).toEqual([...ends].sort((x, y) => x - y))
      expect(plain.atBoundary).toBe(true)
    }), { numRuns: 300 })
  })

  it("stopAtBoundary consumes up to the end of the frame in progress, 0 at a boundary, -1 when the chunk ends inside the frame", () => {
    fc.assert(fc.property(frameArb, frameArb, fc.nat(), (a, b, cut) => {
      const first = frame(a.opcode, a.length, a.masked, 1)
      const second = frame(b.opcode, b.length, b.masked, 2)
      const stream = Buffer.concat([first, second])
      const split = cut % first.length
      const tracker = new FrameTracker()
      tracker.feed(stream.subarray(0, split))
      if (split === 0) {
        expect(tracker.feed(stream, true)).toBe(0)
        return
      }
      expect(tracker.feed(stream.subarray(split, split + 0), true)).toBe(-1)
      expect(tracker.feed(stream.subarray(split), true)).toBe(first.length - split)
      expect(tracker.atBoundary).toBe(true)
      expect(tracker.feed(second, true)).toBe(0)
    }), { numRuns: 300 })
  })

  it("a Close with 1001: unmasked for the client, masked for the upstream with the code under its mask", () => {
    expect([...closeFrame(1001, false)]).toEqual([0x88, 0x02, 0x03, 0xe9])
    const masked = closeFrame(1001, true)
    expect(masked.length).toBe(8)
    expect([masked[0], masked[1]]).toEqual([0x88, 0x82])
    expect([masked[6] ^ masked[2], masked[7] ^ masked[3]]).toEqual([0x03, 0xe9])
    const tracker = new FrameTracker()
    expect(tracker.feed(masked, true)).toBe(0)
    tracker.feed(masked.subarray(0, 3))
    expect(tracker.feed(masked.subarray(3), true)).toBe(5)
  })
})
