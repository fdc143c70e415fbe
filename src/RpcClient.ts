/**
 * A typed client for an `RpcGroup`, derived from its contracts: one method per procedure.
 *
 * | kind     | client method                                          |
 * | -------- | ------------------------------------------------------ |
 * | `unary`  | `(payload, options?) => Effect<Success, Error \| RpcClientError>` |
 * | `server` | `(payload, options?) => Stream<Success, Error \| RpcClientError>` |
 * | `client` | `(payloads: Stream, options?) => Effect<Success, …>`   |
 * | `bidi`   | `(payloads: Stream, options?) => Stream<Success, …>`   |
 *
 * Each call is one channel, placed like any `Peer.open` (round-robin, or on `remote`), so calls may
 * start before any connection exists: they wait in the peer's edge queue. Remote failures in the
 * procedure's error Schema arrive as the same typed errors; everything else is an
 * `RpcClientError`. Interrupting a call, or stopping to read a stream, cancels it on the wire.
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type * as Channel from "./Channel.ts"
import * as Codec from "./Codec.ts"
import type { ChannelImpl } from "./Connection.ts"
import * as Frame from "./Frame.ts"
import * as Headers from "./Headers.ts"
import { compile, type Compiled, decodeBatch } from "./internal/schemas.ts"
import * as Middleware from "./Middleware.ts"
import * as Peer from "./Peer.ts"
import type * as Rpc from "./Rpc.ts"
import {
  BadRequest,
  BadResponse,
  Cancelled,
  CodecUnsupported,
  ConnectionLost,
  DeadlineExceeded,
  ERROR_KIND_HEADER,
  ErrorKind,
  Rejected,
  REJECTED_KIND_HEADER,
  RemoteDefect,
  RemoteError,
  RpcClientError,
  TIMEOUT_HEADER,
  Unavailable,
  UnknownMethod
} from "./RpcError.ts"
import type * as RpcGroup from "./RpcGroup.ts"

/**
 * Per-call options (override the client's).
 *
 * @category models
 * @since 0.1.0
 */
export interface CallOptions {
  /** Request headers (merged over the client's). */
  readonly headers?: Readonly<Record<string, string>> | undefined
  /** Deadline: travels as `duplex-timeout` and is enforced on both sides. */
  readonly timeout?: Duration.Input | undefined
  /** Place the call on the connection to this remote peer id. */
  readonly remote?: string | undefined
  /** Receives the response headers of the first reply frame. */
  readonly onResponseHeaders?: ((headers: Headers.Headers) => void) | undefined
}

/**
 * Client options.
 *
 * @category models
 * @since 0.1.0
 */
export interface Options {
  /** Codec name (default `msgpack`); must be registered on both sides. */
  readonly codec?: string | undefined
  readonly headers?: Readonly<Record<string, string>> | undefined
  readonly timeout?: Duration.Input | undefined
  readonly remote?: string | undefined
  /**
   * Trace calls: each call runs in a span `duplex.client <method>` (child of the caller's current
   * span) whose context travels in the W3C `traceparent` header, so the server's span (with
   * `Middleware.tracing()`) joins the same trace, through proxies too. Default `false`.
   */
  readonly tracing?: boolean | undefined
  /**
   * Client-side middleware around every call (first in the list runs first), as on the server:
   * `call.headers` are the request headers, `call.setHeader` adds one before the call is sent, and a
   * failure (e.g. a `Rejected`) fails the call without sending it. For streaming calls the
   * middleware runs before the stream starts.
   */
  readonly middleware?: ReadonlyArray<Middleware.Middleware> | undefined
}

/**
 * The client method for one procedure.
 *
 * @category models
 * @since 0.1.0
 */
export type MethodFor<R extends Rpc.Any> = R extends Rpc.Rpc<infer _Tag, infer K, infer P, infer S, infer E> ?
  K extends "unary" ?
    (payload: P["Type"], options?: CallOptions) => Effect.Effect<S["Type"], E["Type"] | RpcClientError>
  : K extends "server" ?
    (payload: P["Type"], options?: CallOptions) => Stream.Stream<S["Type"], E["Type"] | RpcClientError>
  : K extends "client" ? <E2, R2>(
      payloads: Stream.Stream<P["Type"], E2, R2>,
      options?: CallOptions
    ) => Effect.Effect<S["Type"], E["Type"] | RpcClientError | E2, R2>
  : K extends "bidi" ? <E2, R2>(
      payloads: Stream.Stream<P["Type"], E2, R2>,
      options?: CallOptions
    ) => Stream.Stream<S["Type"], E["Type"] | RpcClientError | E2, R2>
  : never
  : never

/**
 * A typed client: one method per procedure tag.
 *
 * @category models
 * @since 0.1.0
 */
export type Client<R extends Rpc.Any> = {
  readonly [Tag in R["_tag"]]: MethodFor<Extract<R, { readonly _tag: Tag }>>
}

// ---------------------------------------------------------------------------------------------
// Error mapping
// ---------------------------------------------------------------------------------------------

const clientError = (reason: RpcClientError["reason"]) => new RpcClientError({ reason })

const originalUnknown = /^duplex: (can't find (service|method) |service\/method request ill-formed: )/

/** Maps an error frame (text, headers, payload) to a typed error or an `RpcClientError`. */
const fromErrorFrame = (
  method: string,
  codec: Codec.Codec,
  schemas: Compiled,
  text: string,
  headers: Headers.Headers | undefined,
  payload: Uint8Array | null | undefined,
  timeoutMillis: number
): unknown => {
  const kind = headers === undefined ? undefined : Headers.get(headers, ERROR_KIND_HEADER)
  switch (kind) {
    case ErrorKind.Failure: {
      if (payload == null) return clientError(new RemoteError({ text }))
      const decoded = schemas.decodeError(codec, payload)
      return decoded._tag === "Right" ? decoded.value : clientError(new BadResponse({ text: decoded.error }))
    }
    case ErrorKind.Defect:
      return clientError(new RemoteDefect({ text }))
    case ErrorKind.UnknownMethod:
      return clientError(new UnknownMethod({ method, text }))
    case ErrorKind.BadRequest:
      return clientError(new BadRequest({ text }))
    case ErrorKind.Codec:
      return clientError(new CodecUnsupported({ codec: codec.name }))
    case ErrorKind.Deadline:
      return clientError(new DeadlineExceeded({ timeoutMillis }))
    case ErrorKind.Rejected:
      return clientError(
        new Rejected({ kind: Headers.get(headers ?? Headers.empty, REJECTED_KIND_HEADER) ?? "rejected", text })
      )
    case ErrorKind.Limit:
      return clientError(new Unavailable({ text }))
  }
  if (originalUnknown.test(text)) return clientError(new UnknownMethod({ method, text }))
  return clientError(new RemoteError({ text }))
}

const fromChannelError = (
  method: string,
  codec: Codec.Codec,
  schemas: Compiled,
  error: Channel.ChannelError,
  timeoutMillis: number
): unknown => {
  const reason = error.reason
  switch (reason._tag) {
    case "RemoteFailure":
      return fromErrorFrame(method, codec, schemas, reason.text, reason.headers, reason.payload, timeoutMillis)
    case "ConnectionLost":
      return clientError(new ConnectionLost({ text: reason.message }))
    case "RemoteAborted":
      return clientError(new Cancelled({ text: reason.text }))
    case "ChannelClosed":
      return clientError(new Cancelled({ text: reason.message }))
  }
}

// ---------------------------------------------------------------------------------------------
// Calls
// ---------------------------------------------------------------------------------------------

interface Method {
  readonly name: string
  readonly rpc: Rpc.Any
  readonly schemas: Compiled
}

interface Settings {
  readonly peer: Peer.Peer
  readonly codec: Codec.Codec
  readonly headers: Headers.Headers
  readonly timeoutMillis: number | undefined
  readonly remote: string | undefined
  readonly tracing: boolean
}

/**
 * The W3C trace context of a span: `00-<trace id>-<span id>-<flags>`.
 *
 * **Example** (Formatting a span)
 * ```ts
 * import * as RpcClient from "duplex/RpcClient"
 * RpcClient.traceparent({ traceId: "4bf92f3577b34da6a3ce929d0e0e4736", spanId: "00f067aa0ba902b7", sampled: true })
 * // "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
 * ```
 * @category tracing
 * @since 0.1.0
 */
export const traceparent = (span: { readonly traceId: string; readonly spanId: string; readonly sampled: boolean }) =>
  `00-${span.traceId.padStart(32, "0").slice(-32)}-${span.spanId.padStart(16, "0").slice(-16)}-${
    span.sampled ? "01" : "00"
  }`

/** Runs `build` inside a client span, with the span's `traceparent` added to the headers. */
const traced = <A, E, R>(
  settings: Settings,
  name: string,
  headers: Headers.Headers,
  build: (headers: Headers.Headers) => Effect.Effect<A, E, R>
): Effect.Effect<A, E, R> =>
  !settings.tracing ? build(headers) : Effect.withSpan(
    Effect.flatMap(Effect.orDie(Effect.currentSpan), (span) =>
      build(Headers.set(headers, "traceparent", traceparent(span)))),
    `duplex.client ${name}`,
    { kind: "client", attributes: { "rpc.system": "duplex", "rpc.method": name } }
  )

/** Like `traced`, for a streaming call: the client span lasts until the stream ends. */
const tracedStream = <A, E, R>(
  settings: Settings,
  name: string,
  headers: Headers.Headers,
  build: (headers: Headers.Headers) => Stream.Stream<A, E, R>
): Stream.Stream<A, E, R> =>
  !settings.tracing ? build(headers) : Stream.withSpan(
    Stream.unwrap(
      Effect.map(
        Effect.orDie(Effect.currentSpan),
        (span) => build(Headers.set(headers, "traceparent", traceparent(span)))
      )
    ),
    `duplex.client ${name}`,
    { kind: "client", attributes: { "rpc.system": "duplex", "rpc.method": name } }
  )

const resolveCall = (settings: Settings, options: CallOptions | undefined) => {
  const timeoutMillis = options?.timeout !== undefined
    ? Duration.toMillis(Duration.fromInputUnsafe(options.timeout))
    : settings.timeoutMillis
  let headers = settings.headers
  if (options?.headers !== undefined) headers = Headers.merge(headers, Headers.make(options.headers))
  if (timeoutMillis !== undefined) headers = Headers.set(headers, TIMEOUT_HEADER, String(Math.ceil(timeoutMillis)))
  return { headers, timeoutMillis, remote: options?.remote ?? settings.remote }
}

const withTimeout = <A, E, R>(
  effect: Effect.Effect<A, E, R>,
  timeoutMillis: number | undefined
): Effect.Effect<A, E | RpcClientError, R> =>
  timeoutMillis === undefined ? effect : Effect.timeoutOrElse(effect, {
    duration: timeoutMillis,
    orElse: () => Effect.fail(clientError(new DeadlineExceeded({ timeoutMillis })))
  })

/**
 * One call waiting for its single reply: the channel's sink and the placement listener in one
 * object, so a unary call allocates little besides its frames.
 */
class PendingReply implements Channel.Sink, Peer.PlaceListener {
  channel: ChannelImpl | undefined = undefined
  private settled = false
  private readonly method: Method
  private readonly codec: Codec.Codec
  private readonly options: CallOptions | undefined
  private readonly timeoutMillis: number
  private readonly start: (channel: ChannelImpl, pending: PendingReply) => void
  private readonly resume: (effect: Effect.Effect<unknown, unknown>) => void
  constructor(
    method: Method,
    codec: Codec.Codec,
    options: CallOptions | undefined,
    timeoutMillis: number,
    start: (channel: ChannelImpl, pending: PendingReply) => void,
    resume: (effect: Effect.Effect<unknown, unknown>) => void
  ) {
    this.method = method
    this.codec = codec
    this.options = options
    this.timeoutMillis = timeoutMillis
    this.start = start
    this.resume = resume
  }
  private settle(effect: Effect.Effect<unknown, unknown>): void {
    if (this.settled) return
    this.settled = true
    this.resume(effect)
  }
  onPlaced(channel: ChannelImpl): void {
    this.channel = channel
    channel.sink = this
    this.start(channel, this)
  }
  onFail(error: Peer.EdgeQueueFull | Peer.PeerClosed): void {
    this.settle(Effect.fail(clientError(new Unavailable({ text: error.message }))))
  }
  offer(item: Uint8Array, frame: Frame.Frame): void {
    if (this.settled) return
    try {
      this.options?.onResponseHeaders?.(frame.headers)
    } catch (defect) {
      // the caller's own callback threw (inside the connection's read): the call dies with it
      this.forget()
      return this.settle(Effect.die(defect))
    }
    const decoded = this.method.schemas.decodeSuccess(this.codec, item)
    // The call is answered: forget the channel (an input still being sent stops). State first:
    // resuming the caller may run its fiber synchronously.
    this.forget()
    this.settle(
      decoded._tag === "Right"
        ? Effect.succeed(decoded.value)
        : Effect.fail(clientError(new BadResponse({ text: decoded.error })))
    )
  }
  /** The caller's own input failed: the call fails with that error. */
  failWith(error: unknown): void {
    if (this.settled) return
    this.forget()
    this.settle(Effect.fail(error))
  }
  private forget(): void {
    const channel = this.channel
    if (channel === undefined || channel.isDone) return
    const settled = this.settled
    this.settled = true // detaching calls abort(): not an outcome of the call
    channel.detach()
    this.settled = settled
  }
  finish(error: Channel.ChannelError | undefined, last: Uint8Array | undefined, frame: Frame.Frame | undefined): void {
    if (last !== undefined && frame !== undefined) return this.offer(last, frame)
    if (this.settled) return
    this.settle(Effect.fail(
      error === undefined
        ? clientError(new BadResponse({ text: "the call ended without a reply" }))
        : fromChannelError(this.method.name, this.codec, this.method.schemas, error, this.timeoutMillis)
    ))
  }
  abort(error: Channel.ChannelError): void {
    this.settle(
      Effect.fail(fromChannelError(this.method.name, this.codec, this.method.schemas, error, this.timeoutMillis))
    )
  }
  /** Interruption: withdraw from the edge queue or cancel on the wire. */
  interrupt(remove: () => void): void {
    remove()
    const channel = this.channel
    if (channel !== undefined && !channel.isDone) channel.cancelUnsafe()
    this.settled = true
  }
}

/** A call with one reply: placed like any channel; `start` sends the input once placed. */
const unaryCall = (
  method: Method,
  settings: Settings,
  options: CallOptions | undefined,
  call: { headers: Headers.Headers; timeoutMillis: number | undefined; remote: string | undefined },
  start: (channel: ChannelImpl, pending: PendingReply) => void
) =>
  Effect.callback<unknown, unknown>((resume) => {
    const pending = new PendingReply(method, settings.codec, options, call.timeoutMillis ?? 0, start, resume)
    const remove = settings.peer.placeUnsafe(method.name, call.headers, call.remote, pending)
    return Effect.sync(() => pending.interrupt(remove))
  })

const encodeOrFail = (method: Method, codec: Codec.Codec, payload: unknown) => {
  const encoded = method.schemas.encodePayload(codec, payload)
  return encoded._tag === "Right"
    ? Exit.succeed(encoded.value)
    : Exit.fail(clientError(new BadRequest({ text: `cannot encode the request: ${encoded.error}` })))
}

/** Places a channel for a streaming call; cancelled when the scope closes unless done. */
const acquireChannel = (settings: Settings, name: string, headers: Headers.Headers, remote: string | undefined) =>
  // Waiting for a connection stays interruptible (deadlines, Fiber.interrupt); once placed, the
  // channel is registered for cancellation before anything can interrupt.
  Effect.uninterruptibleMask((restore) =>
    Effect.flatMap(
      restore(Effect.callback<ChannelImpl, RpcClientError>((resume) => {
        const remove = settings.peer.placeUnsafe(name, headers, remote, {
          onPlaced: (channel) => resume(Effect.succeed(channel)),
          onFail: (error) => resume(Effect.fail(clientError(new Unavailable({ text: error.message }))))
        })
        return Effect.sync(remove)
      })),
      (channel) => Effect.as(Effect.addFinalizer(() => channel.cancel), channel)
    )
  )

const replyStream = (
  method: Method,
  settings: Settings,
  channel: ChannelImpl,
  timeoutMillis: number | undefined,
  options: CallOptions | undefined
): Stream.Stream<unknown, unknown> => {
  const { codec } = settings
  let first = options?.onResponseHeaders !== undefined
  return channel.input.pipe(
    Stream.mapError((error) => fromChannelError(method.name, codec, method.schemas, error, timeoutMillis ?? 0)),
    Stream.mapArrayEffect((batch) => {
      if (first) {
        first = false
        options?.onResponseHeaders?.(channel.firstHeaders ?? Headers.empty)
      }
      const decoded = decodeBatch(method.schemas.decodeSuccess, codec, batch)
      return decoded._tag === "Right"
        ? Effect.succeed(decoded.value)
        : Effect.fail(clientError(new BadResponse({ text: decoded.error })))
    })
  )
}

/** Fails a stream with `DeadlineExceeded` when it has not ended within the deadline. */
const streamDeadline = <A, E, R>(
  stream: Stream.Stream<A, E, R>,
  timeoutMillis: number | undefined
): Stream.Stream<A, E | RpcClientError, R> =>
  timeoutMillis === undefined ? stream : Stream.interruptWhen(
    stream,
    Effect.flatMap(Effect.sleep(timeoutMillis), () => Effect.fail(clientError(new DeadlineExceeded({ timeoutMillis }))))
  )

/** Encodes and queues payloads from `start`, waiting whenever the flow-control window is closed. */
const sendFrom = (
  method: Method,
  codec: Codec.Codec,
  channel: ChannelImpl,
  batch: ReadonlyArray<unknown>,
  start: number
): Effect.Effect<void, Channel.ChannelError | RpcClientError> => {
  for (let i = start; i < batch.length; i++) {
    if (channel.blocked) return Effect.flatMap(channel.awaitCredit, () => sendFrom(method, codec, channel, batch, i))
    const encoded = encodeOrFail(method, codec, batch[i])
    if (Exit.isFailure(encoded)) return encoded
    if (!channel.pushUnsafe(Frame.data(channel.id, encoded.value, false), false)) return channel.send(encoded.value)
  }
  return channel.connection.congested ? channel.connection.writable : Effect.void
}

/**
 * Sends every payload of `payloads`, then ends the output half. If the caller's own stream fails,
 * the remote is told (error frame with the failure's message) and the pump fails with that error.
 */
const pump = <E2, R2>(
  method: Method,
  codec: Codec.Codec,
  channel: ChannelImpl,
  payloads: Stream.Stream<unknown, E2, R2>
): Effect.Effect<void, E2, R2> =>
  Stream.runForEachArray(payloads, (batch) => Effect.orDie(sendFrom(method, codec, channel, batch, 0))).pipe(
    Effect.matchCauseEffect({
      onSuccess: () => Effect.ignore(channel.end),
      onFailure: (cause) => {
        const failure = Cause.findErrorOption(cause)
        const text = Option.isSome(failure) ? describeError(failure.value) : "the input stream failed"
        return Effect.flatMap(Effect.ignore(channel.fail(text)), () => Effect.failCause(cause))
      }
    })
  )

const describeError = (error: unknown): string => {
  if (typeof error === "object" && error !== null && "message" in error && typeof error.message === "string") {
    if (error.message !== "") return error.message
  }
  if (typeof error === "object" && error !== null && "_tag" in error && typeof error._tag === "string") {
    return error._tag
  }
  return String(error)
}

const makeMethod = (method: Method, settings: Settings): unknown => {
  const { codec } = settings
  switch (method.rpc.kind) {
    case "unary":
      return (payload: unknown, options?: CallOptions) => {
        const encoded = encodeOrFail(method, codec, payload)
        if (Exit.isFailure(encoded)) return encoded
        const bytes = encoded.value
        const call = resolveCall(settings, options)
        const start = (channel: ChannelImpl) => {
          channel.pushUnsafe(Frame.data(channel.id, bytes, true), true)
        }
        return withTimeout(
          traced(
            settings,
            method.name,
            call.headers,
            (headers) => unaryCall(method, settings, options, { ...call, headers }, start)
          ),
          call.timeoutMillis
        )
      }
    case "server":
      return (payload: unknown, options?: CallOptions) => {
        const encoded = encodeOrFail(method, codec, payload)
        if (Exit.isFailure(encoded)) return Stream.fromEffect(encoded)
        const call = resolveCall(settings, options)
        const stream = tracedStream(
          settings,
          method.name,
          call.headers,
          (headers) =>
            Stream.unwrap(Effect.gen(function*() {
              const channel = yield* acquireChannel(settings, method.name, headers, call.remote)
              channel.pushUnsafe(Frame.data(channel.id, encoded.value, true), true)
              return replyStream(method, settings, channel, call.timeoutMillis, options)
            }))
        )
        return streamDeadline(stream, call.timeoutMillis)
      }
    case "client":
      return <E2, R2>(payloads: Stream.Stream<unknown, E2, R2>, options?: CallOptions) => {
        const call = resolveCall(settings, options)
        return Effect.gen(function*() {
          const scope = yield* Scope.make()
          const context = yield* Effect.context<R2>()
          let sender: Fiber.Fiber<void, E2> | undefined
          const reply = traced(
            settings,
            method.name,
            call.headers,
            (headers) =>
              unaryCall(method, settings, options, { ...call, headers }, (channel, pending) => {
                const fiber = Effect.runForkWith(context)(pump(method, codec, channel, payloads))
                sender = fiber
                fiber.addObserver((exit) => {
                  if (Exit.isFailure(exit) && !Cause.hasInterruptsOnly(exit.cause)) {
                    const failure = Cause.findErrorOption(exit.cause)
                    pending.failWith(Option.isSome(failure) ? failure.value : Cause.squash(exit.cause))
                  }
                })
              })
          )
          return yield* withTimeout(reply, call.timeoutMillis).pipe(
            Effect.ensuring(Effect.suspend(() => sender === undefined ? Effect.void : Fiber.interrupt(sender))),
            Effect.ensuring(Scope.close(scope, Exit.void))
          )
        })
      }
    case "bidi":
      return <E2, R2>(payloads: Stream.Stream<unknown, E2, R2>, options?: CallOptions) => {
        const call = resolveCall(settings, options)
        return streamDeadline(
          tracedStream(settings, method.name, call.headers, (headers) =>
            Stream.unwrap(Effect.gen(function*() {
              const channel = yield* acquireChannel(settings, method.name, headers, call.remote)
              // the caller's own input failure ends the call with that error
              const sender = Stream.drain(Stream.fromEffect(pump(method, codec, channel, payloads)))
              return Stream.merge(replyStream(method, settings, channel, call.timeoutMillis, options), sender, {
                haltStrategy: "left"
              })
            }))),
          call.timeoutMillis
        )
      }
  }
}

/** Every method `makeMethod` builds takes (input, options); its input type depends on the kind. */
const isMethodImpl = (u: unknown): u is (input: unknown, options: CallOptions | undefined) => unknown =>
  typeof u === "function"

/** Wraps one client method with middleware (see `Options.middleware`). */
const withMiddleware = (
  wrap: Middleware.Middleware,
  name: string,
  kind: Rpc.Kind,
  clientHeaders: Headers.Headers,
  method: (input: unknown, options: CallOptions | undefined) => unknown
) =>
(input: unknown, options?: CallOptions): unknown => {
  let extra: Record<string, string> | undefined
  const headers = options?.headers === undefined
    ? clientHeaders
    : Headers.merge(clientHeaders, Headers.make(options.headers))
  const call: RpcGroup.Call = {
    remoteId: options?.remote ?? "",
    method: name,
    headers,
    setHeader: (key, value) => {
      extra ??= {}
      extra[key] = value
    }
  }
  const withExtra = (): CallOptions | undefined =>
    extra === undefined ? options : { ...options, headers: { ...options?.headers, ...extra } }
  const run = (): unknown => method(input, withExtra())
  // a local rejection is an RpcClientError like a remote one
  const typed = (effect: Effect.Effect<unknown, unknown, unknown>) =>
    Effect.mapError(effect, (e) => e instanceof Rejected ? clientError(e) : e)
  if (kind === "server" || kind === "bidi") {
    return Stream.unwrap(
      Effect.map(typed(wrap(call, Effect.void)), () => {
        const out = run()
        return Stream.isStream(out) ? out : Stream.die(new Error("expected a stream"))
      })
    )
  }
  return typed(wrap(
    call,
    Effect.suspend(() => {
      const out = run()
      return Effect.isEffect(out) ? out : Effect.die(new Error("expected an effect"))
    })
  ))
}

/**
 * Builds a typed client for `group` over the `Peer` service.
 *
 * **Example** (Calling Arith.Add)
 * ```ts
 * import { Effect, Schema } from "effect"
 * import * as Peer from "duplex/Peer"
 * import * as Rpc from "duplex/Rpc"
 * import * as RpcClient from "duplex/RpcClient"
 * import * as RpcGroup from "duplex/RpcGroup"
 * const Arith = RpcGroup.make(
 *   Rpc.unary("Add", { payload: { A: Schema.Int, B: Schema.Int }, success: Schema.Struct({ C: Schema.Int }) })
 * ).prefix("Arith.")
 * const program = Effect.gen(function*() {
 *   const peer = yield* Peer.make()
 *   yield* peer.connect("tcp://127.0.0.1:7000")
 *   const arith = yield* RpcClient.makeWith(peer, Arith)
 *   return yield* arith.Add({ A: 7, B: 8 }) // { C: 15 }
 * })
 * ```
 * @category constructors
 * @since 0.1.0
 */
export const make = <R extends Rpc.Any>(
  group: RpcGroup.RpcGroup<R>,
  options: Options = {}
): Effect.Effect<Client<R>, RpcClientError, Peer.Peer> =>
  Effect.flatMap(Effect.service(Peer.Peer), (peer) => makeWith(peer, group, options))

/**
 * Like `make`, with an explicit peer.
 *
 * **Example** (A client over a given peer)
 * ```ts
 * import { Effect } from "effect"
 * import * as Peer from "duplex/Peer"
 * import * as RpcClient from "duplex/RpcClient"
 * import * as RpcGroup from "duplex/RpcGroup"
 * const Empty = RpcGroup.make()
 * const program = Effect.flatMap(Peer.make(), (peer) => RpcClient.makeWith(peer, Empty))
 * ```
 * @category constructors
 * @since 0.1.0
 */
export const makeWith = <R extends Rpc.Any>(
  peer: Peer.Peer,
  group: RpcGroup.RpcGroup<R>,
  options: Options = {}
): Effect.Effect<Client<R>, RpcClientError> =>
  Effect.gen(function*() {
    const registry = yield* Codec.Codecs
    const codecName = options.codec ?? "msgpack"
    const codec = registry.get(codecName)
    if (codec === undefined) return yield* Effect.fail(clientError(new CodecUnsupported({ codec: codecName })))
    let headers = options.headers === undefined ? Headers.empty : Headers.make(options.headers)
    if (codecName !== "msgpack") headers = Headers.set(headers, Codec.CODEC_HEADER, codecName)
    const settings: Settings = {
      peer,
      codec,
      headers,
      timeoutMillis: options.timeout === undefined
        ? undefined
        : Duration.toMillis(Duration.fromInputUnsafe(options.timeout)),
      remote: options.remote,
      tracing: options.tracing === true
    }
    const client: Record<string, unknown> = {}
    const wrap = options.middleware === undefined || options.middleware.length === 0
      ? undefined
      : Middleware.compose(options.middleware)
    for (const [tag, rpc] of group.rpcs) {
      const name = group.methodPrefix + tag
      const method = makeMethod({ name, rpc, schemas: compile(rpc) }, settings)
      client[tag] = wrap === undefined || !isMethodImpl(method)
        ? method
        : withMiddleware(wrap, name, rpc.kind, settings.headers, method)
    }
    // The methods above are built per procedure kind exactly as `Client<R>` describes.
    return client as Client<R>
  })
