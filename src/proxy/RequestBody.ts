/**
 * A request body on its way upstream, streamed: counted (for the access log), cut off past the
 * listener's `max_body_bytes`, and able to cut the HTTP/2 stream undici writes it into before
 * undici closes that stream itself (see `closeStream` in Http2Streams.ts for why that order).
 */
import type { Http2Stream } from "node:http2"
import { Transform, type TransformCallback, type Writable } from "node:stream"
import { BODY_TOO_LARGE } from "./UpstreamErrors.ts"

const isHttp2Stream = (destination: Writable): destination is Http2Stream & Writable => "session" in destination && "rstCode" in destination

export class RequestBody extends Transform {
  /** Bytes that went through. */
  seen = 0
  /** Set once the body passed the limit: whatever error undici then reports, this is the cause. */
  overLimit = false
  private readonly limit: number
  /** Where undici pipes the body (an upstream HTTP/2 stream, or an HTTP/1.1 request's socket writer). */
  private destination: Writable | undefined = undefined

  constructor(limit: number) {
    super()
    this.limit = limit
  }

  override pipe<T extends NodeJS.WritableStream>(destination: T, options?: { end?: boolean | undefined }): T {
    this.destination = destination as unknown as Writable
    return super.pipe(destination, options)
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.seen += chunk.length
    if (this.seen > this.limit) {
      this.overLimit = true
      // The error first, so that it is the one undici reports; then the cut, which takes
      // effect at once, before undici's reaction to the error closes its stream (queued
      // writes and close() hang node 24's HTTP/2 session).
      callback(Object.assign(new Error("request body too large"), { code: BODY_TOO_LARGE }))
      this.cutUpstream()
    } else callback(null, chunk)
  }

  /**
   * Resets the upstream HTTP/2 stream this body is being written into, if one still has writes
   * queued; to be called before the upstream request is aborted. A no-op for HTTP/1.1.
   */
  cutUpstream(): void {
    const destination = this.destination
    if (destination !== undefined && isHttp2Stream(destination) && !destination.destroyed && destination.writableLength > 0) destination.destroy()
  }
}
