/**
 * Certificates swapped into a running https listener: when their files change on disk and when
 * a reload names other files. New handshakes get the new certificate, established connections
 * keep going, no handshake fails during a swap under load, and a pair that does not load is
 * reported (log, counter) while the listener keeps serving what it had.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { copyFileSync, renameSync } from "node:fs"
import { Agent, request as httpsRequest } from "node:https"
import type { LookupFunction } from "node:net"
import type { TLSSocket } from "node:tls"
import { makeCa, makeCert, type CertFiles } from "../support/certs.ts"
import { request, startGateway, startUpstream } from "../support/harness.ts"
import { eventually } from "../support/liveGateway.ts"
import { growth, hasSeries, scrapeAdmin } from "../support/prometheus.ts"
import { tlsGet, tlsRequest } from "../support/tlsClient.ts"
import { h2Request } from "../support/h2.ts"
import { connect as connectH2 } from "node:http2"
import { fingerprint, httpsConfig, scopedCertDir } from "../support/https.ts"

/** Puts `from`'s files in place of `to`'s the way deploy tools do: a copy renamed over the old file. */
const replaceFiles = (from: CertFiles, to: { readonly cert: string; readonly key: string }) => {
  copyFileSync(from.key, `${to.key}.tmp`)
  copyFileSync(from.cert, `${to.cert}.tmp`)
  renameSync(`${to.key}.tmp`, to.key)
  renameSync(`${to.cert}.tmp`, to.cert)
}

const toLoopback: LookupFunction = (_host, options, callback) =>
  options.all === true ? callback(null, [{ address: "127.0.0.1", family: 4 }]) : callback(null, "127.0.0.1", 4)

/** One h2 connection: the certificate it was served and the statuses of three streams on it. */
const h2Round = (port: number, ca: CertFiles) =>
  new Promise<{ readonly fingerprint: string; readonly statuses: ReadonlyArray<number> }>((resolve, reject) => {
    const session = connectH2(`https://127.0.0.1:${port}`, { ca: ca.pem(), servername: "site.test" })
    session.once("error", reject)
    session.once("connect", () => {
      const cert = (session.socket as TLSSocket).getPeerX509Certificate()
      Promise.all([0, 1, 2].map((i) => h2Request(session, { ":path": `/h2/${i}` }))).then(
        (responses) => {
          session.close()
          resolve({ fingerprint: cert?.fingerprint256 ?? "", statuses: responses.map((r) => r.status) })
        },
        (error) => {
          session.destroy()
          reject(error)
        }
      )
    })
  })

const served = (port: number, ca: CertFiles) => tlsGet({ port, servername: "site.test", ca: ca.pem() }).pipe(Effect.map((r) => r.fingerprint))

describe("certificate reload", () => {
  it.live("a certificate rewritten on disk is served to new handshakes; a keep-alive connection opened before goes on with the old one", () =>
    Effect.gen(function*() {
      const { dir } = yield* scopedCertDir
      const ca = makeCa(dir)
      const live = { cert: `${dir}/live.pem`, key: `${dir}/live.key` }
      const first = makeCert(dir, ca, { cn: "site.test", names: ["site.test"] })
      const second = makeCert(dir, ca, { cn: "site.test", names: ["site.test"] })
      replaceFiles(first, live)
      const app = yield* startUpstream("app")
      const gateway = yield* startGateway(httpsConfig(app.url, { certificates: [live] }))
      const agent = new Agent({ keepAlive: true, maxSockets: 1 })
      yield* Effect.addFinalizer(() => Effect.sync(() => agent.destroy()))
      const viaAgent = () =>
        Effect.promise(() => new Promise<{ status: number; socket: TLSSocket; fingerprint: string | undefined }>((resolve, reject) => {
          // node:https's agent reuses no connection made with an explicit `servername`: the name
          // is the host, resolved to loopback.
          const req = httpsRequest({ host: "site.test", port: gateway.port, lookup: toLoopback, ca: ca.pem(), agent }, (res) => {
            const socket = res.socket as TLSSocket
            const fingerprint = socket.getPeerCertificate()?.fingerprint256
            res.resume()
            res.on("end", () => resolve({ status: res.statusCode ?? 0, socket, fingerprint }))
          })
          req.on("error", reject)
          req.end()
        }))
      const before = yield* viaAgent()
      assert.strictEqual(before.fingerprint, fingerprint(first))
      replaceFiles(second, live)
      yield* eventually(served(gateway.port, ca).pipe(Effect.map((f) => f === fingerprint(second))), "the new certificate on a new connection")
      const after = yield* viaAgent()
      assert.strictEqual(after.status, 200)
      assert.strictEqual(after.socket, before.socket, "the same connection")
      assert.strictEqual(after.fingerprint, fingerprint(first))
      const listed = JSON.parse((yield* request(`http://127.0.0.1:${gateway.adminPort}/certificates`)).body).certificates
      assert.strictEqual(listed[0].fingerprint_sha256, fingerprint(second))
    }))

  it.live("a key on disk that is not the certificate's is refused and counted; the listener keeps serving its certificate until a good pair comes", () =>
    Effect.gen(function*() {
      const { dir } = yield* scopedCertDir
      const ca = makeCa(dir)
      const live = { cert: `${dir}/live.pem`, key: `${dir}/live.key` }
      const first = makeCert(dir, ca, { cn: "site.test", names: ["site.test"] })
      const other = makeCert(dir, ca, { cn: "site.test", names: ["site.test"] })
      replaceFiles(first, live)
      const app = yield* startUpstream("app")
      const gateway = yield* startGateway(httpsConfig(app.url, { certificates: [live] }))
      const before = yield* scrapeAdmin(gateway.adminPort)
      // The new certificate with the old key: not a pair.
      copyFileSync(other.cert, `${live.cert}.tmp`)
      renameSync(`${live.cert}.tmp`, live.cert)
      yield* eventually(
        scrapeAdmin(gateway.adminPort).pipe(Effect.map((after) =>
          hasSeries(after, "fibergate_tls_certificate_reload_failures_total", { listener: "secure" }) &&
          growth(before, after, "fibergate_tls_certificate_reload_failures_total", { listener: "secure" }) >= 1
        )),
        "a counted reload failure"
      )
      assert.strictEqual(yield* served(gateway.port, ca), fingerprint(first))
      replaceFiles(other, live)
      yield* eventually(served(gateway.port, ca).pipe(Effect.map((f) => f === fingerprint(other))), "the good pair once it is complete")
    }))

  it.live("swaps under load: clients opening new TLS connections (HTTP/1.1, and h2 with several streams each) all through three swaps see no failed handshake or request", () =>
    Effect.gen(function*() {
      const { dir } = yield* scopedCertDir
      const ca = makeCa(dir)
      const live = { cert: `${dir}/live.pem`, key: `${dir}/live.key` }
      const certs = [0, 1, 2, 3].map(() => makeCert(dir, ca, { cn: "site.test", names: ["site.test"] }))
      replaceFiles(certs[0], live)
      const app = yield* startUpstream("app")
      const gateway = yield* startGateway(httpsConfig(app.url, { certificates: [live] }))
      let stop = false
      const seen = new Set<string>()
      const failures: Array<string> = []
      let done = 0
      const client = async () => {
        while (!stop) {
          try {
            const res = await tlsRequest({ port: gateway.port, servername: "site.test", ca: ca.pem() })
            if (res.status !== 200) failures.push(`status ${res.status}`)
            seen.add(res.fingerprint)
            done++
          } catch (error) {
            failures.push((error as Error).message)
          }
        }
      }
      // h2: a new connection per round (new handshakes), three streams on it.
      const h2Client = async () => {
        while (!stop) {
          try {
            const { fingerprint: got, statuses } = await h2Round(gateway.port, ca)
            if (statuses.some((s) => s !== 200)) failures.push(`h2 statuses ${statuses.join(",")}`)
            seen.add(got)
            done += statuses.length
          } catch (error) {
            failures.push(`h2: ${(error as Error).message}`)
          }
        }
      }
      const clients = Promise.all([client(), client(), client(), h2Client(), h2Client()])
      yield* eventually(Effect.sync(() => seen.has(fingerprint(certs[0]))), "the first certificate served")
      for (const next of certs.slice(1)) {
        replaceFiles(next, live)
        yield* eventually(Effect.sync(() => seen.has(fingerprint(next))), "the swapped certificate served")
      }
      stop = true
      yield* Effect.promise(() => clients)
      assert.deepStrictEqual(failures, [])
      assert.strictEqual(seen.size, 4)
      assert.isTrue(done > 20, `${done} requests`)
    }))

  it.live("a reload naming other certificate files swaps them in place: same port, open connections untouched; a bad pair in a reload is refused with 400 and the old stays", () =>
    Effect.gen(function*() {
      const { dir } = yield* scopedCertDir
      const ca = makeCa(dir)
      const a = makeCert(dir, ca, { cn: "site.test", names: ["site.test"] })
      const b = makeCert(dir, ca, { cn: "site.test", names: ["site.test"] })
      const app = yield* startUpstream("app")
      const config = httpsConfig(app.url, { certificates: [{ cert: a.cert, key: a.key }] })
      const gateway = yield* startGateway(config)
      assert.strictEqual(yield* served(gateway.port, ca), fingerprint(a))
      const put = (value: unknown) =>
        request(`http://127.0.0.1:${gateway.adminPort}/config`, { method: "PUT", headers: { "content-type": "application/json" }, body: JSON.stringify(value) })
      const bad = yield* put(httpsConfig(app.url, { certificates: [{ cert: b.cert, key: a.key }] }))
      assert.strictEqual(bad.status, 400)
      assert.include(bad.body, "servers[0].tls.certificates[0]")
      assert.include(bad.body, `${a.key} is not the private key of the certificate in ${b.cert}`)
      assert.strictEqual(yield* served(gateway.port, ca), fingerprint(a))
      const good = yield* put(httpsConfig(app.url, { certificates: [{ cert: b.cert, key: b.key }] }))
      assert.strictEqual(good.status, 200)
      yield* eventually(served(gateway.port, ca).pipe(Effect.map((f) => f === fingerprint(b))), "the certificate the reload named")
      assert.strictEqual(gateway.services.config.source, "<value>")
    }))
})
