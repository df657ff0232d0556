/**
 * The configuration contract (DESIGN.md §3) as Effect Schemas. Decoding is the only place
 * that validates the shape of the input: once a `Config` exists, the rest of the gateway trusts it.
 */
import { CidrText } from "./Cidr.ts"
import * as Schema from "effect/Schema"
import { formatPath } from "./ConfigError.ts"
import { DurationMs } from "./Duration.ts"
import { HeaderName, Method } from "./HttpText.ts"
import { MiddlewareList, NamedMiddlewares, RedisSettings, type InlineMiddleware, type MiddlewareItem } from "./MiddlewareSchema.ts"
import { ListenerTls, UpstreamTls } from "./TlsSchema.ts"

const validRegex = (source: string): true | string => {
  try {
    new RegExp(source)
    return true
  } catch (e) {
    return (e as Error).message
  }
}

/** A string that must compile as a JavaScript regular expression. */
export const RegexSource = Schema.String.pipe(Schema.check(Schema.makeFilter(validRegex)))

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
  ))
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
  Schema.Struct({ present: Schema.optionalKey(Schema.Boolean), regex: Schema.optionalKey(RegexSource) }).pipe(
    Schema.check(Schema.makeFilter(exactlyOne(["present", "regex"])))
  )
])
export type ValueMatch = typeof ValueMatch.Type

const AbsolutePath = Schema.String.pipe(Schema.check(Schema.isStartingWith("/")))

/** Exactly one of `exact`, `prefix` (matched on a segment boundary) or `regex`. */
export const PathMatch = Schema.Struct({
  exact: Schema.optionalKey(AbsolutePath),
  prefix: Schema.optionalKey(AbsolutePath),
  regex: Schema.optionalKey(RegexSource)
}).pipe(Schema.check(Schema.makeFilter(exactlyOne(["exact", "prefix", "regex"]))))
export type PathMatch = typeof PathMatch.Type

const HostPattern = Schema.String.pipe(
  Schema.check(Schema.isPattern(/^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$/, {
    message: "Expected a host name such as api.example.com or *.example.com"
  }))
)

export const RouteMatch = Schema.Struct({
  host: Schema.optionalKey(HostPattern),
  path: Schema.optionalKey(PathMatch),
  methods: Schema.optionalKey(Schema.Array(Method)),
  headers: Schema.optionalKey(Schema.Record(Schema.String, ValueMatch)),
  query: Schema.optionalKey(Schema.Record(Schema.String, ValueMatch))
})

/** Either `strip_prefix` and/or `add_prefix`, or `regex` with `replace` (`$1` refers to a group). */
export const Rewrite = Schema.Struct({
  strip_prefix: Schema.optionalKey(AbsolutePath),
  add_prefix: Schema.optionalKey(AbsolutePath),
  regex: Schema.optionalKey(RegexSource),
  replace: Schema.optionalKey(Schema.String)
}).pipe(Schema.check(Schema.makeFilter((r) => {
  const prefixes = r.strip_prefix !== undefined || r.add_prefix !== undefined
  const regex = r.regex !== undefined || r.replace !== undefined
  if (prefixes && regex) return "Expected either strip_prefix/add_prefix or regex/replace, not both"
  if (regex && (r.regex === undefined || r.replace === undefined)) return "Expected both regex and replace"
  if (!prefixes && !regex) return "Expected strip_prefix, add_prefix or regex/replace"
  return true
})))
export type Rewrite = typeof Rewrite.Type

const HeaderValue = Schema.String.pipe(
  Schema.check(Schema.isPattern(/^[\t\x20-\x7e\x80-\xff]*$/, { message: "Expected a header value without control characters" }))
)

export const HeaderOps = Schema.Struct({
  set: Schema.optionalKey(Schema.Record(HeaderName, HeaderValue)),
  add: Schema.optionalKey(Schema.Record(HeaderName, HeaderValue)),
  remove: Schema.optionalKey(Schema.Array(HeaderName))
})
export type HeaderOps = typeof HeaderOps.Type

const RetryOn = Schema.Union([
  Schema.Literals(["connect-failure", "reset", "timeout"]),
  Schema.Number.pipe(Schema.check(Schema.isInt(), Schema.isBetween({ minimum: 500, maximum: 599 })))
]).annotate({ message: "Expected connect-failure, reset, timeout or a 5xx status" })

/** Retries of a route (only before any response byte went out; bodies only when buffered). */
export const Retry = Schema.Struct({
  attempts: Schema.optionalKey(Schema.Number.pipe(Schema.check(Schema.isInt(), Schema.isBetween({ minimum: 1, maximum: 10 })))),
  per_try_timeout: Schema.optionalKey(DurationMs),
  buffer_bytes: Schema.optionalKey(Schema.Number.pipe(Schema.check(Schema.isInt(), Schema.isGreaterThanOrEqualTo(0)))),
  backoff: Schema.optionalKey(Schema.Struct({
    base: Schema.optionalKey(DurationMs),
    max: Schema.optionalKey(DurationMs),
    jitter: Schema.optionalKey(Schema.Boolean)
  })),
  on: Schema.optionalKey(Schema.Array(RetryOn)),
  methods: Schema.optionalKey(Schema.Array(Method))
})
export type Retry = typeof Retry.Type

export const Route = Schema.Struct({
  id: Schema.String.pipe(Schema.check(Schema.isNonEmpty())),
  /** Higher is tried first within the route's host class (default 0); see routing/Router.ts. */
  priority: Schema.optionalKey(Schema.Int),
  match: Schema.optionalKey(RouteMatch),
  upstream: Schema.String,
  rewrite: Schema.optionalKey(Rewrite),
  headers: Schema.optionalKey(Schema.Struct({
    request: Schema.optionalKey(HeaderOps),
    response: Schema.optionalKey(HeaderOps)
  })),
  timeout: Schema.optionalKey(DurationMs),
  retry: Schema.optionalKey(Retry),
  /** WebSocket upgrades on this route (every route proxies them). */
  websocket: Schema.optionalKey(Schema.Struct({
    /** A tunnel with no byte either way for this long is closed (default 10m; 0: never). */
    idle_timeout: Schema.optionalKey(DurationMs)
  })),
  /** Run in order after the server's own; see MiddlewareSchema.ts. */
  middlewares: Schema.optionalKey(MiddlewareList)
})
export type Route = typeof Route.Type

const PositiveInt = Schema.Number.pipe(Schema.check(Schema.isInt(), Schema.isGreaterThanOrEqualTo(1)))

export const Limits = Schema.Struct({
  max_connections: Schema.optionalKey(PositiveInt),
  max_header_bytes: Schema.optionalKey(PositiveInt),
  max_body_bytes: Schema.optionalKey(PositiveInt),
  idle_timeout: Schema.optionalKey(DurationMs),
  /** From a request's first byte to the end of its head (0: off). */
  header_timeout: Schema.optionalKey(DurationMs),
  /** From a request's first byte to the end of its body (0: off). */
  request_timeout: Schema.optionalKey(DurationMs),
  /** HTTP/2: streams a client may have open at once on one connection (SETTINGS_MAX_CONCURRENT_STREAMS). */
  h2_max_concurrent_streams: Schema.optionalKey(PositiveInt),
  /** HTTP/2: the largest header list (names, values, 32 bytes per field) a request may send. */
  h2_max_header_list_bytes: Schema.optionalKey(PositiveInt)
})
export type Limits = typeof Limits.Type

export const Server = Schema.Struct({
  name: Schema.String.pipe(Schema.check(Schema.isNonEmpty())),
  listen: ListenAddress,
  /** `h2c`: HTTP/2 with prior knowledge, and HTTP/1.1 on the same port (told apart by the preface). */
  protocol: Schema.optionalKey(Schema.Literals(["http", "https", "h2c"]).annotate({
    message: "Expected \"http\", \"https\" or \"h2c\" (tcp listeners are not supported yet)"
  })),
  /** Required by `protocol: https`, refused otherwise. */
  tls: Schema.optionalKey(ListenerTls),
  limits: Schema.optionalKey(Limits),
  /**
   * Peers whose X-Forwarded-For is believed: the client's address is the rightmost entry not
   * in these ranges (see proxy/ClientAddress.ts). Without it, the client is the peer.
   */
  trusted_proxies: Schema.optionalKey(Schema.Array(CidrText)),
  /** Run before every route's own middlewares. */
  middlewares: Schema.optionalKey(MiddlewareList),
  routes: Schema.Array(Route)
})
export type Server = typeof Server.Type

export const HashOnText = Schema.String.pipe(
  Schema.check(Schema.isPattern(/^(ip|path|header:[!#$%&'*+.^_`|~0-9A-Za-z-]+|cookie:[^\s;=]+)$/, {
    message: "Expected ip, path, header:<name> or cookie:<name>"
  }))
)

export const Endpoint = Schema.Struct({
  url: Schema.String.pipe(Schema.check(Schema.makeFilter(endpointUrl))),
  weight: Schema.optionalKey(PositiveInt)
})

export const Pool = Schema.Struct({
  connections: Schema.optionalKey(PositiveInt),
  keep_alive: Schema.optionalKey(DurationMs),
  connect_timeout: Schema.optionalKey(DurationMs),
  /** HTTP/2 to the endpoints: over TLS offered by ALPN (HTTP/1.1 if the endpoint declines), prior knowledge over http://. */
  http2: Schema.optionalKey(Schema.Boolean)
})

const StatusRange = Schema.String.pipe(
  Schema.check(Schema.makeFilter((s: string) => {
    const m = /^([1-5]\d\d)(?:-([1-5]\d\d))?$/.exec(s)
    if (m === null) return "Expected a status or a range such as 200 or 200-399"
    return m[2] === undefined || Number(m[2]) >= Number(m[1]) || "Expected the range's end to be at least its start"
  }))
)

/** Active health checking of every endpoint of an upstream (rise/fall thresholds as HAProxy's). */
export const HealthCheck = Schema.Struct({
  type: Schema.optionalKey(Schema.Literals(["http", "tcp", "grpc"])),
  /** `type: grpc`: the service grpc.health.v1.Health/Check asks about; the server as a whole when absent. */
  service: Schema.optionalKey(Schema.String),
  path: Schema.optionalKey(AbsolutePath),
  expect_status: Schema.optionalKey(StatusRange),
  expect_body: Schema.optionalKey(Schema.String),
  host: Schema.optionalKey(Schema.String),
  interval: Schema.optionalKey(DurationMs),
  timeout: Schema.optionalKey(DurationMs),
  healthy_threshold: Schema.optionalKey(PositiveInt),
  unhealthy_threshold: Schema.optionalKey(PositiveInt)
}).pipe(Schema.check(Schema.makeFilter((c: { readonly type?: string; readonly service?: string; readonly path?: string; readonly expect_status?: string; readonly expect_body?: string }) =>
  c.type === "grpc"
    ? (c.path === undefined && c.expect_status === undefined && c.expect_body === undefined) || "path, expect_status and expect_body are for type: http (a gRPC check calls grpc.health.v1.Health/Check)"
    : c.service === undefined || "service is for type: grpc"
)))
export type HealthCheck = typeof HealthCheck.Type

/** What a failed try was, for outlier detection and the circuit breaker. */
export const FAILURE_KINDS = ["connect-failure", "reset", "timeout", "5xx"] as const
export type FailureKind = typeof FAILURE_KINDS[number]
const FailureKinds = Schema.Array(Schema.Literals(FAILURE_KINDS))

/** Passive health: consecutive failed tries eject an endpoint for a while. */
export const Outlier = Schema.Struct({
  consecutive_failures: Schema.optionalKey(PositiveInt),
  base_ejection: Schema.optionalKey(DurationMs),
  max_ejection: Schema.optionalKey(DurationMs),
  max_ejected_percent: Schema.optionalKey(Schema.Number.pipe(Schema.check(Schema.isBetween({ minimum: 0, maximum: 100 })))),
  failures: Schema.optionalKey(FailureKinds)
})
export type Outlier = typeof Outlier.Type

/** A circuit breaker per endpoint (see src/resilience/Circuit.ts). */
export const CircuitBreaker = Schema.Struct({
  consecutive_failures: Schema.optionalKey(PositiveInt),
  open_for: Schema.optionalKey(DurationMs),
  max_open_for: Schema.optionalKey(DurationMs),
  half_open_probes: Schema.optionalKey(PositiveInt),
  failures: Schema.optionalKey(FailureKinds)
})
export type CircuitBreaker = typeof CircuitBreaker.Type

export const Upstream = Schema.Struct({
  balance: Schema.optionalKey(Schema.Literals(["round_robin", "weighted", "random", "least_request", "ewma", "consistent_hash"])),
  hash_on: Schema.optionalKey(HashOnText),
  endpoints: Schema.Array(Endpoint).pipe(Schema.check(Schema.isMinLength(1))),
  pool: Schema.optionalKey(Pool),
  /** How `https://` endpoints are reached (CA, server name, client certificate, verification). */
  tls: Schema.optionalKey(UpstreamTls),
  health_check: Schema.optionalKey(HealthCheck),
  outlier: Schema.optionalKey(Outlier),
  circuit_breaker: Schema.optionalKey(CircuitBreaker),
  /**
   * Over a sliding `window`, retries may be at most `percent`% of requests plus `min_per_second`
   * per second of the window; retries after a connect failure are free (src/resilience/RetryBudget.ts).
   */
  retry_budget: Schema.optionalKey(Schema.Struct({
    percent: Schema.optionalKey(Schema.Number.pipe(Schema.check(Schema.isBetween({ minimum: 0, maximum: 100 })))),
    min_per_second: Schema.optionalKey(Schema.Number.pipe(Schema.check(Schema.isFinite(), Schema.isGreaterThanOrEqualTo(0)))),
    window: Schema.optionalKey(DurationMs.pipe(
      Schema.check(Schema.isGreaterThanOrEqualTo(1_000, { message: "Expected a window of at least 1s" }))
    )),
    /** The old in-flight budget's floor: rejected, naming what replaced it. */
    min_concurrent: Schema.optionalKey(Schema.Never.annotate({
      message: "min_concurrent was replaced by min_per_second (retries allowed per second of the window, default 10)"
    }))
  })),
  /** With no healthy endpoint: `fail_closed` answers 503, `fail_open` balances over all of them. */
  panic: Schema.optionalKey(Schema.Literals(["fail_closed", "fail_open"]))
})
export type Upstream = typeof Upstream.Type

export const Admin = Schema.Struct({
  listen: ListenAddress,
  /** When set, every admin request must carry `Authorization: Bearer <token>`. A secret: `/config` redacts it. */
  token: Schema.optionalKey(Schema.String.pipe(Schema.check(Schema.isMinLength(1))))
})

export const Log = Schema.Struct({
  level: Schema.optionalKey(Schema.Literals(["trace", "debug", "info", "warn", "error", "fatal", "none"])),
  format: Schema.optionalKey(Schema.Literals(["json", "text"])),
  access_log: Schema.optionalKey(Schema.Boolean)
})

export const Shutdown = Schema.Struct({ drain_timeout: Schema.optionalKey(DurationMs) })

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
  ))))),
  /** Share of requests without a sampled `traceparent` that start a trace; a client's decision is followed. */
  sample_ratio: Schema.optionalKey(Schema.Number.pipe(Schema.check(Schema.isBetween({ minimum: 0, maximum: 1 })))),
  service_name: Schema.optionalKey(Schema.String.pipe(Schema.check(Schema.isMinLength(1)))),
  /** How often buffered spans are sent (OpenTelemetry's batch schedule delay); default 5s. */
  export_interval: Schema.optionalKey(DurationMs)
})

export const Telemetry = Schema.Struct({
  metrics: Schema.optionalKey(Schema.Struct({ enabled: Schema.optionalKey(Schema.Boolean) })),
  tracing: Schema.optionalKey(Tracing)
})

const ConfigFields = {
  admin: Schema.optionalKey(Admin),
  log: Schema.optionalKey(Log),
  workers: Schema.optionalKey(Schema.Union([PositiveInt, Schema.Literal("auto")])),
  shutdown: Schema.optionalKey(Shutdown),
  telemetry: Schema.optionalKey(Telemetry),
  middlewares: Schema.optionalKey(NamedMiddlewares),
  /** Shared state for rate limits with `store: redis`; null or absent: none. */
  redis: Schema.optionalKey(Schema.NullOr(RedisSettings)),
  servers: Schema.Array(Server).pipe(Schema.check(Schema.isMinLength(1))),
  upstreams: Schema.Record(Schema.String, Upstream)
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
export const Config = Schema.Struct(ConfigFields).pipe(Schema.check(Schema.makeFilter(crossChecks)))
export type Config = typeof Config.Type
export type ConfigEncoded = typeof Config.Encoded
