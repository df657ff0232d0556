/**
 * Test support: a fault-injecting upstream on loopback (node:http, port 0, scoped to the test).
 * Each request gets one fault, chosen by the request header `x-fault` when present, else by a
 * deterministic function of the request's number on this server (see `seededFaults`):
 *
 * - `ok`: 200 with a JSON body echoing `x-req-id` and the sha256 of the request body
 * - `reset-headers`: the connection is destroyed before any response byte
 * - `reset-body`: the head and half of the body are sent, then the connection is destroyed
 * - `hang`: no answer at all; the socket is kept until the server stops
 * - `slow-body`: 200 whose body arrives in chunks with small gaps
 * - `5xx`: 503 with a body
 *
 * "Down" cannot be a per-request fault (a refusal happens before any request exists): the
 * handle's `stop` closes the listener and destroys every socket, `start` listens again on the
 * same port. Nothing is mocked; the gateway sees real TCP behaviour.
 */
import { Effect, type Scope } from "effect"
import { createHash } from "node:crypto"
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http"
import type { AddressInfo, Socket } from "node:net"

export type Fault = "ok" | "reset-headers" | "reset-body" | "hang" | "slow-body" | "5xx"

export const FAULTS: ReadonlyArray<Fault> = ["ok", "reset-headers", "reset-body", "hang", "slow-body", "5xx"]

/** Relative weights of the faults (missing = 0). */
export type FaultMix = Partial<Record<Fault, number>>

/** What the upstream saw of one request and what it did with it. */
export interface FaultRecord {
  /** 1-based number of the request on this server (the counter the seeded choice reads). */
  readonly n: number
  /** The request's `x-req-id` header ("" when absent). */
  readonly id: string
  readonly method: string
  readonly url: string
  readonly fault: Fault
  /** sha256 (hex) of the request body as received. */
  readonly bodyHash: string
  readonly bodyBytes: number
  /** The request's `traceparent` header ("" when absent): with tracing on, it names the gateway's try. */
  readonly traceparent: string
}

/** The JSON body of `ok`, `slow-body` and `reset-body` (the latter cut in half). */
export interface FaultEcho {
  readonly upstream: string
  readonly id: string
  readonly n: number
  readonly fault: Fault
  readonly bodyHash: string
  readonly pad: string
}

export interface FaultUpstream {
  readonly name: string
  readonly url: string
  readonly port: number
  /** One entry per request whose body was read completely, in that order. */
  readonly records: Array<FaultRecord>
  /** How many requests got each fault. */
  readonly faultCounts: () => Record<Fault, number>
  /** Whether the listener is up. */
  readonly listening: () => boolean
  /** Closes the listener and destroys every open socket (in-flight requests included). */
  readonly stop: Effect.Effect<void>
  /** Listens again on the same port (a no-op while listening). */
  readonly start: Effect.Effect<void>
}

export interface FaultOptions {
  /** The fault of the n-th request (1-based) when it has no `x-fault` header. Default: always `ok`. */
  readonly faultOf?: (n: number) => Fault
  /** Gap between the chunks of `slow-body` (ms). Default 10. */
  readonly slowGapMs?: number
  /** Chunks of `slow-body`. Default 4. */
  readonly slowChunks?: number
  /** Size of the padding in the echo body, so that `reset-body` has something to cut. Default 1024. */
  readonly padBytes?: number
}

/** A uniform number in [0, 1) that depends only on `seed` and `n` (a 32-bit integer hash). */
export const hashUnit = (seed: number, n: number): number => {
  let h = (seed ^ Math.imul(n + 0x632be5ab, 0x9e3779b9)) >>> 0
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b)
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35)
  h ^= h >>> 16
  return (h >>> 0) / 2 ** 32
}

/** The fault of request `n` as a pure function of `seed` and `n`, weighted by `mix`. */
export const seededFaults = (seed: number, mix: FaultMix) => {
  const entries = FAULTS.map((f) => [f, mix[f] ?? 0] as const).filter(([, w]) => w > 0)
  const total = entries.reduce((s, [, w]) => s + w, 0)
  return (n: number): Fault => {
    let x = hashUnit(seed, n) * total
    for (const [f, w] of entries) {
      if (x < w) return f
      x -= w
    }
    return entries[entries.length - 1][0]
  }
}

/** Deterministic bytes (a function of `seed`), e.g. request bodies. */
export const seededBytes = (seed: number, length: number): Buffer => {
  const out = Buffer.alloc(length)
  for (let i = 0; i < length; i++) out[i] = Math.floor(hashUnit(seed, i) * 256)
  return out
}

export const sha256 = (data: Buffer | string): string => createHash("sha256").update(data).digest("hex")

const isFault = (s: string | undefined): s is Fault => s !== undefined && (FAULTS as ReadonlyArray<string>).includes(s)

/**
 * Starts a fault-injecting upstream named `name` on 127.0.0.1:0 for the life of the scope;
 * on release it stops (every socket destroyed, hung requests included).
 */
export const startFaultUpstream = (
  name: string,
  options: FaultOptions = {}
): Effect.Effect<FaultUpstream, never, Scope.Scope> => {
  const faultOf = options.faultOf ?? (() => "ok")
  const slowGapMs = options.slowGapMs ?? 10
  const slowChunks = options.slowChunks ?? 4
  const pad = "x".repeat(options.padBytes ?? 1024)
  const records: Array<FaultRecord> = []
  const sockets = new Set<Socket>()
  const timers = new Set<NodeJS.Timeout>()
  let counter = 0
  let server: Server | undefined
  let port = 0

  const later = (ms: number, f: () => void) => {
    const t = setTimeout(() => {
      timers.delete(t)
      f()
    }, ms)
    timers.add(t)
  }

  const echoBody = (record: FaultRecord): Buffer => {
    const echo: FaultEcho = { upstream: name, id: record.id, n: record.n, fault: record.fault, bodyHash: record.bodyHash, pad }
    return Buffer.from(JSON.stringify(echo))
  }

  const head = (res: ServerResponse, status: number, body: Buffer, record: FaultRecord) =>
    res.writeHead(status, {
      "content-type": "application/json",
      "content-length": body.length,
      "x-upstream": name,
      "x-echo-id": record.id,
      "x-fault": record.fault
    })

  const answer = (req: IncomingMessage, res: ServerResponse, record: FaultRecord) => {
    switch (record.fault) {
      case "ok": {
        const body = echoBody(record)
        head(res, 200, body, record)
        return res.end(body)
      }
      case "5xx": {
        const body = Buffer.from(JSON.stringify({ upstream: name, id: record.id, error: "injected 503" }))
        head(res, 503, body, record)
        return res.end(body)
      }
      case "reset-headers":
        return req.socket.destroy()
      case "reset-body": {
        const body = echoBody(record)
        head(res, 200, body, record)
        // The head goes out with the first write; destroy once both are handed to the kernel.
        return res.write(body.subarray(0, body.length >> 1), () => req.socket.destroy())
      }
      case "hang":
        return
      case "slow-body": {
        const body = echoBody(record)
        head(res, 200, body, record)
        const size = Math.ceil(body.length / slowChunks)
        const send = (i: number) => {
          if (res.destroyed) return
          const chunk = body.subarray(i * size, (i + 1) * size)
          if (i + 1 >= slowChunks) return res.end(chunk)
          res.write(chunk)
          later(slowGapMs, () => send(i + 1))
        }
        return send(0)
      }
    }
  }

  const onRequest = (req: IncomingMessage, res: ServerResponse) => {
    const n = ++counter
    const requested = req.headers["x-fault"]
    const fault = isFault(typeof requested === "string" ? requested : undefined) ? requested as Fault : faultOf(n)
    const hash = createHash("sha256")
    let bytes = 0
    req.on("data", (c: Buffer) => {
      hash.update(c)
      bytes += c.length
    })
    req.on("end", () => {
      const id = req.headers["x-req-id"]
      const traceparent = req.headers["traceparent"]
      const record: FaultRecord = {
        n,
        id: typeof id === "string" ? id : "",
        method: req.method ?? "",
        url: req.url ?? "",
        fault,
        bodyHash: hash.digest("hex"),
        bodyBytes: bytes,
        traceparent: typeof traceparent === "string" ? traceparent : ""
      }
      records.push(record)
      answer(req, res, record)
    })
  }

  const listen = (onPort: number) =>
    Effect.callback<void>((resume) => {
      const s = createServer(onRequest)
      s.on("connection", (socket: Socket) => {
        sockets.add(socket)
        socket.on("close", () => sockets.delete(socket))
      })
      s.listen(onPort, "127.0.0.1", () => {
        server = s
        port = (s.address() as AddressInfo).port
        resume(Effect.void)
      })
    })

  const stop: Effect.Effect<void> = Effect.callback<void>((resume) => {
    const s = server
    server = undefined
    for (const t of timers) clearTimeout(t)
    timers.clear()
    if (s === undefined) return resume(Effect.void)
    s.close(() => resume(Effect.void))
    for (const socket of sockets) socket.destroy()
  })

  const start: Effect.Effect<void> = Effect.suspend(() => server === undefined ? listen(port) : Effect.void)

  const faultCounts = () => {
    const counts = Object.fromEntries(FAULTS.map((f) => [f, 0])) as Record<Fault, number>
    for (const r of records) counts[r.fault]++
    return counts
  }

  return Effect.acquireRelease(
    Effect.map(listen(0), (): FaultUpstream => ({
      name,
      url: `http://127.0.0.1:${port}`,
      port,
      records,
      faultCounts,
      listening: () => server !== undefined,
      stop,
      start
    })),
    () => stop
  )
}
