// The bench's settings: the environment knobs (documented in bench/README.md), the fixed
// constants every module shares (loopback host, the upstream's body, paths) and issue 13's goals.
// Read once, when the bench starts; a bad knob ends it with status 2 before anything runs.
import path from "node:path"
import { fileURLToPath } from "node:url"

export const BENCH_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..")
export const ROOT = path.resolve(BENCH_DIR, "..")
export const RESULTS_DIR = path.join(BENCH_DIR, "results")
/** Everything binds to and loads this address only. */
export const HOST = "127.0.0.1"
/** What the upstream answers on `GET /`. */
export const BODY = "hello world\n"
/** The size of the upstream's `GET /big`. */
export const BIG_BYTES = 1024 * 1024

// Issue 13's goals: fibergate req/s >= 1.5x @fastify/http-proxy and >= 1.2x Caddy, p99 at
// BENCH_CONNECTIONS <= Caddy's; idle RSS <= 70 MB and peak RSS under the main load <= 120 MB.
export const FLOOR = 1.5
export const CADDY_FLOOR = 1.2
export const FG_IDLE_RSS_TARGET_MB = 70
export const FG_PEAK_RSS_TARGET_MB = 120
export const IDLE_RSS_TARGET_MB = 200 // project target: fibergate RSS with BENCH_IDLE_CONNECTIONS idle keep-alive connections

/** The bench's fatal exit: a message and status 2 (the exit handler in children.js stops every child). */
export function die(msg) {
  console.error(`bench: ${msg}`)
  process.exit(2)
}

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

export const ALL_PEERS = ["fibergate", "fastify", "nginx", "caddy", "haproxy"]

/** The knobs, one object (written as is to latest.json); `pin` is turned off when taskset is missing. */
export const settings = {
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

/** The fibergate CLI under test: BENCH_FIBERGATE_BIN or this checkout's bin/fibergate.js. */
export const FIBERGATE_BIN = env.BENCH_FIBERGATE_BIN ? path.resolve(env.BENCH_FIBERGATE_BIN) : path.join(ROOT, "bin", "fibergate.js")
/** BENCH_BASELINE_BIN as given (for the report), another build's CLI for the telemetry A/B; null when unset. */
export const BASELINE_BIN = env.BENCH_BASELINE_BIN || null
/** BENCH_BASELINE_ONLY=1: with a baseline, the telemetry A/B runs just this build, its control and the baseline. */
export const BASELINE_ONLY = boolArg("BENCH_BASELINE_ONLY", "0")
