/**
 * The config's JSON Schema (draft 2020-12), derived from the Effect Schema in Schema.ts, for
 * editors (yaml-language-server) and other tools: `fibergate schema` prints it, and
 * `config/fibergate.schema.json` is the same document, kept in sync by a test. Unknown keys are
 * refused, as the gateway refuses them. It is a first check only: the gateway's decoder (and
 * its cross-field checks: route targets, TLS files) stays the authority. Every key's
 * `description`, and its `default` where the gateway applies one, are annotations in Schema.ts
 * (see its header): the generator emits them as they are, nothing here adds or rewrites them.
 */
import * as Schema from "effect/Schema"
import { Config } from "./Schema.ts"

export const configJsonSchema = (): Record<string, unknown> => {
  const document = Schema.toJsonSchemaDocument(Config, { onExcessProperty: "error" })
  return {
    $schema: "https://json-schema.org/draft/2020-12/schema",
    title: "fibergate config",
    ...document.schema,
    ...(Object.keys(document.definitions).length > 0 ? { $defs: document.definitions } : {})
  }
}
