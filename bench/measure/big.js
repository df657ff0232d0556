// Throughput on `GET /big` (BENCH_BIG): the upstream's 1 MiB body, `wrk
// -c<BENCH_BIG_CONNECTIONS>`, one run each for the direct upstream (with BENCH_DIRECT) and every
// peer whose /big checked out at start.
import { fmtInt, fmtMB, fmtMs, tableHead, tableRow } from "../lib/format.js"
import { settings } from "../lib/settings.js"

const mibPerSec = (r) => ((r.bytesPerSec ?? 0) / 1024 ** 2).toFixed(0)

/** Sets `big` on each peer measured. */
export async function bigThroughput({ measure }, direct, live) {
  for (const p of [...(settings.direct ? [direct] : []), ...live]) {
    if (p.bigNote) {
      console.log(`bench: /big skipped for ${p.label}: ${p.bigNote}`)
      continue
    }
    p.big = await measure(p, "/big", settings.duration, settings.bigConnections)
    console.log(`bench: /big ${p.label}: ${mibPerSec(p.big)} MiB/s, ${fmtInt(p.big.rps)} req/s, p99 ${fmtMs(p.big.p99)}`)
  }
}

export function bigReport(peers, direct) {
  const rows = [...peers.filter((p) => p.child), ...(settings.direct ? [direct] : [])].filter((p) => p.big)
  if (rows.length === 0) return []
  const lines = ["", `Throughput, \`GET /big\` (1 MiB body), \`wrk -t${settings.threads} -c${settings.bigConnections} -d${settings.duration.wrk}\`, one round:`, ""]
  lines.push(...tableHead(["peer", "MiB/s", "req/s", "p50", "p99", "peak RSS MB", "errors"], "lrrrrrr"))
  for (const p of rows) lines.push(tableRow([p.label, mibPerSec(p.big), fmtInt(p.big.rps), fmtMs(p.big.p50), fmtMs(p.big.p99), fmtMB(p.big.rssKb), p.big.errors]))
  return lines
}
