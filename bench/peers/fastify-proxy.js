// Benchmark peer: @fastify/http-proxy, one process, logger off, keep-alive undici pool to the upstream.
// Usage: node bench/peers/fastify-proxy.js <host:port to listen on> <upstream URL>
import Fastify from "fastify"
import proxy from "@fastify/http-proxy"

const [listen = "127.0.0.1:0", upstream] = process.argv.slice(2)
if (!upstream) {
  console.error("usage: fastify-proxy.js <host:port> <upstream-url>")
  process.exit(2)
}
const idx = listen.lastIndexOf(":")
const host = listen.slice(0, idx)
const port = Number(listen.slice(idx + 1))

const app = Fastify({ logger: false })
await app.register(proxy, {
  upstream,
  prefix: "/",
  http2: false,
  // same pool size as the fibergate config (pool.connections: 128); undici keeps connections alive
  undici: { connections: 128, pipelining: 1, keepAliveTimeout: 60_000 },
})

for (const sig of ["SIGTERM", "SIGINT"]) {
  process.once(sig, () => {
    app.close().finally(() => process.exit(0))
    setTimeout(() => process.exit(0), 1000).unref()
  })
}

await app.listen({ host, port })
