/**
 * Whether the gateway should receive traffic: false until every listener is bound, and false
 * again as soon as a drain starts, so a load balancer polling `GET /ready` stops sending new
 * requests while in-flight ones finish.
 */
import * as Context from "effect/Context"
import * as Layer from "effect/Layer"

export class Readiness extends Context.Service<Readiness, {
  readonly isReady: () => boolean
  readonly set: (ready: boolean) => void
}>()("fibergate/listener/Readiness") {
  static readonly layer: Layer.Layer<Readiness> = Layer.sync(Readiness, () => {
    let ready = false
    return Readiness.of({ isReady: () => ready, set: (value) => void (ready = value) })
  })
}
