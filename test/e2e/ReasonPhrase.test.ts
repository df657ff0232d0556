/**
 * The upstream's reason phrase reaches the client as it was sent; an upstream that sends none
 * gets node:http's standard one rather than an empty phrase.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { simpleConfig, startGateway } from "../support/harness.ts"
import { raw } from "../support/net.ts"
import { rawUpstream } from "../support/rawUpstream.ts"

describe("reason phrases", () => {
  for (const [sent, seen] of [
    ["HTTP/1.1 200 Fine Thanks\r\nContent-Length: 2\r\n\r\nok", "HTTP/1.1 200 Fine Thanks"],
    ["HTTP/1.1 404 Nowhere\r\nContent-Length: 2\r\n\r\nno", "HTTP/1.1 404 Nowhere"],
    ["HTTP/1.1 200 \r\nContent-Length: 2\r\n\r\nok", "HTTP/1.1 200 OK"]
  ] as const) {
    it.live(`${JSON.stringify(sent.split("\r\n")[0])} reaches the client as ${JSON.stringify(seen)}`, () =>
      Effect.gen(function*() {
        const upstream = yield* rawUpstream(sent)
        const gateway = yield* startGateway(simpleConfig([upstream.url]))
        const res = yield* raw(gateway.port, "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        assert.strictEqual(res.statusLine, seen)
        assert.strictEqual(res.body, sent.slice(-2))
      }))
  }
})
