/**
 * Test support: a whole client connection over a raw socket. What is written goes out exactly
 * as given (no client library cleans it up), and everything the gateway sends back is kept and
 * split into the responses it contains, so a test can see a second status line inside a body,
 * a response that never came, or bytes after a close.
 */
import { Effect } from "effect"
import { connect, type Socket } from "node:net"

export interface WireResponse {
  readonly status: number
  /** Header values by lower-case name, in the order they arrived. */
  readonly headers: ReadonlyMap<string, ReadonlyArray<string>>
  /** The body as latin1 text, de-chunked when the response was chunked. */
  readonly body: string
  /** The framing as sent: "length", "chunked", "none" (no body by status), or "close" (read to the end). */
  readonly framing: "length" | "chunked" | "none" | "close"
}

export interface Conversation {
  /** Everything received, latin1. */
  readonly text: string
  /** The responses found in `text`, in order; a trailing incomplete one is left out. */
  readonly responses: ReadonlyArray<WireResponse>
  /** Bytes after the last complete response (an incomplete response, or garbage). */
  readonly rest: string
  /** Whether the gateway closed the connection (FIN or reset) before the wait ended. */
  readonly closed: boolean
  /** Whether the connection ended with a reset rather than a FIN. */
  readonly reset: boolean
}

/** Whether a response to a request with this method and status has no body (RFC 9112 §6.3). */
const noBody = (status: number, method: string) => method === "HEAD" || status === 204 || status === 304 || (status >= 100 && status < 200)

/**
 * Splits `text` into HTTP/1.1 responses. `methods` are the methods of the requests in order
 * (HEAD responses have no body); missing entries count as GET.
 */
export const parseResponses = (text: string, methods: ReadonlyArray<string> = []): { responses: Array<WireResponse>; rest: string } => {
  const responses: Array<WireResponse> = []
  let at = 0
  while (at < text.length) {
    const end = text.indexOf("\r\n\r\n", at)
    if (end === -1) break
    const lines = text.slice(at, end).split("\r\n")
    const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0])
    if (m === null) break
    const status = Number(m[1])
    const headers = new Map<string, Array<string>>()
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(":")
      const name = line.slice(0, colon).trim().toLowerCase()
      headers.set(name, [...(headers.get(name) ?? []), line.slice(colon + 1).trim()])
    }
    const bodyStart = end + 4
    const method = methods[responses.length] ?? "GET"
    if (status >= 100 && status < 200) {
      at = bodyStart
      continue
    }
    if (noBody(status, method)) {
      responses.push({ status, headers, body: "", framing: "none" })
      at = bodyStart
      continue
    }
    const te = headers.get("transfer-encoding")?.join(",") ?? ""
    if (/chunked\s*$/i.test(te)) {
      let p = bodyStart
      let body = ""
      let complete = false
      for (;;) {
        const lineEnd = text.indexOf("\r\n", p)
        if (lineEnd === -1) break
        const size = parseInt(text.slice(p, lineEnd), 16)
        if (Number.isNaN(size)) break
        if (size === 0) {
          const trailerEnd = text.indexOf("\r\n\r\n", lineEnd)
          if (trailerEnd === -1 && !text.startsWith("\r\n", lineEnd + 2)) break
          p = text.startsWith("\r\n", lineEnd + 2) ? lineEnd + 4 : trailerEnd + 4
          complete = true
          break
        }
        if (text.length < lineEnd + 2 + size + 2) break
        body += text.slice(lineEnd + 2, lineEnd + 2 + size)
        p = lineEnd + 2 + size + 2
      }
      if (!complete) break
      responses.push({ status, headers, body, framing: "chunked" })
      at = p
      continue
    }
    const length = headers.get("content-length")?.[0]
    if (length !== undefined) {
      const n = Number(length)
      if (text.length - bodyStart < n) break
      responses.push({ status, headers, body: text.slice(bodyStart, bodyStart + n), framing: "length" })
      at = bodyStart + n
      continue
    }
    responses.push({ status, headers, body: text.slice(bodyStart), framing: "close" })
    at = text.length
  }
  return { responses, rest: text.slice(at) }
}

export interface ConverseOptions {
  /** Stop waiting once this many responses are complete (and the gateway has had `settleMs` to send more). */
  readonly responses?: number
  /** After the expected responses, how long to wait for more bytes or a close (default 150 ms). */
  readonly settleMs?: number
  /** The longest the whole conversation may take (default 3 s). */
  readonly maxMs?: number
  /** Methods of the requests in order, for HEAD responses. */
  readonly methods?: ReadonlyArray<string>
}

/**
 * One connection to 127.0.0.1:port. `script` runs once connected and writes what it likes,
 * when it likes (it gets the socket and a view of what has been received so far). The result
 * is everything received until the gateway closes, or until `responses` responses are in and
 * `settleMs` passed without a close, or `maxMs`.
 */
export const converse = (
  port: number,
  script: (socket: Socket, received: () => string) => void,
  options: ConverseOptions = {}
): Effect.Effect<Conversation> =>
  Effect.callback<Conversation>((resume) => {
    const socket = connect(port, "127.0.0.1")
    let text = ""
    let reset = false
    let done = false
    let settle: NodeJS.Timeout | undefined
    const finish = (closed: boolean) => {
      if (done) return
      done = true
      clearTimeout(settle)
      clearTimeout(overall)
      const parsed = parseResponses(text, options.methods)
      resume(Effect.succeed({ text, responses: parsed.responses, rest: parsed.rest, closed, reset }))
      socket.destroy()
    }
    const overall = setTimeout(() => finish(false), options.maxMs ?? 3_000)
    socket.setEncoding("latin1")
    socket.on("data", (chunk: string) => {
      text += chunk
      if (options.responses !== undefined && parseResponses(text, options.methods).responses.length >= options.responses) {
        clearTimeout(settle)
        settle = setTimeout(() => finish(false), options.settleMs ?? 150)
      }
    })
    socket.on("error", (e: NodeJS.ErrnoException) => {
      if (e.code === "ECONNRESET") reset = true
    })
    socket.on("close", () => finish(true))
    socket.on("connect", () => script(socket, () => text))
    return Effect.sync(() => {
      clearTimeout(settle)
      clearTimeout(overall)
      socket.destroy()
    })
  })

/** Writes `data` at once on connect (the common case: a pipeline in one segment). */
export const sendAll = (data: string | Buffer) => (socket: Socket) => void socket.write(data)
