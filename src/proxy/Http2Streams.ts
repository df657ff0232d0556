/**
 * What the request path does differently for a request that came on an HTTP/2 stream. node:http2's
 * compatibility API gives such a request the shape of a node:http one, so the same routing,
 * middlewares, retries and error answers run for both; these are the few places where it differs.
 */
import type { IncomingMessage, ServerResponse } from "node:http"
import { constants, type Http2ServerRequest, type Http2ServerResponse, type ServerHttp2Stream } from "node:http2"
import type { Socket } from "node:net"

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
  stream[gatewayReset] = true
  if (!stream.closed) stream.close(constants.NGHTTP2_INTERNAL_ERROR)
  return true
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
