// Child process bookkeeping and cleanup. Every child runs in its own process group and is
// tracked here until it exits; whatever is alive is stopped on normal exit, on SIGINT, SIGTERM
// and SIGHUP, on an uncaught error, and SIGKILLed by the synchronous exit handler as a last
// resort. The temp dir (configs, logs) lives here too and goes with the process.
import { spawn } from "node:child_process"
import fs from "node:fs"
import os from "node:os"
import path from "node:path"
import { ROOT, settings } from "./settings.js"

const children = new Set()
let tmpDir = null
let cleaningUp = false

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

/** Spawns a child in its own process group; stdout/stderr go to a log file unless captured. */
export function startChild(name, cmd, args, { capture = false, logFile, cwd = ROOT, cpu, stdin = "ignore", fdLimit, extraEnv = {} } = {}) {
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

export function killGroup(child, signal) {
  if (!child.pid || child.exitInfo) return
  try {
    process.kill(-child.pid, signal)
  } catch {
    try {
      process.kill(child.pid, signal)
    } catch {}
  }
}

export async function stopChild(child, graceMs = 3000) {
  if (child.exitInfo || !child.pid) return
  killGroup(child, "SIGTERM")
  const t = sleep(graceMs).then(() => "timeout")
  if ((await Promise.race([child.exited, t])) === "timeout") {
    killGroup(child, "SIGKILL")
    await Promise.race([child.exited, sleep(1000)])
  }
}

export async function stopAll() {
  await Promise.all([...children].map((c) => stopChild(c)))
}

/**
 * Runs a child to its end with stdout and stderr captured; its group is SIGKILLed after
 * `timeoutMs` (the hard bound of every tool run). `onStderr(stderrSoFar, child)` sees stderr as
 * it comes. Resolves { code, signal, error, stdout, stderr, output } (output: both, as they came).
 */
export async function runCaptured(name, cmd, args, { timeoutMs, onStderr, ...opts }) {
  const child = startChild(name, cmd, args, { ...opts, capture: true })
  let stdout = ""
  let stderr = ""
  let output = ""
  const ended = (stream) => new Promise((resolve) => stream.once("close", resolve))
  const closed = child.stdout ? Promise.all([ended(child.stdout), ended(child.stderr)]) : Promise.resolve()
  child.stdout?.on("data", (d) => {
    stdout += d
    output += d
  })
  child.stderr?.on("data", (d) => {
    stderr += d
    output += d
    onStderr?.(stderr, child)
  })
  const guard = setTimeout(() => killGroup(child, "SIGKILL"), timeoutMs)
  const info = await child.exited
  clearTimeout(guard)
  await Promise.race([closed, sleep(1000)]) // the last output after the exit
  return { ...info, stdout, stderr, output }
}

/** Makes the run's temp dir under os.tmpdir() (removed on exit unless BENCH_KEEP_TMP=1). */
export function makeTmpDir() {
  tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), "fibergate-bench-"))
  return tmpDir
}

/** A directory `name` inside the temp dir, made if needed. */
export function tmpSubdir(name) {
  const dir = path.join(tmpDir, name)
  fs.mkdirSync(dir, { recursive: true })
  return dir
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

/** Stops every child (6 s at most) and exits with `code`; a second call (a second signal) is ignored. */
export async function cleanupAndExit(code, why) {
  if (cleaningUp) return
  cleaningUp = true
  if (why) console.error(`\nbench: ${why}; stopping ${children.size} child process(es)...`)
  await Promise.race([stopAll(), sleep(6000)])
  process.exit(code)
}

/** The normal end: stops every child, removes the temp dir and exits with `code` (signals are ignored from here). */
export async function finish(code) {
  cleaningUp = true
  await stopAll()
  removeTmp()
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
