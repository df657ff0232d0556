// The WebSocket bench's load: <connections> WebSockets to <url>, each keeping <window> binary
// messages of <size> bytes in flight (a new one goes when an echo comes back), for <seconds>.
// Prints one JSON line: messages echoed, their round-trip p50/p99 in ms, and errors. Bounded
// in time: every socket is terminated at the deadline, and the process exits.
import { WebSocket } from "ws"

const [url, connectionsArg, windowArg, sizeArg, secondsArg] = process.argv.slice(2)
const connections = Number(connectionsArg)
const window = Number(windowArg)
const payload = Buffer.alloc(Number(sizeArg), 0x61)
const seconds = Number(secondsArg)

let messages = 0
let errors = 0
const latencies = []
let measuring = true
const sockets = []

const open = (ws) =>
  new Promise((resolve) => {
    ws.once("open", () => resolve(true))
    ws.once("error", () => resolve(false))
  })

for (let i = 0; i < connections; i++) sockets.push(new WebSocket(url, { perMessageDeflate: false }))
const opened = await Promise.all(sockets.map(open))
errors += opened.filter((ok) => !ok).length
const started = performance.now()
for (const [i, ws] of sockets.entries()) {
  if (!opened[i]) continue
  // Echoes come back in order on one socket: the oldest send time is the one answered.
  const sent = []
  ws.on("message", () => {
    if (!measuring) return
    const now = performance.now()
    latencies.push(now - sent.shift())
    messages++
    sent.push(now)
    ws.send(payload)
  })
  ws.on("error", () => errors++)
  ws.on("close", (code) => {
    if (measuring && code !== 1000) errors++
  })
  for (let k = 0; k < window; k++) {
    sent.push(performance.now())
    ws.send(payload)
  }
}
setTimeout(() => {
  measuring = false
  const elapsed = (performance.now() - started) / 1000
  latencies.sort((a, b) => a - b)
  const at = (q) => (latencies.length === 0 ? null : latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))])
  console.log(JSON.stringify({ messages, seconds: elapsed, rate: messages / elapsed, p50: at(0.5), p99: at(0.99), errors }))
  for (const ws of sockets) ws.terminate()
  process.exit(0)
}, seconds * 1000)
