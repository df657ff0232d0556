/**
 * What the RouteTable compiles a config into, per listener: the body limit, the access log, the
 * route metrics and rejection counts, and the tracing settings a request sees; and the Layer,
 * which applies the config in force at start and every config published after it.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Layer, SubscriptionRef } from "effect"
import * as Metric from "effect/Metric"
import * as Tracer from "effect/Tracer"
import type { IncomingMessage } from "node:http"
import { afterEach, expect, vi } from "vitest"
import { ConfigSource } from "../../src/config/ConfigSource.ts"
import { REQUESTS_METRIC, requestTotals } from "../../src/admin/Stats.ts"
import type { ListenerTable } from "../../src/proxy/ProxyHandler.ts"
import { compileTables, RouteTable } from "../../src/proxy/RouteTable.ts"
import { Tracing } from "../../src/telemetry/Tracing.ts"
import { Upstreams } from "../../src/upstream/Upstreams.ts"
import { decoded } from "../support/effects.ts"

const upstreams = { a: { endpoints: [{ url: "http://127.0.0.1:1" }] } }

/** A config value with listener `web` (one catch-all route `all`) and `extra` top-level keys. */
const raw = (extra: Record<string, unknown> = {}, server: Record<string, unknown> = {}) => ({
  servers: [{ name: "web", listen: "127.0.0.1:0", routes: [{ id: "all", upstream: "a" }], ...server }],
  upstreams,
  ...extra
})

/** A registry of its own, so nothing else in the process is counted. */
const freshRegistry = () => Context.make(Metric.MetricRegistry, new Map())

const tableOf = (
  value: unknown,
  options: { readonly context?: Context.Context<never>; readonly tracing?: Tracing["Service"] } = {}
): ListenerTable => {
  const table = compileTables(decoded(value), new Map(), options.context ?? freshRegistry(), options.tracing).get("web")
  return table ?? assert.fail("no table for listener web")
}

const routeOf = (table: ListenerTable) =>
  table.router.find({ host: "", path: "/", method: "GET", query: "", header: () => undefined }) ?? assert.fail("no route for /")

const aTracer = Tracer.make({
  span: () => {
    throw new Error("no span is started by these tests")
  }
})

describe("RouteTable: compiled listener settings", () => {
  it("the body limit is the listener's max_body_bytes, 10 MiB when it sets none", () => {
    expect(tableOf(raw()).maxBodyBytes).toBe(10 * 1024 * 1024)
    expect(tableOf(raw({}, { limits: { max_body_bytes: 1000 } })).maxBodyBytes).toBe(1000)
  })

  it("metrics on (the default): a route's requests and the listener's rejections are counted", () => {
    const context = freshRegistry()
    const table = tableOf(raw(), { context })
    routeOf(table).metrics.record("GET", 200, 1)
    table.rejections?.count("RouteNotFound")
    expect(requestTotals(Metric.snapshotUnsafe(context)).by_listener).toEqual({ web: 1 })
    const rejected = Metric.snapshotUnsafe(context).filter((m) => m.id === "fibergate_rejected_requests_total")
    expect(rejected.map((m) => [m.attributes, m.state])).toEqual([[{ reason: "RouteNotFound" }, { count: 1, incremental: false }]])
  })

  it("telemetry.metrics.enabled: false records nothing, requests or rejections", () => {
    const context = freshRegistry()
    const table = tableOf(raw({ telemetry: { metrics: { enabled: false } } }), { context })
    routeOf(table).metrics.record("GET", 200, 1)
    table.rejections?.count("RouteNotFound")
    expect(Metric.snapshotUnsafe(context).filter((m) => m.id === REQUESTS_METRIC || m.id === "fibergate_rejected_requests_total")).toEqual([])
  })

  it("telemetry.metrics.enabled: true counts as the default does", () => {
    const context = freshRegistry()
    routeOf(tableOf(raw({ telemetry: { metrics: { enabled: true } } }), { context })).metrics.record("GET", 200, 1)
    expect(requestTotals(Metric.snapshotUnsafe(context)).total).toBe(1)
  })

  it("no tracer: requests are not traced", () => {
    expect(tableOf(raw()).tracing).toBeUndefined()
    expect(tableOf(raw(), { tracing: { tracer: undefined, fromConfig: false } }).tracing).toBeUndefined()
  })

  it("a tracer: requests are traced on it with the config's sample ratio, 1 when it sets none", () => {
    const tracing = { tracer: aTracer, fromConfig: false }
    expect(tableOf(raw(), { tracing }).tracing).toEqual({ tracer: aTracer, sampleRatio: 1, listener: "web" })
    expect(tableOf(raw({ telemetry: { tracing: { sample_ratio: 0.25 } } }), { tracing }).tracing).toEqual({
      tracer: aTracer,
      sampleRatio: 0.25,
      listener: "web"
    })
  })

  it("a tracer the config's otlp_endpoint turned on stops tracing once the endpoint, or the whole tracing section, is removed", () => {
    const tracing = { tracer: aTracer, fromConfig: true }
    const withEndpoint = raw({ telemetry: { tracing: { otlp_endpoint: "http://127.0.0.1:4318" } } })
    expect(tableOf(withEndpoint, { tracing }).tracing?.tracer).toBe(aTracer)
    expect(tableOf(raw(), { tracing }).tracing).toBeUndefined()
    expect(tableOf(raw({ telemetry: { tracing: { otlp_endpoint: null } } }), { tracing }).tracing).toBeUndefined()
    expect(tableOf(raw({ telemetry: { metrics: { enabled: true } } }), { tracing }).tracing).toBeUndefined()
  })

  it("a tracer from the program (not from the config) keeps tracing without an otlp_endpoint", () => {
    expect(tableOf(raw(), { tracing: { tracer: aTracer, fromConfig: false } }).tracing?.tracer).toBe(aTracer)
  })
})

describe("RouteTable: access log", () => {
  afterEach(() => {
    vi.restoreAllMocks()
  })

  const request = { method: "GET", url: "/x", httpVersion: "1.1", rawHeaders: [] } as unknown as IncomingMessage
  const record = {
    req: request,
    clientIp: "127.0.0.1",
    route: "all",
    path: "/x",
    status: 200,
    bytesIn: 0,
    bytesOut: 2,
    durationMs: 1,
    upstream: "127.0.0.1:1",
    attempts: 1,
    traceId: undefined,
    error: undefined
  }

  /** The lines the listener's access log writes to stdout for one request. */
  const logged = (table: ListenerTable): Array<string> => {
    const lines: Array<string> = []
    vi.spyOn(process.stdout, "write").mockImplementation((chunk) => {
      lines.push(String(chunk))
      return true
    })
    const log = table.accessLog ?? assert.fail("no access log")
    log.write(record)
    vi.restoreAllMocks()
    return lines
  }

  it("is off unless log.access_log is true", () => {
    expect(tableOf(raw()).accessLog).toBeUndefined()
    expect(tableOf(raw({ log: {} })).accessLog).toBeUndefined()
    expect(tableOf(raw({ log: { access_log: false } })).accessLog).toBeUndefined()
  })

  it("access_log: true writes one JSON line per request to stdout, naming the listener", () => {
    const [line, ...rest] = logged(tableOf(raw({ log: { access_log: true } })))
    expect(rest).toEqual([])
    expect(JSON.parse(line)).toMatchObject({ listener: "web", route: "all", path: "/x", status: 200 })
  })

  it("format: text writes the combined log format instead", () => {
    const [line] = logged(tableOf(raw({ log: { access_log: true, format: "text" } })))
    expect(line).toMatch(/^127\.0\.0\.1 - - \[.+\] "GET \/x HTTP\/1\.1" 200 2 "-" "-" listener=web route=all /)
  })

  it("format: json is the JSON line", () => {
    const [line] = logged(tableOf(raw({ log: { access_log: true, format: "json" } })))
    expect(JSON.parse(line)).toMatchObject({ listener: "web" })
  })
})

describe("RouteTable: the Layer", () => {
  const build = (value: unknown) =>
    Effect.gen(function*() {
      const context = yield* Layer.build(
        RouteTable.layer.pipe(
          Layer.provideMerge(Upstreams.layer),
          Layer.provideMerge(Tracing.layerDisabled),
          Layer.provideMerge(ConfigSource.layerValue(value))
        )
      )
      return { table: Context.get(context, RouteTable), source: Context.get(context, ConfigSource) }
    })

  /** Waits (bounded) until `generation` reaches `n`: the published config has been applied. */
  const appliedGeneration = (table: RouteTable["Service"], n: number) =>
    Effect.gen(function*() {
      while (table.generation() < n) yield* Effect.yieldNow
    }).pipe(Effect.timeoutOrElse({ duration: "5 seconds", orElse: () => Effect.die(new Error(`generation stayed ${table.generation()}`)) }))

  it.live("after start the config in force is applied: generation 1, a table per listener", () =>
    Effect.scoped(Effect.gen(function*() {
      const { table } = yield* build(raw())
      assert.strictEqual(table.generation(), 1)
      assert.strictEqual(table.current("web")?.maxBodyBytes, 10 * 1024 * 1024)
      assert.strictEqual(table.current("other"), undefined)
    })))

  it.live("a published config is applied: the generation counts up and the tables are the new config's", () =>
    Effect.scoped(Effect.gen(function*() {
      const { table, source } = yield* build(raw())
      const next = {
        servers: [{ name: "api", listen: "127.0.0.1:0", routes: [{ id: "all", upstream: "a" }], limits: { max_body_bytes: 5 } }],
        upstreams
      }
      yield* SubscriptionRef.set(source.config, decoded(next))
      yield* appliedGeneration(table, 2)
      assert.strictEqual(table.generation(), 2)
      assert.strictEqual(table.current("api")?.maxBodyBytes, 5)
      assert.strictEqual(table.current("web"), undefined)
      yield* SubscriptionRef.set(source.config, decoded(raw()))
      yield* appliedGeneration(table, 3)
      assert.strictEqual(table.generation(), 3)
      assert.strictEqual(table.current("api"), undefined)
      assert.isDefined(table.current("web"))
    })))
})
