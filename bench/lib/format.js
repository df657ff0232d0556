// Numbers as the report prints them, and its markdown tables.

/** The median of the finite values, null when there are none. */
export const median = (xs) => {
  const v = xs.filter((x) => x !== null && Number.isFinite(x)).sort((a, b) => a - b)
  if (v.length === 0) return null
  const m = Math.floor(v.length / 2)
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2
}
export const fmtInt = (n) => (n === null ? "–" : Math.round(n).toLocaleString("en-US"))
export const fmtMs = (ms) => (ms === null ? "–" : ms < 1 ? `${(ms * 1000).toFixed(0)} µs` : `${ms.toFixed(2)} ms`)
export const fmtMB = (kb) => (kb ? (kb / 1024).toFixed(1) : "–")
export const fmtRatio = (a, b) => (a && b ? `${(a / b).toFixed(2)}x` : "–")
/** A fraction as a percentage, one decimal: -0.123 -> "-12.3%". */
export const fmtPct = (x) => `${(x * 100).toFixed(1)}%`
/** The same with a "+" on growth: 0.05 -> "+5.0%". */
export const fmtSignedPct = (x) => `${x >= 0 ? "+" : ""}${fmtPct(x)}`

/**
 * A markdown table's header and separator lines: `columns` are the titles, `align` one letter a
 * column ("l" left, "r" right).
 */
export const tableHead = (columns, align) => [`| ${columns.join(" | ")} |`, `| ${[...align].map((a) => (a === "r" ? "---:" : "---")).join(" | ")} |`]

/** A markdown table row. */
export const tableRow = (cells) => `| ${cells.join(" | ")} |`
