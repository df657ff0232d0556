/**
 * What the proxy reads of a gRPC call beyond HTTP/2 itself (grpc/doc/PROTOCOL-HTTP2.md): the
 * deadline a client states in `grpc-timeout`, and where the length-prefixed messages of a
 * response stream begin, so that a call cut short after its head ends with a status rather than
 * half a message.
 */

const UNIT_MS: Readonly<Record<string, number>> = { H: 3_600_000, M: 60_000, S: 1_000, m: 1, u: 1e-3, n: 1e-6 }

/**
 * A `grpc-timeout` value in milliseconds (rounded up: a deadline of 1 ns is still a deadline),
 * or undefined when it is not one: 1 to 8 digits then a unit, H M S m u n.
 *
 * @example
 * grpcTimeoutMs("250m") // => 250
 * grpcTimeoutMs("2S") // => 2000
 * grpcTimeoutMs("1.5S") // => undefined
 */
export const grpcTimeoutMs = (value: string): number | undefined => {
  const digits = value.length - 1
  if (digits < 1 || digits > 8) return undefined
  const unit = UNIT_MS[value[digits]]
  if (unit === undefined) return undefined
  let n = 0
  for (let i = 0; i < digits; i++) {
    const d = value.charCodeAt(i) - 48
    if (d < 0 || d > 9) return undefined
    n = n * 10 + d
  }
  return Math.ceil(n * unit)
}

/**
 * Follows the message framing of a gRPC response body (a 1-byte flag and a 4-byte length before
 * each message) across the chunks it comes in, to know whether what went out so far ends on a
 * message boundary.
 */
export class GrpcFraming {
  /** Bytes of the current message's 5-byte prefix still to come; 0 inside a message body. */
  private prefixLeft = 5
  /** The length read so far from the current prefix. */
  private length = 0
  /** Bytes of the current message's body still to come. */
  private bodyLeft = 0

  /** Takes the next chunk of the body. */
  feed(chunk: Uint8Array): void {
    let i = 0
    const end = chunk.length
    while (i < end) {
      if (this.bodyLeft > 0) {
        const take = Math.min(this.bodyLeft, end - i)
        this.bodyLeft -= take
        i += take
        continue
      }
      // The flag byte is the prefix's first; the next four are the length, big-endian.
      if (this.prefixLeft < 5) this.length = this.length * 256 + chunk[i]
      i++
      if (--this.prefixLeft === 0) {
        this.bodyLeft = this.length
        this.prefixLeft = 5
        this.length = 0
      }
    }
  }

  /** Whether the body so far is whole messages (none started and unfinished). */
  get atBoundary(): boolean {
    return this.prefixLeft === 5 && this.bodyLeft === 0
  }
}
