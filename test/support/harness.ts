/**
 * Test support: real upstream servers on loopback (port 0) and a real gateway built from a
 * config value, both scoped to the test. Nothing here is mocked.
 */
import type { Middleware } from "../../src/middleware/Middleware.ts"
import { Context, Effect, Layer, References, type Scope } from "effect"
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http"
import type { AddressInfo } from "node:net"
import * as Gateway from "../../src/gateway/Gateway.ts"
import { Admin } from "../../src/admin/Admin.ts"
import { Listeners } from "../../src/listener/Listeners.ts"
import { RouteTable } from "../../src/proxy/RouteTable.ts"
import { ConfigSource } from "../../src/config/ConfigSource.ts"
import type { ConfigError } from "../../src/config/ConfigError.ts"
import type { Tracing } from "../../src/telemetry/Tracing.ts"

/** What an upstream saw of one request. */
export interface SeenRequest {
  readonly method: string
  readonly url: string
  readonly headers: IncomingMessage["headers"]
  readonly rawHeaders: ReadonlyArray<string>
  readonly body: Buffer
}

export interface TestUpstream {
  readonly name: string
  readonly url: string
  readonly port: number
  readonly server: Server
  /** Every request received, in order of completion of its body. */
  readonly seen: Array<SeenRequest>
}

export type UpstreamHandler = (req: IncomingMessage, res: ServerResponse, body: Buffer) => void

/** Answers 200 with a JSON echo: `{ upstream, method, url, headers, bodyBytes }`. */
export const echoHandler = (name: string): UpstreamHandler => (req, res, body) => {
  const text = JSON.stringify({ upstream: name, method: req.method, url: req.url, headers: req.headers, bodyBytes: body.length })
  res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(text), "x-upstream": name })
  res.end(req.method === "HEAD" ? undefined : text)
}

/**
 * Starts an upstream on 127.0.0.1:0 for the life of the scope. By default it buffers the
 * request body and answers with `echoHandler`; `rawHandler` gets the request unbuffered.
 */
export const startUpstream = (
  name: string,
  options: { readonly handler?: UpstreamHandler; readonly rawHandler?: (req: IncomingMessage, res: ServerResponse) => void } = {}
): Effect.Effect<TestUpstream, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.callback<TestUpstream>((resume) => {
      const seen: Array<SeenRequest> = []
      const handler = options.handler ?? echoHandler(name)
      const server = createServer((req, res) => {
        if (options.rawHandler !== undefined) return options.rawHandler(req, res)
        const chunks: Array<Buffer> = []
        req.on("data", (c: Buffer) => chunks.push(c))
        req.on("end", () => {
          const body = Buffer.concat(chunks)
          seen.push({ method: req.method ?? "", url: req.url ?? "", headers: req.headers, rawHeaders: req.rawHeaders, body })
          handler(req, res, body)
        })
      })
      server.listen(0, "127.0.0.1", () => {
        const port = (server.address() as AddressInfo).port
        resume(Effect.succeed({ name, url: `http://127.0.0.1:${port}`, port, server, seen }))
      })
    }),
    (u) =>
      Effect.callback<void>((resume) => {
        u.server.closeAllConnections()
        u.server.close(() => resume(Effect.void))
      })
  )

export interface TestGateway {
  /** Port of the first listener (by config order). */
  readonly port: number
  readonly ports: ReadonlyMap<string, number>
  readonly adminPort: number | undefined
  readonly url: (path: string, listener?: string) => string
  readonly services: {
    readonly routes: RouteTable["Service"]
    readonly config: ConfigSource["Service"]
  }
}

/**
 * Builds the real gateway Layer from a config value (as written in YAML) for the life of the
 * scope. Listen on `127.0.0.1:0` in test configs. `options.tracing` replaces the config's
 * tracing (e.g. with a tracer that records every span in memory).
 */
export const startGateway = (
  config: unknown,
  options: {
    readonly tracing?: Layer.Layer<Tracing, never, ConfigSource>
    /** Custom middlewares (with their services provided) by the names `custom:` refers to. */
    readonly middlewares?: Readonly<Record<string, Middleware>>
  } = {}
): Effect.Effect<TestGateway, unknown, Scope.Scope> =>
  Effect.gen(function*() {
    const layer = options.tracing === undefined && options.middlewares === undefined
      ? Gateway.layer(config)
      : Gateway.layerWith<ConfigError>(ConfigSource.layerValue(config), {
        ...(options.tracing === undefined ? {} : { tracing: options.tracing }),
        ...(options.middlewares === undefined ? {} : { middlewares: options.middlewares })
      })
    // Startup lines ("listener web on ...") are noise in test output.
    const context = yield* Layer.build(layer).pipe(Effect.provideService(References.MinimumLogLevel, "Warn"))
    const listeners = Context.get(context, Listeners)
    const admin = Context.get(context, Admin)
    const routes = Context.get(context, RouteTable)
    const source = Context.get(context, ConfigSource)
    const ports = new Map([...listeners.addresses].map(([name, a]) => [name, a.port]))
    const first = [...ports.values()][0]
    return {
      port: first,
      ports,
      adminPort: admin.address?.port,
      url: (path, listener) => `http://127.0.0.1:${listener === undefined ? first : ports.get(listener)}${path}`,
      services: { routes, config: source }
    }
  })

/** A one-listener, one-upstream config on loopback; `extra` is merged into the route. */
export const simpleConfig = (
  upstreams: ReadonlyArray<string>,
  route: Record<string, unknown> = {},
  upstream: Record<string, unknown> = {}
) => ({
  admin: { listen: "127.0.0.1:0" },
  log: { level: "none", access_log: false },
  servers: [{ name: "web", listen: "127.0.0.1:0", routes: [{ id: "all", upstream: "app", ...route }] }],
  upstreams: { app: { endpoints: upstreams.map((url) => ({ url })), ...upstream } }
})

/** How long `request` waits for a complete response before it fails the test (well under the 30 s test timeout). */
export const REQUEST_TIMEOUT_MS = 15_000

/**
 * fetch as an Effect that fails the test on network errors, and when no complete response
 * arrived within `REQUEST_TIMEOUT_MS` (unless `init.signal` says otherwise): a gateway that hangs
 * fails the test with the request named, instead of hanging it.
 */
export const request = (url: string, init?: RequestInit) =>
  Effect.promise(async () => {
    const own = init?.signal == null ? AbortSignal.timeout(REQUEST_TIMEOUT_MS) : undefined
    try {
      const res = await fetch(url, own === undefined ? init : { ...init, signal: own })
      const body = await res.text()
      return { status: res.status, headers: res.headers, body }
    } catch (error) {
      if (own?.aborted === true) throw new Error(`${init?.method ?? "GET"} ${url}: no complete response within ${REQUEST_TIMEOUT_MS} ms`)
      throw error
    }
  })
