import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { type BalanceAlgorithm, type HashOn, makeBalancer } from "../../src/upstream/Balancer.ts"
import { type EndpointState, makeEndpointState, type PickContext } from "../../src/upstream/Endpoint.ts"

const ALGORITHMS: ReadonlyArray<BalanceAlgorithm> = [
  "round_robin",
  "weighted",
  "random",
  "least_request",
  "ewma",
  "consistent_hash"
]

const endpointsOf = (weights: ReadonlyArray<number>): Array<EndpointState> =>
  weights.map((w, i) => makeEndpointState(`http://127.0.0.1:${3000 + i}`, w))

const ctxOf = (
  clientIp: string,
  options: { readonly path?: string; readonly headers?: Record<string, string> } = {}
): PickContext => ({
  clientIp,
  path: options.path ?? "/",
  header: (name) => options.headers?.[name]
})

const CTX = ctxOf("10.0.0.1")

/** Deterministic [0, 1) source from a seed (32-bit LCG, Numerical Recipes constants). */
const lcg = (seed: number): () => number => {
  let s = seed >>> 0
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0
    return s / 4294967296
  }
}

const countPicks = (pick: () => EndpointState | undefined, times: number): Map<EndpointState, number> => {
  const counts = new Map<EndpointState, number>()
  for (let i = 0; i < times; i++) {
    const e = pick()
    if (e !== undefined) counts.set(e, (counts.get(e) ?? 0) + 1)
  }
  return counts
}

const ipKey = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((p) => p.join("."))

const weightsArb = fc.array(fc.integer({ min: 1, max: 10 }), { minLength: 1, maxLength: 6 })

describe("round_robin", () => {
  it("cycles in order, ignoring weight", () => {
    const eps = endpointsOf([5, 1, 1])
    const b = makeBalancer({ algorithm: "round_robin", endpoints: eps })
    const ids = Array.from({ length: 6 }, () => b.pick(CTX)!.id)
    expect(ids).toEqual([eps[0].id, eps[1].id, eps[2].id, eps[0].id, eps[1].id, eps[2].id])
  })

  it("gives each endpoint exactly k picks over n*k picks", () => {
    fc.assert(
      fc.property(weightsArb, fc.integer({ min: 1, max: 20 }), (weights, k) => {
        const eps = endpointsOf(weights)
        const b = makeBalancer({ algorithm: "round_robin", endpoints: eps })
        const counts = countPicks(() => b.pick(CTX), eps.length * k)
        for (const e of eps) expect(counts.get(e)).toBe(k)
      })
    )
  })

  it("never returns an ineligible endpoint and stays fair among the rest", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 2, max: 8 }),
        fc.nat(),
        fc.integer({ min: 1, max: 20 }),
        (n, skipSeed, k) => {
          const eps = endpointsOf(Array.from({ length: n }, () => 1))
          const skipped = eps[skipSeed % n]
          const b = makeBalancer({ algorithm: "round_robin", endpoints: eps })
          const counts = countPicks(() => b.pick(CTX, (e) => e !== skipped), (n - 1) * k)
          expect(counts.has(skipped)).toBe(false)
          for (const e of eps) if (e !== skipped) expect(counts.get(e)).toBe(k)
        }
      )
    )
  })
})

describe("weighted (smooth weighted round robin)", () => {
  it("interleaves weights 5,1,1 as nginx does: a a b a c a a", () => {
    const eps = endpointsOf([5, 1, 1])
    const b = makeBalancer({ algorithm: "weighted", endpoints: eps })
    const names = new Map(eps.map((e, i) => [e, "abc"[i]]))
    const seq = Array.from({ length: 14 }, () => names.get(b.pick(CTX)!)).join("")
    expect(seq).toBe("aabacaa".repeat(2))
  })

  it("picks as nginx's smooth weighted round robin does, each endpoint exactly k*weight times over k full cycles, never far from its share", () => {
    fc.assert(
      fc.property(weightsArb, fc.integer({ min: 1, max: 5 }), (weights, k) => {
        const eps = endpointsOf(weights)
        const total = weights.reduce((a, b) => a + b, 0)
        const b = makeBalancer({ algorithm: "weighted", endpoints: eps })
        const counts = new Map<EndpointState, number>(eps.map((e) => [e, 0]))
        // nginx's algorithm as it defines it (ngx_http_upstream_get_peer): every weight is added
        // to its current, the highest current (the first of equal ones) is picked and pays the total.
        const current = weights.map(() => 0)
        for (let t = 1; t <= k * total; t++) {
          weights.forEach((w, i) => (current[i] += w))
          let best = 0
          for (let i = 1; i < weights.length; i++) if (current[i] > current[best]) best = i
          current[best] -= total
          const e = b.pick(CTX)!
          expect(e).toBe(eps[best])
          counts.set(e, counts.get(e)! + 1)
          // Smooth: no prefix strays far from the share. Not within 1: weights 3,1,7,7,1,7 stray
          // 1.04 under nginx's own algorithm; 300,000 random cases of up to 6 weights of 1..10 never
          // strayed more than 1.07.
          for (const x of eps) expect(Math.abs(counts.get(x)! - (t * x.weight) / total)).toBeLessThan(1.5)
        }
        for (const e of eps) expect(counts.get(e)).toBe(k * e.weight)
      })
    )
  })

  it("redistributes an ineligible endpoint's share by weight among the rest", () => {
    fc.assert(
      fc.property(weightsArb.filter((w) => w.length >= 2), fc.nat(), fc.integer({ min: 1, max: 5 }), (weights, skipSeed, k) => {
        const eps = endpointsOf(weights)
        const skipped = eps[skipSeed % eps.length]
        const rest = eps.filter((e) => e !== skipped)
        const total = rest.reduce((a, e) => a + e.weight, 0)
        const b = makeBalancer({ algorithm: "weighted", endpoints: eps })
        const counts = countPicks(() => b.pick(CTX, (e) => e !== skipped), k * total)
        expect(counts.has(skipped)).toBe(false)
        for (const e of rest) expect(counts.get(e)).toBe(k * e.weight)
      })
    )
  })
})

describe("random", () => {
  it("converges to weight shares with a seeded source", () => {
    fc.assert(
      fc.property(weightsArb, fc.integer(), (weights, seed) => {
        const eps = endpointsOf(weights)
        const total = weights.reduce((a, b) => a + b, 0)
        const picks = 20_000
        const b = makeBalancer({ algorithm: "random", endpoints: eps, random: lcg(seed) })
        const counts = countPicks(() => b.pick(CTX), picks)
        for (const e of eps) {
          expect(Math.abs((counts.get(e) ?? 0) / picks - e.weight / total)).toBeLessThan(0.025)
        }
      }),
      { numRuns: 50 }
    )
  })

  it("maps the random source onto weight ranges in endpoint order", () => {
    const eps = endpointsOf([1, 3])
    let r = 0
    const b = makeBalancer({ algorithm: "random", endpoints: eps, random: () => r })
    r = 0.2
    expect(b.pick(CTX)).toBe(eps[0])
    r = 0.3
    expect(b.pick(CTX)).toBe(eps[1])
    r = 0.9999999999999999
    expect(b.pick(CTX)).toBe(eps[1])
  })
})

describe("least_request (power of two choices)", () => {
  it("never picks the unique busiest eligible endpoint", () => {
    fc.assert(
      fc.property(
        fc.array(fc.nat({ max: 50 }), { minLength: 2, maxLength: 8 }),
        fc.integer(),
        (actives, seed) => {
          const eps = endpointsOf(actives.map(() => 1))
          eps.forEach((e, i) => (e.active = actives[i]))
          const max = Math.max(...actives)
          const busiest = eps.filter((e) => e.active === max)
          fc.pre(busiest.length === 1)
          const b = makeBalancer({ algorithm: "least_request", endpoints: eps, random: lcg(seed) })
          const counts = countPicks(() => b.pick(CTX), 200)
          expect(counts.has(busiest[0])).toBe(false)
        }
      )
    )
  })

  it("sends the idle endpoint about 2/n of the picks, more than any other", () => {
    fc.assert(
      fc.property(fc.integer({ min: 3, max: 8 }), fc.nat(), fc.integer(), (n, idleSeed, seed) => {
        const eps = endpointsOf(Array.from({ length: n }, () => 1))
        for (const e of eps) e.active = 10
        const idle = eps[idleSeed % n]
        idle.active = 0
        const picks = 5_000
        const b = makeBalancer({ algorithm: "least_request", endpoints: eps, random: lcg(seed) })
        const counts = countPicks(() => b.pick(CTX), picks)
        const idleShare = counts.get(idle)! / picks
        expect(Math.abs(idleShare - 2 / n)).toBeLessThan(0.04)
        for (const e of eps) if (e !== idle) expect(counts.get(e) ?? 0).toBeLessThan(counts.get(idle)!)
      }),
      { numRuns: 50 }
    )
  })

  it("samples two distinct endpoints, so with two the less busy always wins", () => {
    fc.assert(
      fc.property(fc.integer(), (seed) => {
        const eps = endpointsOf([1, 1])
        eps[0].active = 3
        eps[1].active = 2
        const b = makeBalancer({ algorithm: "least_request", endpoints: eps, random: lcg(seed) })
        const counts = countPicks(() => b.pick(CTX), 50)
        expect(counts.get(eps[1])).toBe(50)
      })
    )
  })
})

describe("ewma", () => {
  it("sends far fewer picks to a slow endpoint than to a fast one", () => {
    fc.assert(
      fc.property(fc.integer({ min: 2, max: 6 }), fc.integer(), (n, seed) => {
        const eps = endpointsOf(Array.from({ length: n }, () => 1))
        const b = makeBalancer({ algorithm: "ewma", endpoints: eps, random: lcg(seed) })
        const [slow, ...fast] = eps
        b.observe(slow, 100)
        for (const e of fast) b.observe(e, 1)
        const counts = countPicks(() => b.pick(CTX), 1_000)
        for (const e of fast) expect(counts.get(slow) ?? 0).toBeLessThan((counts.get(e) ?? 0) / 10)
      })
    )
  })

  it("weighs latency by in-flight requests: a busy fast endpoint loses to an idle slow one", () => {
    const [slow, fast] = endpointsOf([1, 1])
    const b = makeBalancer({ algorithm: "ewma", endpoints: [slow, fast], random: lcg(1) })
    b.observe(slow, 100)
    b.observe(fast, 1)
    fast.active = 50 // cost 1 * 51 < 100 * 1
    expect(b.pick(CTX)).toBe(fast)
    fast.active = 200 // cost 1 * 201 > 100 * 1
    expect(b.pick(CTX)).toBe(slow)
  })

  it("sets the average from the first sample, then moves 30% towards each new one", () => {
    const [e] = endpointsOf([1])
    const b = makeBalancer({ algorithm: "ewma", endpoints: [e] })
    b.observe(e, 100)
    expect(e.ewma).toBe(100)
    b.observe(e, 0)
    expect(e.ewma).toBeCloseTo(70)
    b.observe(e, Number.NaN)
    expect(e.ewma).toBeCloseTo(70)
  })

  it("treats unsampled endpoints as fast so they get probed", () => {
    const [sampled, fresh] = endpointsOf([1, 1])
    const b = makeBalancer({ algorithm: "ewma", endpoints: [sampled, fresh], random: lcg(7) })
    b.observe(sampled, 20)
    expect(b.pick(CTX)).toBe(fresh)
  })
})

describe("consistent_hash", () => {
  it("maps the same key to the same endpoint, across balancer instances too", () => {
    fc.assert(
      fc.property(weightsArb, fc.array(ipKey, { minLength: 1, maxLength: 50 }), (weights, keys) => {
        const eps = endpointsOf(weights)
        const b1 = makeBalancer({ algorithm: "consistent_hash", endpoints: eps })
        const b2 = makeBalancer({ algorithm: "consistent_hash", endpoints: [...eps].reverse() })
        for (const key of keys) {
          const first = b1.pick(ctxOf(key))
          expect(b1.pick(ctxOf(key))).toBe(first)
          expect(b2.pick(ctxOf(key))).toBe(first)
        }
      })
    )
  })

  it("removing one of N endpoints moves only that endpoint's keys (about 1/N of them)", () => {
    fc.assert(
      fc.property(fc.integer({ min: 3, max: 10 }), fc.nat(), fc.integer(), fc.nat(1000), (n, removeSeed, seed, portBase) => {
        const eps = Array.from({ length: n }, (_, i) => makeEndpointState(`http://10.0.0.${i + 1}:${8000 + portBase}`, 1))
        const removed = eps[removeSeed % n]
        const before = makeBalancer({ algorithm: "consistent_hash", endpoints: eps })
        const after = makeBalancer({ algorithm: "consistent_hash", endpoints: eps.filter((e) => e !== removed) })
        const random = lcg(seed)
        let moved = 0
        const keys = 2_000
        for (let k = 0; k < keys; k++) {
          const ctx = ctxOf(`${(random() * 2 ** 32) >>> 0}`)
          const owner = before.pick(ctx)!
          const now = after.pick(ctx)!
          if (owner === removed) {
            moved++
          } else {
            expect(now).toBe(owner)
          }
        }
        expect(moved / keys).toBeGreaterThanOrEqual(0.5 / n)
        expect(moved / keys).toBeLessThanOrEqual(2 / n)
      }),
      { numRuns: 40 }
    )
  })

  it("steps over an ineligible owner deterministically, leaving other keys in place", () => {
    fc.assert(
      fc.property(fc.integer({ min: 2, max: 8 }), fc.nat(), fc.array(ipKey, { minLength: 1, maxLength: 100 }), (n, downSeed, keys) => {
        const eps = endpointsOf(Array.from({ length: n }, () => 1))
        const down = eps[downSeed % n]
        const up = (e: EndpointState) => e !== down
        const b = makeBalancer({ algorithm: "consistent_hash", endpoints: eps })
        for (const key of keys) {
          const owner = b.pick(ctxOf(key))!
          const fallback = b.pick(ctxOf(key), up)!
          expect(fallback).not.toBe(down)
          if (owner !== down) expect(fallback).toBe(owner)
          expect(b.pick(ctxOf(key), up)).toBe(fallback)
        }
      })
    )
  })

  it("spreads an ineligible owner's keys over the remaining endpoints", () => {
    const eps = endpointsOf([1, 1, 1, 1])
    const down = eps[0]
    const b = makeBalancer({ algorithm: "consistent_hash", endpoints: eps })
    const counts = new Map<EndpointState, number>()
    for (let k = 0; k < 4_000; k++) {
      const ctx = ctxOf(`key-${k}`)
      if (b.pick(ctx) !== down) continue
      const e = b.pick(ctx, (x) => x !== down)!
      counts.set(e, (counts.get(e) ?? 0) + 1)
    }
    expect(counts.size).toBe(3)
  })

  it("finds the last eligible endpoint whatever the key", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 10 }), fc.nat(), ipKey, (n, liveSeed, key) => {
        const eps = endpointsOf(Array.from({ length: n }, () => 1))
        const live = eps[liveSeed % n]
        const b = makeBalancer({ algorithm: "consistent_hash", endpoints: eps })
        expect(b.pick(ctxOf(key), (e) => e === live)).toBe(live)
      })
    )
  })

  it("respects weights: a weight-3 endpoint owns about 3x the keys", () => {
    const eps = endpointsOf([3, 1, 1, 1])
    const b = makeBalancer({ algorithm: "consistent_hash", endpoints: eps })
    let k = 0
    const counts = countPicks(() => b.pick(ctxOf(`key-${k++}`)), 12_000)
    expect(counts.get(eps[0])! / 12_000).toBeGreaterThan(0.4)
    expect(counts.get(eps[0])! / 12_000).toBeLessThan(0.6)
  })

  describe("key extraction", () => {
    const eps = endpointsOf([1, 1, 1, 1, 1, 1, 1, 1])
    // The endpoint a plain ip-keyed ring gives for `key`, as the reference.
    const ownerOf = (key: string) => makeBalancer({ algorithm: "consistent_hash", endpoints: eps }).pick(ctxOf(key))
    const pickWith = (hashOn: HashOn | undefined, ctx: PickContext) =>
      makeBalancer({ algorithm: "consistent_hash", endpoints: eps, ...(hashOn ? { hashOn } : {}) }).pick(ctx)
    const keyArb = fc.string({ minLength: 1, maxLength: 30 }).filter((s) => !/[;=\s]/.test(s))

    it("ip (also the default) keys on the client IP", () => {
      fc.assert(
        fc.property(ipKey, fc.string(), (ip, path) => {
          expect(pickWith({ _tag: "ip" }, ctxOf(ip, { path }))).toBe(ownerOf(ip))
          expect(pickWith(undefined, ctxOf(ip, { path }))).toBe(ownerOf(ip))
        })
      )
    })

    it("path keys on the path, so different IPs with the same path agree", () => {
      fc.assert(
        fc.property(fc.string({ minLength: 1 }).map((s) => `/${s}`), ipKey, ipKey, (path, ip1, ip2) => {
          const b = makeBalancer({ algorithm: "consistent_hash", endpoints: eps, hashOn: { _tag: "path" } })
          expect(b.pick(ctxOf(ip1, { path }))).toBe(ownerOf(path))
          expect(b.pick(ctxOf(ip2, { path }))).toBe(ownerOf(path))
        })
      )
    })

    it("header keys on that header and falls back to the client IP when it is missing or empty", () => {
      fc.assert(
        fc.property(keyArb, ipKey, (value, ip) => {
          const hashOn: HashOn = { _tag: "header", name: "x-user" }
          expect(pickWith(hashOn, ctxOf(ip, { headers: { "x-user": value } }))).toBe(ownerOf(value))
          expect(pickWith(hashOn, ctxOf(ip, { headers: { "x-other": value } }))).toBe(ownerOf(ip))
          expect(pickWith(hashOn, ctxOf(ip, { headers: { "x-user": "" } }))).toBe(ownerOf(ip))
        })
      )
    })

    it("cookie keys on that cookie's value wherever it sits in the Cookie header", () => {
      fc.assert(
        fc.property(keyArb, ipKey, fc.constantFrom("", "a=1; ", "sessionx=9;", "xsession=7;  ", "theme=dark;\t"), (value, ip, before) => {
          const hashOn: HashOn = { _tag: "cookie", name: "session" }
          const cookie = `${before}session=${value}; other=zzz`
          expect(pickWith(hashOn, ctxOf(ip, { headers: { cookie } }))).toBe(ownerOf(value))
          expect(pickWith(hashOn, ctxOf(ip, { headers: { cookie: `${before}session=${value}` } }))).toBe(ownerOf(value))
        })
      )
    })

    it("cookie falls back to the client IP when the cookie is absent", () => {
      fc.assert(
        fc.property(ipKey, fc.constantFrom(undefined, "", "other=1", "sessionid=1; xsession=2", "session"), (ip, cookie) => {
          const headers: Record<string, string> = cookie === undefined ? {} : { cookie }
          expect(pickWith({ _tag: "cookie", name: "session" }, ctxOf(ip, { headers }))).toBe(ownerOf(ip))
        })
      )
    })
  })
})

describe("every algorithm", () => {
  it.each(ALGORITHMS)("%s returns undefined when nothing is eligible or there are no endpoints", (algorithm) => {
    const b = makeBalancer({ algorithm, endpoints: endpointsOf([1, 2, 3]) })
    expect(b.algorithm).toBe(algorithm)
    expect(b.pick(CTX, () => false)).toBeUndefined()
    expect(makeBalancer({ algorithm, endpoints: [] }).pick(CTX)).toBeUndefined()
  })

  it("never returns an ineligible endpoint, for any algorithm, eligibility set or load", () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...ALGORITHMS),
        fc.array(fc.record({ weight: fc.integer({ min: 1, max: 10 }), active: fc.nat(20), ok: fc.boolean() }), { minLength: 1, maxLength: 8 }),
        fc.integer(),
        fc.array(ipKey, { minLength: 1, maxLength: 20 }),
        (algorithm, specs, seed, keys) => {
          const eps = endpointsOf(specs.map((s) => s.weight))
          eps.forEach((e, i) => (e.active = specs[i].active))
          const ok = new Set(eps.filter((_, i) => specs[i].ok))
          const b = makeBalancer({ algorithm, endpoints: eps, random: lcg(seed) })
          for (const key of keys) {
            const e = b.pick(ctxOf(key), (x) => ok.has(x))
            if (ok.size === 0) expect(e).toBeUndefined()
            else expect(ok.has(e!)).toBe(true)
          }
        }
      )
    )
  })

  it("returns the only eligible endpoint", () => {
    fc.assert(
      fc.property(fc.constantFrom(...ALGORITHMS), fc.integer({ min: 1, max: 8 }), fc.nat(), fc.integer(), (algorithm, n, liveSeed, seed) => {
        const eps = endpointsOf(Array.from({ length: n }, (_, i) => i + 1))
        const live = eps[liveSeed % n]
        const b = makeBalancer({ algorithm, endpoints: eps, random: lcg(seed) })
        for (let i = 0; i < 5; i++) expect(b.pick(CTX, (e) => e === live)).toBe(live)
      })
    )
  })
})

// ---------------------------------------------------------------------------------------------
// Exact rules: scripted random sources, the gateway's own kind of eligibility filter (one that
// reads the endpoint's fields, as `healthy && !ejected` does), and the edges of each rule.

/** A random source answering `values` in order, then repeating the last one. */
const scripted = (values: ReadonlyArray<number>): () => number => {
  let i = 0
  return () => values[Math.min(i++, values.length - 1)]
}

/** A value in [0, 1), spread evenly (fc.double favours the ends of its range). */
const unitArb = fc.nat(9_999).map((n) => n / 10_000)

/** The gateway's eligibility filter: up by health checks and not ejected. */
const isUp = (e: EndpointState): boolean => e.healthy && !e.ejected

describe("makeEndpointState", () => {
  it("starts an endpoint in rotation: healthy, not ejected, nothing in flight, no latency sample", () => {
    const e = makeEndpointState("http://127.0.0.1:3000", 4)
    expect(e).toEqual({ id: "http://127.0.0.1:3000", weight: 4, active: 0, ewma: 0, healthy: true, ejected: false })
    // So the gateway's filter admits a freshly made endpoint.
    const b = makeBalancer({ algorithm: "round_robin", endpoints: [e] })
    expect(b.pick(CTX, isUp)).toBe(e)
  })
})

describe("the balancer's own copy of the endpoint list", () => {
  it.each(["round_robin", "weighted", "random", "least_request", "ewma"] as const)(
    "%s: a caller reordering or growing its array afterwards changes no pick",
    (algorithm) => {
      fc.assert(
        fc.property(weightsArb.filter((w) => w.length >= 2), fc.integer(), fc.array(ipKey, { minLength: 20, maxLength: 20 }), (weights, seed, keys) => {
          const eps = endpointsOf(weights)
          eps.forEach((e, i) => (e.active = i % 3))
          const untouched = makeBalancer({ algorithm, endpoints: eps.slice(), random: lcg(seed) })
          const mine = eps.slice()
          const shared = makeBalancer({ algorithm, endpoints: mine, random: lcg(seed) })
          mine.reverse()
          mine.push(makeEndpointState("http://127.0.0.1:9999", 50))
          for (const key of keys) {
            const eligible = (e: EndpointState) => e !== eps[0]
            expect(shared.pick(ctxOf(key), eligible)).toBe(untouched.pick(ctxOf(key), eligible))
            expect(shared.pick(ctxOf(key))).toBe(untouched.pick(ctxOf(key)))
          }
        }),
        { numRuns: 30 }
      )
    }
  )
})

describe("the balancer's own copy of the endpoint list: consistent_hash", () => {
  it("a caller reordering or growing its array afterwards changes no fallback scan", () => {
    // 20 endpoints, 2 of them eligible: about 1 key in 5 misses on all 16 rehashes and is
    // found by the scan over the list, whose order the caller must not be able to change.
    fc.assert(
      fc.property(fc.uniqueArray(fc.nat(19), { minLength: 2, maxLength: 2 }), fc.array(ipKey, { minLength: 40, maxLength: 40 }), (upIndexes, keys) => {
        const eps = endpointsOf(Array.from({ length: 20 }, () => 1))
        const up = new Set(upIndexes.map((i) => eps[i]))
        const untouched = makeBalancer({ algorithm: "consistent_hash", endpoints: eps.slice() })
        const mine = eps.slice()
        const shared = makeBalancer({ algorithm: "consistent_hash", endpoints: mine })
        mine.reverse()
        mine.push(makeEndpointState("http://127.0.0.1:9999", 1))
        for (const key of keys) expect(shared.pick(ctxOf(key), (e) => up.has(e))).toBe(untouched.pick(ctxOf(key), (e) => up.has(e)))
      }),
      { numRuns: 30 }
    )
  })
})

describe("latency samples", () => {
  it("counts a negative sample (a clock step) as 0 ms, never as a negative cost", () => {
    const [a, b] = endpointsOf([1, 1])
    const balancer = makeBalancer({ algorithm: "ewma", endpoints: [a, b], random: lcg(3) })
    balancer.observe(a, 100)
    balancer.observe(a, -1000)
    expect(a.ewma).toBeCloseTo(70) // 100 + 0.3 * (0 - 100)
    balancer.observe(b, 50)
    // b (50 ms) is cheaper than a (70 ms): a negative-cost a would win every pick.
    for (let i = 0; i < 10; i++) expect(balancer.pick(CTX)).toBe(b)
    const [fresh] = endpointsOf([1])
    balancer.observe(fresh, -5)
    expect(fresh.ewma).toBe(0)
  })
})

describe("random: exact mapping", () => {
  it("maps the source onto the eligible endpoints' weight ranges only, the top of a range going to the next", () => {
    // Weights 1, 1, 2 with the first one down: the eligible total is 3, so [0, 1/3) -> second, [1/3, 1) -> third.
    const eps = endpointsOf([1, 1, 2])
    eps[0].healthy = false
    let r = 0
    const b = makeBalancer({ algorithm: "random", endpoints: eps, random: () => r })
    for (const [value, expected] of [[0, 1], [0.3, 1], [1 / 3, 2], [0.5, 2], [0.99, 2]] as const) {
      r = value
      expect(b.pick(CTX, isUp), `random() = ${value}`).toBe(eps[expected])
    }
    eps[0].healthy = true
    // All up: total 4, the second's range is [1/4, 2/4): its top (0.5) is the third's.
    for (const [value, expected] of [[0, 0], [0.25, 1], [0.49, 1], [0.5, 2]] as const) {
      r = value
      expect(b.pick(CTX, isUp), `random() = ${value}, all up`).toBe(eps[expected])
      expect(b.pick(CTX), `random() = ${value}, no filter`).toBe(eps[expected])
    }
  })

  it("picks the endpoint whose cumulative eligible weight range holds random() * eligible total", () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ weight: fc.integer({ min: 1, max: 10 }), up: fc.boolean() }), { minLength: 1, maxLength: 8 }),
        unitArb,
        (specs, r) => {
          const eps = endpointsOf(specs.map((s) => s.weight))
          eps.forEach((e, i) => (e.healthy = specs[i].up))
          const up = eps.filter((e) => e.healthy)
          const b = makeBalancer({ algorithm: "random", endpoints: eps, random: () => r })
          const total = up.reduce((sum, e) => sum + e.weight, 0)
          let acc = 0
          const expected = up.find((e) => r * total < (acc += e.weight))
          expect(b.pick(CTX, isUp)).toBe(expected)
        }
      )
    )
  })

  it("shares the picks by weight among the eligible endpoints only", () => {
    fc.assert(
      fc.property(weightsArb.filter((w) => w.length >= 2), fc.nat(), fc.integer(), (weights, downSeed, seed) => {
        const eps = endpointsOf(weights)
        eps[downSeed % eps.length].ejected = true
        const up = eps.filter(isUp)
        const total = up.reduce((sum, e) => sum + e.weight, 0)
        const picks = 10_000
        const b = makeBalancer({ algorithm: "random", endpoints: eps, random: lcg(seed) })
        const counts = countPicks(() => b.pick(CTX, isUp), picks)
        for (const e of up) expect(Math.abs((counts.get(e) ?? 0) / picks - e.weight / total)).toBeLessThan(0.03)
      }),
      { numRuns: 30 }
    )
  })

  it("a source that returns 1 (the top of a closed range) still picks the last endpoint", () => {
    const eps = endpointsOf([1, 2, 3])
    const b = makeBalancer({ algorithm: "random", endpoints: eps, random: () => 1 })
    expect(b.pick(CTX)).toBe(eps[2])
    expect(b.pick(CTX, isUp)).toBe(eps[2])
  })
})

describe("least_request / ewma: exact power of two choices", () => {
  /**
   * The rule: the first sample is eligible endpoint floor(r1 * m), the second is eligible
   * endpoint floor(r2 * (m - 1)) of the others (skipping the first), and the cheaper wins,
   * a tie going to the first sample.
   */
  const expectedPick = (up: ReadonlyArray<EndpointState>, r1: number, r2: number, cost: (e: EndpointState) => number) => {
    const m = up.length
    if (m === 0) return undefined
    const i = Math.floor(r1 * m)
    if (m === 1) return up[0]
    let j = Math.floor(r2 * (m - 1))
    if (j >= i) j++
    return cost(up[i]) <= cost(up[j]) ? up[i] : up[j]
  }

  it.each([
    ["least_request", (e: EndpointState) => e.active],
    ["ewma", (e: EndpointState) => (e.ewma || 1) * (e.active + 1)]
  ] as const)("%s picks the cheaper of the two sampled eligible endpoints, ties to the first", (algorithm, cost) => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ active: fc.nat(3), ewma: fc.constantFrom(0, 1, 5, 20), up: fc.boolean() }), { minLength: 1, maxLength: 7 }),
        unitArb,
        unitArb,
        fc.boolean(),
        (specs, r1, r2, filtered) => {
          const eps = endpointsOf(specs.map(() => 1))
          eps.forEach((e, i) => {
            e.active = specs[i].active
            e.ewma = specs[i].ewma
            e.healthy = filtered ? specs[i].up : true
          })
          const b = makeBalancer({ algorithm, endpoints: eps, random: scripted([r1, r2]) })
          const picked = filtered ? b.pick(CTX, isUp) : b.pick(CTX)
          expect(picked).toBe(expectedPick(eps.filter(isUp), r1, r2, cost))
        }
      )
    )
  })

  it("a tie keeps the first sample", () => {
    const eps = endpointsOf([1, 1, 1])
    const b = makeBalancer({ algorithm: "least_request", endpoints: eps, random: scripted([0, 0]) })
    // First sample eps[0]; second floor(0 * 2) = 0 of the others: eps[1]. Both idle.
    expect(b.pick(CTX)).toBe(eps[0])
  })

  it("with a filter, two eligible endpoints: the less busy always wins, the ineligible never", () => {
    fc.assert(
      fc.property(fc.integer(), fc.nat({ max: 2 }), (seed, downIndex) => {
        const eps = endpointsOf([1, 1, 1])
        // Busiest first, so the less busy eligible endpoint is never the first eligible one.
        eps.forEach((e, i) => (e.active = 10 * (2 - i)))
        eps[downIndex].healthy = false
        const idle = eps.filter(isUp)[1]
        const b = makeBalancer({ algorithm: "least_request", endpoints: eps, random: lcg(seed) })
        const counts = countPicks(() => b.pick(CTX, isUp), 50)
        expect(counts.get(idle)).toBe(50)
      })
    )
  })

  it("the only eligible endpoint is picked even when it is the busiest", () => {
    fc.assert(
      fc.property(fc.constantFrom("least_request" as const, "ewma" as const), fc.integer({ min: 2, max: 6 }), fc.nat(), fc.integer(), (algorithm, n, liveSeed, seed) => {
        const eps = endpointsOf(Array.from({ length: n }, () => 1))
        const live = eps[liveSeed % n]
        for (const e of eps) e.healthy = e === live
        live.active = 100
        const b = makeBalancer({ algorithm, endpoints: eps, random: lcg(seed) })
        for (let i = 0; i < 5; i++) expect(b.pick(CTX, isUp)).toBe(live)
      })
    )
  })

  it.each(["least_request", "ewma"] as const)("%s with a single endpoint and no filter picks it", (algorithm) => {
    const [only] = endpointsOf([1])
    only.active = 7
    const b = makeBalancer({ algorithm, endpoints: [only], random: lcg(1) })
    expect(b.pick(CTX)).toBe(only)
  })

  it.each(["least_request", "ewma"] as const)("%s with a source that returns 1 still picks among the endpoints", (algorithm) => {
    const eps = endpointsOf([1, 1, 1])
    eps[0].active = 5
    eps[1].active = 5
    const b = makeBalancer({ algorithm, endpoints: eps, random: () => 1 })
    // First sample the last endpoint (idle), second the one before it.
    expect(b.pick(CTX)).toBe(eps[2])
    expect(b.pick(CTX, isUp)).toBe(eps[2])
  })
})

describe("consistent_hash: the exact fallback when the owner is ineligible", () => {
  /** The plain ring owner of `key` (no filter), which is what `HashRing.get(ring, key)` gives. */
  const ringOwner = (b: ReturnType<typeof makeBalancer>, key: string) => b.pick(ctxOf(key))!

  /** The documented rule: the owner; else the first eligible owner of key#1..key#16; else a scan from key#0's owner. */
  const expectedPick = (b: ReturnType<typeof makeBalancer>, eps: ReadonlyArray<EndpointState>, key: string, ok: (e: EndpointState) => boolean) => {
    const owner = ringOwner(b, key)
    if (ok(owner)) return owner
    for (let attempt = 1; attempt <= 16; attempt++) {
      const e = ringOwner(b, `${key}#${attempt}`)
      if (ok(e)) return e
    }
    const offset = eps.indexOf(ringOwner(b, `${key}#0`))
    for (let step = 0; step < eps.length; step++) {
      const e = eps[(offset + step) % eps.length]
      if (ok(e)) return e
    }
    return undefined
  }

  it("steps to the first eligible owner of key#1..key#16, then scans on from key#0's owner", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 8, max: 24 }),
        fc.uniqueArray(fc.nat(23), { minLength: 1, maxLength: 3 }),
        fc.array(fc.string({ minLength: 1, maxLength: 12 }), { minLength: 50, maxLength: 50 }),
        (n, upSeeds, keys) => {
          const eps = endpointsOf(Array.from({ length: n }, () => 1))
          const upSet = new Set(upSeeds.map((s) => eps[s % n]))
          for (const e of eps) e.healthy = upSet.has(e)
          const b = makeBalancer({ algorithm: "consistent_hash", endpoints: eps })
          for (const key of keys) expect(b.pick(ctxOf(key), isUp), key).toBe(expectedPick(b, eps, key, isUp))
        }
      ),
      { numRuns: 60 }
    )
  })

  it("exercises every branch of that rule: the 16th rehash, and the scan", () => {
    // A fixed case per branch, so that the property above is not relied on to hit them by chance.
    const eps = endpointsOf(Array.from({ length: 20 }, () => 1))
    const b = makeBalancer({ algorithm: "consistent_hash", endpoints: eps })
    const up = new Set([eps[3], eps[11]])
    const ok = (e: EndpointState) => up.has(e)
    const firstEligibleAttempt = (key: string) => {
      for (let attempt = 1; attempt <= 16; attempt++) if (ok(ringOwner(b, `${key}#${attempt}`))) return attempt
      return 17
    }
    /** Where the final scan would land for `key`. */
    const scanned = (key: string) => {
      const offset = eps.indexOf(ringOwner(b, `${key}#0`))
      for (let step = 0; step < eps.length; step++) if (ok(eps[(offset + step) % eps.length])) return eps[(offset + step) % eps.length]
    }
    let sixteenth: string | undefined
    const scans: Array<string> = []
    for (let k = 0; k < 20_000 && (sixteenth === undefined || scans.length < 20); k++) {
      const key = `client-${k}`
      if (ok(ringOwner(b, key))) continue
      const attempt = firstEligibleAttempt(key)
      // A key found by its 16th rehash where the scan would land elsewhere: it tells the two apart.
      if (attempt === 16 && scanned(key) !== ringOwner(b, `${key}#16`)) sixteenth ??= key
      if (attempt === 17) scans.push(key)
    }
    expect(sixteenth).toBeDefined()
    expect(b.pick(ctxOf(sixteenth!), ok)).toBe(ringOwner(b, `${sixteenth!}#16`))
    // The scans start at a key-derived place, so both eligible endpoints get some of them.
    const landed = new Set<EndpointState>()
    for (const key of scans) {
      const e = b.pick(ctxOf(key), ok)!
      expect(e).toBe(expectedPick(b, eps, key, ok))
      landed.add(e)
    }
    expect(landed.size).toBe(2)
  })
})

describe("consistent_hash: cookie values with whitespace", () => {
  const eps = endpointsOf([1, 1, 1, 1, 1, 1, 1, 1])
  const ownerOf = (key: string) => makeBalancer({ algorithm: "consistent_hash", endpoints: eps }).pick(ctxOf(key))
  const byCookie = (name: string, cookie: string, ip = "10.9.8.7") =>
    makeBalancer({ algorithm: "consistent_hash", endpoints: eps, hashOn: { _tag: "cookie", name } }).pick(ctxOf(ip, { headers: { cookie } }))
  const valueArb = fc.string({ minLength: 1, maxLength: 20 }).filter((s) => !/[;=\s]/.test(s))
  const ows = fc.array(fc.constantFrom(" ", "\t"), { maxLength: 3 }).map((a) => a.join(""))

  it("trims spaces and tabs after the value, whether a ';' or the end of the header follows", () => {
    fc.assert(
      fc.property(valueArb, ows.filter((s) => s.length > 0), fc.boolean(), (value, trailing, last) => {
        const cookie = last ? `a=1; session=${value}${trailing}` : `session=${value}${trailing}; other=2`
        expect(byCookie("session", cookie)).toBe(ownerOf(value))
      })
    )
    expect(byCookie("session", "session=abc\t")).toBe(ownerOf("abc"))
    expect(byCookie("session", "session=abc ")).toBe(ownerOf("abc"))
    expect(byCookie("session", "session=abc \t ; x=1")).toBe(ownerOf("abc"))
  })

  it("a value of only whitespace is empty, so the client IP is the key", () => {
    expect(byCookie("session", "session=  \t; other=2", "10.1.1.1")).toBe(ownerOf("10.1.1.1"))
    expect(byCookie("session", "session=\t", "10.1.1.2")).toBe(ownerOf("10.1.1.2"))
  })

  it("finds a one-letter cookie name, first or later in the header", () => {
    fc.assert(
      fc.property(valueArb, fc.constantFrom("", "b=2; ", "ab=3; ", "ba=4;"), (value, before) => {
        expect(byCookie("a", `${before}a=${value}`)).toBe(ownerOf(value))
      })
    )
  })
})

describe("no endpoints", () => {
  it.each(["round_robin", "weighted", "random", "least_request", "ewma", "consistent_hash"] as const)(
    "%s with no endpoints returns undefined under the gateway's filter too, never handing it a non-endpoint",
    (algorithm) => {
      const seen: Array<unknown> = []
      const b = makeBalancer({ algorithm, endpoints: [], random: lcg(1) })
      expect(b.pick(CTX, (e) => (seen.push(e), isUp(e)))).toBeUndefined()
      expect(seen).toEqual([])
    }
  )
})
