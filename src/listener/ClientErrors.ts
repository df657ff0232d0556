/**
 * Answers what node:http's strict parser rejects before a request exists (bad framing,
 * oversized headers, timeouts) and methods this listener does not proxy. Such a request never
 * reaches the router or an upstream; the connection is closed after the answer because its
 * framing can no longer be trusted.
 */
import type { ServerResponse } from "node:http"
import { nodeHttp } from "../config/NodeModules.ts"
import type { Socket } from "node:net"
import type { Duplex } from "node:stream"
import { sendError } from "../proxy/Exchange.ts"
import type { Rejections } from "../telemetry/Metrics.ts"
import { connectionOf, type ClientConnection } from "../proxy/ClientConnection.ts"
import { errorResponse, BadRequest, HeadersTooLarge, MethodNotAllowed, RequestTimeout, type GatewayError } from "../middleware/GatewayError.ts"

const writeAndClose = (socket: Duplex, error: GatewayError) => {
  if (socket.writable) {
    const response = errorResponse(error)
    const code = response.status
    socket.end(
      `HTTP/1.1 ${code} ${nodeHttp.STATUS_CODES[code]}\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(response.body)}\r\n\r\n${response.body}`
    )
  } else socket.destroy()
}

/**
 * Answers a refusal on a connection, once: node:http reports its broken parser again on every
 * later read, and those repeats are neither answered nor counted. Responses to requests taken
 * before the bad bytes go out first (the refusal waits for them), and a connection that already
 * has its closing response gets no second one.
 */
const refuse = (connection: ClientConnection, socket: Duplex, rejections: Rejections | undefined, error: GatewayError) => {
  rejections?.count(error._tag)
  connection.refuse({ error, raw: () => writeAndClose(socket, error), reply: replyClosing })
}

const replyClosing = (res: ServerResponse, error: GatewayError) => void sendError(res, error, true)

/**
 * The `clientError` listener: 431 for oversized headers, 408 for timeouts, 400 otherwise.
 * `rejections` counts them (the listener's table in force: off when metrics are).
 */
export const onClientError = (error: Error & { code?: string }, socket: Duplex, rejections?: Rejections): void => {
  if (error.code === "ECONNRESET" || error.code === "EPIPE") {
    socket.destroy()
    return
  }
  const connection = connectionOf(socket as Socket)
  // Already answered, or closing and reading only to drain what the client still sends.
  if (connection.refused || connection.lingers) return
  switch (error.code) {
    case "HPE_INVALID_EOF_STATE":
      // The client ended its side in the middle of a request body: it has left (499), there
      // is nobody to tell what was wrong with a request it gave up on.
      if (connection.receiving?.req.complete === false) {
        socket.destroy()
        return
      }
      refuse(connection, socket, rejections, new BadRequest({ message: "Malformed HTTP request" }))
      return
    case "HPE_HEADER_OVERFLOW":
      refuse(connection, socket, rejections, new HeadersTooLarge({ message: "Request headers are too large" }))
      return
    // node:http's own check of header_timeout and request_timeout (Node 24 has no parser-level
    // HPE_HEADERS_TIMEOUT any more).
    case "ERR_HTTP_REQUEST_TIMEOUT":
      refuse(connection, socket, rejections, new RequestTimeout({ message: "The request did not arrive in time" }))
      return
    default:
      refuse(connection, socket, rejections, new BadRequest({ message: "Malformed HTTP request" }))
  }
}

/** The `connect` listener: CONNECT tunnels are not offered on an HTTP listener. */
export const onConnect = (_req: unknown, socket: Duplex, rejections?: Rejections): void => {
  refuse(connectionOf(socket as Socket), socket, rejections, new MethodNotAllowed({ message: "CONNECT is not supported" }))
}
