#!/usr/bin/env node
// Runs the TypeScript sources directly: Node >= 22.18 strips types natively, so there is no build step.
const [major, minor] = process.versions.node.split(".").map(Number)
if (major < 22 || (major === 22 && minor < 19)) {
  console.error(`fibergate needs Node >= 22.19 (this is ${process.version}); run it through npm/npx in the project, which use the pinned Node 24.`)
  process.exit(1)
}
// SIGHUP means "reload" to a running gateway. Until the gateway has installed its reload
// handler (after loading modules and binding), the default action would kill the process, so
// a reload sent to a starting worker is ignored instead: it reads the config fresh anyway.
process.on("SIGHUP", () => {})
const { main } = await import("../src/cli/main.ts")
main()
