/**
 * The parts of undici the gateway uses, loaded from their own files: undici's index also
 * loads fetch, WebSocket, the caches, the mocks and a second HTTP parser (about 4 MB of memory
 * at start for code nothing calls). undici has no `exports` map, so these files resolve; they
 * are its internals, which is why the version is pinned and the tests run through them.
 */
import type * as Undici from "undici"
// @ts-expect-error: undici ships types for its index only; the casts below give these its types.
import PoolFile from "undici/lib/dispatcher/pool.js"
// @ts-expect-error: as above.
import AgentFile from "undici/lib/dispatcher/agent.js"
// @ts-expect-error: as above.
import connectFile from "undici/lib/core/connect.js"
// @ts-expect-error: as above.
import DispatcherFile from "undici/lib/dispatcher/dispatcher.js"
// @ts-expect-error: as above.
import api from "undici/lib/api/index.js"

// What undici's index does besides exporting: `request`, `stream`, `pipeline`, `connect` and
// `upgrade` on every dispatcher (forward_auth and the JWKS fetch call `request`).
Object.assign(DispatcherFile.prototype, api)

export const Pool = PoolFile as typeof Undici.Pool
export const Agent = AgentFile as typeof Undici.Agent
export const buildConnector = connectFile as typeof Undici.buildConnector
