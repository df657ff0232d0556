import { assert, describe, it } from "@effect/vitest"
import type { Config } from "../../src/config/Schema.ts"
import { isLoopbackHost, openAdminWarning } from "../../src/admin/AdminExposure.ts"

const withAdmin = (admin: Config["admin"]) => ({ admin }) as unknown as Config

describe("AdminExposure", () => {
  it("loopback hosts: 127.0.0.0/8, ::1, an IPv4-mapped 127.x and localhost; not every interface, nor a name", () => {
    for (const host of ["127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1", "localhost"]) assert.isTrue(isLoopbackHost(host), host)
    for (const host of ["0.0.0.0", "::", "10.0.0.5", "::ffff:10.0.0.5", "128.0.0.1", "admin.internal", "localhost.example", ""]) assert.isFalse(isLoopbackHost(host), host)
  })

  it("warns about a token-less admin API beyond loopback only", () => {
    assert.isUndefined(openAdminWarning(withAdmin(undefined)))
    assert.isUndefined(openAdminWarning(withAdmin({ listen: "127.0.0.1:9901" })))
    assert.isUndefined(openAdminWarning(withAdmin({ listen: "[::1]:9901" })))
    assert.isUndefined(openAdminWarning(withAdmin({ listen: "0.0.0.0:9901", token: "secret" })))
    // Not an address at all: the config's own check reports it, not this warning.
    assert.isUndefined(openAdminWarning(withAdmin({ listen: "nonsense" })))
    for (const listen of ["0.0.0.0:9901", ":9901", "[::]:9901", "10.0.0.5:9901", "admin.internal:9901"]) {
      const warning = openAdminWarning(withAdmin({ listen }))
      assert.strictEqual(
        warning,
        `admin.listen ${listen} is not a loopback address and admin.token is not set: anyone who reaches it can read the config and replace it (PUT /config); set admin.token, or listen on 127.0.0.1`
      )
    }
  })
})
