import { assert, describe, it } from "@effect/vitest"
import * as Http from "node:http"
import * as Http2 from "node:http2"
import * as Https from "node:https"
import * as Tls from "node:tls"
import { nodeHttp, nodeHttp2, nodeHttps, nodeTls } from "../../src/config/NodeModules.ts"

describe("NodeModules", () => {
  it("are Node's own modules", () => {
    assert.strictEqual(nodeHttp.createServer, Http.createServer)
    assert.strictEqual(nodeHttps().createServer, Https.createServer)
    assert.strictEqual(nodeHttp2().createServer, Http2.createServer)
    assert.strictEqual(nodeTls().createSecureContext, Tls.createSecureContext)
  })
})
