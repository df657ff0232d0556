/**
 * Test support: certificates made by openssl for the test that needs them (P-256 keys, a day
 * or more of validity), in a temporary directory. No key is ever committed.
 */
import { execFileSync } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"

export interface CertFiles {
  readonly cert: string
  readonly key: string
  /** PEM text of the certificate. */
  readonly pem: () => string
}

const openssl = (args: ReadonlyArray<string>) => execFileSync("openssl", args, { stdio: ["ignore", "ignore", "pipe"] })

/** A directory for certificate files; `remove()` deletes it. */
export const certDir = (): { readonly dir: string; readonly remove: () => void } => {
  const dir = mkdtempSync(join(tmpdir(), "fibergate-certs-"))
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) }
}

let serial = 0

/** A self-signed CA. */
export const makeCa = (dir: string, name = "fibergate test CA"): CertFiles => {
  const base = join(dir, `ca-${++serial}`)
  openssl([
    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
    "-keyout", `${base}.key`, "-out", `${base}.pem`, "-days", "30", "-subj", `/CN=${name}`,
    "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"
  ])
  return files(base)
}

/**
 * A certificate signed by `ca` for `names` (DNS SANs; an IP such as 127.0.0.1 becomes an IP
 * SAN), valid for `days` (default 30). `usage: "client"` makes a client certificate.
 */
export const makeCert = (
  dir: string,
  ca: CertFiles,
  options: { readonly cn: string; readonly names?: ReadonlyArray<string>; readonly usage?: "server" | "client"; readonly days?: number; readonly uri?: string }
): CertFiles => {
  const base = join(dir, `cert-${++serial}`)
  const sans = [
    ...(options.names ?? []).map((n) => (/^[\d.]+$/.test(n) ? `IP:${n}` : `DNS:${n}`)),
    ...(options.uri === undefined ? [] : [`URI:${options.uri}`])
  ]
  const ext = [
    "basicConstraints=CA:FALSE",
    `extendedKeyUsage=${options.usage === "client" ? "clientAuth" : "serverAuth"}`,
    ...(sans.length > 0 ? [`subjectAltName=${sans.join(",")}`] : [])
  ].join("\n")
  writeFileSync(`${base}.ext`, ext)
  openssl(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", `${base}.key`, "-out", `${base}.csr`, "-subj", `/O=fibergate tests/CN=${options.cn}`])
  openssl([
    "x509", "-req", "-in", `${base}.csr`, "-CA", ca.cert, "-CAkey", ca.key, "-CAcreateserial",
    "-out", `${base}.pem`, "-days", String(options.days ?? 30), "-extfile", `${base}.ext`
  ])
  return files(base)
}

const files = (base: string): CertFiles => ({
  cert: `${base}.pem`,
  key: `${base}.key`,
  pem: () => readFileSync(`${base}.pem`, "utf8")
})
