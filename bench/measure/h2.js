// HTTP/2 downstream (BENCH_H2, fibergate only): fibergate's https listener (h2 over ALPN) against
// nginx's `listen ssl http2`, one worker each, through the same HTTP/1.1 upstream, loaded by
// h2load (nghttp2's load generator: BENCH_H2_CLIENTS connections, BENCH_H2_STREAMS concurrent
// streams on each), BENCH_H2_ROUNDS rounds alternating the order. The peers start as in measure/tls.js.
import { runCaptured, stopChild } from "../lib/children.js"
import { fmtInt, fmtMB, fmtMs, median, tableHead, tableRow } from "../lib/format.js"
import { treeRss } from "../lib/procfs.js"
import { alternating, withCpu } from "../lib/runner.js"
import { HOST, settings } from "../lib/settings.js"
import { startTlsPeers } from "./tls.js"

/** The nginx server block of the h2 peer (inside the bench's common http block). */
function nginxH2Server(port, cert, maxStreams) {
  return `  server {
    listen ${HOST}:${port} ssl http2 backlog=4096;
    ssl_certificate ${cert.cert};
    ssl_certificate_key ${cert.key};
    ssl_protocols TLSv1.2 TLSv1.3;
    http2_max_concurrent_streams ${maxStreams};
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_max_temp_file_size 0;
    }
  }`
}

/**
 * Runs h2load against `url` for `seconds` (killed 30 s past that) and parses its summary: req/s,
 * requests done, succeeded, failed + errored, and the mean and max time per request in ms.
 */
async function runH2load(bin, url, { seconds, clients, streams, threads = 1 }) {
  const args = ["-D", String(seconds), "-c", String(clients), "-m", String(streams), "-t", String(threads), url]
  const { output: out } = await runCaptured("h2load", bin, args, { timeoutMs: (seconds + 30) * 1000 })
  const finished = out.match(/finished in [\d.]+\w*, ([\d.]+) req\/s/)
  const requests = out.match(/requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored/)
  const time = out.match(/time for request:\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)/)
  if (!finished || !requests) throw new Error(`h2load ${args.join(" ")}: no summary\n${out.slice(-2000)}`)
  const ms = (v, unit) => Number(v) * (unit === "us" ? 0.001 : unit === "s" ? 1000 : 1)
  return {
    rps: Number(finished[1]),
    requests: Number(requests[3]),
    succeeded: Number(requests[4]),
    errors: Number(requests[5]) + Number(requests[6]),
    meanMs: time ? ms(time[5], time[6]) : null,
    maxMs: time ? ms(time[3], time[4]) : null,
  }
}

/** Returns [{ label, rounds: [{ rps, requests, errors, meanMs, cpuUsPerRequest, rssKb, … }] }]. */
export async function h2Cost(ctx, h2loadBin) {
  const peers = []
  try {
    const started = await startTlsPeers("h2", ctx, (port, cert) => nginxH2Server(port, cert, 100), peers)
    started[0].label = "fibergate (https, h2)"
    started[1].label = `nginx ${ctx.feats.version} (listen ssl http2)`
    for (const p of started) p.rounds = []
    const load = { clients: settings.h2Clients, streams: settings.h2Streams }
    const seconds = settings.duration.seconds
    for (const p of peers) await runH2load(h2loadBin, `https://${HOST}:${p.port}/`, { ...load, seconds: Math.min(seconds, 3) })
    await alternating(peers, settings.h2Rounds, async (p, round) => {
      const r = await withCpu(p.child.pid, () => runH2load(h2loadBin, `https://${HOST}:${p.port}/`, { ...load, seconds }))
      r.rssKb = treeRss(p.child.pid)
      p.rounds.push(r)
      console.log(`bench: h2 round ${round + 1}/${settings.h2Rounds} ${p.label}: ${fmtInt(r.rps)} req/s, mean ${fmtMs(r.meanMs)}, ${r.cpuUsPerRequest?.toFixed(1)} µs CPU/request, RSS ${fmtMB(r.rssKb)} MB, ${r.errors} errors`)
    })
  } finally {
    for (const p of peers) await stopChild(p.child)
  }
  return peers.map(({ label, rounds }) => ({ label, rounds }))
}

export function h2Report(rows) {
  if (rows.length === 0) return []
  const lines = [
    "",
    `HTTP/2 over TLS, one worker each through the same HTTP/1.1 upstream, \`h2load -c${settings.h2Clients} -m${settings.h2Streams} -D${settings.duration.seconds}\`, ${settings.h2Rounds} rounds alternating; the ratio is the median of each round's fibergate / nginx:`,
    "",
  ]
  lines.push(...tableHead(["peer", "req/s (median)", "mean per request", "CPU µs/request", "RSS MB", "errors", "per-round req/s"], "lrrrrrl"))
  for (const p of rows) {
    const m = (f) => median(p.rounds.map(f))
    lines.push(
      tableRow([
        p.label,
        fmtInt(m((r) => r.rps)),
        fmtMs(m((r) => r.meanMs ?? 0)),
        m((r) => r.cpuUsPerRequest ?? 0).toFixed(1),
        fmtMB(m((r) => r.rssKb ?? 0)),
        p.rounds.reduce((a, r) => a + r.errors, 0),
        p.rounds.map((r) => fmtInt(r.rps)).join(", "),
      ]),
    )
  }
  if (rows.length === 2) {
    const [fg, ng] = rows
    lines.push("", `fibergate / nginx over h2: ${median(fg.rounds.map((r, i) => r.rps / ng.rounds[i].rps)).toFixed(2)}x`)
  }
  return lines
}
