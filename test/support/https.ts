/**
 * Test support: https listener configs and the certificate facts tests compare against.
 */
import { Effect } from "effect"
import { X509Certificate } from "node:crypto"
import { certDir, type CertFiles } from "./certs.ts"

/** The SHA-256 fingerprint of a certificate, as a TLS client sees it. */
export const fingerprint = (c: CertFiles) => new X509Certificate(c.pem()).fingerprint256

/** A directory of certificates for the life of the test. */
export const scopedCertDir = Effect.acquireRelease(Effect.sync(certDir), (d) => Effect.sync(d.remove))

/** One https listener `secure` on loopback with `tls`, one route to `upstream`. */
export const httpsConfig = (upstream: string, tls: Record<string, unknown>, server: Record<string, unknown> = {}, upstreamExtra: Record<string, unknown> = {}) => ({
  admin: { listen: "127.0.0.1:0" },
  log: { level: "none", access_log: false },
  servers: [{ name: "secure", listen: "127.0.0.1:0", protocol: "https", tls, routes: [{ id: "all", upstream: "app" }], ...server }],
  upstreams: { app: { endpoints: [{ url: upstream }], ...upstreamExtra } }
})
