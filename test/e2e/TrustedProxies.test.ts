/**
 * `trusted_proxies` through a real gateway: behind a trusted peer the client is the address its
 * X-Forwarded-For names (in the access log and for `hash_on: ip`), the upstream still gets the
 * whole chain with the peer appended, an untrusted peer's X-Forwarded-For changes nothing, and
 * a range that is not one is refused with its path.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Result } from "effect"
import { decodeConfig } from "../../src/config/ConfigLoader.ts"
import { captureAccessLog } from "../support/accessLog.ts"
import { simpleConfig, startGateway, startUpstream } from "../support/harness.ts"
import { send } from "../support/http.ts"
import { eventually } from "../support/liveGateway.ts"

const gatewayTrusting = (trusted: ReadonlyArray<string>, urls: ReadonlyArray<string>, upstream: Record<string, unknown> = {}) => {
  const config = simpleConfig(urls, {}, upstream)
  return startGateway({
    ...config,
    log: { level: "none", access_log: true, format: "json" },
    servers: [{ ...config.servers[0], trusted_proxies: trusted }]
  })
}

describe("trusted_proxies", () => {
  it.live("behind a trusted peer: the access log's client is X-Forwarded-For's, and the upstream gets the chain with the peer appended", () =>
    Effect.gen(function*() {
      const capture = yield* captureAccessLog
      const app = yield* startUpstream("app")
      const gateway = yield* gatewayTrusting(["127.0.0.0/8", "10.0.0.0/8"], [app.url])
      const res = yield* send(gateway.url("/"), { headers: { "x-forwarded-for": "198.51.100.9, 203.0.113.7, 10.0.0.3" } })
      assert.strictEqual(res.status, 200)
      assert.strictEqual(app.seen[0].headers["x-forwarded-for"], "198.51.100.9, 203.0.113.7, 10.0.0.3, 127.0.0.1")
      yield* eventually(Effect.sync(() => capture.lines.length >= 1), "an access-log line")
      assert.strictEqual(capture.lines[0].client_ip, "203.0.113.7")
    }))

  it.live("without X-Forwarded-For, a trusted peer's Forwarded for= names the client; Forwarded goes upstream as it came; X-Forwarded-For wins when both come", () =>
    Effect.gen(function*() {
      const capture = yield* captureAccessLog
      const app = yield* startUpstream("app")
      const gateway = yield* gatewayTrusting(["127.0.0.0/8", "10.0.0.0/8"], [app.url])
      const forwarded = `for=198.51.100.9, for="203.0.113.7:4711";proto=https, for=10.0.0.3`
      assert.strictEqual((yield* send(gateway.url("/"), { headers: { forwarded } })).status, 200)
      assert.strictEqual(app.seen[0].headers.forwarded, forwarded)
      assert.strictEqual((yield* send(gateway.url("/"), { headers: { forwarded, "x-forwarded-for": "192.0.2.44" } })).status, 200)
      yield* eventually(Effect.sync(() => capture.lines.length >= 2), "two access-log lines")
      assert.strictEqual(capture.lines[0].client_ip, "203.0.113.7")
      assert.strictEqual(capture.lines[1].client_ip, "192.0.2.44")
    }))

  it.live("an untrusted peer: its X-Forwarded-For is passed on but not believed", () =>
    Effect.gen(function*() {
      const capture = yield* captureAccessLog
      const app = yield* startUpstream("app")
      const gateway = yield* gatewayTrusting(["10.0.0.0/8"], [app.url])
      assert.strictEqual((yield* send(gateway.url("/"), { headers: { "x-forwarded-for": "203.0.113.7" } })).status, 200)
      assert.strictEqual(app.seen[0].headers["x-forwarded-for"], "203.0.113.7, 127.0.0.1")
      yield* eventually(Effect.sync(() => capture.lines.length >= 1), "an access-log line")
      assert.strictEqual(capture.lines[0].client_ip, "127.0.0.1")
    }))

  it.live("a refusal behind a trusted peer logs the forwarded client too", () =>
    Effect.gen(function*() {
      const capture = yield* captureAccessLog
      const app = yield* startUpstream("app")
      const config = simpleConfig([app.url], { match: { path: { prefix: "/api" } } })
      const gateway = yield* startGateway({
        ...config,
        log: { level: "none", access_log: true, format: "json" },
        servers: [{ ...config.servers[0], trusted_proxies: ["127.0.0.1"] }]
      })
      assert.strictEqual((yield* send(gateway.url("/elsewhere"), { headers: { "x-forwarded-for": "203.0.113.7" } })).status, 404)
      yield* eventually(Effect.sync(() => capture.lines.length >= 1), "an access-log line")
      assert.strictEqual(capture.lines[0].client_ip, "203.0.113.7")
    }))

  it.live("hash_on: ip hashes the forwarded client: one client sticks to one endpoint, clients spread over both", () =>
    Effect.gen(function*() {
      const a = yield* startUpstream("a")
      const b = yield* startUpstream("b")
      const gateway = yield* gatewayTrusting(["127.0.0.1"], [a.url, b.url], { balance: "consistent_hash", hash_on: "ip" })
      for (let i = 0; i < 24; i++) {
        for (let twice = 0; twice < 2; twice++) {
          assert.strictEqual((yield* send(gateway.url("/"), { headers: { "x-forwarded-for": `203.0.113.${i}` } })).status, 200)
        }
      }
      const clientsOf = (seen: typeof a.seen) => seen.map((r) => String(r.headers["x-forwarded-for"]).split(",")[0])
      const onA = new Set(clientsOf(a.seen))
      const onB = new Set(clientsOf(b.seen))
      assert.strictEqual(a.seen.length + b.seen.length, 48)
      assert.isAbove(onA.size, 0)
      assert.isAbove(onB.size, 0)
      assert.strictEqual([...onA].filter((c) => onB.has(c)).length, 0, "no client reached both endpoints")
    }))

  it("a range that is not one is refused with its path", () => {
    const config = simpleConfig(["http://127.0.0.1:1"])
    const result = decodeConfig({ ...config, servers: [{ ...config.servers[0], trusted_proxies: ["10.0.0.0/8", "10.0.0.0/33"] }] }, "<value>")
    if (Result.isSuccess(result)) return assert.fail("expected a ConfigError")
    assert.strictEqual(
      result.failure.message,
      "<value>: servers[0].trusted_proxies[1]: Expected an IP address or a CIDR range such as 10.0.0.0/8 or 2001:db8::/32"
    )
  })
})
