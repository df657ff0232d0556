// Benchmark peer and upstream: nginx, one worker (`daemon off; master_process off`). The shared
// upstream every proxy forwards to, the nginx proxy peer, and the common config the TLS, h2 and
// WebSocket measurements put their server blocks in.
import fs from "node:fs"
import path from "node:path"
import { freePort, httpGet, startServer } from "../lib/net.js"
import { BIG_BYTES, BODY, die, HOST, settings } from "../lib/settings.js"
import { toolVersion } from "../lib/tools.js"

/** The nginx version and which optional modules (their temp paths must be set) it was built with. */
export function nginxFeatures(nginxBin) {
  const v = toolVersion(nginxBin, ["-V"])
  const has = (mod) => !v.includes(`--without-http_${mod}_module`)
  return { version: /nginx\/(\S+)/.exec(v)?.[1] ?? "?", fastcgi: has("fastcgi"), uwsgi: has("uwsgi"), scgi: has("scgi") }
}

/**
 * A whole nginx config named `name` in `dir`: one worker in the foreground, its pid, logs and
 * temp files in `dir`, access log off, keep-alive on; `inner` goes inside the `http` block.
 */
export function nginxConf(dir, name, feats, inner, workerConnections = 8192) {
  const t = path.join(dir, `${name}-temp`)
  fs.mkdirSync(t, { recursive: true })
  const temps = [`client_body_temp_path ${t}/body;`, `proxy_temp_path ${t}/proxy;`]
  if (feats.fastcgi) temps.push(`fastcgi_temp_path ${t}/fastcgi;`)
  if (feats.uwsgi) temps.push(`uwsgi_temp_path ${t}/uwsgi;`)
  if (feats.scgi) temps.push(`scgi_temp_path ${t}/scgi;`)
  return `daemon off;
master_process off;
worker_processes 1;
worker_rlimit_nofile ${workerConnections * 2};
pid ${dir}/${name}.pid;
error_log ${dir}/${name}.error.log warn;
events { worker_connections ${workerConnections}; multi_accept on; }
http {
  access_log off;
  server_tokens off;
  sendfile on;
  tcp_nopush on;
  tcp_nodelay on;
  keepalive_timeout 75s;
  keepalive_requests 1000000;
  ${temps.join("\n  ")}
${inner}
}
`
}

/** The `upstream backend` block over the shared upstream's ports, with keep-alive connections. */
export const backendBlock = (upstreamPorts, extra = []) => `  upstream backend {
${upstreamPorts.map((p) => `    server ${HOST}:${p};`).join("\n")}
${["keepalive 64;", ...extra].map((l) => `    ${l}`).join("\n")}
  }`

/**
 * The shared upstream: one nginx worker, one server block listening on two ports (so a proxy can
 * balance over two distinct endpoint URLs). `/whoami` answers with the port that served it.
 */
function upstreamConf(dir, ports, feats) {
  return nginxConf(
    dir,
    "upstream",
    feats,
    `  default_type text/plain;
  server {
${ports.map((p) => `    listen ${HOST}:${p} backlog=4096;`).join("\n")}
    location = /big { root ${dir}/www; default_type application/octet-stream; }
    location = /whoami { return 200 "$server_port\\n"; }
    location / { return 200 "${BODY.replace("\n", "\\n")}"; }
  }`,
  )
}

/** The nginx proxy peer: `proxy_pass` round robin over both upstream ports, keep-alive upstream connections. */
export function nginxProxyConf(dir, port, upstreamPorts, feats) {
  // room for the idle-connection check (BENCH_IDLE_CONNECTIONS client connections at once)
  const workerConnections = settings.idle ? Math.max(8192, settings.idleConnections + 4096) : 8192
  return nginxConf(
    dir,
    "nginx-proxy",
    feats,
    `${backendBlock(upstreamPorts, ["keepalive_requests 1000000;", "keepalive_timeout 60s;"])}
  server {
    listen ${HOST}:${port} backlog=4096;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_max_temp_file_size 0;
    }
  }`,
    workerConnections,
  )
}

/** Writes `conf` to `dir`/`name`.conf and runs nginx on it; resolves once `port` answers. */
export function startNginx(name, nginxBin, conf, dir, port, cpu) {
  const confFile = path.join(dir, `${name}.conf`)
  fs.writeFileSync(confFile, conf)
  const logFile = path.join(dir, `${name}.out.log`)
  const errorLog = path.join(dir, `${name}.error.log`)
  return startServer(name, nginxBin, ["-p", `${dir}/`, "-e", errorLog, "-c", confFile], { logFile, cpu }, { port, logFiles: [logFile, errorLog] })
}

/**
 * The shared upstream on two free ports of `dir` (with the 1 MiB file of `GET /big` in
 * `dir`/www), on cpu1 with wrk; checks that both ports answer the body, else ends the bench.
 * Resolves { child, ports }.
 */
export async function startUpstream(nginxBin, feats, dir) {
  fs.mkdirSync(path.join(dir, "www"))
  fs.writeFileSync(path.join(dir, "www", "big"), Buffer.alloc(BIG_BYTES, "x"))
  const ports = [await freePort()]
  while (ports.length < 2) {
    const p = await freePort()
    if (!ports.includes(p)) ports.push(p)
  }
  const child = await startNginx("upstream", nginxBin, upstreamConf(dir, ports, feats), dir, ports[0], 1).catch((e) => die(`upstream nginx failed to start: ${e.message}`))
  for (const p of ports) {
    const r = await httpGet(p, "/")
    if (r.status !== 200 || r.body !== BODY) die(`upstream on port ${p} returned ${r.status} ${JSON.stringify(r.body)}`)
  }
  return { child, ports }
}
