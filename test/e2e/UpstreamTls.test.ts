/**
 * `https://` endpoints: the upstream's certificate is verified against `tls.ca` for
 * `tls.server_name` (verification is on unless `verify: false`), the gateway presents
 * `tls.cert` to an upstream that asks for a client certificate, and health checks of https
 * endpoints go over TLS the same way.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, type Scope } from "effect"
import { readFileSync } from "node:fs"
import { createServer, type Server } from "node:https"
import type { AddressInfo } from "node:net"
import type { TLSSocket } from "node:tls"
import { makeCa, makeCert, type CertFiles } from "../support/certs.ts"
import { request, simpleConfig, startGateway } from "../support/harness.ts"
import { scopedCertDir } from "../support/https.ts"
import { eventually } from "../support/liveGateway.ts"

interface SecureUpstream {
  readonly url: string
  /** The subject CN of each request's client certificate ("" without one). */
  readonly clients: Array<string>
  readonly server: Server
}

/** An HTTPS upstream on loopback with `cert`; with `clientCa` it asks for (and verifies) a client certificate. */
const startSecureUpstream = (cert: CertFiles, clientCa?: CertFiles): Effect.Effect<SecureUpstream, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.callback<SecureUpstream>((resume) => {
      const clients: Array<string> = []
      const server = createServer({
        cert: readFileSync(cert.cert),
        key: readFileSync(cert.key),
        ...(clientCa === undefined ? {} : { ca: readFileSync(clientCa.cert), requestCert: true, rejectUnauthorized: true })
      }, (req, res) => {
        const peer = (req.socket as TLSSocket).getPeerX509Certificate()
        clients.push(peer === undefined ? "" : /CN=([^\n]+)/.exec(peer.subject)?.[1] ?? "")
        res.writeHead(200, { "content-type": "text/plain" })
        res.end(`secure ${req.url}`)
      })
      server.listen(0, "127.0.0.1", () => resume(Effect.succeed({ url: `https://127.0.0.1:${(server.address() as AddressInfo).port}`, clients, server })))
    }),
    (u) => Effect.callback<void>((resume) => {
      u.server.closeAllConnections()
      u.server.close(() => resume(Effect.void))
    })
  )

const setup = Effect.gen(function*() {
  const { dir } = yield* scopedCertDir
  const upstreamCa = makeCa(dir, "upstream CA")
  const gatewayCa = makeCa(dir, "gateway client CA")
  const api = makeCert(dir, upstreamCa, { cn: "api.internal", names: ["api.internal"] })
  const gatewayCert = makeCert(dir, gatewayCa, { cn: "fibergate", names: ["fibergate.internal"], usage: "client" })
  return { dir, upstreamCa, gatewayCa, api, gatewayCert }
})

describe("https upstreams", () => {
  it.live("verified against tls.ca for tls.server_name: 200; without the CA or under another name: 502", () =>
    Effect.gen(function*() {
      const { api, upstreamCa } = yield* setup
      const upstream = yield* startSecureUpstream(api)
      const pinned = yield* startGateway(simpleConfig([upstream.url], {}, { tls: { ca: upstreamCa.cert, server_name: "api.internal" } }))
      const ok = yield* request(pinned.url("/a"))
      assert.deepStrictEqual([ok.status, ok.body], [200, "secure /a"])
      const untrusted = yield* startGateway(simpleConfig([upstream.url], {}, { tls: { server_name: "api.internal" } }))
      assert.strictEqual((yield* request(untrusted.url("/b"))).status, 502)
      const wrongName = yield* startGateway(simpleConfig([upstream.url], {}, { tls: { ca: upstreamCa.cert, server_name: "other.internal" } }))
      assert.strictEqual((yield* request(wrongName.url("/c"))).status, 502)
      assert.deepStrictEqual(upstream.clients, [""])
    }))

  it.live("verify: false reaches an upstream whose certificate nobody vouches for", () =>
    Effect.gen(function*() {
      const { api } = yield* setup
      const upstream = yield* startSecureUpstream(api)
      const gateway = yield* startGateway(simpleConfig([upstream.url], {}, { tls: { verify: false } }))
      const res = yield* request(gateway.url("/open"))
      assert.deepStrictEqual([res.status, res.body], [200, "secure /open"])
    }))

  it.live("tls.cert and key are presented to an upstream that requires a client certificate", () =>
    Effect.gen(function*() {
      const { api, gatewayCa, gatewayCert, upstreamCa } = yield* setup
      const upstream = yield* startSecureUpstream(api, gatewayCa)
      const withCert = yield* startGateway(simpleConfig([upstream.url], {}, {
        tls: { ca: upstreamCa.cert, server_name: "api.internal", cert: gatewayCert.cert, key: gatewayCert.key }
      }))
      assert.strictEqual((yield* request(withCert.url("/m"))).status, 200)
      assert.deepStrictEqual(upstream.clients, ["fibergate"])
      const without = yield* startGateway(simpleConfig([upstream.url], {}, { tls: { ca: upstreamCa.cert, server_name: "api.internal" } }))
      assert.strictEqual((yield* request(without.url("/n"))).status, 502)
      assert.deepStrictEqual(upstream.clients, ["fibergate"])
    }))

  it.live("an https endpoint's health check goes over TLS with the upstream's tls settings", () =>
    Effect.gen(function*() {
      const { api, upstreamCa } = yield* setup
      const upstream = yield* startSecureUpstream(api)
      const check = { path: "/health", interval: "50ms", timeout: "1s", healthy_threshold: 1, unhealthy_threshold: 1 }
      const good = yield* startGateway(simpleConfig([upstream.url], {}, { tls: { ca: upstreamCa.cert, server_name: "api.internal" }, health_check: check }))
      const bad = yield* startGateway(simpleConfig([upstream.url], {}, { tls: { server_name: "api.internal" }, health_check: check }))
      const healthy = (adminPort: number | undefined) =>
        request(`http://127.0.0.1:${adminPort}/upstreams`).pipe(Effect.map((r) => JSON.parse(r.body).upstreams.app.endpoints[0].healthy as boolean))
      yield* eventually(healthy(bad.adminPort).pipe(Effect.map((h) => h === false)), "the unverifiable endpoint marked unhealthy")
      assert.isTrue(yield* healthy(good.adminPort))
      assert.strictEqual((yield* request(good.url("/after"))).status, 200)
    }))

  it.effect("tls with no https endpoint, and a cert without its key, are config errors", () =>
    Effect.gen(function*() {
      const { decodeConfig } = yield* Effect.promise(() => import("../../src/config/ConfigLoader.ts"))
      const noHttps = decodeConfig(simpleConfig(["http://127.0.0.1:1"], {}, { tls: { verify: false } }), "t.yaml")
      assert.deepStrictEqual(noHttps._tag === "Failure" ? noHttps.failure.problems.map((p) => [p.path, p.message]) : [], [
        ["upstreams.app.tls", "tls applies only to https:// endpoints (this upstream has none)"]
      ])
      const halfPair = decodeConfig(simpleConfig(["https://127.0.0.1:1"], {}, { tls: { cert: "gw.pem" } }), "t.yaml")
      assert.deepStrictEqual(halfPair._tag === "Failure" ? halfPair.failure.problems.map((p) => [p.path, p.message]) : [], [
        ["upstreams.app.tls", "Expected cert and key together (a client certificate needs its key)"]
      ])
    }))
})
