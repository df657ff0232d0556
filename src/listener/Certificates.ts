/**
 * The certificates of `protocol: https` listeners (DESIGN.md §1): loaded from their files,
 * indexed for SNI, and swapped into the running servers when a file changes or a reload
 * names other files. A swap only changes what new handshakes get: established connections
 * keep theirs, and no handshake is refused in between. A set that does not load (a missing
 * file, a key that is not the certificate's) is reported and the listener keeps what it has.
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as FiberMap from "effect/FiberMap"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type { ServerOptions } from "node:https"
import type { SecureContext, SecureContextOptions, Server as TlsServer } from "node:tls"
import { nodeTls } from "../config/NodeModules.ts"
import { loadCaBundle, loadCertificatePair, type CertificatePair } from "../config/CertificateFiles.ts"
import { debounceChanges, DEFAULT_DEBOUNCE, watchFileChanges } from "../config/FileWatch.ts"
import type { Config } from "../config/Schema.ts"
import { DEFAULT_ALPN, type ListenerTls } from "../config/TlsSchema.ts"
import { certificateReloadFailures, registerGauge, tlsCertificateExpiry } from "../telemetry/Metrics.ts"
import { makeSniIndex, type SniIndex } from "./SniIndex.ts"

/**
 * TLS 1.2 suites of Mozilla's "intermediate" profile (forward secrecy, AEAD only); TLS 1.3
 * keeps OpenSSL's defaults, which are all AEAD.
 */
export const DEFAULT_CIPHERS = [
  "TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256",
  "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384",
  "ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
  "DHE-RSA-AES128-GCM-SHA256", "DHE-RSA-AES256-GCM-SHA384"
].join(":")

/** A certificate in force, as `GET /certificates` lists it. */
export interface CertificateView {
  readonly listener: string
  readonly names: ReadonlyArray<string>
  readonly subject: string
  readonly issuer: string
  readonly not_before: string
  readonly not_after: string
  readonly fingerprint_sha256: string
  readonly cert_file: string
  readonly key_file: string
  /** The one served without SNI or for a name no certificate has. */
  readonly default: boolean
}

/** What one https listener serves now. */
interface Loaded {
  readonly tls: ListenerTls
  readonly pairs: ReadonlyArray<CertificatePair>
  readonly sni: SniIndex<SecureContext>
  readonly defaults: SecureContextOptions
}

/** The context options every certificate of a listener shares (versions, suites, client CAs). */
const sharedOptions = (tls: ListenerTls, ca: Buffer | undefined): SecureContextOptions => ({
  minVersion: tls.min_version ?? "TLSv1.2",
  ciphers: DEFAULT_CIPHERS,
  honorCipherOrder: true,
  ...(ca === undefined ? {} : { ca })
})

/** Loads every file of `tls`; a string says what is wrong. */
const load = (tls: ListenerTls): Loaded | string => {
  let ca: Buffer | undefined
  if (tls.client_auth !== undefined) {
    const bundle = loadCaBundle(tls.client_auth.ca)
    if (typeof bundle === "string") return bundle
    ca = bundle
  }
  const pairs: Array<CertificatePair> = []
  for (const files of tls.certificates) {
    const pair = loadCertificatePair(files.cert, files.key)
    if (typeof pair === "string") return pair
    pairs.push(pair)
  }
  const shared = sharedOptions(tls, ca)
  // Each certificate gets a context with the listener's versions and client CAs: the one SNI
  // picks is the one the handshake (and the client certificate's verification) goes on with.
  const entries = pairs.map((pair) => ({ names: pair.names, value: nodeTls().createSecureContext({ ...shared, cert: pair.cert, key: pair.key }) }))
  return {
    tls,
    pairs,
    sni: makeSniIndex(entries as [typeof entries[0], ...typeof entries]),
    defaults: { ...shared, cert: pairs[0].cert, key: pairs[0].key }
  }
}

const filesOf = (tls: ListenerTls): Array<string> => [
  ...tls.certificates.flatMap((c) => [c.cert, c.key]),
  ...(tls.client_auth === undefined ? [] : [tls.client_auth.ca])
]

const viewsOf = (listener: string, loaded: Loaded): Array<CertificateView> =>
  loaded.pairs.map((pair, i) => ({
    listener,
    names: pair.names,
    subject: pair.subject,
    issuer: pair.issuer,
    not_before: new Date(pair.notBefore).toISOString(),
    not_after: new Date(pair.notAfter).toISOString(),
    fingerprint_sha256: pair.fingerprint256,
    cert_file: pair.certFile,
    key_file: pair.keyFile,
    default: i === 0
  }))

export class Certificates extends Context.Service<Certificates, {
  /**
   * Loads (again) the certificates of every https listener of `config` and follows their
   * files. Listeners call it before binding, so a server is made with what is in force.
   */
  readonly apply: (config: Config) => Effect.Effect<void>
  /**
   * The TLS options of an https listener's server: SNI over the live index, versions, ALPN,
   * client authentication. Undefined when its certificates never loaded.
   */
  readonly serverOptions: (listener: string) => ServerOptions | undefined
  /** Swaps reach `server` (for handshakes without SNI) until the scope closes. */
  readonly attach: (listener: string, server: TlsServer) => Effect.Effect<void, never, Scope.Scope>
  /** The certificates in force, listener by listener in config order. */
  readonly list: () => ReadonlyArray<CertificateView>
}>()("fibergate/listener/Certificates") {
  static readonly layer: Layer.Layer<Certificates> = Layer.effect(
    Certificates,
    Effect.gen(function*() {
      const context = yield* Effect.context<never>()
      const clock = Context.get(context, Clock.Clock)
      const loaded = new Map<string, Loaded>()
      const servers = new Map<string, Set<TlsServer>>()
      const watchers = yield* FiberMap.make<string>()
      /** The files each watcher follows, to restart it only when they change. */
      const watched = new Map<string, string>()
      let order: Array<string> = []
      let gauges: Array<Metric.Registration> = []

      const updateGauges = () => {
        for (const g of gauges) g.remove()
        gauges = []
        for (const [listener, l] of loaded) {
          for (const pair of l.pairs) {
            gauges.push(registerGauge(tlsCertificateExpiry, { listener, name: pair.names[0] ?? pair.subject, file: pair.certFile }, context, () =>
              (pair.notAfter - clock.currentTimeMillisUnsafe()) / 1000))
          }
        }
      }

      const swap = (listener: string, next: Loaded) => {
        loaded.set(listener, next)
        for (const server of servers.get(listener) ?? []) server.setSecureContext(next.defaults)
      }

      /** Re-reads a listener's files; on failure the listener keeps what it has. */
      const reload = (listener: string, why: string) =>
        Effect.suspend(() => {
          const current = loaded.get(listener)
          if (current === undefined) return Effect.void
          const next = load(current.tls)
          if (typeof next === "string") {
            return Effect.logError(`listener ${listener}: certificates not reloaded (${why}): ${next}; it keeps serving the ones it had`).pipe(
              Effect.andThen(Metric.update(Metric.withAttributes(certificateReloadFailures, { listener }), 1))
            )
          }
          swap(listener, next)
          updateGauges()
          return Effect.logInfo(`listener ${listener}: certificates reloaded (${why}): ${next.pairs.map((p) => p.names.join(" ")).join(", ")}`)
        })

      const follow = (listener: string, files: ReadonlyArray<string>) =>
        Effect.scoped(Effect.gen(function*() {
          const streams = yield* Effect.forEach(files, watchFileChanges)
          yield* debounceChanges(Stream.mergeAll(streams, { concurrency: "unbounded" }), DEFAULT_DEBOUNCE, reload(listener, "a file changed"))
        }))

      const apply = Effect.fnUntraced(function*(config: Config) {
        const https = config.servers.filter((s) => s.protocol === "https" && s.tls !== undefined)
        order = https.map((s) => s.name)
        const wanted = new Set(order)
        for (const name of [...loaded.keys()]) {
          if (wanted.has(name)) continue
          loaded.delete(name)
          watched.delete(name)
          yield* FiberMap.remove(watchers, name)
        }
        for (const server of https) {
          const tls = server.tls!
          const next = load(tls)
          if (typeof next === "string") {
            yield* Effect.logError(`listener ${server.name}: certificates not loaded: ${next}${loaded.has(server.name) ? "; it keeps serving the ones it had" : ""}`)
            yield* Metric.update(Metric.withAttributes(certificateReloadFailures, { listener: server.name }), 1)
          } else swap(server.name, next)
          const files = filesOf(tls)
          const key = JSON.stringify(files)
          if (watched.get(server.name) !== key) {
            watched.set(server.name, key)
            yield* FiberMap.run(watchers, server.name, follow(server.name, files))
          }
        }
        updateGauges()
      })

      yield* Effect.addFinalizer(() => Effect.sync(() => {
        for (const g of gauges) g.remove()
      }))

      return Certificates.of({
        apply,
        serverOptions: (listener) => {
          const current = loaded.get(listener)
          if (current === undefined) return undefined
          const clientAuth = current.tls.client_auth
          return {
            ...current.defaults,
            ALPNProtocols: [...(current.tls.alpn ?? DEFAULT_ALPN)],
            requestCert: clientAuth !== undefined,
            rejectUnauthorized: clientAuth !== undefined && (clientAuth.mode ?? "require") === "require",
            SNICallback: (servername, callback) => callback(null, loaded.get(listener)?.sni.lookup(servername))
          }
        },
        attach: (listener, server) =>
          Effect.acquireRelease(
            Effect.sync(() => {
              let set = servers.get(listener)
              if (set === undefined) servers.set(listener, set = new Set())
              set.add(server)
            }),
            () => Effect.sync(() => servers.get(listener)?.delete(server))
          ),
        list: () => order.flatMap((name) => {
          const l = loaded.get(name)
          return l === undefined ? [] : viewsOf(name, l)
        })
      })
    })
  )
}
