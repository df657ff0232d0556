// Benchmark peer: @fastify/http-proxy (the server is peers/fastify-proxy.js), one process on
// cpu0, proxying to the upstream's first port (it cannot balance).
import path from "node:path"
import { startServer } from "../lib/net.js"
import { BENCH_DIR, HOST } from "../lib/settings.js"

export function startFastify(nodeBin, dir, port, upstreamPort, fdLimitArg) {
  const script = path.join(BENCH_DIR, "peers", "fastify-proxy.js")
  const logFile = path.join(dir, "fastify.log")
  return startServer("fastify", nodeBin, [script, `${HOST}:${port}`, `http://${HOST}:${upstreamPort}`], { logFile, cpu: 0, fdLimit: fdLimitArg }, { port, label: "@fastify/http-proxy" })
}
