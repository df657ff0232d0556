import { assert, describe, it } from "@effect/vitest"
import { Effect, Logger } from "effect"
import * as HttpClient from "effect/http/HttpClient"
import * as HttpClientError from "effect/http/HttpClientError"
import * as HttpClientRequest from "effect/http/HttpClientRequest"
import * as HttpClientResponse from "effect/http/HttpClientResponse"
import { TestClock } from "effect/testing"
import { type ExportFailure, makeReporter, observe } from "../../src/telemetry/ExportFailures.ts"

const URL = "http://collector:4318/v1/traces"

/** A reporter whose log lines and counted reasons the test reads. */
const setup = Effect.sync(() => {
  const lines: Array<{ level: string; message: string }> = []
  const counted: Array<string> = []
  const logger = Logger.make((options) => {
    const m = options.message
    lines.push({ level: options.logLevel, message: Array.isArray(m) ? m.map(String).join(" ") : String(m) })
  })
  const reporter = makeReporter({ url: URL, interval: "60 seconds", count: (reason) => Effect.sync(() => counted.push(reason)) })
  return { lines, counted, reporter, logger: Logger.layer([logger]) }
})

const http500: ExportFailure = { reason: "http_500", detail: "HTTP 500" }
const http404: ExportFailure = { reason: "http_404", detail: "HTTP 404" }

describe("ExportFailures reporter", () => {
  it.effect("failures within the interval make one warning, and each is counted", () =>
    Effect.gen(function*() {
      const { lines, counted, reporter, logger } = yield* setup
      yield* Effect.gen(function*() {
        yield* reporter.failure(http500)
        yield* TestClock.adjust("10 seconds")
        yield* reporter.failure(http500)
        yield* TestClock.adjust("49 seconds")
        yield* reporter.failure(http404)
      }).pipe(Effect.provide(logger))
      assert.deepStrictEqual(counted, ["http_500", "http_500", "http_404"])
      assert.strictEqual(lines.length, 1)
      assert.strictEqual(lines[0].level, "Warn")
      assert.strictEqual(
        lines[0].message,
        `tracing: 1 OTLP export request to ${URL} failed (last: HTTP 500); spans of a failed batch are dropped`
      )
    }))

  it.effect("the first failure after the interval logs again, with how many failed since the last line and the last reason", () =>
    Effect.gen(function*() {
      const { lines, reporter, logger } = yield* setup
      yield* Effect.gen(function*() {
        yield* reporter.failure(http500)
        yield* TestClock.adjust("10 seconds")
        yield* reporter.failure(http500)
        yield* reporter.failure(http500)
        yield* TestClock.adjust("55 seconds")
        yield* reporter.failure(http404)
      }).pipe(Effect.provide(logger))
      assert.strictEqual(lines.length, 2)
      assert.strictEqual(
        lines[1].message,
        `tracing: 3 OTLP export requests to ${URL} failed in the last 65s (last: HTTP 404); spans of a failed batch are dropped`
      )
    }))

  it.effect("a success after failures says export works again, once, no sooner than the interval after the last line", () =>
    Effect.gen(function*() {
      const { lines, reporter, logger } = yield* setup
      yield* Effect.gen(function*() {
        yield* reporter.failure(http500)
        yield* reporter.success
        yield* TestClock.adjust("30 seconds")
        yield* reporter.failure(http500)
        yield* reporter.success
        assert.strictEqual(lines.length, 1, "within the interval: nothing more")
        yield* TestClock.adjust("30 seconds")
        yield* reporter.success
        yield* reporter.success
      }).pipe(Effect.provide(logger))
      assert.strictEqual(lines.length, 2)
      assert.strictEqual(lines[1].level, "Info")
      assert.strictEqual(
        lines[1].message,
        `tracing: OTLP export to ${URL} works again; 1 more request failed since the last line (last: HTTP 500)`
      )
    }))

  it.effect("successes alone log nothing", () =>
    Effect.gen(function*() {
      const { lines, counted, reporter, logger } = yield* setup
      yield* Effect.gen(function*() {
        for (let i = 0; i < 3; i++) {
          yield* reporter.success
          yield* TestClock.adjust("2 minutes")
        }
      }).pipe(Effect.provide(logger))
      assert.deepStrictEqual(lines, [])
      assert.deepStrictEqual(counted, [])
    }))

  it.effect("the log names the endpoint without its credentials", () =>
    Effect.gen(function*() {
      const { lines, logger } = yield* setup
      const reporter = makeReporter({ url: "http://user:secret@collector:4318/v1/traces", count: () => Effect.void })
      yield* reporter.failure(http404).pipe(Effect.provide(logger))
      assert.notInclude(lines[0].message, "secret")
    }))
})

describe("observe (the HttpClient given to Effect's OTLP exporter)", () => {
  /** What the reporter heard when `client` answered one export request through `observe`. */
  const heard = (client: HttpClient.HttpClient) =>
    Effect.gen(function*() {
      const failures: Array<ExportFailure> = []
      let successes = 0
      const observed = observe({
        failure: (f) => Effect.sync(() => failures.push(f)),
        success: Effect.sync(() => successes++)
      })(client)
      yield* Effect.ignore(observed.execute(HttpClientRequest.post(URL)))
      return { failures, successes }
    })
  const answering = (status: number) =>
    HttpClient.make((request) => Effect.succeed(HttpClientResponse.fromWeb(request, new Response(null, { status }))))

  it.effect("a 2xx response is a success", () =>
    Effect.gen(function*() {
      assert.deepStrictEqual(yield* heard(answering(200)), { failures: [], successes: 1 })
      assert.deepStrictEqual(yield* heard(answering(204)), { failures: [], successes: 1 })
    }))

  it.effect("any other status is a failure named by its status", () =>
    Effect.gen(function*() {
      assert.deepStrictEqual(yield* heard(answering(404)), { failures: [{ reason: "http_404", detail: "HTTP 404" }], successes: 0 })
      assert.deepStrictEqual(yield* heard(answering(503)), { failures: [{ reason: "http_503", detail: "HTTP 503" }], successes: 0 })
    }))

  it.effect("a transport error is a network failure naming the underlying error", () =>
    Effect.gen(function*() {
      const refused = Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:1"), { code: "ECONNREFUSED" })
      const client = HttpClient.make((request) =>
        Effect.fail(
          new HttpClientError.HttpClientError({
            reason: new HttpClientError.TransportError({ request, cause: new TypeError("fetch failed", { cause: refused }) })
          })
        )
      )
      assert.deepStrictEqual(yield* heard(client), {
        failures: [{ reason: "network", detail: "network error: connect ECONNREFUSED 127.0.0.1:1" }],
        successes: 0
      })
    }))
})
