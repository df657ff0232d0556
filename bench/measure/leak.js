// Leak check (BENCH_LEAK, fibergate only): BENCH_LEAK_RUNS runs of about BENCH_LEAK_REQUESTS
// requests each against the peer that served the main load, the process tree's VmRSS read after
// 2 s of idle following each run; growth from run 2 (run 1 includes warm-up) to the last above
// 10% is flagged.
import path from "node:path"
import { sleep } from "../lib/children.js"
import { fmtInt, fmtMB, fmtSignedPct, median, tableHead, tableRow } from "../lib/format.js"
import { treeRss } from "../lib/procfs.js"
import { BENCH_DIR, settings } from "../lib/settings.js"
import { runWrk } from "../lib/wrk.js"

const LEAK_GROWTH_LIMIT = 0.1 // RSS growth from run 2 to run N above this is flagged
const LEAK_IDLE_MS = 2000 // idle time before reading RSS after each run
const LEAK_SCRIPT = path.join(BENCH_DIR, "scripts", "stop-after.lua")

/**
 * Each run stops after about BENCH_LEAK_REQUESTS responses (bench/scripts/stop-after.lua; the wrk
 * duration is only an upper bound picked from the peer's measured req/s in the main load).
 */
export async function leakCheck(peer, wrkBin) {
  const rps = median(peer.rounds.map((r) => r.rps))
  const threads = Math.min(settings.threads, settings.connections)
  const perThread = Math.ceil(settings.leakRequests / threads)
  const expectedRps = rps && rps > 0 ? rps : 2000
  // upper bound: twice the expected time plus 10 s (the run normally ends at the request count)
  const boundSeconds = Math.max(10, Math.ceil((2 * settings.leakRequests) / expectedRps) + 10)
  const duration = { wrk: `${boundSeconds}s`, seconds: boundSeconds }
  console.log(
    `bench: leak check ${peer.label}: ${settings.leakRuns} run(s) of ~${fmtInt(settings.leakRequests)} requests ` +
      `(wrk -t${threads} -c${settings.connections}, each thread stops after ${fmtInt(perThread)} responses, time bound ${boundSeconds}s), RSS after ${LEAK_IDLE_MS / 1000}s idle`,
  )
  const rssStartKb = treeRss(peer.child.pid)
  const runs = []
  for (let i = 0; i < settings.leakRuns; i++) {
    const t0 = Date.now()
    const r = await runWrk(wrkBin, peer.port, "/", duration, settings.connections, { script: LEAK_SCRIPT, scriptArgs: [perThread] })
    const seconds = (Date.now() - t0) / 1000
    await sleep(LEAK_IDLE_MS)
    const rssKb = treeRss(peer.child.pid)
    const timeBound = (r.requests ?? 0) < settings.leakRequests * 0.99
    runs.push({ requests: r.requests, rps: r.rps, errors: r.errors, p99: r.p99, seconds, rssKb, timeBound })
    console.log(
      `bench: leak run ${i + 1}/${settings.leakRuns}: ${fmtInt(r.requests)} requests in ${seconds.toFixed(1)} s (${fmtInt(r.rps)} req/s)` +
        `${r.errors ? `, ${r.errors} errors` : ""}${timeBound ? ", STOPPED BY THE TIME BOUND" : ""}; RSS after ${LEAK_IDLE_MS / 1000}s idle ${fmtMB(rssKb)} MB`,
    )
  }
  let growth = null
  let bytesPerRequest = null
  if (runs.length >= 3) {
    const base = runs[1].rssKb
    const last = runs[runs.length - 1].rssKb
    growth = base > 0 ? (last - base) / base : null
    const requests = runs.slice(2).reduce((a, r) => a + (r.requests ?? 0), 0)
    bytesPerRequest = requests > 0 ? ((last - base) * 1024) / requests : null
  }
  const flagged = growth !== null && growth > LEAK_GROWTH_LIMIT
  return { runs, rssStartKb, perThread, threads, boundSeconds, growth, bytesPerRequest, flagged }
}

export function leakReport(leak) {
  const lines = [
    "",
    `Leak check (fibergate only): ${leak.runs.length} runs of ~${fmtInt(settings.leakRequests)} requests (\`wrk -t${leak.threads} -c${settings.connections}\` + \`bench/scripts/stop-after.lua\`), ` +
      `process VmRSS ${LEAK_IDLE_MS / 1000} s after each run (RSS before run 1: ${fmtMB(leak.rssStartKb)} MB):`,
    "",
  ]
  lines.push(...tableHead(["run", "requests", "req/s", "errors", `RSS MB after ${LEAK_IDLE_MS / 1000} s idle`], "rrrrr"))
  leak.runs.forEach((r, i) => lines.push(tableRow([`${i + 1}${i === 0 ? " (incl. warm-up)" : ""}`, `${fmtInt(r.requests)}${r.timeBound ? " (time bound hit)" : ""}`, fmtInt(r.rps), r.errors, fmtMB(r.rssKb)])))
  lines.push("")
  lines.push(`RSS series (MB): ${leak.runs.map((r) => fmtMB(r.rssKb)).join(" → ")}`)
  if (leak.growth === null) {
    lines.push(`**RSS growth run 2 → run ${leak.runs.length}: n/a** (needs BENCH_LEAK_RUNS >= 3; run 1 includes warm-up)`)
  } else {
    const perReq = leak.bytesPerRequest === null ? "" : `, ${leak.bytesPerRequest.toFixed(1)} bytes per request over runs 3..${leak.runs.length}`
    lines.push(
      `**RSS growth run 2 → run ${leak.runs.length}: ${fmtSignedPct(leak.growth)}** (${fmtMB(leak.runs[1].rssKb)} → ${fmtMB(leak.runs[leak.runs.length - 1].rssKb)} MB${perReq}): ` +
        `${leak.flagged ? `**GROWTH** (above ${LEAK_GROWTH_LIMIT * 100}%)` : `no growth above ${LEAK_GROWTH_LIMIT * 100}%`}`,
    )
  }
  return lines
}
