/**
 * Serves an `RpcGroup` on a `Peer`: each method name routes to its handler. Any peer can serve —
 * a binding one and a connecting one alike — and a peer can serve several groups.
 *
 * Hot path: dispatch is synchronous inside the connection's read loop. A unary handler whose
 * Effect is already an `Exit` is answered without a fiber; otherwise a fiber is started at once
 * and observed only if it suspends. Payloads are validated with the method's Schemas at the
 * boundary: a bad payload is a `bad-request` error for the caller, never a crash in the handler.
 *
 * Wire behaviour (the original's conventions): the reply to a unary call is one DATA frame with
 * `last`; a stream is items then the end marker; errors go in the error slot with `last` and the
 * `duplex-error` header naming the kind (typed failures also carry the encoded error as payload);
 * a cancel from the caller interrupts the handler's fiber.
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type * as Channel from "./Channel.ts"
import * as Codec from "./Codec.ts"
import type { ChannelImpl } from "./Connection.ts"
import * as Frame from "./Frame.ts"
import * as Headers from "./Headers.ts"
import { compile, type Compiled, decodeBatch } from "./internal/schemas.ts"
import * as Middleware from "./Middleware.ts"
import * as Peer from "./Peer.ts"
import { FrameType } from "./Protocol.ts"
import type * as Rpc from "./Rpc.ts"
import {
  ERROR_KIND_HEADER,
  ErrorKind,
  Rejected,
  REJECTED_KIND_HEADER,
  RequestStreamError,
  TIMEOUT_HEADER
} from "./RpcError.ts"
import type * as RpcGroup from "./RpcGroup.ts"

/**
 * The current call, for handlers: caller's peer id, method, request headers, response headers.
 *
 * **Example** (Reading a request header)
 * ```ts
 * import { Effect } from "effect"
 * import { CurrentCall } from "duplex/RpcServer"
 * const whoAmI = Effect.map(Effect.service(CurrentCall), (call) => call.headers["user"] ?? call.remoteId)
 * ```
 * @category services
 * @since 0.1.0
 */
export class CurrentCall extends Context.Service<CurrentCall, RpcGroup.Call>()("duplex/RpcServer/CurrentCall") {}

class CallImpl implements RpcGroup.Call {
  readonly channel: ChannelImpl
  responseHeaders: Record<string, string> | undefined = undefined
  constructor(channel: ChannelImpl) {
    this.channel = channel
  }
  get remoteId(): string {
    return this.channel.remoteId
  }
  get method(): string {
    return this.channel.method
  }
  get headers(): Headers.Headers {
    return this.channel.headers
  }
  setHeader(key: string, value: string): void {
    const headers: Record<string, string> = this.responseHeaders ?? Object.create(null)
    headers[key] = value
    this.responseHeaders = headers
  }
  /** Headers for the next reply frame (only the first carries response headers). */
  takeHeaders(): Headers.Headers {
    const h = this.responseHeaders
    if (h === undefined) return Headers.empty
    this.responseHeaders = undefined
    return h
  }
}

// ---------------------------------------------------------------------------------------------
// Replies
// ---------------------------------------------------------------------------------------------

const errorHeaders = (kind: string, extra: Headers.Headers): Headers.Headers => {
  const out: Record<string, string> = Object.create(null)
  Object.assign(out, extra)
  out[ERROR_KIND_HEADER] = kind
  return out
}

const sendError = (call: CallImpl, kind: string, text: string, payload: Uint8Array | null): void => {
  const channel = call.channel
  channel.pushUnsafe(
    Frame.make(FrameType.Data, channel.id, "", errorHeaders(kind, call.takeHeaders()), text || "error", true, payload),
    true
  )
  channel.detach()
}

const errorText = (error: unknown): string => {
  if (typeof error === "object" && error !== null && "message" in error && typeof error.message === "string") {
    if (error.message !== "") return error.message
  }
  if (typeof error === "object" && error !== null && "_tag" in error && typeof error._tag === "string") {
    return error._tag
  }
  return String(error)
}

/** Sends the outcome of a handler as the final frame. */
const sendExit = <S, E>(
  call: CallImpl,
  codec: Codec.Codec,
  schemas: Compiled,
  exit: Exit.Exit<S, E>,
  withValue: boolean
): void => {
  const channel = call.channel
  if (channel.isDone || channel.localEnded) return
  if (Exit.isSuccess(exit)) {
    if (!withValue) {
      channel.pushUnsafe(Frame.make(FrameType.Data, channel.id, "", call.takeHeaders(), "", true, null), true)
    } else if (codec.encodeInto !== undefined) {
      // Schema here, then the codec writes straight into the reply frame
      const encoded = schemas.encodeSuccessValue(codec, exit.value)
      if (encoded._tag === "Left") {
        return sendError(call, ErrorKind.Defect, `failed to encode the reply: ${encoded.error}`, null)
      }
      try {
        channel.pushDataWith(call.takeHeaders(), true, encoded.value, codec.encodeInto)
      } catch (e) {
        return sendError(call, ErrorKind.Defect, `failed to encode the reply: ${errorText(e)}`, null)
      }
    } else {
      const encoded = schemas.encodeSuccessShared(codec, exit.value) // pushed (copied) below
      if (encoded._tag === "Left") {
        return sendError(call, ErrorKind.Defect, `failed to encode the reply: ${encoded.error}`, null)
      }
      channel.pushUnsafe(
        Frame.make(FrameType.Data, channel.id, "", call.takeHeaders(), "", true, encoded.value),
        true
      )
    }
    if (!channel.remoteEnded) channel.detach()
    return
  }
  const cause = exit.cause
  const failure = Cause.findErrorOption(cause)
  if (Option.isSome(failure)) {
    const error = failure.value
    if (error instanceof RequestStreamError) {
      return sendError(call, ErrorKind.BadRequest, error.text, null)
    }
    if (error instanceof Rejected) {
      if (error.kind === "deadline") return sendError(call, ErrorKind.Deadline, error.text, null)
      call.setHeader(REJECTED_KIND_HEADER, error.kind)
      return sendError(call, ErrorKind.Rejected, error.text, null)
    }
    if (isDeadline(error)) return sendError(call, ErrorKind.Deadline, "deadline exceeded", null)
    const encoded = schemas.encodeError(codec, error)
    return sendError(
      call,
      ErrorKind.Failure,
      errorText(error),
      encoded._tag === "Right" ? encoded.value : null
    )
  }
  if (Cause.hasInterruptsOnly(cause)) {
    // our own interruption after a cancel or connection loss: nothing to say
    if (!channel.isDone) channel.cancelUnsafe()
    return
  }
  const defect = Cause.squash(cause)
  return sendError(call, ErrorKind.Defect, errorText(defect), null)
}

class DeadlineError {
  readonly _tag = "DuplexDeadline"
}
const isDeadline = (u: unknown): u is DeadlineError => u instanceof DeadlineError

const withDeadline = <A, E, R>(
  effect: Effect.Effect<A, E, R>,
  headers: Headers.Headers
): Effect.Effect<A, E | DeadlineError, R> => {
  const text = Headers.get(headers, TIMEOUT_HEADER)
  if (text === undefined) return effect
  const ms = Number(text)
  if (!Number.isFinite(ms) || ms < 0) return effect
  return Effect.timeoutOrElse(effect, { duration: ms, orElse: () => Effect.fail(new DeadlineError()) })
}

// ---------------------------------------------------------------------------------------------
// Entries per kind
// ---------------------------------------------------------------------------------------------

type RunFork = <A, E>(effect: Effect.Effect<A, E, never>) => Fiber.Fiber<A, E>

interface Entry {
  readonly rpc: Rpc.Any
  readonly schemas: Compiled
  readonly handler: (...args: ReadonlyArray<never>) => unknown
  /** The composed middleware, when there is any (no cost otherwise). */
  readonly wrap: Middleware.Middleware<unknown> | undefined
}

const resolveCodec = (registry: Codec.Registry, channel: ChannelImpl): Codec.Codec | undefined => {
  const name = Headers.get(channel.headers, Codec.CODEC_HEADER)
  return name === undefined ? Codec.msgpack : registry.get(name)
}

/** Runs `effect` now; answers synchronously if it completes, else when its fiber exits. */
const isExitOf = <A, E>(effect: Effect.Effect<A, E>): effect is Exit.Exit<A, E> => Exit.isExit(effect)

/**
 * Handler requirements were captured in the context given to `runForkWith` when the group was
 * served, so a handler's effect needs nothing more. (The one unchecked step of the server.)
 */
const provided = <A, E>(effect: Effect.Effect<A, E, unknown>): Effect.Effect<A, E> => effect as Effect.Effect<A, E>

const runToReply = <A, E>(
  effect: Effect.Effect<A, E>,
  runFork: RunFork,
  onExit: (exit: Exit.Exit<A, E>) => void
): Fiber.Fiber<A, E> | undefined => {
  if (isExitOf(effect)) {
    onExit(effect)
    return undefined
  }
  const fiber = runFork(effect)
  const now = fiber.pollUnsafe()
  if (now !== undefined) {
    onExit(now)
    return undefined
  }
  fiber.addObserver(onExit)
  return fiber
}

const callHandler = (
  f: () => unknown
): Effect.Effect<unknown, unknown> | Stream.Stream<unknown, unknown, unknown> => {
  try {
    const out = f()
    if (Stream.isStream(out)) return out
    if (Effect.isEffect(out)) return provided(out)
    return Effect.die(new Error("handler returned neither an Effect nor a Stream"))
  } catch (defect) {
    return Effect.die(defect)
  }
}

const streamOut = (
  call: CallImpl,
  codec: Codec.Codec,
  schemas: Compiled,
  stream: Stream.Stream<unknown, unknown, unknown>
): Effect.Effect<void, unknown> => {
  const channel = call.channel
  const encodeInto = codec.encodeInto
  // Whole chunks at a time: encode and queue items synchronously; wait only when the channel's
  // flow-control window is closed or the connection is above its write high-water mark.
  const sendFrom = (values: ReadonlyArray<unknown>, start: number): Effect.Effect<void> => {
    for (let i = start; i < values.length; i++) {
      if (channel.blocked) return Effect.flatMap(channel.awaitCredit, () => sendFrom(values, i))
      if (encodeInto !== undefined) {
        // Schema here, then the codec writes straight into the frame being built
        const encoded = schemas.encodeSuccessValue(codec, values[i])
        if (encoded._tag === "Left") return Effect.die(new Error(`failed to encode an item: ${encoded.error}`))
        let sent: number
        try {
          sent = channel.pushDataWith(call.takeHeaders(), false, encoded.value, encodeInto)
        } catch (e) {
          return Effect.die(new Error(`failed to encode an item: ${e instanceof Error ? e.message : String(e)}`))
        }
        if (sent < 0) return Effect.interrupt
        continue
      }
      // shared buffer: the frame is copied into the connection's slab by pushUnsafe right below
      const encoded = schemas.encodeSuccessShared(codec, values[i])
      if (encoded._tag === "Left") return Effect.die(new Error(`failed to encode an item: ${encoded.error}`))
      const frame = Frame.make(FrameType.Data, channel.id, "", call.takeHeaders(), "", false, encoded.value)
      if (!channel.pushUnsafe(frame, false)) return Effect.interrupt
    }
    return channel.connection.congested ? channel.connection.writable : Effect.void
  }
  return provided(Stream.runForEachArray(stream, (values) => Effect.suspend(() => sendFrom(values, 0))))
}

const inputStream = (
  channel: ChannelImpl,
  codec: Codec.Codec,
  schemas: Compiled
): Stream.Stream<unknown, RequestStreamError> =>
  channel.input.pipe(
    Stream.mapError((e) =>
      new RequestStreamError({
        reason: e.reason._tag === "ConnectionLost"
          ? "ConnectionLost"
          : e.reason._tag === "RemoteFailure"
          ? "RemoteError"
          : "Cancelled",
        text: e.message
      })
    ),
    Stream.mapArrayEffect((batch) => {
      const decoded = decodeBatch(schemas.decodePayload, codec, batch)
      return decoded._tag === "Right"
        ? Effect.succeed(decoded.value)
        : Effect.fail(new RequestStreamError({ reason: "BadRequest", text: decoded.error }))
    })
  )

/**
 * A unary or server-stream call: the call context and the channel's sink in one object. Acts on
 * the first message only, as the original does.
 */
class SingleCall extends CallImpl implements Channel.Sink {
  private started = false
  private fiber: Fiber.Fiber<unknown, unknown> | undefined = undefined
  readonly codec: Codec.Codec
  readonly entry: Entry
  readonly runFork: RunFork
  constructor(channel: ChannelImpl, codec: Codec.Codec, entry: Entry, runFork: RunFork) {
    super(channel)
    this.codec = codec
    this.entry = entry
    this.runFork = runFork
    // a lost connection interrupts the handler, as a cancel does
    channel.onAbort = () => this.abort()
  }
  offer(item: Uint8Array): void {
    if (this.started) return
    this.started = true
    this.run(item)
  }
  finish(error: Channel.ChannelError | undefined, last: Uint8Array | undefined): void {
    if (last !== undefined) return this.offer(last)
    if (this.started) return
    this.started = true
    if (error === undefined) sendError(this, ErrorKind.BadRequest, "the call ended without an argument", null)
    else this.channel.detach() // the caller failed its input: nothing to answer
  }
  abort(): void {
    this.started = true
    this.fiber?.interruptUnsafe()
  }
  private run(bytes: Uint8Array): void {
    const { schemas, handler, rpc } = this.entry
    const decoded = schemas.decodePayload(this.codec, bytes)
    if (decoded._tag === "Left") return sendError(this, ErrorKind.BadRequest, decoded.error, null)
    const out = callHandler(() => (handler as (p: unknown, c: RpcGroup.Call) => unknown)(decoded.value, this))
    let effect: Effect.Effect<unknown, unknown> = rpc.kind === "unary"
      ? (Stream.isStream(out) ? Effect.die(new Error("unary handler returned a Stream")) : out)
      : streamOut(this, this.codec, schemas, Stream.isStream(out) ? out : Stream.fromEffect(out))
    if (this.entry.wrap !== undefined) effect = provided(this.entry.wrap(this, effect))
    // An Exit needs no fiber, services or deadline: answer it at once.
    else if (isExitOf(effect)) return this.reply(effect)
    const fiber = this.runFork(withDeadline(Effect.provideService(effect, CurrentCall, this), this.headers))
    const now = fiber.pollUnsafe()
    if (now !== undefined) return this.reply(now)
    this.fiber = fiber
    fiber.addObserver((exit) => this.reply(exit))
  }
  private reply(exit: Exit.Exit<unknown, unknown>): void {
    sendExit(this, this.codec, this.entry.schemas, exit, this.entry.rpc.kind === "unary")
  }
}

const makeRoute = (
  entry: Entry,
  registry: Codec.Registry,
  runFork: RunFork
) =>
(channel: ChannelImpl): void => {
  const codec = resolveCodec(registry, channel)
  if (codec === undefined) {
    return sendError(
      new CallImpl(channel),
      ErrorKind.Codec,
      `codec ${JSON.stringify(Headers.get(channel.headers, Codec.CODEC_HEADER))} is not supported`,
      null
    )
  }
  const { rpc, schemas, handler } = entry
  switch (rpc.kind) {
    case "unary":
    case "server": {
      channel.sink = new SingleCall(channel, codec, entry, runFork)
      return
    }
    case "client":
    case "bidi": {
      const call = new CallImpl(channel)
      const provide = (inner: Effect.Effect<unknown, unknown>): Effect.Effect<unknown, unknown> => {
        const effect = entry.wrap === undefined ? inner : provided(entry.wrap(call, inner))
        return isExitOf(effect)
          ? effect
          : withDeadline(Effect.provideService(effect, CurrentCall, call), channel.headers)
      }
      const input = inputStream(channel, codec, schemas)
      const out = callHandler(() => (handler as (p: unknown, c: RpcGroup.Call) => unknown)(input, call))
      let fiber: Fiber.Fiber<unknown, unknown> | undefined
      if (rpc.kind === "client") {
        const effect = Stream.isStream(out) ? Effect.die(new Error("client-stream handler returned a Stream")) : out
        fiber = runToReply(
          provide(effect),
          runFork,
          (exit) => sendExit(call, codec, schemas, exit, true)
        )
      } else {
        const stream = Stream.isStream(out) ? out : Stream.fromEffect(out)
        fiber = runToReply(
          provide(streamOut(call, codec, schemas, stream)),
          runFork,
          (exit) => sendExit(call, codec, schemas, exit, false)
        )
      }
      if (fiber !== undefined) channel.onAbort = () => fiber.interruptUnsafe()
      return
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Serving
// ---------------------------------------------------------------------------------------------

/**
 * Options of `serve`.
 *
 * @category models
 * @since 0.1.0
 */
export interface ServeOptions<MR = never> {
  /** Middleware around every call of the group; the first in the list runs first (`Middleware`). */
  readonly middleware?: ReadonlyArray<Middleware.Middleware<MR>> | undefined
}

/**
 * Serves `group` on `peer` with `handlers` until the scope closes. Handler requirements are taken
 * from the current context.
 *
 * **Example** (Serving Arith)
 * ```ts
 * import { Effect, Schema } from "effect"
 * import * as Peer from "duplex/Peer"
 * import * as Rpc from "duplex/Rpc"
 * import * as RpcGroup from "duplex/RpcGroup"
 * import * as RpcServer from "duplex/RpcServer"
 * const Arith = RpcGroup.make(
 *   Rpc.unary("Add", { payload: { A: Schema.Int, B: Schema.Int }, success: Schema.Struct({ C: Schema.Int }) })
 * ).prefix("Arith.")
 * const program = Effect.gen(function*() {
 *   const peer = yield* Peer.make()
 *   yield* RpcServer.serve(peer, Arith, { Add: ({ A, B }) => Effect.succeed({ C: A + B }) })
 *   yield* peer.bind("tcp://127.0.0.1:7000")
 * })
 * ```
 * @category serving
 * @since 0.1.0
 */
export const serve = <R extends Rpc.Any, const H extends RpcGroup.Handlers<R, unknown>, MR = never>(
  peer: Peer.Peer,
  group: RpcGroup.RpcGroup<R>,
  handlers: H,
  options: ServeOptions<MR> = {}
): Effect.Effect<void, never, Scope.Scope | Exclude<RpcGroup.HandlerServices<H> | MR, CurrentCall>> =>
  Effect.gen(function*() {
    const context = yield* Effect.context<Exclude<RpcGroup.HandlerServices<H> | MR, CurrentCall>>()
    const middleware = options.middleware ?? []
    const wrap = middleware.length === 0 ? undefined : Middleware.compose<unknown>(middleware)
    const registry = yield* Codec.Codecs
    const runForkWith = Effect.runForkWith<never>(context)
    const runFork: RunFork = (effect) => runForkWith(effect)
    const removers: Array<() => void> = []
    for (const [tag, rpc] of group.rpcs) {
      const handler = (handlers as Record<string, Entry["handler"]>)[tag]
      if (handler === undefined) continue
      const entry: Entry = { rpc, schemas: compile(rpc), handler, wrap }
      removers.push(peer.routeUnsafe(group.methodPrefix + tag, makeRoute(entry, registry, runFork)))
    }
    yield* Effect.addFinalizer(() => Effect.sync(() => removers.forEach((remove) => remove())))
  })

/**
 * A layer serving `group` on the `Peer` in context, for the layer's lifetime.
 *
 * **Example** (Composing a server)
 * ```ts
 * import { Effect, Layer, Schema } from "effect"
 * import * as Peer from "duplex/Peer"
 * import * as Rpc from "duplex/Rpc"
 * import * as RpcGroup from "duplex/RpcGroup"
 * import * as RpcServer from "duplex/RpcServer"
 * const Ping = RpcGroup.make(Rpc.unary("Ping", { success: Schema.String }))
 * const Server = RpcServer.layer(Ping, { Ping: () => Effect.succeed("pong") }).pipe(Layer.provideMerge(Peer.layer()))
 * ```
 * @category layers
 * @since 0.1.0
 */
export const layer = <R extends Rpc.Any, const H extends RpcGroup.Handlers<R, unknown>, MR = never>(
  group: RpcGroup.RpcGroup<R>,
  handlers: H,
  options: ServeOptions<MR> = {}
): Layer.Layer<never, never, Peer.Peer | Exclude<RpcGroup.HandlerServices<H> | MR, CurrentCall>> =>
  Layer.effectDiscard(Effect.flatMap(Effect.service(Peer.Peer), (peer) => serve(peer, group, handlers, options)))
