/**
 * Node's HTTP, TLS and HTTP/2 modules, taken with `process.getBuiltinModule` instead of an ESM
 * `import`, and the TLS ones only when first used. Measured on Node 24 (idle RSS): an ESM import
 * of node:http reads every export, and its lazy `WebSocket`/`EventSource` getters then load
 * Node's own copy of undici (about +12 MB; `getBuiltinModule` and `require` do not read them);
 * node:tls, node:https and node:http2 add about 10 MB more, which a plain-HTTP config never
 * needs. It lives in `config` because that is the folder every other one may import.
 */
import type * as Http from "node:http"
import type * as Http2 from "node:http2"
import type * as Https from "node:https"
import type * as Tls from "node:tls"

export const nodeHttp: typeof Http = process.getBuiltinModule("node:http")
export const nodeTls = (): typeof Tls => process.getBuiltinModule("node:tls")
export const nodeHttps = (): typeof Https => process.getBuiltinModule("node:https")
export const nodeHttp2 = (): typeof Http2 => process.getBuiltinModule("node:http2")
