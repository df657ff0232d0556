/**
 * Reading a certificate and its private key from PEM files, and checking that they belong
 * together, the way a listener or an upstream pool will use them. Used when a config is
 * decoded (a pair that cannot serve is a config error: file and what is wrong) and again
 * whenever the files change on disk.
 */
import { createPrivateKey, X509Certificate } from "node:crypto"
import { readFileSync } from "node:fs"
import { nodeTls } from "./NodeModules.ts"
import type { UpstreamTls } from "./TlsSchema.ts"

/** A certificate chain and key that load and match, with what SNI and the admin API read from it. */
export interface CertificatePair {
  readonly certFile: string
  readonly keyFile: string
  readonly cert: Buffer
  readonly key: Buffer
  /** DNS names the leaf certificate is for (SANs, else the subject's CN), lower-case; `*.x` for wildcards. */
  readonly names: ReadonlyArray<string>
  readonly subject: string
  readonly issuer: string
  /** Epoch milliseconds. */
  readonly notBefore: number
  readonly notAfter: number
  readonly fingerprint256: string
}

const readable = (file: string): Buffer | string => {
  try {
    return readFileSync(file)
  } catch (error) {
    return `cannot read ${file}: ${(error as Error).message}`
  }
}

/** `DNS:a.example.com, DNS:*.b.example.com, IP Address:10.0.0.1` → the DNS names, lower-case. */
const dnsNames = (x509: X509Certificate): Array<string> => {
  const names: Array<string> = []
  for (const entry of (x509.subjectAltName ?? "").split(", ")) {
    if (entry.startsWith("DNS:")) names.push(entry.slice(4).toLowerCase())
  }
  if (names.length > 0) return names
  // Without SANs, clients fall back to the subject's CN; SNI does the same.
  const cn = /(?:^|\n)CN=([^\n]+)/.exec(x509.subject)
  return cn === null ? [] : [cn[1].toLowerCase()]
}

/** PEM blocks of a kind, in order. */
const pemBlocks = (text: string, label: string): Array<string> =>
  text.match(new RegExp(`-----BEGIN ${label}-----[\\s\\S]+?-----END ${label}-----`, "g")) ?? []

/**
 * Loads `certFile` (the leaf first, then any intermediates) and `keyFile`; a string says what
 * is wrong, naming the file.
 *
 * @example
 * const pair = loadCertificatePair("certs/example.pem", "certs/example.key")
 * if (typeof pair === "string") console.error(pair)
 */
export const loadCertificatePair = (certFile: string, keyFile: string): CertificatePair | string => {
  const cert = readable(certFile)
  if (typeof cert === "string") return cert
  const key = readable(keyFile)
  if (typeof key === "string") return key
  const blocks = pemBlocks(cert.toString("latin1"), "CERTIFICATE")
  if (blocks.length === 0) return `${certFile} holds no PEM certificate (expected a -----BEGIN CERTIFICATE----- block)`
  let x509: X509Certificate
  try {
    x509 = new X509Certificate(blocks[0])
  } catch (error) {
    return `${certFile}: the first certificate cannot be parsed (${(error as Error).message})`
  }
  let privateKey
  try {
    privateKey = createPrivateKey(key)
  } catch (error) {
    return `${keyFile} holds no usable private key (${(error as Error).message})`
  }
  if (!x509.checkPrivateKey(privateKey)) return `${keyFile} is not the private key of the certificate in ${certFile}`
  try {
    // What a listener will do with them: the chain and key must make a context.
    nodeTls().createSecureContext({ cert, key })
  } catch (error) {
    return `${certFile} with ${keyFile}: ${(error as Error).message}`
  }
  return {
    certFile,
    keyFile,
    cert,
    key,
    names: dnsNames(x509),
    subject: x509.subject.replaceAll("\n", ", "),
    issuer: x509.issuer.replaceAll("\n", ", "),
    notBefore: Date.parse(x509.validFrom),
    notAfter: Date.parse(x509.validTo),
    fingerprint256: x509.fingerprint256
  }
}

/**
 * Reads a PEM bundle of CA certificates (a client-auth or upstream trust store); a string says
 * what is wrong.
 */
export const loadCaBundle = (file: string): Buffer | string => {
  const ca = readable(file)
  if (typeof ca === "string") return ca
  const blocks = pemBlocks(ca.toString("latin1"), "CERTIFICATE")
  if (blocks.length === 0) return `${file} holds no PEM certificate (expected a -----BEGIN CERTIFICATE----- block)`
  for (const [i, block] of blocks.entries()) {
    try {
      new X509Certificate(block)
    } catch (error) {
      return `${file}: certificate ${i + 1} cannot be parsed (${(error as Error).message})`
    }
  }
  return ca
}

/** What `tls.connect` (undici's `connect`, a health probe) takes for an upstream's `tls:`. */
export interface UpstreamTlsOptions {
  readonly ca?: Buffer
  readonly cert?: Buffer
  readonly key?: Buffer
  readonly servername?: string
  readonly rejectUnauthorized: boolean
}

/**
 * The connect options of an upstream's `tls:` (verification on unless `verify: false`). The
 * files were checked when the config decoded; one that stopped loading since is left out, and
 * verification then fails the connection rather than trusting anything.
 *
 * @example
 * new Pool("https://10.0.0.5:8443", { connect: upstreamTlsOptions({ ca: "certs/ca.pem", server_name: "api.internal" }) })
 */
export const upstreamTlsOptions = (tls: UpstreamTls | undefined): UpstreamTlsOptions => {
  if (tls === undefined) return { rejectUnauthorized: true }
  const ca = tls.ca === undefined ? undefined : loadCaBundle(tls.ca)
  const pair = tls.cert === undefined || tls.key === undefined ? undefined : loadCertificatePair(tls.cert, tls.key)
  return {
    rejectUnauthorized: tls.verify !== false,
    ...(ca instanceof Buffer ? { ca } : {}),
    ...(pair !== undefined && typeof pair !== "string" ? { cert: pair.cert, key: pair.key } : {}),
    ...(tls.server_name === undefined ? {} : { servername: tls.server_name })
  }
}
