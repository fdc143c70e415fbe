/**
 * Middleware for RPC calls, in the style of tower / Finagle: a `Middleware` wraps the handling of
 * a call — it gets the call (method, headers, caller's peer id) and the effect that runs the
 * handler, and returns the effect to run instead. It can pass, rewrite the outcome, or reject with
 * a typed `Rejected` error that reaches the caller as `RpcClientError` reason `Rejected`.
 *
 * **Order.** `RpcServer.serve(peer, group, handlers, { middleware: [a, b, c] })` runs `a` first:
 * `a` wraps `b`, which wraps `c`, which wraps the handler — the first in the list sees the call
 * first and the outcome last (as tower's `ServiceBuilder`: "layers added first are called with the
 * request first"). Put cheap rejections (auth, rate limit) before expensive work (logging,
 * metrics of accepted calls).
 *
 * Built in: `auth`, `rateLimit`, `deadline`, `logging`, `metrics`. Client-side, `RpcClient` options
 * take `headers` (e.g. a token) and per-call headers; tracing is built into both sides.
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Metric from "effect/Metric"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import * as Tracer from "effect/Tracer"
import * as Headers from "./Headers.ts"
import { Rejected } from "./RpcError.ts"
import type * as RpcGroup from "./RpcGroup.ts"

/**
 * Wraps the handling of one call. `next` runs the handler (and the middleware after this one).
 *
 * @category models
 * @since 0.1.0
 */
export interface Middleware<R = never> {
  <R2>(call: RpcGroup.Call, next: Effect.Effect<unknown, unknown, R2>): Effect.Effect<unknown, unknown, R | R2>
  /** Type-level only: keeps `R` in lists of mixed middleware (never set at runtime). */
  readonly "~requires"?: R | undefined
}

/**
 * The services a list of middleware needs.
 *
 * @category models
 * @since 0.1.0
 */
export type Services<M> = M extends ReadonlyArray<Middleware<infer R>> ? R : never

/**
 * Composes middleware: the first wraps all the others.
 *
 * **Example** (Composing)
 * ```ts
 * import * as Middleware from "duplex/Middleware"
 * const stack = Middleware.compose([Middleware.logging(), Middleware.rateLimit({ per: "remote", ratePerSecond: 100 })])
 * ```
 * @category combinators
 * @since 0.1.0
 */
export const compose =
  <R>(middleware: ReadonlyArray<Middleware<R>>): Middleware<R> =>
  <R2>(call: RpcGroup.Call, next: Effect.Effect<unknown, unknown, R2>) => {
    let effect: Effect.Effect<unknown, unknown, R | R2> = next
    for (let i = middleware.length - 1; i >= 0; i--) {
      const m = middleware[i]!
      const inner = effect
      // each layer sees the inner layers as its `next`
      effect = Effect.suspend(() => m(call, inner))
    }
    return effect
  }

/**
 * Rejects calls whose token header fails `check`. The token is read from `header` (default
 * `authorization`); a missing token is rejected without calling `check`.
 *
 * **Example** (A shared secret)
 * ```ts
 * import { Effect } from "effect"
 * import * as Middleware from "duplex/Middleware"
 * const auth = Middleware.auth({ check: (token) => Effect.succeed(token === "Bearer s3cret") })
 * ```
 * @category middleware
 * @since 0.1.0
 */
export const auth = <E, R>(options: {
  readonly header?: string | undefined
  readonly check: (token: string, call: RpcGroup.Call) => Effect.Effect<boolean, E, R>
}): Middleware<R> => {
  const header = options.header ?? "authorization"
  return (call, next) => {
    const token = Headers.get(call.headers, header)
    if (token === undefined) return Effect.fail(new Rejected({ kind: "auth", text: `missing ${header} header` }))
    return Effect.flatMap(
      Effect.catch(options.check(token, call), () => Effect.succeed(false)),
      (ok) => ok ? next : Effect.fail(new Rejected({ kind: "auth", text: "not authorized" }))
    )
  }
}

/**
 * Token-bucket rate limiting per remote peer or per method: each key gets `burst` tokens (default
 * `ratePerSecond`), refilled at `ratePerSecond`; a call without a token is rejected at once.
 *
 * **Example** (100 calls per second per caller)
 * ```ts
 * import * as Middleware from "duplex/Middleware"
 * const limit = Middleware.rateLimit({ per: "remote", ratePerSecond: 100, burst: 20 })
 * ```
 * @category middleware
 * @since 0.1.0
 */
export const rateLimit = (options: {
  readonly per: "remote" | "method" | "remote-method"
  readonly ratePerSecond: number
  readonly burst?: number | undefined
  readonly now?: (() => number) | undefined
}): Middleware => {
  const burst = options.burst ?? options.ratePerSecond
  const now = options.now ?? Date.now
  const buckets = new Map<string, { tokens: number; at: number }>()
  const keyOf = (call: RpcGroup.Call) =>
    options.per === "remote"
      ? call.remoteId
      : options.per === "method"
      ? call.method
      : `${call.remoteId} ${call.method}`
  return (call, next) =>
    Effect.suspend(() => {
      const key = keyOf(call)
      const t = now()
      const bucket = buckets.get(key) ?? { tokens: burst, at: t }
      bucket.tokens = Math.min(burst, bucket.tokens + ((t - bucket.at) / 1000) * options.ratePerSecond)
      bucket.at = t
      buckets.set(key, bucket)
      if (bucket.tokens < 1) {
        return Effect.fail(
          new Rejected({ kind: "rate-limit", text: `rate limit of ${options.ratePerSecond}/s exceeded` })
        )
      }
      bucket.tokens -= 1
      return next
    })
}

/**
 * Enforces a maximum duration for every call (whatever deadline the caller sent): past it the
 * handler is interrupted and the caller gets `DeadlineExceeded`.
 *
 * **Example** (At most 2 seconds)
 * ```ts
 * import * as Middleware from "duplex/Middleware"
 * const deadline = Middleware.deadline({ max: "2 seconds" })
 * ```
 * @category middleware
 * @since 0.1.0
 */
export const deadline = (options: { readonly max: Duration.Input }): Middleware => {
  const max = Duration.fromInputUnsafe(options.max)
  return (_call, next) =>
    Effect.timeoutOrElse(next, {
      duration: max,
      orElse: () => Effect.fail(new Rejected({ kind: "deadline", text: "deadline exceeded" }))
    })
}

/**
 * Logs every call with its method, caller, duration and outcome (`Effect.log*`, so it follows the
 * application's logger).
 *
 * **Example** (Logging calls)
 * ```ts
 * import * as Middleware from "duplex/Middleware"
 * const log = Middleware.logging()
 * ```
 * @category middleware
 * @since 0.1.0
 */
export const logging = (): Middleware => (call, next) =>
  Effect.suspend(() => {
    const started = performance.now()
    return Effect.onExit(next, (exit) => {
      const ms = (performance.now() - started).toFixed(1)
      const who = `${call.method} from ${call.remoteId.slice(0, 8)}`
      return Exit.isSuccess(exit)
        ? Effect.logDebug(`duplex: ${who} ok in ${ms} ms`)
        : Effect.logInfo(`duplex: ${who} failed in ${ms} ms`, exit.cause)
    })
  })

/**
 * Effect `Metric`s of a server: calls and errors (counters, by method), latency (histogram, ms),
 * calls in flight (gauge).
 *
 * @category models
 * @since 0.1.0
 */
export interface ServerMetrics {
  readonly calls: Metric.Counter<number>
  readonly errors: Metric.Counter<number>
  readonly latency: Metric.Histogram<number>
  readonly inFlight: Metric.Gauge<number>
}

/**
 * Records calls, errors, latency and calls in flight as Effect `Metric`s (so they reach any
 * metrics exporter the application installs), tagged with the method.
 *
 * **Example** (Metrics with a prefix)
 * ```ts
 * import * as Middleware from "duplex/Middleware"
 * const { middleware, metrics } = Middleware.metrics({ prefix: "arith" })
 * ```
 * @category middleware
 * @since 0.1.0
 */
export const metrics = (options: { readonly prefix?: string | undefined } = {}): {
  readonly middleware: Middleware
  readonly metrics: ServerMetrics
} => {
  const p = options.prefix === undefined ? "duplex" : `${options.prefix}`
  const m: ServerMetrics = {
    calls: Metric.counter(`${p}_calls_total`, { description: "RPC calls received" }),
    errors: Metric.counter(`${p}_errors_total`, { description: "RPC calls that failed" }),
    latency: Metric.histogram(`${p}_latency_ms`, {
      description: "RPC call duration in milliseconds",
      boundaries: Metric.exponentialBoundaries({ start: 0.1, factor: 2, count: 20 })
    }),
    inFlight: Metric.gauge(`${p}_in_flight`, { description: "RPC calls being handled" })
  }
  let inFlight = 0
  const middleware: Middleware = (call, next) =>
    Effect.suspend(() => {
      const attributes = { method: call.method }
      const started = performance.now()
      inFlight++
      return Effect.andThen(
        Effect.all([
          Metric.update(Metric.withAttributes(m.calls, attributes), 1),
          Metric.update(m.inFlight, inFlight)
        ]),
        Effect.onExit(next, (exit) => {
          inFlight--
          const updates = [
            Metric.update(Metric.withAttributes(m.latency, attributes), performance.now() - started),
            Metric.update(m.inFlight, inFlight)
          ]
          if (Exit.isFailure(exit)) updates.push(Metric.update(Metric.withAttributes(m.errors, attributes), 1))
          return Effect.all(updates, { discard: true })
        })
      )
    })
  return { middleware, metrics: m }
}

const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/

/**
 * Parses a W3C `traceparent` header into an external span (parent of the server's span).
 *
 * **Example** (Parsing)
 * ```ts
 * import * as Middleware from "duplex/Middleware"
 * Middleware.parseTraceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
 * ```
 * @category tracing
 * @since 0.1.0
 */
export const parseTraceparent = (header: string | undefined): Tracer.ExternalSpan | undefined => {
  if (header === undefined) return undefined
  const m = TRACEPARENT.exec(header.trim()) // lowercase hex only (W3C: an invalid header is ignored)
  if (m === null || m[1] === "ff" || /^0+$/.test(m[2]!) || /^0+$/.test(m[3]!)) return undefined
  return Tracer.externalSpan({ traceId: m[2]!, spanId: m[3]!, sampled: (parseInt(m[4]!, 16) & 1) === 1 })
}

/**
 * Runs every call in a span `duplex.server <method>` whose parent is the caller's span from the
 * `traceparent` header (see `RpcClient` option `tracing`), so a call — through proxies too — shows
 * as one trace in Effect's tracer (and so in its OpenTelemetry integration).
 *
 * **Example** (Tracing a server)
 * ```ts
 * import * as Middleware from "duplex/Middleware"
 * const middleware = [Middleware.tracing(), Middleware.logging()]
 * ```
 * @category tracing
 * @since 0.1.0
 */
export const tracing = (): Middleware => (call, next) => {
  const parent = parseTraceparent(Headers.get(call.headers, "traceparent"))
  return Effect.withSpan(next, `duplex.server ${call.method}`, {
    kind: "server",
    attributes: { "rpc.system": "duplex", "rpc.method": call.method, "duplex.remote": call.remoteId },
    ...(parent === undefined ? {} : { parent })
  })
}

/**
 * Peer-level Effect `Metric`s: channels open over all connections, connections, and the edge queue's
 * depth (opens waiting for a connection).
 *
 * @category models
 * @since 0.1.0
 */
export interface PeerMetrics {
  readonly openChannels: Metric.Gauge<number>
  readonly connections: Metric.Gauge<number>
  readonly queueDepth: Metric.Gauge<number>
}

/**
 * Samples a peer's open channels, connections and edge-queue depth into gauges every `interval`
 * (default 1 s), for as long as the scope lives.
 *
 * **Example** (Exporting peer gauges)
 * ```ts
 * import { Effect } from "effect"
 * import * as Middleware from "duplex/Middleware"
 * import * as Peer from "duplex/Peer"
 * const program = Effect.gen(function*() {
 *   const peer = yield* Peer.make()
 *   const gauges = yield* Middleware.observePeer(peer, { prefix: "api", interval: "5 seconds" })
 * })
 * ```
 * @category middleware
 * @since 0.1.0
 */
export const observePeer = (
  peer: {
    readonly connections: Effect.Effect<ReadonlyArray<{ readonly channels: { readonly size: number } }>>
    readonly pendingOpens: Effect.Effect<number>
  },
  options: { readonly prefix?: string | undefined; readonly interval?: Duration.Input | undefined } = {}
): Effect.Effect<PeerMetrics, never, Scope.Scope> =>
  Effect.gen(function*() {
    const p = options.prefix ?? "duplex"
    const gauges: PeerMetrics = {
      openChannels: Metric.gauge(`${p}_open_channels`, { description: "channels open on all connections" }),
      connections: Metric.gauge(`${p}_connections`, { description: "live connections" }),
      queueDepth: Metric.gauge(`${p}_edge_queue_depth`, { description: "opens waiting for a connection" })
    }
    const sample = Effect.gen(function*() {
      const connections = yield* peer.connections
      let open = 0
      for (const c of connections) open += c.channels.size
      yield* Metric.update(gauges.openChannels, open)
      yield* Metric.update(gauges.connections, connections.length)
      yield* Metric.update(gauges.queueDepth, yield* peer.pendingOpens)
    })
    yield* sample
    yield* Effect.forkScoped(
      Effect.repeat(sample, Schedule.spaced(options.interval ?? "1 second"))
    )
    return gauges
  })
