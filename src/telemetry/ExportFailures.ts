/**
 * Failed span exports, made visible. Effect's OTLP exporter (`effect/observability/OtlpExporter`)
 * retries a transient failure (a network error, 408, 429, 5xx) up to 3 times, then drops the
 * batch and stops exporting for 60 s, logging only at Debug level: a collector that is down or a
 * wrong URL loses every span without a word. The exporter takes its `HttpClient` from the
 * context, so `observe` wraps that client to see the outcome of every request it sends
 * (retries included), and a reporter counts each failure and logs, at most once an interval,
 * how many failed since its last line and why.
 */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as HttpClient from "effect/http/HttpClient"
import * as HttpClientError from "effect/http/HttpClientError"
import type * as HttpClientResponse from "effect/http/HttpClientResponse"
import * as UrlParams from "effect/http/UrlParams"
import * as Predicate from "effect/Predicate"

/** Why one export request failed. */
export interface ExportFailure {
  /** The metric label: `http_<status>`, `network` (no response) or `error` (anything else). */
  readonly reason: string
  /** For the log: `HTTP 404`, `network error: connect ECONNREFUSED 127.0.0.1:4318`, … */
  readonly detail: string
}

/** Hears the outcome of each export request. */
export interface ExportReporter {
  readonly failure: (failure: ExportFailure) => Effect.Effect<void>
  readonly success: Effect.Effect<void>
}

/** A response outside 2xx is a failure, as the exporter's own `filterStatusOk` judges it. */
export const failureOfResponse = (response: HttpClientResponse.HttpClientResponse): ExportFailure | undefined =>
  response.status >= 200 && response.status < 300
    ? undefined
    : { reason: `http_${response.status}`, detail: `HTTP ${response.status}` }

// The innermost cause says most (fetch's "fetch failed" wraps the socket's ECONNREFUSED).
const innermost = (cause: unknown): string | undefined => {
  let message: string | undefined
  for (let c = cause, depth = 0; Predicate.isObject(c) && depth < 8; c = (c as { cause?: unknown }).cause, depth++) {
    const m = (c as { message?: unknown }).message
    const code = (c as { code?: unknown }).code
    if (Predicate.isString(m) && m !== "") message = m
    else if (Predicate.isString(code)) message = code
  }
  return message
}

export const failureOfError = (error: unknown): ExportFailure => {
  if (HttpClientError.isHttpClientError(error) && error.reason._tag === "TransportError") {
    return { reason: "network", detail: `network error: ${error.reason.description ?? innermost(error.reason.cause) ?? "unknown"}` }
  }
  return { reason: "error", detail: Predicate.hasProperty(error, "message") ? String(error.message) : String(error) }
}

/**
 * Wraps the client given to Effect's OTLP exporter so that `reporter` hears of every request's
 * outcome; what the exporter sees is unchanged.
 *
 * @example
 * OtlpTracer.make({ url }).pipe(Effect.updateService(HttpClient.HttpClient, observe(reporter)))
 */
export const observe = (reporter: ExportReporter) => <E, R>(client: HttpClient.HttpClient.With<E, R>): HttpClient.HttpClient.With<E, R> =>
  HttpClient.transform(client, (response) =>
    response.pipe(
      Effect.tap((res) => {
        const failure = failureOfResponse(res)
        return failure === undefined ? reporter.success : reporter.failure(failure)
      }),
      Effect.tapError((error) => reporter.failure(failureOfError(error)))
    ))

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? "" : "s"}`

/**
 * A reporter that counts every failure with `count(reason)` and writes at most one log line an
 * `interval` (default 1 minute; time from `Clock`):
 *
 * - a warning on a failure when none was logged within the interval:
 *   `tracing: 3 OTLP export requests to <url> failed in the last 65s (last: HTTP 404); spans of a failed batch are dropped`
 *   (the first line has no "in the last …");
 * - after failures, on the first success at least an interval after the last line:
 *   `tracing: OTLP export to <url> works again; 1 more request failed since the last line (last: HTTP 500)`.
 *
 * The URL is logged without credentials or secret query values.
 */
export const makeReporter = (options: {
  readonly url: string
  readonly interval?: Duration.Input | undefined
  readonly count: (reason: string) => Effect.Effect<void>
}): ExportReporter => {
  const url = UrlParams.redactUrl(options.url)
  const intervalMs = Duration.toMillis(options.interval ?? Duration.minutes(1))
  let lastLineAt: number | undefined
  // Failures since the last line, and the last one's detail.
  let unreported = 0
  let lastDetail = ""
  // A failure happened that no "works again" line has followed yet.
  let failing = false
  const due = (now: number) => lastLineAt === undefined || now - lastLineAt >= intervalMs

  const failure = (f: ExportFailure): Effect.Effect<void> =>
    Effect.andThen(
      options.count(f.reason),
      Effect.flatMap(Clock.currentTimeMillis, (now) => {
        unreported++
        lastDetail = f.detail
        failing = true
        if (!due(now)) return Effect.void
        const since = lastLineAt === undefined ? "" : ` in the last ${Math.round((now - lastLineAt) / 1000)}s`
        const message = `tracing: ${plural(unreported, "OTLP export request")} to ${url} failed${since} (last: ${lastDetail}); ` +
          "spans of a failed batch are dropped"
        lastLineAt = now
        unreported = 0
        return Effect.logWarning(message)
      })
    )

  const success: Effect.Effect<void> = Effect.suspend(() =>
    !failing ? Effect.void : Effect.flatMap(Clock.currentTimeMillis, (now) => {
      if (!failing || !due(now)) return Effect.void
      const more = unreported === 0 ? "" : `; ${plural(unreported, "more request")} failed since the last line (last: ${lastDetail})`
      lastLineAt = now
      unreported = 0
      failing = false
      return Effect.logInfo(`tracing: OTLP export to ${url} works again${more}`)
    })
  )

  return { failure, success }
}
