// The main load: every peer (and the upstream directly, as the baseline) under `wrk
// -t<BENCH_THREADS> -c<BENCH_CONNECTIONS>` on `GET /`, BENCH_ROUNDS alternating rounds after an
// unrecorded warm-up. Its report: the run's description, the main table, and issue 13's goals.
import { fmtInt, fmtMB, fmtMs, fmtRatio, median, tableHead, tableRow } from "../lib/format.js"
import { alternating } from "../lib/runner.js"
import { CADDY_FLOOR, FG_IDLE_RSS_TARGET_MB, FG_PEAK_RSS_TARGET_MB, FLOOR, settings } from "../lib/settings.js"

/** Runs the warm-up, the direct baseline (BENCH_DIRECT) and the rounds; each run is pushed to its peer's rounds. */
export async function mainLoad({ measure }, live, direct) {
  // warmup (JIT, connection pools); not recorded
  if (settings.warmup.seconds > 0) {
    for (const p of live) {
      console.log(`bench: warmup ${p.label} ${settings.warmup.wrk}`)
      await measure(p, "/", settings.warmup, settings.connections)
    }
  }

  if (settings.direct) {
    const r = await measure(direct, "/", settings.duration, settings.connections)
    direct.rounds.push(r)
    console.log(`bench: baseline ${direct.label}: ${fmtInt(r.rps)} req/s, p50 ${fmtMs(r.p50)}, p99 ${fmtMs(r.p99)}`)
  }

  await alternating(live, settings.rounds, async (p, round) => {
    const r = await measure(p, "/", settings.duration, settings.connections)
    p.rounds.push(r)
    console.log(
      `bench: round ${round + 1}/${settings.rounds} ${p.label}: ${fmtInt(r.rps)} req/s, p50 ${fmtMs(r.p50)}, p99 ${fmtMs(r.p99)}${r.errors ? `, ${r.errors} errors` : ""}`,
    )
  })
}

/** A peer's main-load numbers: req/s, p50, p99 (medians over rounds), errors (summed), peak RSS in KiB. */
export const summary = (p) => ({
  rps: median(p.rounds.map((r) => r.rps)),
  p50: median(p.rounds.map((r) => r.p50)),
  p99: median(p.rounds.map((r) => r.p99)),
  errors: p.rounds.reduce((a, r) => a + r.errors, 0),
  rssKb: Math.max(0, ...p.rounds.map((r) => r.rssKb ?? 0)),
})

/** The report's head: the machine, the load, fibergate's config, the main table and the per-round req/s. */
export function loadReport(machine, peers, direct) {
  const byKey = Object.fromEntries(peers.map((p) => [p.key, p]))
  const lines = []
  lines.push(`# fibergate benchmark`, "")
  lines.push(`- date: ${machine.date}`)
  lines.push(`- machine: ${machine.cpu}, ${machine.cores} cores, ${machine.memGiB} GiB RAM, ${machine.kernel}`)
  lines.push(`- node ${machine.node}, nginx ${machine.nginx}, wrk ${machine.wrk}`)
  lines.push(
    `- load: \`wrk -t${settings.threads} -c${settings.connections} -d${settings.duration.wrk} --latency\` on \`GET /\` (12-byte body), ` +
      `${settings.rounds} alternating round(s) per peer ${settings.warmup.seconds ? `after a ${settings.warmup.wrk} warmup` : "without warmup"}; req/s, p50 and p99 are medians over rounds`,
  )
  lines.push(
    `- every peer is one process/worker proxying to the same one-worker nginx upstream (listening on two ports) with keep-alive upstream connections; ` +
      `fibergate and nginx balance round robin over both ports, @fastify/http-proxy (single upstream only) uses the first${settings.pin ? "; proxies pinned to cpu0, wrk and upstream to cpu1" : ""}`,
  )
  const fgPeer = byKey.fibergate
  if (fgPeer?.child?.benchConfig) {
    const cfg = fgPeer.child.benchConfig
    lines.push(`- fibergate config (realistic, \`bench/results/fibergate-bench.yaml\`; \`fibergate check\`: ${cfg.check.split("\n")[0] || "?"}):`)
    for (const f of cfg.features) lines.push(`  - ${f}`)
    const checks = fgPeer.configChecks ?? []
    const bad = checks.filter((c) => !c.ok)
    lines.push(
      `  - routing verified before the load: ${checks.length - bad.length}/${checks.length} checks ok` +
        (bad.length ? ` — FAILED: ${bad.map((c) => `${c.label} (${c.detail})`).join("; ")}` : ` (${checks.find((c) => c.label.startsWith("round robin"))?.detail ?? ""})`),
    )
  } else if (fgPeer?.child) {
    lines.push(`- fibergate config: **NOT the realistic route table** (fell back to \`${fgPeer.child.benchHow}\`)`)
  }
  lines.push("")
  const fgRps = byKey.fibergate?.child ? summary(byKey.fibergate).rps : null
  lines.push(...tableHead([`peer`, `req/s (median of ${settings.rounds})`, "p50", "p99", "idle RSS MB", "peak RSS MB", "fibergate ÷ peer (req/s)", "errors"], "lrrrrrrr"))
  for (const p of peers) {
    if (!p.child) {
      lines.push(tableRow([p.label, "failed to start", "–", "–", "–", "–", "–", "–"]))
      continue
    }
    const s = summary(p)
    lines.push(tableRow([p.label, fmtInt(s.rps), fmtMs(s.p50), fmtMs(s.p99), fmtMB(p.idleRssKb), fmtMB(s.rssKb), p.key === "fibergate" ? "–" : fmtRatio(fgRps, s.rps), s.errors]))
  }
  if (settings.direct) {
    const s = summary(direct)
    lines.push(tableRow([direct.label, fmtInt(s.rps), fmtMs(s.p50), fmtMs(s.p99), "–", fmtMB(s.rssKb), "–", s.errors]))
  }
  lines.push("")
  lines.push("Per-round req/s:")
  for (const p of peers.filter((p) => p.child)) lines.push(`- ${p.label}: ${p.rounds.map((r) => fmtInt(r.rps)).join(", ")}`)
  return lines
}

/** Issue 13's goals against the main load: fibergate / @fastify/http-proxy and / Caddy, p99 against Caddy's, fibergate's idle and peak RSS. */
/** `shipped`: shippedIdle's result (idle RSS on config/fibergate.yaml), or null. */
export function goalsReport(peers, shipped = null) {
  const byKey = Object.fromEntries(peers.map((p) => [p.key, p]))
  const lines = [""]
  const fg = byKey.fibergate
  const fastifyRps = byKey.fastify?.child ? summary(byKey.fastify).rps : null
  let verdict
  if (!fg) verdict = "fibergate / @fastify/http-proxy: not measured (fibergate not in BENCH_PEERS)"
  else if (!fg.child) verdict = "fibergate / @fastify/http-proxy: not measured (fibergate failed to start)"
  else if (!fastifyRps) verdict = "fibergate / @fastify/http-proxy: not measured (@fastify/http-proxy not running)"
  else {
    const ratio = summary(fg).rps / fastifyRps
    verdict = `**fibergate / @fastify/http-proxy = ${ratio.toFixed(2)}x** (goal ${FLOOR}x: ${ratio >= FLOOR ? "met" : "NOT MET"})`
  }
  lines.push(verdict)
  const caddy = byKey.caddy
  if (fg?.child && caddy?.child) {
    const f = summary(fg)
    const c = summary(caddy)
    const ratio = f.rps / c.rps
    lines.push(`**fibergate / Caddy = ${ratio.toFixed(2)}x** (goal ${CADDY_FLOOR}x: ${ratio >= CADDY_FLOOR ? "met" : "NOT MET"}); p99 ${fmtMs(f.p99)} vs Caddy's ${fmtMs(c.p99)} (goal: at most Caddy's: ${f.p99 <= c.p99 ? "met" : "NOT MET"})`)
  }
  if (fg?.child) {
    const peak = summary(fg).rssKb / 1024
    const idle = shipped?.rssKb ? shipped.rssKb / 1024 : null
    const idleText = idle === null
      ? `idle on config/fibergate.yaml not measured${shipped?.error ? ` (${shipped.error})` : ""}`
      : `idle on config/fibergate.yaml ${idle.toFixed(1)} MB (median of 3 starts; goal ${FG_IDLE_RSS_TARGET_MB}: ${idle <= FG_IDLE_RSS_TARGET_MB ? "met" : "NOT MET"})`
    lines.push(`fibergate RSS: ${idleText}, idle on the bench's config ${(fg.idleRssKb / 1024).toFixed(1)} MB, peak under the main load ${peak.toFixed(1)} MB (goal ${FG_PEAK_RSS_TARGET_MB}: ${peak <= FG_PEAK_RSS_TARGET_MB ? "met" : "NOT MET"})`)
  }
  return lines
}
