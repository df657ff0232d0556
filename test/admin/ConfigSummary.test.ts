/**
 * What `PUT /config` and `POST /config/validate` report: the sizes of a config and what a new one
 * changes against the running one, by listener name, route id and upstream name.
 */
import { describe, expect, it } from "vitest"
import { configChanges, summarizeConfig } from "../../src/admin/ConfigSummary.ts"
import { decoded } from "../support/effects.ts"

const base = {
  admin: { listen: "127.0.0.1:9901" },
  servers: [
    { name: "web", listen: "127.0.0.1:8080", routes: [{ id: "api", upstream: "app", match: { path: { prefix: "/api" } } }, { id: "all", upstream: "app" }] },
    { name: "internal", listen: "127.0.0.1:8081", routes: [{ id: "ops", upstream: "ops" }] }
  ],
  upstreams: {
    app: { endpoints: [{ url: "http://127.0.0.1:3000" }, { url: "http://127.0.0.1:3001" }] },
    ops: { endpoints: [{ url: "http://127.0.0.1:4000" }] }
  }
}

const none = { added: [], removed: [], changed: [] }

describe("summarizeConfig", () => {
  it("counts listeners, routes over all listeners, upstreams and endpoints over all upstreams", () => {
    expect(summarizeConfig(decoded(base))).toEqual({ listeners: 2, routes: 3, upstreams: 2, endpoints: 3 })
  })
})

describe("configChanges", () => {
  it("reports nothing for the same config", () => {
    expect(configChanges(decoded(base), decoded(base))).toEqual({ listeners: none, routes: none, upstreams: none, sections: [] })
  })

  it("reports routes added, removed and changed by id", () => {
    const next = {
      ...base,
      servers: [
        { ...base.servers[0], routes: [{ id: "api", upstream: "app", timeout: "5s" }, { id: "new", upstream: "app" }] },
        base.servers[1]
      ]
    }
    expect(configChanges(decoded(base), decoded(next)).routes).toEqual({ added: ["new"], removed: ["all"], changed: ["api"] })
  })

  it("a route moved to another listener is changed; the listeners' own settings are not", () => {
    const next = {
      ...base,
      servers: [{ ...base.servers[0], routes: [base.servers[0].routes[0]] }, { ...base.servers[1], routes: [...base.servers[1].routes, base.servers[0].routes[1]] }]
    }
    const changes = configChanges(decoded(base), decoded(next))
    expect(changes.routes).toEqual({ added: [], removed: [], changed: ["all"] })
    expect(changes.listeners).toEqual(none)
  })

  it("reports listeners by name: a new listen address is a change", () => {
    const next = { ...base, servers: [{ ...base.servers[0], listen: "127.0.0.1:9090" }, { ...base.servers[1], name: "ops" }] }
    expect(configChanges(decoded(base), decoded(next)).listeners).toEqual({ added: ["ops"], removed: ["internal"], changed: ["web"] })
  })

  it("reports upstreams added, removed and changed by name", () => {
    const next = {
      ...base,
      servers: [base.servers[0], { ...base.servers[1], routes: [{ id: "ops", upstream: "metrics" }] }],
      upstreams: { app: { ...base.upstreams.app, balance: "least_request" }, metrics: base.upstreams.ops }
    }
    expect(configChanges(decoded(base), decoded(next)).upstreams).toEqual({ added: ["metrics"], removed: ["ops"], changed: ["app"] })
  })

  it("names the other top-level sections that differ, such as a new admin token", () => {
    const next = { ...base, admin: { ...base.admin, token: "t" }, log: { level: "warn" } }
    expect(configChanges(decoded(base), decoded(next)).sections).toEqual(["admin", "log"])
  })
})
