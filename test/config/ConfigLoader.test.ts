import { assert, describe, it } from "@effect/vitest"
import { Result, Schema } from "effect"
import { readFileSync } from "node:fs"
import type { ConfigError, ConfigProblem } from "../../src/config/ConfigError.ts"
import { applyEnvOverrides, decodeConfig, parseConfigText } from "../../src/config/ConfigLoader.ts"
import { Config } from "../../src/config/Schema.ts"

const FILE = "gw.yaml"

/** YAML text from lines, so that line N of the file is the Nth argument. */
const yaml = (...lines: ReadonlyArray<string>): string => lines.join("\n") + "\n"

/** `line:column` (1-based) of the first occurrence of `needle` in `text`. */
const at = (text: string, needle: string): string => {
  const lines = text.split("\n")
  const i = lines.findIndex((l) => l.includes(needle))
  if (i < 0) throw new Error(`${needle} not in the test YAML`)
  return `${i + 1}:${lines[i].indexOf(needle) + 1}`
}

const parsed = (text: string, env: Record<string, string | undefined> = {}) => parseConfigText(text, FILE, env)

const failureOf = (text: string, env: Record<string, string | undefined> = {}): ConfigError => {
  const result = parsed(text, env)
  if (Result.isSuccess(result)) return assert.fail(`expected a ConfigError, got ${JSON.stringify(result.success)}`)
  return result.failure
}

const successOf = (text: string, env: Record<string, string | undefined> = {}): Config => {
  const result = parsed(text, env)
  if (Result.isFailure(result)) return assert.fail(`expected a valid config, got:\n${result.failure.message}`)
  return result.success
}

/** Asserts that the rendered error has this exact line (one line per problem). */
const assertLine = (error: ConfigError, line: string) =>
  assert.include(error.message.split("\n"), line, `missing line:\n${line}\nin:\n${error.message}`)

const problemAt = (error: ConfigError, path: string): ConfigProblem => {
  const problem = error.problems.find((p) => p.path === path)
  return problem ?? assert.fail(`no problem at ${path}; got:\n${error.message}`)
}

/** A valid config; `routes`/`upstreams` lines are inserted as given. */
const UPSTREAMS = [
  "upstreams:",
  "  app:",
  "    endpoints: [ { url: \"http://127.0.0.1:3000\" } ]",
  "  other:",
  "    endpoints: [ { url: \"http://127.0.0.1:3001\" } ]"
]
const withRoute = (...routeLines: ReadonlyArray<string>) =>
  yaml(
    "servers:",
    "  - name: web",
    "    listen: 127.0.0.1:8080",
    "    routes:",
    "      - id: r",
    ...routeLines,
    ...UPSTREAMS
  )
const withUpstream = (...upstreamLines: ReadonlyArray<string>) =>
  yaml(
    "servers:",
    "  - name: web",
    "    listen: 127.0.0.1:8080",
    "    routes:",
    "      - { id: r, upstream: app }",
    "upstreams:",
    "  app:",
    ...upstreamLines
  )

describe("ConfigLoader: unknown keys", () => {
  it("an unknown top-level key is reported with its line and 'Unknown key'", () => {
    const text = yaml("servers:", "  - { name: web, listen: 127.0.0.1:8080, routes: [] }", "upstreams: {}", "bogus: 1")
    const error = failureOf(text)
    assertLine(error, `${FILE}:${at(text, "bogus")}: bogus: Unknown key`)
  })

  it("an unknown key in a route names servers[0].routes[2].upstrem", () => {
    const text = yaml(
      "servers:",
      "  - name: web",
      "    listen: 127.0.0.1:8080",
      "    routes:",
      "      - id: a",
      "        upstream: app",
      "      - id: b",
      "        upstream: app",
      "      - id: c",
      "        upstrem: app",
      "        upstream: app",
      ...UPSTREAMS
    )
    const error = failureOf(text)
    assertLine(error, `${FILE}:${at(text, "upstrem:")}: servers[0].routes[2].upstrem: Unknown key`)
    assert.strictEqual(error.problems.length, 1)
  })

  it("an unknown key in an upstream names upstreams.<name>.<key>", () => {
    const text = withUpstream("    endpoints: [ { url: \"http://127.0.0.1:3000\" } ]", "    balanse: random")
    assertLine(failureOf(text), `${FILE}:${at(text, "balanse")}: upstreams.app.balanse: Unknown key`)
  })
})

describe("ConfigLoader: shape and values", () => {
  it("a missing required key is reported at its parent with 'Missing required key'", () => {
    const text = yaml("servers:", "  - name: web", "    routes: []", "upstreams: {}")
    assertLine(failureOf(text), `${FILE}:${at(text, "name: web")}: servers[0].listen: Missing required key`)
  })

  it("a value of the wrong type says which type was expected", () => {
    const text = yaml("servers:", "  - name: web", "    listen: 127.0.0.1:8080", "    routes: { id: r }", "upstreams: {}")
    assertLine(failureOf(text), `${FILE}:${at(text, "routes:")}: servers[0].routes: Expected array`)
  })

  it("a bad duration (5x) names the key and shows valid durations", () => {
    const text = withRoute("        upstream: app", "        timeout: 5x")
    assertLine(
      failureOf(text),
      `${FILE}:${at(text, "timeout")}: servers[0].routes[0].timeout: Expected a duration such as 250ms, 5s, 1m or 1h`
    )
  })

  it("an invalid path regex is reported with the RegExp error", () => {
    const text = withRoute("        upstream: app", "        match: { path: { regex: \"[\" } }")
    const error = failureOf(text)
    const problem = problemAt(error, "servers[0].routes[0].match.path.regex")
    assert.include(problem.message, "Invalid regular expression")
    assert.strictEqual(`${problem.line}:${problem.column}`, at(text, "regex"))
  })

  it("an invalid header regex is reported under match.headers.<name>.regex", () => {
    const text = withRoute("        upstream: app", "        match: { headers: { x-user: { regex: \"(\" } } }")
    const problem = problemAt(failureOf(text), "servers[0].routes[0].match.headers.x-user.regex")
    assert.include(problem.message, "Invalid regular expression")
    assert.strictEqual(`${problem.line}:${problem.column}`, at(text, "regex"))
  })

  it("an invalid rewrite regex is reported under rewrite.regex", () => {
    const text = withRoute("        upstream: app", "        rewrite: { regex: \"(\", replace: /x }")
    const problem = problemAt(failureOf(text), "servers[0].routes[0].rewrite.regex")
    assert.include(problem.message, "Invalid regular expression")
    assert.strictEqual(`${problem.line}:${problem.column}`, at(text, "regex"))
  })

  it("an endpoint that is not a URL asks for an absolute URL", () => {
    const text = withUpstream("    endpoints: [ { url: \"not a url\" } ]")
    assertLine(
      failureOf(text),
      `${FILE}:${at(text, "url")}: upstreams.app.endpoints[0].url: Expected an absolute URL such as http://127.0.0.1:3000`
    )
  })

  it("an endpoint of another scheme asks for http:// or https://", () => {
    const text = withUpstream("    endpoints: [ { url: \"ftp://127.0.0.1:3000\" } ]")
    assertLine(
      failureOf(text),
      `${FILE}:${at(text, "url")}: upstreams.app.endpoints[0].url: Expected an http:// or https:// URL`
    )
  })

  it("an endpoint with a path asks for an origin only", () => {
    const text = withUpstream("    endpoints: [ { url: \"http://127.0.0.1:3000/api\" } ]")
    assertLine(
      failureOf(text),
      `${FILE}:${at(text, "url")}: upstreams.app.endpoints[0].url: Expected an origin only (scheme, host and port), without a path or query`
    )
  })

  it("a bad listen address (no port, port out of range) shows the accepted forms", () => {
    const text = yaml(
      "servers:",
      "  - { name: a, listen: localhost, routes: [] }",
      "  - { name: b, listen: \"127.0.0.1:99999\", routes: [] }",
      "upstreams: {}"
    )
    const error = failureOf(text)
    const expected = "Expected a listen address such as 127.0.0.1:8080, :8080 or [::1]:8080"
    assertLine(error, `${FILE}:${at(text, "listen: localhost")}: servers[0].listen: ${expected}`)
    assertLine(error, `${FILE}:${at(text, "listen: \"127")}: servers[1].listen: ${expected}`)
  })

  it("protocol tcp has a clear 'not supported yet' message", () => {
    const text = yaml(
      "servers:",
      "  - name: web",
      "    listen: 127.0.0.1:8443",
      "    protocol: tcp",
      "    routes: []",
      "upstreams: {}"
    )
    assertLine(
      failureOf(text),
      `${FILE}:${at(text, "protocol")}: servers[0].protocol: Expected "http", "https" or "h2c" (tcp listeners are not supported yet)`
    )
  })

  it("a certificate file that cannot be read is reported at its certificate's line", () => {
    const text = yaml(
      "servers:",
      "  - name: web",
      "    listen: 127.0.0.1:8443",
      "    protocol: https",
      "    tls:",
      "      certificates:",
      "        - { cert: /nonexistent/fibergate.pem, key: /nonexistent/fibergate.key }",
      "    routes: []",
      "upstreams: {}"
    )
    assertLine(
      failureOf(text),
      `${FILE}:${at(text, "{ cert")}: servers[0].tls.certificates[0]: cannot read /nonexistent/fibergate.pem: ENOENT: no such file or directory, open '/nonexistent/fibergate.pem'`
    )
  })

  it("a path match with two kinds at once asks for exactly one", () => {
    const text = withRoute("        upstream: app", "        match: { path: { exact: /a, prefix: /b } }")
    assertLine(
      failureOf(text),
      `${FILE}:${at(text, "path:")}: servers[0].routes[0].match.path: Expected exactly one of exact, prefix, regex`
    )
  })

  it("a rewrite mixing strip_prefix and regex is rejected", () => {
    const text = withRoute("        upstream: app", "        rewrite: { strip_prefix: /api, regex: \"^/v1\", replace: /v2 }")
    assertLine(
      failureOf(text),
      `${FILE}:${at(text, "rewrite")}: servers[0].routes[0].rewrite: Expected either strip_prefix/add_prefix or regex/replace, not both`
    )
  })

  it("a YAML syntax error is reported with its line", () => {
    const text = yaml("servers:", "  - name: web", "    listen: [127.0.0.1:8080", "upstreams: {}")
    const error = failureOf(text)
    assert.isAbove(error.problems.length, 0)
    const problem = error.problems[0]
    assert.strictEqual(problem.path, "")
    assert.match(problem.message, /^YAML: /)
    assert.isNumber(problem.line)
    assert.isAtLeast(problem.line!, 3)
    assert.match(error.message, new RegExp(`^${FILE}:\\d+:\\d+: YAML: `))
  })

  it("a duplicate key in a YAML map is a syntax error", () => {
    const text = yaml("servers: []", "servers: []", "upstreams: {}")
    const error = failureOf(text)
    assert.include(error.message, `${FILE}:2:1: YAML:`)
  })
})

describe("ConfigLoader: retry_budget", () => {
  const ENDPOINTS = "    endpoints: [ { url: \"http://127.0.0.1:3000\" } ]"

  it("retry_budget { percent, min_per_second, window } decodes, the window to milliseconds", () => {
    const config = successOf(withUpstream(ENDPOINTS, "    retry_budget: { percent: 25, min_per_second: 2.5, window: 30s }"))
    assert.deepStrictEqual(config.upstreams.app.retry_budget, { percent: 25, min_per_second: 2.5, window: 30_000 })
  })

  it("the old min_concurrent is rejected at its path, naming min_per_second as its replacement", () => {
    const text = withUpstream(ENDPOINTS, "    retry_budget: { percent: 20, min_concurrent: 3 }")
    assertLine(
      failureOf(text),
      `${FILE}:${at(text, "min_concurrent")}: upstreams.app.retry_budget.min_concurrent: ` +
        "min_concurrent was replaced by min_per_second (retries allowed per second of the window, default 10)"
    )
  })

  it("a window under 1s, a negative min_per_second, a percent over 100 and an unknown key are each reported at their path", () => {
    const text = withUpstream(ENDPOINTS, "    retry_budget:", "      window: 500ms", "      min_per_second: -1", "      percent: 120", "      ratio: 0.2")
    const error = failureOf(text)
    assertLine(error, `${FILE}:${at(text, "window")}: upstreams.app.retry_budget.window: Expected a window of at least 1s`)
    assertLine(
      error,
      `${FILE}:${at(text, "min_per_second")}: upstreams.app.retry_budget.min_per_second: Expected a value greater than or equal to 0`
    )
    assert.include(problemAt(error, "upstreams.app.retry_budget.percent").message, "100")
    assertLine(error, `${FILE}:${at(text, "ratio")}: upstreams.app.retry_budget.ratio: Unknown key`)
  })
})

describe("ConfigLoader: cross-key rules", () => {
  it("a route referencing an unknown upstream lists the defined ones", () => {
    const text = withRoute("        upstream: ghost")
    assertLine(
      failureOf(text),
      `${FILE}:${at(text, "upstream: ghost")}: servers[0].routes[0].upstream: Unknown upstream "ghost" (defined: app, other)`
    )
  })

  it("a duplicate route id in one server points at the first declaration", () => {
    const text = yaml(
      "servers:",
      "  - name: web",
      "    listen: 127.0.0.1:8080",
      "    routes:",
      "      - { id: same, upstream: app }",
      "      - { id: same, upstream: app }",
      ...UPSTREAMS
    )
    const error = failureOf(text)
    assertLine(error, `${FILE}:6:11: servers[0].routes[1].id: Duplicate route id same (first declared at servers[0].routes[0])`)
  })

  it("a duplicate route id across servers is rejected too", () => {
    const text = yaml(
      "servers:",
      "  - name: a",
      "    listen: 127.0.0.1:8080",
      "    routes: [ { id: same, upstream: app } ]",
      "  - name: b",
      "    listen: 127.0.0.1:8081",
      "    routes:",
      "      - { id: same, upstream: app }",
      ...UPSTREAMS
    )
    assertLine(failureOf(text), `${FILE}:8:11: servers[1].routes[0].id: Duplicate route id same (first declared at servers[0].routes[0])`)
  })

  it("a duplicate listen address between servers names the first user as servers[0].listen", () => {
    const text = yaml(
      "servers:",
      "  - { name: a, listen: 127.0.0.1:8080, routes: [] }",
      "  - name: b",
      "    listen: 127.0.0.1:8080",
      "    routes: []",
      "upstreams: {}"
    )
    assertLine(
      failureOf(text),
      `${FILE}:4:5: servers[1].listen: Duplicate listen address 127.0.0.1:8080 (already used by servers[0].listen)`
    )
  })

  it("a server listening on the admin address is a duplicate listen address", () => {
    const text = yaml(
      "admin: { listen: 127.0.0.1:9901 }",
      "servers:",
      "  - name: web",
      "    listen: 127.0.0.1:9901",
      "    routes: []",
      "upstreams: {}"
    )
    assertLine(
      failureOf(text),
      `${FILE}:4:5: servers[0].listen: Duplicate listen address 127.0.0.1:9901 (already used by admin.listen)`
    )
  })

  it("port 0 may be used by several listeners", () => {
    const text = yaml(
      "admin: { listen: 127.0.0.1:0 }",
      "servers:",
      "  - { name: a, listen: 127.0.0.1:0, routes: [] }",
      "  - { name: b, listen: 127.0.0.1:0, routes: [] }",
      "upstreams: {}"
    )
    assert.strictEqual(successOf(text).servers.length, 2)
  })

  it("a duplicate server name is rejected", () => {
    const text = yaml(
      "servers:",
      "  - { name: web, listen: 127.0.0.1:8080, routes: [] }",
      "  - name: web",
      "    listen: 127.0.0.1:8081",
      "    routes: []",
      "upstreams: {}"
    )
    assertLine(failureOf(text), `${FILE}:3:5: servers[1].name: Duplicate server name web`)
  })

  it("a duplicate endpoint (same origin) in an upstream is rejected", () => {
    const text = withUpstream(
      "    endpoints:",
      "      - { url: \"http://127.0.0.1:3000\" }",
      "      - { url: \"http://127.0.0.1:3000/\" }"
    )
    assertLine(failureOf(text), `${FILE}:${at(text, "url: \"http://127.0.0.1:3000/\"")}: upstreams.app.endpoints[1].url: Duplicate endpoint http://127.0.0.1:3000`)
  })

  it("hash_on without balance: consistent_hash is rejected", () => {
    const text = withUpstream("    balance: round_robin", "    hash_on: ip", "    endpoints: [ { url: \"http://127.0.0.1:3000\" } ]")
    assertLine(failureOf(text), `${FILE}:${at(text, "hash_on")}: upstreams.app.hash_on: hash_on applies only to balance: consistent_hash`)
  })

  it("hash_on with balance: consistent_hash is accepted", () => {
    const text = withUpstream("    balance: consistent_hash", "    hash_on: header:x-user", "    endpoints: [ { url: \"http://127.0.0.1:3000\" } ]")
    assert.strictEqual(successOf(text).upstreams.app.hash_on, "header:x-user")
  })
})

describe("ConfigLoader: every error at once", () => {
  it("reports every shape error in the file, each with its own line and path", () => {
    const text = yaml(
      "servers:",
      "  - name: web",
      "    listen: nope",
      "    routes:",
      "      - id: a",
      "        upstrem: app",
      "        upstream: app",
      "        timeout: 5x",
      "upstreams:",
      "  app:",
      "    endpoints: [ { url: \"ftp://127.0.0.1:3000\" } ]",
      "bogus: true"
    )
    const error = failureOf(text)
    assert.deepStrictEqual(
      error.problems.map((p) => p.path).sort(),
      ["bogus", "servers[0].listen", "servers[0].routes[0].timeout", "servers[0].routes[0].upstrem", "upstreams.app.endpoints[0].url"]
    )
    assert.strictEqual(error.message.split("\n").length, 5)
    assertLine(error, `${FILE}:3:5: servers[0].listen: Expected a listen address such as 127.0.0.1:8080, :8080 or [::1]:8080`)
    assertLine(error, `${FILE}:6:9: servers[0].routes[0].upstrem: Unknown key`)
    assertLine(error, `${FILE}:8:9: servers[0].routes[0].timeout: Expected a duration such as 250ms, 5s, 1m or 1h`)
    assertLine(error, `${FILE}:12:1: bogus: Unknown key`)
  })

  it("reports every cross-key error in the file", () => {
    const text = yaml(
      "servers:",
      "  - name: web",
      "    listen: 127.0.0.1:8080",
      "    routes:",
      "      - { id: a, upstream: ghost }",
      "  - name: web",
      "    listen: 127.0.0.1:8081",
      "    routes:",
      "      - { id: a, upstream: app }",
      ...UPSTREAMS
    )
    const error = failureOf(text)
    assert.deepStrictEqual(
      error.problems.map((p) => p.path).sort(),
      ["servers[0].routes[0].upstream", "servers[1].name", "servers[1].routes[0].id"]
    )
  })
})

describe("ConfigLoader: environment overrides", () => {
  it("FIBERGATE_WORKERS=2 sets workers to the number 2", () => {
    const result = applyEnvOverrides({ servers: [] }, { FIBERGATE_WORKERS: "2" })
    assert.deepStrictEqual(Result.getOrThrow(result).value, { servers: [], workers: 2 })
  })

  it("FIBERGATE_LOG__LEVEL=debug sets log.level and keeps the rest of the section", () => {
    const result = applyEnvOverrides({ log: { level: "info", format: "json" } }, { FIBERGATE_LOG__LEVEL: "debug" })
    assert.deepStrictEqual(Result.getOrThrow(result).value, { log: { level: "debug", format: "json" } })
  })

  it("overrides apply when parsing a file", () => {
    const config = successOf(withRoute("        upstream: app"), { FIBERGATE_WORKERS: "2", FIBERGATE_LOG__LEVEL: "debug" })
    assert.strictEqual(config.workers, 2)
    assert.strictEqual(config.log?.level, "debug")
  })

  it("variables without the FIBERGATE_ prefix and FIBERGATE_CONFIG are ignored", () => {
    const result = applyEnvOverrides({ workers: 1 }, { WORKERS: "3", FIBERGATE_CONFIG: "x.yaml", PATH: "/bin" })
    assert.deepStrictEqual(Result.getOrThrow(result).value, { workers: 1 })
  })

  it("overriding a section (FIBERGATE_SERVERS=x) is an error naming the variable", () => {
    const error = failureOf(withRoute("        upstream: app"), { FIBERGATE_SERVERS: "x" })
    assert.strictEqual(error.problems.length, 1)
    assert.include(error.message, "FIBERGATE_SERVERS")
    assert.include(error.message, "only scalar keys can be overridden")
  })

  it("a bad env value fails validation (FIBERGATE_WORKERS=0)", () => {
    const error = failureOf(withRoute("        upstream: app"), { FIBERGATE_WORKERS: "0" })
    assert.include(problemAt(error, "workers").message, "greater than or equal to 1")
  })

  it("a bad env value fails validation (FIBERGATE_LOG__LEVEL=loud)", () => {
    const error = failureOf(withRoute("        upstream: app"), { FIBERGATE_LOG__LEVEL: "loud" })
    assert.include(problemAt(error, "log.level").message, "\"debug\"")
  })

  it("a bad env value for a key absent from the file is not attributed to a line of the file", () => {
    const text = withRoute("        upstream: app")
    const problem = problemAt(failureOf(text, { FIBERGATE_WORKERS: "0" }), "workers")
    // The file has no `workers` key: a line:column here would point the operator at an unrelated line.
    assert.strictEqual(problem.line, undefined, `located at ${problem.line}:${problem.column}: "${text.split("\n")[problem.line! - 1]}"`)
  })
})

describe("ConfigLoader: decodeConfig (config values)", () => {
  it("a value with an error reports its path with the source name and no line", () => {
    const result = decodeConfig({
      servers: [{ name: "web", listen: "127.0.0.1:8080", routes: [{ id: "r", upstream: "app", timeout: "5x" }] }],
      upstreams: { app: { endpoints: [{ url: "http://127.0.0.1:3000" }] } }
    }, "<value>")
    if (Result.isSuccess(result)) return assert.fail("expected a ConfigError")
    assert.strictEqual(
      result.failure.message,
      "<value>: servers[0].routes[0].timeout: Expected a duration such as 250ms, 5s, 1m or 1h"
    )
  })

  it("a valid value decodes durations to milliseconds", () => {
    const result = decodeConfig({
      servers: [{ name: "web", listen: "127.0.0.1:8080", routes: [{ id: "r", upstream: "app", timeout: "5s" }] }],
      upstreams: { app: { endpoints: [{ url: "http://127.0.0.1:3000" }] } }
    }, "<value>")
    assert.strictEqual(Result.getOrThrow(result).servers[0].routes[0].timeout, 5000)
  })
})

describe("ConfigLoader: shipped configs and round trip", () => {
  for (const file of ["config/demo.yaml", "config/fibergate.yaml"]) {
    it(`${file} decodes without errors`, () => {
      const text = readFileSync(new URL(`../../${file}`, import.meta.url), "utf8")
      const config = successOf(text)
      assert.isAbove(config.servers.length, 0)
    })
  }

  it("encode(decode(x)) writes durations back as readable strings", () => {
    const text = yaml(
      "servers:",
      "  - name: web",
      "    listen: 127.0.0.1:8080",
      "    limits: { idle_timeout: 1500ms }",
      "    routes:",
      "      - { id: a, upstream: app, timeout: 2s }",
      "      - { id: b, upstream: app, timeout: 1.5s }",
      "      - { id: c, upstream: app, timeout: 90s }",
      "upstreams:",
      "  app:",
      "    endpoints: [ { url: \"http://127.0.0.1:3000\" } ]",
      "    pool: { keep_alive: 60m, connect_timeout: 250ms }"
    )
    const config = successOf(text)
    const encoded = Schema.encodeSync(Config)(config)
    assert.strictEqual(encoded.servers[0].limits?.idle_timeout, "1500ms")
    assert.deepStrictEqual(encoded.servers[0].routes.map((r) => r.timeout), ["2s", "1500ms", "90s"])
    assert.strictEqual(encoded.upstreams.app.pool?.keep_alive, "1h")
    assert.strictEqual(encoded.upstreams.app.pool?.connect_timeout, "250ms")
    // And decoding the encoded form gives the same config back.
    assert.deepStrictEqual(Schema.decodeUnknownSync(Config)(encoded, { onExcessProperty: "error" }), config)
  })
})

// ---- Locating problems in unusual YAML, environment overrides at their edges, loadConfigFile ----
// (Imports are hoisted; they sit here so that this block stays self-contained at the end of the file.)
import { Effect } from "effect"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { loadConfigFile } from "../../src/config/ConfigLoader.ts"

describe("ConfigLoader: where a problem is in unusual YAML", () => {
  it("an empty file reports both required keys, without a line", () => {
    assert.strictEqual(failureOf("").message, `${FILE}: servers: Missing required key\n${FILE}: upstreams: Missing required key`)
  })

  it("a file whose top level is a list or a scalar reports the required keys at 1:1, and nothing of its content", () => {
    const expected = `${FILE}:1:1: servers: Missing required key\n${FILE}:1:1: upstreams: Missing required key`
    assert.strictEqual(failureOf(yaml("- servers", "- upstreams")).message, expected)
    assert.strictEqual(failureOf(yaml("servers")).message, expected)
  })

  it("a problem after a complex (collection) key in the same map points at its own key", () => {
    const text = yaml(
      "servers:",
      "  - { name: a, listen: \":1\", routes: [] }",
      "upstreams:",
      "  ? [a, b]",
      "  : { endpoints: [ { url: \"http://127.0.0.1:1\" } ] }",
      "  undefined:",
      "    endpoints: []"
    )
    assertLine(failureOf(text), `${FILE}:7:5: upstreams.undefined.endpoints: Expected a value with a length of at least 1`)
  })

  it("a problem inside a YAML alias (*name) points at the alias", () => {
    const text = yaml(
      "servers:",
      "  - &s { name: a, listen: bad, routes: [] }",
      "  - *s",
      ...UPSTREAMS
    )
    const error = failureOf(text)
    const message = "Expected a listen address such as 127.0.0.1:8080, :8080 or [::1]:8080"
    assertLine(error, `${FILE}:2:19: servers[0].listen: ${message}`)
    assertLine(error, `${FILE}:3:5: servers[1].listen: ${message}`)
  })

  it("a problem inside an aliased list points at the key holding the alias", () => {
    const text = yaml(
      "servers:",
      "  - name: a",
      "    listen: 127.0.0.1:8080",
      "    routes: &r [ { id: x, upstream: app } ]",
      "  - name: b",
      "    listen: 127.0.0.1:8081",
      "    routes: *r",
      ...UPSTREAMS
    )
    assert.strictEqual(
      failureOf(text).message,
      `${FILE}:7:5: servers[1].routes[0].id: Duplicate route id x (first declared at servers[0].routes[0])`
    )
  })

  it("a YAML error is its first line only, at the error's position", () => {
    assert.strictEqual(failureOf(yaml("servers: []", "servers: []", "upstreams: {}")).message, `${FILE}:2:1: YAML: Map keys must be unique`)
    assert.strictEqual(
      failureOf(yaml("servers:", "  - name: web", "    listen: [127.0.0.1:8080", "upstreams: {}")).message,
      `${FILE}:4:1: YAML: Flow sequence in block collection must be sufficiently indented and end with a ]`
    )
  })
})

describe("ConfigLoader: environment overrides at their edges", () => {
  const FILE_OK = yaml("servers:", "  - { name: a, listen: \":1\", routes: [] }", ...UPSTREAMS)

  it("a variable with no value is ignored; an empty or null-looking value is kept as the string", () => {
    const result = applyEnvOverrides({ workers: 1 }, { FIBERGATE_WORKERS: undefined, FIBERGATE_ADMIN__TOKEN: "~", FIBERGATE_X: "", FIBERGATE_Y: "null" })
    assert.deepStrictEqual(Result.getOrThrow(result).value, { workers: 1, admin: { token: "~" }, x: "", y: "null" })
  })

  it("a key that is null in the file can be overridden", () => {
    assert.deepStrictEqual(Result.getOrThrow(applyEnvOverrides({ workers: null }, { FIBERGATE_WORKERS: "2" })).value, { workers: 2 })
  })

  it("reaching into a scalar or a list is an error naming the variable and the key", () => {
    assert.strictEqual(
      failureOf(yaml("log: info", ...FILE_OK.trimEnd().split("\n")), { FIBERGATE_LOG__LEVEL: "debug" }).message,
      `${FILE}: env FIBERGATE_LOG__LEVEL: log is not a section`
    )
    assert.strictEqual(
      failureOf(FILE_OK, { FIBERGATE_SERVERS__NAME: "x" }).message,
      `${FILE}: env FIBERGATE_SERVERS__NAME: servers is not a section`
    )
  })

  it("an empty section in the file (log: with no value) is not a section to reach into", () => {
    assert.strictEqual(
      failureOf(yaml("log:", ...FILE_OK.trimEnd().split("\n")), { FIBERGATE_LOG__LEVEL: "debug" }).message,
      `${FILE}: env FIBERGATE_LOG__LEVEL: log is not a section`
    )
  })

  it("overriding a nested section names it with dots", () => {
    assert.strictEqual(
      failureOf(yaml("telemetry: { metrics: { enabled: true } }", ...FILE_OK.trimEnd().split("\n")), { FIBERGATE_TELEMETRY__METRICS: "x" }).message,
      `${FILE}: env FIBERGATE_TELEMETRY__METRICS: telemetry.metrics is a section or list; only scalar keys can be overridden`
    )
  })

  it("a problem inside a value set by a variable names the variable; a problem in the file keeps its line", () => {
    const text = yaml("servers:", "  - { name: a, listen: nope, routes: [] }", ...UPSTREAMS)
    assert.strictEqual(
      failureOf(text, { FIBERGATE_WORKERS: "0" }).message,
      `${FILE}: workers: Expected a value greater than or equal to 1 (set by FIBERGATE_WORKERS)\n` +
        `${FILE}:2:16: servers[0].listen: Expected a listen address such as 127.0.0.1:8080, :8080 or [::1]:8080`
    )
    assert.strictEqual(
      failureOf(FILE_OK, { FIBERGATE_ADMIN: "{ listen: nope }" }).message,
      `${FILE}: admin.listen: Expected a listen address such as 127.0.0.1:8080, :8080 or [::1]:8080 (set by FIBERGATE_ADMIN)`
    )
    assert.strictEqual(
      failureOf(yaml(...UPSTREAMS), { FIBERGATE_SERVERS: "[ { name: \"\", listen: \":1\", routes: [] } ]" }).message,
      `${FILE}: servers[0].name: Expected a value with a length of at least 1 (set by FIBERGATE_SERVERS)`
    )
  })
})

describe("ConfigLoader: loadConfigFile", () => {
  const inTempDir = <A>(f: (dir: string) => Effect.Effect<A, unknown>) =>
    Effect.acquireUseRelease(
      Effect.sync(() => mkdtempSync(join(tmpdir(), "fibergate-load-"))),
      f,
      (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
    )

  it.effect("reads and decodes a file, with overrides from env", () =>
    inTempDir((dir) =>
      Effect.gen(function*() {
        const path = join(dir, "gw.yaml")
        writeFileSync(path, withRoute("        upstream: app", "        timeout: 2s"))
        const config = yield* loadConfigFile(path, { FIBERGATE_WORKERS: "4" })
        assert.strictEqual(config.servers[0].routes[0].timeout, 2000)
        assert.strictEqual(config.workers, 4)
      })
    ))

  it.effect("a problem in the file is reported with the file's path and line", () =>
    inTempDir((dir) =>
      Effect.gen(function*() {
        const path = join(dir, "gw.yaml")
        writeFileSync(path, withRoute("        upstream: app", "        timeout: 5x"))
        const error = yield* Effect.flip(loadConfigFile(path, {}))
        assert.strictEqual(error.message, `${path}:7:9: servers[0].routes[0].timeout: Expected a duration such as 250ms, 5s, 1m or 1h`)
      })
    ))

  it.effect("a file that cannot be read is a ConfigError saying why", () =>
    inTempDir((dir) =>
      Effect.gen(function*() {
        const path = join(dir, "absent.yaml")
        const error = yield* Effect.flip(loadConfigFile(path, {}))
        assert.strictEqual(error._tag, "ConfigError")
        assert.strictEqual(error.message, `${path}: Cannot read the file: ENOENT: no such file or directory, open '${path}'`)
      })
    ))
})
