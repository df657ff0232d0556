// TLS cost: fibergate's https listener against nginx's, one worker each, through the same
// upstream: HTTPS over keep-alive connections, and new TLS connections (every request on a
// connection of its own, `Connection: close`, so each one pays a full handshake). The
// certificate is made here by openssl (P-256, the key size most sites serve) and never kept.
import { execFileSync } from "node:child_process"
import path from "node:path"

const HOST = "127.0.0.1"

/** A self-signed P-256 certificate for `bench.test` in `dir`: { cert, key } paths. */
export function makeBenchCert(dir) {
  const cert = path.join(dir, "bench-tls.pem")
  const key = path.join(dir, "bench-tls.key")
  execFileSync("openssl", [
    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
    "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=bench.test", "-addext", "subjectAltName=DNS:bench.test"
  ], { stdio: ["ignore", "ignore", "pipe"] })
  return { cert, key }
}

/** fibergate on `port` over TLS with one catch-all route balancing over the upstream's ports. */
export function fibergateTlsYaml(port, adminPort, upstreamPorts, cert) {
  return `admin: { listen: "${HOST}:${adminPort}" }
log: { level: warn, access_log: false }
telemetry: { metrics: { enabled: true } }
servers:
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
export function nginxTlsServer(port, cert) {
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
