/**
 * The parts of a WebSocket handshake the gateway makes itself. A client on HTTP/2 opens its
 * WebSocket with an extended CONNECT (RFC 8441): a stream with `:protocol: websocket` and no
 * `Sec-WebSocket-Key`, accepted with a 200. Its upstream speaks HTTP/1.1, so the gateway asks
 * for the upgrade with a key of its own and checks the upstream's `Sec-WebSocket-Accept`
 * against it, as any WebSocket client does (RFC 6455 §4.1).
 */
import { createHash, randomBytes } from "node:crypto"
import type { IncomingMessage } from "node:http"

/** The GUID RFC 6455 §1.3 appends to a key before hashing it. */
const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

/** A fresh `Sec-WebSocket-Key`: 16 random bytes in base64 (RFC 6455 §4.1). */
export const webSocketKey = (): string => randomBytes(16).toString("base64")

/**
 * The `Sec-WebSocket-Accept` an upstream must answer `key` with.
 *
 * @example
 * acceptFor("dGhlIHNhbXBsZSBub25jZQ==") // => "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" (RFC 6455 §1.3)
 */
export const acceptFor = (key: string): string => createHash("sha1").update(key + GUID).digest("base64")

/**
 * Whether `req` is an HTTP/2 stream opening a WebSocket (RFC 8441 §4: CONNECT with
 * `:protocol: websocket`, compared without case as HTTP/1.1's `Upgrade: websocket` is).
 */
export const isWebSocketConnect = (req: IncomingMessage): boolean => {
  const protocol = req.headers[":protocol"]
  return req.method === "CONNECT" && typeof protocol === "string" && protocol.toLowerCase() === "websocket"
}
