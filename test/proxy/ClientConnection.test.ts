/**
 * The per-connection state machine on its own, against a model: pipelined requests arrive,
 * their responses finish in order (as node:http flushes them), and the parser may refuse
 * bytes at any point. The end-to-end behaviour is in test/e2e/ClientConnection.test.ts.
 */
import { assert, describe, it } from "@effect/vitest"
import * as fc from "fast-check"
import { EventEmitter } from "node:events"
import type { IncomingMessage, ServerResponse } from "node:http"
import type { Socket } from "node:net"
import { ClientConnection } from "../../src/proxy/ClientConnection.ts"
import { BadRequest } from "../../src/middleware/GatewayError.ts"

const SAFE = new Set(["GET", "HEAD", "OPTIONS", "TRACE"])
const fakeReq = { complete: true, resume: () => undefined } as unknown as IncomingMessage

interface Request {
  readonly n: number
  readonly method: string
  readonly res: EventEmitter & { shouldKeepAlive: boolean }
  readonly req: { complete: boolean; resume: () => void }
  started: boolean
  /** Answered by the refusal without running (its body was where the bad bytes were). */
  answered: boolean
  done: boolean
}

const fakeSocket = () => {
  const calls: Array<string> = []
  const socket = {
    pause: () => calls.push("pause"),
    resume: () => calls.push("resume"),
    end: () => calls.push("end"),
    destroySoon: () => calls.push("destroySoon")
  }
  return { socket: socket as unknown as Socket, calls }
}

type Command =
  | { readonly kind: "arrive"; readonly method: string; readonly keepAlive: boolean; readonly complete: boolean }
  | { readonly kind: "finish" }
  | { readonly kind: "refuse" }

const command: fc.Arbitrary<Command> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant("arrive" as const), method: fc.constantFrom("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"), keepAlive: fc.integer({ min: 0, max: 9 }).map((n) => n > 0), complete: fc.integer({ min: 0, max: 5 }).map((n) => n > 0) }) },
  { weight: 4, arbitrary: fc.constant({ kind: "finish" as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: "refuse" as const }) }
)

/** How the generated runs ended, so the test can show both endings were exercised. */
const endings = { stuck: 0, drained: 0 }

/** Runs the commands, then finishes everything that can finish; checks the invariants on the way. */
const play = (commands: ReadonlyArray<Command>) => {
  const { socket } = fakeSocket()
  const connection = new ClientConnection(socket)
  const requests: Array<Request> = []
  const startOrder: Array<number> = []
  let refusals = 0
  let refused = false
  // Nothing is parsed after a request whose body never completes.
  let blocked = false
  const running = () => requests.filter((r) => r.started && !r.done)
  const check = () => {
    const now = running().filter((r) => !r.answered)
    if (now.some((r) => !SAFE.has(r.method))) assert.strictEqual(now.length, 1, "an unsafe request runs alone")
    assert.deepStrictEqual(startOrder, [...startOrder].sort((a, b) => a - b), "requests start in arrival order")
    // An unsafe request starts only once everything before it is done.
    for (const r of now) if (!SAFE.has(r.method)) assert.isTrue(requests.filter((o) => o.n < r.n).every((o) => o.done))
  }
  // node:http flushes responses in request order: the oldest taken response that is not done
  // is the only one whose `close` can come next, and only once its request runs. A request
  // whose body never completes keeps its exchange open (in the gateway until a timeout), unless
  // the refusal answered it.
  const finishOldest = () => {
    const oldest = requests.find((r) => !r.done)
    if (oldest === undefined || !oldest.started || (!oldest.req.complete && !oldest.answered)) return false
    oldest.done = true
    oldest.res.emit("close")
    return true
  }
  for (const c of commands) {
    if (c.kind === "arrive") {
      if (blocked) continue
      blocked = !c.complete
      const res = Object.assign(new EventEmitter(), { shouldKeepAlive: c.keepAlive })
      const request: Request = { n: requests.length, method: c.method, res, req: { complete: c.complete, resume: () => undefined }, started: false, answered: false, done: false }
      if (!connection.take(request.req as unknown as IncomingMessage, res as unknown as ServerResponse)) {
        // Refused only behind a closing response or a refusal.
        assert.isTrue(refused || requests.some((r) => !r.res.shouldKeepAlive))
        continue
      }
      requests.push(request)
      const start = () => {
        request.started = true
        startOrder.push(request.n)
      }
      const earlier = requests.filter((o) => o.n < request.n && !o.done)
      // Waiting only when it must: an unsafe request behind anything; anything behind an
      // unsafe or a waiting request. Otherwise the pipeline's safe requests run together.
      const mustWait = earlier.length > 0 && (!SAFE.has(c.method) || earlier.some((o) => !SAFE.has(o.method) || !o.started))
      const admitted = connection.admits(c.method)
      assert.strictEqual(admitted, !mustWait, "held exactly when it must wait")
      if (admitted) start()
      else connection.hold(c.method, request.req as unknown as IncomingMessage, res as unknown as ServerResponse, start)
    } else if (c.kind === "finish") finishOldest()
    else {
      refused = true
      connection.refuse({
        error: new BadRequest({ message: "bad" }),
        raw: () => {
          refusals++
          assert.isTrue(requests.every((r) => r.done), "the refusal goes out after every response owed")
        },
        reply: (res) => {
          const answered = requests.find((r) => r.res === res)!
          assert.isFalse(answered.started, "the refusal answers a request that never ran")
          assert.isFalse(answered.req.complete, "whose body held the bad bytes")
          assert.strictEqual(answered, requests[requests.length - 1], "the newest one")
          answered.started = true
          answered.answered = true
        }
      })
    }
    check()
  }
  while (finishOldest()) check()
  // Liveness: everything taken ran (or was answered) and finished, except that a request whose
  // body never completes holds its own exchange open (in the gateway it ends by timeout).
  const stuck = requests.filter((r) => !r.done)
  assert.isAtMost(stuck.length, 1)
  for (const r of stuck) {
    assert.isFalse(r.req.complete, "only an incomplete body holds its exchange open")
    assert.isTrue(r.started, "and it runs")
  }
  assert.strictEqual(connection.inFlight, stuck.length)
  endings[stuck.length === 0 ? "drained" : "stuck"]++
  const closedBefore = requests.some((r) => !r.res.shouldKeepAlive)
  // One raw answer when the parser refused and no closing response had been decided first.
  if (refused) assert.isAtMost(refusals, 1)
  const answeredByReply = requests.some((r) => r.answered)
  if (refused && !closedBefore && !answeredByReply && stuck.length === 0) assert.strictEqual(refusals, 1)
  if (answeredByReply) assert.strictEqual(refusals, 0)
  if (!refused) assert.strictEqual(refusals, 0)
}

describe("ClientConnection", () => {
  it("keeps the client's order: unsafe requests alone, nothing overtakes, nothing stalls, one refusal after the responses owed", () => {
    fc.assert(fc.property(fc.array(command, { maxLength: 40 }), play), { numRuns: 1000 })
    // Both endings are generated: the property checks each of them often.
    assert.isAbove(endings.stuck, 50, "runs ending with a request whose body never completes")
    assert.isAbove(endings.drained, 50, "runs ending with everything finished")
  })

  it("lets safe requests run together", () => {
    const connection = new ClientConnection(fakeSocket().socket)
    const take = () => connection.take(fakeReq, Object.assign(new EventEmitter(), { shouldKeepAlive: true }) as unknown as ServerResponse)
    for (let i = 0; i < 3; i++) {
      assert.isTrue(take())
      assert.isTrue(connection.admits("GET"))
    }
  })

  it("holds an unsafe request behind a running one, and a safe one behind it", () => {
    const connection = new ClientConnection(fakeSocket().socket)
    const responses = Array.from({ length: 3 }, () => Object.assign(new EventEmitter(), { shouldKeepAlive: true }))
    const started: Array<string> = []
    const arrive = (i: number, method: string) => {
      connection.take(fakeReq, responses[i] as unknown as ServerResponse)
      if (connection.admits(method)) started.push(method)
      else connection.hold(method, { complete: true } as IncomingMessage, responses[i] as unknown as ServerResponse, () => started.push(method))
    }
    arrive(0, "GET")
    arrive(1, "POST")
    arrive(2, "GET")
    assert.deepStrictEqual(started, ["GET"])
    responses[0].emit("close")
    assert.deepStrictEqual(started, ["GET", "POST"])
    responses[1].emit("close")
    assert.deepStrictEqual(started, ["GET", "POST", "GET"])
  })

  it("a refusal with responses in flight pauses reading and answers once they are done", () => {
    const { socket, calls } = fakeSocket()
    const connection = new ClientConnection(socket)
    const res = Object.assign(new EventEmitter(), { shouldKeepAlive: true })
    connection.take(fakeReq, res as unknown as ServerResponse)
    assert.isTrue(connection.admits("GET"))
    let answered = 0
    connection.refuse({ error: new BadRequest({ message: "bad" }), raw: () => answered++, reply: () => assert.fail() })
    assert.strictEqual(answered, 0)
    assert.deepStrictEqual(calls, ["pause"])
    res.emit("close")
    assert.strictEqual(answered, 1)
    assert.deepStrictEqual(calls, ["pause", "resume"])
    // Nothing is taken after a refusal.
    assert.isFalse(connection.take(fakeReq, Object.assign(new EventEmitter(), { shouldKeepAlive: true }) as unknown as ServerResponse))
  })

  it("a refusal inside the body of a held request is that request's answer", () => {
    const connection = new ClientConnection(fakeSocket().socket)
    const first = Object.assign(new EventEmitter(), { shouldKeepAlive: true })
    const second = Object.assign(new EventEmitter(), { shouldKeepAlive: true })
    connection.take(fakeReq, first as unknown as ServerResponse)
    connection.admits("POST")
    connection.take(fakeReq, second as unknown as ServerResponse)
    assert.isFalse(connection.admits("PUT"))
    let ran = false
    connection.hold("PUT", { complete: false } as IncomingMessage, second as unknown as ServerResponse, () => (ran = true))
    const replied: Array<unknown> = []
    connection.refuse({ error: new BadRequest({ message: "bad" }), raw: () => assert.fail(), reply: (r) => replied.push(r) })
    assert.deepStrictEqual(replied, [second])
    first.emit("close")
    assert.isFalse(ran, "a request answered by the refusal never runs")
  })

  it("a refusal inside the body being read interrupts its exchange", () => {
    const connection = new ClientConnection(fakeSocket().socket)
    const res = Object.assign(new EventEmitter(), { shouldKeepAlive: true })
    connection.take(fakeReq, res as unknown as ServerResponse)
    connection.admits("POST")
    const interrupted: Array<string> = []
    connection.receiving = { req: { complete: false } as IncomingMessage, interrupt: (e) => interrupted.push(e._tag) }
    connection.refuse({ error: new BadRequest({ message: "bad" }), raw: () => assert.fail(), reply: () => assert.fail() })
    assert.deepStrictEqual(interrupted, ["BadRequest"])
    assert.isTrue(connection.closing)
  })

  it("closeAfter makes the response the last one and lingers only when the request is still coming in", () => {
    const { socket, calls } = fakeSocket()
    const connection = new ClientConnection(socket)
    const res = { shouldKeepAlive: true } as ServerResponse
    const req = { complete: true } as IncomingMessage
    connection.closeAfter(req, res)
    assert.isFalse(res.shouldKeepAlive)
    assert.isTrue(connection.closing)
    socket.destroySoon()
    assert.deepStrictEqual(calls, ["destroySoon"], "a complete request closes as node:http would")
  })
})
