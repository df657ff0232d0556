/**
 * The config contract of middlewares (DESIGN.md §3): a list item is either the name of an
 * entry in the top-level `middlewares:` map or an inline `{ <kind>: {…} }` with exactly one kind.
 */
import * as Schema from "effect/Schema"
import { CidrText } from "./Cidr.ts"
import { DurationMs } from "./Duration.ts"
import { HeaderName, Method } from "./HttpText.ts"

/** A `makeFilter`'s annotations for the JSON Schema: no constraint there, its annotations kept (see Schema.ts). */
const noJsonSchema = { toJsonSchema: () => [{}, true] as const }

const PositiveInt = Schema.Number.pipe(Schema.check(Schema.isInt(), Schema.isGreaterThanOrEqualTo(1)))

/** `allow` and/or `deny` CIDR lists, on the client address after `trusted_proxies`. */
export const IpFilter = Schema.Struct({
  allow: Schema.optionalKey(Schema.Array(CidrText).annotate({
    description: "Only clients in these addresses or CIDR ranges pass; an empty list lets nobody through. Absent: every client not denied."
  })),
  deny: Schema.optionalKey(Schema.Array(CidrText).annotate({ description: "Clients in these addresses or CIDR ranges are refused (checked before allow)." }))
}).pipe(Schema.check(Schema.makeFilter((f) =>
  f.allow !== undefined || f.deny !== undefined || "Expected allow, deny or both"
, noJsonSchema)))
export type IpFilter = typeof IpFilter.Type

/** `*`, an origin (`https://app.example.com`, with a port if not the default) or a subdomain pattern (`https://*.example.org`). */
const OriginPattern = Schema.String.pipe(Schema.check(Schema.isPattern(
  /^(\*|[a-z][a-z0-9+.-]*:\/\/(\*\.)?[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*(:\d{1,5})?)$/,
  { message: "Expected *, an origin such as https://app.example.com, or a pattern such as https://*.example.org" }
)))

export const Cors = Schema.Struct({
  origins: Schema.Array(OriginPattern).pipe(Schema.check(Schema.isMinLength(1))).annotate({
    description: "Origins allowed: exact (https://app.example.com, case-insensitive), * or a subdomain pattern (https://*.example.org)."
  }),
  /** Methods a preflight may ask for (default GET, HEAD, POST). */
  methods: Schema.optionalKey(Schema.Array(Method).annotate({ description: "Methods a preflight may ask for.", default: ["GET", "HEAD", "POST"] })),
  /** Request headers a preflight may ask for (default none beyond the CORS-safelisted ones). */
  headers: Schema.optionalKey(Schema.Array(HeaderName).annotate({
    description: "Request headers a preflight may ask for, beyond the CORS-safelisted ones.",
    default: []
  })),
  /** Response headers the browser may show to the page. */
  expose: Schema.optionalKey(Schema.Array(HeaderName).annotate({
    description: "Response headers the browser may show to the page (Access-Control-Expose-Headers).",
    default: []
  })),
  credentials: Schema.optionalKey(Schema.Boolean.annotate({
    description: "Allow credentials (cookies, Authorization) with Access-Control-Allow-Credentials: true; not with origins: *.",
    default: false
  })),
  /** How long a browser may cache a preflight's answer. */
  max_age: Schema.optionalKey(DurationMs.pipe(Schema.annotateEncoded({
    description: "How long a browser may cache a preflight's answer (a duration such as 10m). Absent: no Access-Control-Max-Age."
  })))
}).pipe(Schema.check(Schema.makeFilter((c) =>
  c.credentials !== true || !c.origins.includes("*") ||
  "origins: * cannot be combined with credentials: true (browsers refuse it); list the origins"
, noJsonSchema)))
export type Cors = typeof Cors.Type

const Sha256Hex = Schema.String.pipe(Schema.check(Schema.isPattern(/^[0-9a-fA-F]{64}$/, {
  message: "Expected the key's SHA-256 as 64 hex digits (e.g. printf %s \"$KEY\" | sha256sum)"
})))

export const ApiKey = Schema.Struct({
  /** Where the key comes from: a header (default x-api-key) … */
  header: Schema.optionalKey(HeaderName.annotate({ description: "The header the key is read from, when query is not given.", default: "x-api-key" })),
  /** … or a query parameter (then the header is not read). */
  query: Schema.optionalKey(Schema.String.pipe(Schema.check(Schema.isNonEmpty())).annotate({
    description: "Read the key from this query parameter instead of a header."
  })),
  keys: Schema.Array(Schema.Struct({
    name: Schema.String.pipe(Schema.check(Schema.isNonEmpty())).annotate({ description: "The key's name: the consumer in logs and for rate_limit's key: consumer." }),
    sha256: Sha256Hex.annotate({ description: "The key's SHA-256 as 64 hex digits (printf %s \"$KEY\" | sha256sum); compared in constant time." })
  })).pipe(Schema.check(Schema.isMinLength(1))).annotate({ description: "The keys accepted, at least one." }),
  /** Whether the key goes on upstream (default false: it is removed). */
  forward: Schema.optionalKey(Schema.Boolean.annotate({
    description: "Send the key on upstream; false removes it from the request (header or query parameter).",
    default: false
  }))
}).pipe(Schema.check(Schema.makeFilter((k) =>
  k.header === undefined || k.query === undefined || "Expected header or query, not both"
, noJsonSchema)))
export type ApiKey = typeof ApiKey.Type

const PasswordHash = Schema.String.pipe(Schema.check(Schema.isPattern(
  /^(\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}|\$apr1\$[./A-Za-z0-9]{1,8}\$[./A-Za-z0-9]{22}|\$scrypt\$ln=\d{1,2},r=\d{1,2},p=\d{1,2}\$[A-Za-z0-9+/]+={0,2}\$[A-Za-z0-9+/]+={0,2})$/,
  { message: "Expected a bcrypt ($2y$…), apr1 ($apr1$…) or scrypt ($scrypt$ln=…,r=…,p=…$salt$hash) password hash" }
)))

export const BasicAuth = Schema.Struct({
  /** The realm named in `WWW-Authenticate` (default "fibergate"). */
  realm: Schema.optionalKey(Schema.String.pipe(Schema.check(Schema.isPattern(/^[^"\\\x00-\x1f]*$/, {
    message: "Expected a realm without quotes, backslashes or control characters"
  }))).annotate({ description: "The realm named in WWW-Authenticate.", default: "fibergate" })),
  users: Schema.optionalKey(Schema.Array(Schema.Struct({
    name: Schema.String.pipe(Schema.check(Schema.isPattern(/^[^:\x00-\x1f]+$/, { message: "Expected a user name without a colon" }))).annotate({
      description: "The user's name (no colon): the consumer in logs and for rate_limit's key: consumer."
    }),
    hash: PasswordHash.annotate({ description: "The password's bcrypt ($2y$...), apr1 ($apr1$...) or scrypt ($scrypt$ln=...,r=...,p=...$salt$hash) hash." })
  })).pipe(Schema.check(Schema.isMinLength(1))).annotate({ description: "The users, inline; exactly one of users and htpasswd_file." })),
  /** An htpasswd file (`user:hash` lines, bcrypt or apr1 as `htpasswd -B` / `-m` write them), read at every load. */
  htpasswd_file: Schema.optionalKey(Schema.String.pipe(Schema.check(Schema.isNonEmpty())).annotate({
    description: "An htpasswd file (user:hash lines, bcrypt or apr1 as htpasswd -B or -m write them), read at start and at every reload; instead of users."
  }))
}).pipe(Schema.check(Schema.makeFilter((b) =>
  (b.users === undefined) !== (b.htpasswd_file === undefined) || "Expected users or htpasswd_file (exactly one)"
, noJsonSchema)))
export type BasicAuth = typeof BasicAuth.Type

/** `ip`, `route`, `global`, `consumer`, or `header:<name>`. */
export const RateLimitKey = Schema.String.pipe(Schema.check(Schema.isPattern(
  /^(ip|route|global|consumer|header:[!#$%&'*+.^_`|~0-9A-Za-z-]+)$/,
  { message: "Expected ip, route, global, consumer or header:<name>" }
)))

export const RateLimit = Schema.Struct({
  key: Schema.optionalKey(RateLimitKey.annotate({
    description: "What is counted apart: ip (the client's), route, global, consumer (the client IP when no auth named one) or header:<name>.",
    default: "ip"
  })),
  /** Requests per window (fixed window), or the bucket's size, refilled over one window (token bucket). */
  limit: PositiveInt.annotate({ description: "Requests per window (fixed_window), or the bucket's size, refilled over one window (token_bucket)." }),
  window: DurationMs.pipe(Schema.check(Schema.isGreaterThanOrEqualTo(1)), Schema.annotateEncoded({ description: "The window (a duration such as 1s)." })),
  algorithm: Schema.optionalKey(Schema.Literals(["token_bucket", "fixed_window"]).annotate({
    description: "token_bucket: a bucket of limit refilled evenly over window; fixed_window: limit per window from its first request.",
    default: "token_bucket"
  })),
  /** `redis` shares the counters through the top-level `redis:` server (between workers and instances). */
  store: Schema.optionalKey(Schema.Literals(["memory", "redis"]).annotate({
    description: "memory: counters per process; redis: counters in the top-level redis server, shared by every worker and instance using it.",
    default: "memory"
  }))
})
export type RateLimit = typeof RateLimit.Type

const HttpUrl = Schema.String.pipe(Schema.check(Schema.makeFilter((s: string) =>
  (URL.canParse(s) && /^https?:$/.test(new URL(s).protocol)) || "Expected an http:// or https:// URL"
, noJsonSchema)))

/** Traefik's forwardAuth, nginx's auth_request: a 2xx from `url` lets the request through. */
export const ForwardAuth = Schema.Struct({
  url: HttpUrl.annotate({ description: "The auth service: a GET to this http:// or https:// URL that answers 2xx lets the request through." }),
  /** Request headers sent to the auth service (default: all but hop-by-hop ones). */
  request_headers: Schema.optionalKey(Schema.Array(HeaderName).annotate({
    description: "The request headers sent to the auth service. Absent: all but hop-by-hop ones, Host and Content-Length."
  })),
  /** Headers of the auth service's 2xx copied onto the request sent upstream. */
  response_headers: Schema.optionalKey(Schema.Array(HeaderName).annotate({
    description: "Headers of the auth service's 2xx copied onto the request sent upstream, replacing the client's.",
    default: []
  })),
  /** How long the auth service may take (default 1s); then 503. */
  timeout: Schema.optionalKey(DurationMs.pipe(Schema.check(Schema.isGreaterThanOrEqualTo(1)), Schema.annotateEncoded({
    description: "How long the auth service may take (a duration such as 1s); then 503 AuthUnavailable.",
    default: "1s"
  })))
})
export type ForwardAuth = typeof ForwardAuth.Type

const JwtAlgorithm = Schema.Literals(["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA", "HS256", "HS384", "HS512"])

/** Bearer JWTs checked with jose: signature (JWKS over HTTP, or a shared secret), iss, aud, exp, nbf. */
export const Jwt = Schema.Struct({
  issuer: Schema.optionalKey(Schema.String.annotate({ description: "The iss claim a token must carry. Absent: not checked." })),
  audiences: Schema.optionalKey(Schema.Array(Schema.String).pipe(Schema.check(Schema.isMinLength(1))).annotate({
    description: "The aud values accepted: a token must name one of them. Absent: not checked."
  })),
  jwks_url: Schema.optionalKey(HttpUrl.annotate({
    description: "Where the JSON Web Key Set is fetched, for the asymmetric algorithms; exactly one of jwks_url and secret_file."
  })),
  /** A file holding the HMAC secret (HS256/384/512). */
  secret_file: Schema.optionalKey(Schema.String.pipe(Schema.check(Schema.isNonEmpty())).annotate({
    description: "A file holding the HMAC secret (HS256/384/512), relative to the working directory; a trailing newline is dropped."
  })),
  algorithms: Schema.Array(JwtAlgorithm).pipe(Schema.check(Schema.isMinLength(1))).annotate({ description: "The signature algorithms accepted." }),
  clock_skew: Schema.optionalKey(DurationMs.pipe(Schema.annotateEncoded({ description: "The leeway on exp and nbf (a duration such as 30s).", default: "30s" }))),
  /** Claims copied to request headers sent upstream, e.g. `{ sub: x-user-id }`. */
  claims_to_headers: Schema.optionalKey(Schema.Record(Schema.String, HeaderName).annotate({
    description: "Claims copied to request headers sent upstream, e.g. { sub: x-user-id }; a claim the token lacks removes the header."
  })),
  /** Whether the Authorization header goes on upstream (default true). */
  forward: Schema.optionalKey(Schema.Boolean.annotate({ description: "Send the Authorization header on upstream.", default: true }))
}).pipe(Schema.check(Schema.makeFilter((j) => {
  if ((j.jwks_url === undefined) === (j.secret_file === undefined)) return "Expected jwks_url or secret_file (exactly one)"
  const hmac = j.algorithms.filter((a) => a.startsWith("HS"))
  if (j.secret_file !== undefined && hmac.length !== j.algorithms.length) return "secret_file takes only HS256, HS384 or HS512"
  if (j.jwks_url !== undefined && hmac.length > 0) return "jwks_url takes asymmetric algorithms only (HS* needs secret_file)"
  return true
}, noJsonSchema)))
export type Jwt = typeof Jwt.Type

export const ConcurrencyLimit = Schema.Struct({
  max: PositiveInt.annotate({ description: "Requests of this middleware in flight at once; one more is refused at once (503), never queued." })
})
export type ConcurrencyLimit = typeof ConcurrencyLimit.Type

/** The kinds a middleware item can have, in the order the docs list them. */
export const middlewareKinds = ["cors", "ip_filter", "api_key", "basic_auth", "jwt", "forward_auth", "rate_limit", "concurrency_limit", "custom"] as const

export const InlineMiddleware = Schema.Struct({
  cors: Schema.optionalKey(Cors.annotate({
    description: "CORS: preflights answered 204 by the gateway, Access-Control-* headers on the answers to allowed origins; runs first."
  })),
  ip_filter: Schema.optionalKey(IpFilter.annotate({ description: "Allows or denies clients by address, after trusted_proxies (403 Forbidden)." })),
  api_key: Schema.optionalKey(ApiKey.annotate({ description: "Requires an API key in a header or query parameter (401 Unauthorized)." })),
  basic_auth: Schema.optionalKey(BasicAuth.annotate({ description: "Requires HTTP Basic credentials (401 with WWW-Authenticate)." })),
  jwt: Schema.optionalKey(Jwt.annotate({ description: "Requires a Bearer JWT, verified with a JWKS or a shared secret (401 with WWW-Authenticate)." })),
  forward_auth: Schema.optionalKey(ForwardAuth.annotate({ description: "Asks an auth service whether the request may pass (Traefik's forwardAuth)." })),
  rate_limit: Schema.optionalKey(RateLimit.annotate({ description: "Limits requests per key and window (429 RateLimited with Retry-After)." })),
  concurrency_limit: Schema.optionalKey(ConcurrencyLimit.annotate({ description: "Limits the requests in flight (503 ConcurrencyLimited)." })),
  /** The name a library user registered the middleware under (`Gateway.layerWith`). */
  custom: Schema.optionalKey(Schema.String.pipe(Schema.check(Schema.isNonEmpty())).annotate({
    description: "A middleware a library user registered under this name with Gateway.layerWith; fibergate run registers none."
  }))
}).pipe(Schema.check(Schema.makeFilter((m) =>
  middlewareKinds.filter((k) => Object.hasOwn(m, k)).length === 1 ||
  `Expected exactly one middleware kind: ${middlewareKinds.join(", ")}`
, noJsonSchema)))
export type InlineMiddleware = typeof InlineMiddleware.Type

/** A list item: a named middleware's name, or an inline one. */
export const MiddlewareItem = Schema.Union([Schema.String.pipe(Schema.check(Schema.isNonEmpty())), InlineMiddleware])
export type MiddlewareItem = typeof MiddlewareItem.Type

export const MiddlewareList = Schema.Array(MiddlewareItem)

/** The top-level `middlewares:` map: reusable middlewares by name. */
export const NamedMiddlewares = Schema.Record(Schema.String, InlineMiddleware)

/** The Redis server shared rate limits use. */
export const RedisSettings = Schema.Struct({
  url: Schema.String.pipe(Schema.check(Schema.makeFilter((s: string) =>
    (URL.canParse(s) && /^rediss?:$/.test(new URL(s).protocol)) || "Expected a redis:// or rediss:// URL such as redis://127.0.0.1:6379"
  , noJsonSchema))).annotate({ description: "The server's redis:// or rediss:// URL, e.g. redis://127.0.0.1:6379." }),
  /** Prepended to every key the gateway writes (default "fibergate:"). */
  key_prefix: Schema.optionalKey(Schema.String.annotate({ description: "Prepended to every key the gateway writes.", default: "fibergate:" })),
  /** How long a request waits for Redis before `on_error` decides (default 50ms). */
  timeout: Schema.optionalKey(DurationMs.pipe(Schema.check(Schema.isGreaterThanOrEqualTo(1)), Schema.annotateEncoded({
    description: "How long a request waits for Redis (a duration such as 50ms) before on_error decides.",
    default: "50ms"
  }))),
  /** `allow`: admit the request (fail open, the default); `deny`: answer 503. */
  on_error: Schema.optionalKey(Schema.Literals(["allow", "deny"]).annotate({
    description: "With Redis down or slow: allow admits the request (fail open), deny answers 503 RateLimiterUnavailable.",
    default: "allow"
  }))
})
export type RedisSettings = typeof RedisSettings.Type
