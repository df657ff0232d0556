import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as References from "effect/References"
import type * as LogLevel from "effect/LogLevel"
import type { Config } from "../config/Schema.ts"

const levels: Record<NonNullable<NonNullable<Config["log"]>["level"]>, LogLevel.LogLevel> = {
  trace: "Trace",
  debug: "Debug",
  info: "Info",
  warn: "Warn",
  error: "Error",
  fatal: "Fatal",
  none: "None"
}

/** The gateway's own log (not the access log) as the config's `log` section asks for it. */
export const loggingLayer = (log: Config["log"]): Layer.Layer<never> =>
  Layer.mergeAll(
    Logger.layer([log?.format === "text" ? Logger.consoleLogFmt : Logger.consoleJson]),
    Layer.succeed(References.MinimumLogLevel, levels[log?.level ?? "info"])
  )
