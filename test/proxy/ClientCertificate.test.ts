import { describe, expect, it } from "@effect/vitest"
import { createHash, X509Certificate } from "node:crypto"
import { xfccOf } from "../../src/proxy/ClientCertificate.ts"
import { certDir, makeCa, makeCert } from "../support/certs.ts"

describe("X-Forwarded-Client-Cert", () => {
  it("Hash of the DER, the subject in RFC 2253 order, URIs then DNS names; a value with a separator is quoted, a quote in the subject escaped", () => {
    const { dir, remove } = certDir()
    try {
      const ca = makeCa(dir)
      const c = makeCert(dir, ca, { cn: 'svc "q", x', names: ["b.internal", "a.internal"], uri: "spiffe://t/a;b", usage: "client" })
      const x509 = new X509Certificate(c.pem())
      const hash = createHash("sha256").update(x509.raw).digest("hex")
      expect(xfccOf(x509)).toBe(`Hash=${hash};Subject="CN=svc \\\\\\"q\\\\\\"\\\\, x,O=fibergate tests";URI="spiffe://t/a;b";DNS=b.internal;DNS=a.internal`)
    } finally {
      remove()
    }
  })
})
