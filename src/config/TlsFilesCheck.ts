/**
 * The TLS files a config names must load: every listener certificate with its key (and the
 * two must match), every client-auth CA bundle, every upstream CA and client certificate. Run
 * on every config that decoded, wherever it comes from, so a pair that cannot serve is
 * rejected like a Schema error (file and what is wrong) and a reload keeps the config in force.
 */
import { loadCaBundle, loadCertificatePair } from "./CertificateFiles.ts"
import type { CheckProblem, ConfigCheck } from "./ConfigChecks.ts"

export const tlsFilesCheck: ConfigCheck = (config) => {
  const problems: Array<CheckProblem> = []
  config.servers.forEach((server, i) => {
    const tls = server.tls
    if (tls === undefined) return
    tls.certificates.forEach((c, j) => {
      const pair = loadCertificatePair(c.cert, c.key)
      if (typeof pair === "string") problems.push({ path: ["servers", i, "tls", "certificates", j], message: pair })
    })
    if (tls.client_auth !== undefined) {
      const ca = loadCaBundle(tls.client_auth.ca)
      if (typeof ca === "string") problems.push({ path: ["servers", i, "tls", "client_auth", "ca"], message: ca })
    }
  })
  for (const [name, upstream] of Object.entries(config.upstreams)) {
    const tls = upstream.tls
    if (tls === undefined) continue
    if (tls.ca !== undefined) {
      const ca = loadCaBundle(tls.ca)
      if (typeof ca === "string") problems.push({ path: ["upstreams", name, "tls", "ca"], message: ca })
    }
    if (tls.cert !== undefined && tls.key !== undefined) {
      const pair = loadCertificatePair(tls.cert, tls.key)
      if (typeof pair === "string") problems.push({ path: ["upstreams", name, "tls", "cert"], message: pair })
    }
  }
  return problems
}
