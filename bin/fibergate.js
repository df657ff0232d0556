#!/usr/bin/env -S node --max-semi-space-size=8
// The V8 flag above caps the young generation at 8 MB per semi-space (Node 24 picks a larger
// one on big machines): measured with bench/, it cut peak RSS under load from ~365 MB to
// ~260 MB with the same req/s and a slightly lower p99. `npm start`, `npx fibergate` and the
// bench all run this file through its shebang, so the flag is set in one place.
// In the repository it runs the TypeScript sources directly (Node >= 22.18 strips types, so
// development needs no build); an installed package has no sources (Node does not strip types
// under node_modules), only what `npm pack` built: it runs the bundle dist/cli/fibergate.js,
// which starts in about 75 MB of RSS against about 120 MB for the same code as separate modules
// (README, "Footprint"). FG_BUNDLE=1 runs the bundle in the repository too (after
// `npm run build`), as the bench does (not a FIBERGATE_* name: those override config keys).
const [major, minor] = process.versions.node.split(".").map(Number)
if (major < 22 || (major === 22 && minor < 19)) {
  console.error(`fibergate needs Node >= 22.19 (this is ${process.version}); run it through npm/npx in the project, which use the pinned Node 24.`)
  process.exit(1)
}
// SIGHUP means "reload" to a running gateway. Until the gateway has installed its reload
// handler (after loading modules and binding), the default action would kill the process, so
// a reload sent to a starting worker is ignored instead: it reads the config fresh anyway.
process.on("SIGHUP", () => {})
import { existsSync } from "node:fs"
const sources = new URL("../src/cli/main.ts", import.meta.url)
const bundle = new URL("../dist/cli/fibergate.js", import.meta.url)
const { main } = await import(existsSync(sources) && process.env.FG_BUNDLE !== "1" ? sources.href : bundle.href)
main()
