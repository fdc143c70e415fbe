/**
 * A named channel: two message streams multiplexed over one connection. The **input** carries the
 * remote's messages and ends with its EOF (a frame with `last`) or fails with a typed
 * `ChannelError`; the **output** is written with `send`, ended with `end` / `sendLast`, or failed
 * with `fail`. Each half closes independently; the channel is done when both have.
 *
 * A channel is a scoped resource: closing its scope before both halves finished cancels it on the
 * wire (error `CloseStream`, `last = false`, as the original does), and a remote cancel fails the
 * local side with `RemoteAborted`.
 *
 * Payloads at this level are bytes; typed values come from the RPC layer.
 *
 * @since 0.1.0
 */
import * as Arr from "effect/Array"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Predicate from "effect/Predicate"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import type { Frame } from "./Frame.ts"
import type * as Headers from "./Headers.ts"

/**
 * **Example** (Reading the type id)
 * ```ts
 * import * as Channel from "duplex/Channel"
 * const hasChannelId = (u: object) => Channel.TypeId in u
 * ```
 * @category type ids
 * @since 0.1.0
 */
export const TypeId = "~duplex/Channel"

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/**
 * The connection carrying the channel dropped before the channel finished.
 *
 * **Example** (Wrapping a lost connection)
 * ```ts
 * import * as Channel from "duplex/Channel"
 * const lost = (remoteId: string) =>
 *   new Channel.ChannelError({ reason: new Channel.ConnectionLost({ remoteId, detail: "socket closed" }) })
 * ```
 * @category errors
 * @since 0.1.0
 */
export class ConnectionLost extends Schema.TaggedError<ConnectionLost>()("ConnectionLost", {
  remoteId: Schema.String,
  detail: Schema.String
}) {
  override get message(): string {
    return `connection to ${this.remoteId} lost: ${this.detail}`
  }
}

/**
 * The remote ended its half with an error (an error text with `last = true`). `payload` and
 * `headers` are the frame's, when it had any (Duplex RPC puts the error kind in a header and an
 * encoded typed error in the payload).
 *
 * **Example** (Reading the remote's error text)
 * ```ts
 * import * as Channel from "duplex/Channel"
 * const remoteText = (e: Channel.ChannelError) => e.reason._tag === "RemoteFailure" ? e.reason.text : undefined
 * ```
 * @category errors
 * @since 0.1.0
 */
export class RemoteFailure extends Schema.TaggedError<RemoteFailure>()("RemoteFailure", {
  text: Schema.String,
  payload: Schema.optional(Schema.Uint8Array),
  headers: Schema.optional(Schema.Record(Schema.String, Schema.String))
}) {
  override get message(): string {
    return `remote: ${this.text}`
  }
}

/**
 * The remote cancelled the channel (an error text with `last = false`, e.g. `CloseStream`).
 *
 * **Example** (Detecting a remote cancel)
 * ```ts
 * import * as Channel from "duplex/Channel"
 * const wasCancelled = (e: Channel.ChannelError) => e.reason._tag === "RemoteAborted"
 * ```
 * @category errors
 * @since 0.1.0
 */
export class RemoteAborted extends Schema.TaggedError<RemoteAborted>()("RemoteAborted", {
  text: Schema.String
}) {
  override get message(): string {
    return `remote aborted the channel: ${this.text}`
  }
}

/**
 * The local half is already closed (after `end`, `fail`, a cancel, or the channel's scope closed).
 *
 * **Example** (Constructing the error)
 * ```ts
 * import * as Channel from "duplex/Channel"
 * const error = new Channel.ChannelError({ reason: new Channel.ChannelClosed({ channel: 3 }) })
 * ```
 * @category errors
 * @since 0.1.0
 */
export class ChannelClosed extends Schema.TaggedError<ChannelClosed>()("ChannelClosed", {
  channel: Schema.Number
}) {
  override get message(): string {
    return `channel ${this.channel} is closed for sending`
  }
}

/**
 * What can go wrong on a channel.
 *
 * **Example** (Reacting to a lost connection)
 * ```ts
 * import { Effect, Stream } from "effect"
 * import type { Channel } from "duplex/Channel"
 * const drain = (channel: Channel) =>
 *   Stream.runDrain(channel.input).pipe(
 *     Effect.catchTag("ChannelError", (e) =>
 *       e.reason._tag === "ConnectionLost" ? Effect.log("lost") : Effect.fail(e))
 *   )
 * ```
 * @category errors
 * @since 0.1.0
 */
export class ChannelError extends Schema.TaggedError<ChannelError>()("ChannelError", {
  reason: Schema.Union([ConnectionLost, RemoteFailure, RemoteAborted, ChannelClosed])
}) {
  override get message(): string {
    return this.reason.message
  }
}

/**
 * Why a channel failed.
 *
 * @category errors
 * @since 0.1.0
 */
export type ChannelErrorReason = ChannelError["reason"]

// ---------------------------------------------------------------------------------------------
// Model
// ---------------------------------------------------------------------------------------------

/**
 * One open channel.
 *
 * @category models
 * @since 0.1.0
 */
export interface Channel {
  readonly [TypeId]: typeof TypeId
  /** Wire id of the channel on its connection. */
  readonly id: number
  /** The method name the channel was opened with. */
  readonly method: string
  /** Headers of the OPEN frame. */
  readonly headers: Headers.Headers
  /** Peer id (greeting UUID) of the remote end. */
  readonly remoteId: string
  /** `"outgoing"` when this side opened the channel. */
  readonly direction: "outgoing" | "incoming"
  /** Messages from the remote; ends on its EOF, fails with a `ChannelError`. Consume it once. */
  readonly input: Stream.Stream<Uint8Array, ChannelError>
  /**
   * Takes the next message; fails with `Cause.Done` after the remote's EOF (the cheapest way to
   * read one reply). Do not mix with a running `input` stream.
   */
  readonly take: Effect.Effect<Uint8Array, ChannelError | Cause.Done>
  /** Sends one message. */
  readonly send: (payload: Uint8Array) => Effect.Effect<void, ChannelError>
  /** Sends one message and ends the output half in the same frame. */
  readonly sendLast: (payload: Uint8Array) => Effect.Effect<void, ChannelError>
  /** Ends the output half (EOF). */
  readonly end: Effect.Effect<void, ChannelError>
  /** Ends the output half with an error text, and optionally an encoded error payload and headers. */
  readonly fail: (text: string, payload?: Uint8Array, headers?: Headers.Headers) => Effect.Effect<void, ChannelError>
  /** Sends one message with headers on its frame (e.g. response headers); `last` also ends the output. */
  readonly sendWithHeaders: (
    payload: Uint8Array,
    headers: Headers.Headers,
    last?: boolean
  ) => Effect.Effect<void, ChannelError>
  /** Aborts the channel at once (both halves), telling the remote with a cancel frame. */
  readonly cancel: Effect.Effect<void>
  /** Completes when both halves have ended (or the channel failed). */
  readonly done: Effect.Effect<void>
}

/**
 * Checks whether a value is a `Channel`.
 *
 * **Example** (Guard)
 * ```ts
 * import * as Channel from "duplex/Channel"
 * Channel.isChannel({}) // false
 * ```
 * @category guards
 * @since 0.1.0
 */
export const isChannel = (u: unknown): u is Channel => Predicate.hasProperty(u, TypeId)

/**
 * Sends every element of a stream on the channel, then ends the output half; a failure of the
 * stream is sent as an error with `String(error)` as the text.
 *
 * **Example** (Streaming out)
 * ```ts
 * import { Stream } from "effect"
 * import * as Channel from "duplex/Channel"
 * const pump = (channel: Channel.Channel) =>
 *   Channel.sendAll(channel, Stream.make(new Uint8Array([1]), new Uint8Array([2])))
 * ```
 * @category sending
 * @since 0.1.0
 */
export const sendAll = <E, R>(
  channel: Channel,
  stream: Stream.Stream<Uint8Array, E, R>
): Effect.Effect<void, ChannelError, R> =>
  Stream.runForEach(stream, (payload) => channel.send(payload)).pipe(
    Effect.matchEffect({
      onSuccess: () => channel.end,
      onFailure: (e) =>
        Predicate.isTagged(e, "ChannelError") && e instanceof ChannelError ? Effect.fail(e) : channel.fail(String(e))
    })
  )

// ---------------------------------------------------------------------------------------------
// Internal: the inbox of one half
// ---------------------------------------------------------------------------------------------

type Pull = Effect.Effect<Arr.NonEmptyReadonlyArray<Uint8Array>, ChannelError | Cause.Done>

const doneEffect: Effect.Effect<never, Cause.Done> = Cause.done()

/**
 * Where a channel delivers what the remote sends. The default is an `Inbox` (behind `input` and
 * `take`); the RPC layer installs its own sink to handle frames synchronously without buffering.
 * The frame is passed along for its headers.
 *
 * @category models
 * @since 0.1.0
 */
export interface Sink {
  /** One message (a DATA frame without error). */
  offer(item: Uint8Array, frame: Frame): void
  /** The remote's half ended: EOF (`error` undefined, with an optional final message) or an error. */
  finish(error: ChannelError | undefined, last: Uint8Array | undefined, frame: Frame | undefined): void
  /** The channel was aborted (remote cancel, local cancel): drop anything buffered. */
  abort(error: ChannelError): void
}

/**
 * Unbounded mailbox for incoming messages, written synchronously by the connection's read loop and
 * read either one message at a time (`take`) or in batches (`pull`, used by `input`).
 *
 * **Example** (Buffering messages for a reader)
 * ```ts
 * import * as Channel from "duplex/Channel"
 * const inbox = new Channel.Inbox()
 * inbox.offer(new Uint8Array([1]))
 * ```
 * @internal
 * @category models
 * @since 0.1.0
 */
export class Inbox implements Sink {
  /** Told how many payload bytes the reader took (flow control grants credit from it). */
  onConsumed: ((bytes: number) => void) | undefined = undefined
  private items: Array<Uint8Array> = []
  private head = 0
  private state: "open" | "eof" | ChannelError = "open"
  private waiter: (() => void) | undefined = undefined

  get size(): number {
    return this.items.length - this.head
  }

  offer(item: Uint8Array, _frame?: Frame): void {
    if (this.state !== "open") return
    this.items.push(item)
    this.wake()
  }

  /** Ends after buffered items (plus `last`, if given), with EOF (`undefined`) or an error. */
  finish(error: ChannelError | undefined, last?: Uint8Array, _frame?: Frame): void {
    if (this.state !== "open") return
    if (last !== undefined) this.items.push(last)
    this.state = error ?? "eof"
    this.wake()
  }

  /** Ends at once, dropping buffered items. */
  abort(error: ChannelError): void {
    if (this.state !== "open" && this.state !== "eof") return
    this.items = []
    this.head = 0
    this.state = error
    this.wake()
  }

  /**
   * Wakes the reader at the end of the current task (a microtask), not at once: every message of
   * the read batch being dispatched is then delivered in one pull, instead of resuming the reader
   * once per message.
   */
  private wake(): void {
    if (this.waiter === undefined || this.wakeScheduled) return
    // a `take` wants one message: no point waiting for more
    if (!this.waiterBatched) return this.wakeNow()
    this.wakeScheduled = true
    queueMicrotask(this.wakeNow)
  }

  private waiterBatched = false

  private wakeScheduled = false
  private readonly wakeNow = (): void => {
    this.wakeScheduled = false
    const waiter = this.waiter
    if (waiter !== undefined) {
      this.waiter = undefined
      waiter()
    }
  }

  private terminal(): Effect.Effect<never, ChannelError | Cause.Done> {
    const state = this.state
    return typeof state === "string" ? doneEffect : Effect.fail(state)
  }

  private wait<A>(attempt: () => Effect.Effect<A, ChannelError | Cause.Done> | undefined, batched: boolean) {
    return Effect.callback<A, ChannelError | Cause.Done>((resume) => {
      const now = attempt()
      if (now !== undefined) return resume(now)
      const waiter = () => {
        const next = attempt()
        if (next !== undefined) resume(next)
      }
      this.waiter = waiter
      this.waiterBatched = batched
      return Effect.sync(() => {
        if (this.waiter === waiter) this.waiter = undefined
      })
    })
  }

  private readonly attemptPull = (): Pull | undefined => {
    const items = this.items
    if (items.length > this.head) {
      const out = this.head === 0 ? items : items.slice(this.head)
      this.items = []
      this.head = 0
      if (this.onConsumed !== undefined) {
        let bytes = 0
        for (let i = 0; i < out.length; i++) bytes += out[i]!.length
        this.onConsumed(bytes)
      }
      if (Arr.isArrayNonEmpty(out)) return Effect.succeed(out)
    }
    return this.state === "open" ? undefined : this.terminal()
  }

  private readonly attemptTake = (): Effect.Effect<Uint8Array, ChannelError | Cause.Done> | undefined => {
    const items = this.items
    if (items.length > this.head) {
      const item = items[this.head]!
      this.head++
      if (this.head === items.length) {
        this.items = []
        this.head = 0
      }
      this.onConsumed?.(item.length)
      return Effect.succeed(item)
    }
    return this.state === "open" ? undefined : this.terminal()
  }

  /** Resumes with every buffered message at once, or waits for the next one. */
  get pull(): Pull {
    return this.wait(this.attemptPull, true)
  }

  /** Resumes with the next message only. */
  get take(): Effect.Effect<Uint8Array, ChannelError | Cause.Done> {
    return this.wait(this.attemptTake, false)
  }
}

/**
 * A stream over an inbox, delivering every batch of buffered messages at once.
 *
 * **Example** (Reading an inbox as a stream)
 * ```ts
 * import * as Channel from "duplex/Channel"
 * const input = Channel.inboxStream(new Channel.Inbox())
 * ```
 * @internal
 * @category constructors
 * @since 0.1.0
 */
export const inboxStream = (inbox: Inbox): Stream.Stream<Uint8Array, ChannelError> =>
  Stream.fromPull(Effect.succeed(inbox.pull))
