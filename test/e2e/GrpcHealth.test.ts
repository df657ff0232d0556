/**
 * `health_check: { type: grpc }` against real grpc-js servers running the official
 * grpc.health.v1 service (grpc-health-check): SERVING is healthy, NOT_SERVING and an unknown
 * service are not, a server without the health service is not; the `service` asked about is the
 * one configured.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { HealthImplementation } from "grpc-health-check"
import { decodeConfig } from "../../src/config/ConfigLoader.ts"
import { startGrpcServer } from "../support/grpc.ts"
import { request, startGateway } from "../support/harness.ts"
import { eventually } from "../support/liveGateway.ts"

const check = { type: "grpc", interval: "50ms", timeout: "1s", healthy_threshold: 1, unhealthy_threshold: 1 }

const config = (urls: ReadonlyArray<string>, extra: Record<string, unknown> = {}) => ({
  admin: { listen: "127.0.0.1:0" },
  log: { level: "none", access_log: false },
  servers: [{ name: "grpc", listen: "127.0.0.1:0", protocol: "h2c", routes: [{ id: "all", upstream: "app" }] }],
  upstreams: { app: { endpoints: urls.map((url) => ({ url })), pool: { http2: true }, health_check: { ...check, ...extra } } }
})

const healthOf = (adminPort: number | undefined) =>
  request(`http://127.0.0.1:${adminPort}/upstreams`).pipe(
    Effect.map((r) => (JSON.parse(r.body).upstreams.app.endpoints as Array<{ healthy: boolean }>).map((e) => e.healthy))
  )

describe("gRPC health checks", () => {
  it.live("grpc.health.v1.Health/Check: SERVING is healthy; NOT_SERVING, and a server without the health service, are not; a change is followed", () =>
    Effect.gen(function*() {
      const health = new HealthImplementation({ "": "SERVING" })
      const serving = yield* startGrpcServer({}, undefined, (server) => health.addToServer(server))
      const bare = yield* startGrpcServer({})
      const gateway = yield* startGateway(config([serving.url, bare.url]))
      yield* eventually(healthOf(gateway.adminPort).pipe(Effect.map((h) => h[0] === true && h[1] === false)), "the serving one healthy, the bare one not")
      health.setStatus("", "NOT_SERVING")
      yield* eventually(healthOf(gateway.adminPort).pipe(Effect.map((h) => h[0] === false)), "NOT_SERVING marked unhealthy")
      health.setStatus("", "SERVING")
      yield* eventually(healthOf(gateway.adminPort).pipe(Effect.map((h) => h[0] === true)), "SERVING again")
    }))

  it.live("service: the check asks about that service (a long name too), and an unknown one is unhealthy", () =>
    Effect.gen(function*() {
      const long = `pkg.${"x".repeat(200)}.Service`
      const health = new HealthImplementation({ "": "NOT_SERVING", "test.Echo": "SERVING", [long]: "SERVING" })
      const server = yield* startGrpcServer({}, undefined, (s) => health.addToServer(s))
      const named = yield* startGateway(config([server.url], { service: "test.Echo" }))
      const longNamed = yield* startGateway(config([server.url], { service: long }))
      const unknown = yield* startGateway(config([server.url], { service: "no.Such" }))
      const whole = yield* startGateway(config([server.url]))
      yield* eventually(
        Effect.all([healthOf(named.adminPort), healthOf(longNamed.adminPort), healthOf(unknown.adminPort), healthOf(whole.adminPort)]).pipe(
          Effect.map(([a, b, c, d]) => a[0] === true && b[0] === true && c[0] === false && d[0] === false)
        ),
        "test.Echo and the long name healthy; no.Such and the server as a whole (NOT_SERVING) not"
      )
      health.setStatus("test.Echo", "NOT_SERVING")
      yield* eventually(healthOf(named.adminPort).pipe(Effect.map((h) => h[0] === false)), "test.Echo NOT_SERVING marked unhealthy")
    }))

  it("service is for type grpc, path and expect_* for type http", () => {
    const problems = (hc: Record<string, unknown>) => {
      const decoded = decodeConfig(config(["http://127.0.0.1:1"], hc), "t.yaml")
      return decoded._tag === "Failure" ? decoded.failure.problems.map((p) => p.message) : []
    }
    assert.deepStrictEqual(problems({ service: "a.B" }), [])
    assert.deepStrictEqual(problems({ type: "http", service: "a.B" }), ["service is for type: grpc"])
    assert.deepStrictEqual(problems({ path: "/health" }), ["path, expect_status and expect_body are for type: http (a gRPC check calls grpc.health.v1.Health/Check)"])
  })
})
