/**
 * An OTLP/HTTP traces receiver for tests: accepts the JSON encoding on `POST /v1/traces` (or
 * the path it is given), decodes every span and keeps it, with attributes flattened to plain
 * values. It can also play a broken collector that answers every export with one status.
 */
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import { createServer } from "node:http"
import type { AddressInfo } from "node:net"

export interface ReceivedSpan {
  readonly serviceName: string | undefined
  readonly traceId: string
  readonly spanId: string
  readonly parentSpanId: string | undefined
  readonly name: string
  /** OTLP span kind: 2 server, 3 client. */
  readonly kind: number
  readonly startTimeUnixNano: bigint
  readonly endTimeUnixNano: bigint
  readonly attributes: Record<string, unknown>
  /** 0 unset, 1 ok, 2 error. */
  readonly status: number
}

interface AnyValue {
  readonly stringValue?: string
  readonly intValue?: string | number
  readonly doubleValue?: number
  readonly boolValue?: boolean
}
interface KeyValue {
  readonly key: string
  readonly value: AnyValue
}

const decodeValue = (v: AnyValue): unknown =>
  v.stringValue ?? (v.intValue !== undefined ? Number(v.intValue) : undefined) ?? v.doubleValue ?? v.boolValue

const decodeAttributes = (attributes: ReadonlyArray<KeyValue> | undefined): Record<string, unknown> =>
  Object.fromEntries((attributes ?? []).map((kv) => [kv.key, decodeValue(kv.value)]))

export interface OtlpReceiver {
  /** The traces endpoint, for `telemetry.tracing.otlp_endpoint`. */
  readonly url: string
  /** `http://127.0.0.1:<port>`, with no path: an OTLP base URL. */
  readonly origin: string
  readonly spans: Array<ReceivedSpan>
  /** How many export requests were accepted. */
  readonly requests: () => number
  /** The request target (path and query) of every request that arrived, accepted or not. */
  readonly targets: Array<string>
}

export interface OtlpReceiverOptions {
  /** The request target spans are accepted at; default `/v1/traces`. Any other gets a 400. */
  readonly path?: string
  /** Answer every request with this status and keep nothing (a broken collector). */
  readonly status?: number
}

export const startOtlpReceiverWith = (options: OtlpReceiverOptions = {}): Effect.Effect<OtlpReceiver, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.callback<OtlpReceiver & { readonly close: () => Promise<void> }>((resume) => {
      const path = options.path ?? "/v1/traces"
      const spans: Array<ReceivedSpan> = []
      const targets: Array<string> = []
      let requests = 0
      const server = createServer((req, res) => {
        const chunks: Array<Buffer> = []
        targets.push(req.url ?? "")
        req.on("data", (c: Buffer) => chunks.push(c))
        req.on("end", () => {
          if (options.status !== undefined) {
            res.writeHead(options.status, { "content-type": "application/json" }).end("{}")
            return
          }
          if (req.method !== "POST" || req.url !== path || !String(req.headers["content-type"]).includes("json")) {
            res.writeHead(400).end()
            return
          }
          requests++
          const body = JSON.parse(Buffer.concat(chunks).toString("utf8"))
          for (const rs of body.resourceSpans ?? []) {
            const resource = decodeAttributes(rs.resource?.attributes)
            for (const ss of rs.scopeSpans ?? []) {
              for (const s of ss.spans ?? []) {
                spans.push({
                  serviceName: resource["service.name"] as string | undefined,
                  traceId: s.traceId,
                  spanId: s.spanId,
                  parentSpanId: s.parentSpanId === "" ? undefined : s.parentSpanId,
                  name: s.name,
                  kind: s.kind,
                  startTimeUnixNano: BigInt(s.startTimeUnixNano),
                  endTimeUnixNano: BigInt(s.endTimeUnixNano),
                  attributes: decodeAttributes(s.attributes),
                  status: s.status?.code ?? 0
                })
              }
            }
          }
          res.writeHead(200, { "content-type": "application/json" }).end("{}")
        })
      })
      server.listen(0, "127.0.0.1", () => {
        const port = (server.address() as AddressInfo).port
        resume(Effect.succeed({
          url: `http://127.0.0.1:${port}${path}`,
          origin: `http://127.0.0.1:${port}`,
          spans,
          requests: () => requests,
          targets,
          close: () => new Promise<void>((done) => server.close(() => done()))
        }))
      })
    }),
    (receiver) => Effect.promise(() => receiver.close())
  )

export const startOtlpReceiver: Effect.Effect<OtlpReceiver, never, Scope.Scope> = startOtlpReceiverWith()

/** Waits (in real time, at most `timeoutMs`) until `done` holds; the spans are exported in batches. */
export const eventually = (done: () => boolean, timeoutMs = 5000): Effect.Effect<boolean> =>
  Effect.promise(async () => {
    const deadline = Date.now() + timeoutMs
    while (!done() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10))
    return done()
  })
