/**
 * Reading a JSON request body of bounded size for the admin API. A declared `content-length`
 * over the limit is refused before a byte is read (and before `100 Continue`, so `curl -T` of a
 * huge file sends nothing); a chunked body is refused as soon as it passes the limit. Either way
 * the rest is discarded and the 413 reply closes the connection.
 */
import * as Effect from "effect/Effect"
import type { IncomingMessage, ServerResponse } from "node:http"
import { BadRequest, PayloadTooLarge } from "./AdminReply.ts"

const tooLarge = (limit: number) => new PayloadTooLarge({ message: `The body is larger than ${limit} bytes`, limit })

const parse = (body: Buffer): Effect.Effect<unknown, BadRequest> => {
  if (body.length === 0) return Effect.fail(new BadRequest({ message: "The body is empty; expected a JSON document" }))
  try {
    return Effect.succeed(JSON.parse(body.toString("utf8")))
  } catch (e) {
    return Effect.fail(new BadRequest({ message: `The body is not JSON: ${(e as Error).message}` }))
  }
}

/**
 * The request body parsed as JSON, at most `limit` bytes.
 *
 * @example
 * const value = yield* readJsonBody(req, res, 1024 * 1024)
 */
export const readJsonBody = (
  req: IncomingMessage,
  res: ServerResponse,
  limit: number
): Effect.Effect<unknown, BadRequest | PayloadTooLarge> =>
  Effect.callback<unknown, BadRequest | PayloadTooLarge>((resume) => {
    const declared = Number(req.headers["content-length"] ?? 0)
    // node:http discards a body nobody read once the reply is out.
    if (declared > limit) return resume(Effect.fail(tooLarge(limit)))
    // With a `checkContinue` listener node leaves the interim response to us.
    if (req.headers.expect?.toLowerCase() === "100-continue") res.writeContinue()
    const chunks: Array<Buffer> = []
    let size = 0
    // Only the first `resume` counts (Effect.callback): the end or close after a refusal is ignored.
    req.on("data", (chunk: Buffer) => {
      size += chunk.length
      if (size > limit) resume(Effect.fail(tooLarge(limit)))
      else chunks.push(chunk)
    })
    req.on("end", () => resume(parse(Buffer.concat(chunks))))
    req.on("error", (e) => resume(Effect.fail(new BadRequest({ message: `The body could not be read: ${e.message}` }))))
    req.on("close", () => resume(Effect.fail(new BadRequest({ message: "The connection closed before the body ended" }))))
  })
