/**
 * `telemetry.tracing.export_interval` defaults to 5s: a real gateway built under TestClock (the
 * exporter's schedule runs on Effect's Clock), a real request, and the OTLP exporter's first
 * `fetch` counted: none at 4.999 s, one at 5 s, and the spans reach a real receiver.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { TestClock } from "effect/testing"
import { vi } from "vitest"
import { simpleConfig, startGateway, startUpstream } from "../support/harness.ts"
import { send } from "../support/http.ts"
import { eventually, startOtlpReceiver } from "../support/otlp.ts"

/** Lets the gateway's fibers run until they wait again (virtual time does not move). */
const settle = Effect.gen(function*() {
  for (let i = 0; i < 50; i++) yield* Effect.yieldNow
  yield* TestClock.adjust(0)
  for (let i = 0; i < 50; i++) yield* Effect.yieldNow
})

describe("tracing: the default export interval", () => {
  it.effect("without export_interval, buffered spans are sent 5 s after the exporter starts, not sooner", () =>
    Effect.gen(function*() {
      // Installed before any gateway exists, so Effect's FetchHttpClient picks it up as its fetch.
      const fetchSpy = vi.spyOn(globalThis, "fetch")
      yield* Effect.addFinalizer(() => Effect.sync(() => fetchSpy.mockRestore()))
      const receiver = yield* startOtlpReceiver
      const upstream = yield* startUpstream("interval")
      const gateway = yield* startGateway({
        ...simpleConfig([upstream.url]),
        telemetry: { tracing: { otlp_endpoint: receiver.url } }
      })
      assert.strictEqual((yield* send(gateway.url("/traced"))).status, 200)
      const exports = () => fetchSpy.mock.calls.filter(([input]) => String(input instanceof Request ? input.url : input) === receiver.url).length
      yield* settle
      yield* TestClock.adjust("4999 millis")
      yield* settle
      assert.strictEqual(exports(), 0, "nothing is sent before 5 s")
      yield* TestClock.adjust("1 millis")
      yield* settle
      assert.strictEqual(exports(), 1, "the batch is sent at 5 s")
      assert.isTrue(yield* eventually(() => receiver.spans.length >= 2), "the spans reach the receiver")
    }))
})
