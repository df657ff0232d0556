/**
 * What the request path does differently for a request that came on an HTTP/2 stream. node:http2's
 * compatibility API gives such a request the shape of a node:http one, so the same routing,
 * middlewares, retries and error answers run for both; these are the few places where it differs.
 */
import type { IncomingMessage, ServerResponse } from "node:http"
import type { Http2ServerRequest, Http2ServerResponse, Http2Stream, ServerHttp2Stream } from "node:http2"
import type { Socket } from "node:net"

/**
 * The RFC 9113 §7 error codes the gateway sends, written out rather than read from
 * node:http2's `constants`, which would load node:http2 for configs that have no HTTP/2.
 */
export const Http2Error = { NO_ERROR: 0x0, INTERNAL_ERROR: 0x2, REFUSED_STREAM: 0x7, CANCEL: 0x8, ENHANCE_YOUR_CALM: 0xb } as const

/** Marks a stream the gateway reset itself (not the client: see the Rapid Reset bound in Http2Listener.ts). */
export const gatewayReset: unique symbol = Symbol("fibergate.gatewayReset")

/** Whether `req` came on an HTTP/2 stream. */
export const isHttp2 = (req: IncomingMessage): boolean => req.httpVersionMajor === 2

/** The stream under an HTTP/2 response (node:http2's compatibility response keeps it). */
const streamOf = (res: ServerResponse): (ServerHttp2Stream & { [gatewayReset]?: boolean }) | undefined =>
  (res as unknown as Partial<Http2ServerResponse>).stream

/**
 * Ends an HTTP/2 response that cannot be finished (the upstream failed after its head went out)
 * with RST_STREAM INTERNAL_ERROR, the stream's equivalent of cutting an HTTP/1.1 connection.
 * Returns false for an HTTP/1.x response, which the caller cuts its own way.
 */
export const resetStream = (res: ServerResponse): boolean => {
  const stream = streamOf(res)
  if (stream === undefined) return false
  resetByGateway(stream, Http2Error.INTERNAL_ERROR)
  return true
}

/** Resets a client's stream with `code`, marked as the gateway's own reset. */
export const resetByGateway = (stream: ServerHttp2Stream & { [gatewayReset]?: boolean }, code: number): void => {
  stream[gatewayReset] = true
  closeStream(stream, code)
}

const cut = new Error("stream reset by the gateway")

/**
 * Resets an HTTP/2 stream, either side's: `close(code)`, except for a stream with writes still
 * queued, which is destroyed instead. On node 24.21, `close()` with data queued can leave the
 * session writing frames for ever: a full core and memory growing until the process aborts
 * (reproduced with node:http2 alone, on either side; the gateway hit it through undici, see
 * RequestBody.ts; nodejs/node#58252 is a related close-while-writing bug). `destroy()` resets
 * the stream all the same, with INTERNAL_ERROR, or NO_ERROR when that is the code asked for.
 */
export const closeStream = (stream: Http2Stream, code: number): void => {
  if (stream.closed || stream.destroyed) return
  if (stream.writableLength === 0) stream.close(code)
  else stream.destroy(code === Http2Error.NO_ERROR ? undefined : cut)
}

/**
 * Answers a stream with a head alone, in one HEADERS frame that ends the stream. node:http2's
 * `writeHead` sends the head at once without ending, so `end()` would add an empty DATA frame;
 * to a gRPC client the difference matters: a status in the head counts only in a Trailers-Only
 * response, a HEADERS frame with END_STREAM (PROTOCOL-HTTP2.md).
 */
export const endWithHead = (res: ServerResponse, status: number, head: ReadonlyArray<string>): void => {
  res.statusCode = status
  for (let i = 0; i < head.length; i += 2) res.appendHeader(head[i], head[i + 1])
  res.end()
}

/**
 * The `finish` listener of the stream under a request with a body (the response is written):
 * when the client is still sending the body (an early answer: an error, a refusal, an upstream
 * that did not wait), it is asked to stop with RST_STREAM NO_ERROR (RFC 9113 §8.1). Left open,
 * the stream waits on a body nobody reads for as long as the connection lasts. The reset waits
 * a turn of the event loop: the closing HEADERS (trailers) are sent after `finish`.
 */
export function stopUnreadBody(this: ServerHttp2Stream): void {
  if (!this.closed && this.state.remoteClose !== 1) setImmediate(resetUnread, this)
}

const resetUnread = (stream: ServerHttp2Stream): void => {
  if (stream.closed || stream.destroyed || stream.state.remoteClose === 1) return
  resetByGateway(stream, Http2Error.NO_ERROR)
}

/**
 * The client's socket. node:http2 gives each stream's request a proxy of its own over the
 * connection's socket; the session's is one per connection, so what is cached per socket (the
 * client certificate's description) is made once per connection.
 */
export const clientSocket = (req: IncomingMessage): Socket =>
  isHttp2(req) ? (req as unknown as Http2ServerRequest).stream.session?.socket as Socket ?? req.socket : req.socket

/**
 * Whether the request's stream carries a body (no END_STREAM on its HEADERS). HTTP/2 frames the
 * body itself, so a body without Content-Length is as legal as a chunked one in HTTP/1.1.
 */
export const http2HasBody = (req: IncomingMessage): boolean => !(req as unknown as Http2ServerRequest).stream.endAfterHeaders

/**
 * The response header node:http2 refuses to send (RFC 9113 §8.2.2: connection-specific) beyond the
 * hop-by-hop ones the proxy drops for every client; an HTTP/1.1 upstream may still send it.
 */
export const HTTP2_SETTINGS = "http2-settings"
