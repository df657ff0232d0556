/**
 * `listen: [::1]:port` and `listen: :port` on a real gateway: an IPv6 loopback listener answers
 * on ::1, and a listener without a host answers on every IPv4 interface (a listener bound to
 * 127.0.0.1 alone would refuse 127.0.0.2, another loopback address on Linux).
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { startGateway, startUpstream } from "../support/harness.ts"
import { send } from "../support/http.ts"

const gatewayListening = (listen: string, upstream: string) => ({
  log: { level: "none" },
  servers: [{ name: "web", listen, routes: [{ id: "all", upstream: "app" }] }],
  upstreams: { app: { endpoints: [{ url: upstream }] } }
})

describe("listen address forms", () => {
  it.live("[::1]:0 binds the IPv6 loopback and serves there", () =>
    Effect.gen(function*() {
      const upstream = yield* startUpstream("v6")
      const gateway = yield* startGateway(gatewayListening("[::1]:0", upstream.url))
      const res = yield* send(`http://[::1]:${gateway.port}/six`)
      assert.strictEqual(res.status, 200)
      assert.strictEqual(res.headers["x-upstream"], "v6")
    }))

  it.live(":0 binds every interface: the same port serves on 127.0.0.1 and on 127.0.0.2", () =>
    Effect.gen(function*() {
      const upstream = yield* startUpstream("any")
      const gateway = yield* startGateway(gatewayListening(":0", upstream.url))
      assert.strictEqual((yield* send(`http://127.0.0.1:${gateway.port}/one`)).status, 200)
      assert.strictEqual((yield* send(`http://127.0.0.2:${gateway.port}/two`)).status, 200)
      assert.deepStrictEqual(upstream.seen.map((s) => s.url), ["/one", "/two"])
    }))
})
