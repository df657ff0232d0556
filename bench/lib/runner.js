// The shared runner of the measurements: one measured wrk run (with the peer's peak RSS), the
// warm-up length, rounds that rotate the order, CPU time per request, and the A/B of fibergate
// variants (telemetry, middlewares) with its table.
import { sleep } from "./children.js"
import { fmtInt, fmtMs, fmtPct, fmtSignedPct, median, tableHead, tableRow } from "./format.js"
import { sampleRss, treeCpuSeconds } from "./procfs.js"
import { settings } from "./settings.js"
import { runWrk } from "./wrk.js"

/**
 * The `measure(peer, urlPath, duration, connections, wrkOpts)` every wrk measurement uses: one
 * wrk run against `peer.port`, returning wrk's result plus rssKb, the peer's peak RSS during
 * this run; a 300 ms pause follows.
 */
export const createMeasure = (wrkBin) => async (peer, urlPath, duration, connections, wrkOpts) => {
  const stop = sampleRss(peer.child.pid)
  let r
  try {
    r = await runWrk(wrkBin, peer.port, urlPath, duration, connections, wrkOpts)
  } finally {
    const rssKb = stop()
    r = r && { ...r, rssKb }
    await sleep(300)
  }
  return r
}

/** The length of an unrecorded warm-up run: BENCH_WARMUP, or BENCH_DURATION when that is 0. */
export const warmupDuration = () => (settings.warmup.seconds > 0 ? settings.warmup : settings.duration)

/** `rounds` rounds over `items`, `run(item, round)` one at a time; the order rotates each round so none always runs first. */
export async function alternating(items, rounds, run) {
  for (let round = 0; round < rounds; round++) {
    for (const [i] of items.entries()) await run(items[(i + round) % items.length], round)
  }
}

/**
 * `run()`'s result with `field` set to the CPU µs the process tree of `pid` used during it, per
 * unit of `count(result)` (requests by default); null without a pid or with a count of 0.
 */
export async function withCpu(pid, run, { field = "cpuUsPerRequest", count = (r) => r.requests } = {}) {
  const before = pid === undefined ? 0 : treeCpuSeconds(pid)
  const r = await run()
  const n = count(r)
  r[field] = pid === undefined || !n ? null : ((treeCpuSeconds(pid) - before) * 1e6) / n
  return r
}

/**
 * The A/B of fibergate variants, each its own running process ({ label, port, child, headers?,
 * rounds: [] }): a warm-up of each, then `rounds` alternating rounds of `GET /` at
 * BENCH_CONNECTIONS with the variant's wrk headers, each run with its CPU µs per request pushed
 * to the variant's rounds and logged as `bench: <name> round i/n <label>: …`.
 */
export async function variantRounds(measure, variants, rounds, name, { errors = false } = {}) {
  for (const v of variants) await measure(v, "/", warmupDuration(), settings.connections, { headers: v.headers })
  await alternating(variants, rounds, async (v, round) => {
    const r = await withCpu(v.child.pid, () => measure(v, "/", settings.duration, settings.connections, { headers: v.headers }))
    v.rounds.push(r)
    console.log(`bench: ${name} round ${round + 1}/${rounds} ${v.label}: ${fmtInt(r.rps)} req/s, p99 ${fmtMs(r.p99)}, ${r.cpuUsPerRequest?.toFixed(1)} µs CPU/request${errors ? `, ${r.errors} errors` : ""}`)
  })
}

/**
 * The variants' table: req/s, p99 and CPU µs per request (medians), and each one's cost against
 * the first variant (`vs`) as the median over rounds of each round's ratio, which cancels the
 * machine's drift between rounds; with `errors`, an errors column.
 */
export function variantTable(variants, vs, { errors = false } = {}) {
  const lines = tableHead(
    ["variant", "req/s (median)", "p99", `req/s vs ${vs}`, "CPU µs/request (median)", `CPU vs ${vs}`, ...(errors ? ["errors"] : []), "per-round req/s"],
    errors ? "lrrrrrrl" : "lrrrrrl",
  )
  const base = variants[0].rounds
  for (const v of variants) {
    const first = v === variants[0]
    const cost = median(v.rounds.map((r, i) => r.rps / base[i].rps - 1))
    const cpuCost = median(v.rounds.map((r, i) => (r.cpuUsPerRequest ?? 0) / (base[i].cpuUsPerRequest || 1) - 1))
    lines.push(
      tableRow([
        v.label,
        fmtInt(median(v.rounds.map((r) => r.rps))),
        fmtMs(median(v.rounds.map((r) => r.p99))),
        first ? "–" : fmtPct(cost),
        median(v.rounds.map((r) => r.cpuUsPerRequest ?? 0)).toFixed(1),
        first ? "–" : fmtSignedPct(cpuCost),
        ...(errors ? [v.rounds.reduce((a, r) => a + r.errors, 0)] : []),
        v.rounds.map((r) => fmtInt(r.rps)).join(", "),
      ]),
    )
  }
  return lines
}
