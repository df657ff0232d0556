/**
 * What a middleware is: a step of a route's pipeline, run before the request is forwarded.
 * The built-in kinds (ip_filter, cors, api_key, basic_auth, rate_limit, concurrency_limit)
 * and library users' middlewares are all Effects over the same request view; they may change
 * the headers that go upstream, answer the request themselves, or fail with a tagged
 * `GatewayError` that the one error mapping turns into the response.
 */
import * as Effect from "effect/Effect"
import type { GatewayError } from "./GatewayError.ts"

/** A response a middleware sends itself instead of forwarding (a CORS preflight, a redirect). */
export interface Reply {
  readonly status: number
  readonly headers?: Readonly<Record<string, string | ReadonlyArray<string>>> | undefined
  readonly body?: string | undefined
}

/** The request as a middleware sees it, and what it may change. */
export interface RequestView {
  readonly method: string
  /** The normalised path, before the route's rewrite, without the query. */
  readonly path: string
  /** The raw query with its `?`, or "". */
  readonly query: string
  readonly host: string
  /** How the client reached the gateway: `https` on a TLS listener. */
  readonly scheme: "http" | "https"
  /** The client's address, after the listener's `trusted_proxies`. */
  readonly clientIp: string
  /** The route's id. */
  readonly route: string
  /** A request header's value as the client sent it (the first, when repeated). */
  readonly header: (name: string) => string | undefined
  /** Every request header as the client sent it: names and values alternating. */
  readonly rawHeaders: ReadonlyArray<string>
  /** The identity an auth middleware established (API key name, Basic user, JWT `sub`). */
  readonly consumer: string | undefined
  readonly setConsumer: (name: string) => void
  /** Sets a header on the request sent upstream, replacing the client's. */
  readonly setHeader: (name: string, value: string) => void
  /** Replaces the query sent upstream (with its `?`, or ""). */
  readonly setQuery: (query: string) => void
  /** Removes a header from the request sent upstream. */
  readonly removeHeader: (name: string) => void
  /** Adds a header to the response the client gets (from the upstream or from the gateway). */
  readonly addResponseHeader: (name: string, value: string) => void
}

/**
 * A middleware as a library user writes it: an Effect that may require the user's own services.
 * Succeeding with nothing lets the request go on; succeeding with a `Reply` answers it.
 *
 * @example
 * import { Effect } from "effect"
 * import { Forbidden, type Middleware } from "fibergate"
 *
 * const noBots: Middleware = (request) =>
 *   request.header("user-agent")?.includes("bot") === true
 *     ? Effect.fail(new Forbidden({ message: "No bots" }))
 *     : Effect.void
 */
export type Middleware<R = never> = (request: RequestView) => Effect.Effect<Reply | void, GatewayError, R>

/** The request inside the pipeline: the view plus what the proxy does with a step's outcome. */
export interface PipelineRequest extends RequestView {
  /** Writes a middleware's own response (and logs it); the pipeline then ends. */
  readonly respond: (reply: Reply) => void
  /**
   * Forwards the request upstream. `resume` gets what the request's fiber runs next: nothing
   * once the response has ended, or the route's retries after a first retryable failure.
   */
  readonly forward: (resume: (next: Effect.Effect<void, GatewayError>) => void) => void
}

/** What follows a step: the rest of the pipeline, ending with the forwarder. */
export type Next = (request: PipelineRequest) => Effect.Effect<void, GatewayError>

/**
 * A compiled middleware: it runs around the rest of the pipeline, so it can act before the
 * request is forwarded and after its response has ended (a concurrency slot is held until then).
 */
export type Step = (request: PipelineRequest, next: Next) => Effect.Effect<void, GatewayError>

/** A step that only looks at the request before it goes on; `undefined` lets it go on. */
export const before = (check: (request: PipelineRequest) => GatewayError | Reply | undefined): Step => (request, next) => {
  const outcome = check(request)
  if (outcome === undefined) return next(request)
  if ("_tag" in outcome) return Effect.fail(outcome)
  return Effect.sync(() => request.respond(outcome))
}

/** A library user's middleware as a step; its services were provided when it was registered. */
export const fromMiddleware = (middleware: Middleware<never>): Step => (request, next) =>
  Effect.flatMap(middleware(request), (reply) => reply === undefined ? next(request) : Effect.sync(() => request.respond(reply)))

/**
 * The steps around the forwarder, first step outermost; compiled once per route. Each step
 * is entered only when the one before it goes on (a step's own code, checks and side effects
 * included, runs inside the request's fiber in the list's order).
 */
export const composeSteps = (steps: ReadonlyArray<Step>, last: Next): Next =>
  steps.reduceRight<Next>((next, step) => (request) => Effect.suspend(() => step(request, next)), last)

/**
 * The pipeline's last step: hands the request to the proxy's forwarder, which resumes the fiber
 * once the response has ended (or it answered with an error itself), or with the retries to run.
 */
export const forwarder: Next = (request) => Effect.callback<void, GatewayError>((resume) => request.forward(resume))
