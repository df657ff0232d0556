/**
 * Where OTLP/HTTP spans are posted, from `telemetry.tracing.otlp_endpoint`.
 *
 * OpenTelemetry has two kinds of endpoint: a base URL (`OTEL_EXPORTER_OTLP_ENDPOINT`, e.g.
 * `http://collector:4318`) to which each signal appends its path, and a signal's own URL
 * (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`), used as given. One key serves both here: a URL
 * without a path is a base URL, any path makes it the traces URL. Effect's `OtlpTracer` posts to
 * the URL it is handed, so `http://collector:4318` alone would post to `/` (a collector answers
 * 404 there).
 */

/** The path of OTLP/HTTP traces under a base URL (OTLP specification, "OTLP/HTTP Request"). */
export const TRACES_PATH = "/v1/traces"

/**
 * The URL to post spans to: `/v1/traces` when `endpoint` has no path (or only `/`), keeping its
 * query string; otherwise `endpoint` exactly as written.
 *
 * @example
 * tracesUrl("http://collector:4318")            // => "http://collector:4318/v1/traces"
 * tracesUrl("http://collector:4318/?tenant=a")  // => "http://collector:4318/v1/traces?tenant=a"
 * tracesUrl("https://vendor.example.com/otlp")  // => "https://vendor.example.com/otlp"
 */
export const tracesUrl = (endpoint: string): string => {
  // The config schema only lets http(s) URLs through; anything else is left to the exporter.
  if (!URL.canParse(endpoint)) return endpoint
  const url = new URL(endpoint)
  if (url.pathname !== "/") return endpoint
  url.pathname = TRACES_PATH
  return url.href
}
