/**
 * `protocol: https` listeners through a real gateway, with certificates openssl makes for each
 * test: SNI across certificates (exact, then wildcard, then the first), the minimum version,
 * X-Forwarded-Proto, the admin API's certificate list and the certificate metrics, handshake
 * failures by reason, and a pair that does not match refused with its file.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Result } from "effect"
import { X509Certificate } from "node:crypto"
import { connect } from "node:net"
import { decodeConfig } from "../../src/config/ConfigLoader.ts"
import { makeCa, makeCert } from "../support/certs.ts"
import { fingerprint, httpsConfig, scopedCertDir } from "../support/https.ts"
import { request, startGateway, startUpstream } from "../support/harness.ts"
import { eventually } from "../support/liveGateway.ts"
import { growth, hasSeries, scrapeAdmin, series } from "../support/prometheus.ts"
import { tlsGet, tlsRefusal } from "../support/tlsClient.ts"

describe("https listeners", () => {
  it.live("serves over TLS; the upstream is told X-Forwarded-Proto: https", () =>
    Effect.gen(function*() {
      const { dir } = yield* scopedCertDir
      const ca = makeCa(dir)
      const site = makeCert(dir, ca, { cn: "site.test", names: ["site.test"] })
      const app = yield* startUpstream("app")
      const gateway = yield* startGateway(httpsConfig(app.url, { certificates: [{ cert: site.cert, key: site.key }] }))
      const res = yield* tlsGet({ port: gateway.port, servername: "site.test", ca: ca.pem(), headers: { "x-forwarded-proto": "http" } })
      assert.strictEqual(res.status, 200)
      assert.strictEqual(res.fingerprint, fingerprint(site))
      assert.strictEqual(app.seen[0].headers["x-forwarded-proto"], "https")
    }))

  it.live("SNI picks the exact name first, then a wildcard of one label, else the first certificate", () =>
    Effect.gen(function*() {
      const { dir } = yield* scopedCertDir
      const ca = makeCa(dir)
      const first = makeCert(dir, ca, { cn: "first.test", names: ["first.test"] })
      const wildcard = makeCert(dir, ca, { cn: "*.b.test", names: ["*.b.test"] })
      const exact = makeCert(dir, ca, { cn: "x.b.test", names: ["x.b.test"] })
      const app = yield* startUpstream("app")
      const gateway = yield* startGateway(httpsConfig(app.url, {
        certificates: [first, wildcard, exact].map((c) => ({ cert: c.cert, key: c.key }))
      }))
      const seen = (servername: string | undefined) =>
        tlsGet({ port: gateway.port, ca: ca.pem(), ...(servername === undefined ? {} : { servername }) }).pipe(Effect.map((r) => r.fingerprint))
      assert.strictEqual(yield* seen("x.b.test"), fingerprint(exact))
      assert.strictEqual(yield* seen("X.B.TEST"), fingerprint(exact))
      assert.strictEqual(yield* seen("y.b.test"), fingerprint(wildcard))
      // A wildcard covers one label only.
      assert.strictEqual(yield* seen("z.y.b.test"), fingerprint(first))
      assert.strictEqual(yield* seen("b.test"), fingerprint(first))
      assert.strictEqual(yield* seen("unknown.test"), fingerprint(first))
      assert.strictEqual(yield* seen(undefined), fingerprint(first))
    }))

  it.live("min_version: TLSv1.3 refuses a TLS 1.2 client, counted as protocol_version; plain HTTP on the port is not_tls", () =>
    Effect.gen(function*() {
      const { dir } = yield* scopedCertDir
      const ca = makeCa(dir)
      const site = makeCert(dir, ca, { cn: "site.test", names: ["site.test"] })
      const app = yield* startUpstream("app")
      const gateway = yield* startGateway(httpsConfig(app.url, { certificates: [{ cert: site.cert, key: site.key }], min_version: "TLSv1.3" }))
      const before = yield* scrapeAdmin(gateway.adminPort)
      const old = yield* tlsRefusal({ port: gateway.port, servername: "site.test", ca: ca.pem(), maxVersion: "TLSv1.2" })
      assert.isTrue(old.refused)
      assert.strictEqual((yield* tlsGet({ port: gateway.port, servername: "site.test", ca: ca.pem() })).status, 200)
      yield* Effect.promise(() => new Promise<void>((resolve) => {
        const socket = connect(gateway.port, "127.0.0.1", () => socket.write("GET / HTTP/1.1\r\nhost: x\r\n\r\n"))
        socket.on("close", () => resolve())
        socket.on("error", () => {})
        socket.resume()
      }))
      yield* eventually(
        scrapeAdmin(gateway.adminPort).pipe(Effect.map((after) =>
          after.types.get("fibergate_tls_handshake_failures_total") === "counter" &&
          hasSeries(after, "fibergate_tls_handshake_failures_total", { listener: "secure", reason: "not_tls" }) &&
          growth(before, after, "fibergate_tls_handshake_failures_total", { listener: "secure", reason: "protocol_version" }) === 1 &&
          growth(before, after, "fibergate_tls_handshake_failures_total", { listener: "secure", reason: "not_tls" }) === 1
        )),
        "a protocol_version and a not_tls handshake failure"
      )
    }))

  it.live("GET /certificates lists each certificate with its names, issuer, validity and file; the expiry gauge counts down to notAfter", () =>
    Effect.gen(function*() {
      const { dir } = yield* scopedCertDir
      const ca = makeCa(dir, "listing CA")
      const a = makeCert(dir, ca, { cn: "a.test", names: ["a.test", "www.a.test"], days: 10 })
      const b = makeCert(dir, ca, { cn: "b.test", names: ["*.b.test"], days: 20 })
      const app = yield* startUpstream("app")
      const gateway = yield* startGateway(httpsConfig(app.url, { certificates: [a, b].map((c) => ({ cert: c.cert, key: c.key })) }))
      const res = yield* request(`http://127.0.0.1:${gateway.adminPort}/certificates`)
      assert.strictEqual(res.status, 200)
      const listed = JSON.parse(res.body).certificates as Array<Record<string, unknown>>
      const x509 = new X509Certificate(a.pem())
      assert.deepStrictEqual(listed.map((c) => [c.listener, c.names, c.cert_file, c.key_file, c.default]), [
        ["secure", ["a.test", "www.a.test"], a.cert, a.key, true],
        ["secure", ["*.b.test"], b.cert, b.key, false]
      ])
      assert.strictEqual(listed[0].issuer, "CN=listing CA")
      assert.strictEqual(listed[0].subject, "O=fibergate tests, CN=a.test")
      assert.strictEqual(listed[0].not_after, new Date(x509.validTo).toISOString())
      assert.strictEqual(listed[0].fingerprint_sha256, x509.fingerprint256)
      const scrape = yield* scrapeAdmin(gateway.adminPort)
      assert.strictEqual(scrape.types.get("fibergate_tls_certificate_expiry_seconds"), "gauge")
      const left = series(scrape, "fibergate_tls_certificate_expiry_seconds", { listener: "secure", name: "a.test", file: a.cert })
      const expected = (Date.parse(x509.validTo) - Date.now()) / 1000
      assert.isTrue(Math.abs(left - expected) < 60, `expiry ${left} s, expected about ${expected} s`)
      assert.isTrue(series(scrape, "fibergate_tls_certificate_expiry_seconds", { listener: "secure", name: "*.b.test", file: b.cert }) > left)
    }))

  it.effect("a key that is not the certificate's is a config error naming the files; so is a missing file", () =>
    Effect.gen(function*() {
      const { dir } = yield* scopedCertDir
      const ca = makeCa(dir)
      const a = makeCert(dir, ca, { cn: "a.test", names: ["a.test"] })
      const b = makeCert(dir, ca, { cn: "b.test", names: ["b.test"] })
      const decoded = decodeConfig(httpsConfig("http://127.0.0.1:1", {
        certificates: [{ cert: a.cert, key: a.key }, { cert: a.cert, key: b.key }, { cert: `${dir}/none.pem`, key: a.key }]
      }), "test.yaml")
      assert.isTrue(Result.isFailure(decoded))
      const problems = Result.isFailure(decoded) ? decoded.failure.problems : []
      assert.deepStrictEqual(problems.map((p) => p.path), ["servers[0].tls.certificates[1]", "servers[0].tls.certificates[2]"])
      assert.strictEqual(problems[0].message, `${b.key} is not the private key of the certificate in ${a.cert}`)
      assert.match(problems[1].message, new RegExp(`^cannot read ${dir}/none.pem: ENOENT`))
    }))

  it.effect("protocol: https needs tls, tls needs protocol: https, and alpn lists known protocols once each", () =>
    Effect.sync(() => {
      const base = httpsConfig("http://127.0.0.1:1", { certificates: [{ cert: "x", key: "y" }] })
      const { tls: _, ...noTls } = base.servers[0]
      const withoutTls = decodeConfig({ ...base, servers: [noTls] }, "t.yaml")
      assert.deepStrictEqual(Result.isFailure(withoutTls) ? withoutTls.failure.problems.map((p) => [p.path, p.message]) : [], [
        ["servers[0].tls", "protocol: https needs tls: { certificates: [ { cert: <file>, key: <file> } ] }"]
      ])
      const plain = decodeConfig({ ...base, servers: [{ ...base.servers[0], protocol: "http" }] }, "t.yaml")
      assert.deepStrictEqual(Result.isFailure(plain) ? plain.failure.problems.map((p) => [p.path, p.message]) : [], [
        ["servers[0].tls", "tls applies only to protocol: https (this server is http)"]
      ])
      const cleartext = decodeConfig({ ...base, servers: [{ ...base.servers[0], protocol: "h2c" }] }, "t.yaml")
      assert.deepStrictEqual(Result.isFailure(cleartext) ? cleartext.failure.problems.map((p) => [p.path, p.message]) : [], [
        ["servers[0].tls", "tls applies only to protocol: https (this server is h2c)"]
      ])
      const alpn = (list: ReadonlyArray<string>) => {
        const decoded = decodeConfig({ ...base, servers: [{ ...base.servers[0], tls: { certificates: [{ cert: "x", key: "y" }], alpn: list } }] }, "t.yaml")
        // The certificate files do not exist: only the ALPN problems are looked at here.
        return Result.isFailure(decoded) ? decoded.failure.problems.filter((p) => p.path.includes("alpn")).map((p) => [p.path, p.message]) : []
      }
      assert.deepStrictEqual(alpn(["h2"]), [])
      assert.deepStrictEqual(alpn(["http/1.1", "h2"]), [])
      assert.deepStrictEqual(alpn(["h3"]), [["servers[0].tls.alpn[0]", "Expected \"h2\" | \"http/1.1\""]])
      assert.deepStrictEqual(alpn(["h2", "h2"]), [["servers[0].tls.alpn", "Expected each protocol once"]])
      assert.deepStrictEqual(alpn([]), [["servers[0].tls.alpn", "Expected a value with a length of at least 1"]])
    }))
})
