// Route table scale micro-benchmark: mean ns per `find()` of the compiled router for tables of
// 10, 1,000 and 10,000 routes, for several route mixes, on a request that hits the first-declared
// route, the last-declared route, and one that matches nothing.
//
// Run: `npx node bench/routes.ts` (Node 24 strips the types); `npm run bench` runs it too unless
// BENCH_ROUTES=0. See bench/README.md. Knobs: BENCH_ROUTES_MS (time budget per case, default 300),
// BENCH_ROUTES_MIXES (comma-separated subset of prefix,exact,host,regex,mix).
import { compileRouter, type RouteMatchSpec, type RouteRequest, type Router } from "../src/routing/Router.ts"

interface RouteDef {
  readonly match: RouteMatchSpec
  readonly value: number
}

interface Mix {
  readonly name: string
  readonly description: string
  readonly sizes: ReadonlyArray<number>
  /** The requests whose lookup must not grow linearly with the table size (checked and reported). */
  readonly sublinear: ReadonlyArray<string>
  readonly routes: (n: number) => Array<RouteDef>
  /** A request that matches route `i` (and no route declared before it with higher precedence). */
  readonly hit: (i: number, n: number) => RouteRequest
  readonly miss: (n: number) => RouteRequest
}

const noHeaders = (): string | undefined => undefined
const req = (path: string, host = "gw.internal", method = "GET"): RouteRequest => ({ host, path, method, query: "", header: noHeaders })

// The realistic mix, a cycle of 20 kinds: 45% prefix (one with a header condition), 30% exact,
// 10% exact host, 10% wildcard host, 5% regex. Every table size ends on an exact route.
type Kind = "prefix" | "prefix-cond" | "exact" | "host" | "wildcard" | "regex"
const CYCLE: ReadonlyArray<Kind> = [
  "prefix", "exact", "host", "prefix", "wildcard", "exact", "prefix", "regex", "prefix", "exact",
  "prefix", "host", "exact", "prefix", "wildcard", "prefix", "exact", "prefix", "prefix-cond", "exact"
]
const kindOf = (i: number): Kind => CYCLE[i % CYCLE.length]

const mixRoute = (i: number): RouteMatchSpec => {
  switch (kindOf(i)) {
    case "prefix":
      return { path: { prefix: `/svc${i}/api` } }
    case "prefix-cond":
      return { path: { prefix: `/svc${i}/api` }, methods: ["GET", "HEAD"], headers: { "x-tenant": { present: false } } }
    case "exact":
      return { path: { exact: `/svc${i}/health` } }
    case "host":
      return { host: `app${i}.example.com`, path: { prefix: "/" } }
    case "wildcard":
      return { host: `*.t${i}.example.com`, path: { prefix: "/" } }
    case "regex":
      return { path: { regex: `^/r${i}/items/[0-9]+$` } }
  }
}

const mixRequest = (i: number): RouteRequest => {
  switch (kindOf(i)) {
    case "prefix":
    case "prefix-cond":
      return req(`/svc${i}/api/users/42`)
    case "exact":
      return req(`/svc${i}/health`)
    case "host":
      return req("/any/path", `app${i}.example.com`)
    case "wildcard":
      return req("/any/path", `eu.t${i}.example.com`)
    case "regex":
      return req(`/r${i}/items/42`)
  }
}

const numbered = (n: number, f: (i: number) => RouteMatchSpec): Array<RouteDef> => Array.from({ length: n }, (_, i) => ({ match: f(i), value: i }))

const MIXES: ReadonlyArray<Mix> = [
  {
    name: "prefix",
    description: "`prefix: /svc<i>/api`; request `/svc<i>/api/users/42`",
    sizes: [10, 1_000, 10_000],
    sublinear: ["first", "last", "miss"],
    routes: (n) => numbered(n, (i) => ({ path: { prefix: `/svc${i}/api` } })),
    hit: (i) => req(`/svc${i}/api/users/42`),
    miss: () => req("/nothing/here/users/42")
  },
  {
    name: "exact",
    description: "`exact: /svc<i>/health`",
    sizes: [10, 1_000, 10_000],
    sublinear: ["first", "last", "miss"],
    routes: (n) => numbered(n, (i) => ({ path: { exact: `/svc${i}/health` } })),
    hit: (i) => req(`/svc${i}/health`),
    miss: () => req("/nothing/health")
  },
  {
    name: "host",
    description: "one host per route, `host: app<i>.example.com` + `prefix: /`",
    sizes: [10, 1_000, 10_000],
    sublinear: ["first", "last", "miss"],
    routes: (n) => numbered(n, (i) => ({ host: `app${i}.example.com`, path: { prefix: "/" } })),
    hit: (i) => req("/any/path", `app${i}.example.com`),
    miss: () => req("/any/path", "unknown.example.org")
  },
  {
    name: "regex",
    description: "`regex: ^/r<i>/items/[0-9]+$` (linear by design)",
    sizes: [10, 1_000],
    sublinear: [],
    routes: (n) => numbered(n, (i) => ({ path: { regex: `^/r${i}/items/[0-9]+$` } })),
    hit: (i) => req(`/r${i}/items/42`),
    miss: () => req("/nothing/items/42")
  },
  {
    name: "mix",
    description: "45% prefix (some with method/header conditions), 30% exact, 20% host (half `*.` wildcards), 5% regex; no catch-all, so a miss tries every regex",
    sizes: [10, 1_000, 10_000],
    // first and last match before any regex is tried; a miss tries every regex route (5% of them)
    sublinear: ["first", "last"],
    routes: (n) => numbered(n, mixRoute),
    hit: (i) => mixRequest(i),
    miss: () => req("/nothing/here", "eu.unknown.example.org")
  }
]

// ---------------------------------------------------------------------------------------------
// measurement

const budgetMs = Number(process.env.BENCH_ROUTES_MS ?? 300)
if (!(budgetMs > 0)) throw new Error(`BENCH_ROUTES_MS=${process.env.BENCH_ROUTES_MS}: expected a positive number`)
const wanted = (process.env.BENCH_ROUTES_MIXES ?? "").split(",").map((s) => s.trim()).filter(Boolean)
for (const w of wanted) if (!MIXES.some((m) => m.name === w)) throw new Error(`BENCH_ROUTES_MIXES: unknown mix ${w}`)

let sink = 0

/** Runs `iterations` lookups; returns ns per lookup. */
const timeLoop = (router: Router<number>, request: RouteRequest, iterations: number): number => {
  let acc = 0
  const t0 = process.hrtime.bigint()
  for (let k = 0; k < iterations; k++) {
    const v = router.find(request)
    acc += v === undefined ? 1 : v
  }
  const ns = Number(process.hrtime.bigint() - t0)
  sink ^= acc
  return ns / iterations
}

const BATCHES = 5

/** Warms up, calibrates, then returns the median over batches of the mean ns per find(). */
const measure = (router: Router<number>, request: RouteRequest): { ns: number; iterations: number } => {
  // warm-up: at least 20k calls or 30 ms, whichever is more, so the JIT has optimised the path
  let est = timeLoop(router, request, 1_000)
  const warm = Math.max(20_000, Math.ceil(30e6 / Math.max(est, 1)))
  est = timeLoop(router, request, Math.min(warm, 2_000_000))
  // ~1e6 iterations for fast cases, fewer for slow ones, within the time budget
  const perBatch = Math.max(1_000, Math.min(1_000_000, Math.floor((budgetMs * 1e6) / BATCHES / Math.max(est, 1))))
  const samples: Array<number> = []
  for (let b = 0; b < BATCHES; b++) samples.push(timeLoop(router, request, perBatch))
  samples.sort((a, b) => a - b)
  return { ns: samples[Math.floor(BATCHES / 2)], iterations: perBatch * BATCHES }
}

interface Row {
  readonly mix: string
  readonly request: string
  readonly bySize: Map<number, { ns: number; iterations: number }>
}

const rows: Array<Row> = []
const compileMs: Array<{ mix: string; size: number; ms: number }> = []
const t0All = Date.now()

for (const mix of MIXES) {
  if (wanted.length > 0 && !wanted.includes(mix.name)) continue
  const first: Row = { mix: mix.name, request: "first", bySize: new Map() }
  const last: Row = { mix: mix.name, request: "last", bySize: new Map() }
  const miss: Row = { mix: mix.name, request: "miss", bySize: new Map() }
  for (const n of mix.sizes) {
    const routes = mix.routes(n)
    const c0 = process.hrtime.bigint()
    const router = compileRouter(routes)
    compileMs.push({ mix: mix.name, size: n, ms: Number(process.hrtime.bigint() - c0) / 1e6 })
    const cases: Array<[Row, RouteRequest, number | undefined]> = [
      [first, mix.hit(0, n), 0],
      [last, mix.hit(n - 1, n), n - 1],
      [miss, mix.miss(n), undefined]
    ]
    for (const [row, request, expected] of cases) {
      const got = router.find(request)
      if (got !== expected) {
        throw new Error(`${mix.name} n=${n} ${row.request}: find() returned ${got}, expected ${expected} (${request.host}${request.path})`)
      }
      row.bySize.set(n, measure(router, request))
    }
  }
  rows.push(first, last, miss)
}

// ---------------------------------------------------------------------------------------------
// report

const fmtNs = (ns: number | undefined): string => (ns === undefined ? "–" : ns < 10 ? ns.toFixed(1) : ns.toFixed(0))
const sizes = [10, 1_000, 10_000]
const lines: Array<string> = []
lines.push(`Route table scale: mean ns per \`find()\` (median of ${BATCHES} batches, ~${budgetMs} ms per case, same request repeated), Node ${process.version}`)
lines.push("")
lines.push("| mix | request | 10 routes | 1,000 routes | 10,000 routes | ratio 10k/10 | iterations (10k) |")
lines.push("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
const checks: Array<{ mix: string; request: string; ratio: number }> = []
for (const row of rows) {
  const small = row.bySize.get(10)?.ns
  const big = row.bySize.get(10_000)?.ns ?? row.bySize.get(1_000)?.ns
  const bigSize = row.bySize.has(10_000) ? 10_000 : 1_000
  const ratio = small !== undefined && big !== undefined ? big / small : undefined
  const mix = MIXES.find((m) => m.name === row.mix)!
  if (mix.sublinear.includes(row.request) && ratio !== undefined) checks.push({ mix: row.mix, request: row.request, ratio })
  const ratioText = ratio === undefined ? "–" : bigSize === 10_000 ? `${ratio.toFixed(2)}x` : `${ratio.toFixed(1)}x (1k/10)`
  const iters = row.bySize.get(10_000)?.iterations ?? row.bySize.get(1_000)?.iterations
  lines.push(
    `| ${row.mix} | ${row.request} | ${sizes.map((s) => fmtNs(row.bySize.get(s)?.ns)).join(" | ")} | ${ratioText} | ${iters?.toLocaleString("en-US") ?? "–"} |`
  )
}
lines.push("")
for (const mix of MIXES) if (wanted.length === 0 || wanted.includes(mix.name)) lines.push(`- ${mix.name}: ${mix.description}`)
lines.push(`- compile time (ms): ${compileMs.map((c) => `${c.mix}/${c.size} ${c.ms.toFixed(1)}`).join(", ")}`)
if (checks.length > 0) {
  const worst = checks.reduce((a, b) => (b.ratio > a.ratio ? b : a))
  // A linear lookup would take ~1000x longer on a 1000x larger table; allow for cache effects.
  const verdict = worst.ratio < 10 ? "not linear in the table size" : "GROWS WITH THE TABLE SIZE"
  lines.push("")
  lines.push(
    `**prefix/exact/host lookup (and the mix's first/last): ${verdict}** (table 1000x larger, worst time ratio 10k/10 = ${worst.ratio.toFixed(2)}x, ${worst.mix}/${worst.request}; linear would be ~1000x)`
  )
}
lines.push("", `(${((Date.now() - t0All) / 1000).toFixed(1)} s; checksum ${sink})`)
console.log(lines.join("\n"))
