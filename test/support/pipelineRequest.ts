/**
 * Test support: a pipeline request without a listener, for running one middleware step. It
 * records the response headers added, the request headers set and removed, and a reply.
 */
import { Effect } from "effect"
import type { PipelineRequest, Reply } from "../../src/middleware/Middleware.ts"

export const requestFrom = (clientIp: string, extra: Partial<PipelineRequest> = {}) => {
  const responseHeaders: Array<string> = []
  const set: Record<string, string> = {}
  const removed: Array<string> = []
  const replies: Array<Reply> = []
  let consumer: string | undefined
  const request: PipelineRequest = {
    method: "GET",
    path: "/",
    query: "",
    host: "h",
    scheme: "http",
    clientIp,
    route: "r",
    header: () => undefined,
    rawHeaders: [],
    get consumer() {
      return consumer
    },
    setConsumer: (name: string) => {
      consumer = name
    },
    setHeader: (name: string, value: string) => {
      set[name] = value
    },
    setQuery: () => {},
    removeHeader: (name: string) => void removed.push(name),
    addResponseHeader: (name: string, value: string) => void responseHeaders.push(name, value),
    respond: (reply: Reply) => void replies.push(reply),
    forward: (resume) => resume(Effect.void),
    ...extra
  }
  return { request, responseHeaders, set, removed, replies }
}
