// Idle RSS of `fibergate run` on the shipped config/fibergate.yaml, the config issue 13's idle
// target is stated for (the main peer runs the bench's 53-route config, which holds more).
// Only the addresses change: the listener and the admin API on free loopback ports, the one
// upstream endpoint at the bench's upstream. Read IDLE_READ_MS after the gateway is ready, as
// for the peers.
import fs from "node:fs"
import path from "node:path"
import { sleep, stopChild } from "../lib/children.js"
import { fmtMB } from "../lib/format.js"
import { freePort } from "../lib/net.js"
import { treeRss } from "../lib/procfs.js"
import { HOST, ROOT } from "../lib/settings.js"
import { startFibergateYaml } from "../peers/fibergate.js"
import { IDLE_READ_MS } from "../peers/start.js"

/** The shipped config with the bench's addresses; fails when a line it rewrites is gone. */
export function shippedConfig(port, adminPort, upstreamPort) {
  const text = fs.readFileSync(path.join(ROOT, "config", "fibergate.yaml"), "utf8")
  const edits = [
    [/listen: 127\.0\.0\.1:9901/, `listen: ${HOST}:${adminPort}`],
    [/listen: 0\.0\.0\.0:8080/, `listen: ${HOST}:${port}`],
    [/url: "http:\/\/127\.0\.0\.1:3000"/, `url: "http://${HOST}:${upstreamPort}"`],
    [/access_log: true/, "access_log: false"]
  ]
  return edits.reduce((t, [from, to]) => {
    if (!from.test(t)) throw new Error(`config/fibergate.yaml has no ${from}; update bench/measure/shipped-idle.js`)
    return t.replace(from, to)
  }, text)
}

/** Resolves { rssKb } (3 starts, the median), or { error }. */
export async function shippedIdle(ctx) {
  const samples = []
  try {
    for (let i = 0; i < 3; i++) {
      const port = await freePort()
      const child = await startFibergateYaml(`shipped-${i}`, "fibergate (shipped config)", ctx.nodeBin, ctx.tmpDir, (adminPort) => shippedConfig(port, adminPort, ctx.upstreamPorts[0]), ctx.fdRaise)
      await sleep(IDLE_READ_MS)
      samples.push(treeRss(child.pid))
      await stopChild(child)
    }
  } catch (e) {
    return { error: e.message.split("\n")[0] }
  }
  samples.sort((a, b) => a - b)
  console.log(`bench: fibergate idle RSS on config/fibergate.yaml: ${samples.map(fmtMB).join(", ")} MB`)
  return { rssKb: samples[1], samplesKb: samples }
}
