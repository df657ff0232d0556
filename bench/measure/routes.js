// The route-table micro-benchmark (BENCH_ROUTES): bench/routes.ts in a process of its own, on a
// quiet machine (after every peer has stopped), with a time bound; its output goes into the report as is.
import path from "node:path"
import { runCaptured } from "../lib/children.js"
import { BENCH_DIR, ROOT } from "../lib/settings.js"

const ROUTES_SCRIPT = path.join(BENCH_DIR, "routes.ts")

/** Resolves { ok, output }. */
export async function routesBench(nodeBin) {
  console.log(`bench: route table micro-benchmark (${path.relative(ROOT, ROUTES_SCRIPT)})`)
  const { code, signal, stdout, stderr } = await runCaptured("routes", nodeBin, [ROUTES_SCRIPT], { timeoutMs: 300_000 })
  if (code !== 0) {
    const msg = `bench/routes.ts failed (code ${code}, signal ${signal}): ${`${stderr}${stdout}`.trim().slice(-1500)}`
    console.error(`bench: ${msg}`)
    return { ok: false, output: msg }
  }
  return { ok: true, output: stdout.trim() }
}
