// The fibergate config under test: a realistic route table with every core feature on
// (bench/README.md, "The fibergate config"). Written to the temp dir, checked with `fibergate
// check` and copied to bench/results/fibergate-bench.yaml by peers/fibergate.js.
import { HOST, settings } from "../lib/settings.js"

/**
 * The fibergate config under test: a realistic route table with every core feature on (see
 * bench/README.md). 52 routes that do not match the benchmark requests (`GET /`, `GET /big`) are
 * declared before the catch-all, six of them on `/` with method/header/query conditions that
 * wrk's requests fail, so they are tried (and rejected) on every request. The catch-all balances
 * round robin over the upstream's two ports. Returns the YAML and a summary of what is on.
 */
export function fibergateConfig(port, adminPort, upstreamPorts, telemetry = "telemetry: { metrics: { enabled: true } }", catchAllMiddlewares = []) {
  const [a, b] = upstreamPorts.map((p) => `http://${HOST}:${p}`)
  const j = (v) => JSON.stringify(v) // JSON is valid YAML flow syntax: one route per line
  const routes = []
  const add = (kind, route) => routes.push({ kind, route })

  // exact paths
  const exact = [
    ["login", "/login", { methods: ["POST"], upstream: "auth", timeout: "5s" }],
    ["logout", "/logout", { upstream: "auth" }],
    ["healthz", "/healthz", { upstream: "api", timeout: "1s" }],
    ["readyz", "/readyz", { upstream: "api", timeout: "1s" }],
    ["robots", "/robots.txt", { upstream: "web", headers: { response: { set: { "cache-control": "max-age=86400" } } } }],
    ["favicon", "/favicon.ico", { upstream: "static" }],
    ["sitemap", "/sitemap.xml", { upstream: "web" }],
    ["me", "/api/v1/users/me", { upstream: "api", rewrite: { strip_prefix: "/api/v1" } }],
    ["session", "/api/v1/session", { methods: ["GET", "DELETE"], upstream: "auth", rewrite: { strip_prefix: "/api/v1" } }],
    ["oidc", "/.well-known/openid-configuration", { upstream: "auth" }],
    ["token", "/oauth/token", { methods: ["POST"], upstream: "auth", timeout: "3s" }],
    ["authorize", "/oauth/authorize", { upstream: "auth" }],
  ]
  for (const [id, path, { methods, ...rest }] of exact) add("exact", { id: `exact-${id}`, match: { path: { exact: path }, ...(methods ? { methods } : {}) }, ...rest })

  // path prefixes
  const prefixes = [
    ["/api/v1/users", "api"],
    ["/api/v1/orders", "api"],
    ["/api/v1/products", "api"],
    ["/api/v1/carts", "api"],
    ["/api/v1/payments", "api"],
    ["/api/v2", "api"],
    ["/static", "static"],
    ["/assets", "static"],
    ["/images", "static"],
    ["/docs", "web"],
    ["/admin", "web"],
    ["/internal", "api"],
    ["/graphql", "api"],
    ["/ws", "web"],
  ]
  for (const [path, upstream] of prefixes) {
    const name = path.slice(1).replaceAll("/", "-")
    const route = { id: `prefix-${name}`, match: { path: { prefix: path } }, upstream }
    if (path.startsWith("/api/v1/")) Object.assign(route, { rewrite: { strip_prefix: "/api/v1", add_prefix: "/v1" }, timeout: "10s" })
    if (path === "/api/v2") Object.assign(route, { rewrite: { strip_prefix: "/api/v2" }, headers: { request: { set: { "x-api-version": "2" } } } })
    if (upstream === "static") Object.assign(route, { headers: { response: { set: { "cache-control": "public, max-age=3600" }, remove: ["set-cookie"] } } })
    if (path === "/admin") Object.assign(route, { match: { ...route.match, headers: { authorization: { present: true } } } })
    if (path === "/internal") Object.assign(route, { headers: { request: { remove: ["cookie"], add: { "x-internal": "1" } } } })
    add("prefix", route)
  }

  // hosts (exact and wildcard)
  const hosts = [
    ["api.example.com", "api"],
    ["www.example.com", "web"],
    ["admin.example.com", "web"],
    ["static.example.com", "static"],
    ["auth.example.com", "auth"],
    ["grpc.example.com", "api"],
    ["status.example.com", "web"],
    ["cdn.example.org", "static"],
    ["*.tenants.example.com", "tenants"],
    ["*.preview.example.net", "web"],
  ]
  for (const [host, upstream] of hosts) {
    const route = { id: `host-${host.replace("*.", "any.")}`, match: { host, path: { prefix: "/" } }, upstream }
    if (host.startsWith("*.")) Object.assign(route, { headers: { request: { set: { "x-forwarded-tenant": "yes" } } } })
    add("host", route)
  }

  // regular expressions
  const regexes = [
    ["items", "^/v[0-9]+/items/[0-9]+$", { upstream: "api" }],
    ["avatar", "^/users/[0-9]+/avatar\\.(png|jpg)$", { upstream: "static" }],
    ["reports", "^/reports/[0-9]{4}-[0-9]{2}-[0-9]{2}\\.csv$", { upstream: "api", timeout: "60s" }],
    ["checkout", "^/shop/([^/]+)/checkout$", { upstream: "web" }],
    ["legacy", "^/legacy/(.*)$", { upstream: "legacy", rewrite: { regex: "^/legacy/(.*)$", replace: "/$1" } }],
    ["php", "\\.php$", { upstream: "legacy" }],
    ["download", "^/download/[a-f0-9]{32}$", { upstream: "static" }],
    ["blog", "^/blog/[0-9]{4}/[0-9]{2}/[a-z0-9-]+$", { upstream: "web" }],
    ["profile", "^/u/[A-Za-z0-9_]{3,16}$", { upstream: "web" }],
    ["feeds", "^/feeds/.*\\.(rss|atom)$", { upstream: "web" }],
  ]
  for (const [id, regex, rest] of regexes) add("regex", { id: `regex-${id}`, match: { path: { regex } }, ...rest })

  // could match the benchmark path, but their conditions fail for wrk's plain GET /
  const marker = (name) => ({ response: { set: { "x-route": name } } })
  add("conditional", { id: "debug", match: { path: { exact: "/" }, headers: { "x-debug": { present: true } } }, upstream: "backend", headers: marker("debug") })
  add("conditional", { id: "canary", match: { path: { prefix: "/" }, headers: { "x-canary": "true" } }, upstream: "backend", headers: marker("canary") })
  add("conditional", { id: "writes", match: { path: { prefix: "/" }, methods: ["POST", "PUT", "PATCH", "DELETE"] }, upstream: "backend", headers: marker("writes"), timeout: "60s" })
  add("conditional", { id: "beta", match: { path: { prefix: "/" }, headers: { cookie: { regex: "(^|; )beta=1(;|$)" } } }, upstream: "backend", headers: marker("beta") })
  add("conditional", { id: "api-v2-query", match: { path: { prefix: "/" }, query: { api: "2" } }, upstream: "backend", headers: marker("api-v2-query") })
  add("conditional", { id: "mobile", match: { path: { prefix: "/" }, headers: { "user-agent": { regex: "Mobile|Android" } } }, upstream: "backend", headers: marker("mobile") })

  // the catch-all that serves the benchmark
  add("catch-all", {
    id: "default",
    match: { path: { prefix: "/" } },
    upstream: "backend",
    rewrite: { regex: "^(/.*)$", replace: "$1" }, // identity, but runs the rewrite step on every request
    headers: {
      request: { set: { "x-gateway": "fibergate" }, remove: ["x-debug"] },
      response: { set: { "x-route": "default" }, remove: ["x-powered-by"] },
    },
    timeout: "30s",
    ...(catchAllMiddlewares.length > 0 ? { middlewares: catchAllMiddlewares } : {}),
  })

  const pool = { connections: 128, keep_alive: "60s", connect_timeout: "2s" }
  const upstreams = {
    backend: { balance: "round_robin", endpoints: [{ url: a }, { url: b }], pool },
    api: { balance: "least_request", endpoints: [{ url: a }, { url: b }], pool: { connections: 64 } },
    web: { balance: "weighted", endpoints: [{ url: a, weight: 3 }, { url: b, weight: 1 }] },
    auth: { balance: "ewma", endpoints: [{ url: a }, { url: b }] },
    tenants: { balance: "consistent_hash", hash_on: "header:x-tenant", endpoints: [{ url: a }, { url: b }] },
    static: { balance: "consistent_hash", hash_on: "path", endpoints: [{ url: a }, { url: b }] },
    legacy: { balance: "random", endpoints: [{ url: a }] },
  }
  const maxConnections = Math.max(10_000, settings.idle ? settings.idleConnections + 1000 : 0)

  const yaml = `# generated by bench/run.js (bench/peers/fibergate-config.js): a realistic route table with every core feature on (bench/README.md)
admin: { listen: ${HOST}:${adminPort} }
log: { level: warn, format: json, access_log: false }
${telemetry}
shutdown: { drain_timeout: 5s }
workers: 1
servers:
  - name: bench
    listen: ${HOST}:${port}
    protocol: http
    limits: { max_connections: ${maxConnections}, max_header_bytes: 16384, max_body_bytes: 10485760, idle_timeout: 75s }
    routes:
${routes.map(({ route }) => `      - ${j(route)}`).join("\n")}
upstreams:
${Object.entries(upstreams)
  .map(([name, u]) => `  ${name}: ${j(u)}`)
  .join("\n")}
`
  const count = (kind) => routes.filter((r) => r.kind === kind).length
  const features = [
    `${routes.length} routes on one listener, in this order: ${count("exact")} exact, ${count("prefix")} prefix, ${count("host")} host (2 of them \`*.\` wildcards), ` +
      `${count("regex")} regex (none of them matches the benchmark paths), ${count("conditional")} routes on \`/\` whose method/header/query conditions fail for wrk's ` +
      `\`GET /\` (header value, header present, header regex, cookie regex, methods, query), then the catch-all \`prefix: /\``,
    "catch-all: `balance: round_robin` over 2 endpoints (the upstream's two ports), request and response header rules, an identity regex rewrite, `timeout: 30s`",
    `the other routes use rewrites (strip/add prefix, regex), header rules and timeouts; ${Object.keys(upstreams).length} upstreams use every balancer (round_robin, least_request, weighted, ewma, consistent_hash on a header and on the path, random)`,
    `listener limits (max_connections ${maxConnections}, max_header_bytes, max_body_bytes, idle_timeout 75s), pool settings, admin API, shutdown drain_timeout; log level warn, access_log false`,
    "metrics on (`telemetry.metrics.enabled: true`): requests, durations and upstream attempts are counted for every request",
  ]
  return { yaml, features, routeCount: routes.length }
}
