/**
 * Request tracing: a server span per request and a client span per upstream try, W3C Trace
 * Context in and out, exported by Effect's own OTLP/HTTP tracer (`effect/observability`).
 *
 * The request path is not an Effect (DESIGN deviation, see the README), so spans are made by
 * calling the `Tracer.Tracer` directly: the same object Effect itself would call, whichever
 * backend it is (Effect's OTLP tracer from the config, or `@effect/opentelemetry`'s for a
 * library user who runs an OpenTelemetry SDK). A request that is not sampled creates nothing.
 */
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as SubscriptionRef from "effect/SubscriptionRef"
import * as Tracer from "effect/Tracer"
import * as FetchHttpClient from "effect/http/FetchHttpClient"
import * as HttpClient from "effect/http/HttpClient"
import * as UrlParams from "effect/http/UrlParams"
import * as OtlpExporter from "effect/observability/OtlpExporter"
import * as OtlpSerialization from "effect/observability/OtlpSerialization"
import * as OtlpTracer from "effect/observability/OtlpTracer"
import { randomFillSync } from "node:crypto"
import { ConfigSource } from "../config/ConfigSource.ts"
import * as ExportFailures from "./ExportFailures.ts"
import { tracingExportFailures } from "./Metrics.ts"
import { tracesUrl } from "./OtlpEndpoint.ts"

export class Tracing extends Context.Service<Tracing, {
  /** Where spans go; undefined when tracing is off. */
  readonly tracer: Tracer.Tracer | undefined
  /**
   * Whether the config's `otlp_endpoint` turned the tracer on: a reload that removes the
   * endpoint then turns tracing off (the exporter itself stays until a restart).
   */
  readonly fromConfig: boolean
}>()("fibergate/telemetry/Tracing") {
  /**
   * Exports to `telemetry.tracing.otlp_endpoint` of the config at start (changing the endpoint
   * takes a restart; the sample ratio follows reloads): a URL without a path gets `/v1/traces`
   * (`OtlpEndpoint.tracesUrl`). Failed export requests are counted in
   * `fibergate_tracing_export_failures_total` and logged at most once a minute
   * (`ExportFailures`). Spans still buffered are flushed when the gateway's scope closes.
   */
  static readonly layer: Layer.Layer<Tracing, never, ConfigSource> = Layer.effect(
    Tracing,
    Effect.gen(function*() {
      const source = yield* ConfigSource
      const config = yield* SubscriptionRef.get(source.config)
      const tracing = config.telemetry?.tracing
      const endpoint = tracing?.otlp_endpoint
      if (endpoint === undefined || endpoint === null) return Tracing.of({ tracer: undefined, fromConfig: true })
      const url = tracesUrl(endpoint)
      const reporter = ExportFailures.makeReporter({
        url,
        // `telemetry.metrics.enabled` follows reloads, as for every other metric.
        count: (reason) =>
          Effect.flatMap(SubscriptionRef.get(source.config), (current) =>
            current.telemetry?.metrics?.enabled === false
              ? Effect.void
              : Metric.update(Metric.withAttributes(tracingExportFailures, { reason }), 1))
      })
      const tracer = yield* OtlpTracer.make({
        url,
        resource: { serviceName: tracing?.service_name ?? "fibergate" },
        exportInterval: Duration.millis(tracing?.export_interval ?? 5_000)
      }).pipe(
        Effect.updateService(HttpClient.HttpClient, ExportFailures.observe(reporter)),
        Effect.provide(Layer.mergeAll(OtlpExporter.layerFlusher, OtlpSerialization.layerJson, FetchHttpClient.layer))
      )
      yield* Effect.logInfo(`tracing: exporting spans to ${UrlParams.redactUrl(url)}`)
      return Tracing.of({ tracer, fromConfig: true })
    })
  )

  /**
   * Uses the `Tracer` already in the surrounding Effect context, for library users whose
   * program provides one, e.g. `@effect/opentelemetry`'s `NodeSdk.layer` (see the README).
   * That tracer's sampler has the last word (a span it drops goes upstream flagged not
   * sampled); leave `sample_ratio` unset (1) to let it decide alone. Without a tracer provided,
   * Effect's built-in one makes spans that go nowhere: use the default `Tracing.layer` then.
   */
  static readonly layerFromContext: Layer.Layer<Tracing> = Layer.effect(
    Tracing,
    Effect.map(Effect.tracer, (tracer) => Tracing.of({ tracer, fromConfig: false }))
  )

  static readonly layerDisabled: Layer.Layer<Tracing> = Layer.succeed(Tracing, Tracing.of({ tracer: undefined, fromConfig: false }))
}

/** A W3C `traceparent` taken apart; undefined when it is malformed (and then ignored). */
export interface TraceParent {
  readonly traceId: string
  readonly spanId: string
  readonly sampled: boolean
}

const HEX = /^[0-9a-f]+$/
const ZERO_TRACE = "00000000000000000000000000000000"
const ZERO_SPAN = "0000000000000000"

/**
 * Parses `version-traceid-parentid-flags` (W3C Trace Context level 1 §3.2). A future version
 * may append fields after the flags; version `ff` and all-zero ids are invalid.
 *
 * @example
 * parseTraceParent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
 * // => { traceId: "4bf9…4736", spanId: "00f0…02b7", sampled: true }
 */
export const parseTraceParent = (value: string): TraceParent | undefined => {
  if (value.length < 55 || value.charCodeAt(2) !== 45 || value.charCodeAt(35) !== 45 || value.charCodeAt(52) !== 45) return undefined
  const version = value.slice(0, 2)
  if (!HEX.test(version) || version === "ff" || (version === "00" && value.length !== 55)) return undefined
  if (value.length > 55 && value.charCodeAt(55) !== 45) return undefined
  const traceId = value.slice(3, 35)
  const spanId = value.slice(36, 52)
  const flags = value.slice(53, 55)
  if (!HEX.test(traceId) || !HEX.test(spanId) || !HEX.test(flags) || traceId === ZERO_TRACE || spanId === ZERO_SPAN) return undefined
  return { traceId, spanId, sampled: (parseInt(flags, 16) & 1) === 1 }
}

export const formatTraceParent = (traceId: string, spanId: string, sampled: boolean): string =>
  `00-${traceId}-${spanId}-${sampled ? "01" : "00"}`

// Ids of traces the gateway starts but does not sample (they still go upstream and into the
// access log), hex-encoded from a pool of random bytes refilled 8 KiB at a time: about 130 ns
// for both ids, where formatting Math.random() numbers took 1.5 µs (measured).
const pool = Buffer.alloc(8192)
let poolOffset = pool.length
const randomHex = (bytes: number): string => {
  if (poolOffset + bytes > pool.length) {
    randomFillSync(pool)
    poolOffset = 0
  }
  const hex = pool.toString("hex", poolOffset, poolOffset + bytes)
  poolOffset += bytes
  return hex
}
export const randomTraceId = (): string => {
  const id = randomHex(16)
  return id === ZERO_TRACE ? randomTraceId() : id
}
export const randomSpanId = (): string => {
  const id = randomHex(8)
  return id === ZERO_SPAN ? randomSpanId() : id
}

/** What a listener's requests need to trace, compiled with the config. */
export interface RequestTracing {
  readonly tracer: Tracer.Tracer
  readonly sampleRatio: number
  readonly listener: string
}

/**
 * Parent-based sampling, as OpenTelemetry's default `ParentBased(TraceIdRatioBased)`: a valid
 * incoming `traceparent` decides; otherwise `sampleRatio` of requests start a trace.
 */
export const shouldSample = (parent: TraceParent | undefined, sampleRatio: number, random: () => number = Math.random): boolean =>
  parent !== undefined ? parent.sampled : sampleRatio > 0 && random() < sampleRatio

// Wall-clock nanoseconds from the monotonic clock: one BigInt of the time origin, then
// microsecond-precision offsets, so spans of one request order exactly.
const ORIGIN_NS = BigInt(Math.round(performance.timeOrigin * 1000)) * 1000n
export const nowNanos = (): bigint => ORIGIN_NS + BigInt(Math.round(performance.now() * 1000)) * 1000n

const noAnnotations = Context.empty()
const noLinks: Array<Tracer.SpanLink> = []

/** Starts a span through the tracer, the way Effect's own `Effect.withSpan` would. */
export const startSpan = (
  tracer: Tracer.Tracer,
  name: string,
  kind: Tracer.SpanKind,
  parent: Tracer.AnySpan | undefined,
  startTime: bigint = nowNanos()
): Tracer.Span =>
  tracer.span({
    name,
    parent: parent === undefined ? Option.none() : Option.some(parent),
    annotations: noAnnotations,
    links: noLinks,
    startTime,
    kind,
    root: parent === undefined,
    sampled: true
  })

/** The parent a server span continues: the client's span, when it sent a valid `traceparent`. */
export const externalParent = (parent: TraceParent | undefined): Tracer.ExternalSpan | undefined =>
  parent === undefined ? undefined : Tracer.externalSpan({ traceId: parent.traceId, spanId: parent.spanId, sampled: true })

const ok = Exit.succeed(undefined)
// One failed exit per error name, made once: no stack (a gateway error is not an exception in
// the gateway's code, and capturing one per failed request would cost on the hot path).
const failures = new Map<string, Exit.Exit<never, Error>>()
const failureOf = (name: string): Exit.Exit<never, Error> => {
  let exit = failures.get(name)
  if (exit === undefined) {
    const error = new Error(name)
    error.name = name
    error.stack = ""
    failures.set(name, exit = Exit.fail(error))
  }
  return exit
}

/** Ends a span: success, or an error named by `error` (a gateway error tag or a status). */
export const endSpan = (span: Tracer.Span, error: string | undefined): void => {
  span.end(nowNanos(), error === undefined ? ok : failureOf(error))
}
