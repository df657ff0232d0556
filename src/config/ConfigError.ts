import * as Schema from "effect/Schema"

/** One thing wrong with a config: where (file, line, path inside it) and what was expected. */
export const ConfigProblem = Schema.Struct({
  path: Schema.String,
  message: Schema.String,
  line: Schema.optionalKey(Schema.Number),
  column: Schema.optionalKey(Schema.Number)
})
export type ConfigProblem = typeof ConfigProblem.Type

/**
 * A config that cannot be used. `problems` lists every error found, each with its path inside
 * the file (`servers[0].routes[2].upstrem`); `message` renders them one per line as
 * `file:line:column: path: what is wrong`.
 */
export class ConfigError extends Schema.TaggedError<ConfigError>()("ConfigError", {
  source: Schema.String,
  problems: Schema.Array(ConfigProblem)
}) {
  override get message(): string {
    return this.problems.map((p) => formatProblem(this.source, p)).join("\n")
  }
}

/** Renders a path as users write it: `servers[0].routes[2].upstream`. */
export const formatPath = (path: ReadonlyArray<PropertyKey>): string =>
  path.reduce<string>((acc, seg) =>
    typeof seg === "number" ? `${acc}[${seg}]` : acc === "" ? String(seg) : `${acc}.${String(seg)}`, "")

export const formatProblem = (source: string, p: ConfigProblem): string => {
  const where = p.line === undefined ? source : `${source}:${p.line}:${p.column ?? 1}`
  return p.path === "" ? `${where}: ${p.message}` : `${where}: ${p.path}: ${p.message}`
}
