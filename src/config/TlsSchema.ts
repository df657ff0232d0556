/**
 * The config contract of TLS (DESIGN.md §3): a `protocol: https` listener's certificates,
 * versions, ALPN and client authentication, and the TLS an upstream's `https://` endpoints are
 * reached with. File paths are read relative to the working directory, like `htpasswd_file`.
 * Whether the files load and match is checked once the shape decoded (see TlsFilesCheck.ts).
 */
import * as Schema from "effect/Schema"

const FilePath = Schema.String.pipe(Schema.check(Schema.isNonEmpty()))

export const CertificateFiles = Schema.Struct({
  /** PEM: the leaf certificate first, then its intermediates. */
  cert: FilePath,
  /** PEM private key of the leaf. */
  key: FilePath
})
export type CertificateFiles = typeof CertificateFiles.Type

export const TLS_VERSIONS = ["TLSv1.2", "TLSv1.3"] as const

export const ALPN_PROTOCOLS = ["h2", "http/1.1"] as const
/** What an https listener offers when its `alpn` is not given. */
export const DEFAULT_ALPN: ReadonlyArray<typeof ALPN_PROTOCOLS[number]> = ALPN_PROTOCOLS

export const ListenerTls = Schema.Struct({
  /** SNI picks by each certificate's DNS names (exact, then wildcard); the first is the default. */
  certificates: Schema.Array(CertificateFiles).pipe(Schema.check(Schema.isMinLength(1))),
  /** The oldest version accepted (default TLSv1.2). */
  min_version: Schema.optionalKey(Schema.Literals(TLS_VERSIONS)),
  /** Protocols offered over ALPN, in the server's order of preference (default [h2, http/1.1]). */
  alpn: Schema.optionalKey(Schema.Array(Schema.Literals(ALPN_PROTOCOLS)).pipe(
    Schema.check(Schema.isMinLength(1)),
    Schema.check(Schema.makeFilter((list) => new Set(list).size === list.length || "Expected each protocol once"))
  )),
  /** mTLS: client certificates verified against `ca`; `require` fails the handshake without one. */
  client_auth: Schema.optionalKey(Schema.Struct({
    ca: FilePath,
    mode: Schema.optionalKey(Schema.Literals(["require", "optional"]))
  }))
})
export type ListenerTls = typeof ListenerTls.Type

export const UpstreamTls = Schema.Struct({
  /** PEM CA bundle the endpoints' certificates must chain to (default: Node's bundled roots). */
  ca: Schema.optionalKey(FilePath),
  /** SNI and the name verified in the endpoint's certificate (default: the endpoint's host). */
  server_name: Schema.optionalKey(Schema.String.pipe(Schema.check(Schema.isNonEmpty()))),
  /** Client certificate for mTLS to the upstream (with `key`). */
  cert: Schema.optionalKey(FilePath),
  key: Schema.optionalKey(FilePath),
  /** Verify the endpoint's certificate (default true; false only when said). */
  verify: Schema.optionalKey(Schema.Boolean)
}).pipe(Schema.check(Schema.makeFilter((t) =>
  (t.cert === undefined) === (t.key === undefined) || "Expected cert and key together (a client certificate needs its key)"
)))
export type UpstreamTls = typeof UpstreamTls.Type
