// wrk: one bounded run against a loopback port and the parse of its summary.
import { runCaptured } from "./children.js"
import { HOST, settings } from "./settings.js"

const UNIT_MS = { us: 0.001, ms: 1, s: 1000, m: 60_000, h: 3_600_000 }
const UNIT_B = { B: 1, KB: 1024, MB: 1024 ** 2, GB: 1024 ** 3, TB: 1024 ** 4 }

/** wrk's summary: req/s, p50/p99 in ms, bytes/s, requests and errors (socket errors + non-2xx/3xx). */
export function parseWrk(out) {
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
 * One wrk run, killed if it outlives `duration` by 20 s. `threads` defaults to BENCH_THREADS;
 * `script` + `scriptArgs` pass a Lua script (its `init(args)` gets scriptArgs), e.g.
 * bench/scripts/stop-after.lua for a request count.
 */
export async function runWrk(wrkBin, port, urlPath, duration, connections, { threads = settings.threads, script, scriptArgs = [], headers = [], scheme = "http" } = {}) {
  threads = Math.min(threads, connections) // wrk needs connections >= threads
  const args = ["-t", String(threads), "-c", String(connections), "-d", duration.wrk, "--timeout", "5s", "--latency"]
  for (const h of headers) args.push("-H", h)
  if (script) args.push("-s", script)
  args.push(`${scheme}://${HOST}:${port}${urlPath}`)
  if (script && scriptArgs.length > 0) args.push("--", ...scriptArgs.map(String))
  // bench/scripts/stop-after.lua: once every thread has stopped, wake wrk's main thread (it
  // sleeps for the whole -d otherwise); on SIGINT wrk prints its summary and exits 0
  const onStderr = (stderr, child) => {
    if (script && stderr.split("stop-after: done").length - 1 >= threads && !child.exitInfo) {
      try {
        process.kill(child.pid, "SIGINT")
      } catch {}
    }
  }
  const run = await runCaptured("wrk", wrkBin, args, { cpu: 1, timeoutMs: (duration.seconds + 20) * 1000, onStderr })
  const r = parseWrk(run.output)
  if (run.code !== 0 || r.rps === null) throw new Error(`wrk failed (code ${run.code}, signal ${run.signal}):\n${run.output.trim()}`)
  return r
}
