// Added latency at one connection (BENCH_LATENCY): `wrk -t1 -c1` on `GET /`, the upstream
// directly (even with BENCH_DIRECT=0: it is the reference) and through each peer, one run each.
import { fmtInt, fmtMs, tableHead, tableRow } from "../lib/format.js"
import { settings } from "../lib/settings.js"

/** Sets `latency` on the direct upstream and on each live peer. */
export async function oneConnectionLatency({ measure }, direct, live) {
  for (const p of [direct, ...live]) {
    p.latency = await measure(p, "/", settings.duration, 1, { threads: 1 })
    console.log(`bench: 1 connection ${p.label}: ${fmtInt(p.latency.rps)} req/s, p50 ${fmtMs(p.latency.p50)}, p99 ${fmtMs(p.latency.p99)}`)
  }
}

/** The table: each peer's p50/p99 and what it adds to the direct upstream's. */
export function latencyReport(peers, direct) {
  const lines = ["", `Added latency at one connection, \`wrk -t1 -c1 -d${settings.duration.wrk} --latency\` on \`GET /\`, one run each (added = peer − direct):`, ""]
  lines.push(...tableHead(["peer", "req/s", "p50", "p99", "added p50", "added p99"], "lrrrrr"))
  const d = direct.latency
  const added = (a, b) => (a === null || b === null ? "–" : `${a - b >= 0 ? "+" : "−"}${fmtMs(Math.abs(a - b))}`)
  lines.push(tableRow([direct.label, fmtInt(d.rps), fmtMs(d.p50), fmtMs(d.p99), "–", "–"]))
  for (const p of peers.filter((p) => p.child && p.latency)) {
    lines.push(tableRow([p.label, fmtInt(p.latency.rps), fmtMs(p.latency.p50), fmtMs(p.latency.p99), added(p.latency.p50, d.p50), added(p.latency.p99, d.p99)]))
  }
  return lines
}
