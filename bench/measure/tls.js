// TLS cost (BENCH_TLS, fibergate only): fibergate's https listener against nginx's `listen ssl`,
// one worker each, through the same upstream: HTTPS over keep-alive connections, and new TLS
// connections (every request on a connection of its own, `Connection: close`, so each one pays
// a full handshake), BENCH_TLS_ROUNDS alternating rounds. The certificate is made here by openssl
// (P-256, the key size most sites serve) and never kept. measure/h2.js starts its peers here too.
import { execFileSync } from "node:child_process"
import path from "node:path"
import { stopChild, tmpSubdir } from "../lib/children.js"
import { fmtInt, fmtMs, median, tableHead, tableRow } from "../lib/format.js"
import { freePort } from "../lib/net.js"
import { alternating, warmupDuration, withCpu } from "../lib/runner.js"
import { HOST, settings } from "../lib/settings.js"
import { measureYamlHead, startFibergateYaml } from "../peers/fibergate.js"
import { backendBlock, nginxConf, startNginx } from "../peers/nginx.js"

/** A self-signed P-256 certificate for `bench.test` in `dir`: { cert, key } paths. */
function makeBenchCert(dir) {
  const cert = path.join(dir, "bench-tls.pem")
  const key = path.join(dir, "bench-tls.key")
  execFileSync("openssl", [
    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
    "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=bench.test", "-addext", "subjectAltName=DNS:bench.test"
  ], { stdio: ["ignore", "ignore", "pipe"] })
  return { cert, key }
}

/** fibergate on `port` over TLS with one catch-all route balancing over the upstream's ports. */
function fibergateTlsYaml(port, adminPort, upstreamPorts, cert) {
  return `${measureYamlHead(adminPort)}servers:
  - name: tls
    listen: "${HOST}:${port}"
    protocol: https
    tls: { certificates: [ { cert: "${cert.cert}", key: "${cert.key}" } ] }
    limits: { max_connections: 100000 }
    routes: [ { id: all, upstream: app } ]
upstreams:
  app:
    endpoints: [${upstreamPorts.map((p) => `{ url: "http://${HOST}:${p}" }`).join(", ")}]
    pool: { connections: 128 }
`
}

/** The nginx server block of the TLS peer (inside the bench's common http block). */
function nginxTlsServer(port, cert) {
  return `  server {
    listen ${HOST}:${port} ssl backlog=4096;
    ssl_certificate ${cert.cert};
    ssl_certificate_key ${cert.key};
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache off;
    ssl_session_tickets off;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_max_temp_file_size 0;
    }
  }`
}

/**
 * Starts fibergate on an https listener and nginx with `nginxServer(port, cert)`, one worker
 * each, proxying to `upstreamPorts`, with a fresh certificate in the temp dir's `name`. Each peer
 * is pushed to `peers` as soon as it runs (so the caller's cleanup stops it); returns both.
 */
export async function startTlsPeers(name, { nodeBin, tools, feats, upstreamPorts, fdRaise }, nginxServer, peers) {
  const dir = tmpSubdir(name)
  const cert = makeBenchCert(dir)
  const fgPort = await freePort()
  const fg = await startFibergateYaml(name, `fibergate (${name})`, nodeBin, dir, (adminPort) => fibergateTlsYaml(fgPort, adminPort, upstreamPorts, cert), fdRaise)
  const fibergate = { label: `fibergate (${name})`, port: fgPort, child: fg }
  peers.push(fibergate)
  const ngPort = await freePort()
  const conf = nginxConf(dir, `nginx-${name}`, feats, `${backendBlock(upstreamPorts)}\n${nginxServer(ngPort, cert)}`)
  const ng = await startNginx(`nginx-${name}`, tools.nginx, conf, dir, ngPort, 0)
  const nginx = { label: `nginx (${name})`, port: ngPort, child: ng }
  peers.push(nginx)
  return [fibergate, nginx]
}

/**
 * fibergate's https listener and nginx's `listen ssl`, one worker each, through the same
 * upstream, in alternating rounds: keep-alive HTTPS, then a new TLS connection per request.
 * Returns [{ label, keepAlive: [rounds], handshakes: [rounds] }].
 */
export async function tlsCost(ctx) {
  const { measure, feats } = ctx
  const peers = []
  try {
    const started = await startTlsPeers("tls", ctx, (port, cert) => nginxTlsServer(port, cert), peers)
    started[0].label = "fibergate (https)"
    started[1].label = `nginx ${feats.version} (listen ssl)`
    for (const p of started) Object.assign(p, { keepAlive: [], handshakes: [] })
    const close = { scheme: "https", headers: ["Connection: close"] }
    for (const p of peers) await measure(p, "/", warmupDuration(), settings.connections, { scheme: "https" })
    await alternating(peers, settings.tlsRounds, async (p, round) => {
      for (const [kind, opts] of [["keepAlive", { scheme: "https" }], ["handshakes", close]]) {
        const r = await withCpu(p.child.pid, () => measure(p, "/", settings.duration, settings.connections, opts))
        p[kind].push(r)
        console.log(`bench: tls round ${round + 1}/${settings.tlsRounds} ${p.label} ${kind === "keepAlive" ? "keep-alive" : "new connection per request"}: ${fmtInt(r.rps)} req/s, p99 ${fmtMs(r.p99)}, ${r.cpuUsPerRequest?.toFixed(1)} µs CPU/request, ${r.errors} errors`)
      }
    })
  } finally {
    for (const p of peers) await stopChild(p.child)
  }
  return peers.map(({ label, keepAlive, handshakes }) => ({ label, keepAlive, handshakes }))
}

export function tlsReport(rows) {
  if (rows.length === 0) return []
  const lines = [
    "",
    `TLS, one worker each through the same upstream, \`wrk -t${settings.threads} -c${settings.connections} -d${settings.duration.wrk}\` over https, ${settings.tlsRounds} rounds alternating; "new connection per request" sends \`Connection: close\`, so every request pays a full handshake (P-256 certificate, no session resumption). Ratios are fibergate / nginx, the median of each round's ratio:`,
    "",
  ]
  lines.push(...tableHead(["peer", "keep-alive req/s", "p99", "CPU µs/request", "new connections/s", "p99", "CPU µs/connection", "errors"], "lrrrrrrr"))
  for (const p of rows) {
    const m = (rs, f) => median(rs.map(f))
    lines.push(
      tableRow([
        p.label,
        fmtInt(m(p.keepAlive, (r) => r.rps)),
        fmtMs(m(p.keepAlive, (r) => r.p99)),
        m(p.keepAlive, (r) => r.cpuUsPerRequest ?? 0).toFixed(1),
        fmtInt(m(p.handshakes, (r) => r.rps)),
        fmtMs(m(p.handshakes, (r) => r.p99)),
        m(p.handshakes, (r) => r.cpuUsPerRequest ?? 0).toFixed(1),
        [...p.keepAlive, ...p.handshakes].reduce((a, r) => a + r.errors, 0),
      ]),
    )
  }
  if (rows.length === 2) {
    const [fg, ng] = rows
    const ratio = (kind) => median(fg[kind].map((r, i) => r.rps / ng[kind][i].rps))
    lines.push("", `fibergate / nginx over TLS: keep-alive ${ratio("keepAlive").toFixed(2)}x, new connections ${ratio("handshakes").toFixed(2)}x`)
  }
  return lines
}
