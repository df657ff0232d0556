// Telemetry cost (BENCH_TELEMETRY, fibergate only): the realistic config with metrics and
// tracing off (twice: the second process is the noise control), metrics on, and tracing with
// sample_ratio 0 and 1, each its own fibergate process, BENCH_TELEMETRY_ROUNDS alternating
// rounds. Tracing exports over OTLP/HTTP to a sink in the bench process.
import http from "node:http"
import path from "node:path"
import { stopChild, tmpSubdir } from "../lib/children.js"
import { freePort } from "../lib/net.js"
import { variantRounds, variantTable } from "../lib/runner.js"
import { BASELINE_BIN, BASELINE_ONLY, HOST, settings } from "../lib/settings.js"
import { startFibergate } from "../peers/fibergate.js"
import { verifyProxy } from "../peers/start.js"

const TELEMETRY_VARIANTS = [
  { label: "metrics off, tracing off", yaml: () => "telemetry: { metrics: { enabled: false } }" },
  // The same config in a second process: how far two identical processes differ here, the
  // noise floor against which the other rows' costs are read.
  { label: "metrics off, tracing off (second process, control)", yaml: () => "telemetry: { metrics: { enabled: false } }" },
  { label: "metrics on", yaml: () => "telemetry: { metrics: { enabled: true } }" },
  {
    label: "metrics on + tracing, sample_ratio 0",
    yaml: (otlp) => `telemetry: { metrics: { enabled: true }, tracing: { otlp_endpoint: "${otlp}", sample_ratio: 0 } }`,
  },
  {
    label: "metrics on + tracing, sample_ratio 1 (every request exported)",
    yaml: (otlp) => `telemetry: { metrics: { enabled: true }, tracing: { otlp_endpoint: "${otlp}", sample_ratio: 1 } }`,
  },
]

/**
 * With BENCH_BASELINE_BIN (another checkout's bin/fibergate.js, e.g. a `git worktree` of the
 * last landed commit), the same all-off config also runs on that build: an A/B of a change to
 * the request path within one run, read against the control row.
 */
const telemetryVariants = () => {
  if (!BASELINE_BIN) return TELEMETRY_VARIANTS
  const baseline = { label: `metrics off, tracing off, baseline build (${BASELINE_BIN})`, yaml: TELEMETRY_VARIANTS[0].yaml, bin: path.resolve(BASELINE_BIN) }
  // BENCH_BASELINE_ONLY=1: just this build, its control and the baseline (a shorter A/B).
  return BASELINE_ONLY ? [...TELEMETRY_VARIANTS.slice(0, 2), baseline] : [...TELEMETRY_VARIANTS.slice(0, 2), baseline, ...TELEMETRY_VARIANTS.slice(2)]
}

/** Runs each telemetry variant as its own fibergate process; returns [{ label, rounds }]. */
export async function telemetryCost({ nodeBin, upstreamPorts, fdRaise, measure }) {
  // An OTLP/HTTP sink: reads and acknowledges every export, counting the bytes.
  let exported = 0
  const sink = http.createServer((req, res) => {
    req.on("data", (c) => (exported += c.length))
    req.on("end", () => res.writeHead(200, { "content-type": "application/json" }).end("{}"))
  })
  await new Promise((resolve) => sink.listen(0, HOST, resolve))
  const otlp = `http://${HOST}:${sink.address().port}/v1/traces`
  const variants = []
  try {
    for (const [i, v] of telemetryVariants().entries()) {
      const dir = tmpSubdir(`telemetry-${i}`)
      const port = await freePort()
      const child = await startFibergate(nodeBin, dir, port, upstreamPorts, fdRaise, v.yaml(otlp), v.bin)
      await verifyProxy(port)
      variants.push({ label: v.label, port, child, rounds: [] })
    }
    await variantRounds(measure, variants, settings.telemetryRounds, "telemetry")
    console.log(`bench: telemetry: the OTLP sink received ${(exported / 1024 ** 2).toFixed(1)} MiB of spans`)
  } finally {
    for (const v of variants) await stopChild(v.child)
    sink.close()
  }
  return variants.map(({ label, rounds }) => ({ label, rounds }))
}

export function telemetryReport(rows) {
  return [
    "",
    `Telemetry cost, fibergate with the realistic config, \`wrk -t${settings.threads} -c${settings.connections} -d${settings.duration.wrk}\`, ${settings.telemetryRounds} rounds, the variants alternating within each round; tracing exports over OTLP/HTTP to a sink in the bench process. "vs all off" is the median over rounds of each round's ratio to the all-off run of the same round, which cancels the machine's drift between rounds:`,
    "",
    ...variantTable(rows, "all off"),
  ]
}
