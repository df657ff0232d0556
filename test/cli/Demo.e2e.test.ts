/**
 * `npm start` (`fibergate demo`, README "Two commands"): the real command, its printed `curl`
 * lines parsed and each request sent with node:http, checked against what the line's comment
 * says (`-> blue`, `/api stripped`, `weighted 3:1 over blue and green`). The demo listens on
 * fixed ports (8080, 9901, 3001, 3002, from config/demo.yaml and the demo command): when one is
 * taken the test fails at once saying which, rather than with a confusing timeout.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { createServer } from "node:net"
import { exitOf, spawnCli, type Cli } from "../support/cli.ts"
import { send } from "../support/http.ts"

const DEMO_PORTS = [8080, 9901, 3001, 3002]

/** Fails the test, naming the port, when something already listens on 127.0.0.1:port. */
const assertPortFree = (port: number) =>
  Effect.callback<void>((resume) => {
    const server = createServer()
    server.once("error", (e: NodeJS.ErrnoException) =>
      resume(Effect.die(new Error(
        `127.0.0.1:${port} is not free (${e.code}): fibergate demo listens on the fixed ports ${DEMO_PORTS.join(", ")}; stop what holds it and run again`
      ))))
    server.listen(port, "127.0.0.1", () => server.close(() => resume(Effect.void)))
  })

/** Waits (bounded) until stdout contains `text`; fails early if the process exits. */
const waitForStdout = (cli: Cli, text: string, ms = 20_000) =>
  Effect.gen(function*() {
    const deadline = Date.now() + ms
    while (!cli.stdout().includes(text)) {
      if (cli.hasExited()) return yield* Effect.die(new Error(`fibergate demo exited\nstdout:\n${cli.stdout()}\nstderr:\n${cli.stderr()}`))
      if (Date.now() > deadline) return yield* Effect.die(new Error(`no "${text}" within ${ms} ms\nstdout:\n${cli.stdout()}\nstderr:\n${cli.stderr()}`))
      yield* Effect.sleep(25)
    }
  })

/** One `curl` of a printed line: its URL, `-H` headers, and the comment that ends the line. */
interface Curl {
  readonly url: string
  readonly headers: Record<string, string>
  readonly says: string
}

/** Splits a shell word list on blanks, keeping '...' and "..." together. */
const words = (text: string): Array<string> => [...text.matchAll(/'([^']*)'|"([^"]*)"|(\S+)/g)].map((m) => m[1] ?? m[2] ?? m[3])

/** Every `curl` of the lines that start with `curl` (several per line, split on `;`). */
const parseCurls = (stdout: string): Array<Curl> =>
  stdout.split("\n").filter((line) => line.trimStart().startsWith("curl ")).flatMap((line) => {
    const hash = line.indexOf(" #")
    const says = hash === -1 ? "" : line.slice(hash + 2).trim()
    const commands = (hash === -1 ? line : line.slice(0, hash)).split(";").map((c) => c.trim()).filter((c) => c !== "")
    return commands.map((command): Curl => {
      const argv = words(command)
      assert.strictEqual(argv[0], "curl", command)
      const headers: Record<string, string> = {}
      let url: string | undefined
      for (let i = 1; i < argv.length; i++) {
        if (argv[i] === "-H") {
          const [name, ...value] = argv[++i].split(":")
          headers[name.trim()] = value.join(":").trim()
        } else if (argv[i] === "-i") {
          // headers in curl's output: nothing to do for node:http
        } else {
          assert.isUndefined(url, `two URLs in ${command}`)
          url = argv[i]
        }
      }
      assert.isDefined(url, command)
      return { url: url!, headers, says }
    })
  })

interface Echo {
  readonly upstream: string
  readonly url: string
}

describe("fibergate demo (npm start)", () => {
  it.live("answers every curl line it prints as the line says, then Ctrl-C (SIGINT) stops it with exit 0", () =>
    Effect.gen(function*() {
      yield* Effect.forEach(DEMO_PORTS, assertPortFree, { discard: true })
      const cli = yield* spawnCli(["demo"])
      yield* waitForStdout(cli, "Ctrl-C stops it.")
      const curls = parseCurls(cli.stdout())
      // The lines the README and the banner promise: four gateway requests, two admin ones.
      assert.deepStrictEqual(curls.map((c) => new URL(c.url).port), ["8080", "8080", "8080", "8080", "9901", "9901"], cli.stdout())
      for (const curl of curls) {
        const reply = yield* send(curl.url, { headers: curl.headers })
        const where = `${curl.url} ${JSON.stringify(curl.headers)} (# ${curl.says})`
        assert.strictEqual(reply.status, 200, `${where}: ${reply.body}`)
        if (new URL(curl.url).port === "9901") continue
        const echo = JSON.parse(reply.body) as Echo
        const target = new URL(curl.url)
        let checked = 0
        const routed = /-> (\w+)$/.exec(curl.says)
        if (routed !== null) {
          assert.strictEqual(echo.upstream, routed[1], where)
          checked++
        }
        const stripped = /^(\/\w+) stripped/.exec(curl.says)
        if (stripped !== null) {
          assert.strictEqual(echo.url, target.pathname.slice(stripped[1].length) + target.search, where)
          checked++
        } else {
          assert.strictEqual(echo.url, target.pathname + target.search, where)
        }
        const weighted = /weighted (\d+):(\d+) over (\w+) and (\w+)/.exec(curl.says)
        if (weighted !== null) {
          // Three full rounds of the weights (this request included) split exactly as they say
          // (one round could match other weights by chance: 2:1 also gives 3:1 over 4 picks).
          const [a, b] = [Number(weighted[1]), Number(weighted[2])]
          const seen = [echo.upstream]
          for (let i = 1; i < 3 * (a + b); i++) seen.push((JSON.parse((yield* send(curl.url, { headers: curl.headers })).body) as Echo).upstream)
          const count = (name: string) => seen.filter((u) => u === name).length
          assert.deepStrictEqual([count(weighted[3]), count(weighted[4])], [3 * a, 3 * b], `${where}: ${seen.join(", ")}`)
          checked++
        }
        assert.isAbove(checked, 0, `the demo says "${curl.says}" about ${curl.url}; this test does not know how to check that`)
      }
      // The admin lines: ready, and the config in force is the demo's.
      const ready = yield* send("http://127.0.0.1:9901/ready")
      assert.strictEqual(JSON.parse(ready.body).ready, true)
      const config = JSON.parse((yield* send("http://127.0.0.1:9901/config")).body) as { servers: Array<{ routes: Array<{ id: string }> }> }
      assert.deepStrictEqual(config.servers[0].routes.map((r) => r.id), ["login", "api", "canary", "default"])
      cli.child.kill("SIGINT")
      const exit = yield* exitOf(cli)
      assert.deepStrictEqual(exit, { code: 0, signal: null }, cli.stderr())
    }), 40_000)
})
