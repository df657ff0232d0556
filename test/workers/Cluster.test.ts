/**
 * `workers: 2` end to end: the real `fibergate run -c FILE` (node:cluster primary plus two
 * workers) in front of a real upstream. Waits are bounded polls of the process's log lines and
 * of the listener, never fixed sleeps; every process is killed by a finalizer.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, type Scope } from "effect"
import { spawn, type ChildProcess } from "node:child_process"
import { startUpstream, type TestUpstream } from "../support/harness.ts"
import { send } from "../support/http.ts"
import { freePort, holdPort } from "../support/net.ts"
import { oneRouteConfig, ROOT, tempFile } from "../support/cli.ts"
import { availableParallelism } from "node:os"

// Each bounded wait below is at most 10 s; on a loaded 2-core machine a worker takes 5-8 s to boot.
const TEST_TIMEOUT = 45_000

interface ProcessExit {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
}

interface Primary {
  readonly child: ChildProcess
  /** Every complete line the primary and its workers wrote (stdout and stderr). */
  readonly lines: Array<string>
  readonly output: () => string
  readonly exited: Promise<ProcessExit>
  readonly hasExited: () => boolean
}

const STARTED = /worker (\d+) started \(pid (\d+)\)/
const EXITED = /worker (\d+) \(pid (\d+)\) exited \(code (\S+), signal (\S+)\) after (\d+) ms/

/** `worker <slot> started (pid <pid>)` lines, in order. */
const startedWorkers = (p: Primary) =>
  p.lines.flatMap((line) => {
    const m = STARTED.exec(line)
    return m === null ? [] : [{ slot: Number(m[1]), pid: Number(m[2]) }]
  })

/** `worker <slot> (pid <pid>) exited (...)` lines, in order. */
const exitedWorkers = (p: Primary) =>
  p.lines.flatMap((line) => {
    const m = EXITED.exec(line)
    return m === null ? [] : [{ slot: Number(m[1]), pid: Number(m[2]), code: m[3], signal: m[4] }]
  })

const count = (p: Primary, text: string) => p.lines.filter((line) => line.includes(text)).length

/** Whether a process exists (EPERM still means it does). */
const isAlive = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return (e as NodeJS.ErrnoException).code !== "ESRCH"
  }
}

const kill = (pid: number, signal: NodeJS.Signals) => {
  try {
    process.kill(pid, signal)
  } catch {
    // already gone
  }
}

/** The CLI's environment: this one without FIBERGATE_* variables, which would change the config. */
const cliEnv = (): NodeJS.ProcessEnv =>
  Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith("FIBERGATE_")))

/** Spawns `node bin/fibergate.js run -c <path>`; the finalizer SIGKILLs the primary and every worker it logged. */
const spawnPrimary = (path: string): Effect.Effect<Primary, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync((): Primary => {
      const child = spawn(process.execPath, ["bin/fibergate.js", "run", "-c", path], {
        cwd: ROOT,
        env: cliEnv(),
        stdio: ["ignore", "pipe", "pipe"]
      })
      const lines: Array<string> = []
      const collect = () => {
        let partial = ""
        return (chunk: string) => {
          const parts = (partial + chunk).split("\n")
          partial = parts.pop()!
          lines.push(...parts)
        }
      }
      child.stdout!.setEncoding("utf8").on("data", collect())
      child.stderr!.setEncoding("utf8").on("data", collect())
      let done = false
      const exited = new Promise<ProcessExit>((resolve) =>
        child.once("exit", (code, signal) => {
          done = true
          resolve({ code, signal })
        })
      )
      return { child, lines, output: () => lines.join("\n"), exited, hasExited: () => done }
    }),
    (p) =>
      Effect.promise(async () => {
        if (!p.hasExited()) p.child.kill("SIGKILL")
        for (const { pid } of startedWorkers(p)) kill(pid, "SIGKILL")
        await p.exited
        p.child.stdout?.destroy()
        p.child.stderr?.destroy()
      })
  )

/** Polls `check` every 25 ms for at most `ms`; dies with the log if it never holds (or the primary exits first, unless `allowExit`). */
const waitFor = (p: Primary, what: string, check: () => boolean, options: { readonly ms?: number; readonly allowExit?: boolean } = {}) =>
  Effect.gen(function*() {
    const deadline = Date.now() + (options.ms ?? 10_000)
    for (;;) {
      if (check()) return
      if (p.hasExited() && options.allowExit !== true) {
        return yield* Effect.die(new Error(`fibergate exited while waiting for ${what}\n${p.output()}`))
      }
      if (Date.now() > deadline) return yield* Effect.die(new Error(`timed out waiting for ${what}\n${p.output()}`))
      yield* Effect.sleep(25)
    }
  })

/** One GET on a fresh connection; undefined on a network error or after 1 s. */
const probe = (url: string) =>
  send(url).pipe(
    Effect.timeout("1 second"),
    Effect.exit,
    Effect.map((exit) => (Exit.isSuccess(exit) ? exit.value : undefined))
  )

/** Polls `url` until it answers (any status), at most `ms`. */
const waitForAnswer = (p: Primary, url: string, ms = 10_000) =>
  Effect.gen(function*() {
    const deadline = Date.now() + ms
    for (;;) {
      const reply = yield* probe(url)
      if (reply !== undefined) return reply
      if (p.hasExited()) return yield* Effect.die(new Error(`fibergate exited before ${url} answered\n${p.output()}`))
      if (Date.now() > deadline) return yield* Effect.die(new Error(`${url} did not answer within ${ms} ms\n${p.output()}`))
      yield* Effect.sleep(25)
    }
  })

interface Cluster {
  readonly primary: Primary
  readonly upstream: TestUpstream
  readonly path: string
  readonly url: (path: string) => string
}

/**
 * A `workers: 2` gateway, returned once both workers logged `started`, both built their listener
 * and admin API, and the listener answers.
 */
const startClusterWith = (options: { readonly drain: string }) => Effect.gen(function*() {
  const upstream = yield* startUpstream("clustered")
  const port = yield* freePort
  const adminPort = yield* freePort
  const path = yield* tempFile("gw.yaml", oneRouteConfig({
    port,
    adminPort,
    upstream: upstream.url,
    head: ["workers: 2", "log: { level: info, format: text }", `shutdown: { drain_timeout: ${options.drain} }`]
  }))
  const primary = yield* spawnPrimary(path)
  yield* waitFor(primary, "both workers to start", () => {
    const slots = new Set(startedWorkers(primary).map((w) => w.slot))
    return slots.has(0) && slots.has(1)
  })
  // Each worker logs its listener and then its admin API once they are bound.
  yield* waitFor(primary, "both workers to bind", () => count(primary, "admin API on") >= 2)
  const url = (p: string) => `http://127.0.0.1:${port}${p}`
  yield* waitForAnswer(primary, url("/ping"))
  return { primary, upstream, path, url } satisfies Cluster
})

const startCluster = startClusterWith({ drain: "2s" })

/** `n` GETs, `concurrency` at a time, each on a fresh connection; every one must be a 200 with the upstream's echo. */
const load = (cluster: Cluster, n: number, concurrency: number, tag: string) =>
  Effect.gen(function*() {
    const replies = yield* Effect.forEach(
      Array.from({ length: n }, (_, i) => i),
      (i) => send(cluster.url(`/${tag}/${i}`)).pipe(Effect.map((reply) => ({ i, reply }))),
      { concurrency }
    )
    const bad = replies.filter(({ i, reply }) => {
      if (reply.status !== 200) return true
      try {
        const body = JSON.parse(reply.body) as { upstream: string; url: string }
        return body.upstream !== "clustered" || body.url !== `/${tag}/${i}`
      } catch {
        return true
      }
    })
    assert.strictEqual(bad.length, 0, `bad replies: ${JSON.stringify(bad.slice(0, 3))}\n${cluster.primary.output()}`)
    return replies.length
  })

/** The `timestamp=` of a logfmt line, in ms since the epoch. */
const timestampOf = (line: string) => {
  const m = /timestamp=(\S+)/.exec(line)
  assert.isNotNull(m, `no timestamp in ${line}`)
  return Date.parse(m![1])
}

/** The primary's exit, at most `ms` from now; fails the test with its log otherwise. */
const exitOf = (p: Primary, ms: number) =>
  Effect.promise(() => p.exited).pipe(
    Effect.timeoutOrElse({
      duration: ms,
      orElse: () => Effect.die(new Error(`the primary did not exit within ${ms} ms\n${p.output()}`))
    })
  )

/** Polls until no process in `pids` exists, at most `ms`; returns when that was seen (Date.now()). */
const whenGone = (p: Primary, what: string, pids: ReadonlyArray<number>, ms: number) =>
  waitFor(p, what, () => !pids.some(isAlive), { ms, allowExit: true }).pipe(Effect.map(() => Date.now()))

describe("workers: 2 (node:cluster, real processes)", () => {
  it.live("serves 200 requests, 20 concurrently, all 200 with the upstream's body", () =>
    Effect.gen(function*() {
      const cluster = yield* startCluster
      const served = yield* load(cluster, 200, 20, "a")
      assert.strictEqual(served, 200)
      assert.isAtLeast(cluster.upstream.seen.length, 200)
      // Two worker processes, distinct from each other and from the primary.
      const pids = startedWorkers(cluster.primary).map((w) => w.pid)
      assert.strictEqual(new Set(pids).size, 2)
      assert.notInclude(pids, cluster.primary.child.pid)
    }), TEST_TIMEOUT)

  it.live("a SIGKILLed worker is logged as such and restarted in its slot; traffic keeps flowing", () =>
    Effect.gen(function*() {
      const cluster = yield* startCluster
      const { primary } = cluster
      const victim = startedWorkers(primary).find((w) => w.slot === 0)!
      const survivor = startedWorkers(primary).find((w) => w.slot === 1)!
      process.kill(victim.pid, "SIGKILL")
      yield* waitFor(primary, `worker 0 (pid ${victim.pid}) to be logged as exited`, () =>
        exitedWorkers(primary).some((w) => w.pid === victim.pid))
      const exited = exitedWorkers(primary).find((w) => w.pid === victim.pid)!
      assert.deepStrictEqual(exited, { slot: 0, pid: victim.pid, code: "null", signal: "SIGKILL" })
      yield* waitFor(primary, "a new worker in slot 0", () =>
        startedWorkers(primary).some((w) => w.slot === 0 && w.pid !== victim.pid))
      const replacement = startedWorkers(primary).filter((w) => w.slot === 0).at(-1)!
      assert.notStrictEqual(replacement.pid, victim.pid)
      assert.isFalse(isAlive(victim.pid))
      // The replacement binds its listener and admin API (a third pair of lines).
      yield* waitFor(primary, "the replacement to bind", () => count(primary, "admin API on") >= 3)
      yield* load(cluster, 100, 10, "b")
      // Only the victim exited; the other slot kept its worker.
      assert.deepStrictEqual(exitedWorkers(primary).map((w) => w.pid), [victim.pid])
      assert.isTrue(isAlive(survivor.pid))
      assert.isTrue(isAlive(replacement.pid))
    }), TEST_TIMEOUT)

  it.live("SIGHUP to the primary reaches both workers, which reload the config", () =>
    Effect.gen(function*() {
      const cluster = yield* startCluster
      const { primary } = cluster
      assert.strictEqual(count(primary, "config reloaded"), 0)
      process.kill(primary.child.pid!, "SIGHUP")
      yield* waitFor(primary, "two `config reloaded` lines", () => count(primary, "config reloaded") >= 2)
      const reloaded = primary.lines.filter((line) => line.includes("config reloaded"))
      assert.strictEqual(reloaded.length, 2)
      for (const line of reloaded) assert.include(line, `config reloaded from ${cluster.path}`)
      // Nobody died of the signal, and traffic still flows.
      assert.deepStrictEqual(exitedWorkers(primary), [])
      yield* load(cluster, 20, 5, "c")
    }), TEST_TIMEOUT)

  it.live("SIGTERM to the primary stops the workers and exits 0, leaving no worker alive", () =>
    Effect.gen(function*() {
      const cluster = yield* startCluster
      const { primary } = cluster
      const pids = startedWorkers(primary).map((w) => w.pid)
      assert.strictEqual(pids.length, 2)
      process.kill(primary.child.pid!, "SIGTERM")
      const exit = yield* Effect.promise(() => primary.exited).pipe(
        Effect.timeoutOrElse({
          duration: 10_000,
          orElse: () => Effect.die(new Error(`the primary did not exit within 10 s\n${primary.output()}`))
        })
      )
      // Workers still alive at the moment the primary exits were not stopped by it.
      const aliveAtExit = pids.filter(isAlive)
      assert.deepStrictEqual(exit, { code: 0, signal: null }, primary.output())
      assert.deepStrictEqual(aliveAtExit, [], `workers still alive when the primary exited\n${primary.output()}`)
      yield* waitFor(primary, "every worker to be gone", () => !pids.some(isAlive), { ms: 5_000, allowExit: true })
    }), TEST_TIMEOUT)
  it.live("SIGTERM: a worker that does not exit (SIGSTOPped) is SIGKILLed drain_timeout + 5 s after it, the other drains at once; then exit 0", () =>
    Effect.gen(function*() {
      const cluster = yield* startClusterWith({ drain: "300ms" })
      const { primary } = cluster
      const hung = startedWorkers(primary).find((w) => w.slot === 0)!.pid
      const other = startedWorkers(primary).find((w) => w.slot === 1)!.pid
      // A stopped process cannot act on SIGTERM (it stays pending); only SIGKILL ends it.
      process.kill(hung, "SIGSTOP")
      const sentAt = Date.now()
      process.kill(primary.child.pid!, "SIGTERM")
      const otherGoneAt = yield* whenGone(primary, "the worker that was not stopped to exit", [other], 10_000)
      const hungGoneAt = yield* whenGone(primary, "the stopped worker to be killed", [hung], 20_000)
      const exit = yield* exitOf(primary, 10_000)
      assert.deepStrictEqual(exit, { code: 0, signal: null }, primary.output())
      const killAfter = 300 + 5_000
      // Not before drain_timeout + 5 s (the timer cannot fire early), and not long after.
      assert.isAtLeast(hungGoneAt - sentAt, killAfter, primary.output())
      assert.isBelow(hungGoneAt - sentAt, killAfter + 5_000, primary.output())
      assert.isBelow(otherGoneAt - sentAt, killAfter, "the worker that could drain waited for the kill")
      const kills = primary.lines.filter((line) => line.includes("sending SIGKILL"))
      assert.strictEqual(kills.length, 1, primary.output())
      assert.include(kills[0], `worker 0 (pid ${hung}) did not exit within ${killAfter} ms of SIGTERM; sending SIGKILL`)
    }), TEST_TIMEOUT)

  it.live("workers: auto starts one worker per core (os.availableParallelism())", () =>
    Effect.gen(function*() {
      const cores = availableParallelism()
      const upstream = yield* startUpstream("auto")
      const port = yield* freePort
      const path = yield* tempFile("auto.yaml", oneRouteConfig({ port, upstream: upstream.url, head: ["workers: auto", "log: { level: info, format: text }"] }))
      const primary = yield* spawnPrimary(path)
      yield* waitFor(primary, `${cores} workers to start`, () => new Set(startedWorkers(primary).map((w) => w.slot)).size >= cores)
      assert.strictEqual(count(primary, `supervising ${cores} workers`), 1, primary.output())
      assert.deepStrictEqual([...new Set(startedWorkers(primary).map((w) => w.slot))].sort(), Array.from({ length: cores }, (_, i) => i))
      yield* waitForAnswer(primary, `http://127.0.0.1:${port}/auto`)
    }), TEST_TIMEOUT)

  it.live("workers that die at start (their port is taken) restart after >= 100, 200, 400, 800 ms; the 5th crash in a row stops the other slot and exits 1", () =>
    Effect.gen(function*() {
      const taken = (yield* holdPort).port
      const path = yield* tempFile("crash.yaml", oneRouteConfig({
        port: taken,
        upstream: "http://127.0.0.1:9",
        head: ["workers: 2", "log: { level: info, format: text }", "shutdown: { drain_timeout: 1s }"]
      }))
      const primary = yield* spawnPrimary(path)
      const exit = yield* exitOf(primary, 60_000)
      assert.deepStrictEqual(exit, { code: 1, signal: null }, primary.output())
      const gaveUp = primary.lines.map((line) => /fibergate: worker slot (\d+) crashed (\d+) times in a row; giving up/.exec(line)).find((m) => m !== null)
      assert.isDefined(gaveUp, primary.output())
      const slot = Number(gaveUp![1])
      assert.strictEqual(Number(gaveUp![2]), 5, primary.output())
      // The slot that gave up ran 5 workers, each of which exited with code 1; no 6th was started.
      const starts = primary.lines.filter((line) => STARTED.exec(line)?.[1] === String(slot))
      const exits = primary.lines.filter((line) => EXITED.exec(line)?.[1] === String(slot))
      assert.strictEqual(starts.length, 5, primary.output())
      assert.strictEqual(exits.length, 5, primary.output())
      for (const line of exits) assert.strictEqual(EXITED.exec(line)![3], "1", line)
      // Each restart waited at least the doubling backoff after the exit before it.
      const gaps = starts.slice(1).map((line, i) => timestampOf(line) - timestampOf(exits[i]))
      // (10 ms of slack: a node timer may fire that much before Date.now() says its delay passed.)
      gaps.forEach((gap, i) => assert.isAtLeast(gap, 100 * 2 ** i - 10, `restart ${i + 1} after ${gap} ms\n${primary.output()}`))
      // Every worker of both slots is gone: the other slot was stopped, not orphaned.
      const pids = startedWorkers(primary).map((w) => w.pid)
      yield* whenGone(primary, "every worker to be gone", pids, 5_000)
    }), 90_000)
})
