/**
 * Middlemen: a proxy is a peer that accepts channels and forwards each one to an upstream pool,
 * without touching payloads. Routing is by method prefix or header to different upstream peers
 * (each a `Peer` with its own connections, so placement within a pool is round-robin and follows
 * the pool's `connect`/`auto` set).
 *
 * Forwarding keeps the protocol's meaning end to end: messages both ways with backpressure (a
 * send waits for the other side's flow-control window), EOF, errors (text, typed payload and
 * `duplex-error` headers), cancellation (either side's cancel cancels the other), request headers
 * (so deadlines in `duplex-timeout` and `traceparent` pass through) and the response headers of the
 * first reply. `Middleware` runs in the proxy before forwarding: auth and rate limits at the edge.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type * as Channel from "./Channel.ts"
import { ChannelImpl } from "./Connection.ts"
import * as Headers from "./Headers.ts"
import type * as Middleware from "./Middleware.ts"
import type * as Peer from "./Peer.ts"
import { ERROR_KIND_HEADER, ErrorKind, Rejected, REJECTED_KIND_HEADER } from "./RpcError.ts"

/**
 * Where channels go: the first route whose `prefix` matches the method and whose `header` (if any)
 * matches is used.
 *
 * @category models
 * @since 0.1.0
 */
export interface Route {
  /** Method prefix, e.g. `"Arith."` (default: every method). */
  readonly prefix?: string | undefined
  /** A header that must be present, with this value (or any value when `value` is omitted). */
  readonly header?: { readonly name: string; readonly value?: string | undefined } | undefined
  /** The upstream pool. */
  readonly upstream: Peer.Peer
}

/**
 * Proxy settings.
 *
 * @category models
 * @since 0.1.0
 */
export interface Options<R = never> {
  readonly routes: ReadonlyArray<Route>
  /** Runs before a channel is forwarded (first in the list first); a `Rejected` refuses it. */
  readonly middleware?: ReadonlyArray<Middleware.Middleware<R>> | undefined
}

const matches = (route: Route, channel: Channel.Channel): boolean => {
  if (route.prefix !== undefined && !channel.method.startsWith(route.prefix)) return false
  if (route.header !== undefined) {
    const value = Headers.get(channel.headers, route.header.name)
    if (value === undefined) return false
    if (route.header.value !== undefined && value !== route.header.value) return false
  }
  return true
}

/**
 * Copies `from`'s input into `to`'s output, ending `to` the way `from` ended. The remote's final
 * message travels in one frame with `last`, as it arrived (not as a message plus an end marker).
 */
const pipe = (from: Channel.Channel, to: Channel.Channel): Effect.Effect<void> => {
  const impl = from instanceof ChannelImpl ? from : undefined
  let first = true
  let ended = false
  return Stream.runForEachArray(from.input, (batch) =>
    Effect.forEach(batch, (message, i) => {
      const headers = first && impl !== undefined ? impl.firstHeaders : undefined
      first = false
      // the last message of the remote's half, when its `last` frame has already been read
      const last = impl !== undefined && impl.remoteEnded && i === batch.length - 1 && impl.inbox.size === 0
      if (last) ended = true
      if (headers !== undefined && !Headers.isEmpty(headers)) return to.sendWithHeaders(message, headers, last)
      return last ? to.sendLast(message) : to.send(message)
    }, { discard: true })).pipe(
      Effect.matchCauseEffect({
        onSuccess: () => ended ? Effect.void : to.end,
        onFailure: (cause) => {
          const failure = cause.reasons.find((r) => r._tag === "Fail")
          if (failure === undefined || failure._tag !== "Fail") return to.cancel
          const reason = failure.error.reason
          switch (reason._tag) {
            case "RemoteFailure": {
              const headers = reason.headers === undefined ? undefined : Headers.make(reason.headers)
              return to.fail(reason.text, reason.payload, headers)
            }
            case "RemoteAborted":
            case "ConnectionLost":
            case "ChannelClosed":
              return to.cancel
          }
        }
      }),
      Effect.ignore
    )
}

/** Forwards one incoming channel to `upstream` until both directions ended. */
const forward = (incoming: Channel.Channel, upstream: Peer.Peer): Effect.Effect<void> =>
  Effect.scoped(Effect.gen(function*() {
    const outgoing = yield* upstream.open(incoming.method, { headers: incoming.headers })
    // a cancel (or a lost connection) on either side cancels the other at once, even when no
    // message is flowing that way
    if (incoming instanceof ChannelImpl && outgoing instanceof ChannelImpl) {
      incoming.onAbort = () => outgoing.cancelUnsafe()
      outgoing.onAbort = () => incoming.cancelUnsafe()
    }
    yield* Effect.all([pipe(incoming, outgoing), pipe(outgoing, incoming)], { concurrency: 2, discard: true })
  })).pipe(
    Effect.catch((error) =>
      // no upstream to take it (edge queue full or the upstream peer closed)
      Effect.ignore(incoming.fail(`duplex: proxy: ${error.message}`, undefined, unavailableHeaders))
    )
  )

const unavailableHeaders = Headers.make({ [ERROR_KIND_HEADER]: ErrorKind.Limit })

const refuse = (incoming: Channel.Channel, rejected: Rejected): Effect.Effect<void> =>
  Effect.ignore(
    incoming.fail(
      rejected.text,
      undefined,
      Headers.make({ [ERROR_KIND_HEADER]: ErrorKind.Rejected, [REJECTED_KIND_HEADER]: rejected.kind })
    )
  )

/**
 * Makes `peer` a proxy for the lifetime of the scope: every channel it accepts is forwarded by
 * `routes`; a channel no route matches gets the original's unknown-service error.
 *
 * **Example** (A proxy with auth in front of two pools)
 * ```ts
 * import { Effect } from "effect"
 * import * as Middleware from "duplex/Middleware"
 * import * as Peer from "duplex/Peer"
 * import * as Proxy from "duplex/Proxy"
 * const program = Effect.gen(function*() {
 *   const front = yield* Peer.make()
 *   const arith = yield* Peer.make()
 *   yield* arith.connect("tcp://10.0.0.5:7000")
 *   const other = yield* Peer.make()
 *   yield* other.connect("tcp://10.0.0.6:7000")
 *   yield* Proxy.serve(front, {
 *     routes: [{ prefix: "Arith.", upstream: arith }, { upstream: other }],
 *     middleware: [Middleware.auth({ check: (token) => Effect.succeed(token === "Bearer s3cret") })]
 *   })
 *   yield* front.bind("tcp://0.0.0.0:7000")
 * })
 * ```
 * @category serving
 * @since 0.1.0
 */
export const serve = <R = never>(
  peer: Peer.Peer,
  options: Options<R>
): Effect.Effect<void, never, Scope.Scope | R> =>
  Effect.gen(function*() {
    const context = yield* Effect.context<R>()
    const middleware = options.middleware ?? []
    const handler = (channel: Channel.Channel): Effect.Effect<void> => {
      const route = options.routes.find((r) => matches(r, channel))
      if (route === undefined) {
        return Effect.ignore(
          channel.fail(
            `duplex: can't find service ${channel.method}`,
            undefined,
            Headers.make({ [ERROR_KIND_HEADER]: ErrorKind.UnknownMethod })
          )
        )
      }
      const run = forward(channel, route.upstream)
      if (middleware.length === 0) return run
      const call = {
        remoteId: channel.remoteId,
        method: channel.method,
        headers: channel.headers,
        setHeader: () => {}
      }
      let wrapped: Effect.Effect<unknown, unknown, R> = run
      for (let i = middleware.length - 1; i >= 0; i--) {
        const m = middleware[i]!
        const inner = wrapped
        wrapped = Effect.suspend(() => m(call, inner))
      }
      return Effect.provideContext(wrapped, context).pipe(
        Effect.exit,
        Effect.flatMap((exit) => {
          if (Exit.isSuccess(exit)) return Effect.void
          const failure = exit.cause.reasons.find((r) => r._tag === "Fail")
          if (failure !== undefined && failure._tag === "Fail" && failure.error instanceof Rejected) {
            return refuse(channel, failure.error)
          }
          return Effect.ignore(channel.fail("duplex: proxy failed"))
        })
      )
    }
    yield* peer.serve(handler)
  })
