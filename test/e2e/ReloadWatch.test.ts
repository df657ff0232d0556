/**
 * Reload by file watch: a real gateway on a config file in a temporary directory, changed the
 * ways operators change it (in place, temp file renamed over it, several saves in a row, a bad
 * edit). Waiting for a filesystem event is bounded by `eventually`; the few plain waits give the
 * debounce time to pass where the assertion is that nothing happens.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, SubscriptionRef } from "effect"
import { join } from "node:path"
import { ConfigSource } from "../../src/config/ConfigSource.ts"
import * as Gateway from "../../src/gateway/Gateway.ts"
import { startUpstream } from "../support/harness.ts"
import {
  eventually,
  get,
  reloadCount,
  startLiveGateway,
  tempDir,
  writeAndRename,
  writeInPlace,
  type LiveGateway
} from "../support/liveGateway.ts"

/** The default debounce is 250 ms; this is comfortably past it (and past a reload). */
const QUIET = "800 millis"

/** One listener; `/b` goes to upstream b when `withB`, everything else to a. `tag` makes each version distinct. */
const fileConfig = (a: string, b: string, options: { readonly withB?: boolean; readonly tag?: string } = {}) => ({
  admin: { listen: "127.0.0.1:0" },
  log: { level: "none", access_log: false },
  servers: [{
    name: "web",
    listen: "127.0.0.1:0",
    routes: [
      ...(options.withB === true ? [{ id: `to-b${options.tag ?? ""}`, match: { path: { prefix: "/b" } }, upstream: "b" }] : []),
      { id: "all", upstream: "a" }
    ]
  }],
  upstreams: { a: { endpoints: [{ url: a }] }, b: { endpoints: [{ url: b }] } }
})

const upstreamOf = (gateway: LiveGateway, path: string) =>
  get(`http://127.0.0.1:${gateway.port("web")}${path}`).pipe(Effect.map((res) => res.headers.get("x-upstream")))

const routeIds = (gateway: LiveGateway) =>
  SubscriptionRef.get(gateway.source.config).pipe(Effect.map((c) => c.servers[0].routes.map((r) => r.id)))

/** Two upstreams and a gateway following `<tmp>/fibergate.yaml` (default options: watch on, 250 ms debounce). */
const setup = (options: { readonly watch?: boolean } = {}) =>
  Effect.gen(function*() {
    const a = yield* startUpstream("a")
    const b = yield* startUpstream("b")
    const path = join(yield* tempDir, "fibergate.yaml")
    yield* writeInPlace(path, fileConfig(a.url, b.url))
    const layer = options.watch === undefined
      ? Gateway.layerFile(path, {})
      : Gateway.layerWith(ConfigSource.layerFile(path, {}, { watch: options.watch }))
    const gateway = yield* startLiveGateway(layer)
    return { a, b, path, gateway, applied0: yield* reloadCount("applied"), rejected0: yield* reloadCount("rejected") }
  })

describe("reload when the config file changes", () => {
  it.live("a valid config written in place is applied", () =>
    Effect.gen(function*() {
      const { a, applied0, b, gateway, path } = yield* setup()
      assert.strictEqual(yield* upstreamOf(gateway, "/b/x"), "a")
      yield* writeInPlace(path, fileConfig(a.url, b.url, { withB: true }))
      yield* eventually(Effect.map(upstreamOf(gateway, "/b/x"), (u) => u === "b"), "the new route answers")
      assert.strictEqual(gateway.routes.generation(), 2)
      assert.strictEqual((yield* reloadCount("applied")) - applied0, 1)
      assert.isTrue(gateway.logs.some((l) => l.level === "Info" && l.message.includes(`config reloaded from ${path} (file changed`)))
    }))

  it.live("a valid config written to a temporary file and renamed over the config is applied", () =>
    Effect.gen(function*() {
      const { a, b, gateway, path } = yield* setup()
      yield* writeAndRename(path, fileConfig(a.url, b.url, { withB: true }))
      yield* eventually(Effect.map(upstreamOf(gateway, "/b/x"), (u) => u === "b"), "the new route answers")
      // The watch survives the rename: a second replacement is followed too.
      yield* writeAndRename(path, fileConfig(a.url, b.url))
      yield* eventually(Effect.map(upstreamOf(gateway, "/b/x"), (u) => u === "a"), "the route is gone again")
      assert.strictEqual(gateway.routes.generation(), 3)
    }))

  it.live("an invalid file keeps the running config, logs every error with file:line:column and counts a rejected reload", () =>
    Effect.gen(function*() {
      const { a, b, gateway, path, rejected0 } = yield* setup()
      const before = yield* SubscriptionRef.get(gateway.source.config)
      const bad = [
        "servers:",
        "  - name: web",
        "    listen: nowhere",
        "    routes:",
        "      - id: all",
        "        upstream: a",
        "    limitz: {}",
        "upstreams:",
        "  a: { endpoints: [ { url: 'not a url' } ] }",
        ""
      ].join("\n")
      yield* writeInPlace(path, bad)
      yield* eventually(Effect.map(reloadCount("rejected"), (n) => n === rejected0 + 1), "the reload is counted as rejected")
      assert.strictEqual(yield* SubscriptionRef.get(gateway.source.config), before)
      assert.strictEqual(gateway.routes.generation(), 1)
      assert.strictEqual(yield* upstreamOf(gateway, "/b/x"), "a", "the running config still serves")
      const warning = gateway.logs.find((l) => l.level === "Warn" && l.message.includes("Config reload rejected"))
      assert.isDefined(warning)
      const lines = warning!.message.split("\n").slice(1)
      assert.strictEqual(lines.length, 3, warning!.message)
      assert.include(lines.join("\n"), `${path}:3:5: servers[0].listen: Expected a listen address`)
      assert.include(lines.join("\n"), `${path}:7:5: servers[0].limitz: Unknown key`)
      assert.include(lines.join("\n"), `${path}:9:23: upstreams.a.endpoints[0].url: Expected an absolute URL`)

      // Fixing the file applies it.
      yield* writeInPlace(path, fileConfig(a.url, b.url, { withB: true }))
      yield* eventually(Effect.map(upstreamOf(gateway, "/b/x"), (u) => u === "b"), "the fixed config answers")
    }))

  it.live("several writes in quick succession make one reload, of the last content", () =>
    Effect.gen(function*() {
      const { a, applied0, b, gateway, path } = yield* setup()
      for (let i = 1; i <= 5; i++) {
        yield* (i % 2 === 0 ? writeAndRename : writeInPlace)(path, fileConfig(a.url, b.url, { withB: true, tag: `-${i}` }))
        yield* Effect.sleep("20 millis")
      }
      yield* eventually(Effect.sync(() => gateway.routes.generation() > 1), "the config is reloaded")
      yield* Effect.sleep(QUIET)
      assert.strictEqual(gateway.routes.generation(), 2, "one reload for the burst")
      assert.strictEqual((yield* reloadCount("applied")) - applied0, 1)
      assert.deepStrictEqual(yield* routeIds(gateway), ["to-b-5", "all"])
    }))

  it.live("rewriting the file with the same content does not reload", () =>
    Effect.gen(function*() {
      const { a, applied0, b, gateway, path } = yield* setup()
      yield* writeInPlace(path, fileConfig(a.url, b.url))
      yield* writeAndRename(path, fileConfig(a.url, b.url))
      yield* Effect.sleep(QUIET)
      assert.strictEqual(gateway.routes.generation(), 1)
      assert.strictEqual(yield* reloadCount("applied"), applied0)
      // The watch is still there: a real change is applied.
      yield* writeInPlace(path, fileConfig(a.url, b.url, { withB: true }))
      yield* eventually(Effect.sync(() => gateway.routes.generation() === 2), "the change is applied")
    }))

  it.live("with watch: false the file is read only on reload", () =>
    Effect.gen(function*() {
      const { a, b, gateway, path } = yield* setup({ watch: false })
      yield* writeAndRename(path, fileConfig(a.url, b.url, { withB: true }))
      yield* Effect.sleep(QUIET)
      assert.strictEqual(gateway.routes.generation(), 1)
      yield* gateway.source.reload
      assert.strictEqual(yield* upstreamOf(gateway, "/b/x"), "b")
    }))
})
