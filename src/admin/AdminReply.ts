/**
 * What an admin request can end in: a reply (status, headers, text), or one of the admin API's
 * tagged errors, which `errorReply` maps to its reply in one place (401, 404, 405, 400, 413, and
 * 400 with every problem for a `ConfigError`). Bodies are JSON, pretty-printed for humans with curl.
 */
import * as Schema from "effect/Schema"
import type { ConfigError } from "../config/ConfigError.ts"
import { challenge } from "./BearerAuth.ts"

export interface AdminReply {
  readonly status: number
  readonly headers: Readonly<Record<string, string>>
  readonly text: string
}

/**
 * @example
 * jsonReply(200, { status: "ok" })
 */
export const jsonReply = (status: number, body: unknown, headers: Readonly<Record<string, string>> = {}): AdminReply => ({
  status,
  headers: { "content-type": "application/json", ...headers },
  text: JSON.stringify(body, null, 2) + "\n"
})

/** `admin.token` is set and the request has no matching `Authorization: Bearer` (401). */
export class Unauthorized extends Schema.TaggedError<Unauthorized>()("Unauthorized", {
  message: Schema.String,
  reason: Schema.Literals(["missing", "invalid"])
}) {}

/** No admin endpoint at this path (404); `endpoints` lists the ones there are. */
export class RouteNotFound extends Schema.TaggedError<RouteNotFound>()("RouteNotFound", {
  message: Schema.String,
  endpoints: Schema.Array(Schema.String)
}) {}

/** The path exists but not with this method (405); `allow` lists the methods it takes. */
export class MethodNotAllowed extends Schema.TaggedError<MethodNotAllowed>()("MethodNotAllowed", {
  message: Schema.String,
  allow: Schema.Array(Schema.String)
}) {}

/** The body is not usable: not JSON, empty, or cut short (400). */
export class BadRequest extends Schema.TaggedError<BadRequest>()("BadRequest", { message: Schema.String }) {}

/** The body is larger than the admin API accepts (413). */
export class PayloadTooLarge extends Schema.TaggedError<PayloadTooLarge>()("PayloadTooLarge", {
  message: Schema.String,
  limit: Schema.Number
}) {}

export type AdminError = Unauthorized | RouteNotFound | MethodNotAllowed | BadRequest | PayloadTooLarge

/** The reply for an admin error or a rejected config. */
export const errorReply = (error: AdminError | ConfigError): AdminReply => {
  switch (error._tag) {
    case "Unauthorized":
      return jsonReply(401, { error: error._tag, message: error.message }, { "www-authenticate": challenge(error.reason) })
    case "RouteNotFound":
      return jsonReply(404, { error: error._tag, message: error.message, endpoints: error.endpoints })
    case "MethodNotAllowed":
      return jsonReply(405, { error: error._tag, message: error.message, allow: error.allow }, { allow: error.allow.join(", ") })
    case "BadRequest":
      return jsonReply(400, { error: error._tag, message: error.message })
    case "PayloadTooLarge":
      // The rest of the body is not read: the connection closes after the reply.
      return jsonReply(413, { error: error._tag, message: error.message, limit: error.limit }, { connection: "close" })
    case "ConfigError":
      return jsonReply(400, { error: error._tag, problems: error.problems, message: error.message })
  }
}
