/**
 * The config's JSON Schema: the shipped `config/fibergate.schema.json` is what `fibergate schema`
 * prints; every shipped config passes it and the gateway's own decoder, every README example
 * passes it; configs the gateway refuses for their shape are refused by it too. Every key is
 * described, and the defaults it states are the ones the gateway applies.
 */
import { assert, describe, it } from "@effect/vitest"
import { Ajv2020 } from "ajv/dist/2020.js"
import { Result } from "effect"
import { readdirSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { parse } from "yaml"
import { workerCount } from "../../src/cli/main.ts"
import { upstreamTlsOptions } from "../../src/config/CertificateFiles.ts"
import { decodeConfig } from "../../src/config/ConfigLoader.ts"
import { configJsonSchema } from "../../src/config/JsonSchema.ts"
import type { Config } from "../../src/config/Schema.ts"
import { DEFAULT_ALPN } from "../../src/config/TlsSchema.ts"
import { DEFAULT_DRAIN_TIMEOUT_MS } from "../../src/listener/Listeners.ts"
import { limitDefaults, WEBSOCKET_IDLE_TIMEOUT_MS } from "../../src/proxy/RouteTable.ts"
import { compileCircuitPolicy } from "../../src/resilience/Circuit.ts"
import { compileOutlierPolicy } from "../../src/resilience/Outlier.ts"
import { parseStatusRange } from "../../src/resilience/Probe.ts"
import { compileRetryBudget } from "../../src/resilience/RetryBudget.ts"
import { compileRetryPolicy } from "../../src/resilience/RetryPolicy.ts"
import { healthCheckDefaults } from "../../src/upstream/HealthChecks.ts"
import { poolDefaults } from "../../src/upstream/UpstreamGroup.ts"
import { ROOT } from "../support/cli.ts"

const shipped = JSON.parse(readFileSync(join(ROOT, "config", "fibergate.schema.json"), "utf8")) as Record<string, unknown>
const validate = new Ajv2020({ allErrors: true, strict: true, allowUnionTypes: true }).compile(shipped)

const minimal = {
  servers: [{ name: "web", listen: "127.0.0.1:8080", routes: [{ id: "all", upstream: "app" }] }],
  upstreams: { app: { endpoints: [{ url: "http://127.0.0.1:3000" }] } }
}

const readmeBlocks = (): Array<string> =>
  [...readFileSync(join(ROOT, "README.md"), "utf8").matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1])

const passes = (config: unknown) => ({ schema: validate(config), errors: validate.errors, gateway: Result.isSuccess(decodeConfig(config, "test")) })

type JsonSchema = { readonly [keyword: string]: unknown }
type Path = ReadonlyArray<string | number>

const asSchema = (value: unknown): JsonSchema | undefined =>
  typeof value === "object" && value !== null && !Array.isArray(value) ? value as JsonSchema : undefined

/** Every property of every object schema in the document, with where it is, whatever holds it. */
const everyProperty = (root: JsonSchema): Array<{ readonly where: string; readonly schema: JsonSchema }> => {
  const found: Array<{ readonly where: string; readonly schema: JsonSchema }> = []
  const visit = (value: unknown, where: string): void => {
    const schema = asSchema(value)
    if (schema === undefined) return
    for (const [name, property] of Object.entries(asSchema(schema.properties) ?? {})) {
      found.push({ where: `${where}.${name}`, schema: asSchema(property) ?? {} })
      visit(property, `${where}.${name}`)
    }
    for (const [name, definition] of Object.entries(asSchema(schema.$defs) ?? {})) visit(definition, `${where}.$defs.${name}`)
    for (const [name, property] of Object.entries(asSchema(schema.patternProperties) ?? {})) visit(property, `${where}[/${name}/]`)
    for (const keyword of ["anyOf", "oneOf", "allOf", "prefixItems"]) {
      const members = schema[keyword]
      if (Array.isArray(members)) members.forEach((member, i) => visit(member, `${where}(${keyword} ${i})`))
    }
    visit(schema.items, `${where}[]`)
    visit(schema.additionalProperties, `${where}{}`)
    visit(schema.not, `${where}(not)`)
  }
  visit(root, "config")
  return found
}

/** The schema of the key at a config path: through properties, items, additionalProperties and the branches of a union. */
const schemaAt = (root: JsonSchema, path: Path): JsonSchema | undefined => {
  const step = (schema: JsonSchema, key: string | number): JsonSchema | undefined => {
    const ref = schema.$ref
    if (typeof ref === "string") return step(asSchema(asSchema(root.$defs)?.[ref.replace("#/$defs/", "")]) ?? {}, key)
    const direct = typeof key === "number"
      ? asSchema(schema.items)
      : asSchema(asSchema(schema.properties)?.[key]) ?? asSchema(schema.additionalProperties)
    if (direct !== undefined) return direct
    const branches = [schema.anyOf, schema.oneOf].flatMap((members) => Array.isArray(members) ? members : [])
    for (const branch of branches) {
      const found = asSchema(branch) === undefined ? undefined : step(branch as JsonSchema, key)
      if (found !== undefined) return found
    }
    return undefined
  }
  let schema: JsonSchema | undefined = root
  for (const key of path) schema = schema === undefined ? undefined : step(schema, key)
  return schema
}

const getIn = (value: unknown, path: Path): unknown =>
  path.reduce<unknown>((v, key) => (v as Record<string | number, unknown> | undefined)?.[key], value)

/** `base` with `value` at `path`, the objects on the way created as needed. */
const withValueAt = (path: Path, value: unknown, base: object = minimal): Record<string, unknown> => {
  const config = structuredClone(base) as Record<string, unknown>
  let at: Record<string | number, unknown> = config
  for (const key of path.slice(0, -1)) {
    if (typeof at[key] !== "object" || at[key] === null) at[key] = {}
    at = at[key] as Record<string | number, unknown>
  }
  at[path[path.length - 1]] = value
  return config
}

const decoded = (config: unknown): Config => {
  const result = decodeConfig(config, "test")
  if (Result.isFailure(result)) throw new Error(`${JSON.stringify(config)}: ${result.failure.message}`)
  return result.success
}

const route = ["servers", 0, "routes", 0] as const
const upstream = ["upstreams", "app"] as const

/**
 * Keys whose default the gateway takes from a constant of its own (the one its `??` reads):
 * the schema's default, decoded in place, must be that constant.
 */
const constantDefaults: ReadonlyArray<readonly [Path, unknown]> = [
  ...Object.entries(limitDefaults).map(([key, value]): readonly [Path, unknown] => [["servers", 0, "limits", key], value]),
  ...Object.entries(poolDefaults).map(([key, value]): readonly [Path, unknown] => [[...upstream, "pool", key], value]),
  ...Object.entries(healthCheckDefaults).map(([key, value]): readonly [Path, unknown] => [[...upstream, "health_check", key], value]),
  [[...route, "websocket", "idle_timeout"], WEBSOCKET_IDLE_TIMEOUT_MS],
  [["shutdown", "drain_timeout"], DEFAULT_DRAIN_TIMEOUT_MS]
]

/**
 * Keys whose default the gateway applies where it compiles their section: that section with
 * the key set to the schema's default must compile as it does without the key.
 */
const compiledDefaults: ReadonlyArray<{
  readonly section: Path
  readonly key: Path
  readonly compile: (section: any) => unknown
  /** The config the section goes in, when `minimal` cannot hold it. */
  readonly base?: object
}> = [
  ...[["attempts"], ["buffer_bytes"], ["backoff", "base"], ["backoff", "max"], ["backoff", "jitter"], ["on"], ["methods"]].map((key) => ({
    section: [...route, "retry"],
    key,
    compile: (retry: Config["servers"][number]["routes"][number]["retry"]) => {
      const { schedule: _, ...policy } = compileRetryPolicy(retry)!
      return policy
    }
  })),
  ...["consecutive_failures", "base_ejection", "max_ejection", "max_ejected_percent", "failures"].map((key) => ({
    section: [...upstream, "outlier"],
    key: [key],
    compile: compileOutlierPolicy
  })),
  ...["consecutive_failures", "open_for", "max_open_for", "half_open_probes", "failures"].map((key) => ({
    section: [...upstream, "circuit_breaker"],
    key: [key],
    compile: compileCircuitPolicy
  })),
  ...["percent", "min_per_second", "window"].map((key) => ({
    section: [...upstream, "retry_budget"],
    key: [key],
    compile: (budget: Config["upstreams"][string]["retry_budget"]) => {
      const { percent, minPerSecond, windowMs } = compileRetryBudget(budget)
      return { percent, minPerSecond, windowMs }
    }
  })),
  { section: [...upstream, "health_check"], key: ["expect_status"], compile: (check) => parseStatusRange(check.expect_status) },
  {
    section: [...upstream, "tls"],
    key: ["verify"],
    compile: upstreamTlsOptions,
    base: { ...minimal, upstreams: { app: { endpoints: [{ url: "https://127.0.0.1:3443" }] } } }
  },
  { section: [], key: ["workers"], compile: (config: Config) => workerCount(config.workers) }
]

describe("the config's JSON Schema", () => {
  it("config/fibergate.schema.json is what `fibergate schema` prints (regenerate it with `npx fibergate schema > config/fibergate.schema.json`)", () => {
    assert.deepStrictEqual(shipped, configJsonSchema())
  })

  it("every shipped config names it for editors and passes it", () => {
    const files = readdirSync(join(ROOT, "config")).filter((f) => f.endsWith(".yaml"))
    assert.isAtLeast(files.length, 2)
    for (const file of files) {
      const text = readFileSync(join(ROOT, "config", file), "utf8")
      assert.match(text.split("\n")[0], /^# yaml-language-server: \$schema=\.\/fibergate\.schema\.json$/, file)
      const result = passes(parse(text))
      assert.deepStrictEqual([result.schema, result.gateway], [true, true], `${file}: ${JSON.stringify(result.errors)}`)
    }
  })

  it("every README example passes it, on top of a minimal config (the examples are fragments)", () => {
    // The configuration reference lists every key, some that no single config combines (tls on
    // an http server, to show the key): the gateway's cross-field checks are not the schema's.
    const blocks = readmeBlocks()
    assert.isAtLeast(blocks.length, 3)
    for (const block of blocks) {
      const config = { ...minimal, ...(parse(block) as Record<string, unknown>) }
      assert.isTrue(validate(config), `${block.slice(0, 80)}: ${JSON.stringify(validate.errors)}`)
    }
  })

  it("refuses what the gateway refuses for its shape: unknown keys at any depth, wrong enums, wrong types, missing keys", () => {
    const bad: Array<unknown> = [
      { ...minimal, upstreamz: {} },
      { ...minimal, servers: [{ ...minimal.servers[0], routes: [{ id: "all", upstrem: "app" }] }] },
      { ...minimal, log: { level: "loud" } },
      { ...minimal, workers: "two" },
      { ...minimal, admin: { token: "x" } },
      { servers: minimal.servers },
      { ...minimal, upstreams: { app: { endpoints: [{ url: "http://127.0.0.1:3000", weight: "heavy" }] } } }
    ]
    for (const config of bad) {
      const result = passes(config)
      assert.deepStrictEqual([result.schema, result.gateway], [false, false], JSON.stringify(config))
    }
  })
  it("describes every key: each property of every object, at any depth, has a description", () => {
    const properties = everyProperty(shipped)
    // Well over a hundred keys: a walk that found nothing would pass vacuously.
    assert.isAbove(properties.length, 150)
    const undescribed = properties.filter(({ schema }) => typeof schema.description !== "string" || schema.description.trim() === "")
    assert.deepStrictEqual(undescribed.map(({ where }) => where), [])
  })

  it("every default it states is a value its key accepts", () => {
    const ajv = new Ajv2020({ strict: true, allowUnionTypes: true })
    const defaulted = everyProperty(shipped).filter(({ schema }) => Object.hasOwn(schema, "default"))
    assert.isAtLeast(defaulted.length, 60)
    for (const { where, schema } of defaulted) {
      const check = ajv.compile({ ...schema, $defs: shipped.$defs })
      assert.isTrue(check(schema.default), `${where}: ${JSON.stringify(schema.default)} ${JSON.stringify(check.errors)}`)
    }
  })

  it("states the defaults the gateway applies: decoded in place, each is the gateway's own constant", () => {
    for (const [path, applied] of constantDefaults) {
      const stated = schemaAt(shipped, path)?.default
      assert.isDefined(stated, `${path.join(".")} states no default`)
      assert.deepStrictEqual(getIn(decoded(withValueAt(path, stated)), path), applied, path.join("."))
    }
  })

  it("states the defaults the gateway applies: a section with the key set to its default compiles as without the key", () => {
    for (const { section, key, compile, base = minimal } of compiledDefaults) {
      const path = [...section, ...key]
      const stated = schemaAt(shipped, path)?.default
      assert.isDefined(stated, `${path.join(".")} states no default`)
      const withDefault = decoded(withValueAt(path, stated, base))
      const without = decoded(section.length === 0 ? base : withValueAt(section, {}, base))
      assert.deepStrictEqual(compile(getIn(withDefault, section)), compile(getIn(without, section)), path.join("."))
    }
    // The listener's ALPN is a list of protocol names, decoded as written; an https listener needs certificate files.
    assert.deepStrictEqual(schemaAt(shipped, ["servers", 0, "tls", "alpn"])?.default, [...DEFAULT_ALPN])
  })
})
