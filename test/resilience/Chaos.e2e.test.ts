/**
 * Chaos end to end: fault-injecting upstreams (test/support/faults.ts) behind the real gateway,
 * hit by many concurrent clients over node:http keep-alive connections. The properties hold for
 * every request, whatever fault it met: exactly one outcome per client request, no hang, no
 * mix-up of responses between requests, no request body sent upstream twice, and retries never
 * after response bytes went out. Seeds are fixed, so a failure names a reproducible fault mix.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { Agent, request as httpRequest } from "node:http"
import { startGateway } from "../support/harness.ts"
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
  readonly fault?: Fault
}

interface Result {
  readonly spec: Spec
  readonly outcome: Outcome
  /** How many `response` events the client saw for this request (must be at most 1). */
  readonly responses: number
}

const GUARD_MS = 3_000

/**
 * One request over node:http with `agent`; settles exactly once with its outcome. `x-req-id`
 * carries `spec.id`, `x-fault` (if any) the targeted fault.
 */
const call = (agent: Agent, port: number, spec: Spec) =>
  Effect.callback<Result>((resume) => {
    let settled = false
    let responses = 0
    let status = 0
    const settle = (outcome: Outcome) => {
      if (settled) return
      settled = true
      clearTimeout(guard)
      resume(Effect.succeed({ spec, outcome, responses }))
    }
    const headers: Record<string, string | number> = { "x-req-id": spec.id }
    if (spec.fault !== undefined) headers["x-fault"] = spec.fault
    if (spec.body !== undefined) {
      headers["content-type"] = "application/octet-stream"
      headers["content-length"] = spec.body.length
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
    }, GUARD_MS)
    req.end(spec.body)
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

const isError = (o: Outcome) => o.kind !== "response" || o.status !== 200

const label = (o: Outcome): string =>
  o.kind === "response" ? String(o.status) : o.kind === "truncated" ? `truncated(${o.status})` : o.kind === "error" ? `conn-error(${o.code})` : "hang"

const tally = (labels: ReadonlyArray<string>): Record<string, number> => {
  const out: Record<string, number> = {}
  for (const l of labels) out[l] = (out[l] ?? 0) + 1
  return out
}

// ---------------------------------------------------------------------------------------------
// (a) a seeded fault mix

const SEED = 0xc0ffee
const GETS = 300
const POSTS = 60
const POST_BYTES = 4096

/**
 * ~27% of tries fail. reset-body is kept at 4%: it cuts a response that has started, which no
 * retry may repair, so it sets a floor under the GET error rate with retries on.
 */
const MIX: FaultMix = { "ok": 72, "reset-headers": 8, "reset-body": 4, "hang": 5, "slow-body": 6, "5xx": 5 }

const RETRY = { attempts: 3, per_try_timeout: "150ms", backoff: { base: "1ms", max: "5ms" } }

/** 300 GETs and 60 POSTs (4 KiB bodies), a POST after every 5 GETs. */
const mixSpecs = (): Array<Spec> => {
  const specs: Array<Spec> = []
  let p = 0
  for (let i = 0; i < GETS; i++) {
    specs.push({ id: `get-${i}`, method: "GET" })
    if (i % 5 === 4 && p < POSTS) {
      specs.push({ id: `post-${p}`, method: "POST", body: seededBytes(SEED + 1000 + p, POST_BYTES) })
      p++
    }
  }
  return specs
}

interface MixRun {
  readonly results: ReadonlyArray<Result>
  readonly records: ReadonlyArray<FaultRecord>
  readonly upstreams: ReadonlyArray<FaultUpstream>
  readonly ms: number
}

const runMix = (retries: boolean) =>
  Effect.scoped(Effect.gen(function*() {
    const a = yield* startFaultUpstream("a", { faultOf: seededFaults(SEED, MIX) })
    const b = yield* startFaultUpstream("b", { faultOf: seededFaults(SEED + 1, MIX) })
    const gateway = yield* startGateway(gatewayConfig(
      [a.url, b.url],
      { timeout: "400ms", ...(retries ? { retry: RETRY } : {}) },
      { retry_budget: { percent: 100 } }
    ))
    const agent = yield* clientAgent(20)
    const started = performance.now()
    const results = yield* Effect.forEach(mixSpecs(), (spec) => call(agent, gateway.port, spec), { concurrency: 20 })
    const ms = performance.now() - started
    // Let any late upstream traffic (a retry that should not exist) land before reading the records.
    yield* Effect.sleep("50 millis")
    return { results, records: [...a.records, ...b.records], upstreams: [a, b], ms } satisfies MixRun
  }))

/** The checks every run must pass, retries on or off. */
const checkRun = (run: MixRun, tag: string) => {
  const specs = mixSpecs()
  assert.strictEqual(run.results.length, specs.length, `${tag}: one result per request`)
  const ids = new Set(run.results.map((r) => r.spec.id))
  assert.strictEqual(ids.size, specs.length, `${tag}: every request settled exactly once`)
  const bySpec = new Map(specs.map((s) => [s.id, s]))
  const recordsById = new Map<string, Array<FaultRecord>>()
  for (const r of run.records) recordsById.set(r.id, [...(recordsById.get(r.id) ?? []), r])

  for (const { outcome, responses, spec } of run.results) {
    const where = `${tag} ${spec.method} ${spec.id} -> ${label(outcome)}; upstream saw ${
      JSON.stringify((recordsById.get(spec.id) ?? []).map((r) => r.fault))
    }`
    assert.isAtMost(responses, 1, `${where}: more than one response`)
    assert.notStrictEqual(outcome.kind, "hang", `${where}: no outcome within ${GUARD_MS}ms`)
    // A connection error is acceptable only once the response has started (reset-body after headers).
    assert.notStrictEqual(outcome.kind, "error", `${where}: connection error before any response`)
    if (outcome.kind === "response" && outcome.status === 200) {
      const echo = JSON.parse(outcome.body) as FaultEcho
      assert.strictEqual(echo.id, spec.id, `${where}: response of another request`)
      assert.strictEqual(outcome.echoId, spec.id, `${where}: x-echo-id of another request`)
      assert.strictEqual(echo.bodyHash, sha256(bySpec.get(spec.id)?.body ?? Buffer.alloc(0)), `${where}: body changed on the way`)
      assert.include(["ok", "slow-body"], echo.fault, `${where}: a 200 from a faulted try`)
    }
    if (outcome.kind === "truncated") {
      // The only fault that starts a response and then breaks it.
      assert.include((recordsById.get(spec.id) ?? []).map((r) => r.fault), "reset-body", `${where}: truncated without a reset-body try`)
    }
  }

  // No request with a body is ever sent twice (bodies are not replayed).
  for (const spec of specs.filter((s) => s.method === "POST")) {
    const seen = recordsById.get(spec.id) ?? []
    assert.isAtMost(seen.length, 1, `${tag} ${spec.id}: POST body received ${seen.length} times`)
    for (const r of seen) assert.strictEqual(r.bodyHash, sha256(spec.body!), `${tag} ${spec.id}: body changed on the way`)
  }
  // Every try the upstreams saw belongs to a request the client sent.
  for (const r of run.records) assert.isTrue(bySpec.has(r.id), `${tag}: upstream saw unknown id ${r.id}`)
}

const figures = (run: MixRun, tag: string) => {
  const faults = Object.fromEntries(FAULTS.map((f) => [f, run.records.filter((r) => r.fault === f).length]))
  const gets = run.results.filter((r) => r.spec.method === "GET")
  const posts = run.results.filter((r) => r.spec.method === "POST")
  const getErrors = gets.filter((r) => isError(r.outcome))
  const recordsById = new Map<string, Array<FaultRecord>>()
  for (const r of run.records) recordsById.set(r.id, [...(recordsById.get(r.id) ?? []), r])
  // GETs none of whose tries could have succeeded (no ok / slow-body try reached an upstream).
  const allFaulted = gets.filter((r) => !(recordsById.get(r.spec.id) ?? []).some((x) => x.fault === "ok" || x.fault === "slow-body"))
  // GETs that failed although an upstream answered one of their tries with a plain ok.
  const failedDespiteOk = getErrors.filter((r) => (recordsById.get(r.spec.id) ?? []).some((x) => x.fault === "ok"))
  const triesPerGet = tally(gets.map((r) => String((recordsById.get(r.spec.id) ?? []).length)))
  console.log(
    `[chaos ${tag}] ${run.results.length} requests (${gets.length} GET, ${posts.length} POST) in ${run.ms.toFixed(0)}ms; ` +
      `${run.records.length} upstream tries: a=${run.upstreams[0].records.length} b=${run.upstreams[1].records.length}\n` +
      `  faults injected: ${JSON.stringify(faults)}\n` +
      `  tries per GET: ${JSON.stringify(triesPerGet)}\n` +
      `  GET outcomes: ${JSON.stringify(tally(gets.map((r) => label(r.outcome))))}\n` +
      `  POST outcomes: ${JSON.stringify(tally(posts.map((r) => label(r.outcome))))}\n` +
      `  GET errors ${getErrors.length}/${gets.length} (${(100 * getErrors.length / gets.length).toFixed(1)}%), ` +
      `GETs with every try faulted: ${allFaulted.length}, GET errors despite an ok try: ${failedDespiteOk.length}`
  )
  return { getErrors: getErrors.length, allFaulted: allFaulted.length, failedDespiteOk }
}

describe("chaos: fault-injecting upstreams behind the gateway", () => {
  it.live("(a) every client request gets exactly one response; retries cut the GET error rate", () =>
    Effect.gen(function*() {
      const on = yield* runMix(true)
      const off = yield* runMix(false)
      checkRun(on, "retries on")
      checkRun(off, "retries off")
      const fOn = figures(on, "retries on")
      const fOff = figures(off, "retries off")

      // With retries on, only GETs whose every try met a fault may fail ...
      assert.isAtMost(fOn.getErrors, fOn.allFaulted, "GET errors with retries on exceed the GETs whose every try hit a fault")
      assert.deepStrictEqual(
        fOn.failedDespiteOk.map((r) => `${r.spec.id} -> ${label(r.outcome)}`),
        [],
        "GETs failed although one of their tries was answered ok"
      )
      // ... which keeps the rate low, and lower than the same mix without retries.
      assert.isBelow(fOn.getErrors / GETS, 0.1, "GET error rate with retries on")
      assert.isBelow(fOn.getErrors, fOff.getErrors, "retries on should see fewer GET errors than retries off")
      // Without retries, every GET is exactly one try.
      for (const r of off.results.filter((x) => x.spec.method === "GET")) {
        assert.isAtMost(off.records.filter((x) => x.id === r.spec.id).length, 1, `retries off: ${r.spec.id} tried more than once`)
      }
    }), 20_000)

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
      const gateway = yield* startGateway(gatewayConfig(
        [a.url, b.url],
        { timeout: "2s", retry: { attempts: 3, per_try_timeout: "500ms", backoff: { base: "1ms", max: "1ms" } } },
        { retry_budget: { percent: 100 } }
      ))
      for (let i = 0; i < 5; i++) {
        const id = `cut-${i}`
        const before = [a.records.length, b.records.length]
        const reply = yield* raw(
          gateway.port,
          `GET /r/${id} HTTP/1.1\r\nHost: t\r\nx-req-id: ${id}\r\nx-fault: reset-body\r\n\r\n`,
          { untilClose: true }
        )
        // Any retry would reach an upstream within milliseconds.
        yield* Effect.sleep("50 millis")
        const seen = [...a.records.slice(before[0]), ...b.records.slice(before[1])]
        const length = Number(reply.headers.get("content-length")?.[0])
        assert.strictEqual(reply.status, 200, `${id}: the upstream's status went out`)
        assert.isTrue(reply.closed, `${id}: the gateway closed the connection`)
        assert.isBelow(Buffer.byteLength(reply.body, "latin1"), length, `${id}: the body is truncated`)
        assert.isAbove(reply.body.length, 0, `${id}: the first half of the body went out`)
        assert.deepStrictEqual(seen.map((r) => [r.id, r.fault]), [[id, "reset-body"]], `${id}: upstream tries`)
      }
    }), 20_000)
})
