// Middleware cost (BENCH_MIDDLEWARES, fibergate only): the realistic config's catch-all route
// with one middleware kind at a time, each its own fibergate process, measured in
// BENCH_MIDDLEWARE_ROUNDS alternating rounds against the same config with no middleware (and a
// second identical process as the noise control). Every variant's requests pass (the cost of
// admitting a request is what every request pays); wrk sends the headers the kind needs. A real
// redis-server on loopback backs the Redis limiter (skipped without one).
import { spawnSync } from "node:child_process"
import { createHash } from "node:crypto"
import fs from "node:fs"
import http from "node:http"
import net from "node:net"
import path from "node:path"
import { killGroup, sleep, startChild, stopChild, tmpSubdir } from "../lib/children.js"
import { freePort, httpGet } from "../lib/net.js"
import { variantRounds, variantTable } from "../lib/runner.js"
import { HOST, settings } from "../lib/settings.js"
import { startFibergate } from "../peers/fibergate.js"

const hasRedis = () => spawnSync("redis-server", ["--version"], { encoding: "utf8" }).status === 0

/** A redis-server on a free loopback port without persistence; `stop()` kills it. */
async function startRedis() {
  if (!hasRedis()) return null
  const port = await freePort()
  const child = startChild("redis-server", "redis-server", ["--port", String(port), "--bind", HOST, "--save", "", "--appendonly", "no"])
  const stop = () => killGroup(child, "SIGKILL")
  for (let i = 0; i < 200; i++) {
    const up = await new Promise((resolve) => {
      const s = net.connect({ host: HOST, port }, () => {
        s.destroy()
        resolve(true)
      })
      s.once("error", () => resolve(false))
    })
    if (up) return { url: `redis://${HOST}:${port}`, stop }
    await sleep(25)
  }
  stop()
  return null
}

/** An auth service for forward_auth in the bench process: 204 with an identity for every request. */
async function startAuthServer() {
  const server = http.createServer((req, res) => {
    res.writeHead(204, { "x-user-id": "bench" })
    res.end()
  })
  await new Promise((resolve) => server.listen(0, HOST, resolve))
  return { url: `http://${HOST}:${server.address().port}/verify`, stop: () => server.close() }
}

/** A HS256 JWT for `secret`, valid for a day (jose, the library the gateway verifies with). */
async function hs256(secret) {
  const { SignJWT } = await import("jose")
  return new SignJWT({ sub: "bench" }).setProtectedHeader({ alg: "HS256" }).setIssuer("bench").setExpirationTime("1d").sign(new TextEncoder().encode(secret))
}

/**
 * The variants: { label, head (top-level YAML lines), middlewares (the catch-all's list), headers (wrk -H) }.
 * `dir` holds files the config refers to.
 */
async function middlewareVariants(dir, redisUrl, authUrl) {
  const key = "bench-api-key"
  const secret = "a-bench-secret-of-enough-length-for-hs256"
  const secretFile = path.join(dir, "hs256.key")
  fs.writeFileSync(secretFile, secret)
  const { default: bcrypt } = await import("bcryptjs")
  const token = await hs256(secret)
  const none = { head: "", middlewares: [], headers: [] }
  const variants = [
    { label: "no middleware", ...none },
    { label: "no middleware (second process, control)", ...none },
    { label: "ip_filter (allow 127.0.0.0/8)", head: "", middlewares: [{ ip_filter: { allow: ["127.0.0.0/8"] } }], headers: [] },
    {
      label: "cors (an allowed Origin on every request)",
      head: "",
      middlewares: [{ cors: { origins: ["https://app.example.com"], credentials: true, expose: ["x-route"] } }],
      headers: ["Origin: https://app.example.com"],
    },
    {
      label: "api_key (header)",
      head: "",
      middlewares: [{ api_key: { keys: [{ name: "bench", sha256: createHash("sha256").update(key).digest("hex") }] } }],
      headers: [`x-api-key: ${key}`],
    },
    {
      label: "basic_auth (bcrypt, verified once then remembered)",
      head: "",
      middlewares: [{ basic_auth: { users: [{ name: "bench", hash: bcrypt.hashSync("pw", 10) }] } }],
      headers: [`Authorization: Basic ${Buffer.from("bench:pw").toString("base64")}`],
    },
    {
      label: "jwt (HS256)",
      head: "",
      middlewares: [{ jwt: { secret_file: secretFile, algorithms: ["HS256"], issuer: "bench", claims_to_headers: { sub: "x-user-id" } } }],
      headers: [`Authorization: Bearer ${token}`],
    },
    { label: "rate_limit (memory, token bucket, never reached)", head: "", middlewares: [{ rate_limit: { key: "ip", limit: 1_000_000_000, window: "1s" } }], headers: [] },
    { label: "concurrency_limit (max 1000)", head: "", middlewares: [{ concurrency_limit: { max: 1000 } }], headers: [] },
    { label: "forward_auth (an auth server in the bench process)", head: "", middlewares: [{ forward_auth: { url: authUrl } }], headers: [] },
  ]
  if (redisUrl) {
    variants.push({
      label: "rate_limit (redis on loopback, token bucket, never reached)",
      head: `redis: { url: "${redisUrl}", timeout: 100ms, on_error: deny }`,
      middlewares: [{ rate_limit: { key: "ip", limit: 1_000_000_000, window: "1s", store: "redis" } }],
      headers: [],
    })
  }
  return variants
}

/** Runs each middleware variant as its own fibergate process; returns [{ label, rounds }]. */
export async function middlewareCost({ nodeBin, upstreamPorts, fdRaise, measure }) {
  const redis = await startRedis()
  if (!redis) console.error("bench: middleware cost: no redis-server here, the Redis limiter row is skipped (apt-get install redis-server)")
  const auth = await startAuthServer()
  const dir = tmpSubdir("middlewares")
  const variants = []
  try {
    for (const [i, v] of (await middlewareVariants(dir, redis?.url, auth.url)).entries()) {
      const vdir = tmpSubdir(path.join("middlewares", String(i)))
      const port = await freePort()
      const head = ["telemetry: { metrics: { enabled: true } }", v.head].filter((l) => l !== "").join("\n")
      const child = await startFibergate(nodeBin, vdir, port, upstreamPorts, fdRaise, head, undefined, v.middlewares)
      const probe = await httpGet(port, "/", 2000, { headers: Object.fromEntries(v.headers.map((h) => [h.slice(0, h.indexOf(":")), h.slice(h.indexOf(":") + 1).trim()])) })
      if (probe.status !== 200) throw new Error(`middleware variant ${v.label}: GET / answered ${probe.status} ${probe.body.slice(0, 120)}`)
      variants.push({ label: v.label, port, child, headers: v.headers, rounds: [] })
    }
    await variantRounds(measure, variants, settings.middlewareRounds, "middleware", { errors: true })
  } finally {
    for (const v of variants) await stopChild(v.child)
    auth.stop()
    redis?.stop()
  }
  return variants.map(({ label, rounds }) => ({ label, rounds }))
}

export function middlewareReport(rows) {
  if (rows.length === 0) return []
  return [
    "",
    `Middleware cost, fibergate with the realistic config and one middleware on the catch-all route, \`wrk -t${settings.threads} -c${settings.connections} -d${settings.duration.wrk}\` (with the headers the kind needs), ${settings.middlewareRounds} rounds, the variants alternating within each round; every request is admitted. "vs none" is the median over rounds of each round's ratio to the no-middleware run of the same round; read it against the control row:`,
    "",
    ...variantTable(rows, "none", { errors: true }),
  ]
}
