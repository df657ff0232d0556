/**
 * forward_auth's step against a real auth server on loopback, without a gateway: the listed
 * response headers are copied only when sent, and a refusal's body is kept up to 64 KiB.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, type Scope } from "effect"
import { createServer, type ServerResponse } from "node:http"
import type { AddressInfo } from "node:net"
import { Agent } from "undici"
import { compileForwardAuth } from "../../src/middleware/ForwardAuth.ts"
import { requestFrom } from "../support/pipelineRequest.ts"

const authServer = (answer: (res: ServerResponse) => void): Effect.Effect<string, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.callback<{ url: string; close: () => void }>((resume) => {
      const server = createServer((_req, res) => answer(res))
      server.listen(0, "127.0.0.1", () => resume(Effect.succeed({
        url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/verify`,
        close: () => {
          server.closeAllConnections()
          server.close()
        }
      })))
    }),
    (s) => Effect.sync(s.close)
  ).pipe(Effect.map((s) => s.url))

const agent = Effect.acquireRelease(Effect.sync(() => new Agent()), (a) => Effect.promise(() => a.close()))

describe("forward_auth step", () => {
  it.effect("a listed response header the auth service does not send is not set; the ones it sends are, repeated ones joined", () =>
    Effect.gen(function*() {
      const url = yield* authServer((res) => {
        res.setHeader("x-user-id", "u1")
        res.setHeader("x-groups", ["a", "b"])
        res.writeHead(204)
        res.end()
      })
      const step = compileForwardAuth({ url, response_headers: ["X-User-Id", "x-groups", "x-missing"] }, yield* agent)
      const { request, set } = requestFrom("10.0.0.1")
      const exit = yield* Effect.exit(step(request, () => Effect.void))
      assert.isTrue(Exit.isSuccess(exit))
      assert.deepStrictEqual(set, { "x-user-id": "u1", "x-groups": "a, b" })
      assert.isFalse(Object.hasOwn(set, "x-missing"))
    }))

  it.effect("a refusal's body reaches the client whole at exactly 64 KiB, and is cut past it", () =>
    Effect.gen(function*() {
      for (const [size, kept] of [[64 * 1024, 64 * 1024], [64 * 1024 + 1, 0]] as const) {
        const url = yield* authServer((res) => {
          res.writeHead(401, { "content-type": "text/plain", "www-authenticate": "Basic realm=x" })
          // One write: the whole body arrives as one chunk, which the cut then leaves out whole.
          res.end(Buffer.alloc(size, "x"))
        })
        const step = compileForwardAuth({ url }, yield* agent)
        const { replies, request } = requestFrom("10.0.0.1")
        yield* step(request, () => Effect.void)
        assert.strictEqual(replies[0].status, 401)
        assert.strictEqual(replies[0].headers?.["www-authenticate"], "Basic realm=x")
        assert.isAtMost(replies[0].body?.length ?? -1, 64 * 1024)
        if (kept > 0) assert.strictEqual(replies[0].body?.length, kept)
      }
    }))
})
