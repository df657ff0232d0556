// Benchmark peer: HAProxy (Debian's `haproxy`), one thread (`nbthread 1`), HTTP mode, round
// robin over the upstream's ports with `http-reuse always` (idle server connections shared).

export const haproxyBin = "haproxy"
export const haproxyInstall = "apt-get install haproxy"

/** The config: one frontend on `port`, one backend over every upstream port. */
export const haproxyConfig = (host, port, upstreamPorts, maxconn) => `global
	nbthread 1
	maxconn ${maxconn}

defaults
	mode http
	timeout connect 2s
	timeout client 60s
	timeout server 60s
	timeout http-keep-alive 60s
	option http-keep-alive

frontend bench
	bind ${host}:${port}
	default_backend upstream

backend upstream
	balance roundrobin
	http-reuse always
${upstreamPorts.map((p, i) => `	server u${i} ${host}:${p}`).join("\n")}
`

/** The command line that runs it in the foreground with `file` as its config. */
export const haproxyCommand = (file) => ({ args: ["-f", file, "-db"], env: {} })
