#!/usr/bin/env node
// fibergate benchmark: fibergate vs @fastify/http-proxy, nginx, Caddy and HAProxy, all proxying to one nginx upstream.
// Run with `npm run bench` (uses the Node pinned in devDependencies). See bench/README.md (its
// "Layout" section lists the modules: lib/ the shared runner, peers/ one peer a file, measure/
// one measurement a file, scripts/ the programs they start).
//
// Everything binds to and loads 127.0.0.1 only; every load run is bounded in time; every child
// process is started in its own process group and killed on exit, SIGINT/SIGTERM and errors.
import { spawnSync } from "node:child_process"
import fs from "node:fs"
import path from "node:path"
import { cleanupAndExit, finish, makeTmpDir, stopAll } from "./lib/children.js"
import { fmtInt } from "./lib/format.js"
import { fdLimit } from "./lib/procfs.js"
import { createMeasure } from "./lib/runner.js"
import { die, HOST, RESULTS_DIR, ROOT, settings } from "./lib/settings.js"
import { ensureTools, machineInfo, peerNode, which } from "./lib/tools.js"
import { bigReport, bigThroughput } from "./measure/big.js"
import { h2Cost, h2Report } from "./measure/h2.js"
import { idleConnections, idleReport } from "./measure/idle.js"
import { oneConnectionLatency, latencyReport } from "./measure/latency.js"
import { leakCheck, leakReport } from "./measure/leak.js"
import { goalsReport, loadReport, mainLoad, summary } from "./measure/load.js"
import { middlewareCost, middlewareReport } from "./measure/middlewares.js"
import { routesBench } from "./measure/routes.js"
import { shippedIdle } from "./measure/shipped-idle.js"
import { telemetryCost, telemetryReport } from "./measure/telemetry.js"
import { tlsCost, tlsReport } from "./measure/tls.js"
import { webSocketCost, webSocketReport } from "./measure/websocket.js"
import { nginxFeatures, startUpstream } from "./peers/nginx.js"
import { LABELS, startPeers } from "./peers/start.js"

async function main() {
  const tools = ensureTools()
  const feats = nginxFeatures(tools.nginx)
  tools.nginxVersion = feats.version
  const nodeBin = peerNode()
  if (settings.pin && !which("taskset")) {
    console.warn("bench: BENCH_PIN=1 but taskset is missing; not pinning")
    settings.pin = false
  }

  const tmpDir = makeTmpDir()
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
  const upstream = await startUpstream(tools.nginx, feats, tmpDir)
  const upstreamPorts = upstream.ports
  console.log(`bench: upstream nginx ${feats.version} pid ${upstream.child.pid} on ${upstreamPorts.map((p) => `${HOST}:${p}`).join(" and ")}`)

  // what every peer start and measurement needs of this run
  const ctx = { tools, feats, nodeBin, tmpDir, upstreamPorts, fdRaise, measure: createMeasure(tools.wrk) }
  const { peers, failed } = await startPeers(ctx)
  const live = peers.filter((p) => p.child)
  const direct = { key: "direct", label: LABELS.direct, port: upstreamPorts[0], child: upstream.child, rounds: [], big: null, latency: null }
  const fgLive = live.find((p) => p.key === "fibergate")

  // idle RSS on the shipped config, which issue 13's idle target is about, before any load
  const shipped = fgLive ? await shippedIdle(ctx) : null
  await mainLoad(ctx, live, direct)
  if (settings.latency) await oneConnectionLatency(ctx, direct, live)
  if (settings.big) await bigThroughput(ctx, direct, live)

  // telemetry cost: the same realistic config with metrics and tracing off, on, and tracing with
  // sampling 0 and 1, each its own fibergate process, in alternating rounds
  const telemetry = settings.telemetry && fgLive ? await telemetryCost(ctx) : null
  // middleware cost: the catch-all with one middleware kind at a time, each its own process
  const middlewareRows = settings.middlewares && fgLive ? await middlewareCost(ctx) : null

  // TLS: fibergate's https listener against nginx's, keep-alive and a handshake per request
  let tlsRows = null
  if (settings.tls && fgLive) {
    if (!which("openssl")) console.error("bench: tls cost: no openssl here, skipped (apt-get install openssl)")
    else tlsRows = await tlsCost(ctx)
  }

  // HTTP/2: fibergate's h2 over ALPN against nginx's, h2load
  let h2Rows = null
  if (settings.h2 && fgLive) {
    const h2load = which("h2load")
    if (!h2load || !which("openssl")) console.error("bench: h2: no h2load or openssl here, skipped (apt-get install nghttp2-client openssl)")
    else h2Rows = await h2Cost(ctx, h2load)
  }

  // WebSocket echo: direct, through fibergate, through nginx
  const wsRows = settings.ws && fgLive ? await webSocketCost(ctx) : null

  // leak check: fibergate only, BENCH_LEAK_RUNS runs of ~BENCH_LEAK_REQUESTS requests each, RSS after 2 s idle
  const leak = settings.leak && fgLive ? await leakCheck(fgLive, tools.wrk) : null

  // idle keep-alive connections: RSS while BENCH_IDLE_CONNECTIONS idle connections are open,
  // on a fresh process of each peer and, for fibergate, also on the process that served all the load
  if (settings.idle) await idleConnections(ctx, live)

  // the peers are done; the route-table micro-benchmark runs on a quiet machine
  await stopAll()
  const routes = settings.routes ? await routesBench(nodeBin) : null

  // report
  const lines = [
    ...loadReport(machine, peers, direct),
    ...(settings.latency && direct.latency ? latencyReport(peers, direct) : []),
    ...(telemetry !== null ? telemetryReport(telemetry) : []),
    ...(middlewareRows !== null ? middlewareReport(middlewareRows) : []),
    ...(tlsRows !== null ? tlsReport(tlsRows) : []),
    ...(h2Rows !== null ? h2Report(h2Rows) : []),
    ...(wsRows !== null ? webSocketReport(wsRows) : []),
    ...bigReport(peers, direct),
    ...goalsReport(peers, shipped),
    ...(leak ? leakReport(leak) : []),
    ...idleReport(peers),
    ...(routes ? ["", routes.output] : []),
  ]
  if (failed.length > 0) {
    lines.push("", "Peers that failed to start:")
    for (const p of failed) lines.push(`- ${p.label}: ${p.error.split("\n")[0]}`)
  }
  const md = `${lines.join("\n")}\n`

  console.log(`\n${md}`)
  const fgPeer = peers.find((p) => p.key === "fibergate")
  fs.mkdirSync(RESULTS_DIR, { recursive: true })
  fs.writeFileSync(path.join(RESULTS_DIR, "latest.md"), md)
  fs.writeFileSync(
    path.join(RESULTS_DIR, "latest.json"),
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
        fibergateConfig: fgPeer?.child?.benchConfig ? { routes: fgPeer.child.benchConfig.routeCount, features: fgPeer.child.benchConfig.features } : null,
        shippedIdle: shipped,
        leak,
        routes,
      },
      null,
      2,
    )}\n`,
  )
  console.log(`bench: wrote ${path.relative(ROOT, path.join(RESULTS_DIR, "latest.md"))} and latest.json`)

  await finish(failed.length > 0 ? 1 : 0)
}

main().catch((e) => {
  console.error(e)
  cleanupAndExit(1, "error")
})
