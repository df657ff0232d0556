/**
 * Test support: one-shot signals between node callbacks (upstream handlers, client events)
 * and the test's Effect code.
 */
import { Deferred, Effect } from "effect"

/** A one-shot signal resolved from node callbacks. */
export const signal = <A = void>() => Deferred.makeUnsafe<A>()

/** Resolves a signal (a no-op if it already is). */
export const fire = <A>(d: Deferred.Deferred<A>, value: A) => void Deferred.doneUnsafe(d, Effect.succeed(value))

/** Waits for a signal; a generous guard turns a hang into a test failure. */
export const awaitSignal = <A>(d: Deferred.Deferred<A>) => Deferred.await(d).pipe(Effect.timeout("1500 millis"))

/** Runs `f` once the signal resolves (used inside upstream handlers). */
export const onSignal = (d: Deferred.Deferred<void>, f: () => void) => void Effect.runPromise(Deferred.await(d)).then(f)
