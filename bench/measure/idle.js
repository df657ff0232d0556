// Idle keep-alive connections (BENCH_IDLE): BENCH_IDLE_CONNECTIONS HTTP/1.1 connections held open
// and idle against a peer (bench/scripts/idle-clients.js: one `GET /` each, then idle), the peer's
// RSS read while they are open, then every one closed and the peer checked to have no socket
// left. It runs on the fibergate process that served the load, and on a fresh process of every peer.
import path from "node:path"
import { sleep, startChild, stopChild } from "../lib/children.js"
import { fmtInt, fmtMB, tableHead, tableRow } from "../lib/format.js"
import { freePort } from "../lib/net.js"
import { readStatus, serverSockets, treeRss } from "../lib/procfs.js"
import { BENCH_DIR, HOST, IDLE_RSS_TARGET_MB, settings } from "../lib/settings.js"
import { startPeer, verifyProxy } from "../peers/start.js"

const IDLE_SCRIPT = path.join(BENCH_DIR, "scripts", "idle-clients.js")

/** Resolves the next queued line that starts with `prefix`, or null after timeoutMs / at the stream's end. */
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

/** The lines of `stream` as they come, for nextLine. */
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

/** One check on a running peer ({ label, port, child }); `when` names the process in the report. */
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

/**
 * The checks: on fibergate's loaded process (`idleLoaded`), then each live peer is stopped and a
 * fresh process of it (same config) checked (`idle`): the load has grown the Node peers' heaps.
 */
export async function idleConnections(ctx, live) {
  const { nodeBin, fdRaise } = ctx
  const fgLive = live.find((p) => p.key === "fibergate")
  if (fgLive) fgLive.idleLoaded = await idleCheck(fgLive, nodeBin, fdRaise, "after the load above")
  for (const p of live) {
    await stopChild(p.child)
    try {
      const port = await freePort()
      const child = await startPeer(ctx, p.key, port)
      await verifyProxy(port)
      p.idle = await idleCheck({ ...p, port, child }, nodeBin, fdRaise, "fresh process")
      await stopChild(child)
    } catch (e) {
      p.idle = { error: `restart failed: ${e.message.split("\n")[0]}` }
      console.error(`bench: idle check ${p.label}: ${p.idle.error}`)
    }
  }
}

export function idleReport(peers) {
  const rows = peers.filter((p) => p.child).flatMap((p) => [p.idleLoaded, p.idle].filter(Boolean).map((idle) => ({ p, i: idle })))
  if (rows.length === 0) return []
  const lines = [
    "",
    `Idle keep-alive connections: ${fmtInt(settings.idleConnections)} HTTP/1.1 connections (\`bench/scripts/idle-clients.js\`: one \`GET /\` each, then idle), peer RSS read 2 s after they are all open:`,
    "",
  ]
  lines.push(...tableHead(["peer", "process", "answered", "open on peer", "RSS before MB", "RSS with idle conns MB", "delta MB", "KiB per conn", "target", "open after close"], "llrrrrrrlr"))
  for (const { p, i } of rows) {
    if (i.error) {
      lines.push(tableRow([p.label, i.when ?? "–", `failed: ${i.error.split("\n")[0]}`, "–", fmtMB(i.rssBeforeKb), "–", "–", "–", "–", i.serverOpenAfterClose ?? "–"]))
      continue
    }
    const delta = i.rssKb - i.rssBeforeKb
    const target = p.key === "fibergate" ? (i.rssKb / 1024 <= IDLE_RSS_TARGET_MB ? `≤ ${IDLE_RSS_TARGET_MB} MB: within` : `≤ ${IDLE_RSS_TARGET_MB} MB: **ABOVE**`) : "–"
    lines.push(
      tableRow([
        p.label,
        i.when,
        `${fmtInt(i.ok)}${i.failed ? ` (${i.failed} failed)` : ""}`,
        fmtInt(i.serverOpen),
        fmtMB(i.rssBeforeKb),
        fmtMB(i.rssKb),
        (delta / 1024).toFixed(1),
        i.ok ? (delta / i.ok).toFixed(1) : "–",
        target,
        i.serverOpenAfterClose,
      ]),
    )
  }
  lines.push(
    "",
    "\"fresh process\": the peer restarted with the same config just before the check (RSS before = after startup and one readiness request); " +
      "\"after the load above\": the fibergate process that served every run above, whose heap has grown with that load. " +
      "A Node peer's delta is approximate: a GC during the check can give back more than the connections take.",
  )
  return lines
}
