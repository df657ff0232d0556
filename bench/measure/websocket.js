// WebSocket echo (BENCH_WS, fibergate only): the same `ws` echo upstream
// (bench/scripts/ws-echo.js) reached directly, through fibergate and through nginx, one worker
// each, loaded by bench/scripts/ws-load.js (BENCH_WS_CONNECTIONS WebSockets, each with a window of
// BENCH_WS_WINDOW messages in flight), BENCH_WS_ROUNDS rounds rotating the order. The upstream
// and the load are Node processes of their own: "direct" is what they do without a proxy between them.
import path from "node:path"
import { runCaptured, sleep, startChild, stopChild, tmpSubdir } from "../lib/children.js"
import { fmtInt, fmtMB, fmtMs, median, tableHead, tableRow } from "../lib/format.js"
import { freePort, httpGet, waitReady } from "../lib/net.js"
import { sampleRss } from "../lib/procfs.js"
import { alternating, withCpu } from "../lib/runner.js"
import { BENCH_DIR, HOST, settings } from "../lib/settings.js"
import { measureYamlHead, startFibergateYaml } from "../peers/fibergate.js"
import { nginxConf, startNginx } from "../peers/nginx.js"

const WS_ECHO_SCRIPT = path.join(BENCH_DIR, "scripts", "ws-echo.js")
const WS_LOAD_SCRIPT = path.join(BENCH_DIR, "scripts", "ws-load.js")

/** fibergate on `port` with one route to the echo upstream (the default websocket settings). */
function fibergateWsYaml(port, adminPort, upstreamPort) {
  return `${measureYamlHead(adminPort)}servers:
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
function nginxWsServer(port, upstreamPort) {
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

/** Runs the load against `url` (killed 30 s past `seconds`); resolves { rate, messages, seconds, p50, p99, errors }. */
async function runWsLoad(nodeBin, url, { connections, window, size, seconds }) {
  const args = [WS_LOAD_SCRIPT, url, String(connections), String(window), String(size), String(seconds)]
  const { code, stdout, stderr } = await runCaptured("ws-load", nodeBin, args, { timeoutMs: (seconds + 30) * 1000 })
  const line = stdout.trim().split("\n").pop() ?? ""
  try {
    return JSON.parse(line)
  } catch {
    throw new Error(`ws-load exited ${code}: ${stderr.trim() || stdout.trim()}`)
  }
}

/** Returns [{ label, rounds: [{ rate, p50, p99, errors, cpuUsPerMessage, rssKb }] }]. */
export async function webSocketCost({ nodeBin, tools, feats, fdRaise }) {
  const dir = tmpSubdir("ws")
  const children = []
  const rows = []
  try {
    const upstreamPort = await freePort()
    const echo = startChild("ws-echo", nodeBin, [WS_ECHO_SCRIPT, String(upstreamPort)], { logFile: path.join(dir, "ws-echo.log"), cpu: 1, fdLimit: fdRaise })
    children.push(echo)
    await waitReady(echo, "ws echo upstream", async () => (await httpGet(upstreamPort, "/", 1000)).status > 0)
    rows.push({ label: "direct (ws echo upstream)", port: upstreamPort, child: null, rounds: [] })

    const fgPort = await freePort()
    const fg = await startFibergateYaml("ws", "fibergate (ws)", nodeBin, dir, (adminPort) => fibergateWsYaml(fgPort, adminPort, upstreamPort), fdRaise)
    children.push(fg)
    rows.push({ label: "fibergate", port: fgPort, child: fg, rounds: [] })

    const ngPort = await freePort()
    const ng = await startNginx("nginx-ws", tools.nginx, nginxConf(dir, "nginx-ws", feats, nginxWsServer(ngPort, upstreamPort)), dir, ngPort, 0)
    children.push(ng)
    rows.push({ label: `nginx ${feats.version}`, port: ngPort, child: ng, rounds: [] })

    const load = { connections: settings.wsConnections, window: settings.wsWindow, size: settings.wsSize }
    const url = (p) => `ws://${HOST}:${p.port}/`
    for (const p of rows) {
      const warm = await runWsLoad(nodeBin, url(p), { ...load, seconds: Math.min(settings.duration.seconds, 3) })
      if (warm.messages === 0) throw new Error(`${p.label}: no WebSocket message came back (${warm.errors} errors)`)
    }
    await alternating(rows, settings.wsRounds, async (p, round) => {
      const pid = p.child?.pid
      const stop = pid === undefined ? () => null : sampleRss(pid)
      const r = await withCpu(pid, () => runWsLoad(nodeBin, url(p), { ...load, seconds: settings.duration.seconds }), { field: "cpuUsPerMessage", count: (r) => r.messages })
      r.rssKb = stop()
      p.rounds.push(r)
      console.log(`bench: ws round ${round + 1}/${settings.wsRounds} ${p.label}: ${fmtInt(r.rate)} messages/s, p50 ${fmtMs(r.p50)}, p99 ${fmtMs(r.p99)}${r.cpuUsPerMessage === null ? "" : `, ${r.cpuUsPerMessage.toFixed(1)} µs CPU/message, RSS ${fmtMB(r.rssKb)} MB`}, ${r.errors} errors`)
      await sleep(300)
    })
  } finally {
    for (const child of children) await stopChild(child)
  }
  return rows.map(({ label, rounds }) => ({ label, rounds }))
}

export function webSocketReport(rows) {
  if (rows.length === 0) return []
  const lines = [
    "",
    `WebSocket echo, one worker each, the same \`ws\` echo upstream (a Node process, as is the load: \`bench/scripts/ws-load.js\`), ${settings.wsConnections} WebSockets each with ${settings.wsWindow} binary messages of ${settings.wsSize} bytes in flight, ${settings.duration.seconds} s, ${settings.wsRounds} rounds alternating; ratios are the medians of each round's:`,
    "",
  ]
  lines.push(...tableHead(["peer", "messages/s (median)", "round trip p50", "p99", "CPU µs/message", "peak RSS MB", "errors", "per-round messages/s"], "lrrrrrrl"))
  for (const p of rows) {
    const m = (f) => median(p.rounds.map(f))
    const cpu = p.rounds[0]?.cpuUsPerMessage == null ? "–" : m((r) => r.cpuUsPerMessage ?? 0).toFixed(1)
    const rss = p.rounds[0]?.rssKb == null ? "–" : fmtMB(m((r) => r.rssKb ?? 0))
    lines.push(
      tableRow([
        p.label,
        fmtInt(m((r) => r.rate)),
        fmtMs(m((r) => r.p50 ?? 0)),
        fmtMs(m((r) => r.p99 ?? 0)),
        cpu,
        rss,
        p.rounds.reduce((a, r) => a + r.errors, 0),
        p.rounds.map((r) => fmtInt(r.rate)).join(", "),
      ]),
    )
  }
  if (rows.length === 3) {
    const [direct, fg, ng] = rows
    const ratio = (a, b) => median(a.rounds.map((r, i) => r.rate / b.rounds[i].rate)).toFixed(2)
    lines.push("", `fibergate / direct: ${ratio(fg, direct)}x; fibergate / nginx: ${ratio(fg, ng)}x`)
  }
  return lines
}
