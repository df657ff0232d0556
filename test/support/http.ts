/**
 * Test support: one HTTP request over node:http on its own connection, for the cases fetch
 * cannot express (fetch silently drops a `host` header; node:http sends it as given, exposes
 * repeated response headers as they arrived, and can bind the client's source address).
 */
import { Effect } from "effect"
import { request as httpRequest, type IncomingHttpHeaders, type OutgoingHttpHeaders } from "node:http"

export interface Reply {
  readonly status: number
  readonly headers: IncomingHttpHeaders
  /** Response header names and values, in the order they arrived. */
  readonly rawHeaders: ReadonlyArray<string>
  readonly body: string
}

export interface SendInit {
  readonly method?: string
  readonly headers?: OutgoingHttpHeaders
  /** Source address of the client connection (any 127.0.0.0/8 address on Linux loopback). */
  readonly localAddress?: string
}

/** One request over node:http (no agent: a fresh connection). Network errors fail the test. */
export const send = (url: string, init: SendInit = {}) =>
  Effect.callback<Reply>((resume) => {
    const req = httpRequest(
      url,
      { method: init.method ?? "GET", headers: init.headers, localAddress: init.localAddress, agent: false },
      (res) => {
        const chunks: Array<Buffer> = []
        res.on("data", (c: Buffer) => chunks.push(c))
        res.on("end", () =>
          resume(Effect.succeed({
            status: res.statusCode ?? 0,
            headers: res.headers,
            rawHeaders: res.rawHeaders,
            body: Buffer.concat(chunks).toString()
          })))
        res.on("error", (e) => resume(Effect.die(e)))
      }
    )
    req.on("error", (e) => resume(Effect.die(e)))
    req.end()
    return Effect.sync(() => req.destroy())
  })

/** Every value of header `name` (lower case; matched in any case) in a raw name/value list, in order. */
export const headerValues = (rawHeaders: ReadonlyArray<string>, name: string): Array<string> => {
  const out: Array<string> = []
  for (let i = 0; i < rawHeaders.length; i += 2) if (rawHeaders[i].toLowerCase() === name) out.push(rawHeaders[i + 1])
  return out
}
