/**
 * Chaos end to end: fault-injecting upstreams (test/support/faults.ts) behind the real gateway,
 * hit by many concurrent clients over node:http keep-alive connections. The properties hold for
 * every request, whatever fault it met: exactly one outcome per client request, no hang, no
 * mix-up of responses between requests, a request (and its body) reaching an upstream at most
 * once per try, buffered POST bodies replayed on retry, streamed (chunked) bodies never, and
 * retries never after response bytes went out. Seeds are fixed, so a failure names a
 * reproducible fault mix.
 *
 * The gateway's own account of its tries comes from its client spans: a recording tracer keeps
 * every span, and each try sends the upstream a `traceparent` naming its span, so every request
 * an upstream received is matched to the try that sent it. The timeouts follow the machine's
 * pace, measured first (it is shared and often loaded); nothing waits a fixed time for "nothing
 * more happens": sentinel requests to each upstream mark when late traffic would have landed.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Tracer } from "effect"
import { Agent, request as httpRequest } from "node:http"
import { nowNanos, Tracing } from "../../src/telemetry/Tracing.ts"
import { startGateway } from "../support/harness.ts"
import { eventually, within } from "../support/liveGateway.ts"
import { raw } from "../support/net.ts"
import {
  type Fault,
  FAULTS,
  type FaultEcho,
  type FaultMix,
  type FaultRecord,
  type FaultUpstream,
  seededBytes,
  seededFaults,
  sha256,
  startFaultUpstream
} from "../support/faults.ts"

/** What one client request ended with. */
type Outcome =
  | { readonly kind: "response"; readonly status: number; readonly body: string; readonly echoId: string | undefined }
  /** The response had started (status and headers arrived), then the connection broke. */
  | { readonly kind: "truncated"; readonly status: number; readonly code: string }
  /** The connection broke before any response arrived. */
  | { readonly kind: "error"; readonly code: string }
  /** Nothing settled within the guard. */
  | { readonly kind: "hang" }

interface Spec {
  readonly id: string
  readonly method: "GET" | "POST"
  readonly body?: Buffer
  /** Send the body chunked (no Content-Length): it streams, and its request is never retried. */
  readonly chunked?: boolean
  readonly fault?: Fault
}

interface Result {
  readonly spec: Spec
  readonly outcome: Outcome
  /** How many `response` events the client saw for this request (must be at most 1). */
  readonly responses: number
  /** When the outcome arrived, on the clock of the gateway's spans (`nowNanos`). */
  readonly settledAt: bigint
}

/** How long a request may take (beyond the route's timeout) before it counts as a hang. */
const GUARD_MS = 5_000

/**
 * One request over node:http with `agent`; settles exactly once with its outcome (a hang after
 * `guardMs`). `x-req-id` carries `spec.id`, `x-fault` (if any) the targeted fault.
 */
const call = (agent: Agent, port: number, spec: Spec, guardMs = GUARD_MS) =>
  Effect.callback<Result>((resume) => {
    let settled = false
    let responses = 0
    let status = 0
    const settle = (outcome: Outcome) => {
      if (settled) return
      settled = true
      clearTimeout(guard)
      resume(Effect.succeed({ spec, outcome, responses, settledAt: nowNanos() }))
    }
    const headers: Record<string, string | number> = { "x-req-id": spec.id }
    if (spec.fault !== undefined) headers["x-fault"] = spec.fault
    if (spec.body !== undefined) {
      headers["content-type"] = "application/octet-stream"
      if (spec.chunked === true) headers["transfer-encoding"] = "chunked"
      else headers["content-length"] = spec.body.length
    }
    const req = httpRequest({ host: "127.0.0.1", port, path: `/r/${spec.id}`, method: spec.method, headers, agent }, (res) => {
      responses++
      status = res.statusCode ?? 0
      const chunks: Array<Buffer> = []
      let ended = false
      res.on("data", (c: Buffer) => chunks.push(c))
      res.on("end", () => {
        ended = true
        const echo = res.headers["x-echo-id"]
        settle({ kind: "response", status, body: Buffer.concat(chunks).toString(), echoId: typeof echo === "string" ? echo : undefined })
      })
      res.on("error", (e: NodeJS.ErrnoException) => settle({ kind: "truncated", status, code: e.code ?? e.message }))
      res.on("close", () => {
        if (!ended) settle({ kind: "truncated", status, code: "closed" })
      })
    })
    req.on("error", (e: NodeJS.ErrnoException) =>
      settle(responses > 0 ? { kind: "truncated", status, code: e.code ?? e.message } : { kind: "error", code: e.code ?? e.message }))
    const guard = setTimeout(() => {
      settle({ kind: "hang" })
      req.destroy()
    }, guardMs)
    if (spec.chunked === true && spec.body !== undefined) {
      // Two writes: the body goes out as two chunks.
      req.write(spec.body.subarray(0, spec.body.length >> 1))
      req.end(spec.body.subarray(spec.body.length >> 1))
    } else req.end(spec.body)
    return Effect.sync(() => {
      clearTimeout(guard)
      req.destroy()
    })
  })

/** A keep-alive client agent for the life of the scope. */
const clientAgent = (maxSockets: number) =>
  Effect.acquireRelease(Effect.sync(() => new Agent({ keepAlive: true, maxSockets })), (a) => Effect.sync(() => a.destroy()))

/** One route `all` over upstream `app` = `urls`, with `route` and `upstream` merged in. */
const gatewayConfig = (urls: ReadonlyArray<string>, route: Record<string, unknown>, upstream: Record<string, unknown>) => ({
  log: { level: "none", access_log: false },
  servers: [{ name: "web", listen: "127.0.0.1:0", routes: [{ id: "all", upstream: "app", ...route }] }],
  upstreams: { app: { endpoints: urls.map((url) => ({ url })), ...upstream } }
})

// ---------------------------------------------------------------------------------------------
// The gateway's tries, as its spans tell them

/** One try the gateway made: its client span. */
interface Try {
  readonly spanId: string
  /** The request's id (from `/r/<id>`). */
  readonly id: string
  readonly startedAt: bigint
  readonly ended: boolean
  /** How long the try lasted, in ms (NaN while it runs). */
  readonly ms: number
  /** The try's `error.type`: the gateway error's tag, or the status for a status >= 400. */
  readonly error: string | undefined
}

const durationMs = (span: Tracer.Span): number =>
  span.status._tag === "Ended" ? Number(span.status.endTime - span.status.startTime) / 1e6 : Number.NaN

/** A tracer that keeps every span it makes, as the gateway's `Tracing`. */
const recordingTracing = () => {
  const spans: Array<Tracer.Span> = []
  const tracer = Tracer.make({
    span(options) {
      const span = new Tracer.NativeSpan(options)
      spans.push(span)
      return span
    }
  })
  const idOf = (span: Tracer.Span) => /\/r\/([^/?]+)$/.exec(String(span.attributes.get("url.full") ?? span.attributes.get("url.path")))?.[1] ?? ""
  return {
    layer: Layer.succeed(Tracing, Tracing.of({ tracer, fromConfig: false })),
    /** Every try (client span) so far. */
    tries: (): Array<Try> =>
      spans.filter((s) => s.kind === "client").map((s) => ({
        spanId: s.spanId,
        id: idOf(s),
        startedAt: s.status.startTime,
        ended: s.status._tag === "Ended",
        ms: durationMs(s),
        error: s.attributes.get("error.type") as string | undefined
      })),
    /** How long the gateway took over each request (its server span), by request id. */
    requestMs: (): Map<string, number> => new Map(spans.filter((s) => s.kind === "server").map((s) => [idOf(s), durationMs(s)])),
    /** Whether the server span of request `id` has ended (the gateway is done with it). */
    finished: (id: string) => spans.some((s) => s.kind === "server" && idOf(s) === id && s.status._tag === "Ended"),
    /** Whether every span made so far has ended. */
    allEnded: () => spans.every((s) => s.status._tag === "Ended")
  }
}

/** The try that sent `record` to the upstream: the span id in its `traceparent`. */
const tryOf = (record: FaultRecord): string => record.traceparent.split("-")[2] ?? ""

let sentinelRound = 0
/**
 * Sends `ok` GETs through the gateway until each upstream has received one. Whatever reached an
 * upstream's sockets before they were sent has then been read (its record, if any, exists):
 * no fixed wait stands in for "any late traffic has landed".
 */
const sentinels = (port: number, upstreams: ReadonlyArray<FaultUpstream>) =>
  Effect.scoped(Effect.gen(function*() {
    const prefix = `sentinel-${++sentinelRound}-`
    const agent = yield* clientAgent(1)
    const reached = () => upstreams.every((u) => u.records.some((r) => r.id.startsWith(prefix)))
    for (let i = 0; !reached(); i++) {
      assert.isBelow(i, 20, "20 sentinel requests did not reach every upstream")
      yield* call(agent, port, { id: `${prefix}${i}`, method: "GET", fault: "ok" })
    }
  })).pipe((effect) => within(effect, "sentinel requests reaching every upstream"))

const isSentinel = (id: string) => id.startsWith("sentinel-")

// ---------------------------------------------------------------------------------------------

const isError = (o: Outcome) => o.kind !== "response" || o.status !== 200

const label = (o: Outcome): string =>
  o.kind === "response" ? String(o.status) : o.kind === "truncated" ? `truncated(${o.status})` : o.kind === "error" ? `conn-error(${o.code})` : "hang"

const tally = (labels: ReadonlyArray<string>): Record<string, number> => {
  const out: Record<string, number> = {}
  for (const l of labels) out[l] = (out[l] ?? 0) + 1
  return out
}

const groupBy = <A>(items: ReadonlyArray<A>, key: (a: A) => string): Map<string, Array<A>> => {
  const out = new Map<string, Array<A>>()
  for (const item of items) out.set(key(item), [...(out.get(key(item)) ?? []), item])
  return out
}

// ---------------------------------------------------------------------------------------------
// (a) a seeded fault mix

const SEED = 0xc0ffee
const GETS = 300
const POSTS = 60
const CHUNKED_POSTS = 30
const POST_BYTES = 4096

/**
 * ~27% of tries fail. reset-body is kept at 4%: it cuts a response that has started, which no
 * retry may repair, so it sets a floor under the GET error rate with retries on.
 */
const MIX: FaultMix = { "ok": 72, "reset-headers": 8, "reset-body": 4, "hang": 5, "slow-body": 6, "5xx": 5 }

const ATTEMPTS = 3

/** The per-try and route timeouts of a run. */
interface Timing {
  readonly perTryMs: number
  readonly routeMs: number
}

/**
 * A hang is cut by the per-try timeout (or, without retries, the route's), which must also let
 * an ok answer through on this shared, often loaded machine: it is twice the 90th percentile of
 * 100 fault-free requests sent as the run sends them (20 at a time), 150 ms to 600 ms; the route's
 * timeout is 8/3 of it. An ok answer that still comes after a timeout counts as a fault (of
 * timing), and the test checks that the gateway waited the whole timeout before it gave up.
 */
const measureTiming = Effect.scoped(Effect.gen(function*() {
  const upstream = yield* startFaultUpstream("pace")
  const gateway = yield* startGateway(gatewayConfig([upstream.url], {}, {}))
  const agent = yield* clientAgent(20)
  const batch = (n: number) =>
    Effect.forEach(Array.from({ length: n }, (_, i) => i), (i) =>
      Effect.gen(function*() {
        const started = performance.now()
        yield* call(agent, gateway.port, { id: `pace-${i}`, method: "GET" })
        return performance.now() - started
      }), { concurrency: 20 })
  yield* batch(40) // warm-up: connections, JIT
  const took = (yield* batch(100)).sort((x, y) => x - y)
  const perTryMs = Math.min(600, Math.max(150, Math.ceil(2 * took[89])))
  console.log(`[chaos pace] p50 ${took[49].toFixed(1)}ms, p90 ${took[89].toFixed(1)}ms: per-try timeout ${perTryMs}ms`)
  return { perTryMs, routeMs: Math.ceil(perTryMs * 8 / 3) } satisfies Timing
}))

/** POST is retried too, and a 4 KiB body with a Content-Length is buffered (so it can be replayed). */
const retryOf = (timing: Timing) => ({
  attempts: ATTEMPTS,
  per_try_timeout: `${timing.perTryMs}ms`,
  backoff: { base: "1ms", max: "5ms" },
  methods: ["GET", "POST"],
  buffer_bytes: 2 * POST_BYTES
})

/** The errors that end a try before it reached an upstream with its request: the try's or the route's timeout. */
const TIMEOUTS = ["UpstreamResponseTimeout", "UpstreamTimeout"]

/** 300 GETs, 60 POSTs with a Content-Length and 30 chunked POSTs (4 KiB bodies each). */
const mixSpecs = (): Array<Spec> => {
  const specs: Array<Spec> = []
  let p = 0
  let c = 0
  for (let i = 0; i < GETS; i++) {
    specs.push({ id: `get-${i}`, method: "GET" })
    if (i % 5 === 4 && p < POSTS) {
      specs.push({ id: `post-${p}`, method: "POST", body: seededBytes(SEED + 1000 + p, POST_BYTES) })
      p++
    }
    if (i % 10 === 9 && c < CHUNKED_POSTS) {
      specs.push({ id: `chunked-${c}`, method: "POST", body: seededBytes(SEED + 2000 + c, POST_BYTES), chunked: true })
      c++
    }
  }
  return specs
}

interface MixRun {
  readonly results: ReadonlyArray<Result>
  /** What the upstreams received (sentinels left out). */
  readonly records: ReadonlyArray<FaultRecord>
  /** The gateway's tries (sentinels left out). */
  readonly tries: ReadonlyArray<Try>
  /** How long the gateway took over each request, by id. */
  readonly requestMs: ReadonlyMap<string, number>
  readonly timing: Timing
  readonly upstreams: ReadonlyArray<FaultUpstream>
  readonly ms: number
}

const runMix = (retries: boolean, timing: Timing) =>
  Effect.scoped(Effect.gen(function*() {
    const a = yield* startFaultUpstream("a", { faultOf: seededFaults(SEED, MIX) })
    const b = yield* startFaultUpstream("b", { faultOf: seededFaults(SEED + 1, MIX) })
    const tracing = recordingTracing()
    const gateway = yield* startGateway(
      gatewayConfig([a.url, b.url], { timeout: `${timing.routeMs}ms`, ...(retries ? { retry: retryOf(timing) } : {}) }, { retry_budget: { percent: 100 } }),
      { tracing: tracing.layer }
    )
    const agent = yield* clientAgent(20)
    const started = performance.now()
    const results = yield* Effect.forEach(mixSpecs(), (spec) => call(agent, gateway.port, spec, timing.routeMs + GUARD_MS), { concurrency: 20 })
    const ms = performance.now() - started
    // The gateway is done with every try (none still running) ...
    yield* eventually(Effect.sync(tracing.allEnded), "every try has ended")
    // ... and what those tries sent has been read by the upstreams.
    yield* sentinels(gateway.port, [a, b])
    return {
      results,
      records: [...a.records, ...b.records].filter((r) => !isSentinel(r.id)),
      tries: tracing.tries().filter((t) => !isSentinel(t.id)),
      requestMs: tracing.requestMs(),
      timing,
      upstreams: [a, b],
      ms
    } satisfies MixRun
  }))

/** The checks every run must pass, retries on or off; `maxTries` is the route's attempts (1 without retries). */
const checkRun = (run: MixRun, tag: string, maxTries: number) => {
  const specs = mixSpecs()
  assert.strictEqual(run.results.length, specs.length, `${tag}: one result per request`)
  assert.strictEqual(new Set(run.results.map((r) => r.spec.id)).size, specs.length, `${tag}: every request settled exactly once`)
  const bySpec = new Map(specs.map((s) => [s.id, s]))
  const recordsById = groupBy(run.records, (r) => r.id)
  const triesById = groupBy(run.tries, (t) => t.id)
  const where = ({ outcome, spec }: Result) =>
    `${tag} ${spec.method}${spec.chunked === true ? " (chunked)" : ""} ${spec.id} -> ${label(outcome)}; upstreams saw ${
      JSON.stringify((recordsById.get(spec.id) ?? []).map((r) => r.fault))
    }, tries ${JSON.stringify((triesById.get(spec.id) ?? []).map((t) => t.error ?? "ok"))}`

  for (const result of run.results) {
    const { outcome, responses, settledAt, spec } = result
    const at = where(result)
    assert.isAtMost(responses, 1, `${at}: more than one response`)
    assert.notStrictEqual(outcome.kind, "hang", `${at}: no outcome within ${GUARD_MS}ms past the route's timeout`)
    // A connection error is acceptable only once the response has started (reset-body after headers).
    assert.notStrictEqual(outcome.kind, "error", `${at}: connection error before any response`)
    // Whatever an upstream answered with names this request (gateway errors name none).
    assert.include([undefined, spec.id], outcome.kind === "response" ? outcome.echoId : undefined, `${at}: x-echo-id of another request`)

    // The gateway's tries: at least one, at most the route's attempts, all before the client had its answer.
    const tries = triesById.get(spec.id) ?? []
    assert.isAtLeast(tries.length, 1, `${at}: no try`)
    assert.isAtMost(tries.length, maxTries, `${at}: more tries than attempts`)
    assert.deepStrictEqual(tries.filter((t) => t.startedAt > settledAt).length, 0, `${at}: a try started after the client had its answer`)
    // A try follows only a failed one.
    assert.deepStrictEqual(tries.slice(0, -1).filter((t) => t.error === undefined).length, 0, `${at}: a try after one that succeeded`)

    // Per try, the request and its body reached the upstreams at most once, as sent; each arrival
    // is a try of this request; a try that no upstream received ended with a timeout first.
    const arrivals = (recordsById.get(spec.id) ?? []).map(tryOf)
    const trySpans = new Set(tries.map((t) => t.spanId))
    assert.deepStrictEqual(arrivals.filter((span) => !trySpans.has(span)), [], `${at}: an upstream received a request that no try of it sent`)
    assert.strictEqual(new Set(arrivals).size, arrivals.length, `${at}: one try reached the upstreams twice`)
    assert.deepStrictEqual(
      tries.filter((t) => !arrivals.includes(t.spanId) && !TIMEOUTS.includes(t.error ?? "")).map((t) => t.error ?? "ok"),
      [],
      `${at}: tries that no upstream received, not cut by a timeout`
    )
    for (const r of recordsById.get(spec.id) ?? []) {
      assert.strictEqual(r.bodyHash, sha256(spec.body ?? Buffer.alloc(0)), `${at}: body changed on the way`)
    }
    // A timeout fired no sooner than configured (1 ms of timer slack).
    for (const t of tries.filter((t) => t.error === "UpstreamResponseTimeout")) {
      assert.isAtLeast(t.ms, run.timing.perTryMs - 1, `${at}: a try cut by the per-try timeout before ${run.timing.perTryMs}ms`)
    }
    const requestMs = run.requestMs.get(spec.id) ?? Number.NaN
    for (const _ of tries.filter((t) => t.error === "UpstreamTimeout")) {
      assert.isAtLeast(requestMs, run.timing.routeMs - 1, `${at}: the route's timeout fired before ${run.timing.routeMs}ms`)
    }
  }

  // Every 200 is this request's own answer, from a try that was answered ok.
  const oks = run.results.filter((r) => r.outcome.kind === "response" && r.outcome.status === 200)
  assert.isAbove(oks.length, 0, `${tag}: some requests succeed`)
  for (const result of oks) {
    const outcome = result.outcome as Extract<Outcome, { kind: "response" }>
    const echo = JSON.parse(outcome.body) as FaultEcho
    assert.strictEqual(echo.id, result.spec.id, `${where(result)}: response of another request`)
    assert.strictEqual(outcome.echoId, result.spec.id, `${where(result)}: x-echo-id of another request`)
    assert.strictEqual(echo.bodyHash, sha256(bySpec.get(result.spec.id)?.body ?? Buffer.alloc(0)), `${where(result)}: body changed on the way`)
    assert.include(["ok", "slow-body"], echo.fault, `${where(result)}: a 200 from a faulted try`)
  }
  // A truncated response comes only from the one fault that starts a response and then breaks it,
  // or from the route's timeout expiring while a slow body was on its way (a loaded machine).
  for (const result of run.results.filter((r) => r.outcome.kind === "truncated")) {
    const faults = (recordsById.get(result.spec.id) ?? []).map((r) => r.fault)
    const cut = (triesById.get(result.spec.id) ?? []).some((t) => t.error === "UpstreamTimeout")
    assert.isTrue(faults.includes("reset-body") || (cut && faults.includes("slow-body")), `${where(result)}: truncated without a reset-body try or a slow body cut by the timeout`)
  }
  // Every request the upstreams saw belongs to a request the client sent.
  for (const r of run.records) assert.isTrue(bySpec.has(r.id), `${tag}: upstream saw unknown id ${r.id}`)
}

/** Requests whose body reached both upstreams (a replay after a failed try on the other one), with one 200 for the client. */
const replayedPosts = (run: MixRun, chunked: boolean) => {
  const recordsById = groupBy(run.records, (r) => r.id)
  return run.results.filter(({ outcome, responses, spec }) => {
    const seen = recordsById.get(spec.id) ?? []
    return spec.method === "POST" && (spec.chunked === true) === chunked && responses === 1 && outcome.kind === "response" &&
      outcome.status === 200 && seen.length >= 2 &&
      run.upstreams.every((u) => u.records.some((r) => r.id === spec.id && r.bodyHash === sha256(spec.body!)))
  })
}

const figures = (run: MixRun, tag: string) => {
  const faults = Object.fromEntries(FAULTS.map((f) => [f, run.records.filter((r) => r.fault === f).length]))
  const gets = run.results.filter((r) => r.spec.method === "GET")
  const posts = run.results.filter((r) => r.spec.method === "POST" && r.spec.chunked !== true)
  const chunked = run.results.filter((r) => r.spec.chunked === true)
  const getErrors = gets.filter((r) => isError(r.outcome))
  const recordsById = groupBy(run.records, (r) => r.id)
  const errorOfTry = new Map(run.tries.map((t) => [t.spanId, t.error]))
  // A try answered ok that the gateway still saw time out (the machine stalled past the
  // per-try timeout) met a fault too, one of timing; every other fault is the upstream's.
  const lateOk = (x: FaultRecord) => (x.fault === "ok" || x.fault === "slow-body") && TIMEOUTS.includes(errorOfTry.get(tryOf(x)) ?? "")
  const answeredOk = (x: FaultRecord) => (x.fault === "ok" || x.fault === "slow-body") && !lateOk(x)
  // GETs none of whose tries could have succeeded.
  const allFaulted = gets.filter((r) => !(recordsById.get(r.spec.id) ?? []).some(answeredOk))
  // GETs that failed although an upstream answered one of their tries ok, in time.
  const failedDespiteOk = getErrors.filter((r) => !allFaulted.includes(r))
  // GET errors that the upstreams' faults alone explain (every try faulted by the upstream): the
  // share the fault mix and the retries decide, whatever the machine's pace.
  const faultErrors = getErrors.filter((r) => !(recordsById.get(r.spec.id) ?? []).some((x) => x.fault === "ok" || x.fault === "slow-body"))
  const late = run.records.filter(lateOk).length
  const triesOf = (rs: ReadonlyArray<Result>) => tally(rs.map((r) => String(run.tries.filter((t) => t.id === r.spec.id).length)))
  const replayed = replayedPosts(run, false)
  console.log(
    `[chaos ${tag}] ${run.results.length} requests (${gets.length} GET, ${posts.length} POST, ${chunked.length} chunked POST) in ${
      run.ms.toFixed(0)
    }ms; ${run.tries.length} tries, ${run.records.length} of them reached the upstreams: ${run.upstreams.map((u) => `${u.name}=${u.records.filter((r) => !isSentinel(r.id)).length}`).join(" ")}\n` +
      `  faults injected: ${JSON.stringify(faults)}\n` +
      `  tries per GET: ${JSON.stringify(triesOf(gets))}, per POST: ${JSON.stringify(triesOf(posts))}, per chunked POST: ${JSON.stringify(triesOf(chunked))}\n` +
      `  GET outcomes: ${JSON.stringify(tally(gets.map((r) => label(r.outcome))))}\n` +
      `  POST outcomes: ${JSON.stringify(tally(posts.map((r) => label(r.outcome))))}, ${replayed.length} replayed to the other upstream and answered 200\n` +
      `  chunked POST outcomes: ${JSON.stringify(tally(chunked.map((r) => label(r.outcome))))}\n` +
      `  GET errors ${getErrors.length}/${gets.length} (${(100 * getErrors.length / gets.length).toFixed(1)}%), ` +
      `GETs with every try faulted: ${allFaulted.length}, GET errors despite an ok try: ${failedDespiteOk.length}; ` +
      `ok answers that came after the timeout (a loaded machine): ${late}, GET errors the upstreams' faults explain: ${faultErrors.length}`
  )
  return { getErrors: getErrors.length, faultErrors: faultErrors.length, failedDespiteOk }
}

describe("chaos: fault-injecting upstreams behind the gateway", () => {
  it.live("(a) every client request gets exactly one response; retries cut the GET error rate and replay buffered POST bodies, never streamed ones", () =>
    Effect.gen(function*() {
      const timing = yield* measureTiming
      const on = yield* runMix(true, timing)
      const off = yield* runMix(false, timing)
      checkRun(on, "retries on", ATTEMPTS)
      checkRun(off, "retries off", 1)
      const fOn = figures(on, "retries on")
      const fOff = figures(off, "retries off")

      // Only GETs whose every try met a fault fail ...
      for (const f of [fOn, fOff]) {
        assert.deepStrictEqual(f.failedDespiteOk.map((r) => `${r.spec.id} -> ${label(r.outcome)}`), [], "GETs failed although one of their tries was answered ok")
      }
      // ... which, with retries on, keeps the rate low, and lower than the same mix without retries.
      assert.isBelow(fOn.faultErrors / GETS, 0.1, "GET error rate with retries on")
      assert.isBelow(fOn.faultErrors, fOff.faultErrors, "retries on should see fewer GET errors than retries off")

      // Buffered POST bodies were replayed: the same bytes reached both upstreams, and the client got one 200.
      assert.isAbove(replayedPosts(on, false).length, 0, "no POST was replayed to the other upstream")
      // A chunked body streams once: never a second try, even when its one try failed.
      const recordsById = groupBy(on.records, (r) => r.id)
      const chunked = on.results.filter((r) => r.spec.chunked === true)
      assert.deepStrictEqual(chunked.filter((r) => on.tries.filter((t) => t.id === r.spec.id).length !== 1).map((r) => r.spec.id), [], "chunked POSTs tried more than once")
      const failedOnce = chunked.filter((r) => (recordsById.get(r.spec.id) ?? []).some((x) => !["ok", "slow-body"].includes(x.fault)))
      assert.isAbove(failedOnce.length, 0, "no chunked POST met a fault (the no-retry rule went unexercised)")
      assert.deepStrictEqual(failedOnce.filter((r) => !isError(r.outcome)).map((r) => r.spec.id), [], "a chunked POST whose only try failed got a 200")
    }), 25_000)

  // -------------------------------------------------------------------------------------------
  // (b) one endpoint killed mid-run

  it.live("(b) with one of two endpoints killed during a run of idempotent GETs, the client sees zero errors once retries are on", () =>
    Effect.gen(function*() {
      const a = yield* startFaultUpstream("a")
      const b = yield* startFaultUpstream("b")
      const gateway = yield* startGateway(gatewayConfig(
        [a.url, b.url],
        { retry: { attempts: 3, backoff: { base: "1ms", max: "5ms" } } },
        { retry_budget: { percent: 100 }, outlier: { consecutive_failures: 2, base_ejection: "10s" } }
      ))
      const agent = yield* clientAgent(10)
      let completed = 0
      let bSeenAtStop = -1
      const specs = Array.from({ length: 400 }, (_, i): Spec => ({ id: `kill-${i}`, method: "GET" }))
      const results = yield* Effect.forEach(
        specs,
        (spec) =>
          call(agent, gateway.port, spec).pipe(Effect.tap(() => {
            if (++completed !== 100) return Effect.void
            bSeenAtStop = b.records.length
            return b.stop
          })),
        { concurrency: 10 }
      )
      const outcomes = tally(results.map((r) => label(r.outcome)))
      console.log(
        `[chaos kill] 400 GETs: ${JSON.stringify(outcomes)}; a saw ${a.records.length}, b saw ${b.records.length} ` +
          `(${bSeenAtStop} before the stop)`
      )
      assert.isFalse(b.listening())
      assert.isAbove(bSeenAtStop, 0, "b served traffic before it was stopped")
      assert.deepStrictEqual(
        results.filter((r) => isError(r.outcome)).map((r) => `${r.spec.id} -> ${label(r.outcome)}`),
        [],
        "client-visible errors"
      )
      for (const r of results) {
        const echo = JSON.parse((r.outcome as { body: string }).body) as FaultEcho
        assert.strictEqual(echo.id, r.spec.id)
      }
    }), 20_000)

  // -------------------------------------------------------------------------------------------
  // (c) resets after the response started

  it.live("(c) a reset after response bytes went out is never retried: the client sees a truncated response", () =>
    Effect.gen(function*() {
      const a = yield* startFaultUpstream("a")
      const b = yield* startFaultUpstream("b")
      const tracing = recordingTracing()
      const gateway = yield* startGateway(
        gatewayConfig(
          [a.url, b.url],
          { timeout: "2s", retry: { attempts: 3, per_try_timeout: "500ms", backoff: { base: "1ms", max: "1ms" } } },
          { retry_budget: { percent: 100 } }
        ),
        { tracing: tracing.layer }
      )
      for (let i = 0; i < 5; i++) {
        const id = `cut-${i}`
        const reply = yield* raw(
          gateway.port,
          `GET /r/${id} HTTP/1.1\r\nHost: t\r\nx-req-id: ${id}\r\nx-fault: reset-body\r\n\r\n`,
          { untilClose: true }
        )
        // The gateway is done with the request, and anything it sent upstream meanwhile has landed.
        yield* eventually(Effect.sync(() => tracing.finished(id)), `the gateway finishes ${id}`)
        yield* sentinels(gateway.port, [a, b])
        const seen = [...a.records, ...b.records].filter((r) => r.id === id)
        const length = Number(reply.headers.get("content-length")?.[0])
        assert.strictEqual(reply.status, 200, `${id}: the upstream's status went out`)
        assert.isTrue(reply.closed, `${id}: the gateway closed the connection`)
        assert.isBelow(Buffer.byteLength(reply.body, "latin1"), length, `${id}: the body is truncated`)
        assert.isAbove(reply.body.length, 0, `${id}: the first half of the body went out`)
        assert.deepStrictEqual(seen.map((r) => [r.id, r.fault]), [[id, "reset-body"]], `${id}: upstream tries`)
        assert.strictEqual(tracing.tries().filter((t) => t.id === id).length, 1, `${id}: the gateway's tries`)
      }
    }), 20_000)
})
