// Benchmark peer: fibergate, one process, run as `npx fibergate` would run it (the bin with its
// shebang's node flags). The main peer runs the realistic config (peers/fibergate-config.js),
// checked by `fibergate check` and, once up, by its routing; the TLS, h2 and WebSocket
// measurements run their own small configs through startFibergateYaml.
import { spawnSync } from "node:child_process"
import fs from "node:fs"
import path from "node:path"
import { freePort, httpGet, startServer } from "../lib/net.js"
import { FIBERGATE_BIN, HOST, RESULTS_DIR, ROOT } from "../lib/settings.js"
import { fibergateConfig } from "./fibergate-config.js"

/**
 * The environment and node flags on the bin's `#!/usr/bin/env -S NAME=value … node …` line, so
 * the bench runs fibergate as `npx fibergate` would.
 */
function shebang(bin) {
  const first = fs.readFileSync(bin, "utf8").split("\n", 1)[0]
  const m = /^#!\S*env -S (.*)$/.exec(first)
  const words = m === null ? [] : m[1].trim().split(/\s+/).filter(Boolean)
  const node = words.indexOf("node")
  if (node < 0) return { env: {}, flags: [] }
  const env = Object.fromEntries(words.slice(0, node).map((w) => [w.slice(0, w.indexOf("=")), w.slice(w.indexOf("=") + 1)]))
  return { env, flags: words.slice(node + 1) }
}

const runArgs = (bin, ...args) => [...shebang(bin).flags, bin, "run", ...args]
const runEnv = (bin) => shebang(bin).env
const adminReady = (adminPort) => async () => (await httpGet(adminPort, "/ready", 1000)).status === 200

/**
 * fibergate on the realistic config (`telemetry` and the catch-all's middlewares as given) on
 * `port`, from `binOverride` or FIBERGATE_BIN, on cpu0. If that does not come up, the plain CLI
 * config (`run --listen … --upstream …`) is tried and a warning printed. The child carries
 * benchHow (the command) and benchConfig (the config's summary and `fibergate check`'s verdict;
 * null on the fallback).
 */
export async function startFibergate(nodeBin, dir, port, upstreamPorts, fdLimitArg, telemetry, binOverride, catchAllMiddlewares) {
  const bin = binOverride ?? FIBERGATE_BIN
  if (!fs.existsSync(bin)) throw new Error(`${path.relative(ROOT, bin) || bin} does not exist yet (the fibergate CLI is not built); skipping fibergate`)
  const adminPort = await freePort()
  const yamlFile = path.join(dir, "fibergate.yaml")
  const config = fibergateConfig(port, adminPort, upstreamPorts, telemetry, catchAllMiddlewares)
  fs.writeFileSync(yamlFile, config.yaml)
  // a copy to look at after the run (bench/results/ is gitignored)
  try {
    fs.mkdirSync(RESULTS_DIR, { recursive: true })
    fs.writeFileSync(path.join(RESULTS_DIR, "fibergate-bench.yaml"), config.yaml)
  } catch {}
  const check = spawnSync(nodeBin, [bin, "check", "-c", yamlFile], { cwd: ROOT, encoding: "utf8", timeout: 30_000 })
  const checkOut = `${check.stdout ?? ""}${check.stderr ?? ""}`.trim()
  if (check.status !== 0) console.error(`bench: WARNING: \`fibergate check\` rejected the realistic config (status ${check.status}):\n  ${checkOut.replaceAll("\n", "\n  ")}`)
  const upstreamUrls = upstreamPorts.map((p) => `http://${HOST}:${p}`)
  const listenerAnswers = async () => (await httpGet(port, "/", 1000)).status > 0
  const attempts = [
    {
      how: `run -c ${yamlFile}`,
      realistic: true,
      args: runArgs(bin, "-c", yamlFile),
      ready: async () => (await adminReady(adminPort)()) && (await listenerAnswers()),
    },
    {
      how: `run --listen ${HOST}:${port} ${upstreamUrls.map((u) => `--upstream ${u}`).join(" ")}`,
      realistic: false,
      args: runArgs(bin, "--listen", `${HOST}:${port}`, ...upstreamUrls.flatMap((u) => ["--upstream", u])),
      ready: listenerAnswers,
    },
  ]
  const errors = []
  for (const [i, a] of attempts.entries()) {
    const logFile = path.join(dir, `fibergate-${i}.log`)
    try {
      const child = await startServer("fibergate", nodeBin, a.args, { logFile, cpu: 0, fdLimit: fdLimitArg, extraEnv: runEnv(bin) }, { label: `fibergate (${a.how})`, ready: a.ready, tailBytes: 1200 })
      child.benchHow = a.how
      child.benchConfig = a.realistic ? { ...config, check: checkOut } : null
      if (!a.realistic) console.error("bench: WARNING: fibergate runs the plain CLI config (one catch-all route), NOT the realistic route table")
      return child
    } catch (e) {
      errors.push(e.message)
    }
  }
  throw new Error(errors.join("\n---\n"))
}

/** The head every measurement's own config starts with: the admin API (startFibergateYaml's readiness check), quiet logs, metrics on as in the main config. */
export const measureYamlHead = (adminPort) => `admin: { listen: "${HOST}:${adminPort}" }
log: { level: warn, access_log: false }
telemetry: { metrics: { enabled: true } }
`

/**
 * fibergate (FIBERGATE_BIN) on a config of the caller's, `yaml(adminPort)`, written to
 * `dir`/fibergate-`name`.yaml, on cpu0; resolves once its admin API says it is ready.
 */
export async function startFibergateYaml(name, label, nodeBin, dir, yaml, fdLimitArg) {
  const adminPort = await freePort()
  const yamlFile = path.join(dir, `fibergate-${name}.yaml`)
  fs.writeFileSync(yamlFile, yaml(adminPort))
  const logFile = path.join(dir, `fibergate-${name}.log`)
  return startServer(`fibergate-${name}`, nodeBin, runArgs(FIBERGATE_BIN, "-c", yamlFile), { logFile, cpu: 0, fdLimit: fdLimitArg, extraEnv: runEnv(FIBERGATE_BIN) }, { label, ready: adminReady(adminPort) })
}

/**
 * Checks that fibergate routes the realistic config as declared (the `x-route` response header
 * names the route): the catch-all for wrk's plain `GET /`, the conditional routes when their
 * conditions hold, and round robin over both upstream ports (`/whoami` answers with the port).
 */
export async function verifyFibergateConfig(port, upstreamPorts) {
  const results = []
  const route = async (label, urlPath, expected, opts) => {
    try {
      const r = await httpGet(port, urlPath, 2000, opts)
      const got = r.headers["x-route"]
      results.push({ label, ok: r.status === 200 && got === expected, detail: `${r.status}, x-route: ${got ?? "(none)"}` })
    } catch (e) {
      results.push({ label, ok: false, detail: e.message })
    }
  }
  await route("GET / -> catch-all `default`", "/", "default", {})
  await route("GET / + x-canary: true -> `canary`", "/", "canary", { headers: { "x-canary": "true" } })
  await route("GET / + x-debug -> `debug`", "/", "debug", { headers: { "x-debug": "1" } })
  await route("POST / -> `writes`", "/", "writes", { method: "POST", headers: { "content-length": "0" } })
  await route("GET /?api=2 -> `api-v2-query`", "/?api=2", "api-v2-query", {})
  await route("GET / + cookie beta=1 -> `beta`", "/", "beta", { headers: { cookie: "a=b; beta=1" } })
  const seen = []
  try {
    for (let i = 0; i < 6; i++) seen.push((await httpGet(port, "/whoami")).body.trim())
    const ok = upstreamPorts.every((p) => seen.includes(String(p)))
    results.push({ label: "round robin over both upstream ports", ok, detail: `ports seen: ${seen.join(", ")}` })
  } catch (e) {
    results.push({ label: "round robin over both upstream ports", ok: false, detail: e.message })
  }
  return results
}
