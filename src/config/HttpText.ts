/** The HTTP tokens the config names: methods and header names, checked as RFC 9110 spells them. */
import * as Schema from "effect/Schema"

/** An upper-case method such as GET. */
export const Method = Schema.String.pipe(
  Schema.check(Schema.isPattern(/^[A-Z]+$/, { message: "Expected an upper-case HTTP method such as GET" }))
)

/** A header name (RFC 9110 token). */
export const HeaderName = Schema.String.pipe(
  Schema.check(Schema.isPattern(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/, { message: "Expected an HTTP header name" }))
)
