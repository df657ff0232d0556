/**
 * Reload by file watch: a real gateway on a config file in a temporary directory, changed the
 * ways operators change it (in place, temp file renamed over it, several saves in a row, a bad
 * edit). Waiting for a filesystem event is bounded by `eventually`. Where the assertion is that
 * nothing happens, no fixed wait stands in for it: the test's own debounced watch of the file
 * (`fileQuiet`) says when a watching gateway reads the file, and a sentinel after it (an explicit
 * reload, which waits for any reload in flight, or a later change) must be the next reload.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, SubscriptionRef } from "effect"
import { join } from "node:path"
import { ConfigSource } from "../../src/config/ConfigSource.ts"
import * as Gateway from "../../src/gateway/Gateway.ts"
import { startUpstream } from "../support/harness.ts"
import {
  eventually,
  fileQuiet,
  get,
  reloadCount,
  startLiveGateway,
  tempDir,
  writeAndRename,
  within,
  writeInPlace,
  type LiveGateway
} from "../support/liveGateway.ts"

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
      const quiet = yield* fileQuiet(path)
      const gaps: Array<number> = []
      let last = performance.now()
      for (let i = 1; i <= 5; i++) {
        if (i > 1) {
          // Paced so that the writes are separate events, each well within the 250 ms debounce of the one before.
          yield* Effect.sleep("20 millis")
          gaps.push(performance.now() - last)
          last = performance.now()
        }
        yield* (i % 2 === 0 ? writeAndRename : writeInPlace)(path, fileConfig(a.url, b.url, { withB: true, tag: `-${i}` }))
      }
      assert.isBelow(Math.max(...gaps), 250, "every write came within the debounce time of the one before (a premise of this test)")
      yield* quiet.next("the burst's quiet time")
      yield* eventually(Effect.sync(() => gateway.routes.generation() > 1), "the config is reloaded")
      assert.deepStrictEqual(yield* routeIds(gateway), ["to-b-5", "all"])
      // Sentinel: one more change after the burst's quiet time. Had the burst made more than one
      // reload, they would all have come before this one.
      yield* writeInPlace(path, fileConfig(a.url, b.url, { withB: true, tag: "-sentinel" }))
      yield* eventually(Effect.map(routeIds(gateway), (ids) => ids[0] === "to-b-sentinel"), "the sentinel change is applied")
      assert.strictEqual(gateway.routes.generation(), 3, "one reload for the burst, one for the sentinel")
      assert.strictEqual((yield* reloadCount("applied")) - applied0, 2)
    }))

  it.live("rewriting the file with the same content does not reload", () =>
    Effect.gen(function*() {
      const { a, applied0, b, gateway, path } = yield* setup()
      const quiet = yield* fileQuiet(path)
      yield* writeInPlace(path, fileConfig(a.url, b.url))
      yield* writeAndRename(path, fileConfig(a.url, b.url))
      // The gateway reads the file now; a reload it started runs before this explicit one (reloads
      // run one at a time), which must therefore be the first.
      yield* quiet.next("the rewrites' quiet time")
      yield* within(gateway.source.reload, "an explicit reload")
      assert.strictEqual(gateway.routes.generation(), 2, "only the explicit reload was applied")
      assert.strictEqual((yield* reloadCount("applied")) - applied0, 1)
      // The watch is still there: a real change is applied.
      yield* writeInPlace(path, fileConfig(a.url, b.url, { withB: true }))
      yield* eventually(Effect.sync(() => gateway.routes.generation() === 3), "the change is applied")
      assert.strictEqual(yield* upstreamOf(gateway, "/b/x"), "b")
    }))

  it.live("with watch: false the file is read only on reload", () =>
    Effect.gen(function*() {
      const { a, applied0, b, gateway, path } = yield* setup({ watch: false })
      const quiet = yield* fileQuiet(path)
      yield* writeAndRename(path, fileConfig(a.url, b.url, { withB: true }))
      // A watching gateway would read the file now, and its reload would run before this one.
      yield* quiet.next("the change's quiet time")
      assert.strictEqual(gateway.routes.generation(), 1)
      yield* within(gateway.source.reload, "an explicit reload")
      assert.strictEqual(gateway.routes.generation(), 2, "the explicit reload is the only one")
      assert.strictEqual((yield* reloadCount("applied")) - applied0, 1)
      assert.strictEqual(yield* upstreamOf(gateway, "/b/x"), "b")
    }))
})
