/**
 * The config contract of middlewares (DESIGN.md §3): a list item is either the name of an
 * entry in the top-level `middlewares:` map or an inline `{ <kind>: {…} }` with exactly one kind.
 */
import * as Schema from "effect/Schema"
import { CidrText } from "./Cidr.ts"
import { DurationMs } from "./Duration.ts"
import { HeaderName, Method } from "./HttpText.ts"

const PositiveInt = Schema.Number.pipe(Schema.check(Schema.isInt(), Schema.isGreaterThanOrEqualTo(1)))

/** `allow` and/or `deny` CIDR lists, on the client address after `trusted_proxies`. */
export const IpFilter = Schema.Struct({
  allow: Schema.optionalKey(Schema.Array(CidrText)),
  deny: Schema.optionalKey(Schema.Array(CidrText))
}).pipe(Schema.check(Schema.makeFilter((f) =>
  f.allow !== undefined || f.deny !== undefined || "Expected allow, deny or both"
)))
export type IpFilter = typeof IpFilter.Type

/** `*`, an origin (`https://app.example.com`, with a port if not the default) or a subdomain pattern (`https://*.example.org`). */
const OriginPattern = Schema.String.pipe(Schema.check(Schema.isPattern(
  /^(\*|[a-z][a-z0-9+.-]*:\/\/(\*\.)?[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*(:\d{1,5})?)$/,
  { message: "Expected *, an origin such as https://app.example.com, or a pattern such as https://*.example.org" }
)))

export const Cors = Schema.Struct({
  origins: Schema.Array(OriginPattern).pipe(Schema.check(Schema.isMinLength(1))),
  /** Methods a preflight may ask for (default GET, HEAD, POST). */
  methods: Schema.optionalKey(Schema.Array(Method)),
  /** Request headers a preflight may ask for (default none beyond the CORS-safelisted ones). */
  headers: Schema.optionalKey(Schema.Array(HeaderName)),
  /** Response headers the browser may show to the page. */
  expose: Schema.optionalKey(Schema.Array(HeaderName)),
  credentials: Schema.optionalKey(Schema.Boolean),
  /** How long a browser may cache a preflight's answer. */
  max_age: Schema.optionalKey(DurationMs)
}).pipe(Schema.check(Schema.makeFilter((c) =>
  c.credentials !== true || !c.origins.includes("*") ||
  "origins: * cannot be combined with credentials: true (browsers refuse it); list the origins"
)))
export type Cors = typeof Cors.Type

const Sha256Hex = Schema.String.pipe(Schema.check(Schema.isPattern(/^[0-9a-fA-F]{64}$/, {
  message: "Expected the key's SHA-256 as 64 hex digits (e.g. printf %s \"$KEY\" | sha256sum)"
})))

export const ApiKey = Schema.Struct({
  /** Where the key comes from: a header (default x-api-key) … */
  header: Schema.optionalKey(HeaderName),
  /** … or a query parameter (then the header is not read). */
  query: Schema.optionalKey(Schema.String.pipe(Schema.check(Schema.isNonEmpty()))),
  keys: Schema.Array(Schema.Struct({
    name: Schema.String.pipe(Schema.check(Schema.isNonEmpty())),
    sha256: Sha256Hex
  })).pipe(Schema.check(Schema.isMinLength(1))),
  /** Whether the key goes on upstream (default false: it is removed). */
  forward: Schema.optionalKey(Schema.Boolean)
}).pipe(Schema.check(Schema.makeFilter((k) =>
  k.header === undefined || k.query === undefined || "Expected header or query, not both"
)))
export type ApiKey = typeof ApiKey.Type

const PasswordHash = Schema.String.pipe(Schema.check(Schema.isPattern(
  /^(\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}|\$apr1\$[./A-Za-z0-9]{1,8}\$[./A-Za-z0-9]{22}|\$scrypt\$ln=\d{1,2},r=\d{1,2},p=\d{1,2}\$[A-Za-z0-9+/]+={0,2}\$[A-Za-z0-9+/]+={0,2})$/,
  { message: "Expected a bcrypt ($2y$…), apr1 ($apr1$…) or scrypt ($scrypt$ln=…,r=…,p=…$salt$hash) password hash" }
)))

export const BasicAuth = Schema.Struct({
  /** The realm named in `WWW-Authenticate` (default "fibergate"). */
  realm: Schema.optionalKey(Schema.String.pipe(Schema.check(Schema.isPattern(/^[^"\\\x00-\x1f]*$/, {
    message: "Expected a realm without quotes, backslashes or control characters"
  })))),
  users: Schema.optionalKey(Schema.Array(Schema.Struct({
    name: Schema.String.pipe(Schema.check(Schema.isPattern(/^[^:\x00-\x1f]+$/, { message: "Expected a user name without a colon" }))),
    hash: PasswordHash
  })).pipe(Schema.check(Schema.isMinLength(1)))),
  /** An htpasswd file (`user:hash` lines, bcrypt or apr1 as `htpasswd -B` / `-m` write them), read at every load. */
  htpasswd_file: Schema.optionalKey(Schema.String.pipe(Schema.check(Schema.isNonEmpty())))
}).pipe(Schema.check(Schema.makeFilter((b) =>
  (b.users === undefined) !== (b.htpasswd_file === undefined) || "Expected users or htpasswd_file (exactly one)"
)))
export type BasicAuth = typeof BasicAuth.Type

/** `ip`, `route`, `global`, `consumer`, or `header:<name>`. */
export const RateLimitKey = Schema.String.pipe(Schema.check(Schema.isPattern(
  /^(ip|route|global|consumer|header:[!#$%&'*+.^_`|~0-9A-Za-z-]+)$/,
  { message: "Expected ip, route, global, consumer or header:<name>" }
)))

export const RateLimit = Schema.Struct({
  key: Schema.optionalKey(RateLimitKey),
  /** Requests per window (fixed window), or the bucket's size, refilled over one window (token bucket). */
  limit: PositiveInt,
  window: DurationMs.pipe(Schema.check(Schema.isGreaterThanOrEqualTo(1))),
  algorithm: Schema.optionalKey(Schema.Literals(["token_bucket", "fixed_window"])),
  /** `redis` shares the counters through the top-level `redis:` server (between workers and instances). */
  store: Schema.optionalKey(Schema.Literals(["memory", "redis"]))
})
export type RateLimit = typeof RateLimit.Type

const HttpUrl = Schema.String.pipe(Schema.check(Schema.makeFilter((s: string) =>
  (URL.canParse(s) && /^https?:$/.test(new URL(s).protocol)) || "Expected an http:// or https:// URL"
)))

/** Traefik's forwardAuth, nginx's auth_request: a 2xx from `url` lets the request through. */
export const ForwardAuth = Schema.Struct({
  url: HttpUrl,
  /** Request headers sent to the auth service (default: all but hop-by-hop ones). */
  request_headers: Schema.optionalKey(Schema.Array(HeaderName)),
  /** Headers of the auth service's 2xx copied onto the request sent upstream. */
  response_headers: Schema.optionalKey(Schema.Array(HeaderName)),
  /** How long the auth service may take (default 1s); then 503. */
  timeout: Schema.optionalKey(DurationMs.pipe(Schema.check(Schema.isGreaterThanOrEqualTo(1))))
})
export type ForwardAuth = typeof ForwardAuth.Type

const JwtAlgorithm = Schema.Literals(["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA", "HS256", "HS384", "HS512"])

/** Bearer JWTs checked with jose: signature (JWKS over HTTP, or a shared secret), iss, aud, exp, nbf. */
export const Jwt = Schema.Struct({
  issuer: Schema.optionalKey(Schema.String),
  audiences: Schema.optionalKey(Schema.Array(Schema.String).pipe(Schema.check(Schema.isMinLength(1)))),
  jwks_url: Schema.optionalKey(HttpUrl),
  /** A file holding the HMAC secret (HS256/384/512). */
  secret_file: Schema.optionalKey(Schema.String.pipe(Schema.check(Schema.isNonEmpty()))),
  algorithms: Schema.Array(JwtAlgorithm).pipe(Schema.check(Schema.isMinLength(1))),
  clock_skew: Schema.optionalKey(DurationMs),
  /** Claims copied to request headers sent upstream, e.g. `{ sub: x-user-id }`. */
  claims_to_headers: Schema.optionalKey(Schema.Record(Schema.String, HeaderName)),
  /** Whether the Authorization header goes on upstream (default true). */
  forward: Schema.optionalKey(Schema.Boolean)
}).pipe(Schema.check(Schema.makeFilter((j) => {
  if ((j.jwks_url === undefined) === (j.secret_file === undefined)) return "Expected jwks_url or secret_file (exactly one)"
  const hmac = j.algorithms.filter((a) => a.startsWith("HS"))
  if (j.secret_file !== undefined && hmac.length !== j.algorithms.length) return "secret_file takes only HS256, HS384 or HS512"
  if (j.jwks_url !== undefined && hmac.length > 0) return "jwks_url takes asymmetric algorithms only (HS* needs secret_file)"
  return true
})))
export type Jwt = typeof Jwt.Type

export const ConcurrencyLimit = Schema.Struct({ max: PositiveInt })
export type ConcurrencyLimit = typeof ConcurrencyLimit.Type

/** The kinds a middleware item can have, in the order the docs list them. */
export const middlewareKinds = ["cors", "ip_filter", "api_key", "basic_auth", "jwt", "forward_auth", "rate_limit", "concurrency_limit", "custom"] as const

export const InlineMiddleware = Schema.Struct({
  cors: Schema.optionalKey(Cors),
  ip_filter: Schema.optionalKey(IpFilter),
  api_key: Schema.optionalKey(ApiKey),
  basic_auth: Schema.optionalKey(BasicAuth),
  jwt: Schema.optionalKey(Jwt),
  forward_auth: Schema.optionalKey(ForwardAuth),
  rate_limit: Schema.optionalKey(RateLimit),
  concurrency_limit: Schema.optionalKey(ConcurrencyLimit),
  /** The name a library user registered the middleware under (`Gateway.layerWith`). */
  custom: Schema.optionalKey(Schema.String.pipe(Schema.check(Schema.isNonEmpty())))
}).pipe(Schema.check(Schema.makeFilter((m) =>
  middlewareKinds.filter((k) => Object.hasOwn(m, k)).length === 1 ||
  `Expected exactly one middleware kind: ${middlewareKinds.join(", ")}`
)))
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
  ))),
  /** Prepended to every key the gateway writes (default "fibergate:"). */
  key_prefix: Schema.optionalKey(Schema.String),
  /** How long a request waits for Redis before `on_error` decides (default 50ms). */
  timeout: Schema.optionalKey(DurationMs.pipe(Schema.check(Schema.isGreaterThanOrEqualTo(1)))),
  /** `allow`: admit the request (fail open, the default); `deny`: answer 503. */
  on_error: Schema.optionalKey(Schema.Literals(["allow", "deny"]))
})
export type RedisSettings = typeof RedisSettings.Type
