/**
 * mTLS on an https listener (`tls.client_auth`): `require` refuses a handshake without a
 * client certificate the CA vouches for; `optional` lets a client without one through and cuts
 * one whose certificate the CA does not vouch for. A verified certificate goes upstream as
 * Envoy's X-Forwarded-Client-Cert, and whatever such header a client sends is dropped.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { createHash, X509Certificate } from "node:crypto"
import { readFileSync } from "node:fs"
import { makeCa, makeCert } from "../support/certs.ts"
import { startGateway, startUpstream } from "../support/harness.ts"
import { httpsConfig, scopedCertDir } from "../support/https.ts"
import { eventually } from "../support/liveGateway.ts"
import { growth, hasSeries, scrapeAdmin } from "../support/prometheus.ts"
import { tlsGet, tlsRefusal } from "../support/tlsClient.ts"
import { h2Request, h2Session } from "../support/h2.ts"

const setup = (mode: "require" | "optional") =>
  Effect.gen(function*() {
    const { dir } = yield* scopedCertDir
    const serverCa = makeCa(dir, "server CA")
    const clientCa = makeCa(dir, "client CA")
    const strangerCa = makeCa(dir, "stranger CA")
    const site = makeCert(dir, serverCa, { cn: "site.test", names: ["site.test"] })
    const client = makeCert(dir, clientCa, { cn: "billing", names: ["billing.internal"], uri: "spiffe://test/billing", usage: "client" })
    const stranger = makeCert(dir, strangerCa, { cn: "stranger", names: ["stranger.internal"], usage: "client" })
    const app = yield* startUpstream("app")
    const gateway = yield* startGateway(httpsConfig(app.url, {
      certificates: [{ cert: site.cert, key: site.key }],
      client_auth: { ca: clientCa.cert, mode }
    }))
    const base = { port: gateway.port, servername: "site.test", ca: serverCa.pem() }
    const as = (c: typeof client) => ({ ...base, cert: c.pem(), key: readFileSync(c.key, "utf8") })
    return { app, gateway, base, as, client, stranger }
  })

const failuresGrow = (adminPort: number | undefined, before: Parameters<typeof growth>[0], reason: string) =>
  eventually(
    scrapeAdmin(adminPort).pipe(Effect.map((after) =>
      hasSeries(after, "fibergate_tls_handshake_failures_total", { listener: "secure", reason }) &&
      growth(before, after, "fibergate_tls_handshake_failures_total", { listener: "secure", reason }) === 1
    )),
    `one ${reason} handshake failure`
  )

describe("mTLS on an https listener", () => {
  it.live("require: a verified client certificate goes upstream as X-Forwarded-Client-Cert; the client's own such header is dropped", () =>
    Effect.gen(function*() {
      const { app, as, client } = yield* setup("require")
      const res = yield* tlsGet({ ...as(client), headers: { "x-forwarded-client-cert": "Hash=forged;Subject=\"CN=admin\"" } })
      assert.strictEqual(res.status, 200)
      const x509 = new X509Certificate(client.pem())
      const hash = createHash("sha256").update(x509.raw).digest("hex")
      assert.strictEqual(app.seen[0].headers["x-forwarded-client-cert"], `Hash=${hash};Subject="CN=billing,O=fibergate tests";URI=spiffe://test/billing;DNS=billing.internal`)
    }))

  it.live("require over h2: each stream carries the connection's X-Forwarded-Client-Cert", () =>
    Effect.gen(function*() {
      const { app, base, client } = yield* setup("require")
      const session = yield* h2Session(base.port, { ca: base.ca, cert: client.pem(), key: readFileSync(client.key, "utf8") })
      const answers = yield* Effect.promise(() => Promise.all([0, 1, 2].map((i) => h2Request(session, { ":path": `/s/${i}`, "x-forwarded-client-cert": "Hash=forged" }))))
      assert.deepStrictEqual(answers.map((r) => r.status), [200, 200, 200])
      const hash = createHash("sha256").update(new X509Certificate(client.pem()).raw).digest("hex")
      assert.deepStrictEqual(app.seen.map((r) => r.headers["x-forwarded-client-cert"]), Array(3).fill(
        `Hash=${hash};Subject="CN=billing,O=fibergate tests";URI=spiffe://test/billing;DNS=billing.internal`
      ))
    }))

  it.live("require: no client certificate, or one from another CA, fails the handshake, counted by reason", () =>
    Effect.gen(function*() {
      const { app, as, base, gateway, stranger } = yield* setup("require")
      const before = yield* scrapeAdmin(gateway.adminPort)
      const none = yield* tlsRefusal(base)
      assert.isTrue(none.refused)
      yield* failuresGrow(gateway.adminPort, before, "no_client_certificate")
      const foreign = yield* tlsRefusal(as(stranger))
      assert.isTrue(foreign.refused)
      yield* failuresGrow(gateway.adminPort, before, "bad_client_certificate")
      assert.strictEqual(app.seen.length, 0)
    }))

  it.live("optional: without a certificate the request goes through with no X-Forwarded-Client-Cert; with a verified one it carries it; a foreign one is cut", () =>
    Effect.gen(function*() {
      const { app, as, base, client, gateway, stranger } = yield* setup("optional")
      const anonymous = yield* tlsGet({ ...base, headers: { "x-forwarded-client-cert": "Hash=forged" } })
      assert.strictEqual(anonymous.status, 200)
      assert.isUndefined(app.seen[0].headers["x-forwarded-client-cert"])
      const known = yield* tlsGet(as(client))
      assert.strictEqual(known.status, 200)
      assert.match(String(app.seen[1].headers["x-forwarded-client-cert"]), /^Hash=[0-9a-f]{64};Subject="CN=billing,O=fibergate tests";/)
      const before = yield* scrapeAdmin(gateway.adminPort)
      const foreign = yield* tlsRefusal(as(stranger))
      assert.isTrue(foreign.refused)
      yield* failuresGrow(gateway.adminPort, before, "bad_client_certificate")
      assert.strictEqual(app.seen.length, 2)
    }))
})
