#!/usr/bin/env node
// Runs the TypeScript sources directly: Node >= 22.18 strips types natively, so there is no build step.
const [major, minor] = process.versions.node.split(".").map(Number)
if (major < 22 || (major === 22 && minor < 19)) {
  console.error(`fibergate needs Node >= 22.19 (this is ${process.version}); run it through npm/npx in the project, which use the pinned Node 24.`)
  process.exit(1)
}
const { main } = await import("../src/cli/main.ts")
main()
