/**
 * The verified client certificate of an mTLS connection as Envoy's `X-Forwarded-Client-Cert`
 * tells it upstream: `Hash=<sha256 of the DER, hex>;Subject="<RFC 2253 subject>";URI=…;DNS=…`.
 * Built once per connection (every request on it carries the same certificate). A certificate
 * the listener's CA did not verify is never described.
 */
import { createHash, type X509Certificate } from "node:crypto"
import type { Socket } from "node:net"
import type { TLSSocket } from "node:tls"

const described = new WeakMap<Socket, string | null>()

/**
 * Node's subject lists RDNs in certificate order, one a line, with RFC 2253's escapes already
 * in the values; RFC 2253 writes them last first.
 */
const rfc2253 = (subject: string): string => subject.split("\n").reverse().join(",")

const quoted = (value: string): string => `"${value.replace(/(["\\])/g, "\\$1")}"`
/** XFCC separates elements with `,`, pairs with `;` and keys with `=`: a value holding one is quoted. */
const safe = (value: string): string => (/[,;="]/.test(value) ? quoted(value) : value)

/** The XFCC value of `socket`'s verified client certificate; undefined without one. */
export const forwardedClientCert = (socket: Socket): string | undefined => {
  let value = described.get(socket)
  if (value === undefined) {
    value = describe(socket as TLSSocket)
    described.set(socket, value)
  }
  return value ?? undefined
}

const describe = (socket: TLSSocket): string | null => {
  if (socket.authorized !== true || typeof socket.getPeerX509Certificate !== "function") return null
  const cert = socket.getPeerX509Certificate()
  if (cert === undefined) return null
  return xfccOf(cert)
}

/**
 * @example
 * xfccOf(new X509Certificate(pem)) // => 'Hash=5f1c…;Subject="CN=client,O=acme";DNS=client.example.com'
 */
export const xfccOf = (cert: X509Certificate): string => {
  const parts = [`Hash=${createHash("sha256").update(cert.raw).digest("hex")}`, `Subject=${quoted(rfc2253(cert.subject))}`]
  const dns: Array<string> = []
  // Envoy's order: Hash, Subject, every URI, then every DNS name.
  for (const entry of (cert.subjectAltName ?? "").split(", ")) {
    if (entry.startsWith("URI:")) parts.push(`URI=${safe(entry.slice(4))}`)
    else if (entry.startsWith("DNS:")) dns.push(`DNS=${safe(entry.slice(4))}`)
  }
  return [...parts, ...dns].join(";")
}
