/**
 * Test support: HTTP/2 clients. `h2Session` is node:http2's own client (over TLS with ALPN, or
 * h2c with prior knowledge); `rawH2` writes frames by hand, for the hostile clients a real one
 * would never be (floods, resets in a loop, oversized header lists).
 */
import { Effect, type Scope } from "effect"
import { connect as connectH2, type ClientHttp2Session, type IncomingHttpHeaders, type OutgoingHttpHeaders } from "node:http2"
import { connect, type Socket } from "node:net"

export interface H2Response {
  readonly status: number
  readonly headers: IncomingHttpHeaders
  readonly body: Buffer
  readonly trailers: IncomingHttpHeaders | undefined
}

export interface H2Options {
  /** PEM CA for https; absent: h2c (prior knowledge). */
  readonly ca?: string | Buffer
  readonly servername?: string
  readonly cert?: string | Buffer
  readonly key?: string | Buffer
}

/** An HTTP/2 client connection for the life of the scope, once the server's SETTINGS came. */
export const h2Session = (port: number, options: H2Options = {}): Effect.Effect<ClientHttp2Session, Error, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.callback<ClientHttp2Session, Error>((resume) => {
      const tls = options.ca !== undefined
      const session = connectH2(`${tls ? "https" : "http"}://127.0.0.1:${port}`, tls
        ? { ca: options.ca, servername: options.servername ?? "site.test", ...(options.cert === undefined ? {} : { cert: options.cert, key: options.key }) }
        : {})
      const onError = (error: Error) => resume(Effect.fail(error))
      session.once("error", onError)
      session.once("remoteSettings", () => {
        session.removeListener("error", onError)
        // Errors after the connection is up are the test's to observe (streams fail with them).
        session.on("error", () => {})
        resume(Effect.succeed(session))
      })
    }),
    (session) => Effect.sync(() => session.destroy())
  )

/** Sends one request on `session` and reads the whole response. */
export const h2Request = (
  session: ClientHttp2Session,
  headers: OutgoingHttpHeaders,
  body?: string | Buffer
): Promise<H2Response> =>
  new Promise((resolve, reject) => {
    const stream = session.request({ ":method": body === undefined ? "GET" : "POST", ...headers }, { endStream: body === undefined })
    let status = 0
    let responseHeaders: IncomingHttpHeaders = {}
    let trailers: IncomingHttpHeaders | undefined
    const chunks: Array<Buffer> = []
    stream.on("response", (h) => {
      status = Number(h[":status"])
      responseHeaders = h
    })
    stream.on("trailers", (t) => {
      trailers = t
    })
    stream.on("data", (c: Buffer) => chunks.push(c))
    stream.on("end", () => resolve({ status, headers: responseHeaders, body: Buffer.concat(chunks), trailers }))
    stream.on("error", reject)
    stream.on("close", () => {
      if (stream.rstCode !== 0 && status === 0) reject(Object.assign(new Error(`stream reset with ${stream.rstCode}`), { rstCode: stream.rstCode }))
    })
    if (body !== undefined) stream.end(body)
  })

export const h2Get = (session: ClientHttp2Session, path: string, headers: OutgoingHttpHeaders = {}) =>
  Effect.promise(() => h2Request(session, { ":path": path, ...headers }))

// --- raw frames (RFC 9113 §4.1, §6) ---

export const FRAME = { DATA: 0, HEADERS: 1, RST_STREAM: 3, SETTINGS: 4, PING: 6, GOAWAY: 7, CONTINUATION: 9 } as const
export const FLAG = { END_STREAM: 0x1, END_HEADERS: 0x4 } as const
export const PREFACE = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

export const frame = (type: number, flags: number, stream: number, payload: Buffer = Buffer.alloc(0)): Buffer => {
  const head = Buffer.alloc(9)
  head.writeUIntBE(payload.length, 0, 3)
  head[3] = type
  head[4] = flags
  head.writeUInt32BE(stream, 5)
  return Buffer.concat([head, payload])
}

/** An HPACK integer with an `prefix`-bit prefix (RFC 7541 §5.1), first byte or-ed with `high`. */
const hpackInt = (value: number, prefix: number, high: number): Array<number> => {
  const max = (1 << prefix) - 1
  if (value < max) return [high | value]
  const out = [high | max]
  let rest = value - max
  while (rest >= 128) {
    out.push((rest % 128) + 128)
    rest = Math.floor(rest / 128)
  }
  out.push(rest)
  return out
}

const hpackString = (s: string): Buffer => Buffer.concat([Buffer.from(hpackInt(Buffer.byteLength(s), 7, 0)), Buffer.from(s)])

/** A header block of literal fields without indexing (RFC 7541 §6.2.2), no Huffman: plain to read in a test. */
export const headerBlock = (fields: ReadonlyArray<readonly [string, string]>): Buffer =>
  Buffer.concat(fields.flatMap(([name, value]) => [Buffer.from([0]), hpackString(name), hpackString(value)]))

export const rstStream = (stream: number, code: number): Buffer => {
  const payload = Buffer.alloc(4)
  payload.writeUInt32BE(code)
  return frame(FRAME.RST_STREAM, 0, stream, payload)
}

export interface ReceivedFrame {
  readonly type: number
  readonly flags: number
  readonly stream: number
  readonly payload: Buffer
}

export interface RawH2 {
  readonly socket: Socket
  readonly write: (bytes: Buffer | string) => void
  /** Every frame received so far (the server preface's SETTINGS first). */
  readonly frames: () => ReadonlyArray<ReceivedFrame>
  /** Resolves once the server closed the connection. */
  readonly closed: Promise<void>
}

/** A raw h2c connection that has sent the preface and an empty SETTINGS. */
export const rawH2 = (port: number): Effect.Effect<RawH2, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.callback<RawH2>((resume) => {
      const socket = connect(port, "127.0.0.1")
      let got = Buffer.alloc(0)
      socket.on("data", (d: Buffer) => {
        got = Buffer.concat([got, d])
      })
      socket.on("error", () => {})
      const closed = new Promise<void>((r) => socket.once("close", () => r()))
      const frames = () => {
        const out: Array<ReceivedFrame> = []
        let at = 0
        while (at + 9 <= got.length) {
          const length = got.readUIntBE(at, 3)
          if (at + 9 + length > got.length) break
          out.push({ type: got[at + 3], flags: got[at + 4], stream: got.readUInt32BE(at + 5) & 0x7fffffff, payload: got.subarray(at + 9, at + 9 + length) })
          at += 9 + length
        }
        return out
      }
      socket.once("connect", () => {
        socket.write(PREFACE)
        socket.write(frame(FRAME.SETTINGS, 0, 0))
        resume(Effect.succeed({ socket, write: (b) => void socket.write(b), frames, closed }))
      })
    }),
    (raw) => Effect.sync(() => raw.socket.destroy())
  )

/** The error code of the GOAWAY among `frames`, if one came. */
export const goawayCode = (frames: ReadonlyArray<ReceivedFrame>): number | undefined => {
  const goaway = frames.find((f) => f.type === FRAME.GOAWAY)
  return goaway === undefined ? undefined : goaway.payload.readUInt32BE(4)
}

/** Request headers of a GET for `path` on `authority`. */
export const getFields = (path: string, authority = "localhost"): Array<readonly [string, string]> => [
  [":method", "GET"],
  [":scheme", "http"],
  [":path", path],
  [":authority", authority]
]
