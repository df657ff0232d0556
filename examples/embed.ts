/**
 * fibergate as a library (the README's example): an Effect program that runs a gateway in
 * front of an upstream, sends one request through it, and stops it by closing its scope.
 *
 *   npx node examples/embed.ts                        # starts its own upstream on 127.0.0.1:0
 *   npx node examples/embed.ts http://127.0.0.1:3000  # proxies to an upstream you run
 */
import { Console, Effect, type Scope } from "effect"
import { createServer } from "node:http"
import type { AddressInfo } from "node:net"
import { type ConfigError, Gateway, type ListenError, Listeners } from "../src/index.ts"

/** A tiny upstream on a free loopback port, closed with the scope. Answers with what it got. */
const localUpstream: Effect.Effect<string, never, Scope.Scope> = Effect.acquireRelease(
  Effect.callback<ReturnType<typeof createServer>>((resume) => {
    const server = createServer((req, res) => {
      const text = `hello from the upstream: ${req.method} ${req.url}`
      res.writeHead(200, { "content-type": "text/plain", "content-length": Buffer.byteLength(text) })
      res.end(text)
    })
    server.listen(0, "127.0.0.1", () => resume(Effect.succeed(server)))
  }),
  (server) =>
    Effect.callback<void>((resume) => {
      server.closeAllConnections()
      server.close(() => resume(Effect.void))
    })
).pipe(Effect.map((server) => `http://127.0.0.1:${(server.address() as AddressInfo).port}`))

/** What went through the gateway: the port it was bound to and the response it gave. */
export interface EmbedResult {
  readonly port: number
  readonly status: number
  readonly body: string
}

/** Sends one request through the running gateway; the port comes from the `Listeners` service. */
const requestThroughGateway = Effect.gen(function*() {
  // With port 0 the OS picks the port: the Listeners service says which one.
  const { addresses } = yield* Listeners
  const port = addresses.get("web")!.port
  const response = yield* Effect.promise(async () => {
    const res = await fetch(`http://127.0.0.1:${port}/hello?from=embed`)
    return { status: res.status, body: await res.text() }
  })
  yield* Console.log(`GET /hello?from=embed via 127.0.0.1:${port} -> ${response.status} ${response.body}`)
  return { port, ...response }
})

/**
 * Runs a gateway (listening on 127.0.0.1:0) in front of `upstreamUrl`, or in front of a local
 * upstream when none is given. The gateway lives exactly as long as its scope: when the request
 * is done the scope closes, the listener stops accepting and drains, and the upstream pools close.
 */
export const embed = (upstreamUrl?: string): Effect.Effect<EmbedResult, ConfigError | ListenError> =>
  Effect.gen(function*() {
    const upstream = upstreamUrl ?? (yield* localUpstream)
    return yield* requestThroughGateway.pipe(
      // The config is a value, written as it would be in YAML (durations as strings).
      Effect.provide(Gateway.layer({
        servers: [{ name: "web", listen: "127.0.0.1:0", routes: [{ id: "all", upstream: "app", timeout: "5s" }] }],
        upstreams: { app: { endpoints: [{ url: upstream }] } }
      }))
    )
  }).pipe(Effect.scoped) // closes the local upstream too

/** The example as run by `npx node examples/embed.ts`. */
export const program: Effect.Effect<EmbedResult, ConfigError | ListenError> = embed()

if (import.meta.main) {
  Effect.runPromise(embed(process.argv[2])).catch((error) => {
    console.error(String(error))
    process.exitCode = 1
  })
}
