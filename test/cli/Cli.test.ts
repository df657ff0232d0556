/**
 * The real `fibergate` command, spawned as a child process (`node bin/fibergate.js ...`, with the
 * Node running the tests). Every child is killed by a finalizer if a test leaves it running.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { request, startUpstream } from "../support/harness.ts"
import { exitOf, fetchWhenUp, oneRouteConfig, ROOT, runCli, spawnCli, tempFile, VERSION } from "../support/cli.ts"
import { readFileSync } from "node:fs"
import { join } from "node:path"
import { freePort, holdPort } from "../support/net.ts"



describe("fibergate check", () => {
  it.live("check -c config/demo.yaml exits 0 and prints ok", () =>
    Effect.gen(function*() {
      const result = yield* runCli(["check", "-c", "config/demo.yaml"])
      assert.strictEqual(result.code, 0, result.stderr)
      assert.include(result.stdout, "config/demo.yaml: ok")
    }))

  it.live("check -c <bad file> exits 1 and prints every error with file:line:column and path", () =>
    Effect.gen(function*() {
      const path = yield* tempFile("bad.yaml", [
        "servers:",
        "  - name: web",
        "    listen: nope",
        "    routes:",
        "      - id: a",
        "        upstrem: app",
        "        upstream: app",
        "upstreams:",
        "  app:",
        "    endpoints: [ { url: \"ftp://127.0.0.1:3000\" } ]",
        ""
      ].join("\n"))
      const result = yield* runCli(["check", "-c", path])
      assert.strictEqual(result.code, 1)
      const output = result.stderr + result.stdout
      assert.include(output, `${path}:3:5: servers[0].listen: Expected a listen address such as 127.0.0.1:8080, :8080 or [::1]:8080`)
      assert.include(output, `${path}:6:9: servers[0].routes[0].upstrem: Unknown key`)
      assert.include(output, `${path}:10:20: upstreams.app.endpoints[0].url: Expected an http:// or https:// URL`)
      assert.notInclude(result.stdout, ": ok")
    }))

  it.live("check warns about routes that can never match, naming file, path and ids, and still exits 0", () =>
    Effect.gen(function*() {
      const path = yield* tempFile("shadowed.yaml", [
        "servers:",
        "  - name: web",
        "    listen: 127.0.0.1:0",
        "    routes:",
        "      - { id: api, match: { path: { prefix: /api } }, upstream: app }",
        "      - { id: versioned, match: { path: { regex: \"^/v[0-9]+/\" } }, upstream: app }",
        "      - { id: api-again, match: { path: { prefix: /api } }, upstream: app }",
        "      - { id: everything, priority: 1, upstream: app }",
        "upstreams:",
        "  app:",
        "    endpoints: [ { url: \"http://127.0.0.1:3000\" } ]",
        ""
      ].join("\n"))
      const result = yield* runCli(["check", "-c", path])
      assert.strictEqual(result.code, 0, result.stderr)
      assert.include(result.stderr, "fibergate: warning: 3 route(s) can never match")
      assert.include(
        result.stderr,
        `${path}: servers[0].routes[0] (id "api"): never matches: shadowed by routes[3] (id "everything"): ` +
          `its prefix "/" (no path) covers prefix "/api", higher priority (1 > 0), no method, header or query conditions`
      )
      assert.include(result.stderr, `${path}: servers[0].routes[1] (id "versioned"): never matches: shadowed by routes[3] (id "everything")`)
      assert.include(result.stderr, `${path}: servers[0].routes[2] (id "api-again"): never matches: shadowed by routes[3] (id "everything")`)
      assert.include(result.stdout, `${path}: ok (1 server(s), 4 route(s), 1 upstream(s), 3 warning(s))`)
    }))

  it.live("check warns about an admin API beyond loopback without a token, and still exits 0; with a token it does not", () =>
    Effect.gen(function*() {
      const config = (admin: string) => [
        admin,
        "servers:",
        "  - name: web",
        "    listen: 127.0.0.1:0",
        "    routes: [ { id: all, upstream: app } ]",
        "upstreams:",
        "  app:",
        "    endpoints: [ { url: \"http://127.0.0.1:3000\" } ]",
        ""
      ].join("\n")
      const open = yield* tempFile("open-admin.yaml", config("admin: { listen: \"0.0.0.0:9901\" }"))
      const result = yield* runCli(["check", "-c", open])
      assert.strictEqual(result.code, 0, result.stderr)
      assert.include(result.stderr, `fibergate: warning: ${open}: admin.listen 0.0.0.0:9901 is not a loopback address and admin.token is not set`)
      assert.include(result.stdout, `${open}: ok (1 server(s), 1 route(s), 1 upstream(s), 1 warning(s))`)
      const guarded = yield* tempFile("guarded-admin.yaml", config("admin: { listen: \"0.0.0.0:9901\", token: s3cret }"))
      const quiet = yield* runCli(["check", "-c", guarded])
      assert.strictEqual(quiet.code, 0, quiet.stderr)
      assert.notInclude(quiet.stderr, "warning")
      assert.include(quiet.stdout, `${guarded}: ok (1 server(s), 1 route(s), 1 upstream(s))`)
    }))

  it.live("schema prints the config's JSON Schema, the one config/fibergate.schema.json holds", () =>
    Effect.gen(function*() {
      const result = yield* runCli(["schema"])
      assert.strictEqual(result.code, 0, result.stderr)
      const printed = JSON.parse(result.stdout) as Record<string, unknown>
      assert.strictEqual(printed.$schema, "https://json-schema.org/draft/2020-12/schema")
      assert.deepStrictEqual(printed, JSON.parse(readFileSync(join(ROOT, "config", "fibergate.schema.json"), "utf8")))
    }))

  it.live("check prints no warning when every route can match, a regex before a catch-all included", () =>
    Effect.gen(function*() {
      const path = yield* tempFile("fine.yaml", [
        "servers:",
        "  - name: web",
        "    listen: 127.0.0.1:0",
        "    routes:",
        "      - { id: versioned, match: { path: { regex: \"^/v[0-9]+/\" } }, upstream: app }",
        "      - { id: writes, match: { methods: [POST] }, upstream: app }",
        "      - { id: rest, match: { path: { prefix: / } }, upstream: app }",
        "upstreams:",
        "  app:",
        "    endpoints: [ { url: \"http://127.0.0.1:3000\" } ]",
        ""
      ].join("\n"))
      const result = yield* runCli(["check", "-c", path])
      assert.strictEqual(result.code, 0, result.stderr)
      assert.notInclude(result.stderr + result.stdout, "never matches")
      assert.include(result.stdout, `${path}: ok (1 server(s), 3 route(s), 1 upstream(s))`)
    }))

  it.live("check -c missing.yaml exits 1 with 'Cannot read'", () =>
    Effect.gen(function*() {
      const result = yield* runCli(["check", "-c", "missing.yaml"])
      assert.strictEqual(result.code, 1)
      assert.include(result.stderr, "missing.yaml")
      assert.include(result.stderr, "Cannot read")
    }))
})

describe("fibergate --version", () => {
  it.live("prints the package version and exits 0", () =>
    Effect.gen(function*() {
      const result = yield* runCli(["--version"])
      assert.strictEqual(result.code, 0, result.stderr)
      assert.include(result.stdout, VERSION)
    }))
})

describe("fibergate run", () => {
  it.live("run --listen ADDR --upstream URL serves a proxied request", () =>
    Effect.gen(function*() {
      const upstream = yield* startUpstream("quick")
      const port = yield* freePort
      const cli = yield* spawnCli(["run", "--listen", `127.0.0.1:${port}`, "--upstream", upstream.url])
      const res = yield* fetchWhenUp(cli, `http://127.0.0.1:${port}/through?x=1`)
      assert.strictEqual(res.status, 200)
      assert.strictEqual(res.headers.get("x-upstream"), "quick")
      assert.strictEqual(JSON.parse(res.body).url, "/through?x=1")
    }))

  it.live("SIGTERM stops run: the process exits 0 or by the signal", () =>
    Effect.gen(function*() {
      const upstream = yield* startUpstream("quick")
      const port = yield* freePort
      const cli = yield* spawnCli(["run", "--listen", `127.0.0.1:${port}`, "--upstream", upstream.url])
      const res = yield* fetchWhenUp(cli, `http://127.0.0.1:${port}/`)
      assert.strictEqual(res.status, 200)
      cli.child.kill("SIGTERM")
      const exit = yield* exitOf(cli)
      assert.isTrue(
        exit.code === 0 || exit.signal !== null,
        `expected exit code 0 or death by signal, got code ${exit.code}, signal ${exit.signal}\nstderr:\n${cli.stderr()}`
      )
    }))

  it.live("run -c FILE serves traffic and the admin API answers /ready 200", () =>
    Effect.gen(function*() {
      const upstream = yield* startUpstream("filed")
      const port = yield* freePort
      const adminPort = yield* freePort
      const path = yield* tempFile(
        "gw.yaml",
        oneRouteConfig({ port, adminPort, upstream: upstream.url, head: ["log: { level: none, access_log: false }"] })
      )
      const cli = yield* spawnCli(["run", "-c", path])
      const res = yield* fetchWhenUp(cli, `http://127.0.0.1:${port}/from-file`)
      assert.strictEqual(res.status, 200)
      assert.strictEqual(JSON.parse(res.body).url, "/from-file")
      const ready = yield* request(`http://127.0.0.1:${adminPort}/ready`)
      assert.strictEqual(ready.status, 200)
      assert.strictEqual(JSON.parse(ready.body).ready, true)
    }))

  it.live("a listen port already in use exits non-zero naming the listener and the address", () =>
    Effect.gen(function*() {
      const taken = (yield* holdPort).port
      const path = yield* tempFile(
        "taken.yaml",
        oneRouteConfig({ port: taken, upstream: "http://127.0.0.1:9", head: ["log: { level: none, access_log: false }"] })
      )
      const result = yield* runCli(["run", "-c", path])
      assert.isTrue(result.code !== 0 && result.code !== null, `exit code ${result.code}, signal ${result.signal}`)
      assert.include(result.stderr, "listener public")
      assert.include(result.stderr, `127.0.0.1:${taken}`)
    }))
})
