/**
 * `readJsonBody`, what `PUT /config` and `POST /config/validate` read their body with: the outcome
 * for each way a body can arrive, read on a real node:http server from a real socket.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as Effect from "effect/Effect"
import * as Result from "effect/Result"
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http"
import { connect } from "node:net"
import { readJsonBody } from "../../src/admin/JsonBody.ts"

const LIMIT = 16

type Outcome = { readonly ok: unknown } | { readonly tag: string; readonly message: string }

const deferred = () => {
  let resolve: (o: Outcome) => void = () => {}
  const promise = new Promise<Outcome>((r) => (resolve = r))
  return { promise, resolve }
}

let server: Server
let port = 0
/** What the next request's handler does with the request before reading it. */
let before: (req: IncomingMessage) => void = () => {}
let outcome = deferred()

const handle = (req: IncomingMessage, res: ServerResponse) => {
  before(req)
  void Effect.runPromise(Effect.result(readJsonBody(req, res, LIMIT))).then((result) => {
    outcome.resolve(Result.isSuccess(result) ? { ok: result.success } : { tag: result.failure._tag, message: result.failure.message })
    if (!res.destroyed) res.end()
  })
}

/** Sends raw bytes, leaves the socket open (or destroys it after writing), and returns the handler's outcome. */
const read = (bytes: string, options: { readonly destroyAfterWrite?: boolean } = {}): Promise<Outcome> => {
  outcome = deferred()
  const socket = connect(port, "127.0.0.1")
  socket.on("error", () => {})
  socket.write(bytes, () => {
    if (options.destroyAfterWrite === true) setImmediate(() => socket.destroy())
  })
  return outcome.promise.finally(() => socket.destroy())
}

const post = (body: string, headers = `content-length: ${Buffer.byteLength(body)}\r\n`) =>
  `POST /config HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\n${headers}\r\n${body}`

beforeAll(async () => {
  server = createServer(handle)
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  port = (server.address() as { port: number }).port
})
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())))

describe("readJsonBody", () => {
  it("parses a body of exactly the limit", async () => {
    before = () => {}
    const body = JSON.stringify({ a: "01234567" }) // 16 bytes
    expect(Buffer.byteLength(body)).toBe(LIMIT)
    expect(await read(post(body))).toEqual({ ok: { a: "01234567" } })
  })

  it("refuses a declared length one past the limit before reading it", async () => {
    before = () => {}
    expect(await read(post("", `content-length: ${LIMIT + 1}\r\n`))).toEqual({ tag: "PayloadTooLarge", message: `The body is larger than ${LIMIT} bytes` })
  })

  it("refuses a chunked body once it passes the limit", async () => {
    before = () => {}
    const chunk = "x".repeat(LIMIT + 1)
    const sent = post(`${(LIMIT + 1).toString(16)}\r\n${chunk}\r\n0\r\n\r\n`, "transfer-encoding: chunked\r\n")
    expect(await read(sent)).toEqual({ tag: "PayloadTooLarge", message: `The body is larger than ${LIMIT} bytes` })
  })

  it("an empty body and one that is not JSON are bad requests saying so", async () => {
    before = () => {}
    expect(await read(post(""))).toEqual({ tag: "BadRequest", message: "The body is empty; expected a JSON document" })
    const bad = await read(post("{nope"))
    expect(bad).toMatchObject({ tag: "BadRequest" })
    expect((bad as { message: string }).message).toMatch(/^The body is not JSON: .+/)
  })

  it("a stream error while reading is a bad request carrying the error's message", async () => {
    before = (req) => setImmediate(() => req.destroy(new Error("boom")))
    expect(await read(post("{", "content-length: 10\r\n"))).toEqual({ tag: "BadRequest", message: "The body could not be read: boom" })
  })

  it("a client that leaves before the body ends: a bad request, not a hang", async () => {
    before = () => {}
    const result = await read(post("{", "content-length: 10\r\n"), { destroyAfterWrite: true })
    // node:http reports it as the request stream's error "aborted", before its close.
    expect(result).toEqual({ tag: "BadRequest", message: "The body could not be read: aborted" })
  })

  it("a request closed without an error before its body ended: a bad request saying so", async () => {
    before = (req) => setImmediate(() => req.destroy())
    expect(await read(post("{", "content-length: 10\r\n"))).toEqual({ tag: "BadRequest", message: "The connection closed before the body ended" })
  })
})
