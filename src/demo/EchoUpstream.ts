/**
 * A tiny upstream that answers every request with what it received, as JSON. `fibergate demo`
 * starts two of them so that a new user sees real proxied traffic with nothing else running.
 */
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import { nodeHttp } from "../config/NodeModules.ts"
import { listenScoped, type BoundAddress, type ListenError } from "../listener/Listen.ts"

/**
 * @example
 * const address = yield* echoUpstream("blue", { host: "127.0.0.1", port: 3001 })
 */
export const echoUpstream = (
  name: string,
  at: { readonly host: string; readonly port: number }
): Effect.Effect<BoundAddress, ListenError, Scope.Scope> => {
  const server = nodeHttp.createServer((req, res) => {
    let size = 0
    req.on("data", (chunk: Buffer) => (size += chunk.length))
    req.on("end", () => {
      const body = JSON.stringify({ upstream: name, method: req.method, url: req.url, headers: req.headers, body_bytes: size }, null, 2) + "\n"
      res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(body) })
      res.end(body)
    })
  })
  return listenScoped(`echo-${name}`, server, at, 1000)
}
