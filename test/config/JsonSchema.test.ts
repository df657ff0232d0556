/**
 * The config's JSON Schema: the shipped `config/fibergate.schema.json` is what `fibergate schema`
 * prints; every shipped config passes it and the gateway's own decoder, every README example
 * passes it; configs the gateway refuses for their shape are refused by it too.
 */
import { assert, describe, it } from "@effect/vitest"
import { Ajv2020 } from "ajv/dist/2020.js"
import { Result } from "effect"
import { readdirSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { parse } from "yaml"
import { decodeConfig } from "../../src/config/ConfigLoader.ts"
import { configJsonSchema } from "../../src/config/JsonSchema.ts"
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
})
