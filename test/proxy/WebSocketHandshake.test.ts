import { assert, describe, it } from "@effect/vitest"
import type { IncomingMessage } from "node:http"
import { acceptFor, isWebSocketConnect, webSocketKey } from "../../src/proxy/WebSocketHandshake.ts"

const request = (method: string, protocol?: string) =>
  ({ method, headers: protocol === undefined ? {} : { ":protocol": protocol } }) as unknown as IncomingMessage

describe("WebSocketHandshake", () => {
  it("answers a key as RFC 6455 §1.3's example does", () => {
    assert.strictEqual(acceptFor("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
  })

  it("makes keys of 16 random bytes, a new one each time", () => {
    const keys = new Set(Array.from({ length: 50 }, webSocketKey))
    assert.strictEqual(keys.size, 50)
    for (const key of keys) assert.strictEqual(Buffer.from(key, "base64").toString("base64"), key)
    for (const key of keys) assert.strictEqual(Buffer.from(key, "base64").length, 16)
  })

  it("an extended CONNECT opens a WebSocket only with :protocol websocket", () => {
    assert.isTrue(isWebSocketConnect(request("CONNECT", "websocket")))
    assert.isTrue(isWebSocketConnect(request("CONNECT", "WebSocket")))
    assert.isFalse(isWebSocketConnect(request("CONNECT")))
    assert.isFalse(isWebSocketConnect(request("CONNECT", "connect-udp")))
    assert.isFalse(isWebSocketConnect(request("GET", "websocket")))
  })
})
