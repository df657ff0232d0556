import { describe, expect, it } from "@effect/vitest"
import { writeFileSync } from "node:fs"
import { loadCaBundle, loadCertificatePair, upstreamTlsOptions } from "../../src/config/CertificateFiles.ts"
import { certDir, makeCa, makeCert } from "../support/certs.ts"

const withDir = (f: (dir: string) => void) => () => {
  const { dir, remove } = certDir()
  try {
    f(dir)
  } finally {
    remove()
  }
}

describe("certificate files", () => {
  it("a matching pair loads with its DNS names (lower-case, IP SANs left out), subject, issuer and validity", withDir((dir) => {
    const ca = makeCa(dir, "Files CA")
    const c = makeCert(dir, ca, { cn: "Site.Test", names: ["Site.Test", "*.Site.Test", "127.0.0.1"], days: 3 })
    const pair = loadCertificatePair(c.cert, c.key)
    if (typeof pair === "string") throw new Error(pair)
    expect(pair.names).toEqual(["site.test", "*.site.test"])
    expect(pair.subject).toBe("O=fibergate tests, CN=Site.Test")
    expect(pair.issuer).toBe("CN=Files CA")
    expect(Math.round((pair.notAfter - pair.notBefore) / 86_400_000)).toBe(3)
    expect(pair.certFile).toBe(c.cert)
  }))

  it("without SANs, the subject's CN is the name", withDir((dir) => {
    const ca = makeCa(dir)
    const c = makeCert(dir, ca, { cn: "Only.CN.test" })
    const pair = loadCertificatePair(c.cert, c.key)
    expect(typeof pair === "string" ? pair : pair.names).toEqual(["only.cn.test"])
  }))

  it("each way a pair can be wrong names its file", withDir((dir) => {
    const ca = makeCa(dir)
    const a = makeCert(dir, ca, { cn: "a.test", names: ["a.test"] })
    const b = makeCert(dir, ca, { cn: "b.test", names: ["b.test"] })
    writeFileSync(`${dir}/empty.pem`, "no pem here\n")
    writeFileSync(`${dir}/broken.pem`, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    writeFileSync(`${dir}/nokey.key`, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    expect(loadCertificatePair(a.cert, b.key)).toBe(`${b.key} is not the private key of the certificate in ${a.cert}`)
    expect(loadCertificatePair(`${dir}/missing.pem`, a.key)).toMatch(new RegExp(`^cannot read ${dir}/missing.pem: ENOENT`))
    expect(loadCertificatePair(a.cert, `${dir}/missing.key`)).toMatch(new RegExp(`^cannot read ${dir}/missing.key: ENOENT`))
    expect(loadCertificatePair(`${dir}/empty.pem`, a.key)).toBe(`${dir}/empty.pem holds no PEM certificate (expected a -----BEGIN CERTIFICATE----- block)`)
    expect(loadCertificatePair(`${dir}/broken.pem`, a.key)).toMatch(new RegExp(`^${dir}/broken.pem: the first certificate cannot be parsed \\(`))
    expect(loadCertificatePair(a.cert, `${dir}/nokey.key`)).toMatch(new RegExp(`^${dir}/nokey.key holds no usable private key \\(`))
  }))

  it("a CA bundle loads when every block parses; says which block does not", withDir((dir) => {
    const one = makeCa(dir)
    const two = makeCa(dir)
    writeFileSync(`${dir}/bundle.pem`, one.pem() + two.pem())
    expect(loadCaBundle(`${dir}/bundle.pem`)).toBeInstanceOf(Buffer)
    writeFileSync(`${dir}/bad.pem`, one.pem() + "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    expect(loadCaBundle(`${dir}/bad.pem`)).toMatch(new RegExp(`^${dir}/bad.pem: certificate 2 cannot be parsed \\(`))
    writeFileSync(`${dir}/empty.pem`, "")
    expect(loadCaBundle(`${dir}/empty.pem`)).toBe(`${dir}/empty.pem holds no PEM certificate (expected a -----BEGIN CERTIFICATE----- block)`)
    expect(loadCaBundle(`${dir}/none.pem`)).toMatch(/^cannot read .*none.pem: ENOENT/)
  }))

  it("upstream connect options: verification on unless verify: false, the CA, the client pair and the server name", withDir((dir) => {
    const ca = makeCa(dir)
    const gw = makeCert(dir, ca, { cn: "gw", usage: "client" })
    expect(upstreamTlsOptions(undefined)).toEqual({ rejectUnauthorized: true })
    expect(upstreamTlsOptions({ verify: false })).toEqual({ rejectUnauthorized: false })
    const full = upstreamTlsOptions({ ca: ca.cert, cert: gw.cert, key: gw.key, server_name: "api.internal" })
    expect(full.rejectUnauthorized).toBe(true)
    expect(full.servername).toBe("api.internal")
    expect(full.ca?.toString()).toBe(ca.pem())
    expect(full.cert?.toString()).toBe(gw.pem())
    expect(full.key).toBeInstanceOf(Buffer)
    // A file that stopped loading is left out, so verification fails rather than trusting anything.
    expect(upstreamTlsOptions({ ca: `${dir}/gone.pem`, cert: gw.cert, key: ca.key })).toEqual({ rejectUnauthorized: true })
  }))
})
