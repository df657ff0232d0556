#!/usr/bin/env node
// Reads a Stryker JSON report and prints the score per folder and per file, then every
// surviving or uncovered mutant as file:line:col, so the next test to write is one glance away.
//   node scripts/mutants.js [reports/mutation/mutation.json] [path filter]
import { readFileSync } from "node:fs"
import { dirname } from "node:path"

const [reportPath = "reports/mutation/mutation.json", filter = ""] = process.argv.slice(2)
const report = JSON.parse(readFileSync(reportPath, "utf8"))
const detected = new Set(["Killed", "Timeout"])
const counted = new Set(["Killed", "Timeout", "Survived", "NoCoverage"])
const folders = new Map()
const files = []
const open = []
for (const [file, { source, mutants }] of Object.entries(report.files).sort()) {
  const lines = source.split("\n")
  const tally = { detected: 0, total: 0 }
  for (const m of mutants) {
    if (counted.has(m.status)) tally.total++
    if (detected.has(m.status)) tally.detected++
    if ((m.status === "Survived" || m.status === "NoCoverage") && file.includes(filter)) {
      const { line, column } = m.location.start
      const end = m.location.end
      // The mutated span itself: a line often holds several mutants (each operand of an `||`).
      const span = end.line === line ? lines[line - 1].slice(column - 1, end.column - 1) : `${lines[line - 1].slice(column - 1)} …`
      open.push(`${file}:${line}:${column} ${m.status} ${m.mutatorName}: ${JSON.stringify(span.slice(0, 100))}  =>  ${JSON.stringify((m.replacement ?? "").slice(0, 80))}`)
    }
  }
  files.push([file, tally])
  const folder = folders.get(dirname(file)) ?? { detected: 0, total: 0 }
  folder.detected += tally.detected
  folder.total += tally.total
  folders.set(dirname(file), folder)
}
const pct = ({ detected, total }) => total === 0 ? "n/a" : `${(100 * detected / total).toFixed(1)}%`
for (const line of open) console.log(line)
console.log("")
for (const [file, t] of files) if (file.includes(filter)) console.log(`${pct(t).padStart(6)}  ${t.detected}/${t.total}  ${file}`)
console.log("")
for (const [folder, t] of folders) console.log(`${pct(t).padStart(6)}  ${t.detected}/${t.total}  ${folder}`)
