/**
 * Transfer codings (RFC 9112 §6.1, §7). node:http's parser frames `chunked` itself and passes
 * any other coding through untouched; the gateway implements none of the others, so a request
 * that uses one is refused with 501 (never forwarded with its coding silently dropped), and a
 * response keeps its codings on the way to the client (node:http re-chunks the body).
 */

/** What a `Transfer-Encoding` field value says, once `chunked` is taken out. */
export interface TransferCodings {
  /** The codings other than `chunked`, in order, joined with ", "; "" when there are none. */
  readonly others: string
  /** How many times `chunked` is listed (more than once is malformed). */
  readonly chunked: number
}

/**
 * @example
 * transferCodings("gzip, chunked") // => { others: "gzip", chunked: 1 }
 * transferCodings("chunked")       // => { others: "", chunked: 1 }
 */
export const transferCodings = (value: string | ReadonlyArray<string>): TransferCodings => {
  const text = typeof value === "string" ? value : value.join(",")
  // The one value nearly every message carries, without splitting.
  if (text === "chunked") return plainChunked
  let others = ""
  let chunked = 0
  for (const part of text.split(",")) {
    const coding = part.trim()
    if (coding === "") continue
    if (coding.toLowerCase() === "chunked") chunked++
    else others = others === "" ? coding : `${others}, ${coding}`
  }
  return { others, chunked }
}

const plainChunked: TransferCodings = { others: "", chunked: 1 }
