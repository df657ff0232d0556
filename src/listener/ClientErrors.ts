/**
 * Answers what node:http's strict parser rejects before a request exists (bad framing,
 * oversized headers, timeouts) and methods this listener does not proxy. Such a request never
 * reaches the router or an upstream; the connection is closed after the answer because its
 * framing can no longer be trusted.
 */
import type { Duplex } from "node:stream"
import type { Rejections } from "../telemetry/Metrics.ts"
import { errorResponse, BadRequest, HeadersTooLarge, MethodNotAllowed, type GatewayError } from "../proxy/GatewayError.ts"

const reasons: Record<number, string> = { 400: "Bad Request", 405: "Method Not Allowed", 408: "Request Timeout", 431: "Request Header Fields Too Large" }

const writeAndClose = (socket: Duplex, rejections: Rejections | undefined, error: GatewayError, status?: number) => {
  rejections?.count(status === 408 ? "RequestTimeout" : error._tag)
  if (socket.writable) {
    const response = errorResponse(error)
    const code = status ?? response.status
    socket.end(
      `HTTP/1.1 ${code} ${reasons[code] ?? "Error"}\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(response.body)}\r\n\r\n${response.body}`
    )
  } else socket.destroy()
}

/**
 * The `clientError` listener: 431 for oversized headers, 408 for timeouts, 400 otherwise.
 * `rejections` counts them (the listener's table in force: off when metrics are).
 */
export const onClientError = (error: Error & { code?: string }, socket: Duplex, rejections?: Rejections): void => {
  switch (error.code) {
    case "ECONNRESET":
    case "EPIPE":
      socket.destroy()
      return
    case "HPE_HEADER_OVERFLOW":
      writeAndClose(socket, rejections, new HeadersTooLarge({ message: "Request headers are too large" }))
      return
    case "ERR_HTTP_REQUEST_TIMEOUT":
    case "HPE_HEADERS_TIMEOUT":
      writeAndClose(socket, rejections, new BadRequest({ message: "Request timed out" }), 408)
      return
    default:
      writeAndClose(socket, rejections, new BadRequest({ message: "Malformed HTTP request" }))
  }
}

/** The `connect` listener: CONNECT tunnels are not offered on an HTTP listener. */
export const onConnect = (_req: unknown, socket: Duplex, rejections?: Rejections): void => {
  writeAndClose(socket, rejections, new MethodNotAllowed({ message: "CONNECT is not supported" }))
}
