/**
 * "As a library": what the README says `src/index.ts` exports, used through the index only:
 * `Gateway.layer`, `Gateway.layerFile`, `Gateway.layerWith` with a `ConfigSource` of one's own,
 * the `Config` schema, the services and the tagged errors.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Layer, References, Schema } from "effect"
import {
  Admin,
  BadRequest,
  CircuitOpen,
  Config,
  ConfigError,
  ConfigSource,
  Gateway,
  HeadersTooLarge,
  Listeners,
  MethodNotAllowed,
  NoHealthyUpstream,
  PayloadTooLarge,
  RouteNotFound,
  RouteTable,
  Tracing,
  UpstreamBodyTimeout,
  UpstreamConnectError,
  UpstreamConnectTimeout,
  UpstreamReset,
  UpstreamResponseTimeout,
  UpstreamTimeout,
  Upstreams
} from "../../src/index.ts"
import { tempFile } from "../support/cli.ts"
import { startUpstream } from "../support/harness.ts"

const configFor = (upstream: string) => ({
  admin: { listen: "127.0.0.1:0" },
  log: { level: "none" },
  servers: [{ name: "web", listen: "127.0.0.1:0", routes: [{ id: "all", upstream: "app" }] }],
  upstreams: { app: { endpoints: [{ url: upstream }] } }
})

/** Builds a gateway layer, sends one request through it and reads its services. */
const through = <E>(layer: Layer.Layer<Gateway.GatewayServices, E>) =>
  Effect.gen(function*() {
    const context = yield* Layer.build(layer).pipe(Effect.provideService(References.MinimumLogLevel, "None"))
    const port = Context.get(context, Listeners).addresses.get("web")!.port
    const res = yield* Effect.promise(() => fetch(`http://127.0.0.1:${port}/lib`).then(async (r) => ({ status: r.status, body: await r.text() })))
    return {
      status: res.status,
      url: JSON.parse(res.body).url as string,
      generation: Context.get(context, RouteTable).generation(),
      upstreams: [...Context.get(context, Upstreams).current().keys()],
      admin: Context.get(context, Admin).address !== undefined,
      source: Context.get(context, ConfigSource).source,
      tracing: Context.get(context, Tracing).tracer
    }
  })

describe("library: the exports of src/index.ts", () => {
  it.live("Gateway.layer (a value), Gateway.layerFile (a file) and Gateway.layerWith (a ConfigSource) each run a gateway whose services answer", () =>
    Effect.gen(function*() {
      const app = yield* startUpstream("app")
      const config = configFor(app.url)
      const path = yield* tempFile("lib.yaml", JSON.stringify(config))
      const runs = [
        yield* Effect.scoped(through(Gateway.layer(config))),
        yield* Effect.scoped(through(Gateway.layerFile(path, {}, { watch: false }))),
        yield* Effect.scoped(through(Gateway.layerWith(ConfigSource.layerValue(config), { tracing: Tracing.layerDisabled })))
      ]
      for (const run of runs) {
        assert.deepInclude(run, { status: 200, url: "/lib", generation: 1, upstreams: ["app"], admin: true, tracing: undefined })
      }
      assert.deepStrictEqual(runs.map((r) => r.source), ["<value>", path, "<value>"])
      assert.strictEqual(app.seen.length, 3)
    }))

  it.live("the Config schema decodes a config value, and the tagged errors carry their tags", () =>
    Effect.gen(function*() {
      const decoded = Schema.decodeUnknownSync(Config)(configFor("http://127.0.0.1:9"), { onExcessProperty: "error" })
      assert.strictEqual(decoded.servers[0].routes[0].upstream, "app")
      const errors = [
        BadRequest, CircuitOpen, HeadersTooLarge, MethodNotAllowed, NoHealthyUpstream, PayloadTooLarge, RouteNotFound,
        UpstreamBodyTimeout, UpstreamConnectError, UpstreamConnectTimeout, UpstreamReset, UpstreamResponseTimeout, UpstreamTimeout
      ]
      assert.deepStrictEqual(errors.map((E) => new E({ message: "m" })._tag), errors.map((E) => E.name))
      assert.strictEqual(new ConfigError({ source: "s", problems: [] })._tag, "ConfigError")
    }))
})
