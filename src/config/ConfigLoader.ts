/**
 * Turns text (a YAML file) or a plain value into a validated `Config`, with every problem
 * reported as file, line, path and what was expected. Pure apart from reading the file.
 */
import type { ConfigCheck } from "./ConfigChecks.ts"
import * as Effect from "effect/Effect"
import * as Result from "effect/Result"
import * as Schema from "effect/Schema"
import * as SchemaIssue from "effect/SchemaIssue"
import { readFile } from "node:fs/promises"
import { isMap, isPair, isScalar, isSeq, LineCounter, parseDocument, type Document } from "yaml"
import { ConfigError, formatPath, type ConfigProblem } from "./ConfigError.ts"
import { Config } from "./Schema.ts"
import { tlsFilesCheck } from "./TlsFilesCheck.ts"

const decode = Schema.decodeUnknownResult(Config)
const formatter = SchemaIssue.makeFormatterStandardSchemaV1()

const humanMessage = (message: string): string =>
  message === "Expected no excess property" ? "Unknown key" : message === "Missing key" ? "Missing required key" : message

interface DecodeOptions {
  readonly lineOf?: (path: ReadonlyArray<PropertyKey>) => { line: number; column: number } | undefined
  /** Checks beyond the Schema (see ConfigChecks), run on a config that decoded. */
  readonly checks?: ReadonlyArray<ConfigCheck> | undefined
}

/** Decodes a raw value (already parsed from YAML or given by a library user) into a `Config`. */
export const decodeConfig = (raw: unknown, source: string, located: DecodeOptions = {}): Result.Result<Config, ConfigError> => {
  const result = decode(raw, { onExcessProperty: "error", errors: "all" })
  if (Result.isSuccess(result)) {
    // The TLS files are checked for every config, the gateway's own checks after them.
    const found = [...tlsFilesCheck(result.success), ...(located.checks ?? []).flatMap((check) => check(result.success))]
    if (found.length === 0) return Result.succeed(result.success)
    return Result.fail(new ConfigError({
      source,
      problems: found.map((p): ConfigProblem => ({ path: formatPath(p.path), message: p.message, ...(located.lineOf?.(p.path) ?? {}) }))
    }))
  }
  const problems = formatter(result.failure.issue).issues.map((issue): ConfigProblem => {
    const path = (issue.path ?? []).map((p) => (typeof p === "object" && p !== null ? p.key : p)) as Array<PropertyKey>
    const pos = located.lineOf?.(path)
    return { path: formatPath(path), message: humanMessage(issue.message), ...(pos ?? {}) }
  })
  return Result.fail(new ConfigError({ source, problems }))
}

/** Finds where a path points in the YAML source: the key itself when present, else its nearest parent. */
const locate = (doc: Document, counter: LineCounter) => (path: ReadonlyArray<PropertyKey>) => {
  let node: unknown = doc.contents
  let offset: number | undefined = (node as { range?: [number] } | null)?.range?.[0]
  for (const seg of path) {
    if (isMap(node)) {
      const pair = node.items.find((p) => isPair(p) && isScalar(p.key) && String(p.key.value) === String(seg))
      if (pair === undefined) break
      offset = (pair.key as { range?: [number] }).range?.[0] ?? offset
      node = pair.value
    } else if (isSeq(node) && typeof seg === "number") {
      node = node.items[seg]
      offset = (node as { range?: [number] } | undefined)?.range?.[0] ?? offset
    } else break
  }
  if (offset === undefined) return undefined
  const { line, col } = counter.linePos(offset)
  return { line, column: col }
}

/**
 * `FIBERGATE_WORKERS=2` sets `workers`; a double underscore reaches into a section
 * (`FIBERGATE_LOG__LEVEL=debug` sets `log.level`). Values are read as YAML scalars.
 * Only scalars may be overridden: an override never replaces a list or a section.
 */
export const applyEnvOverrides = (
  raw: unknown,
  env: Record<string, string | undefined>
): Result.Result<{ readonly value: unknown; readonly setBy: ReadonlyMap<string, string> }, ReadonlyArray<ConfigProblem>> => {
  const problems: Array<ConfigProblem> = []
  const setBy = new Map<string, string>()
  const root: Record<string, unknown> = typeof raw === "object" && raw !== null && !Array.isArray(raw) ? { ...raw } : {}
  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith("FIBERGATE_") || value === undefined || name === "FIBERGATE_CONFIG") continue
    const keys = name.slice("FIBERGATE_".length).toLowerCase().split("__")
    let target: Record<string, unknown> = root
    for (const key of keys.slice(0, -1)) {
      const next = target[key]
      const copy = typeof next === "object" && next !== null && !Array.isArray(next) ? { ...next } : next === undefined ? {} : undefined
      if (copy === undefined) {
        problems.push({ path: `env ${name}`, message: `${key} is not a section` })
        target = {}
        break
      }
      target[key] = copy
      target = copy as Record<string, unknown>
    }
    const last = keys[keys.length - 1]
    const current = target[last]
    if (typeof current === "object" && current !== null) {
      problems.push({ path: `env ${name}`, message: `${keys.join(".")} is a section or list; only scalar keys can be overridden` })
      continue
    }
    const parsed = parseDocument(value).toJS()
    target[last] = parsed === null ? value : parsed
    setBy.set(formatPath(keys), name)
  }
  return problems.length > 0 ? Result.fail(problems) : Result.succeed({ value: root, setBy })
}

/**
 * Parses YAML text and decodes it, with environment overrides applied.
 *
 * @example
 * const result = parseConfigText("servers: []\nupstreams: {}\n", "inline.yaml", {})
 */
export const parseConfigText = (
  text: string,
  source: string,
  env: Record<string, string | undefined>,
  checks?: ReadonlyArray<ConfigCheck>
): Result.Result<Config, ConfigError> => {
  const counter = new LineCounter()
  const doc = parseDocument(text, { lineCounter: counter, prettyErrors: false, uniqueKeys: true })
  if (doc.errors.length > 0) {
    return Result.fail(new ConfigError({
      source,
      problems: doc.errors.map((e) => {
        const pos = counter.linePos(e.pos[0])
        return { path: "", message: `YAML: ${e.message.split("\n")[0]}`, line: pos.line, column: pos.col }
      })
    }))
  }
  const withEnv = applyEnvOverrides(doc.toJS(), env)
  if (Result.isFailure(withEnv)) return Result.fail(new ConfigError({ source, problems: withEnv.failure }))
  const { setBy, value } = withEnv.success
  const decoded = decodeConfig(value, source, { lineOf: locate(doc, counter), checks })
  if (Result.isSuccess(decoded) || setBy.size === 0) return decoded
  // A value that came from the environment has no line in the file: name the variable instead.
  const problems = decoded.failure.problems.map((p): ConfigProblem => {
    for (const [path, name] of setBy) {
      if (p.path === path || p.path.startsWith(`${path}.`) || p.path.startsWith(`${path}[`)) {
        return { path: p.path, message: `${p.message} (set by ${name})` }
      }
    }
    return p
  })
  return Result.fail(new ConfigError({ source, problems }))
}

/** Reads and decodes a config file. Fails with `ConfigError` (an unreadable file is one too). */
export const loadConfigFile = Effect.fnUntraced(function*(path: string, env: Record<string, string | undefined>) {
  const text = yield* Effect.tryPromise({
    try: () => readFile(path, "utf8"),
    catch: (e) => new ConfigError({ source: path, problems: [{ path: "", message: `Cannot read the file: ${(e as Error).message}` }] })
  })
  return yield* Effect.fromResult(parseConfigText(text, path, env))
})
