import { assert, describe, it } from "@effect/vitest"
import * as NodeSdk from "@effect/opentelemetry/NodeSdk"
import { AlwaysOffSampler, InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base"
import { SpanKind } from "@opentelemetry/api"
import { Context, Effect, Layer } from "effect"
import * as References from "effect/References"
import { ConfigSource, Gateway, Listeners, Tracing } from "../../src/index.ts"
import { request, simpleConfig, startUpstream } from "../support/harness.ts"

describe("Tracing.layerFromContext with @effect/opentelemetry", () => {
  it.live("a program running the OpenTelemetry NodeSdk gets the gateway's spans through its own span processor", () =>
    Effect.gen(function*() {
      const exporter = new InMemorySpanExporter()
      const upstream = yield* startUpstream("otel-sdk")
      // What a library user writes: the gateway, its Tracing taken from the program's Tracer,
      // and the OpenTelemetry SDK providing that Tracer.
      const gateway = Gateway.layerWith(ConfigSource.layerValue(simpleConfig([upstream.url])), { tracing: Tracing.layerFromContext }).pipe(
        Layer.provide(NodeSdk.layer(() => ({
          resource: { serviceName: "library-user" },
          spanProcessor: new SimpleSpanProcessor(exporter)
        })))
      )
      const context = yield* Layer.build(gateway).pipe(Effect.provideService(References.MinimumLogLevel, "Warn"))
      const port = Context.get(context, Listeners).addresses.get("web")!.port
      const parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
      assert.strictEqual((yield* request(`http://127.0.0.1:${port}/lib`, { headers: { traceparent: parent } })).status, 200)
      const spans = exporter.getFinishedSpans()
      const server = spans.find((s) => s.kind === SpanKind.SERVER)
      const client = spans.find((s) => s.kind === SpanKind.CLIENT)
      assert.isDefined(server)
      assert.isDefined(client)
      assert.strictEqual(server!.spanContext().traceId, "0af7651916cd43dd8448eb211c80319c")
      assert.strictEqual(server!.parentSpanContext?.spanId, "b7ad6b7169203331")
      assert.strictEqual(server!.attributes["http.route"], "all")
      assert.strictEqual(server!.attributes["http.response.status_code"], 200)
      assert.strictEqual(client!.parentSpanContext?.spanId, server!.spanContext().spanId)
      assert.strictEqual(server!.resource.attributes["service.name"], "library-user")
      assert.strictEqual(
        upstream.seen[0].headers["traceparent"],
        `00-0af7651916cd43dd8448eb211c80319c-${client!.spanContext().spanId}-01`
      )
    }))

  it.live("the SDK's sampler decides: a span it drops is sent upstream flagged not sampled, and nothing is exported", () =>
    Effect.gen(function*() {
      const exporter = new InMemorySpanExporter()
      const upstream = yield* startUpstream("otel-sampled-out")
      const gateway = Gateway.layerWith(ConfigSource.layerValue(simpleConfig([upstream.url])), { tracing: Tracing.layerFromContext }).pipe(
        Layer.provide(NodeSdk.layer(() => ({
          resource: { serviceName: "library-user" },
          spanProcessor: new SimpleSpanProcessor(exporter),
          tracerConfig: { sampler: new AlwaysOffSampler() }
        })))
      )
      const context = yield* Layer.build(gateway).pipe(Effect.provideService(References.MinimumLogLevel, "Warn"))
      const port = Context.get(context, Listeners).addresses.get("web")!.port
      assert.strictEqual((yield* request(`http://127.0.0.1:${port}/off`)).status, 200)
      assert.match(String(upstream.seen[0].headers["traceparent"]), /^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/)
      assert.strictEqual(exporter.getFinishedSpans().length, 0)
    }))
})
