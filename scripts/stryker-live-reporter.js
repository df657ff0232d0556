/**
 * A Stryker reporter that appends each surviving or uncovered mutant to
 * reports/mutants-live.txt as soon as it is tested, so that a long whole-suite run can be worked
 * on (tests written for its survivors) before it ends. Lines read like `npm run mutants`:
 * `file:line:col Status Mutator: "original" => "replacement"`. It also keeps
 * reports/mutants-tally.json: each file's count of mutants by status so far.
 */
import { appendFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs"

const OUT = "reports/mutants-live.txt"
// Every tested mutant's status counted per file, rewritten after each one: a run stopped before
// its end (and its JSON report) still gives each file's score so far.
const TALLY = "reports/mutants-tally.json"
const tally = {}
const sources = new Map()

const originalOf = (fileName, location) => {
  let lines = sources.get(fileName)
  if (lines === undefined) sources.set(fileName, lines = readFileSync(fileName, "utf8").split("\n"))
  const { start, end } = location
  if (start.line === end.line) return lines[start.line - 1].slice(start.column - 1, end.column - 1)
  return [lines[start.line - 1].slice(start.column - 1), ...lines.slice(start.line, end.line - 1), lines[end.line - 1].slice(0, end.column - 1)].join("\n")
}

class LiveReporter {
  onDryRunCompleted() {
    mkdirSync("reports", { recursive: true })
    writeFileSync(OUT, "")
  }
  onMutantTested(result) {
    const name = result.fileName.startsWith(process.cwd()) ? result.fileName.slice(process.cwd().length + 1) : result.fileName
    const counts = tally[name] ??= {}
    counts[result.status] = (counts[result.status] ?? 0) + 1
    writeFileSync(TALLY, JSON.stringify(tally, null, 2))
    if (result.status !== "Survived" && result.status !== "NoCoverage") return
    const { start } = result.location
    const file = result.fileName.startsWith(process.cwd()) ? result.fileName.slice(process.cwd().length + 1) : result.fileName
    const original = originalOf(result.fileName, result.location).replace(/\s+/g, " ")
    appendFileSync(OUT, `${file}:${start.line}:${start.column} ${result.status} ${result.mutatorName}: ${JSON.stringify(original)} => ${JSON.stringify(result.replacement.replace(/\s+/g, " "))}\n`)
  }
}
LiveReporter.inject = []

export const strykerPlugins = [{ kind: "Reporter", name: "live", injectableClass: LiveReporter }]
