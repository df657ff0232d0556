/**
 * Where WebSocket frames begin and end in a proxied byte stream (RFC 6455 §5.2), so that the
 * gateway can put a frame of its own between two frames (a Close with 1001 when it drains)
 * without cutting one of the peers' frames in half. The bytes themselves pass unchanged: only
 * each header's length fields are read.
 */

/** Longest frame header: 2 bytes, an 8-byte extended length, a 4-byte masking key. */
const MAX_HEADER = 14

export class FrameTracker {
  private readonly header = new Uint8Array(MAX_HEADER)
  private headerLength = 0
  /** Payload bytes of the current frame still to come. */
  private remaining = 0

  /** Whether the bytes so far end exactly at the end of a frame. */
  get atBoundary(): boolean {
    return this.headerLength === 0 && this.remaining === 0
  }

  /**
   * Reads `chunk` as the stream's next bytes and returns how many it consumed: all of them,
   * or with `stopAtBoundary` only those up to the first frame boundary (0 when the stream is at
   * one already); -1 when the chunk ends inside a frame under `stopAtBoundary`.
   */
  feed(chunk: Uint8Array, stopAtBoundary = false): number {
    if (stopAtBoundary && this.atBoundary) return 0
    let i = 0
    while (i < chunk.length) {
      if (this.remaining > 0) {
        const take = Math.min(this.remaining, chunk.length - i)
        this.remaining -= take
        i += take
      } else {
        this.header[this.headerLength++] = chunk[i++]
        const needed = this.headerNeeded()
        if (this.headerLength === needed) {
          this.remaining = this.payloadLength()
          this.headerLength = 0
        }
      }
      if (stopAtBoundary && this.atBoundary) return i
    }
    return stopAtBoundary ? -1 : i
  }

  /** The header's full size once its second byte is known (2 until then). */
  private headerNeeded(): number {
    if (this.headerLength < 2) return 2
    const len7 = this.header[1] & 0x7f
    return 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0) + ((this.header[1] & 0x80) !== 0 ? 4 : 0)
  }

  private payloadLength(): number {
    const len7 = this.header[1] & 0x7f
    if (len7 < 126) return len7
    if (len7 === 126) return (this.header[2] << 8) | this.header[3]
    let n = 0
    // A 63-bit length; past 2^53 it cannot be counted exactly, and no peer sends such a frame.
    for (let k = 2; k < 10; k++) n = n * 256 + this.header[k]
    return n
  }
}

/**
 * A Close frame with `code` (1001: going away). Frames a client sends are masked (§5.3), so
 * the one for the upstream gets a random mask; the one for the client is not masked.
 *
 * @example
 * closeFrame(1001, false) // => <Buffer 88 02 03 e9>
 */
export const closeFrame = (code: number, masked: boolean): Buffer => {
  if (!masked) return Buffer.from([0x88, 0x02, code >> 8, code & 0xff])
  const mask = globalThis.crypto.getRandomValues(new Uint8Array(4))
  return Buffer.from([0x88, 0x82, ...mask, (code >> 8) ^ mask[0], (code & 0xff) ^ mask[1]])
}
