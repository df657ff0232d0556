// Loopback network helpers: free ports, one-shot HTTP requests with a hard timeout, and starting
// a server child that is only returned once it answers.
import fs from "node:fs"
import http from "node:http"
import net from "node:net"
import { sleep, startChild, stopChild } from "./children.js"
import { HOST, settings } from "./settings.js"

/** A loopback port nobody listens on yet. */
export function freePort() {
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
export function httpGet(port, urlPath = "/", timeoutMs = 2000, { method = "GET", headers = {} } = {}) {
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

/** Polls until check() resolves true (BENCH_START_TIMEOUT at most); fails early if the child exits. */
export async function waitReady(child, label, check) {
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

export function tail(file, bytes = 2000) {
  try {
    const s = fs.readFileSync(file, "utf8")
    return s.slice(-bytes).trim()
  } catch {
    return ""
  }
}

/**
 * Starts a server child (startChild's options) and waits until `ready()` holds, by default
 * until `port` answers any HTTP status. A start that fails stops the child and throws with the
 * last `tailBytes` of each of `logFiles` (by default the child's log file) appended.
 */
export async function startServer(name, cmd, args, opts, { port, label = name, ready = async () => (await httpGet(port, "/", 1000)).status > 0, logFiles = [opts.logFile], tailBytes = 2000 }) {
  const child = startChild(name, cmd, args, opts)
  try {
    await waitReady(child, label, ready)
  } catch (e) {
    await stopChild(child)
    const logs = logFiles.map((f) => tail(f, tailBytes)).filter(Boolean).join("\n")
    throw new Error(`${e.message}${logs ? `\n${logs}` : ""}`)
  }
  return child
}
