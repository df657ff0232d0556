// The peers by key (BENCH_PEERS): their labels, how each one starts on a port (one file a peer
// in this folder), the check that a started peer really proxies, and the start of them all
// before the main load.
import { spawnSync } from "node:child_process"
import fs from "node:fs"
import path from "node:path"
import { sleep, stopChild } from "../lib/children.js"
import { fmtMB } from "../lib/format.js"
import { freePort, httpGet, startServer } from "../lib/net.js"
import { treeRss } from "../lib/procfs.js"
import { BIG_BYTES, BODY, HOST, settings } from "../lib/settings.js"
import { caddyCommand, caddyfile } from "./caddy.js"
import { startFastify } from "./fastify.js"
import { startFibergate, verifyFibergateConfig } from "./fibergate.js"
import { haproxyCommand, haproxyConfig } from "./haproxy.js"
import { nginxProxyConf, startNginx } from "./nginx.js"

export const LABELS = {
  fibergate: "fibergate",
  fastify: "@fastify/http-proxy",
  nginx: "nginx (proxy)",
  caddy: "Caddy",
  haproxy: "HAProxy",
  direct: "nginx upstream (direct, baseline)",
}

/** The hard limit on open files (`ulimit -Hn`), which no child can go above. */
const hardFdLimit = () => {
  const v = (spawnSync("bash", ["-c", "ulimit -Hn"], { encoding: "utf8", timeout: 5000 }).stdout ?? "").trim()
  return v === "unlimited" ? Infinity : Number(v) || 1_000_000
}

/** A peer run from a config file (Caddy, HAProxy: `command(file)` gives its args and env), on cpu0 like the other proxies. */
function startConfigured(name, bin, file, text, command, port) {
  fs.writeFileSync(file, text)
  const logFile = path.join(path.dirname(file), `${name}.log`)
  const { args, env: extraEnv } = command(file)
  return startServer(name, bin, args, { logFile, cpu: 0, extraEnv }, { port })
}

/**
 * Starts the peer `key` on `port` in the temp dir, proxying to the shared upstream; `ctx` is the
 * run's { tools, feats, nodeBin, tmpDir, upstreamPorts, fdRaise }.
 */
export function startPeer(ctx, key, port) {
  const { tools, feats, nodeBin, tmpDir, upstreamPorts, fdRaise } = ctx
  if (key === "fibergate") return startFibergate(nodeBin, tmpDir, port, upstreamPorts, fdRaise)
  if (key === "fastify") return startFastify(nodeBin, tmpDir, port, upstreamPorts[0], fdRaise)
  if (key === "caddy") return startConfigured("caddy", tools.caddy, path.join(tmpDir, "Caddyfile"), caddyfile(HOST, port, upstreamPorts), caddyCommand, port)
  if (key === "haproxy") {
    // HAProxy refuses to start unless it can raise its fd limit to about twice maxconn (a
    // client and a server socket each), and a child cannot go above the hard limit (raising it
    // needs CAP_SYS_RESOURCE, which this sandbox does not give root): maxconn stays under it.
    const wanted = settings.idle ? Math.max(8192, settings.idleConnections + 4096) : 8192
    const maxconn = Math.min(wanted, Math.floor((hardFdLimit() - 1000) / 2))
    if (maxconn < wanted) console.warn(`bench: HAProxy maxconn ${maxconn} (the fd hard limit is ${hardFdLimit()}), not ${wanted}: its idle check may hold fewer connections`)
    return startConfigured("haproxy", tools.haproxy, path.join(tmpDir, "haproxy.cfg"), haproxyConfig(HOST, port, upstreamPorts, maxconn), haproxyCommand, port)
  }
  return startNginx("nginx-proxy", tools.nginx, nginxProxyConf(tmpDir, port, upstreamPorts, feats), tmpDir, port, 0)
}

/** Checks that a started proxy really proxies: the body of `GET /`. */
export async function verifyProxy(port) {
  const r = await httpGet(port, "/")
  if (r.status !== 200 || r.body !== BODY) throw new Error(`GET / through it returned ${r.status} ${JSON.stringify(r.body.slice(0, 80))}, expected 200 "hello world\\n"`)
}

/** Checks the size of `GET /big` through a proxy: null when right, else why (the /big run is then skipped for it). */
async function checkBig(port) {
  try {
    const r = await httpGet(port, "/big", 5000)
    return r.status === 200 && r.length === BIG_BYTES ? null : `GET /big returned ${r.status}, ${r.length} bytes`
  } catch (e) {
    return `GET /big failed: ${e.message}`
  }
}

/**
 * Starts every peer of BENCH_PEERS on a free port, checks it proxies (and /big, with BENCH_BIG),
 * reads its idle RSS IDLE_READ_MS later (fibergate compacts its heap once, 1 s after start), and
 * for fibergate checks its routing. A peer that fails is
 * reported and stopped; the others still run. Resolves { peers, failed }: each peer is
 * { key, label, child (null when it failed), port, rounds: [], big, bigNote, error, latency, idle, idleRssKb, configChecks }.
 */
/** How long after a peer answers its idle RSS is read, for every peer alike. */
export const IDLE_READ_MS = 3000

export async function startPeers(ctx) {
  const peers = []
  const failed = []
  for (const key of settings.peers) {
    const port = await freePort()
    const peer = { key, label: LABELS[key], port, rounds: [], big: null, bigNote: null, error: null, latency: null, idle: null }
    try {
      peer.child = await startPeer(ctx, key, port)
      await verifyProxy(port)
      if (settings.big) peer.bigNote = await checkBig(port)
      await sleep(IDLE_READ_MS)
      peer.idleRssKb = treeRss(peer.child.pid)
      console.log(`bench: ${peer.label} pid ${peer.child.pid} on ${HOST}:${port}${peer.child.benchHow ? ` (${peer.child.benchHow})` : ""}, idle RSS ${fmtMB(peer.idleRssKb)} MB`)
      if (peer.child.benchConfig) {
        peer.configChecks = await verifyFibergateConfig(port, ctx.upstreamPorts)
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
  return { peers, failed }
}
