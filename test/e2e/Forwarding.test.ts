import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { request, simpleConfig, startGateway, startUpstream } from "../support/harness.ts"

describe("forwarding", () => {
  it.live("proxies a GET to the upstream and returns its response", () =>
    Effect.gen(function*() {
      const upstream = yield* startUpstream("a")
      const gateway = yield* startGateway(simpleConfig([upstream.url]))
      const res = yield* request(gateway.url("/hello?x=1"))
      assert.strictEqual(res.status, 200)
      assert.strictEqual(JSON.parse(res.body).url, "/hello?x=1")
      assert.strictEqual(res.headers.get("x-upstream"), "a")
    }))
})
