import * as Schema from "effect/Schema"
import * as SchemaTransformation from "effect/SchemaTransformation"

const units = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 } as const
const pattern = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/

/**
 * Parses a config duration (`250ms`, `5s`, `1.5m`, `1h`) into milliseconds,
 * or `undefined` when the text is not a duration.
 *
 * @example
 * parseDuration("1.5s") // => 1500
 */
export const parseDuration = (text: string): number | undefined => {
  const m = pattern.exec(text)
  return m === null ? undefined : Math.round(Number(m[1]) * units[m[2] as keyof typeof units])
}

/** Renders milliseconds back in the largest unit that keeps it whole, so `/config` reads like the file. */
export const formatDuration = (ms: number): string => {
  if (ms % 3_600_000 === 0 && ms > 0) return `${ms / 3_600_000}h`
  if (ms % 60_000 === 0 && ms > 0) return `${ms / 60_000}m`
  if (ms % 1000 === 0 && ms > 0) return `${ms / 1000}s`
  return `${ms}ms`
}

/**
 * A duration written as a string in the config, decoded to milliseconds.
 *
 * @example
 * Schema.decodeUnknownSync(DurationMs)("250ms") // => 250
 */
export const DurationMs = Schema.String.pipe(
  Schema.check(Schema.isPattern(pattern, { message: "Expected a duration such as 250ms, 5s, 1m or 1h" })),
  Schema.decodeTo(
    Schema.Number,
    SchemaTransformation.transform({
      decode: (text: string) => parseDuration(text) ?? 0,
      encode: formatDuration
    })
  )
)
