// HTTP/2 downstream: fibergate's https listener (h2 over ALPN) against nginx's `listen ssl
// http2`, one worker each, through the same HTTP/1.1 upstream, loaded by h2load (nghttp2's
// load generator: N connections, M concurrent streams on each). Uses tls.js's certificate.
import { spawn } from "node:child_process"

const HOST = "127.0.0.1"

/** The nginx server block of the h2 peer (inside the bench's common http block). */
export function nginxH2Server(port, cert, maxStreams) {
  return `  server {
    listen ${HOST}:${port} ssl http2 backlog=4096;
    ssl_certificate ${cert.cert};
    ssl_certificate_key ${cert.key};
    ssl_protocols TLSv1.2 TLSv1.3;
    http2_max_concurrent_streams ${maxStreams};
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_max_temp_file_size 0;
    }
  }`
}

/**
 * Runs h2load against `url` for `seconds` and parses its summary: req/s, requests done,
 * succeeded, failed + errored, and the mean and max time per request in ms.
 */
export function runH2load(bin, url, { seconds, clients, streams, threads = 1 }) {
  return new Promise((resolve, reject) => {
    const args = ["-D", String(seconds), "-c", String(clients), "-m", String(streams), "-t", String(threads), url]
    const child = spawn(bin, args, { stdio: ["ignore", "pipe", "pipe"] })
    let out = ""
    child.stdout.on("data", (d) => (out += d))
    child.stderr.on("data", (d) => (out += d))
    const killer = setTimeout(() => child.kill("SIGKILL"), (seconds + 30) * 1000)
    child.on("close", () => {
      clearTimeout(killer)
      const finished = out.match(/finished in [\d.]+\w*, ([\d.]+) req\/s/)
      const requests = out.match(/requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored/)
      const time = out.match(/time for request:\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)/)
      if (!finished || !requests) return reject(new Error(`h2load ${args.join(" ")}: no summary\n${out.slice(-2000)}`))
      const ms = (v, unit) => Number(v) * (unit === "us" ? 0.001 : unit === "s" ? 1000 : 1)
      resolve({
        rps: Number(finished[1]),
        requests: Number(requests[3]),
        succeeded: Number(requests[4]),
        errors: Number(requests[5]) + Number(requests[6]),
        meanMs: time ? ms(time[5], time[6]) : null,
        maxMs: time ? ms(time[3], time[4]) : null
      })
    })
    child.on("error", reject)
  })
}
