/**
 * Test support: the admin API's Prometheus text, parsed. A series is named by its metric name and
 * its exact label set; reading one that is absent fails the test (a missing series is never read
 * as 0). `before` values of counters may be absent (no request of that kind yet in this process):
 * `countBefore` says so only after parsing the scrape and finding no such series.
 */
import { assert } from "@effect/vitest"
import { Effect } from "effect"

export interface Sample {
  readonly name: string
  readonly labels: Readonly<Record<string, string>>
  readonly value: number
}

export interface Scrape {
  readonly text: string
  readonly samples: ReadonlyArray<Sample>
  /** `# TYPE` by metric family name. */
  readonly types: ReadonlyMap<string, string>
}

const unescape = (s: string) => s.replace(/\\(["\\n])/g, (_, c: string) => (c === "n" ? "\n" : c))

/** Parses Prometheus text format 0.0.4 (the subset PrometheusMetrics writes). */
export const parsePrometheus = (text: string): Scrape => {
  const samples: Array<Sample> = []
  const types = new Map<string, string>()
  for (const line of text.split("\n")) {
    if (line === "") continue
    if (line.startsWith("# TYPE ")) {
      const [name, type] = line.slice(7).split(" ")
      types.set(name, type)
      continue
    }
    if (line.startsWith("#")) continue
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line)
    if (m === null) return assert.fail(`not a Prometheus sample line: ${line}`)
    const labels: Record<string, string> = {}
    const body = m[2] ?? ""
    const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?/g
    let at = 0
    for (let l = re.exec(body); l !== null; l = re.exec(body)) {
      labels[l[1]] = unescape(l[2])
      at = re.lastIndex
    }
    if (at !== body.length) return assert.fail(`cannot parse the labels of: ${line}`)
    samples.push({ name: m[1], labels, value: Number(m[3]) })
  }
  return { text, samples, types }
}

const sameLabels = (a: Readonly<Record<string, string>>, b: Readonly<Record<string, string>>) => {
  const ka = Object.keys(a)
  return ka.length === Object.keys(b).length && ka.every((k) => b[k] === a[k])
}

const describe = (name: string, labels: Readonly<Record<string, string>>) =>
  `${name}{${Object.entries(labels).map(([k, v]) => `${k}="${v}"`).join(",")}}`

/** The samples of metric `name` whose labels include every label given. */
export const samplesOf = (scrape: Scrape, name: string, labels: Readonly<Record<string, string>> = {}): Array<Sample> =>
  scrape.samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))

/** Whether the series with exactly these labels is present. */
export const hasSeries = (scrape: Scrape, name: string, labels: Readonly<Record<string, string>> = {}): boolean =>
  scrape.samples.some((s) => s.name === name && sameLabels(s.labels, labels))

/** The value of the series with exactly these labels; fails the test when it is absent. */
export const series = (scrape: Scrape, name: string, labels: Readonly<Record<string, string>> = {}): number => {
  const found = scrape.samples.find((s) => s.name === name && sameLabels(s.labels, labels))
  if (found !== undefined) return found.value
  const others = samplesOf(scrape, name).map((s) => describe(s.name, s.labels))
  return assert.fail(`series ${describe(name, labels)} is absent (${name} has: ${others.join(", ") || "no series"})`)
}

/** Fails the test when the series with exactly these labels is present. */
export const assertAbsent = (scrape: Scrape, name: string, labels: Readonly<Record<string, string>> = {}): void => {
  assert.isFalse(hasSeries(scrape, name, labels), `series ${describe(name, labels)} should be absent`)
}

/**
 * A counter's value before the traffic under test: the series' value, or 0 when the scrape
 * provably has no such series (the counter has not been touched in this process yet).
 */
export const countBefore = (scrape: Scrape, name: string, labels: Readonly<Record<string, string>> = {}): number =>
  hasSeries(scrape, name, labels) ? series(scrape, name, labels) : 0

/** How much a counter grew between two scrapes; the series must be present in `after`. */
export const growth = (before: Scrape, after: Scrape, name: string, labels: Readonly<Record<string, string>> = {}): number =>
  series(after, name, labels) - countBefore(before, name, labels)

/** GET /metrics of an admin API on 127.0.0.1, parsed. */
export const scrapeAdmin = (adminPort: number | undefined) =>
  Effect.promise(async () => {
    const res = await fetch(`http://127.0.0.1:${adminPort ?? assert.fail("no admin port")}/metrics`)
    assert.strictEqual(res.status, 200)
    return parsePrometheus(await res.text())
  })
