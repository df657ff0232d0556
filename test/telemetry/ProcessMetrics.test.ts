/**
 * The event-loop gauges of `ProcessMetrics` (README "Metrics"), read the way Prometheus reads
 * them: the Prometheus text of a registry of the test's own, scraped synchronously so that the
 * test decides exactly what happens between two scrapes. The event loop is blocked on purpose
 * (a busy loop), and the delay monitor is given one timer turn to record it; nothing is slept
 * to prove anything.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Layer, Metric } from "effect"
import { PrometheusMetrics } from "effect/observability"
import { ConfigSource } from "../../src/config/ConfigSource.ts"
import * as ProcessMetrics from "../../src/telemetry/ProcessMetrics.ts"

const config = {
  servers: [{ name: "web", listen: "127.0.0.1:0", routes: [{ id: "all", upstream: "app" }] }],
  upstreams: { app: { endpoints: [{ url: "http://127.0.0.1:9" }] } }
}

const STATS = ["min", "max", "mean", "stddev", "p50", "p90", "p99"] as const
const NAMES = ["nodejs_eventloop_lag_seconds", ...STATS.map((stat) => `nodejs_eventloop_lag_${stat}_seconds`)]

/** Every `nodejs_eventloop_lag*` sample of one scrape, by metric name; a missing one fails the test. */
const parse = (text: string): Record<string, number> => {
  const values: Record<string, number> = {}
  for (const name of NAMES) {
    const line = text.split("\n").find((l) => l.startsWith(`${name} `))
    assert.isDefined(line, `${name} is not in the scrape:\n${text}`)
    const value = Number(line!.slice(name.length + 1))
    assert.isTrue(Number.isFinite(value), `${name} is not a number: ${line}`)
    values[name] = value
  }
  return values
}

/** Holds the event loop (a busy loop, nothing else runs) for `ms`. */
const block = (ms: number) => {
  const until = performance.now() + ms
  while (performance.now() < until) {
    // busy
  }
}

/**
 * A timer `ms` from now. After a block, the delay monitor's overdue timer (10 ms resolution)
 * fires before it; `ms` above the resolution leaves the monitor a tick to sample.
 */
const timer = (ms: number) => Effect.promise(() => new Promise<void>((resolve) => setTimeout(resolve, ms)))
const timerTurn = timer(1)

const scrape = (context: Context.Context<never>) => parse(PrometheusMetrics.formatUnsafe(context))

/** A context holding a fresh metric registry with the process metrics registered in it, once the delay monitor is sampling. */
const withProcessMetrics = Effect.gen(function*() {
  const registry: Metric.MetricRegistry = new Map()
  yield* Layer.build(ProcessMetrics.layer.pipe(Layer.provide(ConfigSource.layerValue(config)))).pipe(
    Effect.provideService(Metric.MetricRegistry, registry)
  )
  const context = Context.make(Metric.MetricRegistry, registry) as Context.Context<never>
  // The monitor records a delay from its second timer tick on: wait (bounded) until it has one.
  for (let turns = 0; scrape(context).nodejs_eventloop_lag_max_seconds === 0; turns++) {
    assert.isBelow(turns, 100, "the event-loop delay monitor recorded nothing")
    yield* timer(25)
  }
  return context
})


describe("event-loop lag gauges (prom-client's names)", () => {
  it.live("a 250 ms block shows in max and p99 of the window it happened in, each statistic present and ordered, and not in the next window", () =>
    Effect.gen(function*() {
      const context = yield* withProcessMetrics
      scrape(context)
      // A histogram that was just reset records from its second tick on.
      yield* timer(25)
      block(250)
      yield* timerTurn
      const during = scrape(context)
      assert.isAtLeast(during.nodejs_eventloop_lag_max_seconds, 0.24, JSON.stringify(during))
      assert.isBelow(during.nodejs_eventloop_lag_max_seconds, 5, `seconds, not another unit: ${JSON.stringify(during)}`)
      assert.isAtLeast(during.nodejs_eventloop_lag_p99_seconds, 0.24, JSON.stringify(during))
      const s = (stat: string) => during[`nodejs_eventloop_lag_${stat}_seconds`]
      assert.isTrue(
        s("min") > 0 && s("min") <= s("p50") && s("p50") <= s("p90") && s("p90") <= s("p99") && s("p99") <= s("max") &&
          s("min") <= s("mean") && s("mean") <= s("max") && s("stddev") > 0,
        JSON.stringify(during)
      )
      // The next window starts at that scrape: the block is not in it (README: since the previous scrape).
      // 100 ms: the 10 ms sampler records from its second tick on, and a loaded machine delays ticks.
      yield* timer(100)
      yield* timerTurn
      const after = scrape(context)
      assert.isAbove(after.nodejs_eventloop_lag_max_seconds, 0, JSON.stringify(after))
      assert.isBelow(after.nodejs_eventloop_lag_max_seconds, 0.24, JSON.stringify(after))
    }))

  it.live("nodejs_eventloop_lag_seconds is how late the setImmediate queued at the previous scrape ran", () =>
    Effect.gen(function*() {
      const context = yield* withProcessMetrics
      // This scrape queues the probe; the block holds it back.
      scrape(context)
      block(250)
      yield* timerTurn
      const late = scrape(context)
      assert.isAtLeast(late.nodejs_eventloop_lag_seconds, 0.24, JSON.stringify(late))
      // The probe the last scrape queued ran at once.
      yield* timerTurn
      const prompt = scrape(context)
      assert.isAbove(prompt.nodejs_eventloop_lag_seconds, 0, JSON.stringify(prompt))
      assert.isBelow(prompt.nodejs_eventloop_lag_seconds, 0.24, JSON.stringify(prompt))
    }))

  it.live("a window with no sample (two scrapes in one tick) reports 0 for every statistic, not the histogram's 2^63 ns", () =>
    Effect.gen(function*() {
      const context = yield* withProcessMetrics
      scrape(context)
      const empty = scrape(context)
      for (const stat of STATS) assert.strictEqual(empty[`nodejs_eventloop_lag_${stat}_seconds`], 0, stat)
    }))
})
