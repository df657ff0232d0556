// The tools the bench needs (installed with apt-get when missing), their versions, the Node the
// peers run on, and the machine description at the top of the report.
import { spawnSync } from "node:child_process"
import fs from "node:fs"
import os from "node:os"
import path from "node:path"
import { die, ROOT, settings } from "./settings.js"

export function which(bin) {
  const dirs = (process.env.PATH ?? "").split(":").concat(["/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/sbin", "/usr/local/bin"])
  for (const d of dirs) {
    const p = path.join(d, bin)
    try {
      fs.accessSync(p, fs.constants.X_OK)
      return p
    } catch {}
  }
  return null
}

/** Installs what is missing (Debian packages, as root) and returns the binaries: { wrk, nginx, caddy, haproxy }. */
export function ensureTools() {
  const wanted = [
    ["wrk", "wrk"],
    ["nginx", "nginx-light"],
    ["h2load", "nghttp2-client"],
    ...(settings.peers.includes("caddy") ? [["caddy", "caddy"]] : []),
    ...(settings.peers.includes("haproxy") ? [["haproxy", "haproxy"]] : []),
  ]
  const missing = wanted.filter(([bin]) => !which(bin)).map(([, pkg]) => pkg)
  if (missing.length > 0) {
    console.log(`bench: missing tools, installing Debian package(s): ${missing.join(" ")}`)
    if (process.getuid?.() !== 0) die(`not root; install them yourself: apt-get install -y ${missing.join(" ")}`)
    const hadPolicy = fs.existsSync("/usr/sbin/policy-rc.d")
    const aptEnv = { ...process.env, DEBIAN_FRONTEND: "noninteractive" }
    const run = (args) => {
      console.log(`bench: $ apt-get ${args.join(" ")}`)
      const r = spawnSync("apt-get", args, { stdio: "inherit", env: aptEnv, timeout: 600_000 })
      if (r.status !== 0) die(`apt-get ${args.join(" ")} failed (status ${r.status})`)
    }
    run(["update"])
    run(["install", "-y", "--no-install-recommends", ...missing])
    if (missing.includes("nginx-light") && !hadPolicy) {
      // without policy-rc.d the package starts a system nginx on :80; we don't want it running
      spawnSync("invoke-rc.d", ["nginx", "stop"], { stdio: "ignore", timeout: 30_000 })
    }
    // the same for the system services the caddy and haproxy packages start
    for (const service of ["caddy", "haproxy"]) if (missing.includes(service) && !hadPolicy) spawnSync("invoke-rc.d", [service, "stop"], { stdio: "ignore", timeout: 30_000 })
    console.log(`bench: installed ${missing.join(" ")}`)
  }
  for (const [bin] of wanted) if (!which(bin)) die(`${bin} still not found after install`)
  return { wrk: which("wrk"), nginx: which("nginx"), caddy: which("caddy"), haproxy: which("haproxy") }
}

export function toolVersion(cmd, args) {
  const r = spawnSync(cmd, args, { encoding: "utf8", timeout: 10_000 })
  return `${r.stdout ?? ""}${r.stderr ?? ""}`
}

/** The Node the Node peers run on: this one if it is >= 24, else the pinned one in node_modules. */
export function peerNode() {
  const major = Number(process.versions.node.split(".")[0])
  if (major >= 24) return process.execPath
  const pinned = path.join(ROOT, "node_modules", "node", "bin", "node")
  if (fs.existsSync(pinned)) {
    console.warn(`bench: running on Node ${process.version}; peers use the pinned Node at ${pinned}. Prefer \`npm run bench\`.`)
    return pinned
  }
  console.warn(`bench: running on Node ${process.version} (< 24); run it with \`npm run bench\` for the pinned Node.`)
  return process.execPath
}

export function machineInfo(tools, nodeBin) {
  let cpu = "?"
  try {
    cpu = /^model name\s*:\s*(.+)$/m.exec(fs.readFileSync("/proc/cpuinfo", "utf8"))?.[1] ?? "?"
  } catch {}
  const nodeVersion = spawnSync(nodeBin, ["--version"], { encoding: "utf8" }).stdout.trim()
  const wrkVersion = /wrk (\S+)/.exec(toolVersion(tools.wrk, ["-v"]))?.[1] ?? "?"
  return {
    date: new Date().toISOString(),
    cpu,
    cores: os.availableParallelism(),
    memGiB: (os.totalmem() / 1024 ** 3).toFixed(1),
    kernel: `${os.type()} ${os.release()}`,
    node: nodeVersion,
    nginx: tools.nginxVersion,
    wrk: wrkVersion,
  }
}
