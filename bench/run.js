#!/usr/bin/env node
// fibergate benchmark: fibergate vs @fastify/http-proxy vs nginx, all proxying to one nginx upstream.
// Run with `npm run bench` (uses the Node pinned in devDependencies). See bench/README.md.
//
// Everything binds to and loads 127.0.0.1 only; every load run is bounded in time; every child
// process is started in its own process group and killed on exit, SIGINT/SIGTERM and errors.
import { spawn, spawnSync } from "node:child_process"
import fs from "node:fs"
import http from "node:http"
import net from "node:net"
import os from "node:os"
import path from "node:path"
import { fileURLToPath } from "node:url"

const BENCH_DIR = path.dirname(fileURLToPath(import.meta.url))
const ROOT = path.resolve(BENCH_DIR, "..")
const HOST = "127.0.0.1"
const BODY = "hello world\n"
const BIG_BYTES = 1024 * 1024
const FLOOR = 1.2 // project floor: fibergate req/s >= 1.2x @fastify/http-proxy

// ---------------------------------------------------------------------------------------------
// settings (env knobs, documented in bench/README.md)

const env = process.env
const durationArg = (name, def) => {
  const v = (env[name] ?? def).trim()
  const m = /^(\d+)(s|m)?$/.exec(v)
  if (!m) die(`${name}=${v}: expected a duration like 10s, 3s or 1m`)
  return { wrk: `${m[1]}${m[2] ?? "s"}`, seconds: Number(m[1]) * (m[2] === "m" ? 60 : 1) }
}
const intArg = (name, def, min = 0) => {
  const v = Number(env[name] ?? def)
  if (!Number.isInteger(v) || v < min) die(`${name}=${env[name]}: expected an integer >= ${min}`)
  return v
}
const boolArg = (name, def) => !["0", "false", "no", "off", ""].includes(String(env[name] ?? def).toLowerCase())

const ALL_PEERS = ["fibergate", "fastify", "nginx"]
const settings = {
  duration: durationArg("BENCH_DURATION", "10s"),
  warmup: durationArg("BENCH_WARMUP", "2s"),
  rounds: intArg("BENCH_ROUNDS", 3, 1),
  connections: intArg("BENCH_CONNECTIONS", 50, 1),
  threads: intArg("BENCH_THREADS", 1, 1),
  big: boolArg("BENCH_BIG", "1"),
  bigConnections: intArg("BENCH_BIG_CONNECTIONS", 10, 1),
  direct: boolArg("BENCH_DIRECT", "1"),
  pin: boolArg("BENCH_PIN", "0"),
  keepTmp: boolArg("BENCH_KEEP_TMP", "0"),
  startTimeout: intArg("BENCH_START_TIMEOUT", 30, 1),
  peers: (env.BENCH_PEERS ?? ALL_PEERS.join(","))
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean),
}
for (const p of settings.peers) if (!ALL_PEERS.includes(p)) die(`BENCH_PEERS: unknown peer "${p}" (known: ${ALL_PEERS.join(", ")})`)

// ---------------------------------------------------------------------------------------------
// child process bookkeeping and cleanup

const children = new Set()
let tmpDir = null
let cleaningUp = false

function die(msg) {
  console.error(`bench: ${msg}`)
  process.exit(2)
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

/** Spawns a child in its own process group; stdout/stderr go to a log file unless captured. */
function startChild(name, cmd, args, { capture = false, logFile, cwd = ROOT, cpu } = {}) {
  if (cpu !== undefined && settings.pin) {
    args = ["-c", String(cpu), cmd, ...args]
    cmd = "taskset"
  }
  let out = "ignore"
  let fd = null
  if (logFile) {
    fd = fs.openSync(logFile, "a")
    out = fd
  }
  const child = spawn(cmd, args, {
    cwd,
    detached: true, // own process group: signals from the terminal don't reach it, we stop it ourselves
    stdio: ["ignore", capture ? "pipe" : out, capture ? "pipe" : out],
    env: { ...process.env, NODE_ENV: "production" },
  })
  if (fd !== null) fs.closeSync(fd)
  child.benchName = name
  child.exitInfo = null
  child.exited = new Promise((resolve) => {
    child.once("exit", (code, signal) => {
      child.exitInfo = { code, signal }
      children.delete(child)
      resolve(child.exitInfo)
    })
    child.once("error", (err) => {
      child.exitInfo = { code: null, signal: null, error: err }
      children.delete(child)
      resolve(child.exitInfo)
    })
  })
  if (child.pid) children.add(child)
  return child
}

function killGroup(child, signal) {
  if (!child.pid || child.exitInfo) return
  try {
    process.kill(-child.pid, signal)
  } catch {
    try {
      process.kill(child.pid, signal)
    } catch {}
  }
}

async function stopChild(child, graceMs = 3000) {
  if (child.exitInfo || !child.pid) return
  killGroup(child, "SIGTERM")
  const t = sleep(graceMs).then(() => "timeout")
  if ((await Promise.race([child.exited, t])) === "timeout") {
    killGroup(child, "SIGKILL")
    await Promise.race([child.exited, sleep(1000)])
  }
}

async function stopAll() {
  await Promise.all([...children].map((c) => stopChild(c)))
}

function removeTmp() {
  if (tmpDir && !settings.keepTmp) {
    try {
      fs.rmSync(tmpDir, { recursive: true, force: true })
    } catch {}
  }
}

// last resort, synchronous: whatever is still alive when the process exits gets SIGKILL
process.on("exit", () => {
  for (const c of children) killGroup(c, "SIGKILL")
  removeTmp()
})

async function cleanupAndExit(code, why) {
  if (cleaningUp) return
  cleaningUp = true
  if (why) console.error(`\nbench: ${why}; stopping ${children.size} child process(es)...`)
  await Promise.race([stopAll(), sleep(6000)])
  process.exit(code)
}

for (const [sig, code] of [
  ["SIGINT", 130],
  ["SIGTERM", 143],
  ["SIGHUP", 129],
]) {
  process.on(sig, () => cleanupAndExit(code, `received ${sig}`))
}
process.on("uncaughtException", (err) => {
  console.error(err)
  cleanupAndExit(1, "uncaught error")
})
process.on("unhandledRejection", (err) => {
  console.error(err)
  cleanupAndExit(1, "unhandled rejection")
})

// ---------------------------------------------------------------------------------------------
// tools

function which(bin) {
  const dirs = (env.PATH ?? "").split(":").concat(["/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/sbin", "/usr/local/bin"])
  for (const d of dirs) {
    const p = path.join(d, bin)
    try {
      fs.accessSync(p, fs.constants.X_OK)
      return p
    } catch {}
  }
  return null
}

function ensureTools() {
  const wanted = [
    ["wrk", "wrk"],
    ["nginx", "nginx-light"],
  ]
  const missing = wanted.filter(([bin]) => !which(bin)).map(([, pkg]) => pkg)
  if (missing.length > 0) {
    console.log(`bench: missing tools, installing Debian package(s): ${missing.join(" ")}`)
    if (process.getuid?.() !== 0) die(`not root; install them yourself: apt-get install -y ${missing.join(" ")}`)
    const hadPolicy = fs.existsSync("/usr/sbin/policy-rc.d")
    const aptEnv = { ...process.env, DEBIAN_FRONTEND: "noninteractive" }
    const run = (args) => {
      console.log(`bench: $ apt-get ${args.join(" ")}`)
      const r = spawnSync("apt-get", args, { stdio: "inherit", env: aptEnv, timeout: 600_000 })
      if (r.status !== 0) die(`apt-get ${args.join(" ")} failed (status ${r.status})`)
    }
    run(["update"])
    run(["install", "-y", "--no-install-recommends", ...missing])
    if (missing.includes("nginx-light") && !hadPolicy) {
      // without policy-rc.d the package starts a system nginx on :80; we don't want it running
      spawnSync("invoke-rc.d", ["nginx", "stop"], { stdio: "ignore", timeout: 30_000 })
    }
    console.log(`bench: installed ${missing.join(" ")}`)
  }
  for (const [bin] of wanted) if (!which(bin)) die(`${bin} still not found after install`)
  return { wrk: which("wrk"), nginx: which("nginx") }
}

function toolVersion(cmd, args) {
  const r = spawnSync(cmd, args, { encoding: "utf8", timeout: 10_000 })
  return `${r.stdout ?? ""}${r.stderr ?? ""}`
}

function peerNode() {
  const major = Number(process.versions.node.split(".")[0])
  if (major >= 24) return process.execPath
  const pinned = path.join(ROOT, "node_modules", "node", "bin", "node")
  if (fs.existsSync(pinned)) {
    console.warn(`bench: running on Node ${process.version}; peers use the pinned Node at ${pinned}. Prefer \`npm run bench\`.`)
    return pinned
  }
  console.warn(`bench: running on Node ${process.version} (< 24); run it with \`npm run bench\` for the pinned Node.`)
  return process.execPath
}

// ---------------------------------------------------------------------------------------------
// network helpers

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer()
    srv.unref()
    srv.on("error", reject)
    srv.listen(0, HOST, () => {
      const { port } = srv.address()
      srv.close(() => resolve(port))
    })
  })
}

/** One HTTP GET with a hard timeout; resolves { status, body } or rejects. */
function httpGet(port, urlPath = "/", timeoutMs = 2000) {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: HOST, port, path: urlPath, agent: false, headers: { connection: "close" } }, (res) => {
      const chunks = []
      let len = 0
      res.on("data", (c) => {
        len += c.length
        if (len <= 64 * 1024) chunks.push(c)
      })
      res.on("end", () => resolve({ status: res.statusCode, length: len, body: Buffer.concat(chunks).toString("utf8") }))
      res.on("error", reject)
    })
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`timeout after ${timeoutMs}ms`)))
    req.on("error", reject)
  })
}

/** Polls until check() resolves true; fails early if the child exits. */
async function waitReady(child, label, check) {
  const deadline = Date.now() + settings.startTimeout * 1000
  let lastErr = "not ready"
  while (Date.now() < deadline) {
    if (child.exitInfo) {
      const { code, signal, error } = child.exitInfo
      throw new Error(`${label} exited before it was ready (${error ? error.message : `code ${code}, signal ${signal}`})`)
    }
    try {
      if (await check()) return
      lastErr = "check returned false"
    } catch (e) {
      lastErr = e.message
    }
    await sleep(100)
  }
  throw new Error(`${label} not ready after ${settings.startTimeout}s (${lastErr})`)
}

function tail(file, bytes = 2000) {
  try {
    const s = fs.readFileSync(file, "utf8")
    return s.slice(-bytes).trim()
  } catch {
    return ""
  }
}

// ---------------------------------------------------------------------------------------------
// RSS sampling

function readStatus(pid) {
  try {
    const s = fs.readFileSync(`/proc/${pid}/status`, "utf8")
    const kb = (k) => Number(new RegExp(`^${k}:\\s+(\\d+)`, "m").exec(s)?.[1] ?? 0)
    return { rss: kb("VmRSS"), hwm: kb("VmHWM") }
  } catch {
    return null
  }
}

function descendants(pid) {
  const out = [pid]
  for (let i = 0; i < out.length; i++) {
    let tasks = []
    try {
      tasks = fs.readdirSync(`/proc/${out[i]}/task`)
    } catch {}
    for (const t of tasks) {
      try {
        for (const c of fs.readFileSync(`/proc/${out[i]}/task/${t}/children`, "utf8").split(/\s+/)) if (c) out.push(Number(c))
      } catch {}
    }
  }
  return out
}

/** Resets the kernel's peak-RSS counter (VmHWM) of a process tree: `echo 5 > /proc/<pid>/clear_refs`. */
function resetHwm(pid) {
  let ok = true
  for (const p of descendants(pid)) {
    try {
      fs.writeFileSync(`/proc/${p}/clear_refs`, "5")
    } catch {
      ok = false
    }
  }
  return ok
}

/**
 * Peak RSS of a process tree during one run, in KiB: the summed VmRSS polled every 100ms, and the
 * root's VmHWM (reset at the start of the run where the kernel lets us, so it covers this run only).
 */
function sampleRss(pid) {
  const hwmReset = resetHwm(pid)
  let peak = 0
  const tick = () => {
    let sum = 0
    for (const p of descendants(pid)) sum += readStatus(p)?.rss ?? 0
    peak = Math.max(peak, sum)
  }
  tick()
  const timer = setInterval(tick, 100)
  return () => {
    clearInterval(timer)
    tick()
    return hwmReset ? Math.max(peak, readStatus(pid)?.hwm ?? 0) : peak
  }
}

// ---------------------------------------------------------------------------------------------
// nginx configs

function nginxFeatures(nginxBin) {
  const v = toolVersion(nginxBin, ["-V"])
  const has = (mod) => !v.includes(`--without-http_${mod}_module`)
  return { version: /nginx\/(\S+)/.exec(v)?.[1] ?? "?", fastcgi: has("fastcgi"), uwsgi: has("uwsgi"), scgi: has("scgi") }
}

function nginxCommon(dir, name, feats) {
  const t = path.join(dir, `${name}-temp`)
  fs.mkdirSync(t, { recursive: true })
  const temps = [`client_body_temp_path ${t}/body;`, `proxy_temp_path ${t}/proxy;`]
  if (feats.fastcgi) temps.push(`fastcgi_temp_path ${t}/fastcgi;`)
  if (feats.uwsgi) temps.push(`uwsgi_temp_path ${t}/uwsgi;`)
  if (feats.scgi) temps.push(`scgi_temp_path ${t}/scgi;`)
  return {
    main: `daemon off;
master_process off;
worker_processes 1;
worker_rlimit_nofile 16384;
pid ${dir}/${name}.pid;
error_log ${dir}/${name}.error.log warn;
events { worker_connections 8192; multi_accept on; }`,
    http: `access_log off;
  server_tokens off;
  sendfile on;
  tcp_nopush on;
  tcp_nodelay on;
  keepalive_timeout 75s;
  keepalive_requests 1000000;
  ${temps.join("\n  ")}`,
  }
}

function upstreamConf(dir, port, feats) {
  const c = nginxCommon(dir, "upstream", feats)
  return `${c.main}
http {
  ${c.http}
  default_type text/plain;
  server {
    listen ${HOST}:${port} backlog=4096;
    location = /big { root ${dir}/www; default_type application/octet-stream; }
    location / { return 200 "${BODY.replace("\n", "\\n")}"; }
  }
}
`
}

function nginxProxyConf(dir, port, upstreamPort, feats) {
  const c = nginxCommon(dir, "nginx-proxy", feats)
  return `${c.main}
http {
  ${c.http}
  upstream backend {
    server ${HOST}:${upstreamPort};
    keepalive 64;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
  }
  server {
    listen ${HOST}:${port} backlog=4096;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_max_temp_file_size 0;
    }
  }
}
`
}

function fibergateYaml(port, adminPort, upstreamPort) {
  return `# generated by bench/run.js
admin: { listen: ${HOST}:${adminPort} }
log: { level: warn, format: json, access_log: false }
servers:
  - name: bench
    listen: ${HOST}:${port}
    protocol: http
    routes:
      - id: all
        match: { path: { prefix: / } }
        upstream: backend
upstreams:
  backend:
    balance: round_robin
    endpoints: [ { url: "http://${HOST}:${upstreamPort}" } ]
    pool: { connections: 128 }
`
}

// ---------------------------------------------------------------------------------------------
// peers

const LABELS = {
  fibergate: "fibergate",
  fastify: "@fastify/http-proxy",
  nginx: "nginx (proxy)",
  direct: "nginx upstream (direct, baseline)",
}

/** Checks that a started proxy really proxies: body of / and size of /big. */
async function verifyProxy(port) {
  const r = await httpGet(port, "/")
  if (r.status !== 200 || r.body !== BODY) throw new Error(`GET / through it returned ${r.status} ${JSON.stringify(r.body.slice(0, 80))}, expected 200 "hello world\\n"`)
}

async function checkBig(port) {
  try {
    const r = await httpGet(port, "/big", 5000)
    return r.status === 200 && r.length === BIG_BYTES ? null : `GET /big returned ${r.status}, ${r.length} bytes`
  } catch (e) {
    return `GET /big failed: ${e.message}`
  }
}

async function startNginx(name, nginxBin, conf, dir, port, cpu) {
  const confFile = path.join(dir, `${name}.conf`)
  fs.writeFileSync(confFile, conf)
  const logFile = path.join(dir, `${name}.out.log`)
  const child = startChild(name, nginxBin, ["-p", `${dir}/`, "-e", path.join(dir, `${name}.error.log`), "-c", confFile], { logFile, cpu })
  try {
    await waitReady(child, name, async () => (await httpGet(port, "/", 1000)).status > 0)
  } catch (e) {
    const logs = [tail(logFile), tail(path.join(dir, `${name}.error.log`))].filter(Boolean).join("\n")
    throw new Error(`${e.message}${logs ? `\n${logs}` : ""}`)
  }
  return child
}

async function startFastify(nodeBin, dir, port, upstreamPort) {
  const logFile = path.join(dir, "fastify.log")
  const child = startChild("fastify", nodeBin, [path.join(BENCH_DIR, "peers", "fastify-proxy.js"), `${HOST}:${port}`, `http://${HOST}:${upstreamPort}`], {
    logFile,
    cpu: 0,
  })
  try {
    await waitReady(child, "@fastify/http-proxy", async () => (await httpGet(port, "/", 1000)).status > 0)
  } catch (e) {
    throw new Error(`${e.message}${tail(logFile) ? `\n${tail(logFile)}` : ""}`)
  }
  return child
}

async function startFibergate(nodeBin, dir, port, upstreamPort) {
  const bin = env.BENCH_FIBERGATE_BIN ? path.resolve(env.BENCH_FIBERGATE_BIN) : path.join(ROOT, "bin", "fibergate.js")
  if (!fs.existsSync(bin)) throw new Error(`${path.relative(ROOT, bin) || bin} does not exist yet (the fibergate CLI is not built); skipping fibergate`)
  const adminPort = await freePort()
  const yamlFile = path.join(dir, "fibergate.yaml")
  fs.writeFileSync(yamlFile, fibergateYaml(port, adminPort, upstreamPort))
  const attempts = [
    {
      how: `run -c ${yamlFile}`,
      args: [bin, "run", "-c", yamlFile],
      ready: async () => (await httpGet(adminPort, "/ready", 1000)).status === 200 && (await httpGet(port, "/", 1000)).status > 0,
    },
    {
      how: `run --listen ${HOST}:${port} --upstream http://${HOST}:${upstreamPort}`,
      args: [bin, "run", "--listen", `${HOST}:${port}`, "--upstream", `http://${HOST}:${upstreamPort}`],
      ready: async () => (await httpGet(port, "/", 1000)).status > 0,
    },
  ]
  const errors = []
  for (const [i, a] of attempts.entries()) {
    const logFile = path.join(dir, `fibergate-${i}.log`)
    const child = startChild("fibergate", nodeBin, a.args, { logFile, cpu: 0 })
    try {
      await waitReady(child, `fibergate (${a.how})`, a.ready)
      child.benchHow = a.how
      return child
    } catch (e) {
      await stopChild(child)
      errors.push(`${e.message}${tail(logFile, 1200) ? `\n${tail(logFile, 1200)}` : ""}`)
    }
  }
  throw new Error(errors.join("\n---\n"))
}

// ---------------------------------------------------------------------------------------------
// wrk

const UNIT_MS = { us: 0.001, ms: 1, s: 1000, m: 60_000, h: 3_600_000 }
const UNIT_B = { B: 1, KB: 1024, MB: 1024 ** 2, GB: 1024 ** 3, TB: 1024 ** 4 }

function parseWrk(out) {
  const lat = (p) => {
    const m = new RegExp(`^\\s*${p}%\\s+([\\d.]+)(us|ms|s|m|h)\\s*$`, "m").exec(out)
    return m ? Number(m[1]) * UNIT_MS[m[2]] : null
  }
  const rps = /^Requests\/sec:\s+([\d.]+)/m.exec(out)
  const tr = /^Transfer\/sec:\s+([\d.]+)(B|KB|MB|GB|TB)/m.exec(out)
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out)
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(out)
  const total = /(\d+) requests in/.exec(out)
  return {
    rps: rps ? Number(rps[1]) : null,
    p50: lat(50),
    p99: lat(99),
    bytesPerSec: tr ? Number(tr[1]) * UNIT_B[tr[2]] : null,
    requests: total ? Number(total[1]) : null,
    errors: (sock ? sock.slice(1).reduce((a, b) => a + Number(b), 0) : 0) + (non2xx ? Number(non2xx[1]) : 0),
  }
}

async function runWrk(wrkBin, port, urlPath, duration, connections) {
  const args = ["-t", String(settings.threads), "-c", String(connections), "-d", duration.wrk, "--timeout", "5s", "--latency", `http://${HOST}:${port}${urlPath}`]
  const child = startChild("wrk", wrkBin, args, { capture: true, cpu: 1 })
  let out = ""
  child.stdout.on("data", (d) => (out += d))
  child.stderr.on("data", (d) => (out += d))
  // hard bound: wrk should end after `duration`; kill it if it doesn't
  const guard = setTimeout(() => killGroup(child, "SIGKILL"), (duration.seconds + 20) * 1000)
  const info = await child.exited
  clearTimeout(guard)
  const r = parseWrk(out)
  if (info.code !== 0 || r.rps === null) throw new Error(`wrk failed (code ${info.code}, signal ${info.signal}):\n${out.trim()}`)
  return r
}

// ---------------------------------------------------------------------------------------------
// formatting

const median = (xs) => {
  const v = xs.filter((x) => x !== null && Number.isFinite(x)).sort((a, b) => a - b)
  if (v.length === 0) return null
  const m = Math.floor(v.length / 2)
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2
}
const fmtInt = (n) => (n === null ? "–" : Math.round(n).toLocaleString("en-US"))
const fmtMs = (ms) => (ms === null ? "–" : ms < 1 ? `${(ms * 1000).toFixed(0)} µs` : `${ms.toFixed(2)} ms`)
const fmtMB = (kb) => (kb ? (kb / 1024).toFixed(1) : "–")
const fmtRatio = (a, b) => (a && b ? `${(a / b).toFixed(2)}x` : "–")

function machineInfo(tools, nodeBin) {
  let cpu = "?"
  try {
    cpu = /^model name\s*:\s*(.+)$/m.exec(fs.readFileSync("/proc/cpuinfo", "utf8"))?.[1] ?? "?"
  } catch {}
  const nodeVersion = spawnSync(nodeBin, ["--version"], { encoding: "utf8" }).stdout.trim()
  const wrkVersion = /wrk (\S+)/.exec(toolVersion(tools.wrk, ["-v"]))?.[1] ?? "?"
  return {
    date: new Date().toISOString(),
    cpu,
    cores: os.availableParallelism(),
    memGiB: (os.totalmem() / 1024 ** 3).toFixed(1),
    kernel: `${os.type()} ${os.release()}`,
    node: nodeVersion,
    nginx: tools.nginxVersion,
    wrk: wrkVersion,
  }
}

// ---------------------------------------------------------------------------------------------
// main

async function main() {
  const tools = ensureTools()
  const feats = nginxFeatures(tools.nginx)
  tools.nginxVersion = feats.version
  const nodeBin = peerNode()
  if (settings.pin && !which("taskset")) {
    console.warn("bench: BENCH_PIN=1 but taskset is missing; not pinning")
    settings.pin = false
  }

  tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), "fibergate-bench-"))
  fs.mkdirSync(path.join(tmpDir, "www"))
  fs.writeFileSync(path.join(tmpDir, "www", "big"), Buffer.alloc(BIG_BYTES, "x"))
  const machine = machineInfo(tools, nodeBin)

  console.log(
    `bench: ${settings.rounds} round(s) x ${settings.duration.wrk}, wrk -t${settings.threads} -c${settings.connections}, peers: ${settings.peers.join(", ")}` +
      `${settings.pin ? " (pinned: proxies cpu0, wrk+upstream cpu1)" : ""}; tmp dir ${tmpDir}`,
  )

  // upstream
  const upstreamPort = await freePort()
  const upstream = await startNginx("upstream", tools.nginx, upstreamConf(tmpDir, upstreamPort, feats), tmpDir, upstreamPort, 1).catch((e) =>
    die(`upstream nginx failed to start: ${e.message}`),
  )
  {
    const r = await httpGet(upstreamPort, "/")
    if (r.status !== 200 || r.body !== BODY) die(`upstream returned ${r.status} ${JSON.stringify(r.body)}`)
  }
  console.log(`bench: upstream nginx ${feats.version} pid ${upstream.pid} on ${HOST}:${upstreamPort}`)

  // peers
  const peers = [] // { key, label, child, port, rounds: [], big, error }
  const failed = []
  for (const key of settings.peers) {
    const port = await freePort()
    const peer = { key, label: LABELS[key], port, rounds: [], big: null, bigNote: null, error: null }
    try {
      if (key === "fibergate") peer.child = await startFibergate(nodeBin, tmpDir, port, upstreamPort)
      else if (key === "fastify") peer.child = await startFastify(nodeBin, tmpDir, port, upstreamPort)
      else peer.child = await startNginx("nginx-proxy", tools.nginx, nginxProxyConf(tmpDir, port, upstreamPort, feats), tmpDir, port, 0)
      await verifyProxy(port)
      if (settings.big) peer.bigNote = await checkBig(port)
      console.log(`bench: ${peer.label} pid ${peer.child.pid} on ${HOST}:${port}${peer.child.benchHow ? ` (${peer.child.benchHow})` : ""}`)
    } catch (e) {
      peer.error = e.message
      failed.push(peer)
      console.error(`bench: ERROR: ${peer.label} failed to start:\n  ${e.message.replaceAll("\n", "\n  ")}`)
      if (peer.child) await stopChild(peer.child)
      peer.child = null
    }
    peers.push(peer)
  }
  const live = peers.filter((p) => p.child)
  const direct = { key: "direct", label: LABELS.direct, port: upstreamPort, child: upstream, rounds: [], big: null }

  // returns the wrk result plus rssKb, the peer's peak RSS during this run
  const measure = async (peer, urlPath, duration, connections) => {
    const stop = sampleRss(peer.child.pid)
    let r
    try {
      r = await runWrk(tools.wrk, peer.port, urlPath, duration, connections)
    } finally {
      const rssKb = stop()
      r = r && { ...r, rssKb }
      await sleep(300)
    }
    return r
  }

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

  for (let round = 0; round < settings.rounds; round++) {
    // rotate the order each round so no peer always runs first/last
    const order = live.map((_, i) => live[(i + round) % live.length])
    for (const p of order) {
      const r = await measure(p, "/", settings.duration, settings.connections)
      p.rounds.push(r)
      console.log(
        `bench: round ${round + 1}/${settings.rounds} ${p.label}: ${fmtInt(r.rps)} req/s, p50 ${fmtMs(r.p50)}, p99 ${fmtMs(r.p99)}${r.errors ? `, ${r.errors} errors` : ""}`,
      )
    }
  }

  if (settings.big) {
    for (const p of [...(settings.direct ? [direct] : []), ...live]) {
      if (p.bigNote) {
        console.log(`bench: /big skipped for ${p.label}: ${p.bigNote}`)
        continue
      }
      p.big = await measure(p, "/big", settings.duration, settings.bigConnections)
      console.log(`bench: /big ${p.label}: ${((p.big.bytesPerSec ?? 0) / 1024 ** 2).toFixed(0)} MiB/s, ${fmtInt(p.big.rps)} req/s, p99 ${fmtMs(p.big.p99)}`)
    }
  }

  // report
  const summary = (p) => ({
    rps: median(p.rounds.map((r) => r.rps)),
    p50: median(p.rounds.map((r) => r.p50)),
    p99: median(p.rounds.map((r) => r.p99)),
    errors: p.rounds.reduce((a, r) => a + r.errors, 0),
    rssKb: Math.max(0, ...p.rounds.map((r) => r.rssKb ?? 0)),
  })
  const byKey = Object.fromEntries(peers.map((p) => [p.key, p]))
  const fastifyRps = byKey.fastify?.child ? summary(byKey.fastify).rps : null
  const nginxRps = byKey.nginx?.child ? summary(byKey.nginx).rps : null

  const lines = []
  lines.push(`# fibergate benchmark`, "")
  lines.push(`- date: ${machine.date}`)
  lines.push(`- machine: ${machine.cpu}, ${machine.cores} cores, ${machine.memGiB} GiB RAM, ${machine.kernel}`)
  lines.push(`- node ${machine.node}, nginx ${machine.nginx}, wrk ${machine.wrk}`)
  lines.push(
    `- load: \`wrk -t${settings.threads} -c${settings.connections} -d${settings.duration.wrk} --latency\` on \`GET /\` (12-byte body), ` +
      `${settings.rounds} alternating round(s) per peer ${settings.warmup.seconds ? `after a ${settings.warmup.wrk} warmup` : "without warmup"}; req/s, p50 and p99 are medians over rounds`,
  )
  lines.push(`- every peer is one process/worker proxying to the same one-worker nginx upstream with keep-alive upstream connections${settings.pin ? "; proxies pinned to cpu0, wrk and upstream to cpu1" : ""}`)
  lines.push("")
  lines.push(`| peer | req/s (median of ${settings.rounds}) | p50 | p99 | peak RSS MB | ratio vs @fastify/http-proxy | ratio vs nginx | errors |`)
  lines.push(`| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |`)
  for (const p of peers) {
    if (!p.child) {
      lines.push(`| ${p.label} | failed to start | – | – | – | – | – | – |`)
      continue
    }
    const s = summary(p)
    lines.push(
      `| ${p.label} | ${fmtInt(s.rps)} | ${fmtMs(s.p50)} | ${fmtMs(s.p99)} | ${fmtMB(s.rssKb)} | ${fmtRatio(s.rps, fastifyRps)} | ${fmtRatio(s.rps, nginxRps)} | ${s.errors} |`,
    )
  }
  if (settings.direct) {
    const s = summary(direct)
    lines.push(`| ${direct.label} | ${fmtInt(s.rps)} | ${fmtMs(s.p50)} | ${fmtMs(s.p99)} | ${fmtMB(s.rssKb)} | – | – | ${s.errors} |`)
  }
  lines.push("")
  lines.push("Per-round req/s:")
  for (const p of peers.filter((p) => p.child)) lines.push(`- ${p.label}: ${p.rounds.map((r) => fmtInt(r.rps)).join(", ")}`)

  const bigRows = [...peers.filter((p) => p.child), ...(settings.direct ? [direct] : [])].filter((p) => p.big)
  if (bigRows.length > 0) {
    lines.push("", `Throughput, \`GET /big\` (1 MiB body), \`wrk -t${settings.threads} -c${settings.bigConnections} -d${settings.duration.wrk}\`, one round:`, "")
    lines.push(`| peer | MiB/s | req/s | p50 | p99 | peak RSS MB | errors |`, `| --- | ---: | ---: | ---: | ---: | ---: | ---: |`)
    for (const p of bigRows) {
      lines.push(
        `| ${p.label} | ${((p.big.bytesPerSec ?? 0) / 1024 ** 2).toFixed(0)} | ${fmtInt(p.big.rps)} | ${fmtMs(p.big.p50)} | ${fmtMs(p.big.p99)} | ${fmtMB(p.big.rssKb)} | ${p.big.errors} |`,
      )
    }
  }

  lines.push("")
  const fg = byKey.fibergate
  let verdict
  if (!fg) verdict = "fibergate / @fastify/http-proxy: not measured (fibergate not in BENCH_PEERS)"
  else if (!fg.child) verdict = "fibergate / @fastify/http-proxy: not measured (fibergate failed to start)"
  else if (!fastifyRps) verdict = "fibergate / @fastify/http-proxy: not measured (@fastify/http-proxy not running)"
  else {
    const ratio = summary(fg).rps / fastifyRps
    verdict = `**fibergate / @fastify/http-proxy = ${ratio.toFixed(2)}x** (floor ${FLOOR}x: ${ratio >= FLOOR ? "meets the floor" : "BELOW THE FLOOR"})`
  }
  lines.push(verdict)
  if (failed.length > 0) {
    lines.push("", "Peers that failed to start:")
    for (const p of failed) lines.push(`- ${p.label}: ${p.error.split("\n")[0]}`)
  }
  const md = `${lines.join("\n")}\n`

  console.log(`\n${md}`)
  const resultsDir = path.join(BENCH_DIR, "results")
  fs.mkdirSync(resultsDir, { recursive: true })
  fs.writeFileSync(path.join(resultsDir, "latest.md"), md)
  fs.writeFileSync(
    path.join(resultsDir, "latest.json"),
    `${JSON.stringify(
      {
        machine,
        settings: { ...settings, duration: settings.duration.wrk, warmup: settings.warmup.wrk },
        peers: [...peers, ...(settings.direct ? [direct] : [])].map((p) => ({
          key: p.key,
          label: p.label,
          error: p.error ?? null,
          summary: p.child ? summary(p) : null,
          rounds: p.rounds,
          big: p.big,
        })),
      },
      null,
      2,
    )}\n`,
  )
  console.log(`bench: wrote ${path.relative(ROOT, path.join(resultsDir, "latest.md"))} and latest.json`)

  cleaningUp = true
  await stopAll()
  removeTmp()
  process.exit(failed.length > 0 ? 1 : 0)
}

main().catch((e) => {
  console.error(e)
  cleanupAndExit(1, "error")
})
