// WebSocket echo throughput: the same `ws` echo upstream (bench/ws-echo.js) reached directly,
// through fibergate and through nginx, one worker each, loaded by bench/ws-load.js (N
// WebSockets, each with a window of messages in flight). The upstream and the load are Node
// processes of their own: "direct" is what they do without a proxy between them.
import { spawn } from "node:child_process"
import path from "node:path"
import { fileURLToPath } from "node:url"

const HOST = "127.0.0.1"
const BENCH_DIR = path.dirname(fileURLToPath(import.meta.url))
export const WS_ECHO_SCRIPT = path.join(BENCH_DIR, "ws-echo.js")
const WS_LOAD_SCRIPT = path.join(BENCH_DIR, "ws-load.js")

/** fibergate on `port` with one route to the echo upstream (the default websocket settings). */
export function fibergateWsYaml(port, adminPort, upstreamPort) {
  return `admin: { listen: "${HOST}:${adminPort}" }
log: { level: warn, access_log: false }
telemetry: { metrics: { enabled: true } }
servers:
  - name: ws
    listen: "${HOST}:${port}"
    limits: { max_connections: 100000 }
    routes: [ { id: echo, upstream: echo } ]
upstreams:
  echo:
    endpoints: [ { url: "http://${HOST}:${upstreamPort}" } ]
`
}

/** The nginx server block of the WebSocket peer: the upgrade passed on, as nginx's docs say. */
export function nginxWsServer(port, upstreamPort) {
  return `  server {
    listen ${HOST}:${port} backlog=4096;
    location / {
      proxy_pass http://${HOST}:${upstreamPort};
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection "upgrade";
      proxy_read_timeout 600s;
    }
  }`
}

/** Runs the load against `url`; resolves { rate, messages, seconds, p50, p99, errors }. */
export function runWsLoad(nodeBin, url, { connections, window, size, seconds }) {
  return new Promise((resolve, reject) => {
    const child = spawn(nodeBin, [WS_LOAD_SCRIPT, url, String(connections), String(window), String(size), String(seconds)], {
      stdio: ["ignore", "pipe", "pipe"],
    })
    let out = ""
    let err = ""
    child.stdout.on("data", (d) => (out += d))
    child.stderr.on("data", (d) => (err += d))
    const timer = setTimeout(() => child.kill("SIGKILL"), (seconds + 30) * 1000)
    child.on("close", (code) => {
      clearTimeout(timer)
      const line = out.trim().split("\n").pop() ?? ""
      try {
        resolve(JSON.parse(line))
      } catch {
        reject(new Error(`ws-load exited ${code}: ${err.trim() || out.trim()}`))
      }
    })
  })
}
