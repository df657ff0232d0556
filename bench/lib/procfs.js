// What /proc tells about a peer's process tree: resident set (now, and the peak during a run),
// CPU seconds used, the server-side TCP sockets of a port, and the fd limit children get.
import { spawnSync } from "node:child_process"
import fs from "node:fs"

export function readStatus(pid) {
  try {
    const s = fs.readFileSync(`/proc/${pid}/status`, "utf8")
    const kb = (k) => Number(new RegExp(`^${k}:\\s+(\\d+)`, "m").exec(s)?.[1] ?? 0)
    return { rss: kb("VmRSS"), hwm: kb("VmHWM") }
  } catch {
    return null
  }
}

/** The pid and every descendant's, from /proc/<pid>/task/<tid>/children. */
export function descendants(pid) {
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

/** CPU seconds (user + system) used so far by a process tree, from /proc/<pid>/stat. */
export function treeCpuSeconds(pid) {
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

/** Current resident set of a process tree (summed VmRSS), in KiB. */
export function treeRss(pid) {
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
export function serverSockets(port) {
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
export function fdLimit() {
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
 * Returns the function that stops the sampling and gives the peak.
 */
export function sampleRss(pid) {
  const hwmReset = resetHwm(pid)
  let peak = 0
  const tick = () => {
    peak = Math.max(peak, treeRss(pid))
  }
  tick()
  const timer = setInterval(tick, 100)
  return () => {
    clearInterval(timer)
    tick()
    return hwmReset ? Math.max(peak, readStatus(pid)?.hwm ?? 0) : peak
  }
}
