/**
 * `ip_filter`: allow and deny lists of CIDR ranges on the client's address (after the
 * listener's `trusted_proxies`). A denied address is refused first; with an allow list, an
 * address outside it is refused too. Both answer 403.
 */
import { compileCidrs } from "../config/Cidr.ts"
import type { IpFilter } from "../config/MiddlewareSchema.ts"
import { Forbidden } from "./GatewayError.ts"
import { before, type Step } from "./Middleware.ts"

const forbidden = new Forbidden({ message: "The client's address may not use this route" })

/**
 * @example
 * compileIpFilter({ allow: ["10.0.0.0/8"], deny: ["10.0.0.5"] })
 */
export const compileIpFilter = (config: IpFilter): Step => {
  const deny = config.deny === undefined || config.deny.length === 0 ? undefined : compileCidrs(config.deny)
  // An empty allow list allows nobody, as nginx's `deny all` would.
  const allow = config.allow === undefined ? undefined : compileCidrs(config.allow)
  return before((request) => {
    const ip = request.clientIp
    if (deny !== undefined && deny(ip)) return forbidden
    if (allow !== undefined && !allow(ip)) return forbidden
    return undefined
  })
}
