/**
 * Whether a config leaves the admin API open beyond this machine: `admin.listen` on an address
 * that is not loopback, without `admin.token`. The admin API can read the config and replace it
 * (`PUT /config`), so `fibergate check` warns about such a config; it stays valid, since a
 * firewall or network policy may guard the port.
 */
import ipaddr from "ipaddr.js"
import { parseListen, type Config } from "../config/Schema.ts"

/**
 * Whether `host` is a loopback address (127.0.0.0/8, ::1, an IPv4-mapped 127.x) or `localhost`;
 * any other name may resolve to anything, and the empty host of `:9901` means every interface.
 *
 * @example
 * isLoopbackHost("::ffff:127.0.0.1") // => true
 * isLoopbackHost("0.0.0.0") // => false
 */
export const isLoopbackHost = (host: string): boolean =>
  host === "localhost" || (ipaddr.isValid(host) && ipaddr.process(host).range() === "loopback")

/** The warning for a config whose admin API anyone who reaches it can use; undefined otherwise. */
export const openAdminWarning = (config: Config): string | undefined => {
  const admin = config.admin
  if (admin === undefined || admin.token !== undefined) return undefined
  const address = parseListen(admin.listen)
  if (address === undefined || isLoopbackHost(address.host)) return undefined
  return `admin.listen ${admin.listen} is not a loopback address and admin.token is not set: ` +
    "anyone who reaches it can read the config and replace it (PUT /config); set admin.token, or listen on 127.0.0.1"
}
