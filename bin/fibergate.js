#!/usr/bin/env -S MALLOC_TOP_PAD_=0 node --max-semi-space-size=8 --no-maglev
// `npm start`, `npx fibergate` and the bench all run this file through its shebang, so what it
// sets is set in one place. Each was measured with bench/ and scratch A/Bs (README, "Footprint"):
// - --max-semi-space-size=8 caps the young generation at 8 MB per semi-space (Node 24 picks a
//   larger one on big machines): peak RSS under load ~365 MB -> ~260 MB, same req/s.
// - --no-maglev: V8's mid-tier compiler; TurboFan still optimizes the hot path. Idle RSS -3 MB,
//   peak under wrk -c50 about -15 MB, req/s within the noise of alternating rounds.
// - MALLOC_TOP_PAD_=0: glibc keeps no slack above the heap top and trims freed memory, as any
//   M_* setting also stops its mmap threshold from growing: idle RSS -5 MB; madvise calls under
//   load 19 instead of 4 in 5 s (strace), nothing measurable in req/s.
// In the repository it runs the TypeScript sources directly (Node >= 22.18 strips types, so
// development needs no build); an installed package has no sources (Node does not strip types
// under node_modules), only what `npm pack` built: it runs the bundle dist/cli/fibergate.js,
// which starts in about 70 MB of RSS against about 110 MB for the same code as separate modules
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
