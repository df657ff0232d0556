import { assert, describe, it } from "@effect/vitest"
import { tracesUrl } from "../../src/telemetry/OtlpEndpoint.ts"

describe("tracesUrl (OTLP/HTTP base URL vs traces URL)", () => {
  it("appends /v1/traces to a URL without a path", () => {
    assert.strictEqual(tracesUrl("http://collector:4318"), "http://collector:4318/v1/traces")
    assert.strictEqual(tracesUrl("https://otlp.example.com"), "https://otlp.example.com/v1/traces")
  })

  it("appends /v1/traces to a URL whose path is only /", () => {
    assert.strictEqual(tracesUrl("http://collector:4318/"), "http://collector:4318/v1/traces")
  })

  it("uses a URL with a path exactly as given", () => {
    assert.strictEqual(tracesUrl("http://collector:4318/v1/traces"), "http://collector:4318/v1/traces")
    assert.strictEqual(tracesUrl("http://collector:4318/custom/traces"), "http://collector:4318/custom/traces")
    assert.strictEqual(tracesUrl("https://vendor.example.com/otlp"), "https://vendor.example.com/otlp", "no /v1/traces under a base path")
  })

  it("keeps a trailing slash of a longer path as given", () => {
    assert.strictEqual(tracesUrl("http://collector:4318/otlp/"), "http://collector:4318/otlp/")
    assert.strictEqual(tracesUrl("http://collector:4318//"), "http://collector:4318//")
  })

  it("keeps the query string, before which the path is inserted", () => {
    assert.strictEqual(tracesUrl("http://collector:4318?tenant=a&x=1"), "http://collector:4318/v1/traces?tenant=a&x=1")
    assert.strictEqual(tracesUrl("http://collector:4318/?tenant=a"), "http://collector:4318/v1/traces?tenant=a")
    assert.strictEqual(tracesUrl("http://collector:4318/custom?tenant=a"), "http://collector:4318/custom?tenant=a")
  })

  it("keeps user info and the port", () => {
    assert.strictEqual(tracesUrl("http://user:secret@collector:4318"), "http://user:secret@collector:4318/v1/traces")
  })
})
