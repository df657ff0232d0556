/**
 * The configuration contract (DESIGN.md §3) as Effect Schemas. Decoding is the only place
 * that validates the shape of the input: once a `Config` exists, the rest of the gateway trusts it.
 *
 * Every key carries a `description` and, where the gateway fills one in when the key is absent,
 * that `default` (annotations only: nothing is filled in by decoding, the `??` where a value is
 * used stays the authority, and test/config/JsonSchema.test.ts checks that the two agree). They
 * reach `fibergate schema` (JsonSchema.ts) so editors show them. Three rules make them appear:
 * - `.annotate` the key's value schema: it is emitted inline (`annotateKey` would land in an `allOf`);
 * - a duration's annotations go on its encoded side (`Schema.annotateEncoded`), the string the
 *   file holds, so its default reads `"10s"`: `.annotate` on `DurationMs` would document the number;
 * - a `Schema.makeFilter` has no JSON Schema form and drops what is annotated on it (the last
 *   check gets a schema's annotations), unless it says so with `noJsonSchema`, Effect's
 *   `toJsonSchema: () => [{}, true]` ("the constraint is omitted"), which changes nothing else.
 */
import { CidrText } from "./Cidr.ts"
import * as Schema from "effect/Schema"
import { formatPath } from "./ConfigError.ts"
import { DurationMs } from "./Duration.ts"
import { HeaderName, Method } from "./HttpText.ts"
import { MiddlewareList, NamedMiddlewares, RedisSettings, type InlineMiddleware, type MiddlewareItem } from "./MiddlewareSchema.ts"
import { ListenerTls, UpstreamTls } from "./TlsSchema.ts"

/** A `makeFilter`'s annotations for the JSON Schema: no constraint there, its annotations kept (see above). */
const noJsonSchema = { toJsonSchema: () => [{}, true] as const }

const validRegex = (source: string): true | string => {
  try {
    new RegExp(source)
    return true
  } catch (e) {
    return (e as Error).message
  }
}

/** A string that must compile as a JavaScript regular expression. */
export const RegexSource = Schema.String.pipe(Schema.check(Schema.makeFilter(validRegex, noJsonSchema)))

const listenPattern = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s[\]]*)):(\d{1,5})$/

/**
 * Splits a listen address (`127.0.0.1:8080`, `:8080`, `[::1]:8080`) into host and port;
 * an empty host means every interface.
 */
export const parseListen = (text: string): { readonly host: string; readonly port: number } | undefined => {
  const m = listenPattern.exec(text)
  if (m === null) return undefined
  const port = Number(m[3])
  if (port > 65535) return undefined
  return { host: m[1] ?? (m[2] === "" ? "0.0.0.0" : m[2]), port }
}

/** `host:port` where a server or the admin API listens. Port 0 asks the OS for a free port. */
export const ListenAddress = Schema.String.pipe(
  Schema.check(Schema.makeFilter((s: string) =>
    parseListen(s) !== undefined || "Expected a listen address such as 127.0.0.1:8080, :8080 or [::1]:8080"
  , noJsonSchema))
)

const endpointUrl = (s: string): true | string => {
  let url: URL
  try {
    url = new URL(s)
  } catch {
    return "Expected an absolute URL such as http://127.0.0.1:3000"
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") return "Expected an http:// or https:// URL"
  if (url.pathname !== "/" || url.search !== "" || url.hash !== "") {
    return "Expected an origin only (scheme, host and port), without a path or query"
  }
  if (url.username !== "" || url.password !== "") return "Expected no credentials in the URL"
  return true
}


const exactlyOne = (keys: ReadonlyArray<string>) => (o: object): true | string =>
  keys.filter((k) => Object.hasOwn(o, k)).length === 1 || `Expected exactly one of ${keys.join(", ")}`

/** A header or query condition: an exact value, `{ present: true|false }`, or `{ regex: "..." }`. */
export const ValueMatch = Schema.Union([
  Schema.String,
  Schema.Struct({
    present: Schema.optionalKey(Schema.Boolean.annotate({
      description: "true: the header or parameter must be there, with any value; false: it must not be."
    })),
    regex: Schema.optionalKey(RegexSource.annotate({ description: "A JavaScript regular expression the value must match." }))
  }).pipe(
    Schema.check(Schema.makeFilter(exactlyOne(["present", "regex"]), noJsonSchema))
  )
])
export type ValueMatch = typeof ValueMatch.Type

const AbsolutePath = Schema.String.pipe(Schema.check(Schema.isStartingWith("/")))

/** Exactly one of `exact`, `prefix` (matched on a segment boundary) or `regex`. */
export const PathMatch = Schema.Struct({
  exact: Schema.optionalKey(AbsolutePath.annotate({ description: "The path must be exactly this (after normalisation), e.g. /login." })),
  prefix: Schema.optionalKey(AbsolutePath.annotate({
    description: "The path must start with this, on a segment boundary: /api matches /api and /api/x, not /apix."
  })),
  regex: Schema.optionalKey(RegexSource.annotate({ description: "A JavaScript regular expression the path must match, e.g. ^/v[0-9]+/." }))
}).pipe(Schema.check(Schema.makeFilter(exactlyOne(["exact", "prefix", "regex"]), noJsonSchema)))
export type PathMatch = typeof PathMatch.Type

const HostPattern = Schema.String.pipe(
  Schema.check(Schema.isPattern(/^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$/, {
    message: "Expected a host name such as api.example.com or *.example.com"
  }))
)

export const RouteMatch = Schema.Struct({
  host: Schema.optionalKey(HostPattern.annotate({
    description: "The request's host: exact (case-insensitive, port ignored) or *.example.com for any subdomain, not the apex. Absent: any host."
  })),
  path: Schema.optionalKey(PathMatch.annotate({ description: "One of exact, prefix or regex. Absent: every path (prefix /)." })),
  methods: Schema.optionalKey(Schema.Array(Method).annotate({ description: "The request's method must be one of these. Absent: any method." })),
  headers: Schema.optionalKey(Schema.Record(Schema.String, ValueMatch).annotate({
    description: "Request headers by name, each an exact value, { present: true|false } or { regex: \"...\" }; every one must hold."
  })),
  query: Schema.optionalKey(Schema.Record(Schema.String, ValueMatch).annotate({
    description: "URL-decoded query parameters by name, in the same forms as headers; every one must hold."
  }))
})

/** Either `strip_prefix` and/or `add_prefix`, or `regex` with `replace` (`$1` refers to a group). */
export const Rewrite = Schema.Struct({
  strip_prefix: Schema.optionalKey(AbsolutePath.annotate({ description: "Removed from the start of the path before it goes upstream, e.g. /api." })),
  add_prefix: Schema.optionalKey(AbsolutePath.annotate({ description: "Put in front of the path (after strip_prefix) before it goes upstream, e.g. /v1." })),
  regex: Schema.optionalKey(RegexSource.annotate({ description: "A JavaScript regular expression replaced in the path by replace; the query is kept." })),
  replace: Schema.optionalKey(Schema.String.annotate({ description: "What a regex match is replaced with; $1 refers to its first group." }))
}).pipe(Schema.check(Schema.makeFilter((r) => {
  const prefixes = r.strip_prefix !== undefined || r.add_prefix !== undefined
  const regex = r.regex !== undefined || r.replace !== undefined
  if (prefixes && regex) return "Expected either strip_prefix/add_prefix or regex/replace, not both"
  if (regex && (r.regex === undefined || r.replace === undefined)) return "Expected both regex and replace"
  if (!prefixes && !regex) return "Expected strip_prefix, add_prefix or regex/replace"
  return true
}, noJsonSchema)))
export type Rewrite = typeof Rewrite.Type

const HeaderValue = Schema.String.pipe(
  Schema.check(Schema.isPattern(/^[\t\x20-\x7e\x80-\xff]*$/, { message: "Expected a header value without control characters" }))
)

export const HeaderOps = Schema.Struct({
  set: Schema.optionalKey(Schema.Record(HeaderName, HeaderValue).annotate({ description: "Headers set to these values, replacing any of the same name." })),
  add: Schema.optionalKey(Schema.Record(HeaderName, HeaderValue).annotate({ description: "Headers added with these values, keeping any of the same name." })),
  remove: Schema.optionalKey(Schema.Array(HeaderName).annotate({ description: "Names of headers removed." }))
})
export type HeaderOps = typeof HeaderOps.Type

const RetryOn = Schema.Union([
  Schema.Literals(["connect-failure", "reset", "timeout"]),
  Schema.Number.pipe(Schema.check(Schema.isInt(), Schema.isBetween({ minimum: 500, maximum: 599 })))
]).annotate({ message: "Expected connect-failure, reset, timeout or a 5xx status" })

/** What counts as a failed try, for outlier detection and the circuit breaker (the same by default). */
const failureKindsText = "What counts as a failed try: connect-failure, reset, timeout (a try's timeout), 5xx (a 5xx answer)."

/** Retries of a route (only before any response byte went out; bodies only when buffered). */
export const Retry = Schema.Struct({
  attempts: Schema.optionalKey(Schema.Number.pipe(Schema.check(Schema.isInt(), Schema.isBetween({ minimum: 1, maximum: 10 }))).annotate({
    description: "Tries in all, the first included (1-10).",
    default: 3
  })),
  per_try_timeout: Schema.optionalKey(DurationMs.pipe(Schema.annotateEncoded({
    description: "A try slower than this (a duration such as 1s) fails as a timeout, retried when on lists timeout. Absent: only the route's timeout bounds a try."
  }))),
  buffer_bytes: Schema.optionalKey(Schema.Number.pipe(Schema.check(Schema.isInt(), Schema.isGreaterThanOrEqualTo(0))).annotate({
    description: "Request bodies up to this many bytes (with a Content-Length) are buffered so a retry can replay them; a larger or chunked body is never retried.",
    default: 65536
  })),
  backoff: Schema.optionalKey(Schema.Struct({
    base: Schema.optionalKey(DurationMs.pipe(Schema.annotateEncoded({
      description: "The first retry's backoff (a duration such as 25ms); it doubles with each retry.",
      default: "25ms"
    }))),
    max: Schema.optionalKey(DurationMs.pipe(Schema.annotateEncoded({ description: "The longest backoff (a duration such as 1s).", default: "1s" }))),
    jitter: Schema.optionalKey(Schema.Boolean.annotate({
      description: "Wait a random time up to the backoff (full jitter) rather than the backoff itself.",
      default: true
    }))
  }).annotate({ description: "The wait before each retry: try n waits a random time in [0, min(max, base * 2^(n-1))]." })),
  on: Schema.optionalKey(Schema.Array(RetryOn).annotate({
    description: "What is retried: connect-failure, reset, timeout (per_try_timeout) and 5xx statuses (the response is then dropped unseen).",
    default: ["connect-failure", "reset", "timeout", 502, 503, 504]
  })),
  methods: Schema.optionalKey(Schema.Array(Method).annotate({
    description: "Methods that may be retried; by default the idempotent ones (RFC 9110 9.2.2).",
    default: ["GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"]
  }))
})
export type Retry = typeof Retry.Type

export const Route = Schema.Struct({
  id: Schema.String.pipe(Schema.check(Schema.isNonEmpty())).annotate({
    description: "The route's name, unique across all servers: in metrics, logs, spans and the admin API."
  }),
  /** Higher is tried first within the route's host class (default 0); see routing/Router.ts. */
  priority: Schema.optionalKey(Schema.Int.annotate({
    description: "Routes with a higher priority are tried first within their host class; an integer, negative allowed.",
    default: 0
  })),
  match: Schema.optionalKey(RouteMatch.annotate({ description: "Conditions a request must all meet to take this route. Absent: every request." })),
  upstream: Schema.String.annotate({ description: "The upstreams key this route's requests are sent to." }),
  rewrite: Schema.optionalKey(Rewrite.annotate({
    description: "Rewrites the path before it goes upstream: strip_prefix and/or add_prefix, or regex with replace."
  })),
  headers: Schema.optionalKey(Schema.Struct({
    request: Schema.optionalKey(HeaderOps.annotate({ description: "Changes to the request's headers before it goes upstream." })),
    response: Schema.optionalKey(HeaderOps.annotate({ description: "Changes to the response's headers before it goes to the client." }))
  }).annotate({ description: "Headers set, added or removed on the request sent upstream and the response sent back." })),
  timeout: Schema.optionalKey(DurationMs.pipe(Schema.annotateEncoded({
    description: "The whole request, all tries included (a duration such as 5s); 504 when it expires before the response starts. Absent: no overall timeout."
  }))),
  retry: Schema.optionalKey(Retry.annotate({
    description: "Retries of a failed try, only before any response byte went to the client. Absent: no retries."
  })),
  /** WebSocket upgrades on this route (every route proxies them). */
  websocket: Schema.optionalKey(Schema.Struct({
    /** A tunnel with no byte either way for this long is closed (default 10m; 0: never). */
    idle_timeout: Schema.optionalKey(DurationMs.pipe(Schema.annotateEncoded({
      description: "A tunnel with no byte either way for this long (a duration such as 10m) is closed; 0: never.",
      default: "10m"
    })))
  }).annotate({ description: "WebSocket tunnels of this route (every route proxies WebSocket upgrades)." })),
  /** Run in order after the server's own; see MiddlewareSchema.ts. */
  middlewares: Schema.optionalKey(MiddlewareList.annotate({
    description: "Middlewares run in order after the server's own: inline { <kind>: {...} } items or names from the top-level middlewares.",
    default: []
  }))
})
export type Route = typeof Route.Type

const PositiveInt = Schema.Number.pipe(Schema.check(Schema.isInt(), Schema.isGreaterThanOrEqualTo(1)))

/**
 * A number in [minimum, maximum]. The range already refuses NaN and ±Infinity; saying so with
 * `isFinite` keeps the number a plain JSON number (without it the JSON codec adds strings for
 * them, and drops the range and the key's annotations from the JSON Schema). It aborts with the
 * range's own words, so a NaN is refused with the same single message as before.
 */
const NumberBetween = (minimum: number, maximum: number) =>
  Schema.Number.pipe(Schema.check(
    Schema.isFinite({ expected: `a value between ${minimum} and ${maximum}` }).abort(),
    Schema.isBetween({ minimum, maximum })
  ))

export const Limits = Schema.Struct({
  max_connections: Schema.optionalKey(PositiveInt.annotate({
    description: "Client connections open at once on this listener; more are closed as they arrive.",
    default: 10000
  })),
  max_header_bytes: Schema.optionalKey(PositiveInt.annotate({
    description: "The largest request head, in bytes; a larger one gets 431. A change re-binds the listener.",
    default: 16384
  })),
  max_body_bytes: Schema.optionalKey(PositiveInt.annotate({
    description: "The largest request body, in bytes (10485760 is 10 MiB); a larger one gets 413 (Content-Length checked up front, chunked counted).",
    default: 10485760
  })),
  idle_timeout: Schema.optionalKey(DurationMs.pipe(Schema.annotateEncoded({
    description: "A keep-alive client connection idle this long (a duration such as 60s) is closed; HTTP/2 ones with a GOAWAY.",
    default: "60s"
  }))),
  /** From a request's first byte to the end of its head (0: off). */
  header_timeout: Schema.optionalKey(DurationMs.pipe(Schema.annotateEncoded({
    description: "A request head must arrive within this (a duration such as 60s; the first from the connection's start), else 408; 0: off.",
    default: "60s"
  }))),
  /** From a request's first byte to the end of its body (0: off). */
  request_timeout: Schema.optionalKey(DurationMs.pipe(Schema.annotateEncoded({
    description: "The whole request, body included, must arrive within this (a duration such as 300s), else 408; 0: off.",
    default: "300s"
  }))),
  /** HTTP/2: streams a client may have open at once on one connection (SETTINGS_MAX_CONCURRENT_STREAMS). */
  h2_max_concurrent_streams: Schema.optionalKey(PositiveInt.annotate({
    description: "HTTP/2: streams a client may have open at once on one connection; more are refused (REFUSED_STREAM).",
    default: 100
  })),
  /** HTTP/2: the largest header list (names, values, 32 bytes per field) a request may send. */
  h2_max_header_list_bytes: Schema.optionalKey(PositiveInt.annotate({
    description: "HTTP/2: the largest request header list, in bytes (names, values and 32 per field); a larger one resets its stream (ENHANCE_YOUR_CALM).",
    default: 16384
  }))
})
export type Limits = typeof Limits.Type

export const Server = Schema.Struct({
  name: Schema.String.pipe(Schema.check(Schema.isNonEmpty())).annotate({
    description: "The listener's name, unique: in metrics and logs, and what a reload tells listeners apart by."
  }),
  listen: ListenAddress.annotate({
    description: "Where the listener binds: host:port, :port (every interface) or [::1]:port; port 0 takes any free port."
  }),
  /** `h2c`: HTTP/2 with prior knowledge, and HTTP/1.1 on the same port (told apart by the preface). */
  protocol: Schema.optionalKey(Schema.Literals(["http", "https", "h2c"]).annotate({
    message: "Expected \"http\", \"https\" or \"h2c\" (tcp listeners are not supported yet)"
  }).annotate({
    description: "http; https: TLS, with HTTP/2 and HTTP/1.1 by ALPN (needs tls); h2c: HTTP/2 with prior knowledge and HTTP/1.1 on one port.",
    default: "http"
  })),
  /** Required by `protocol: https`, refused otherwise. */
  tls: Schema.optionalKey(ListenerTls.annotate({ description: "Certificates and TLS settings of a protocol: https listener: required by https, refused otherwise." })),
  limits: Schema.optionalKey(Limits.annotate({ description: "Bounds on the listener's connections, request sizes and request timeouts." })),
  /**
   * Peers whose X-Forwarded-For is believed: the client's address is the rightmost entry not
   * in these ranges (see proxy/ClientAddress.ts). Without it, the client is the peer.
   */
  trusted_proxies: Schema.optionalKey(Schema.Array(CidrText).annotate({
    description: "Addresses or CIDR ranges of peers whose X-Forwarded-For (or Forwarded) is believed for the client's address; none: the client is the peer.",
    default: []
  })),
  /** Run before every route's own middlewares. */
  middlewares: Schema.optionalKey(MiddlewareList.annotate({
    description: "Middlewares run in order before every route's own: inline { <kind>: {...} } items or names from the top-level middlewares.",
    default: []
  })),
  routes: Schema.Array(Route).annotate({ description: "The listener's routes, tried by host, priority and path (see the README's routing precedence)." })
})
export type Server = typeof Server.Type

export const HashOnText = Schema.String.pipe(
  Schema.check(Schema.isPattern(/^(ip|path|header:[!#$%&'*+.^_`|~0-9A-Za-z-]+|cookie:[^\s;=]+)$/, {
    message: "Expected ip, path, header:<name> or cookie:<name>"
  }))
)

export const Endpoint = Schema.Struct({
  url: Schema.String.pipe(Schema.check(Schema.makeFilter(endpointUrl, noJsonSchema))).annotate({
    description: "The endpoint's origin, http:// or https:// with host and port, without a path, e.g. http://10.0.0.1:8080."
  }),
  weight: Schema.optionalKey(PositiveInt.annotate({
    description: "The endpoint's relative share of requests under balance: weighted, random and consistent_hash.",
    default: 1
  }))
})

export const Pool = Schema.Struct({
  connections: Schema.optionalKey(PositiveInt.annotate({ description: "Connections to each endpoint at most.", default: 128 })),
  keep_alive: Schema.optionalKey(DurationMs.pipe(Schema.annotateEncoded({
    description: "How long an idle connection to an endpoint is kept (a duration such as 60s); it also caps a longer keep-alive the endpoint offers.",
    default: "60s"
  }))),
  connect_timeout: Schema.optionalKey(DurationMs.pipe(Schema.annotateEncoded({
    description: "How long connecting to an endpoint may take (a duration such as 2s); then the try fails with 504 UpstreamConnectTimeout.",
    default: "2s"
  }))),
  /** HTTP/2 to the endpoints: over TLS offered by ALPN (HTTP/1.1 if the endpoint declines), prior knowledge over http://. */
  http2: Schema.optionalKey(Schema.Boolean.annotate({
    description: "HTTP/2 to the endpoints: offered by ALPN over https:// (HTTP/1.1 if declined), prior knowledge over http://.",
    default: false
  }))
})

const StatusRange = Schema.String.pipe(
  Schema.check(Schema.makeFilter((s: string) => {
    const m = /^([1-5]\d\d)(?:-([1-5]\d\d))?$/.exec(s)
    if (m === null) return "Expected a status or a range such as 200 or 200-399"
    return m[2] === undefined || Number(m[2]) >= Number(m[1]) || "Expected the range's end to be at least its start"
  }, noJsonSchema))
)

/** Active health checking of every endpoint of an upstream (rise/fall thresholds as HAProxy's). */
export const HealthCheck = Schema.Struct({
  type: Schema.optionalKey(Schema.Literals(["http", "tcp", "grpc"]).annotate({
    description: "http: a GET on a fresh connection; tcp: a connect only; grpc: grpc.health.v1.Health/Check over HTTP/2, healthy on SERVING.",
    default: "http"
  })),
  /** `type: grpc`: the service grpc.health.v1.Health/Check asks about; the server as a whole when absent. */
  service: Schema.optionalKey(Schema.String.annotate({
    description: "type: grpc only: the service asked about; \"\" asks about the server as a whole.",
    default: ""
  })),
  path: Schema.optionalKey(AbsolutePath.annotate({ description: "type: http only: the path requested.", default: "/" })),
  expect_status: Schema.optionalKey(StatusRange.annotate({
    description: "type: http only: the status, or range such as 200-299, a healthy endpoint answers with.",
    default: "200-299"
  })),
  expect_body: Schema.optionalKey(Schema.String.annotate({
    description: "type: http only: a substring a healthy endpoint's body contains. Absent: the body is not read."
  })),
  host: Schema.optionalKey(Schema.String.annotate({ description: "The probe's Host (grpc: :authority). Absent: the endpoint's host:port." })),
  interval: Schema.optionalKey(DurationMs.pipe(Schema.annotateEncoded({
    description: "Time between two probes of an endpoint (a duration such as 10s), with ±20% jitter.",
    default: "10s"
  }))),
  timeout: Schema.optionalKey(DurationMs.pipe(Schema.annotateEncoded({ description: "A probe slower than this (a duration such as 2s) is a failure.", default: "2s" }))),
  healthy_threshold: Schema.optionalKey(PositiveInt.annotate({
    description: "Consecutive successful probes that bring an unhealthy endpoint back (HAProxy's rise).",
    default: 2
  })),
  unhealthy_threshold: Schema.optionalKey(PositiveInt.annotate({
    description: "Consecutive failed probes that take an endpoint out of rotation (HAProxy's fall).",
    default: 3
  }))
}).pipe(Schema.check(Schema.makeFilter((c: { readonly type?: string; readonly service?: string; readonly path?: string; readonly expect_status?: string; readonly expect_body?: string }) =>
  c.type === "grpc"
    ? (c.path === undefined && c.expect_status === undefined && c.expect_body === undefined) || "path, expect_status and expect_body are for type: http (a gRPC check calls grpc.health.v1.Health/Check)"
    : c.service === undefined || "service is for type: grpc"
, noJsonSchema)))
export type HealthCheck = typeof HealthCheck.Type

/** What a failed try was, for outlier detection and the circuit breaker. */
export const FAILURE_KINDS = ["connect-failure", "reset", "timeout", "5xx"] as const
export type FailureKind = typeof FAILURE_KINDS[number]
const FailureKinds = Schema.Array(Schema.Literals(FAILURE_KINDS))

/** Passive health: consecutive failed tries eject an endpoint for a while. */
export const Outlier = Schema.Struct({
  consecutive_failures: Schema.optionalKey(PositiveInt.annotate({ description: "Failed tries in a row that eject an endpoint.", default: 5 })),
  base_ejection: Schema.optionalKey(DurationMs.pipe(Schema.annotateEncoded({
    description: "How long a first ejection lasts (a duration such as 30s); the n-th lasts base_ejection * n, up to max_ejection. Passing active checks end it sooner.",
    default: "30s"
  }))),
  max_ejection: Schema.optionalKey(DurationMs.pipe(Schema.annotateEncoded({ description: "The longest an ejection lasts (a duration such as 5m).", default: "5m" }))),
  max_ejected_percent: Schema.optionalKey(NumberBetween(0, 100).annotate({
    description: "Never more than this percentage (0-100) of the upstream's endpoints are ejected at once.",
    default: 50
  })),
  failures: Schema.optionalKey(FailureKinds.annotate({ description: failureKindsText, default: [...FAILURE_KINDS] }))
})
export type Outlier = typeof Outlier.Type

/** A circuit breaker per endpoint (see src/resilience/Circuit.ts). */
export const CircuitBreaker = Schema.Struct({
  consecutive_failures: Schema.optionalKey(PositiveInt.annotate({ description: "Failed tries in a row that open an endpoint's circuit.", default: 5 })),
  open_for: Schema.optionalKey(DurationMs.pipe(Schema.annotateEncoded({
    description: "How long an open circuit refuses tries before it half-opens (a duration such as 30s); it doubles with each consecutive opening.",
    default: "30s"
  }))),
  max_open_for: Schema.optionalKey(DurationMs.pipe(Schema.annotateEncoded({ description: "The longest open_for grows to (a duration such as 5m).", default: "5m" }))),
  half_open_probes: Schema.optionalKey(PositiveInt.annotate({
    description: "Tries admitted at once while half-open; a success closes the circuit, a failure reopens it.",
    default: 1
  })),
  failures: Schema.optionalKey(FailureKinds.annotate({ description: failureKindsText, default: [...FAILURE_KINDS] }))
})
export type CircuitBreaker = typeof CircuitBreaker.Type

export const Upstream = Schema.Struct({
  balance: Schema.optionalKey(Schema.Literals(["round_robin", "weighted", "random", "least_request", "ewma", "consistent_hash"]).annotate({
    description: "How an endpoint is picked: round_robin, weighted (smooth weighted round robin), random (weighted), least_request, ewma (latency) or consistent_hash (on hash_on).",
    default: "round_robin"
  })),
  hash_on: Schema.optionalKey(HashOnText.annotate({
    description: "balance: consistent_hash only: what a request is hashed on: ip (the client's), path, header:<name> or cookie:<name>.",
    default: "ip"
  })),
  endpoints: Schema.Array(Endpoint).pipe(Schema.check(Schema.isMinLength(1))).annotate({ description: "The upstream's endpoints, at least one." }),
  pool: Schema.optionalKey(Pool.annotate({ description: "The connection pool to each endpoint." })),
  /** How `https://` endpoints are reached (CA, server name, client certificate, verification). */
  tls: Schema.optionalKey(UpstreamTls.annotate({
    description: "How https:// endpoints are reached: CA, server name, client certificate and verification; only with https:// endpoints."
  })),
  health_check: Schema.optionalKey(HealthCheck.annotate({ description: "Active health checks of every endpoint. Absent: none, endpoints stay healthy." })),
  outlier: Schema.optionalKey(Outlier.annotate({
    description: "Passive health (Envoy's outlier detection): an endpoint whose tries fail in a row is ejected for a while. Absent: off."
  })),
  circuit_breaker: Schema.optionalKey(CircuitBreaker.annotate({ description: "A circuit breaker per endpoint. Absent: off." })),
  /**
   * Over a sliding `window`, retries may be at most `percent`% of requests plus `min_per_second`
   * per second of the window; retries after a connect failure are free (src/resilience/RetryBudget.ts).
   */
  retry_budget: Schema.optionalKey(Schema.Struct({
    percent: Schema.optionalKey(NumberBetween(0, 100).annotate({
      description: "Retries allowed, as a percentage (0-100) of the upstream's requests in the window.",
      default: 20
    })),
    min_per_second: Schema.optionalKey(Schema.Number.pipe(Schema.check(Schema.isFinite(), Schema.isGreaterThanOrEqualTo(0))).annotate({
      description: "Retries allowed on top of percent, per second of the window, even with no traffic.",
      default: 10
    })),
    window: Schema.optionalKey(DurationMs.pipe(
      Schema.check(Schema.isGreaterThanOrEqualTo(1_000, { message: "Expected a window of at least 1s" })),
      Schema.annotateEncoded({ description: "The sliding window retries are counted over (a duration of at least 1s, such as 10s).", default: "10s" })
    )),
    /** The old in-flight budget's floor: rejected, naming what replaced it. */
    min_concurrent: Schema.optionalKey(Schema.Never.annotate({
      message: "min_concurrent was replaced by min_per_second (retries allowed per second of the window, default 10)"
    }).annotate({ description: "Removed: refused, replaced by min_per_second." }))
  }).annotate({
    description: "Caps the upstream's retries at percent% of its requests plus min_per_second per second of a sliding window; always on, with these defaults. Retries after a connect failure are free."
  })),
  /** With no healthy endpoint: `fail_closed` answers 503, `fail_open` balances over all of them. */
  panic: Schema.optionalKey(Schema.Literals(["fail_closed", "fail_open"]).annotate({
    description: "With no healthy endpoint: fail_closed answers 503 NoHealthyUpstream, fail_open balances over all of them.",
    default: "fail_closed"
  }))
})
export type Upstream = typeof Upstream.Type

export const Admin = Schema.Struct({
  listen: ListenAddress.annotate({ description: "Where the admin API listens, host:port, on a listener of its own; keep it on loopback." }),
  /** When set, every admin request must carry `Authorization: Bearer <token>`. A secret: `/config` redacts it. */
  token: Schema.optionalKey(Schema.String.pipe(Schema.check(Schema.isMinLength(1))).annotate({
    description: "When set, every admin request but GET /health and /ready needs Authorization: Bearer <token>. A secret: /config redacts it."
  }))
})

export const Log = Schema.Struct({
  level: Schema.optionalKey(Schema.Literals(["trace", "debug", "info", "warn", "error", "fatal", "none"]).annotate({
    description: "The gateway's own messages at this level and above are logged; none turns them off.",
    default: "info"
  })),
  format: Schema.optionalKey(Schema.Literals(["json", "text"]).annotate({
    description: "json, or text: logfmt for the gateway's messages and the combined log format for the access log.",
    default: "json"
  })),
  access_log: Schema.optionalKey(Schema.Boolean.annotate({ description: "One line per request on stdout, in log.format.", default: false }))
})

export const Shutdown = Schema.Struct({
  drain_timeout: Schema.optionalKey(DurationMs.pipe(Schema.annotateEncoded({
    description: "At shutdown, how long responses in flight may take to finish (a duration such as 30s); what is still running then is cut.",
    default: "30s"
  })))
})

type Issue = { readonly path: ReadonlyArray<PropertyKey>; readonly issue: string }

/** Rules that span several keys: references, uniqueness and combinations. */
const crossChecks = (c: ConfigShape): Array<Issue> => {
  const issues: Array<Issue> = []
  const upstreamNames = Object.keys(c.upstreams)
  const routeIds = new Map<string, string>()
  const listens = new Map<string, string>()
  const names = new Set<string>()
  const claimListen = (listen: string, where: ReadonlyArray<PropertyKey>) => {
    const parsed = parseListen(listen)
    if (parsed === undefined || parsed.port === 0) return
    const key = `${parsed.host}:${parsed.port}`
    const first = listens.get(key)
    if (first !== undefined) issues.push({ path: where, issue: `Duplicate listen address ${listen} (already used by ${first})` })
    else listens.set(key, formatPath(where))
  }
  if (c.admin !== undefined) claimListen(c.admin.listen, ["admin", "listen"])
  const named = c.middlewares ?? {}
  const needsRedis = (m: InlineMiddleware, where: ReadonlyArray<PropertyKey>) => {
    if (m.rate_limit?.store === "redis" && (c.redis ?? null) === null) {
      issues.push({ path: [...where, "rate_limit", "store"], issue: "store: redis needs the top-level redis section (redis: { url: redis://127.0.0.1:6379 })" })
    }
  }
  for (const [name, m] of Object.entries(named)) needsRedis(m, ["middlewares", name])
  const checkNames = (list: ReadonlyArray<MiddlewareItem> | undefined, where: ReadonlyArray<PropertyKey>) =>
    list?.forEach((item, k) => {
      if (typeof item !== "string") needsRedis(item, [...where, k])
      if (typeof item === "string" && !Object.hasOwn(named, item)) {
        issues.push({
          path: [...where, k],
          issue: `Unknown middleware ${JSON.stringify(item)} (defined in middlewares: ${Object.keys(named).join(", ") || "none"})`
        })
      }
    })
  c.servers.forEach((server, i) => {
    checkNames(server.middlewares, ["servers", i, "middlewares"])
    server.routes.forEach((route, j) => checkNames(route.middlewares, ["servers", i, "routes", j, "middlewares"]))
    if (names.has(server.name)) issues.push({ path: ["servers", i, "name"], issue: `Duplicate server name ${server.name}` })
    names.add(server.name)
    claimListen(server.listen, ["servers", i, "listen"])
    if (server.protocol === "https" && server.tls === undefined) {
      issues.push({ path: ["servers", i, "tls"], issue: "protocol: https needs tls: { certificates: [ { cert: <file>, key: <file> } ] }" })
    }
    if (server.protocol !== "https" && server.tls !== undefined) {
      issues.push({ path: ["servers", i, "tls"], issue: `tls applies only to protocol: https (this server is ${server.protocol ?? "http"})` })
    }
    server.routes.forEach((route, j) => {
      const first = routeIds.get(route.id)
      if (first !== undefined) {
        issues.push({ path: ["servers", i, "routes", j, "id"], issue: `Duplicate route id ${route.id} (first declared at ${first})` })
      } else routeIds.set(route.id, `servers[${i}].routes[${j}]`)
      if (!Object.hasOwn(c.upstreams, route.upstream)) {
        issues.push({
          path: ["servers", i, "routes", j, "upstream"],
          issue: `Unknown upstream ${JSON.stringify(route.upstream)} (defined: ${upstreamNames.join(", ") || "none"})`
        })
      }
    })
  })
  for (const [name, upstream] of Object.entries(c.upstreams)) {
    if (upstream.hash_on !== undefined && upstream.balance !== "consistent_hash") {
      issues.push({ path: ["upstreams", name, "hash_on"], issue: "hash_on applies only to balance: consistent_hash" })
    }
    if (upstream.tls !== undefined && !upstream.endpoints.some((e) => e.url.startsWith("https:"))) {
      issues.push({ path: ["upstreams", name, "tls"], issue: "tls applies only to https:// endpoints (this upstream has none)" })
    }
    const seen = new Set<string>()
    upstream.endpoints.forEach((e, k) => {
      const origin = URL.canParse(e.url) ? new URL(e.url).origin : e.url
      if (seen.has(origin)) issues.push({ path: ["upstreams", name, "endpoints", k, "url"], issue: `Duplicate endpoint ${origin}` })
      seen.add(origin)
    })
  }
  return issues
}

export const Tracing = Schema.Struct({
  /** OTLP/HTTP traces endpoint, e.g. `http://127.0.0.1:4318/v1/traces`; null or absent turns export off. */
  otlp_endpoint: Schema.optionalKey(Schema.NullOr(Schema.String.pipe(Schema.check(Schema.makeFilter((s: string) =>
    URL.canParse(s) && /^https?:$/.test(new URL(s).protocol) ? undefined : "Expected an http:// or https:// URL"
  , noJsonSchema)))).annotate({
    description: "Where spans are exported over OTLP/HTTP: a base URL (spans go to its /v1/traces) or, with a path, the traces URL itself; null turns export off.",
    default: null
  })),
  /** Share of requests without a sampled `traceparent` that start a trace; a client's decision is followed. */
  sample_ratio: Schema.optionalKey(NumberBetween(0, 1).annotate({
    description: "Share (0-1) of requests without a sampled traceparent that start a trace; a client's sampled traceparent is always followed.",
    default: 1
  })),
  service_name: Schema.optionalKey(Schema.String.pipe(Schema.check(Schema.isMinLength(1))).annotate({
    description: "The service.name of the exported spans.",
    default: "fibergate"
  })),
  /** How often buffered spans are sent (OpenTelemetry's batch schedule delay); default 5s. */
  export_interval: Schema.optionalKey(DurationMs.pipe(Schema.annotateEncoded({
    description: "How often buffered spans are sent (a duration such as 5s).",
    default: "5s"
  })))
})

export const Telemetry = Schema.Struct({
  metrics: Schema.optionalKey(Schema.Struct({
    enabled: Schema.optionalKey(Schema.Boolean.annotate({ description: "false turns every metric off.", default: true }))
  }).annotate({ description: "Prometheus metrics, served at the admin API's GET /metrics." })),
  tracing: Schema.optionalKey(Tracing.annotate({ description: "OpenTelemetry traces exported over OTLP/HTTP; off without an otlp_endpoint." }))
})

const ConfigFields = {
  admin: Schema.optionalKey(Admin.annotate({
    description: "The admin API (health, readiness, config, reload, metrics) on a listener of its own. Absent: no admin API."
  })),
  log: Schema.optionalKey(Log.annotate({ description: "The gateway's own log and the access log." })),
  workers: Schema.optionalKey(Schema.Union([PositiveInt, Schema.Literal("auto")]).annotate({
    description: "Processes serving traffic: a number, or auto for one per core.",
    default: 1
  })),
  shutdown: Schema.optionalKey(Shutdown.annotate({ description: "Graceful shutdown on SIGTERM or SIGINT." })),
  telemetry: Schema.optionalKey(Telemetry.annotate({ description: "Metrics and tracing." })),
  middlewares: Schema.optionalKey(NamedMiddlewares.annotate({
    description: "Named middlewares, used by name from servers' and routes' middlewares lists; one used by several routes shares its counters and slots."
  })),
  /** Shared state for rate limits with `store: redis`; null or absent: none. */
  redis: Schema.optionalKey(Schema.NullOr(RedisSettings).annotate({
    description: "The Redis server rate limits with store: redis keep their counters in, shared between workers and instances; null: none.",
    default: null
  })),
  servers: Schema.Array(Server).pipe(Schema.check(Schema.isMinLength(1))).annotate({ description: "The listeners, at least one." }),
  upstreams: Schema.Record(Schema.String, Upstream).annotate({ description: "The upstreams routes send requests to, by name." })
}
type ConfigShape = Schema.Struct<typeof ConfigFields>["Type"]

/**
 * The whole gateway configuration. Decode with `onExcessProperty: "error"` (as `ConfigLoader` does)
 * so that a misspelt key is an error rather than silently ignored.
 *
 * @example
 * const config = Schema.decodeUnknownSync(Config)({
 *   servers: [{ name: "web", listen: ":8080", routes: [{ id: "all", upstream: "app" }] }],
 *   upstreams: { app: { endpoints: [{ url: "http://127.0.0.1:3000" }] } }
 * }, { onExcessProperty: "error" })
 */
export const Config = Schema.Struct(ConfigFields).pipe(Schema.check(Schema.makeFilter(crossChecks, noJsonSchema)))
export type Config = typeof Config.Type
export type ConfigEncoded = typeof Config.Encoded
