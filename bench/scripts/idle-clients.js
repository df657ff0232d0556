#!/usr/bin/env node
// Opens N idle keep-alive HTTP/1.1 connections to host:port for the bench's idle-connection
// memory check (bench/measure/idle.js). Each connection sends one `GET /` and reads the whole
// response, then stays open and idle.
//
// Usage: node bench/scripts/idle-clients.js <host> <port> <connections> [max-hold-seconds=300] [path=/]
//
// Protocol on stdout/stdin (one line each):
//   -> "ready opened=<n> ok=<n> failed=<n> open=<n> ms=<n>"  once every connection has answered or failed
//   <- "status"  -> "status open=<n> closed_by_peer=<n>"
//   <- "close"   -> destroys every socket, prints "closed open=0" and exits 0
// It also closes everything and exits when stdin ends (the parent died), on SIGTERM/SIGINT, and
// after max-hold-seconds whatever happens, so no socket outlives the benchmark.
// The fd limit cannot be raised from Node beyond the hard limit: the bench starts this script via
// `bash -c "ulimit -n 65535 && exec node ..."` when `ulimit -n` is too low.
import net from "node:net"
import readline from "node:readline"

const [host = "127.0.0.1", portArg, countArg, holdArg = "300", urlPath = "/"] = process.argv.slice(2)
const port = Number(portArg)
const total = Number(countArg)
const holdSeconds = Number(holdArg)
if (!Number.isInteger(port) || port <= 0 || !Number.isInteger(total) || total <= 0 || !(holdSeconds > 0)) {
  console.error("usage: idle-clients.js <host> <port> <connections> [max-hold-seconds] [path]")
  process.exit(2)
}

const CONCURRENCY = 200 // connections being opened at the same time (keeps the accept backlog short)
const STEP_TIMEOUT_MS = 10_000 // per connection: connect + response
const request = Buffer.from(`GET ${urlPath} HTTP/1.1\r\nHost: ${host}:${port}\r\nUser-Agent: fibergate-bench-idle\r\nAccept: */*\r\n\r\n`)

const sockets = new Set()
let ok = 0
let failed = 0
let closedByPeer = 0
let closing = false
const started = Date.now()

/** Opens one connection, sends the request and resolves once the full response has arrived. */
function openOne() {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port })
    let buf = Buffer.alloc(0)
    let answered = false
    let settled = false
    const finish = (success) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      if (success) ok++
      else {
        failed++
        socket.destroy()
      }
      resolve()
    }
    const timer = setTimeout(() => finish(false), STEP_TIMEOUT_MS)
    sockets.add(socket)
    socket.setNoDelay(true)
    socket.on("connect", () => socket.write(request))
    socket.on("data", (chunk) => {
      if (answered) return // nothing more is expected on an idle connection
      buf = Buffer.concat([buf, chunk])
      const end = buf.indexOf("\r\n\r\n")
      if (end < 0) return
      const head = buf.subarray(0, end).toString("latin1")
      const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(head)?.[1] ?? 0)
      const length = Number(/\r\ncontent-length:\s*(\d+)/i.exec(head)?.[1] ?? -1)
      if (length < 0) return finish(false) // chunked or close-delimited: not what the upstream sends
      if (buf.length - end - 4 < length) return
      answered = true
      buf = Buffer.alloc(0)
      finish(status >= 200 && status < 300)
    })
    socket.on("error", () => finish(false))
    socket.on("close", () => {
      sockets.delete(socket)
      if (!closing && answered) closedByPeer++
      finish(false)
    })
  })
}

async function openAll() {
  let next = 0
  const worker = async () => {
    while (next < total && !closing) {
      next++
      await openOne()
    }
  }
  await Promise.all(Array.from({ length: Math.min(CONCURRENCY, total) }, worker))
}

function closeAll(code = 0) {
  if (closing) return
  closing = true
  for (const s of sockets) s.destroy()
  sockets.clear()
  process.stdout.write(`closed open=${sockets.size}\n`, () => process.exit(code))
  setTimeout(() => process.exit(code), 1000).unref()
}

const hold = setTimeout(() => {
  console.error(`idle-clients: max hold time ${holdSeconds}s reached; closing`)
  closeAll(0)
}, holdSeconds * 1000)
hold.unref?.()
// keep the process alive while holding (the sockets do too, but not when every connect failed)
const keepAlive = setInterval(() => {}, 60_000)

for (const sig of ["SIGTERM", "SIGINT", "SIGHUP"]) process.on(sig, () => closeAll(0))

const rl = readline.createInterface({ input: process.stdin })
rl.on("line", (line) => {
  const cmd = line.trim()
  if (cmd === "status") process.stdout.write(`status open=${sockets.size} closed_by_peer=${closedByPeer}\n`)
  else if (cmd === "close") closeAll(0)
})
rl.on("close", () => closeAll(0)) // parent went away

await openAll()
if (!closing) process.stdout.write(`ready opened=${ok + failed} ok=${ok} failed=${failed} open=${sockets.size} ms=${Date.now() - started}\n`)
void keepAlive
