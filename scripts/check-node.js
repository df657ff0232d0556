// npm scripts run on the Node pinned in devDependencies (package `node`); refuse older runtimes early
// with a clear message rather than failing later inside Effect's Node platform or undici.
const [major, minor] = process.versions.node.split(".").map(Number)
if (major < 22 || (major === 22 && minor < 19)) {
  console.error(`fibergate needs Node >= 22.19, this is ${process.version}. Run it through npm (npm start / npm test), which uses the pinned Node from devDependencies.`)
  process.exit(1)
}
console.log(`node ${process.version}`)
