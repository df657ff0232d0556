#!/usr/bin/env node
// fibergate benchmark: fibergate vs @fastify/http-proxy, nginx, Caddy and HAProxy, all proxying to one nginx upstream.
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
import { middlewareVariants, startAuthServer, startRedis } from "./middlewares.js"
import { fibergateTlsYaml, makeBenchCert, nginxTlsServer } from "./tls.js"
import { nginxH2Server, runH2load } from "./h2.js"
import { fibergateWsYaml, nginxWsServer, runWsLoad, WS_ECHO_SCRIPT } from "./websocket.js"
import { caddyCommand, caddyfile } from "./peers/caddy.js"
import { haproxyCommand, haproxyConfig } from "./peers/haproxy.js"

const BENCH_DIR = path.dirname(fileURLToPath(import.meta.url))
const ROOT = path.resolve(BENCH_DIR, "..")
const HOST = "127.0.0.1"
const BODY = "hello world\n"
const BIG_BYTES = 1024 * 1024
// Issue 13's goals: fibergate req/s >= 1.5x @fastify/http-proxy and >= 1.2x Caddy, p99 at
// BENCH_CONNECTIONS <= Caddy's; idle RSS <= 70 MB and peak RSS under the main load <= 120 MB.
const FLOOR = 1.5
const CADDY_FLOOR = 1.2
const FG_IDLE_RSS_TARGET_MB = 70
const FG_PEAK_RSS_TARGET_MB = 120
const IDLE_RSS_TARGET_MB = 200 // project target: fibergate RSS with BENCH_IDLE_CONNECTIONS idle keep-alive connections
const LEAK_GROWTH_LIMIT = 0.1 // leak check: RSS growth from run 2 to run N above this is flagged
const LEAK_IDLE_MS = 2000 // leak check: idle time before reading RSS after each run

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

const ALL_PEERS = ["fibergate", "fastify", "nginx", "caddy", "haproxy"]
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
  latency: boolArg("BENCH_LATENCY", "1"),
  leak: boolArg("BENCH_LEAK", "1"),
  bundle: boolArg("BENCH_BUNDLE", "1"),
  leakRuns: intArg("BENCH_LEAK_RUNS", 5, 1),
  leakRequests: intArg("BENCH_LEAK_REQUESTS", 1_000_000, 1),
  idle: boolArg("BENCH_IDLE", "1"),
  idleConnections: intArg("BENCH_IDLE_CONNECTIONS", 10_000, 1),
  routes: boolArg("BENCH_ROUTES", "1"),
  telemetry: boolArg("BENCH_TELEMETRY", "1"),
  telemetryRounds: intArg("BENCH_TELEMETRY_ROUNDS", 5, 1),
  middlewares: boolArg("BENCH_MIDDLEWARES", "1"),
  middlewareRounds: intArg("BENCH_MIDDLEWARE_ROUNDS", 3, 1),
  tls: boolArg("BENCH_TLS", "1"),
  tlsRounds: intArg("BENCH_TLS_ROUNDS", 3, 1),
  h2: boolArg("BENCH_H2", "1"),
  h2Rounds: intArg("BENCH_H2_ROUNDS", 3, 1),
  h2Clients: intArg("BENCH_H2_CLIENTS", 10, 1),
  h2Streams: intArg("BENCH_H2_STREAMS", 10, 1),
  ws: boolArg("BENCH_WS", "1"),
  wsRounds: intArg("BENCH_WS_ROUNDS", 3, 1),
  wsConnections: intArg("BENCH_WS_CONNECTIONS", 50, 1),
  wsWindow: intArg("BENCH_WS_WINDOW", 4, 1),
  wsSize: intArg("BENCH_WS_SIZE", 128, 1),
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
function startChild(name, cmd, args, { capture = false, logFile, cwd = ROOT, cpu, stdin = "ignore", fdLimit, extraEnv = {} } = {}) {
  if (fdLimit) {
    // raise the fd limit for this child only (Node cannot raise its own beyond the hard limit; we are root)
    args = ["-c", `ulimit -n ${fdLimit} && exec "$0" "$@"`, cmd, ...args]
    cmd = "bash"
  }
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
    stdio: [stdin, capture ? "pipe" : out, capture ? "pipe" : out],
    env: { ...process.env, NODE_ENV: "production", ...extraEnv },
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
    ["h2load", "nghttp2-client"],
    ...(settings.peers.includes("caddy") ? [["caddy", "caddy"]] : []),
    ...(settings.peers.includes("haproxy") ? [["haproxy", "haproxy"]] : []),
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
    // the same for the system services the caddy and haproxy packages start
    for (const service of ["caddy", "haproxy"]) if (missing.includes(service) && !hadPolicy) spawnSync("invoke-rc.d", [service, "stop"], { stdio: "ignore", timeout: 30_000 })
    console.log(`bench: installed ${missing.join(" ")}`)
  }
  for (const [bin] of wanted) if (!which(bin)) die(`${bin} still not found after install`)
  return { wrk: which("wrk"), nginx: which("nginx"), caddy: which("caddy"), haproxy: which("haproxy") }
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

/** One HTTP request (GET unless told) with a hard timeout; resolves { status, length, body, headers } or rejects. */
function httpGet(port, urlPath = "/", timeoutMs = 2000, { method = "GET", headers = {} } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: HOST, port, path: urlPath, method, agent: false, headers: { connection: "close", ...headers } }, (res) => {
      const chunks = []
      let len = 0
      res.on("data", (c) => {
        len += c.length
        if (len <= 64 * 1024) chunks.push(c)
      })
      res.on("end", () => resolve({ status: res.statusCode, length: len, body: Buffer.concat(chunks).toString("utf8"), headers: res.headers }))
      res.on("error", reject)
    })
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`timeout after ${timeoutMs}ms`)))
    req.on("error", reject)
    req.end()
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

/** Current resident set of a process tree (summed VmRSS), in KiB. */
/** CPU seconds (user + system) used so far by a process tree, from /proc/<pid>/stat. */
function treeCpuSeconds(pid) {
  const tick = 100 // USER_HZ on Linux
  let sum = 0
  for (const p of descendants(pid)) {
    try {
      const stat = fs.readFileSync(`/proc/${p}/stat`, "utf8")
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
      sum += (Number(fields[11]) + Number(fields[12])) / tick // utime, stime
    } catch {}
  }
  return sum
}
function treeRss(pid) {
  let sum = 0
  for (const p of descendants(pid)) sum += readStatus(p)?.rss ?? 0
  return sum
}

const TCP_STATES = { "01": "established", "06": "time_wait", "08": "close_wait", "09": "last_ack", "04": "fin_wait1", "05": "fin_wait2", "0B": "closing" }

/**
 * Server-side TCP sockets of a local port (listening sockets excluded), by state, from
 * /proc/net/tcp and /proc/net/tcp6. `open` counts the ones still holding a file descriptor
 * (established and close_wait).
 */
function serverSockets(port) {
  const counts = { open: 0 }
  const hexPort = port.toString(16).toUpperCase().padStart(4, "0")
  for (const file of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    let text = ""
    try {
      text = fs.readFileSync(file, "utf8")
    } catch {
      continue
    }
    for (const line of text.split("\n").slice(1)) {
      const f = line.trim().split(/\s+/)
      if (f.length < 4 || !f[1].endsWith(`:${hexPort}`) || f[3] === "0A") continue
      const state = TCP_STATES[f[3]] ?? f[3]
      counts[state] = (counts[state] ?? 0) + 1
      if (f[3] === "01" || f[3] === "08") counts.open++
    }
  }
  return counts
}

/** The soft fd limit children get (Node raised its own soft limit to the hard one at startup). */
function fdLimit() {
  const r = spawnSync("bash", ["-c", "ulimit -n"], { encoding: "utf8", timeout: 5000 })
  const v = (r.stdout ?? "").trim()
  return v === "unlimited" ? Infinity : Number(v) || 0
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

function nginxCommon(dir, name, feats, workerConnections = 8192) {
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
worker_rlimit_nofile ${workerConnections * 2};
pid ${dir}/${name}.pid;
error_log ${dir}/${name}.error.log warn;
events { worker_connections ${workerConnections}; multi_accept on; }`,
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

/**
 * The shared upstream: one nginx worker, one server block listening on two ports (so a proxy can
 * balance over two distinct endpoint URLs). `/whoami` answers with the port that served it.
 */
function upstreamConf(dir, ports, feats) {
  const c = nginxCommon(dir, "upstream", feats)
  return `${c.main}
http {
  ${c.http}
  default_type text/plain;
  server {
${ports.map((p) => `    listen ${HOST}:${p} backlog=4096;`).join("\n")}
    location = /big { root ${dir}/www; default_type application/octet-stream; }
    location = /whoami { return 200 "$server_port\\n"; }
    location / { return 200 "${BODY.replace("\n", "\\n")}"; }
  }
}
`
}

function nginxProxyConf(dir, port, upstreamPorts, feats) {
  // room for the idle-connection check (BENCH_IDLE_CONNECTIONS client connections at once)
  const c = nginxCommon(dir, "nginx-proxy", feats, settings.idle ? Math.max(8192, settings.idleConnections + 4096) : 8192)
  return `${c.main}
http {
  ${c.http}
  upstream backend {
${upstreamPorts.map((p) => `    server ${HOST}:${p};`).join("\n")}
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

/**
 * The fibergate config under test: a realistic route table with every core feature on (see
 * bench/README.md). 52 routes that do not match the benchmark requests (`GET /`, `GET /big`) are
 * declared before the catch-all, six of them on `/` with method/header/query conditions that
 * wrk's requests fail, so they are tried (and rejected) on every request. The catch-all balances
 * round robin over the upstream's two ports. Returns the YAML and a summary of what is on.
 */
function fibergateConfig(port, adminPort, upstreamPorts, telemetry = "telemetry: { metrics: { enabled: true } }", catchAllMiddlewares = []) {
  const [a, b] = upstreamPorts.map((p) => `http://${HOST}:${p}`)
  const j = (v) => JSON.stringify(v) // JSON is valid YAML flow syntax: one route per line
  const routes = []
  const add = (kind, route) => routes.push({ kind, route })

  // exact paths
  const exact = [
    ["login", "/login", { methods: ["POST"], upstream: "auth", timeout: "5s" }],
    ["logout", "/logout", { upstream: "auth" }],
    ["healthz", "/healthz", { upstream: "api", timeout: "1s" }],
    ["readyz", "/readyz", { upstream: "api", timeout: "1s" }],
    ["robots", "/robots.txt", { upstream: "web", headers: { response: { set: { "cache-control": "max-age=86400" } } } }],
    ["favicon", "/favicon.ico", { upstream: "static" }],
    ["sitemap", "/sitemap.xml", { upstream: "web" }],
    ["me", "/api/v1/users/me", { upstream: "api", rewrite: { strip_prefix: "/api/v1" } }],
    ["session", "/api/v1/session", { methods: ["GET", "DELETE"], upstream: "auth", rewrite: { strip_prefix: "/api/v1" } }],
    ["oidc", "/.well-known/openid-configuration", { upstream: "auth" }],
    ["token", "/oauth/token", { methods: ["POST"], upstream: "auth", timeout: "3s" }],
    ["authorize", "/oauth/authorize", { upstream: "auth" }],
  ]
  for (const [id, path, { methods, ...rest }] of exact) add("exact", { id: `exact-${id}`, match: { path: { exact: path }, ...(methods ? { methods } : {}) }, ...rest })

  // path prefixes
  const prefixes = [
    ["/api/v1/users", "api"],
    ["/api/v1/orders", "api"],
    ["/api/v1/products", "api"],
    ["/api/v1/carts", "api"],
    ["/api/v1/payments", "api"],
    ["/api/v2", "api"],
    ["/static", "static"],
    ["/assets", "static"],
    ["/images", "static"],
    ["/docs", "web"],
    ["/admin", "web"],
    ["/internal", "api"],
    ["/graphql", "api"],
    ["/ws", "web"],
  ]
  for (const [path, upstream] of prefixes) {
    const name = path.slice(1).replaceAll("/", "-")
    const route = { id: `prefix-${name}`, match: { path: { prefix: path } }, upstream }
    if (path.startsWith("/api/v1/")) Object.assign(route, { rewrite: { strip_prefix: "/api/v1", add_prefix: "/v1" }, timeout: "10s" })
    if (path === "/api/v2") Object.assign(route, { rewrite: { strip_prefix: "/api/v2" }, headers: { request: { set: { "x-api-version": "2" } } } })
    if (upstream === "static") Object.assign(route, { headers: { response: { set: { "cache-control": "public, max-age=3600" }, remove: ["set-cookie"] } } })
    if (path === "/admin") Object.assign(route, { match: { ...route.match, headers: { authorization: { present: true } } } })
    if (path === "/internal") Object.assign(route, { headers: { request: { remove: ["cookie"], add: { "x-internal": "1" } } } })
    add("prefix", route)
  }

  // hosts (exact and wildcard)
  const hosts = [
    ["api.example.com", "api"],
    ["www.example.com", "web"],
    ["admin.example.com", "web"],
    ["static.example.com", "static"],
    ["auth.example.com", "auth"],
    ["grpc.example.com", "api"],
    ["status.example.com", "web"],
    ["cdn.example.org", "static"],
    ["*.tenants.example.com", "tenants"],
    ["*.preview.example.net", "web"],
  ]
  for (const [host, upstream] of hosts) {
    const route = { id: `host-${host.replace("*.", "any.")}`, match: { host, path: { prefix: "/" } }, upstream }
    if (host.startsWith("*.")) Object.assign(route, { headers: { request: { set: { "x-forwarded-tenant": "yes" } } } })
    add("host", route)
  }

  // regular expressions
  const regexes = [
    ["items", "^/v[0-9]+/items/[0-9]+$", { upstream: "api" }],
    ["avatar", "^/users/[0-9]+/avatar\\.(png|jpg)$", { upstream: "static" }],
    ["reports", "^/reports/[0-9]{4}-[0-9]{2}-[0-9]{2}\\.csv$", { upstream: "api", timeout: "60s" }],
    ["checkout", "^/shop/([^/]+)/checkout$", { upstream: "web" }],
    ["legacy", "^/legacy/(.*)$", { upstream: "legacy", rewrite: { regex: "^/legacy/(.*)$", replace: "/$1" } }],
    ["php", "\\.php$", { upstream: "legacy" }],
    ["download", "^/download/[a-f0-9]{32}$", { upstream: "static" }],
    ["blog", "^/blog/[0-9]{4}/[0-9]{2}/[a-z0-9-]+$", { upstream: "web" }],
    ["profile", "^/u/[A-Za-z0-9_]{3,16}$", { upstream: "web" }],
    ["feeds", "^/feeds/.*\\.(rss|atom)$", { upstream: "web" }],
  ]
  for (const [id, regex, rest] of regexes) add("regex", { id: `regex-${id}`, match: { path: { regex } }, ...rest })

  // could match the benchmark path, but their conditions fail for wrk's plain GET /
  const marker = (name) => ({ response: { set: { "x-route": name } } })
  add("conditional", { id: "debug", match: { path: { exact: "/" }, headers: { "x-debug": { present: true } } }, upstream: "backend", headers: marker("debug") })
  add("conditional", { id: "canary", match: { path: { prefix: "/" }, headers: { "x-canary": "true" } }, upstream: "backend", headers: marker("canary") })
  add("conditional", { id: "writes", match: { path: { prefix: "/" }, methods: ["POST", "PUT", "PATCH", "DELETE"] }, upstream: "backend", headers: marker("writes"), timeout: "60s" })
  add("conditional", { id: "beta", match: { path: { prefix: "/" }, headers: { cookie: { regex: "(^|; )beta=1(;|$)" } } }, upstream: "backend", headers: marker("beta") })
  add("conditional", { id: "api-v2-query", match: { path: { prefix: "/" }, query: { api: "2" } }, upstream: "backend", headers: marker("api-v2-query") })
  add("conditional", { id: "mobile", match: { path: { prefix: "/" }, headers: { "user-agent": { regex: "Mobile|Android" } } }, upstream: "backend", headers: marker("mobile") })

  // the catch-all that serves the benchmark
  add("catch-all", {
    id: "default",
    match: { path: { prefix: "/" } },
    upstream: "backend",
    rewrite: { regex: "^(/.*)$", replace: "$1" }, // identity, but runs the rewrite step on every request
    headers: {
      request: { set: { "x-gateway": "fibergate" }, remove: ["x-debug"] },
      response: { set: { "x-route": "default" }, remove: ["x-powered-by"] },
    },
    timeout: "30s",
    ...(catchAllMiddlewares.length > 0 ? { middlewares: catchAllMiddlewares } : {}),
  })

  const pool = { connections: 128, keep_alive: "60s", connect_timeout: "2s" }
  const upstreams = {
    backend: { balance: "round_robin", endpoints: [{ url: a }, { url: b }], pool },
    api: { balance: "least_request", endpoints: [{ url: a }, { url: b }], pool: { connections: 64 } },
    web: { balance: "weighted", endpoints: [{ url: a, weight: 3 }, { url: b, weight: 1 }] },
    auth: { balance: "ewma", endpoints: [{ url: a }, { url: b }] },
    tenants: { balance: "consistent_hash", hash_on: "header:x-tenant", endpoints: [{ url: a }, { url: b }] },
    static: { balance: "consistent_hash", hash_on: "path", endpoints: [{ url: a }, { url: b }] },
    legacy: { balance: "random", endpoints: [{ url: a }] },
  }
  const maxConnections = Math.max(10_000, settings.idle ? settings.idleConnections + 1000 : 0)

  const yaml = `# generated by bench/run.js: a realistic route table with every core feature on (bench/README.md)
admin: { listen: ${HOST}:${adminPort} }
log: { level: warn, format: json, access_log: false }
${telemetry}
shutdown: { drain_timeout: 5s }
workers: 1
servers:
  - name: bench
    listen: ${HOST}:${port}
    protocol: http
    limits: { max_connections: ${maxConnections}, max_header_bytes: 16384, max_body_bytes: 10485760, idle_timeout: 75s }
    routes:
${routes.map(({ route }) => `      - ${j(route)}`).join("\n")}
upstreams:
${Object.entries(upstreams)
  .map(([name, u]) => `  ${name}: ${j(u)}`)
  .join("\n")}
`
  const count = (kind) => routes.filter((r) => r.kind === kind).length
  const features = [
    `${routes.length} routes on one listener, in this order: ${count("exact")} exact, ${count("prefix")} prefix, ${count("host")} host (2 of them \`*.\` wildcards), ` +
      `${count("regex")} regex (none of them matches the benchmark paths), ${count("conditional")} routes on \`/\` whose method/header/query conditions fail for wrk's ` +
      `\`GET /\` (header value, header present, header regex, cookie regex, methods, query), then the catch-all \`prefix: /\``,
    "catch-all: `balance: round_robin` over 2 endpoints (the upstream's two ports), request and response header rules, an identity regex rewrite, `timeout: 30s`",
    `the other routes use rewrites (strip/add prefix, regex), header rules and timeouts; ${Object.keys(upstreams).length} upstreams use every balancer (round_robin, least_request, weighted, ewma, consistent_hash on a header and on the path, random)`,
    `listener limits (max_connections ${maxConnections}, max_header_bytes, max_body_bytes, idle_timeout 75s), pool settings, admin API, shutdown drain_timeout; log level warn, access_log false`,
    "metrics on (`telemetry.metrics.enabled: true`): requests, durations and upstream attempts are counted for every request",
  ]
  return { yaml, features, routeCount: routes.length }
}

// ---------------------------------------------------------------------------------------------
// peers

const LABELS = {
  fibergate: "fibergate",
  fastify: "@fastify/http-proxy",
  nginx: "nginx (proxy)",
  caddy: "Caddy",
  haproxy: "HAProxy",
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

/**
 * Checks that fibergate routes the realistic config as declared (the `x-route` response header
 * names the route): the catch-all for wrk's plain `GET /`, the conditional routes when their
 * conditions hold, and round robin over both upstream ports (`/whoami` answers with the port).
 */
async function verifyFibergateConfig(port, upstreamPorts) {
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

/** A peer run from a config file: Caddy or HAProxy, on cpu0 like the other proxies. */
async function startConfigured(name, bin, file, text, command, port) {
  fs.writeFileSync(file, text)
  const logFile = path.join(path.dirname(file), `${name}.log`)
  const { args, env: extraEnv } = command(file)
  const child = startChild(name, bin, args, { logFile, cpu: 0, extraEnv })
  try {
    await waitReady(child, name, async () => (await httpGet(port, "/", 1000)).status > 0)
  } catch (e) {
    const logs = tail(logFile)
    throw new Error(`${e.message}${logs ? `\n${logs}` : ""}`)
  }
  return child
}

async function startFastify(nodeBin, dir, port, upstreamPort, fdLimitArg) {
  const logFile = path.join(dir, "fastify.log")
  const child = startChild("fastify", nodeBin, [path.join(BENCH_DIR, "peers", "fastify-proxy.js"), `${HOST}:${port}`, `http://${HOST}:${upstreamPort}`], {
    logFile,
    cpu: 0,
    fdLimit: fdLimitArg,
  })
  try {
    await waitReady(child, "@fastify/http-proxy", async () => (await httpGet(port, "/", 1000)).status > 0)
  } catch (e) {
    throw new Error(`${e.message}${tail(logFile) ? `\n${tail(logFile)}` : ""}`)
  }
  return child
}

/** The node flags on the bin's `#!/usr/bin/env -S node …` line, so the bench runs fibergate as `npx fibergate` would. */
function shebangFlags(bin) {
  const first = fs.readFileSync(bin, "utf8").split("\n", 1)[0]
  const m = /^#!\S*env -S node(.*)$/.exec(first)
  return m === null ? [] : m[1].trim().split(/\s+/).filter(Boolean)
}

async function startFibergate(nodeBin, dir, port, upstreamPorts, fdLimitArg, telemetry, binOverride, catchAllMiddlewares) {
  const bin = binOverride ?? (env.BENCH_FIBERGATE_BIN ? path.resolve(env.BENCH_FIBERGATE_BIN) : path.join(ROOT, "bin", "fibergate.js"))
  if (!fs.existsSync(bin)) throw new Error(`${path.relative(ROOT, bin) || bin} does not exist yet (the fibergate CLI is not built); skipping fibergate`)
  const adminPort = await freePort()
  const yamlFile = path.join(dir, "fibergate.yaml")
  const config = fibergateConfig(port, adminPort, upstreamPorts, telemetry, catchAllMiddlewares)
  fs.writeFileSync(yamlFile, config.yaml)
  // a copy to look at after the run (bench/results/ is gitignored)
  try {
    fs.mkdirSync(path.join(BENCH_DIR, "results"), { recursive: true })
    fs.writeFileSync(path.join(BENCH_DIR, "results", "fibergate-bench.yaml"), config.yaml)
  } catch {}
  const check = spawnSync(nodeBin, [bin, "check", "-c", yamlFile], { cwd: ROOT, encoding: "utf8", timeout: 30_000 })
  const checkOut = `${check.stdout ?? ""}${check.stderr ?? ""}`.trim()
  if (check.status !== 0) console.error(`bench: WARNING: \`fibergate check\` rejected the realistic config (status ${check.status}):\n  ${checkOut.replaceAll("\n", "\n  ")}`)
  const upstreamUrls = upstreamPorts.map((p) => `http://${HOST}:${p}`)
  const attempts = [
    {
      how: `run -c ${yamlFile}`,
      realistic: true,
      args: [...shebangFlags(bin), bin, "run", "-c", yamlFile],
      ready: async () => (await httpGet(adminPort, "/ready", 1000)).status === 200 && (await httpGet(port, "/", 1000)).status > 0,
    },
    {
      how: `run --listen ${HOST}:${port} ${upstreamUrls.map((u) => `--upstream ${u}`).join(" ")}`,
      realistic: false,
      args: [...shebangFlags(bin), bin, "run", "--listen", `${HOST}:${port}`, ...upstreamUrls.flatMap((u) => ["--upstream", u])],
      ready: async () => (await httpGet(port, "/", 1000)).status > 0,
    },
  ]
  const errors = []
  for (const [i, a] of attempts.entries()) {
    const logFile = path.join(dir, `fibergate-${i}.log`)
    const child = startChild("fibergate", nodeBin, a.args, { logFile, cpu: 0, fdLimit: fdLimitArg })
    try {
      await waitReady(child, `fibergate (${a.how})`, a.ready)
      child.benchHow = a.how
      child.benchConfig = a.realistic ? { ...config, check: checkOut } : null
      if (!a.realistic) console.error("bench: WARNING: fibergate runs the plain CLI config (one catch-all route), NOT the realistic route table")
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

/**
 * One wrk run. `threads` defaults to BENCH_THREADS; `script` + `scriptArgs` pass a Lua script
 * (its `init(args)` gets scriptArgs), e.g. bench/stop-after.lua for a request count.
 */
async function runWrk(wrkBin, port, urlPath, duration, connections, { threads = settings.threads, script, scriptArgs = [], headers = [], scheme = "http" } = {}) {
  threads = Math.min(threads, connections) // wrk needs connections >= threads
  const args = ["-t", String(threads), "-c", String(connections), "-d", duration.wrk, "--timeout", "5s", "--latency"]
  for (const h of headers) args.push("-H", h)
  if (script) args.push("-s", script)
  args.push(`${scheme}://${HOST}:${port}${urlPath}`)
  if (script && scriptArgs.length > 0) args.push("--", ...scriptArgs.map(String))
  const child = startChild("wrk", wrkBin, args, { capture: true, cpu: 1 })
  let out = ""
  let stopped = 0
  child.stdout.on("data", (d) => (out += d))
  child.stderr.on("data", (d) => {
    out += d
    // bench/stop-after.lua: once every thread has stopped, wake wrk's main thread (it sleeps for
    // the whole -d otherwise); on SIGINT wrk prints its summary and exits 0
    if (script) {
      stopped = out.split("stop-after: done").length - 1
      if (stopped >= threads && !child.exitInfo) {
        try {
          process.kill(child.pid, "SIGINT")
        } catch {}
      }
    }
  })
  // hard bound: wrk should end after `duration`; kill it if it doesn't
  const guard = setTimeout(() => killGroup(child, "SIGKILL"), (duration.seconds + 20) * 1000)
  const info = await child.exited
  clearTimeout(guard)
  const r = parseWrk(out)
  if (info.code !== 0 || r.rps === null) throw new Error(`wrk failed (code ${info.code}, signal ${info.signal}):\n${out.trim()}`)
  return r
}

// ---------------------------------------------------------------------------------------------
// telemetry cost

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
  if (!env.BENCH_BASELINE_BIN) return TELEMETRY_VARIANTS
  const baseline = { label: `metrics off, tracing off, baseline build (${env.BENCH_BASELINE_BIN})`, yaml: TELEMETRY_VARIANTS[0].yaml, bin: path.resolve(env.BENCH_BASELINE_BIN) }
  // BENCH_BASELINE_ONLY=1: just this build, its control and the baseline (a shorter A/B).
  return boolArg("BENCH_BASELINE_ONLY", "0")
    ? [...TELEMETRY_VARIANTS.slice(0, 2), baseline]
    : [...TELEMETRY_VARIANTS.slice(0, 2), baseline, ...TELEMETRY_VARIANTS.slice(2)]
}

/** Runs each telemetry variant as its own fibergate process; returns [{ label, rounds }]. */
async function telemetryCost(nodeBin, upstreamPorts, fdRaise, measure) {
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
      const dir = path.join(tmpDir, `telemetry-${i}`)
      fs.mkdirSync(dir, { recursive: true })
      const port = await freePort()
      const child = await startFibergate(nodeBin, dir, port, upstreamPorts, fdRaise, v.yaml(otlp), v.bin)
      await verifyProxy(port)
      variants.push({ label: v.label, port, child, rounds: [] })
    }
    for (const v of variants) await measure(v, "/", settings.warmup.seconds > 0 ? settings.warmup : settings.duration, settings.connections)
    for (let round = 0; round < settings.telemetryRounds; round++) {
      for (const [i] of variants.entries()) {
        const v = variants[(i + round) % variants.length]
        const cpuBefore = treeCpuSeconds(v.child.pid)
        const r = await measure(v, "/", settings.duration, settings.connections)
        // CPU per request: less sensitive than req/s to what else the shared machine is doing
        r.cpuUsPerRequest = r.requests ? ((treeCpuSeconds(v.child.pid) - cpuBefore) * 1e6) / r.requests : null
        v.rounds.push(r)
        console.log(`bench: telemetry round ${round + 1}/${settings.telemetryRounds} ${v.label}: ${fmtInt(r.rps)} req/s, p99 ${fmtMs(r.p99)}, ${r.cpuUsPerRequest?.toFixed(1)} µs CPU/request`)
      }
    }
    console.log(`bench: telemetry: the OTLP sink received ${(exported / 1024 ** 2).toFixed(1)} MiB of spans`)
  } finally {
    for (const v of variants) await stopChild(v.child)
    sink.close()
  }
  return variants.map(({ label, rounds }) => ({ label, rounds }))
}

// ---------------------------------------------------------------------------------------------
// middleware cost (variants in bench/middlewares.js)

/** Runs each middleware variant as its own fibergate process; returns [{ label, rounds }]. */
async function middlewareCost(nodeBin, upstreamPorts, fdRaise, measure) {
  const redis = await startRedis()
  if (!redis) console.error("bench: middleware cost: no redis-server here, the Redis limiter row is skipped (apt-get install redis-server)")
  const auth = await startAuthServer()
  const dir = path.join(tmpDir, "middlewares")
  fs.mkdirSync(dir, { recursive: true })
  const variants = []
  try {
    for (const [i, v] of (await middlewareVariants(dir, redis?.url, auth.url)).entries()) {
      const vdir = path.join(dir, String(i))
      fs.mkdirSync(vdir, { recursive: true })
      const port = await freePort()
      const head = ["telemetry: { metrics: { enabled: true } }", v.head].filter((l) => l !== "").join("\n")
      const child = await startFibergate(nodeBin, vdir, port, upstreamPorts, fdRaise, head, undefined, v.middlewares)
      const probe = await httpGet(port, "/", 2000, { headers: Object.fromEntries(v.headers.map((h) => [h.slice(0, h.indexOf(":")), h.slice(h.indexOf(":") + 1).trim()])) })
      if (probe.status !== 200) throw new Error(`middleware variant ${v.label}: GET / answered ${probe.status} ${probe.body.slice(0, 120)}`)
      variants.push({ label: v.label, port, child, headers: v.headers, rounds: [] })
    }
    for (const v of variants) await measure(v, "/", settings.warmup.seconds > 0 ? settings.warmup : settings.duration, settings.connections, { headers: v.headers })
    for (let round = 0; round < settings.middlewareRounds; round++) {
      for (const [i] of variants.entries()) {
        const v = variants[(i + round) % variants.length]
        const cpuBefore = treeCpuSeconds(v.child.pid)
        const r = await measure(v, "/", settings.duration, settings.connections, { headers: v.headers })
        r.cpuUsPerRequest = r.requests ? ((treeCpuSeconds(v.child.pid) - cpuBefore) * 1e6) / r.requests : null
        v.rounds.push(r)
        console.log(`bench: middleware round ${round + 1}/${settings.middlewareRounds} ${v.label}: ${fmtInt(r.rps)} req/s, p99 ${fmtMs(r.p99)}, ${r.cpuUsPerRequest?.toFixed(1)} µs CPU/request, ${r.errors} errors`)
      }
    }
  } finally {
    for (const v of variants) await stopChild(v.child)
    auth.stop()
    redis?.stop()
  }
  return variants.map(({ label, rounds }) => ({ label, rounds }))
}

// ---------------------------------------------------------------------------------------------
// TLS cost (pieces in bench/tls.js)

/**
 * Starts fibergate on an https listener and nginx with `nginxServer(port, cert)`, one worker
 * each, proxying to `upstreamPorts`, with a fresh certificate in tmpDir/`name`. Each peer is
 * pushed to `peers` as soon as it runs (so the caller's cleanup stops it); returns both.
 */
async function startTlsPeers(name, nodeBin, nginxBin, feats, upstreamPorts, fdRaise, nginxServer, peers) {
  const dir = path.join(tmpDir, name)
  fs.mkdirSync(dir, { recursive: true })
  const cert = makeBenchCert(dir)
  const fgPort = await freePort()
  const adminPort = await freePort()
  const yamlFile = path.join(dir, `fibergate-${name}.yaml`)
  fs.writeFileSync(yamlFile, fibergateTlsYaml(fgPort, adminPort, upstreamPorts, cert))
  const bin = env.BENCH_FIBERGATE_BIN ? path.resolve(env.BENCH_FIBERGATE_BIN) : path.join(ROOT, "bin", "fibergate.js")
  const logFile = path.join(dir, `fibergate-${name}.log`)
  const fg = startChild(`fibergate-${name}`, nodeBin, [...shebangFlags(bin), bin, "run", "-c", yamlFile], { logFile, cpu: 0, fdLimit: fdRaise })
  const fibergate = { label: `fibergate (${name})`, port: fgPort, child: fg }
  peers.push(fibergate)
  await waitReady(fg, fibergate.label, async () => (await httpGet(adminPort, "/ready", 1000)).status === 200).catch((e) => {
    throw new Error(`${e.message}\n${tail(logFile)}`)
  })
  const ngPort = await freePort()
  const c = nginxCommon(dir, `nginx-${name}`, feats)
  const conf = `${c.main}
http {
  ${c.http}
  upstream backend {
${upstreamPorts.map((p) => `    server ${HOST}:${p};`).join("\n")}
    keepalive 64;
  }
${nginxServer(ngPort, cert)}
}
`
  const ng = await startNginx(`nginx-${name}`, nginxBin, conf, dir, ngPort, 0)
  const nginx = { label: `nginx (${name})`, port: ngPort, child: ng }
  peers.push(nginx)
  return [fibergate, nginx]
}

/**
 * fibergate's https listener and nginx's `listen ssl`, one worker each, through the same
 * upstream, in alternating rounds: keep-alive HTTPS, then a new TLS connection per request.
 * Returns [{ label, keepAlive: [rounds], handshakes: [rounds] }].
 */
async function tlsCost(nodeBin, nginxBin, feats, upstreamPorts, fdRaise, measure) {
  const peers = []
  try {
    const started = await startTlsPeers("tls", nodeBin, nginxBin, feats, upstreamPorts, fdRaise, (port, cert) => nginxTlsServer(port, cert), peers)
    started[0].label = "fibergate (https)"
    started[1].label = `nginx ${feats.version} (listen ssl)`
    for (const p of started) Object.assign(p, { keepAlive: [], handshakes: [] })
    const close = { scheme: "https", headers: ["Connection: close"] }
    for (const p of peers) await measure(p, "/", settings.warmup.seconds > 0 ? settings.warmup : settings.duration, settings.connections, { scheme: "https" })
    for (let round = 0; round < settings.tlsRounds; round++) {
      for (const [i] of peers.entries()) {
        const p = peers[(i + round) % peers.length]
        for (const [kind, opts] of [["keepAlive", { scheme: "https" }], ["handshakes", close]]) {
          const cpuBefore = treeCpuSeconds(p.child.pid)
          const r = await measure(p, "/", settings.duration, settings.connections, opts)
          r.cpuUsPerRequest = r.requests ? ((treeCpuSeconds(p.child.pid) - cpuBefore) * 1e6) / r.requests : null
          p[kind].push(r)
          console.log(`bench: tls round ${round + 1}/${settings.tlsRounds} ${p.label} ${kind === "keepAlive" ? "keep-alive" : "new connection per request"}: ${fmtInt(r.rps)} req/s, p99 ${fmtMs(r.p99)}, ${r.cpuUsPerRequest?.toFixed(1)} µs CPU/request, ${r.errors} errors`)
        }
      }
    }
  } finally {
    for (const p of peers) await stopChild(p.child)
  }
  return peers.map(({ label, keepAlive, handshakes }) => ({ label, keepAlive, handshakes }))
}

/**
 * HTTP/2: fibergate's https listener (h2 over ALPN) against nginx's `listen ssl http2`, one
 * worker each, same upstream, h2load with BENCH_H2_CLIENTS connections of BENCH_H2_STREAMS
 * concurrent streams, rounds alternating the order.
 */
async function h2Cost(nodeBin, nginxBin, h2loadBin, feats, upstreamPorts, fdRaise) {
  const peers = []
  try {
    const started = await startTlsPeers("h2", nodeBin, nginxBin, feats, upstreamPorts, fdRaise, (port, cert) => nginxH2Server(port, cert, 100), peers)
    started[0].label = "fibergate (https, h2)"
    started[1].label = `nginx ${feats.version} (listen ssl http2)`
    for (const p of started) p.rounds = []
    const load = { clients: settings.h2Clients, streams: settings.h2Streams }
    const seconds = settings.duration.seconds
    for (const p of peers) await runH2load(h2loadBin, `https://${HOST}:${p.port}/`, { ...load, seconds: Math.min(seconds, 3) })
    for (let round = 0; round < settings.h2Rounds; round++) {
      for (const [i] of peers.entries()) {
        const p = peers[(i + round) % peers.length]
        const cpuBefore = treeCpuSeconds(p.child.pid)
        const r = await runH2load(h2loadBin, `https://${HOST}:${p.port}/`, { ...load, seconds })
        r.cpuUsPerRequest = r.requests ? ((treeCpuSeconds(p.child.pid) - cpuBefore) * 1e6) / r.requests : null
        r.rssKb = treeRss(p.child.pid)
        p.rounds.push(r)
        console.log(`bench: h2 round ${round + 1}/${settings.h2Rounds} ${p.label}: ${fmtInt(r.rps)} req/s, mean ${fmtMs(r.meanMs)}, ${r.cpuUsPerRequest?.toFixed(1)} µs CPU/request, RSS ${fmtMB(r.rssKb)} MB, ${r.errors} errors`)
      }
    }
  } finally {
    for (const p of peers) await stopChild(p.child)
  }
  return peers.map(({ label, rounds }) => ({ label, rounds }))
}

/**
 * WebSocket echo: the `ws` echo upstream directly, through fibergate and through nginx, one
 * worker each, rounds alternating the order; the load is bench/ws-load.js. Returns
 * [{ label, rounds: [{ rate, p50, p99, errors, cpuUsPerMessage, rssKb }] }].
 */
async function webSocketCost(nodeBin, nginxBin, feats, fdRaise) {
  const dir = path.join(tmpDir, "ws")
  fs.mkdirSync(dir, { recursive: true })
  const children = []
  const rows = []
  try {
    const upstreamPort = await freePort()
    const echo = startChild("ws-echo", nodeBin, [WS_ECHO_SCRIPT, String(upstreamPort)], { logFile: path.join(dir, "ws-echo.log"), cpu: 1, fdLimit: fdRaise })
    children.push(echo)
    await waitReady(echo, "ws echo upstream", async () => (await httpGet(upstreamPort, "/", 1000)).status > 0)
    rows.push({ label: "direct (ws echo upstream)", port: upstreamPort, child: null, rounds: [] })

    const fgPort = await freePort()
    const adminPort = await freePort()
    const yamlFile = path.join(dir, "fibergate-ws.yaml")
    fs.writeFileSync(yamlFile, fibergateWsYaml(fgPort, adminPort, upstreamPort))
    const bin = env.BENCH_FIBERGATE_BIN ? path.resolve(env.BENCH_FIBERGATE_BIN) : path.join(ROOT, "bin", "fibergate.js")
    const logFile = path.join(dir, "fibergate-ws.log")
    const fg = startChild("fibergate-ws", nodeBin, [...shebangFlags(bin), bin, "run", "-c", yamlFile], { logFile, cpu: 0, fdLimit: fdRaise })
    children.push(fg)
    await waitReady(fg, "fibergate (ws)", async () => (await httpGet(adminPort, "/ready", 1000)).status === 200).catch((e) => {
      throw new Error(`${e.message}\n${tail(logFile)}`)
    })
    rows.push({ label: "fibergate", port: fgPort, child: fg, rounds: [] })

    const ngPort = await freePort()
    const c = nginxCommon(dir, "nginx-ws", feats)
    const ng = await startNginx("nginx-ws", nginxBin, `${c.main}\nhttp {\n  ${c.http}\n${nginxWsServer(ngPort, upstreamPort)}\n}\n`, dir, ngPort, 0)
    children.push(ng)
    rows.push({ label: `nginx ${feats.version}`, port: ngPort, child: ng, rounds: [] })

    const load = { connections: settings.wsConnections, window: settings.wsWindow, size: settings.wsSize }
    const url = (p) => `ws://${HOST}:${p.port}/`
    for (const p of rows) {
      const warm = await runWsLoad(nodeBin, url(p), { ...load, seconds: Math.min(settings.duration.seconds, 3) })
      if (warm.messages === 0) throw new Error(`${p.label}: no WebSocket message came back (${warm.errors} errors)`)
    }
    for (let round = 0; round < settings.wsRounds; round++) {
      for (const [i] of rows.entries()) {
        const p = rows[(i + round) % rows.length]
        const pid = p.child?.pid
        const cpuBefore = pid === undefined ? 0 : treeCpuSeconds(pid)
        const stop = pid === undefined ? () => null : sampleRss(pid)
        const r = await runWsLoad(nodeBin, url(p), { ...load, seconds: settings.duration.seconds })
        r.rssKb = stop()
        r.cpuUsPerMessage = pid === undefined || r.messages === 0 ? null : ((treeCpuSeconds(pid) - cpuBefore) * 1e6) / r.messages
        p.rounds.push(r)
        console.log(`bench: ws round ${round + 1}/${settings.wsRounds} ${p.label}: ${fmtInt(r.rate)} messages/s, p50 ${fmtMs(r.p50)}, p99 ${fmtMs(r.p99)}${r.cpuUsPerMessage === null ? "" : `, ${r.cpuUsPerMessage.toFixed(1)} µs CPU/message, RSS ${fmtMB(r.rssKb)} MB`}, ${r.errors} errors`)
        await sleep(300)
      }
    }
  } finally {
    for (const child of children) await stopChild(child)
  }
  return rows.map(({ label, rounds }) => ({ label, rounds }))
}

// ---------------------------------------------------------------------------------------------
// leak check, idle connections, route-table micro-benchmark

const LEAK_SCRIPT = path.join(BENCH_DIR, "stop-after.lua")
const IDLE_SCRIPT = path.join(BENCH_DIR, "idle-clients.js")
const ROUTES_SCRIPT = path.join(BENCH_DIR, "routes.ts")

const measuredRps = (peer) => median(peer.rounds.map((r) => r.rps))

/**
 * Runs the load BENCH_LEAK_RUNS times against one peer, each run stopping after about
 * BENCH_LEAK_REQUESTS responses (bench/stop-after.lua; the wrk duration is only an upper bound
 * picked from the measured req/s), and reads the process tree's VmRSS after LEAK_IDLE_MS of idle.
 */
async function leakCheck(peer, wrkBin, rps) {
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

/** Resolves the next line of `stream` that starts with `prefix`, or null after timeoutMs / at end. */
function nextLine(lineQueue, prefix, timeoutMs) {
  return new Promise((resolve) => {
    const timer = setTimeout(() => done(null), timeoutMs)
    const done = (v) => {
      clearTimeout(timer)
      lineQueue.waiters.delete(check)
      resolve(v)
    }
    const check = () => {
      const i = lineQueue.lines.findIndex((l) => l.startsWith(prefix))
      if (i >= 0) return done(lineQueue.lines.splice(i, 1)[0]), true
      if (lineQueue.ended) return done(null), true
      return false
    }
    if (!check()) lineQueue.waiters.add(check)
  })
}

function lineQueueOf(stream) {
  const q = { lines: [], waiters: new Set(), ended: false }
  let buf = ""
  const wake = () => {
    for (const w of [...q.waiters]) w()
  }
  stream.setEncoding("utf8")
  stream.on("data", (d) => {
    buf += d
    let i
    while ((i = buf.indexOf("\n")) >= 0) {
      q.lines.push(buf.slice(0, i).trim())
      buf = buf.slice(i + 1)
    }
    wake()
  })
  stream.on("end", () => {
    q.ended = true
    wake()
  })
  return q
}

const fields = (line) => Object.fromEntries([...(line ?? "").matchAll(/(\w+)=(\d+)/g)].map((m) => [m[1], Number(m[2])]))

/**
 * Opens BENCH_IDLE_CONNECTIONS idle keep-alive connections to a peer (bench/idle-clients.js: one
 * `GET /` each, then idle), reads the peer's RSS while they are open, closes them and checks that
 * the peer has no socket left open.
 */
async function idleCheck(peer, nodeBin, fdRaise, when) {
  const n = settings.idleConnections
  const pid = peer.child.pid
  const openTimeoutMs = 30_000 + n * 5
  const holdSeconds = Math.ceil(openTimeoutMs / 1000) + 60 // the script closes everything by itself after this
  await sleep(1000)
  const rssBeforeKb = treeRss(pid)
  const socketsBefore = serverSockets(peer.port).open
  const name = `${peer.label} (${when})`
  console.log(`bench: idle check ${name}: opening ${fmtInt(n)} keep-alive connections (RSS before ${fmtMB(rssBeforeKb)} MB)`)
  const child = startChild("idle-clients", nodeBin, [IDLE_SCRIPT, HOST, String(peer.port), String(n), String(holdSeconds)], {
    capture: true,
    stdin: "pipe",
    fdLimit: fdRaise,
    cpu: 1,
  })
  const out = lineQueueOf(child.stdout)
  let stderr = ""
  child.stderr.on("data", (d) => (stderr += d))
  child.stdin.on("error", () => {})
  const result = { when, connections: n, rssBeforeKb, socketsBefore, error: null }
  try {
    const t0 = Date.now()
    const ready = await nextLine(out, "ready", openTimeoutMs)
    if (!ready) throw new Error(`idle clients not ready after ${((Date.now() - t0) / 1000).toFixed(0)} s${stderr ? `: ${stderr.trim().slice(-500)}` : ""}`)
    const r = fields(ready)
    Object.assign(result, { ok: r.ok, failed: r.failed, openMs: r.ms })
    await sleep(2000) // let the peer settle (timers, buffers) before reading its RSS
    child.stdin.write("status\n")
    const status = fields(await nextLine(out, "status", 5000))
    const sockets = serverSockets(peer.port)
    result.clientOpen = status.open ?? null
    result.closedByPeer = status.closed_by_peer ?? null
    result.serverOpen = sockets.open
    result.rssKb = treeRss(pid)
    result.hwmKb = readStatus(pid)?.hwm ?? null
  } catch (e) {
    result.error = e.message
  } finally {
    child.stdin.write("close\n")
    if ((await Promise.race([child.exited, sleep(10_000).then(() => "timeout")])) === "timeout") await stopChild(child)
  }
  // every socket must be gone on the peer's side too
  const deadline = Date.now() + 10_000
  let after = serverSockets(peer.port)
  while (after.open > 0 && Date.now() < deadline) {
    await sleep(200)
    after = serverSockets(peer.port)
  }
  result.serverOpenAfterClose = after.open
  await sleep(500)
  result.rssAfterKb = treeRss(pid)
  if (result.error) console.error(`bench: idle check ${name} failed: ${result.error}`)
  else
    console.log(
      `bench: idle check ${name}: ${fmtInt(result.ok)} connections answered (${result.failed} failed) in ${((result.openMs ?? 0) / 1000).toFixed(1)} s, ` +
        `${fmtInt(result.serverOpen)} open on the peer's side; RSS ${fmtMB(result.rssKb)} MB (+${fmtMB(result.rssKb - rssBeforeKb)} MB); ` +
        `after closing: ${result.serverOpenAfterClose} open, RSS ${fmtMB(result.rssAfterKb)} MB`,
    )
  return result
}

/** Runs bench/routes.ts (the route-table micro-benchmark) with a time bound; returns its output. */
async function runRoutesBench(nodeBin) {
  console.log(`bench: route table micro-benchmark (${path.relative(ROOT, ROUTES_SCRIPT)})`)
  const child = startChild("routes", nodeBin, [ROUTES_SCRIPT], { capture: true })
  let out = ""
  let err = ""
  child.stdout.on("data", (d) => (out += d))
  child.stderr.on("data", (d) => (err += d))
  const guard = setTimeout(() => killGroup(child, "SIGKILL"), 300_000)
  const info = await child.exited
  clearTimeout(guard)
  if (info.code !== 0) {
    const msg = `bench/routes.ts failed (code ${info.code}, signal ${info.signal}): ${`${err}${out}`.trim().slice(-1500)}`
    console.error(`bench: ${msg}`)
    return { ok: false, output: msg }
  }
  return { ok: true, output: out.trim() }
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
  console.log(
    `bench: then: 1-connection latency ${settings.latency ? "on" : "off"}, /big ${settings.big ? "on" : "off"}, ` +
      `leak check ${settings.leak ? `${settings.leakRuns} x ~${fmtInt(settings.leakRequests)} requests` : "off"}, ` +
      `idle check ${settings.idle ? `${fmtInt(settings.idleConnections)} connections` : "off"}, route-table micro-benchmark ${settings.routes ? "on" : "off"}`,
  )

  // fd limit for the idle-connection check: children inherit ours (Node already raised its soft
  // limit to the hard one); below what the check needs, the Node peers and the idle clients are
  // started through `bash -c "ulimit -n 65535 && exec ..."` (we are root). nginx raises its own
  // (worker_rlimit_nofile).
  const fdSoft = fdLimit()
  const fdNeeded = settings.idle ? settings.idleConnections + 1000 : 0
  const fdRaise = fdSoft < fdNeeded ? Math.max(65535, fdNeeded) : undefined
  if (fdRaise) console.log(`bench: ulimit -n is ${fdSoft} < ${fdNeeded}; starting the Node peers and the idle clients with ulimit -n ${fdRaise}`)

  // fibergate as users run it: the installed package's bundle (`npm run build`, then FG_BUNDLE=1
  // makes bin/fibergate.js pick dist/cli/fibergate.js over src/); BENCH_BUNDLE=0 runs src/.
  if (settings.bundle) {
    console.log("bench: building the bundle (npm run build)")
    const built = spawnSync(nodeBin, [path.join(ROOT, "scripts", "build.js")], { cwd: ROOT, stdio: "inherit", timeout: 300_000 })
    if (built.status !== 0) die("npm run build failed; BENCH_BUNDLE=0 runs fibergate from src/")
    process.env.FG_BUNDLE = "1"
  }

  // upstream: one nginx worker listening on two ports (two endpoint URLs for the balancers)
  const upstreamPorts = [await freePort()]
  while (upstreamPorts.length < 2) {
    const p = await freePort()
    if (!upstreamPorts.includes(p)) upstreamPorts.push(p)
  }
  const upstreamPort = upstreamPorts[0]
  const upstream = await startNginx("upstream", tools.nginx, upstreamConf(tmpDir, upstreamPorts, feats), tmpDir, upstreamPort, 1).catch((e) =>
    die(`upstream nginx failed to start: ${e.message}`),
  )
  for (const p of upstreamPorts) {
    const r = await httpGet(p, "/")
    if (r.status !== 200 || r.body !== BODY) die(`upstream on port ${p} returned ${r.status} ${JSON.stringify(r.body)}`)
  }
  console.log(`bench: upstream nginx ${feats.version} pid ${upstream.pid} on ${upstreamPorts.map((p) => `${HOST}:${p}`).join(" and ")}`)

  // peers
  const startPeer = (key, port) => {
    if (key === "fibergate") return startFibergate(nodeBin, tmpDir, port, upstreamPorts, fdRaise)
    if (key === "fastify") return startFastify(nodeBin, tmpDir, port, upstreamPort, fdRaise)
    if (key === "caddy") return startConfigured("caddy", tools.caddy, path.join(tmpDir, "Caddyfile"), caddyfile(HOST, port, upstreamPorts), caddyCommand, port)
    if (key === "haproxy") {
      const maxconn = settings.idle ? Math.max(8192, settings.idleConnections + 4096) : 8192
      return startConfigured("haproxy", tools.haproxy, path.join(tmpDir, "haproxy.cfg"), haproxyConfig(HOST, port, upstreamPorts, maxconn), haproxyCommand, port)
    }
    return startNginx("nginx-proxy", tools.nginx, nginxProxyConf(tmpDir, port, upstreamPorts, feats), tmpDir, port, 0)
  }
  const peers = [] // { key, label, child, port, rounds: [], big, error }
  const failed = []
  for (const key of settings.peers) {
    const port = await freePort()
    const peer = { key, label: LABELS[key], port, rounds: [], big: null, bigNote: null, error: null, latency: null, idle: null }
    try {
      peer.child = await startPeer(key, port)
      await verifyProxy(port)
      if (settings.big) peer.bigNote = await checkBig(port)
      await sleep(1000)
      peer.idleRssKb = treeRss(peer.child.pid)
      console.log(`bench: ${peer.label} pid ${peer.child.pid} on ${HOST}:${port}${peer.child.benchHow ? ` (${peer.child.benchHow})` : ""}, idle RSS ${fmtMB(peer.idleRssKb)} MB`)
      if (peer.child.benchConfig) {
        peer.configChecks = await verifyFibergateConfig(port, upstreamPorts)
        console.log(`bench: fibergate realistic config: ${peer.child.benchConfig.routeCount} routes; ${peer.child.benchConfig.check.split("\n")[0]}`)
        for (const c of peer.configChecks) console.log(`bench:   ${c.ok ? "ok  " : "FAIL"} ${c.label} (${c.detail})`)
      }
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
  const direct = { key: "direct", label: LABELS.direct, port: upstreamPort, child: upstream, rounds: [], big: null, latency: null }

  // returns the wrk result plus rssKb, the peer's peak RSS during this run
  const measure = async (peer, urlPath, duration, connections, wrkOpts) => {
    const stop = sampleRss(peer.child.pid)
    let r
    try {
      r = await runWrk(tools.wrk, peer.port, urlPath, duration, connections, wrkOpts)
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

  // added latency at one connection: wrk -t1 -c1 on the upstream directly and through each peer
  if (settings.latency) {
    for (const p of [direct, ...live]) {
      p.latency = await measure(p, "/", settings.duration, 1, { threads: 1 })
      console.log(`bench: 1 connection ${p.label}: ${fmtInt(p.latency.rps)} req/s, p50 ${fmtMs(p.latency.p50)}, p99 ${fmtMs(p.latency.p99)}`)
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

  // telemetry cost: the same realistic config with metrics and tracing off, on, and tracing with
  // sampling 0 and 1, each its own fibergate process, in alternating rounds
  let telemetry = null
  if (settings.telemetry && live.some((p) => p.key === "fibergate")) {
    telemetry = await telemetryCost(nodeBin, upstreamPorts, fdRaise, measure)
  }

  // middleware cost: the catch-all with one middleware kind at a time, each its own process
  let middlewareRows = null
  if (settings.middlewares && live.some((p) => p.key === "fibergate")) {
    middlewareRows = await middlewareCost(nodeBin, upstreamPorts, fdRaise, measure)
  }

  // TLS: fibergate's https listener against nginx's, keep-alive and a handshake per request
  let tlsRows = null
  if (settings.tls && live.some((p) => p.key === "fibergate")) {
    if (!which("openssl")) console.error("bench: tls cost: no openssl here, skipped (apt-get install openssl)")
    else tlsRows = await tlsCost(nodeBin, tools.nginx, feats, upstreamPorts, fdRaise, measure)
  }

  // HTTP/2: fibergate's h2 over ALPN against nginx's, h2load
  let h2Rows = null
  if (settings.h2 && live.some((p) => p.key === "fibergate")) {
    const h2load = which("h2load")
    if (!h2load || !which("openssl")) console.error("bench: h2: no h2load or openssl here, skipped (apt-get install nghttp2-client openssl)")
    else h2Rows = await h2Cost(nodeBin, tools.nginx, h2load, feats, upstreamPorts, fdRaise)
  }

  // WebSocket echo: direct, through fibergate, through nginx
  let wsRows = null
  if (settings.ws && live.some((p) => p.key === "fibergate")) wsRows = await webSocketCost(nodeBin, tools.nginx, feats, fdRaise)

  // leak check: fibergate only, BENCH_LEAK_RUNS runs of ~BENCH_LEAK_REQUESTS requests each, RSS after 2 s idle
  const fgLive = live.find((p) => p.key === "fibergate")
  let leak = null
  if (settings.leak && fgLive) leak = await leakCheck(fgLive, tools.wrk, measuredRps(fgLive))

  // idle keep-alive connections: RSS while BENCH_IDLE_CONNECTIONS idle connections are open,
  // on a fresh process of each peer (restarted with the same config: the load above has grown
  // the Node peers' heaps) and, for fibergate, also on the process that served all the load
  if (settings.idle) {
    if (fgLive) fgLive.idleLoaded = await idleCheck(fgLive, nodeBin, fdRaise, "after the load above")
    for (const p of live) {
      await stopChild(p.child)
      try {
        const port = await freePort()
        const child = await startPeer(p.key, port)
        await verifyProxy(port)
        p.idle = await idleCheck({ ...p, port, child }, nodeBin, fdRaise, "fresh process")
        await stopChild(child)
      } catch (e) {
        p.idle = { error: `restart failed: ${e.message.split("\n")[0]}` }
        console.error(`bench: idle check ${p.label}: ${p.idle.error}`)
      }
    }
  }

  // the peers are done; the route-table micro-benchmark runs on a quiet machine
  await stopAll()
  let routesBench = null
  if (settings.routes) routesBench = await runRoutesBench(nodeBin)

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
  lines.push(
    `- every peer is one process/worker proxying to the same one-worker nginx upstream (listening on two ports) with keep-alive upstream connections; ` +
      `fibergate and nginx balance round robin over both ports, @fastify/http-proxy (single upstream only) uses the first${settings.pin ? "; proxies pinned to cpu0, wrk and upstream to cpu1" : ""}`,
  )
  const fgPeer = byKey.fibergate
  if (fgPeer?.child?.benchConfig) {
    const cfg = fgPeer.child.benchConfig
    lines.push(`- fibergate config (realistic, \`bench/results/fibergate-bench.yaml\`; \`fibergate check\`: ${cfg.check.split("\n")[0] || "?"}):`)
    for (const f of cfg.features) lines.push(`  - ${f}`)
    const bad = (fgPeer.configChecks ?? []).filter((c) => !c.ok)
    lines.push(
      `  - routing verified before the load: ${(fgPeer.configChecks ?? []).length - bad.length}/${(fgPeer.configChecks ?? []).length} checks ok` +
        (bad.length ? ` — FAILED: ${bad.map((c) => `${c.label} (${c.detail})`).join("; ")}` : ` (${(fgPeer.configChecks ?? []).find((c) => c.label.startsWith("round robin"))?.detail ?? ""})`),
    )
  } else if (fgPeer?.child) {
    lines.push(`- fibergate config: **NOT the realistic route table** (fell back to \`${fgPeer.child.benchHow}\`)`)
  }
  lines.push("")
  const fgRps = byKey.fibergate?.child ? summary(byKey.fibergate).rps : null
  lines.push(`| peer | req/s (median of ${settings.rounds}) | p50 | p99 | idle RSS MB | peak RSS MB | fibergate ÷ peer (req/s) | errors |`)
  lines.push(`| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |`)
  for (const p of peers) {
    if (!p.child) {
      lines.push(`| ${p.label} | failed to start | – | – | – | – | – | – |`)
      continue
    }
    const s = summary(p)
    lines.push(
      `| ${p.label} | ${fmtInt(s.rps)} | ${fmtMs(s.p50)} | ${fmtMs(s.p99)} | ${fmtMB(p.idleRssKb)} | ${fmtMB(s.rssKb)} | ${p.key === "fibergate" ? "–" : fmtRatio(fgRps, s.rps)} | ${s.errors} |`,
    )
  }
  if (settings.direct) {
    const s = summary(direct)
    lines.push(`| ${direct.label} | ${fmtInt(s.rps)} | ${fmtMs(s.p50)} | ${fmtMs(s.p99)} | – | ${fmtMB(s.rssKb)} | – | ${s.errors} |`)
  }
  lines.push("")
  lines.push("Per-round req/s:")
  for (const p of peers.filter((p) => p.child)) lines.push(`- ${p.label}: ${p.rounds.map((r) => fmtInt(r.rps)).join(", ")}`)

  if (settings.latency && direct.latency) {
    lines.push("", `Added latency at one connection, \`wrk -t1 -c1 -d${settings.duration.wrk} --latency\` on \`GET /\`, one run each (added = peer − direct):`, "")
    lines.push(`| peer | req/s | p50 | p99 | added p50 | added p99 |`, `| --- | ---: | ---: | ---: | ---: | ---: |`)
    const d = direct.latency
    const added = (a, b) => (a === null || b === null ? "–" : `${a - b >= 0 ? "+" : "−"}${fmtMs(Math.abs(a - b))}`)
    lines.push(`| ${LABELS.direct} | ${fmtInt(d.rps)} | ${fmtMs(d.p50)} | ${fmtMs(d.p99)} | – | – |`)
    for (const p of peers.filter((p) => p.child && p.latency)) {
      lines.push(`| ${p.label} | ${fmtInt(p.latency.rps)} | ${fmtMs(p.latency.p50)} | ${fmtMs(p.latency.p99)} | ${added(p.latency.p50, d.p50)} | ${added(p.latency.p99, d.p99)} |`)
    }
  }

  if (telemetry !== null) {
    lines.push(
      "",
      `Telemetry cost, fibergate with the realistic config, \`wrk -t${settings.threads} -c${settings.connections} -d${settings.duration.wrk}\`, ${settings.telemetryRounds} rounds, the variants alternating within each round; tracing exports over OTLP/HTTP to a sink in the bench process. "vs all off" is the median over rounds of each round's ratio to the all-off run of the same round, which cancels the machine's drift between rounds:`,
      ""
    )
    lines.push(
      `| variant | req/s (median) | p99 | req/s vs all off | CPU µs/request (median) | CPU vs all off | per-round req/s |`,
      `| --- | ---: | ---: | ---: | ---: | ---: | --- |`
    )
    const off = telemetry[0].rounds
    for (const v of telemetry) {
      const rps = median(v.rounds.map((r) => r.rps))
      const cost = median(v.rounds.map((r, i) => r.rps / off[i].rps - 1))
      const cpu = median(v.rounds.map((r) => r.cpuUsPerRequest ?? 0))
      const cpuCost = median(v.rounds.map((r, i) => (r.cpuUsPerRequest ?? 0) / (off[i].cpuUsPerRequest || 1) - 1))
      const first = v === telemetry[0]
      lines.push(
        `| ${v.label} | ${fmtInt(rps)} | ${fmtMs(median(v.rounds.map((r) => r.p99)))} | ${first ? "–" : `${(cost * 100).toFixed(1)}%`} | ${cpu.toFixed(1)} | ${first ? "–" : `${cpuCost >= 0 ? "+" : ""}${(cpuCost * 100).toFixed(1)}%`} | ${v.rounds.map((r) => fmtInt(r.rps)).join(", ")} |`
      )
    }
  }

  if (middlewareRows !== null && middlewareRows.length > 0) {
    lines.push(
      "",
      `Middleware cost, fibergate with the realistic config and one middleware on the catch-all route, \`wrk -t${settings.threads} -c${settings.connections} -d${settings.duration.wrk}\` (with the headers the kind needs), ${settings.middlewareRounds} rounds, the variants alternating within each round; every request is admitted. "vs none" is the median over rounds of each round's ratio to the no-middleware run of the same round; read it against the control row:`,
      ""
    )
    lines.push(
      `| variant | req/s (median) | p99 | req/s vs none | CPU µs/request (median) | CPU vs none | errors | per-round req/s |`,
      `| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |`
    )
    const base = middlewareRows[0].rounds
    for (const v of middlewareRows) {
      const first = v === middlewareRows[0]
      const cost = median(v.rounds.map((r, i) => r.rps / base[i].rps - 1))
      const cpuCost = median(v.rounds.map((r, i) => (r.cpuUsPerRequest ?? 0) / (base[i].cpuUsPerRequest || 1) - 1))
      lines.push(
        `| ${v.label} | ${fmtInt(median(v.rounds.map((r) => r.rps)))} | ${fmtMs(median(v.rounds.map((r) => r.p99)))} | ${first ? "–" : `${(cost * 100).toFixed(1)}%`} | ${median(v.rounds.map((r) => r.cpuUsPerRequest ?? 0)).toFixed(1)} | ${first ? "–" : `${cpuCost >= 0 ? "+" : ""}${(cpuCost * 100).toFixed(1)}%`} | ${v.rounds.reduce((a, r) => a + r.errors, 0)} | ${v.rounds.map((r) => fmtInt(r.rps)).join(", ")} |`
      )
    }
  }

  if (tlsRows !== null && tlsRows.length > 0) {
    lines.push(
      "",
      `TLS, one worker each through the same upstream, \`wrk -t${settings.threads} -c${settings.connections} -d${settings.duration.wrk}\` over https, ${settings.tlsRounds} rounds alternating; "new connection per request" sends \`Connection: close\`, so every request pays a full handshake (P-256 certificate, no session resumption). Ratios are fibergate / nginx, the median of each round's ratio:`,
      ""
    )
    lines.push(`| peer | keep-alive req/s | p99 | CPU µs/request | new connections/s | p99 | CPU µs/connection | errors |`, `| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |`)
    for (const p of tlsRows) {
      const m = (rs, f) => median(rs.map(f))
      lines.push(
        `| ${p.label} | ${fmtInt(m(p.keepAlive, (r) => r.rps))} | ${fmtMs(m(p.keepAlive, (r) => r.p99))} | ${m(p.keepAlive, (r) => r.cpuUsPerRequest ?? 0).toFixed(1)} | ${fmtInt(m(p.handshakes, (r) => r.rps))} | ${fmtMs(m(p.handshakes, (r) => r.p99))} | ${m(p.handshakes, (r) => r.cpuUsPerRequest ?? 0).toFixed(1)} | ${[...p.keepAlive, ...p.handshakes].reduce((a, r) => a + r.errors, 0)} |`
      )
    }
    if (tlsRows.length === 2) {
      const [fg, ng] = tlsRows
      const ratio = (kind) => median(fg[kind].map((r, i) => r.rps / ng[kind][i].rps))
      lines.push("", `fibergate / nginx over TLS: keep-alive ${ratio("keepAlive").toFixed(2)}x, new connections ${ratio("handshakes").toFixed(2)}x`)
    }
  }

  if (h2Rows !== null && h2Rows.length > 0) {
    lines.push(
      "",
      `HTTP/2 over TLS, one worker each through the same HTTP/1.1 upstream, \`h2load -c${settings.h2Clients} -m${settings.h2Streams} -D${settings.duration.seconds}\`, ${settings.h2Rounds} rounds alternating; the ratio is the median of each round's fibergate / nginx:`,
      ""
    )
    lines.push(`| peer | req/s (median) | mean per request | CPU µs/request | RSS MB | errors | per-round req/s |`, `| --- | ---: | ---: | ---: | ---: | ---: | --- |`)
    for (const p of h2Rows) {
      const m = (f) => median(p.rounds.map(f))
      lines.push(
        `| ${p.label} | ${fmtInt(m((r) => r.rps))} | ${fmtMs(m((r) => r.meanMs ?? 0))} | ${m((r) => r.cpuUsPerRequest ?? 0).toFixed(1)} | ${fmtMB(m((r) => r.rssKb ?? 0))} | ${p.rounds.reduce((a, r) => a + r.errors, 0)} | ${p.rounds.map((r) => fmtInt(r.rps)).join(", ")} |`
      )
    }
    if (h2Rows.length === 2) {
      const [fg, ng] = h2Rows
      lines.push("", `fibergate / nginx over h2: ${median(fg.rounds.map((r, i) => r.rps / ng.rounds[i].rps)).toFixed(2)}x`)
    }
  }

  if (wsRows !== null && wsRows.length > 0) {
    lines.push(
      "",
      `WebSocket echo, one worker each, the same \`ws\` echo upstream (a Node process, as is the load: \`bench/ws-load.js\`), ${settings.wsConnections} WebSockets each with ${settings.wsWindow} binary messages of ${settings.wsSize} bytes in flight, ${settings.duration.seconds} s, ${settings.wsRounds} rounds alternating; ratios are the medians of each round's:`,
      ""
    )
    lines.push(`| peer | messages/s (median) | round trip p50 | p99 | CPU µs/message | peak RSS MB | errors | per-round messages/s |`, `| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |`)
    for (const p of wsRows) {
      const m = (f) => median(p.rounds.map(f))
      const cpu = p.rounds[0]?.cpuUsPerMessage == null ? "–" : m((r) => r.cpuUsPerMessage ?? 0).toFixed(1)
      const rss = p.rounds[0]?.rssKb == null ? "–" : fmtMB(m((r) => r.rssKb ?? 0))
      lines.push(
        `| ${p.label} | ${fmtInt(m((r) => r.rate))} | ${fmtMs(m((r) => r.p50 ?? 0))} | ${fmtMs(m((r) => r.p99 ?? 0))} | ${cpu} | ${rss} | ${p.rounds.reduce((a, r) => a + r.errors, 0)} | ${p.rounds.map((r) => fmtInt(r.rate)).join(", ")} |`
      )
    }
    if (wsRows.length === 3) {
      const [direct, fg, ng] = wsRows
      const ratio = (a, b) => median(a.rounds.map((r, i) => r.rate / b.rounds[i].rate)).toFixed(2)
      lines.push("", `fibergate / direct: ${ratio(fg, direct)}x; fibergate / nginx: ${ratio(fg, ng)}x`)
    }
  }

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
    verdict = `**fibergate / @fastify/http-proxy = ${ratio.toFixed(2)}x** (goal ${FLOOR}x: ${ratio >= FLOOR ? "met" : "NOT MET"})`
  }
  lines.push(verdict)
  const caddy = byKey.caddy
  if (fg?.child && caddy?.child) {
    const f = summary(fg), c = summary(caddy)
    const ratio = f.rps / c.rps
    lines.push(`**fibergate / Caddy = ${ratio.toFixed(2)}x** (goal ${CADDY_FLOOR}x: ${ratio >= CADDY_FLOOR ? "met" : "NOT MET"}); p99 ${fmtMs(f.p99)} vs Caddy's ${fmtMs(c.p99)} (goal: at most Caddy's: ${f.p99 <= c.p99 ? "met" : "NOT MET"})`)
  }
  if (fg?.child) {
    const idle = fg.idleRssKb / 1024, peak = summary(fg).rssKb / 1024
    lines.push(`fibergate RSS: idle ${idle.toFixed(1)} MB (goal ${FG_IDLE_RSS_TARGET_MB}: ${idle <= FG_IDLE_RSS_TARGET_MB ? "met" : "NOT MET"}), peak under the main load ${peak.toFixed(1)} MB (goal ${FG_PEAK_RSS_TARGET_MB}: ${peak <= FG_PEAK_RSS_TARGET_MB ? "met" : "NOT MET"})`)
  }

  if (leak) {
    lines.push(
      "",
      `Leak check (fibergate only): ${leak.runs.length} runs of ~${fmtInt(settings.leakRequests)} requests (\`wrk -t${leak.threads} -c${settings.connections}\` + \`bench/stop-after.lua\`), ` +
        `process VmRSS ${LEAK_IDLE_MS / 1000} s after each run (RSS before run 1: ${fmtMB(leak.rssStartKb)} MB):`,
      "",
    )
    lines.push(`| run | requests | req/s | errors | RSS MB after ${LEAK_IDLE_MS / 1000} s idle |`, `| ---: | ---: | ---: | ---: | ---: |`)
    leak.runs.forEach((r, i) =>
      lines.push(`| ${i + 1}${i === 0 ? " (incl. warm-up)" : ""} | ${fmtInt(r.requests)}${r.timeBound ? " (time bound hit)" : ""} | ${fmtInt(r.rps)} | ${r.errors} | ${fmtMB(r.rssKb)} |`),
    )
    lines.push("")
    lines.push(`RSS series (MB): ${leak.runs.map((r) => fmtMB(r.rssKb)).join(" → ")}`)
    if (leak.growth === null) {
      lines.push(`**RSS growth run 2 → run ${leak.runs.length}: n/a** (needs BENCH_LEAK_RUNS >= 3; run 1 includes warm-up)`)
    } else {
      const pct = `${leak.growth >= 0 ? "+" : ""}${(leak.growth * 100).toFixed(1)}%`
      const perReq = leak.bytesPerRequest === null ? "" : `, ${leak.bytesPerRequest.toFixed(1)} bytes per request over runs 3..${leak.runs.length}`
      lines.push(
        `**RSS growth run 2 → run ${leak.runs.length}: ${pct}** (${fmtMB(leak.runs[1].rssKb)} → ${fmtMB(leak.runs[leak.runs.length - 1].rssKb)} MB${perReq}): ` +
          `${leak.flagged ? `**GROWTH** (above ${LEAK_GROWTH_LIMIT * 100}%)` : `no growth above ${LEAK_GROWTH_LIMIT * 100}%`}`,
      )
    }
  }

  const idleRows = peers.filter((p) => p.child).flatMap((p) => [p.idleLoaded, p.idle].filter(Boolean).map((idle) => ({ p, i: idle })))
  if (idleRows.length > 0) {
    lines.push(
      "",
      `Idle keep-alive connections: ${fmtInt(settings.idleConnections)} HTTP/1.1 connections (\`bench/idle-clients.js\`: one \`GET /\` each, then idle), peer RSS read 2 s after they are all open:`,
      "",
    )
    lines.push(
      `| peer | process | answered | open on peer | RSS before MB | RSS with idle conns MB | delta MB | KiB per conn | target | open after close |`,
      `| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |`,
    )
    for (const { p, i } of idleRows) {
      if (i.error) {
        lines.push(`| ${p.label} | ${i.when ?? "–"} | failed: ${i.error.split("\n")[0]} | – | ${fmtMB(i.rssBeforeKb)} | – | – | – | – | ${i.serverOpenAfterClose ?? "–"} |`)
        continue
      }
      const delta = i.rssKb - i.rssBeforeKb
      const target = p.key === "fibergate" ? (i.rssKb / 1024 <= IDLE_RSS_TARGET_MB ? `≤ ${IDLE_RSS_TARGET_MB} MB: within` : `≤ ${IDLE_RSS_TARGET_MB} MB: **ABOVE**`) : "–"
      lines.push(
        `| ${p.label} | ${i.when} | ${fmtInt(i.ok)}${i.failed ? ` (${i.failed} failed)` : ""} | ${fmtInt(i.serverOpen)} | ${fmtMB(i.rssBeforeKb)} | ${fmtMB(i.rssKb)} | ${(delta / 1024).toFixed(1)} | ` +
          `${i.ok ? (delta / i.ok).toFixed(1) : "–"} | ${target} | ${i.serverOpenAfterClose} |`,
      )
    }
    lines.push(
      "",
      "\"fresh process\": the peer restarted with the same config just before the check (RSS before = after startup and one readiness request); " +
        "\"after the load above\": the fibergate process that served every run above, whose heap has grown with that load. " +
        "A Node peer's delta is approximate: a GC during the check can give back more than the connections take.",
    )
  }

  if (routesBench) lines.push("", routesBench.output)

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
        peers: [...peers, ...(settings.direct || settings.latency ? [direct] : [])].map((p) => ({
          key: p.key,
          label: p.label,
          error: p.error ?? null,
          summary: p.child ? summary(p) : null,
          rounds: p.rounds,
          big: p.big,
          latency: p.latency ?? null,
          idle: p.idle ?? null,
          idleAfterLoad: p.idleLoaded ?? null,
          configChecks: p.configChecks ?? null,
        })),
        fibergateConfig: byKey.fibergate?.child?.benchConfig ? { routes: byKey.fibergate.child.benchConfig.routeCount, features: byKey.fibergate.child.benchConfig.features } : null,
        leak,
        routes: routesBench,
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
