/**
 * The config contract key by key: every key of Schema.ts decodes what it documents (durations to
 * milliseconds), each bound is tested at the limit and one past it, and every rejection is the
 * exact line an operator sees (`<test>: path: message`). Schema.ts has no default values: the
 * defaults live with the services that read the config and are tested there.
 */
import { assert, describe, it } from "@effect/vitest"
import { Result } from "effect"
import fc from "fast-check"
import { formatPath } from "../../src/config/ConfigError.ts"
import { decodeConfig } from "../../src/config/ConfigLoader.ts"
import { type Config, parseListen } from "../../src/config/Schema.ts"

type Path = ReadonlyArray<string | number>

/** The smallest valid config: one server with one route to upstream `app`. */
const base = (): Record<string, unknown> => ({
  servers: [{ name: "web", listen: "127.0.0.1:8080", routes: [{ id: "r", upstream: "app" }] }],
  upstreams: { app: { endpoints: [{ url: "http://127.0.0.1:3000" }] } }
})

const ROUTE: Path = ["servers", 0, "routes", 0]
const SERVER: Path = ["servers", 0]
const UPSTREAM: Path = ["upstreams", "app"]

/** `base()` with `value` written at `path` (missing sections are created). */
const withValue = (path: Path, value: unknown, config: Record<string, unknown> = base()): Record<string, unknown> => {
  let node = config as Record<string | number, unknown>
  for (const key of path.slice(0, -1)) {
    if (node[key] === undefined) node[key] = {}
    node = node[key] as Record<string | number, unknown>
  }
  node[path[path.length - 1]] = value
  return config
}

const valueAt = (config: unknown, path: Path): unknown =>
  path.reduce<unknown>((node, key) => (node as Record<string | number, unknown> | undefined)?.[key], config)

const decodeOk = (raw: unknown): Config => {
  const result = decodeConfig(raw, "<test>")
  if (Result.isFailure(result)) return assert.fail(`expected a valid config, got:\n${result.failure.message}`)
  return result.success
}

const errorOf = (raw: unknown): string => {
  const result = decodeConfig(raw, "<test>")
  if (Result.isSuccess(result)) return assert.fail(`expected a ConfigError, got ${JSON.stringify(result.success)}`)
  return result.failure.message
}

/** `value` at `path` decodes, to `decoded` (the value itself unless given). */
const accepts = (path: Path, value: unknown, decoded: unknown = value) =>
  assert.deepStrictEqual(valueAt(decodeOk(withValue(path, value)), path), decoded)

/** `value` at `path` is rejected with exactly one line: `<test>: <errorPath>: <message>`. */
const rejects = (path: Path, value: unknown, message: string, errorPath: Path = path) =>
  assert.strictEqual(errorOf(withValue(path, value)), `<test>: ${formatPath(errorPath)}: ${message}`)

const between = (min: number, max: number) => `Expected a value between ${min} and ${max}`
const atLeast = (min: number) => `Expected a value greater than or equal to ${min}`
const INTEGER = "Expected an integer"
const NON_EMPTY = "Expected a value with a length of at least 1"
const DURATION = "Expected a duration such as 250ms, 5s, 1m or 1h"
const BOOLEAN = "Expected boolean"
const ABSOLUTE = "Expected a string starting with \"/\""
const METHOD = "Expected an upper-case HTTP method such as GET"
const HEADER_NAME = "Expected an HTTP header name"

/** Checks a key that takes a whole number >= 1 (0, 1.5 and a string are rejected). */
const positiveInt = (path: Path) => {
  accepts(path, 1)
  accepts(path, 1_000_000)
  rejects(path, 0, atLeast(1))
  rejects(path, -1, atLeast(1))
  rejects(path, 1.5, INTEGER)
  rejects(path, "2", "Expected number")
}

/** Checks a duration key: strings decode to milliseconds, anything else is rejected. */
const duration = (path: Path) => {
  accepts(path, "250ms", 250)
  accepts(path, "1.5s", 1500)
  accepts(path, "1.25s", 1250)
  accepts(path, "2m", 120_000)
  accepts(path, "0ms", 0)
  rejects(path, "5x", DURATION)
  rejects(path, 5, "Expected string")
}

const boolean = (path: Path) => {
  accepts(path, true)
  accepts(path, false)
  rejects(path, "yes", BOOLEAN)
}

const literals = (path: Path, values: ReadonlyArray<string>, message: string) => {
  for (const value of values) accepts(path, value)
  rejects(path, "bogus", message)
  rejects(path, values[0].toUpperCase(), message)
}

describe("Schema: top level", () => {
  it("servers and upstreams are required", () => {
    assert.strictEqual(errorOf({ upstreams: {} }), "<test>: servers: Missing required key")
    assert.strictEqual(errorOf({ servers: base().servers }), "<test>: upstreams: Missing required key")
  })

  it("servers needs at least one server", () => {
    rejects(["servers"], [], NON_EMPTY)
  })

  it("an unknown key anywhere is an error", () => {
    rejects(["bogus"], 1, "Unknown key")
    rejects([...ROUTE, "bogus"], 1, "Unknown key")
    rejects([...UPSTREAM, "pool", "bogus"], 1, "Unknown key")
  })

  it("workers: a whole number from 1, or auto", () => {
    accepts(["workers"], 1)
    accepts(["workers"], 16)
    accepts(["workers"], "auto")
    rejects(["workers"], 0, atLeast(1))
    rejects(["workers"], 2.5, INTEGER)
    rejects(["workers"], "many", "Expected number | \"auto\"")
  })

  it("admin: listen is required, token must not be empty", () => {
    assert.strictEqual(errorOf(withValue(["admin"], {})), "<test>: admin.listen: Missing required key")
    assert.deepStrictEqual(decodeOk(withValue(["admin"], { listen: ":9901", token: "s" })).admin, { listen: ":9901", token: "s" })
    rejects(["admin"], { listen: ":9901", token: "" }, NON_EMPTY, ["admin", "token"])
    rejects(["admin"], { listen: "nope" }, "Expected a listen address such as 127.0.0.1:8080, :8080 or [::1]:8080", ["admin", "listen"])
  })

  it("log: level, format and access_log", () => {
    literals(["log", "level"], ["trace", "debug", "info", "warn", "error", "fatal", "none"],
      "Expected \"trace\" | \"debug\" | \"info\" | \"warn\" | \"error\" | \"fatal\" | \"none\"")
    literals(["log", "format"], ["json", "text"], "Expected \"json\" | \"text\"")
    boolean(["log", "access_log"])
  })

  it("shutdown.drain_timeout is a duration", () => duration(["shutdown", "drain_timeout"]))

  it("telemetry.metrics.enabled is a boolean", () => boolean(["telemetry", "metrics", "enabled"]))

  it("telemetry.tracing.otlp_endpoint: an http(s) URL, or null", () => {
    const path = ["telemetry", "tracing", "otlp_endpoint"]
    accepts(path, "http://127.0.0.1:4318/v1/traces")
    accepts(path, "https://otel.example.com/v1/traces")
    accepts(path, null)
    const message = "Expected an http:// or https:// URL"
    rejects(path, "ftp://otel.example.com/", message)
    rejects(path, "xhttp://otel.example.com/", message)
    rejects(path, "httpss://otel.example.com/", message)
    rejects(path, "not a url", message)
  })

  it("telemetry.tracing.sample_ratio: 0 to 1 inclusive", () => {
    const path = ["telemetry", "tracing", "sample_ratio"]
    accepts(path, 0)
    accepts(path, 0.25)
    accepts(path, 1)
    rejects(path, -0.01, between(0, 1))
    rejects(path, 1.01, between(0, 1))
  })

  it("telemetry.tracing.service_name must not be empty; export_interval is a duration", () => {
    accepts(["telemetry", "tracing", "service_name"], "gw")
    rejects(["telemetry", "tracing", "service_name"], "", NON_EMPTY)
    duration(["telemetry", "tracing", "export_interval"])
  })
})

describe("Schema: servers", () => {
  it("name is required and not empty; listen and routes are required", () => {
    rejects([...SERVER, "name"], "", NON_EMPTY)
    assert.strictEqual(errorOf({ ...base(), servers: [{ listen: ":1", routes: [] }] }), "<test>: servers[0].name: Missing required key")
    assert.strictEqual(errorOf({ ...base(), servers: [{ name: "w", routes: [] }] }), "<test>: servers[0].listen: Missing required key")
    assert.strictEqual(errorOf({ ...base(), servers: [{ name: "w", listen: ":1" }] }), "<test>: servers[0].routes: Missing required key")
  })

  it("listen takes host:port, :port and [v6]:port, with ports 0 to 65535", () => {
    const path = [...SERVER, "listen"]
    for (const listen of ["127.0.0.1:8080", ":8080", "[::1]:8080", "localhost:80", ":0", ":65535", "[::]:1"]) accepts(path, listen)
    const message = "Expected a listen address such as 127.0.0.1:8080, :8080 or [::1]:8080"
    for (const listen of [":65536", ":99999", ":123456", "localhost", "8080", "[::1]8080", "::1:8080", "a b:80", ":", ":8080x"]) {
      rejects(path, listen, message)
    }
  })

  it("property: every port up to 65535 is a valid listen port and every port past it is not", () => {
    fc.assert(fc.property(fc.integer({ min: 0, max: 99_999 }), (port) => {
      const result = decodeConfig(withValue([...SERVER, "listen"], `127.0.0.1:${port}`), "<test>")
      assert.strictEqual(Result.isSuccess(result), port <= 65535, `port ${port}`)
    }), { examples: [[0], [65535], [65536], [99_999]] })
  })

  it("protocol: http, https or h2c", () => {
    accepts([...SERVER, "protocol"], "http")
    accepts([...SERVER, "protocol"], "h2c")
    rejects([...SERVER, "protocol"], "tcp", "Expected \"http\", \"https\" or \"h2c\" (tcp listeners are not supported yet)")
  })

  it("limits: byte and connection limits are whole numbers from 1; timeouts are durations", () => {
    for (const key of ["max_connections", "max_header_bytes", "max_body_bytes", "h2_max_concurrent_streams", "h2_max_header_list_bytes"]) positiveInt([...SERVER, "limits", key])
    for (const key of ["idle_timeout", "header_timeout", "request_timeout"]) duration([...SERVER, "limits", key])
  })
})

describe("parseListen (where a listener binds)", () => {
  it("host:port, an empty host as every interface, and a bracketed IPv6 host without its brackets", () => {
    assert.deepStrictEqual(parseListen("127.0.0.1:8080"), { host: "127.0.0.1", port: 8080 })
    assert.deepStrictEqual(parseListen(":8080"), { host: "0.0.0.0", port: 8080 })
    assert.deepStrictEqual(parseListen("[::1]:9000"), { host: "::1", port: 9000 })
    assert.deepStrictEqual(parseListen("localhost:0"), { host: "localhost", port: 0 })
    assert.deepStrictEqual(parseListen("localhost:65535"), { host: "localhost", port: 65535 })
    assert.strictEqual(parseListen("localhost:65536"), undefined)
    assert.strictEqual(parseListen("localhost"), undefined)
  })
})

describe("Schema: routes", () => {
  it("id is required and not empty; upstream is required", () => {
    rejects([...ROUTE, "id"], "", NON_EMPTY)
    rejects([...SERVER, "routes"], [{ upstream: "app" }], "Missing required key", [...ROUTE, "id"])
    rejects([...SERVER, "routes"], [{ id: "r" }], "Missing required key", [...ROUTE, "upstream"])
  })

  it("priority is a whole number, negative allowed", () => {
    accepts([...ROUTE, "priority"], -5)
    accepts([...ROUTE, "priority"], 10)
    rejects([...ROUTE, "priority"], 1.5, INTEGER)
  })

  it("timeout is a duration", () => duration([...ROUTE, "timeout"]))

  it("match.host: a host name or *.domain", () => {
    const path = [...ROUTE, "match", "host"]
    for (const host of ["api.example.com", "*.example.com", "a", "a.b", "*.b", "a-b.c9", "A1.B2"]) accepts(path, host)
    const message = "Expected a host name such as api.example.com or *.example.com"
    for (const host of ["-a.com", "a-.com", "*.", "a..b", "a_b.com", "**.a", "a.*.com", "a.com.", ""]) rejects(path, host, message)
  })

  it("match.path: exactly one of exact, prefix, regex; exact and prefix start with /", () => {
    const path = [...ROUTE, "match", "path"]
    accepts(path, { exact: "/a" })
    accepts(path, { prefix: "/a" })
    accepts(path, { regex: "^/a/\\d+$" })
    const one = "Expected exactly one of exact, prefix, regex"
    rejects(path, {}, one)
    rejects(path, { exact: "/a", regex: "^/b" }, one)
    rejects(path, { prefix: "/a", regex: "^/b" }, one)
    rejects(path, { exact: "a" }, ABSOLUTE, [...path, "exact"])
    rejects(path, { prefix: "a" }, ABSOLUTE, [...path, "prefix"])
    assert.match(errorOf(withValue(path, { regex: "(" })), /^<test>: servers\[0\]\.routes\[0\]\.match\.path\.regex: Invalid regular expression/)
  })

  it("match.methods: upper-case method names", () => {
    const path = [...ROUTE, "match", "methods"]
    accepts(path, ["GET", "POST", "PURGE"])
    rejects(path, ["GET", "get"], METHOD, [...path, 1])
    rejects(path, [""], METHOD, [...path, 0])
    rejects(path, ["GET "], METHOD, [...path, 0])
    rejects(path, ["gET"], METHOD, [...path, 0])
  })

  for (const section of ["headers", "query"]) {
    it(`match.${section}: a value, { present }, or { regex }, exactly one`, () => {
      const path = [...ROUTE, "match", section, "x-user"]
      accepts(path, "alice")
      accepts(path, { present: true })
      accepts(path, { present: false })
      accepts(path, { regex: "^a" })
      rejects(path, {}, "Expected exactly one of present, regex")
      rejects(path, { present: true, regex: "^a" }, "Expected exactly one of present, regex")
      rejects(path, { present: "yes" }, BOOLEAN, [...path, "present"])
      assert.include(errorOf(withValue(path, { regex: "(" })), `${formatPath([...path, "regex"])}: Invalid regular expression`)
    })
  }

  it("rewrite: strip_prefix and/or add_prefix, or regex with replace", () => {
    const path = [...ROUTE, "rewrite"]
    accepts(path, { strip_prefix: "/api" })
    accepts(path, { add_prefix: "/v2" })
    accepts(path, { strip_prefix: "/api", add_prefix: "/v2" })
    accepts(path, { regex: "^/v1/(.*)", replace: "/v2/$1" })
    const both = "Expected both regex and replace"
    rejects(path, { regex: "^/v1" }, both)
    rejects(path, { replace: "/v2" }, both)
    const notBoth = "Expected either strip_prefix/add_prefix or regex/replace, not both"
    rejects(path, { strip_prefix: "/a", regex: "^/b", replace: "/c" }, notBoth)
    rejects(path, { add_prefix: "/a", replace: "/c" }, notBoth)
    rejects(path, { strip_prefix: "/a", regex: "^/b" }, notBoth)
    rejects(path, {}, "Expected strip_prefix, add_prefix or regex/replace")
    rejects(path, { strip_prefix: "api" }, ABSOLUTE, [...path, "strip_prefix"])
    rejects(path, { add_prefix: "v2" }, ABSOLUTE, [...path, "add_prefix"])
  })

  for (const side of ["request", "response"]) {
    it(`headers.${side}: set/add take header names to values without control characters; remove takes names`, () => {
      const path = [...ROUTE, "headers", side]
      accepts(path, { set: { "x-a": "1", "X_B.c~!": "tab\there é" }, add: { via: "fibergate" }, remove: ["server", "x-powered-by"] })
      rejects(path, { set: { "x-a": "line\nbreak" } }, "Expected a header value without control characters", [...path, "set", "x-a"])
      rejects(path, { add: { "x-a": "del\x7f" } }, "Expected a header value without control characters", [...path, "add", "x-a"])
      // A key of a record that is not a header name is reported as an unknown key at that name.
      rejects(path, { set: { "x a": "1" } }, "Unknown key", [...path, "set", "x a"])
      rejects(path, { add: { "x:a": "1" } }, "Unknown key", [...path, "add", "x:a"])
      rejects(path, { remove: ["ok", "not ok"] }, HEADER_NAME, [...path, "remove", 1])
      rejects(path, { remove: [""] }, HEADER_NAME, [...path, "remove", 0])
    })
  }
})

describe("Schema: retry", () => {
  const RETRY = [...ROUTE, "retry"]

  it("attempts: 1 to 10, whole numbers", () => {
    for (let n = 1; n <= 10; n++) accepts([...RETRY, "attempts"], n)
    rejects([...RETRY, "attempts"], 0, between(1, 10))
    rejects([...RETRY, "attempts"], 11, between(1, 10))
    rejects([...RETRY, "attempts"], 2.5, INTEGER)
  })

  it("property: attempts is accepted exactly when it is a whole number from 1 to 10", () => {
    fc.assert(fc.property(fc.oneof(fc.integer({ min: -5, max: 20 }), fc.double({ min: -5, max: 20, noNaN: true })), (n) => {
      const ok = Result.isSuccess(decodeConfig(withValue([...RETRY, "attempts"], n), "<test>"))
      assert.strictEqual(ok, Number.isInteger(n) && n >= 1 && n <= 10, `attempts ${n}`)
    }), { examples: [[0], [1], [10], [11], [0.5], [10.5]] })
  })

  it("per_try_timeout and backoff base/max are durations; jitter a boolean", () => {
    duration([...RETRY, "per_try_timeout"])
    duration([...RETRY, "backoff", "base"])
    duration([...RETRY, "backoff", "max"])
    boolean([...RETRY, "backoff", "jitter"])
  })

  it("buffer_bytes: a whole number from 0", () => {
    accepts([...RETRY, "buffer_bytes"], 0)
    accepts([...RETRY, "buffer_bytes"], 65536)
    rejects([...RETRY, "buffer_bytes"], -1, atLeast(0))
    rejects([...RETRY, "buffer_bytes"], 1.5, INTEGER)
  })

  it("on: connect-failure, reset, timeout or a status from 500 to 599", () => {
    const path = [...RETRY, "on"]
    accepts(path, ["connect-failure", "reset", "timeout", 500, 503, 599])
    rejects(path, [499], between(500, 599), [...path, 0])
    rejects(path, [600], between(500, 599), [...path, 0])
    rejects(path, [502.5], INTEGER, [...path, 0])
    rejects(path, ["5xx"], "Expected \"connect-failure\" | \"reset\" | \"timeout\"", [...path, 0])
    rejects(path, [true], "Expected connect-failure, reset, timeout or a 5xx status", [...path, 0])
  })

  it("methods: upper-case method names", () => {
    accepts([...RETRY, "methods"], ["GET", "PUT"])
    rejects([...RETRY, "methods"], ["put"], METHOD, [...RETRY, "methods", 0])
  })
})

describe("Schema: upstreams", () => {
  it("endpoints: at least one, each with a url; weight a whole number from 1", () => {
    rejects([...UPSTREAM, "endpoints"], [], NON_EMPTY)
    rejects([...UPSTREAM, "endpoints"], [{}], "Missing required key", [...UPSTREAM, "endpoints", 0, "url"])
    positiveInt([...UPSTREAM, "endpoints", 0, "weight"])
  })

  it("an endpoint url is an http origin without path, query, fragment or credentials", () => {
    const path = [...UPSTREAM, "endpoints", 0, "url"]
    accepts(path, "http://127.0.0.1:3000")
    accepts(path, "http://app.internal")
    accepts(path, "http://127.0.0.1:3000/")
    accepts(path, "https://127.0.0.1:3000")
    rejects(path, "localhost:3000", "Expected an http:// or https:// URL")
    rejects(path, "not a url", "Expected an absolute URL such as http://127.0.0.1:3000")
    rejects(path, "ftp://127.0.0.1:3000", "Expected an http:// or https:// URL")
    const origin = "Expected an origin only (scheme, host and port), without a path or query"
    rejects(path, "http://127.0.0.1:3000/api", origin)
    rejects(path, "http://127.0.0.1:3000?x=1", origin)
    rejects(path, "http://127.0.0.1:3000/#top", origin)
    const credentials = "Expected no credentials in the URL"
    rejects(path, "http://user:pass@127.0.0.1:3000", credentials)
    rejects(path, "http://user@127.0.0.1:3000", credentials)
    rejects(path, "http://:pass@127.0.0.1:3000", credentials)
  })

  it("balance: one of the six balancers", () => {
    literals([...UPSTREAM, "balance"], ["round_robin", "weighted", "random", "least_request", "ewma", "consistent_hash"],
      "Expected \"round_robin\" | \"weighted\" | \"random\" | \"least_request\" | \"ewma\" | \"consistent_hash\"")
  })

  it("hash_on: ip, path, header:<name> or cookie:<name>", () => {
    const hashed = (hashOn: unknown) => withValue([...UPSTREAM, "hash_on"], hashOn, withValue([...UPSTREAM, "balance"], "consistent_hash"))
    for (const hashOn of ["ip", "path", "header:x-user", "cookie:session_id"]) {
      assert.strictEqual(decodeOk(hashed(hashOn)).upstreams.app.hash_on, hashOn)
    }
    for (const hashOn of ["ipv4", "xip", "header:", "cookie:", "header:x user", "cookie:a=b", "cookie:a;b", "body"]) {
      assert.strictEqual(
        errorOf(hashed(hashOn)),
        "<test>: upstreams.app.hash_on: Expected ip, path, header:<name> or cookie:<name>",
        hashOn
      )
    }
  })

  it("pool: connections from 1, keep_alive and connect_timeout durations, http2 a boolean", () => {
    positiveInt([...UPSTREAM, "pool", "connections"])
    duration([...UPSTREAM, "pool", "keep_alive"])
    duration([...UPSTREAM, "pool", "connect_timeout"])
    accepts([...UPSTREAM, "pool", "http2"], false)
    accepts([...UPSTREAM, "pool", "http2"], true)
    rejects([...UPSTREAM, "pool", "http2"], "yes", "Expected boolean")
  })

  it("panic: fail_closed or fail_open", () => {
    literals([...UPSTREAM, "panic"], ["fail_closed", "fail_open"], "Expected \"fail_closed\" | \"fail_open\"")
  })
})

describe("Schema: health_check", () => {
  const HC = [...UPSTREAM, "health_check"]

  it("type http, tcp or grpc; path absolute; strings for body and host; durations; thresholds from 1", () => {
    literals([...HC, "type"], ["http", "tcp", "grpc"], "Expected \"http\" | \"tcp\" | \"grpc\"")
    accepts([...HC, "path"], "/healthz")
    rejects([...HC, "path"], "healthz", ABSOLUTE)
    accepts([...HC, "expect_body"], "ok")
    accepts([...HC, "host"], "app.internal")
    duration([...HC, "interval"])
    duration([...HC, "timeout"])
    positiveInt([...HC, "healthy_threshold"])
    positiveInt([...HC, "unhealthy_threshold"])
  })

  it("expect_status: a status from 100 to 599, or a range whose end is at least its start", () => {
    const path = [...HC, "expect_status"]
    for (const status of ["100", "200", "599", "200-399", "200-200", "100-599"]) accepts(path, status)
    const form = "Expected a status or a range such as 200 or 200-399"
    for (const status of ["099", "600", "2000", "x200", "200x", "2a0", "20a", "200-", "-200", "200-600", "200-2a0", "200-20a", "200-3999", "", "200 - 399"]) {
      rejects(path, status, form)
    }
    rejects(path, "300-299", "Expected the range's end to be at least its start")
    rejects(path, "500-200", "Expected the range's end to be at least its start")
  })
})

describe("Schema: outlier and circuit_breaker", () => {
  const FAILURES = "Expected \"connect-failure\" | \"reset\" | \"timeout\" | \"5xx\""

  it("outlier: consecutive_failures from 1, ejection durations, max_ejected_percent 0 to 100, failure kinds", () => {
    const path = [...UPSTREAM, "outlier"]
    positiveInt([...path, "consecutive_failures"])
    duration([...path, "base_ejection"])
    duration([...path, "max_ejection"])
    for (const percent of [0, 0.5, 50, 100]) accepts([...path, "max_ejected_percent"], percent)
    rejects([...path, "max_ejected_percent"], -1, between(0, 100))
    rejects([...path, "max_ejected_percent"], 101, between(0, 100))
    rejects([...path, "max_ejected_percent"], 100.5, between(0, 100))
    accepts([...path, "failures"], ["connect-failure", "reset", "timeout", "5xx"])
    rejects([...path, "failures"], ["timeout", "4xx"], FAILURES, [...path, "failures", 1])
  })

  it("circuit_breaker: consecutive_failures and half_open_probes from 1, open durations, failure kinds", () => {
    const path = [...UPSTREAM, "circuit_breaker"]
    positiveInt([...path, "consecutive_failures"])
    positiveInt([...path, "half_open_probes"])
    duration([...path, "open_for"])
    duration([...path, "max_open_for"])
    accepts([...path, "failures"], ["5xx"])
    rejects([...path, "failures"], ["500"], FAILURES, [...path, "failures", 0])
  })
})

describe("Schema: retry_budget", () => {
  const RB = [...UPSTREAM, "retry_budget"]

  it("percent: 0 to 100", () => {
    for (const percent of [0, 20, 99.5, 100]) accepts([...RB, "percent"], percent)
    rejects([...RB, "percent"], -0.1, between(0, 100))
    rejects([...RB, "percent"], 100.1, between(0, 100))
  })

  it("min_per_second: a finite number from 0", () => {
    for (const rate of [0, 0.5, 10]) accepts([...RB, "min_per_second"], rate)
    rejects([...RB, "min_per_second"], -0.5, atLeast(0))
    rejects([...RB, "min_per_second"], Number.POSITIVE_INFINITY, "Expected a finite number")
  })

  it("window: a duration of at least 1s", () => {
    accepts([...RB, "window"], "1s", 1000)
    accepts([...RB, "window"], "1000ms", 1000)
    accepts([...RB, "window"], "10s", 10_000)
    rejects([...RB, "window"], "999ms", "Expected a window of at least 1s")
    rejects([...RB, "window"], "1", DURATION)
  })

  it("min_concurrent is rejected, naming min_per_second", () => {
    rejects([...RB, "min_concurrent"], 3,
      "min_concurrent was replaced by min_per_second (retries allowed per second of the window, default 10)")
  })
})

describe("Schema: rules across keys", () => {
  const twoServers = (a: string, b: string) => ({
    ...base(),
    servers: [{ name: "a", listen: a, routes: [] }, { name: "b", listen: b, routes: [] }]
  })

  it("the same port on different hosts is not a duplicate", () => {
    assert.strictEqual(decodeOk(twoServers("127.0.0.1:8080", "127.0.0.2:8080")).servers.length, 2)
    assert.strictEqual(decodeOk(twoServers("[::1]:8080", "127.0.0.1:8080")).servers.length, 2)
    assert.strictEqual(decodeOk(twoServers("127.0.0.1:8080", "127.0.0.1:8081")).servers.length, 2)
  })

  it(":port and 0.0.0.0:port are the same address", () => {
    assert.strictEqual(
      errorOf(twoServers(":8080", "0.0.0.0:8080")),
      "<test>: servers[1].listen: Duplicate listen address 0.0.0.0:8080 (already used by servers[0].listen)"
    )
  })

  it("the same bracketed IPv6 address twice is a duplicate", () => {
    assert.strictEqual(
      errorOf(twoServers("[::1]:8080", "[::1]:8080")),
      "<test>: servers[1].listen: Duplicate listen address [::1]:8080 (already used by servers[0].listen)"
    )
  })

  it("a route to an unknown upstream when none is defined says so", () => {
    assert.strictEqual(
      errorOf({ ...base(), upstreams: {} }),
      "<test>: servers[0].routes[0].upstream: Unknown upstream \"app\" (defined: none)"
    )
  })

  it("endpoints with different ports are not duplicates", () => {
    const endpoints = [{ url: "http://127.0.0.1:3000" }, { url: "http://127.0.0.1:3001" }]
    assert.strictEqual(decodeOk(withValue([...UPSTREAM, "endpoints"], endpoints)).upstreams.app.endpoints.length, 2)
  })
})
