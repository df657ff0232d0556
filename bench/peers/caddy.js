// Benchmark peer: Caddy (Debian's `caddy`), one core (GOMAXPROCS=1), `reverse_proxy` round
// robin over the upstream's ports with keep-alive, admin endpoint and automatic HTTPS off.
import path from "node:path"

export const caddyBin = "caddy"
export const caddyInstall = "apt-get install caddy"

/** The Caddyfile: one site on plain HTTP at `port`, proxying to every upstream port. */
export const caddyfile = (host, port, upstreamPorts) => `{
	admin off
	auto_https off
	log {
		level ERROR
	}
}

http://${host}:${port} {
	bind ${host}
	reverse_proxy ${upstreamPorts.map((p) => `${host}:${p}`).join(" ")} {
		lb_policy round_robin
		transport http {
			keepalive 60s
			keepalive_idle_conns 128
		}
	}
}
`

/** The command line and environment that run it with `file` as its config. */
export const caddyCommand = (file) => ({
  args: ["run", "--config", file, "--adapter", "caddyfile"],
  env: { GOMAXPROCS: "1", XDG_DATA_HOME: path.dirname(file), XDG_CONFIG_HOME: path.dirname(file) },
})
