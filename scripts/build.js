#!/usr/bin/env node
// The package build (`npm run build`, run by `prepack`); development runs src/ and needs none.
//
// 1. tsc emits dist/**/*.js and .d.ts: the library that `import ... from "fibergate"` gets, one
//    file per module, so a consumer's bundler can drop what it does not use.
// 2. esbuild bundles the CLI into dist/cli/fibergate.js (plus chunks loaded on first use, such as
//    the Redis client). The installed `fibergate` command runs this file: one script instead of
//    some 600 ESM modules is measured at about 20 MB less RSS at start (README, "Footprint").
import { spawnSync } from "node:child_process"
import { readFileSync, rmSync } from "node:fs"
import path from "node:path"
import { fileURLToPath } from "node:url"
import * as esbuild from "esbuild"

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..")
const fail = (message) => {
  console.error(`build: ${message}`)
  process.exit(1)
}

rmSync(path.join(ROOT, "dist"), { recursive: true, force: true })
const tsc = spawnSync(process.execPath, [path.join(ROOT, "node_modules/typescript/bin/tsc"), "-p", "tsconfig.build.json"], { cwd: ROOT, stdio: "inherit" })
if (tsc.status !== 0) fail("tsc failed")

/**
 * Two dependencies do work at load that a plain HTTP gateway never needs; the bundle defers it
 * to first use. The build fails if a patched line changes, rather than silently loading it
 * eagerly again.
 * - undici's Client loads its HTTP/2 client at start, and with it node:http2 and node:tls
 *   (about 3 MB of RSS here), though upstreams speak HTTP/1.1 unless `pool.http2` says so.
 * - effect/cli builds an `Intl.Segmenter` at load (ICU's break rules: about 2.6 MB of RSS), used
 *   only to measure help text.
 */
const PATCHES = [
  {
    file: /undici[\\/]lib[\\/]dispatcher[\\/]client\.js$/,
    edits: [["const connectH2 = require('./client-h2.js')", "const connectH2 = (client, socket) => require('./client-h2.js')(client, socket)"]]
  },
  {
    file: /effect[\\/]dist[\\/]cli[\\/]CliOutput\.js$/,
    edits: [
      ["const graphemeSegmenter = /*#__PURE__*/new Intl.Segmenter(undefined, {", "let segmenter;\nconst graphemeSegmenter = () => segmenter ??= new Intl.Segmenter(undefined, {"],
      ["} of graphemeSegmenter.segment(", "} of graphemeSegmenter().segment("]
    ]
  }
]
const patched = new Set()
const deferLoadWork = {
  name: "defer-load-work",
  setup(build) {
    for (const { file, edits } of PATCHES) {
      build.onLoad({ filter: file }, (args) => {
        let source = readFileSync(args.path, "utf8")
        for (const [from, to] of edits) {
          if (!source.includes(from)) fail(`${args.path} no longer has \`${from}\`; update scripts/build.js`)
          source = source.replace(from, to)
        }
        patched.add(file)
        return { contents: source, loader: "js" }
      })
    }
  }
}

await esbuild.build({
  absWorkingDir: ROOT,
  entryPoints: { fibergate: "src/cli/main.ts" },
  outdir: "dist/cli",
  chunkNames: "chunks/[name]-[hash]",
  bundle: true,
  splitting: true,
  format: "esm",
  platform: "node",
  target: "node22",
  minify: true,
  legalComments: "none",
  // undici's own switch for builds that leave out its experimental Milo parser (Node's
  // bundled undici is built with it too).
  define: { esbuildDetection: "true" },
  // Bundled CommonJS (undici, yaml's dependencies) calls require: give the ESM bundle one.
  banner: { js: "import{createRequire as __fgRequire}from'node:module';const require=__fgRequire(import.meta.url);" },
  plugins: [deferLoadWork],
  // The Redis client is loaded only by a config with a Redis rate limit, so bundling it would
  // save nothing at start; left as the installed dependency, it keeps the tarball smaller.
  external: ["redis", "@redis/*"],
  logLevel: "warning"
}).catch(() => fail("esbuild failed"))
for (const { file } of PATCHES) if (!patched.has(file)) fail(`no bundled file matched ${file}; update scripts/build.js`)
