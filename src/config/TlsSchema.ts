/**
 * The config contract of TLS (DESIGN.md §3): a `protocol: https` listener's certificates,
 * versions, ALPN and client authentication, and the TLS an upstream's `https://` endpoints are
 * reached with. File paths are read relative to the working directory, like `htpasswd_file`.
 * Whether the files load and match is checked once the shape decoded (see TlsFilesCheck.ts).
 */
import * as Schema from "effect/Schema"

const FilePath = Schema.String.pipe(Schema.check(Schema.isNonEmpty()))

/** A `makeFilter`'s annotations for the JSON Schema: no constraint there, its annotations kept (see Schema.ts). */
const noJsonSchema = { toJsonSchema: () => [{}, true] as const }

export const CertificateFiles = Schema.Struct({
  /** PEM: the leaf certificate first, then its intermediates. */
  cert: FilePath.annotate({ description: "A PEM file: the leaf certificate first, then its intermediates." }),
  /** PEM private key of the leaf. */
  key: FilePath.annotate({ description: "A PEM file: the leaf certificate's private key." })
})
export type CertificateFiles = typeof CertificateFiles.Type

export const TLS_VERSIONS = ["TLSv1.2", "TLSv1.3"] as const

export const ALPN_PROTOCOLS = ["h2", "http/1.1"] as const
/** What an https listener offers when its `alpn` is not given. */
export const DEFAULT_ALPN: ReadonlyArray<typeof ALPN_PROTOCOLS[number]> = ALPN_PROTOCOLS

export const ListenerTls = Schema.Struct({
  /** SNI picks by each certificate's DNS names (exact, then wildcard); the first is the default. */
  certificates: Schema.Array(CertificateFiles).pipe(Schema.check(Schema.isMinLength(1))).annotate({
    description: "Certificate and key files, paths from the working directory; SNI picks by DNS names (exact, then wildcard), the first is the default."
  }),
  /** The oldest version accepted (default TLSv1.2). */
  min_version: Schema.optionalKey(Schema.Literals(TLS_VERSIONS).annotate({ description: "The oldest TLS version accepted.", default: "TLSv1.2" })),
  /** Protocols offered over ALPN, in the server's order of preference (default [h2, http/1.1]). */
  alpn: Schema.optionalKey(Schema.Array(Schema.Literals(ALPN_PROTOCOLS)).pipe(
    Schema.check(Schema.isMinLength(1)),
    Schema.check(Schema.makeFilter((list) => new Set(list).size === list.length || "Expected each protocol once", noJsonSchema))
  ).annotate({
    description: "Protocols offered over ALPN, in the server's order of preference; [http/1.1] turns HTTP/2 off.",
    default: [...DEFAULT_ALPN]
  })),
  /** mTLS: client certificates verified against `ca`; `require` fails the handshake without one. */
  client_auth: Schema.optionalKey(Schema.Struct({
    ca: FilePath.annotate({ description: "A PEM bundle client certificates must chain to." }),
    mode: Schema.optionalKey(Schema.Literals(["require", "optional"]).annotate({
      description: "require: a handshake without a certificate ca vouches for fails; optional: a client without one goes on.",
      default: "require"
    }))
  }).annotate({ description: "mTLS: clients present a certificate that must chain to ca; it goes upstream as X-Forwarded-Client-Cert." }))
})
export type ListenerTls = typeof ListenerTls.Type

export const UpstreamTls = Schema.Struct({
  /** PEM CA bundle the endpoints' certificates must chain to (default: Node's bundled roots). */
  ca: Schema.optionalKey(FilePath.annotate({ description: "A PEM CA bundle the endpoints' certificates must chain to. Absent: Node's bundled roots." })),
  /** SNI and the name verified in the endpoint's certificate (default: the endpoint's host). */
  server_name: Schema.optionalKey(Schema.String.pipe(Schema.check(Schema.isNonEmpty())).annotate({
    description: "Sent as SNI and verified in the endpoint's certificate. Absent: the endpoint URL's host."
  })),
  /** Client certificate for mTLS to the upstream (with `key`). */
  cert: Schema.optionalKey(FilePath.annotate({ description: "A PEM client certificate presented to an upstream that asks for one (mTLS), with key." })),
  key: Schema.optionalKey(FilePath.annotate({ description: "A PEM file: the private key of cert." })),
  /** Verify the endpoint's certificate (default true; false only when said). */
  verify: Schema.optionalKey(Schema.Boolean.annotate({ description: "Verify the endpoints' certificate chain and name.", default: true }))
}).pipe(Schema.check(Schema.makeFilter((t) =>
  (t.cert === undefined) === (t.key === undefined) || "Expected cert and key together (a client certificate needs its key)"
, noJsonSchema)))
export type UpstreamTls = typeof UpstreamTls.Type
