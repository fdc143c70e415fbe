/**
 * One live link between two peers: the greeting exchange, then frames decoded as bytes arrive and
 * dispatched synchronously by type (`handleOpen`, `handleData`, `handleHello`); everything queued
 * in one turn goes out in a single socket write. On a socket of Duplex's own transport this runs
 * in the socket's read event and `socket.write` (a `DirectLink`, no fiber); on any other
 * `effect/socket` Socket, in a read-loop fiber and a writer fiber.
 *
 * The connection owns its channel table (one per connection, both directions, as in the original)
 * and allocates channel ids without collisions (see PROTOCOL.md, "Channel ids"). Frames for unknown
 * channels, duplicate OPENs and unknown frame types are dropped and counted, as the original does;
 * malformed input ends the connection with a `ProtocolError`, and every channel still on it fails
 * with `ConnectionLost`.
 *
 * @since 0.1.0
 */
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import { constVoid } from "effect/Function"
import * as Latch from "effect/Latch"
import * as Result from "effect/Result"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as Socket from "effect/socket/Socket"
import type * as Net from "node:net"
import * as Channel from "./Channel.ts"
import { ProtocolError } from "./DuplexError.ts"
import * as Frame from "./Frame.ts"
import { FrameDecoder, FrameEncoder, type PayloadFill } from "./FrameCodec.ts"
import * as Greeting from "./Greeting.ts"
import * as Headers from "./Headers.ts"
import * as RawSocket from "./internal/rawSocket.ts"
import { CHANNEL_ID_LIMIT, FrameType, LEGACY_CHANNEL_BASE, type Limits } from "./Protocol.ts"

/**
 * Queued bytes past which a frame is written at once instead of at the end of the turn: large
 * enough that a write syscall carries many small frames, small enough that the remote starts
 * working on a long batch before this side has produced all of it.
 */
const EARLY_FLUSH_BYTES = 8192

/**
 * Which side of the TCP/Unix connection this peer is: the connector speaks the greeting first and
 * allocates even channel ids, the binder answers and allocates odd ids.
 *
 * @category models
 * @since 0.1.0
 */
export type Role = "connector" | "binder"

/**
 * Settings of one connection.
 *
 * @category models
 * @since 0.1.0
 */
export interface ConnectionOptions {
  readonly localId: string
  readonly role: Role
  /** The address dialled or bound, for diagnostics. */
  readonly address: string
  readonly greetingTimeout: Duration.Input
  readonly limits: Limits
  /** Capabilities announced in our HELLO. */
  readonly capabilities: Headers.Headers
  /** Bytes queued for writing above which `send` suspends until the writer catches up. */
  readonly writeHighWaterMark: number
  /** Called synchronously for every channel the remote opens. */
  readonly onIncoming: (channel: ChannelImpl) => void
  /**
   * Liveness: when nothing was received for `interval`, send a PING (if the remote announced
   * `ping`); when nothing arrives within `timeout` after it, the connection is declared dead.
   * `undefined` disables probing.
   */
  readonly keepalive?: { readonly interval: Duration.Input; readonly timeout: Duration.Input } | undefined
  /** Called when the remote announces GOAWAY. */
  readonly onGoAway?: ((connection: Connection) => void) | undefined
}

/**
 * Why a connection could not be established or ended.
 *
 * **Example** (Constructing the error)
 * ```ts
 * import { ConnectionError } from "duplex/Connection"
 * const error = new ConnectionError({ address: "tcp://127.0.0.1:7000", stage: "greeting", detail: "timed out" })
 * ```
 * @category errors
 * @since 0.1.0
 */
export class ConnectionError extends Schema.TaggedError<ConnectionError>()("ConnectionError", {
  address: Schema.String,
  stage: Schema.Literals(["dial", "greeting", "read", "write", "protocol", "closed"]),
  detail: Schema.String
}) {
  override get message(): string {
    return `${this.address}: ${this.stage}: ${this.detail}`
  }
}

/**
 * Counters of frames the connection dropped (as the original does) and processed.
 *
 * @category models
 * @since 0.1.0
 */
export interface Stats {
  framesIn: number
  framesOut: number
  droppedUnknownChannel: number
  droppedUnknownType: number
  droppedDuplicateOpen: number
  droppedAfterEnd: number
  /** OPENs refused because the remote had `maxChannelsPerConnection` channels open. */
  refusedOpens: number
  /** Large frames the socket read straight into their own buffer (dialled TCP/Unix connections). */
  framesReadInPlace: number
}

const emptyPayload = new Uint8Array(0)
const limitHeaders = Headers.make({ "duplex-error": "limit" })

/**
 * Live state of one connection. Created by `start`; methods are synchronous and safe to call from
 * any fiber.
 *
 * **Example** (Inspecting a connection's counters)
 * ```ts
 * import type { Connection } from "duplex/Connection"
 * const dropped = (connection: Connection) => connection.stats.droppedUnknownChannel
 * ```
 * @category models
 * @since 0.1.0
 */
export class Connection {
  readonly localId: string
  readonly remoteId: string
  readonly role: Role
  readonly address: string
  readonly channels = new Map<number, ChannelImpl>()
  private readonly counters: Stats = {
    framesIn: 0,
    framesOut: 0,
    droppedUnknownChannel: 0,
    droppedUnknownType: 0,
    droppedDuplicateOpen: 0,
    droppedAfterEnd: 0,
    refusedOpens: 0,
    framesReadInPlace: 0
  }
  // the per-frame counters live on the connection itself (one object less to touch per frame)
  private framesInCount = 0
  private framesOutCount = 0

  private statsLive = false

  /** Counters of this connection (one live object). */
  get stats(): Stats {
    const stats = this.counters
    if (!this.statsLive) {
      // made on first read: the per-frame counters are read through from the connection
      this.statsLive = true
      Object.defineProperties(stats, {
        framesIn: { get: () => this.framesInCount, enumerable: true },
        framesOut: { get: () => this.framesOutCount, enumerable: true }
      })
    }
    return stats
  }

  /** @internal a frame arrived for a channel whose remote half had ended. */
  countDroppedAfterEnd(): void {
    this.counters.droppedAfterEnd++
  }

  /** @internal a large frame was read straight into its own buffer. */
  countReadInPlace(): void {
    this.counters.framesReadInPlace++
  }

  /** Capabilities from the remote's HELLO; `undefined` for an original peer (or before it arrived). */
  remoteCapabilities: Headers.Headers | undefined = undefined
  /** Set once the connection is gone; channels opened afterwards fail at once. */
  lostWith: Channel.ChannelError | undefined = undefined

  private readonly encoder = new FrameEncoder()
  private readonly options: ConnectionOptions
  private writerWake: ((effect: Effect.Effect<void>) => void) | undefined = undefined
  private writableWaiters: Array<(effect: Effect.Effect<void>) => void> = []
  private nextCompact: number
  private nextLegacy: number
  /** Made when someone waits for `closed` (most connections are never awaited this way). */
  private closedDeferred: Deferred.Deferred<ConnectionError> | undefined = undefined
  /** Why the connection ended, once it has. */
  closedWith: ConnectionError | undefined = undefined
  /** @internal called once when the connection is lost (the direct link closes its socket). */
  onLost: ((error: ConnectionError) => void) | undefined = undefined
  private writableEffect: Effect.Effect<void> | undefined = undefined

  /** Completes once the queued bytes are below the high-water mark (or the connection is gone). */
  get writable(): Effect.Effect<void> {
    return this.writableEffect ??= Effect.callback<void>((resume) => {
      if (this.encoder.pending < this.highWaterMark || this.lostWith !== undefined) {
        return resume(Effect.void)
      }
      this.writableWaiters.push(resume)
    })
  }

  /** `options.writeHighWaterMark` and `options.limits.maxFrameBytes`, read on every frame. */
  private readonly highWaterMark: number
  private readonly maxFrameBytesValue: number
  private readonly maxChannels: number
  private readonly onIncoming: (channel: ChannelImpl) => void

  constructor(options: ConnectionOptions, remoteId: string) {
    this.options = options
    this.highWaterMark = options.writeHighWaterMark
    this.maxFrameBytesValue = options.limits.maxFrameBytes
    this.maxChannels = options.limits.maxChannelsPerConnection
    this.onIncoming = options.onIncoming
    this.localId = options.localId
    this.remoteId = remoteId
    this.role = options.role
    this.address = options.address
    const window = Number(Headers.get(options.capabilities, "credit"))
    this.localWindowValue = Number.isSafeInteger(window) && window > 0 ? window : 0
    this.nextCompact = options.role === "connector" ? 0 : 1
    this.nextLegacy = LEGACY_CHANNEL_BASE + this.nextCompact
  }

  /** True while the connection can carry frames. */
  get isOpen(): boolean {
    return this.lostWith === undefined
  }

  /** Completes with the reason once the connection has ended. */
  get closed(): Effect.Effect<ConnectionError> {
    if (this.closedDeferred === undefined) {
      this.closedDeferred = Deferred.makeUnsafe<ConnectionError>()
      if (this.closedWith !== undefined) Deferred.doneUnsafe(this.closedDeferred, Exit.succeed(this.closedWith))
    }
    return Deferred.await(this.closedDeferred)
  }

  /** Bytes queued and not yet handed to the socket. */
  get queuedBytes(): number {
    return this.encoder.pending
  }

  /**
   * Queues a frame; dropped when the connection is gone. Queued frames are written at the end of
   * the current turn (at once past `EARLY_FLUSH_BYTES`), so every frame queued in this turn (by
   * any fiber) goes out in one socket write.
   */
  push(frame: Frame.Frame): void {
    if (this.lostWith !== undefined) return
    this.encoder.write(frame)
    this.framesOutCount++
    this.scheduleFlush()
  }

  /**
   * Queues a DATA frame whose payload `fill` encodes in place (see
   * `FrameEncoder.writeDataWith`); returns the payload's length (0 when the connection is gone).
   */
  pushDataWith<A>(
    channel: number,
    headers: Headers.Headers,
    last: boolean,
    value: A,
    fill: PayloadFill<A>
  ): number {
    if (this.lostWith !== undefined) return 0
    const n = this.encoder.writeDataWith(channel, headers, last, value, fill)
    this.framesOutCount++
    this.scheduleFlush()
    return n
  }

  private scheduleFlush(): void {
    if (this.direct !== undefined) {
      if (this.encoder.pending >= EARLY_FLUSH_BYTES) this.flushDirect()
      else if (!this.wakeScheduled) {
        this.wakeScheduled = true
        queueMicrotask(this.flushDirect)
      }
      return
    }
    if (this.writerWake === undefined) return
    if (this.encoder.pending >= EARLY_FLUSH_BYTES) {
      // Enough for a socket write of its own: hand it to the kernel now, so the remote starts on
      // it while this side is still producing the rest of the batch (both CPUs work at once).
      this.wakeWriter()
    } else if (!this.wakeScheduled) {
      this.wakeScheduled = true
      queueMicrotask(this.wakeWriter)
    }
  }

  private wakeScheduled = false

  /**
   * The Node socket when the transport gave one: frames are then written from `push` (at the end
   * of the turn, or at once past `EARLY_FLUSH_BYTES`) without a writer fiber.
   */
  private direct: Net.Socket | undefined = undefined
  /** Direct mode: the socket asked us to wait for `drain`. */
  private awaitingDrain = false

  /** @internal switches to direct writes on `socket` (instead of `writeLoop`). */
  writeDirectly(socket: Net.Socket): void {
    this.direct = socket
    socket.on("drain", this.onDrain)
    // frames queued before (replies to frames that came with the greeting)
    if (this.encoder.pending > 0) this.flushDirect()
  }

  private readonly onDrain = (): void => {
    this.awaitingDrain = false
    this.flushDirect()
  }

  private readonly flushDirect = (): void => {
    this.wakeScheduled = false
    const socket = this.direct
    if (socket === undefined || this.lostWith !== undefined || this.awaitingDrain) return
    const bytes = this.encoder.flush()
    if (bytes !== undefined) {
      // A write on a destroyed socket reports its error through the socket's events, which the
      // read side turns into a lost connection.
      if (!socket.write(bytes)) this.awaitingDrain = true
    }
    // Nothing of ours left in the socket's buffers: the encoder may reuse that memory.
    if (socket.writableLength === 0) this.encoder.recycle()
    if (this.encoder.pending < this.highWaterMark) this.releaseWaiters()
  }

  private readonly wakeWriter = (): void => {
    this.wakeScheduled = false
    const wake = this.writerWake
    if (wake !== undefined) {
      this.writerWake = undefined
      wake(Effect.void)
    }
  }

  /** Whether sends must wait for the writer (queued bytes above the high-water mark). */
  get congested(): boolean {
    return this.encoder.pending >= this.highWaterMark
  }

  /** Opens a channel on this connection and sends its OPEN frame. */
  open(method: string, headers: Headers.Headers): ChannelImpl {
    const id = this.allocate()
    const channel = new ChannelImpl(this, id, method, headers, "outgoing")
    if (this.lostWith !== undefined) channel.lose(this.lostWith)
    else {
      this.channels.set(id, channel)
      this.push(Frame.open(id, method, headers))
    }
    return channel
  }

  private allocate(): number {
    const step = 2
    if (this.remoteCapabilities !== undefined) {
      let id = this.nextCompact
      while (this.channels.has(id)) id = this.wrapCompact(id + step)
      this.nextCompact = this.wrapCompact(id + step)
      return id
    }
    let id = this.nextLegacy
    while (this.channels.has(id)) id = this.wrapLegacy(id + step)
    this.nextLegacy = this.wrapLegacy(id + step)
    return id
  }

  private wrapCompact(id: number): number {
    return id >= LEGACY_CHANNEL_BASE ? (this.role === "connector" ? 0 : 1) : id
  }

  private wrapLegacy(id: number): number {
    return id >= CHANNEL_ID_LIMIT ? LEGACY_CHANNEL_BASE + (this.role === "connector" ? 0 : 1) : id
  }

  /** Dispatches one decoded frame (called by the reader, in the socket's read event or read loop). */
  readonly dispatch = (frame: Frame.Frame): void => {
    this.framesInCount++
    switch (frame.type) {
      case FrameType.Data:
        return this.handleData(frame)
      case FrameType.Open:
        return this.handleOpen(frame)
      case FrameType.Hello:
        return this.handleHello(frame)
      case FrameType.Ping:
        return this.announced("ping") ? this.handlePing(frame) : this.dropUnknown()
      case FrameType.Pong:
        return this.announced("ping") ? undefined : this.dropUnknown()
      case FrameType.Credit:
        return this.announced("credit") ? this.handleCredit(frame) : this.dropUnknown()
      case FrameType.GoAway:
        if (!this.announced("goaway")) return this.dropUnknown()
        this.remoteGoingAway = true
        this.options.onGoAway?.(this)
        return
      default:
        this.counters.droppedUnknownType++
    }
  }

  private handleData(frame: Frame.Frame): void {
    const channel = this.channels.get(frame.channel)
    if (channel === undefined) {
      this.counters.droppedUnknownChannel++
      return
    }
    channel.receive(frame)
  }

  private handleOpen(frame: Frame.Frame): void {
    if (this.channels.has(frame.channel)) {
      this.counters.droppedDuplicateOpen++
      return
    }
    if (this.remoteOpened >= this.maxChannels) {
      // protect this peer, keep the connection: refuse this channel only
      this.counters.refusedOpens++
      this.pushReply(
        Frame.make(FrameType.Data, frame.channel, "", limitHeaders, "duplex: too many open channels", true, null)
      )
      return
    }
    const channel = new ChannelImpl(this, frame.channel, frame.method, frame.headers, "incoming")
    this.remoteOpened++
    this.channels.set(frame.channel, channel)
    this.onIncoming(channel)
  }

  /** Extension frames count only from a remote that announced the extension (else: unknown type). */
  private announced(name: string): boolean {
    return this.remoteCapabilities !== undefined && Headers.get(this.remoteCapabilities, name) !== undefined
  }

  private dropUnknown(): void {
    this.counters.droppedUnknownType++
  }

  private handleCredit(frame: Frame.Frame): void {
    const channel = this.channels.get(frame.channel)
    const payload = frame.payload
    if (channel === undefined || payload === null || payload.length !== 4) {
      this.counters.droppedUnknownChannel++
      return
    }
    channel.addCredit(new DataView(payload.buffer, payload.byteOffset, 4).getUint32(0))
  }

  private handlePing(frame: Frame.Frame): void {
    // Only a remote that announced `ping` sends one; answer with its payload.
    this.pushReply(Frame.make(FrameType.Pong, 0, "", Headers.empty, "", false, frame.payload))
  }

  /**
   * Queues a frame the remote's own input calls for (PONG, refusals). A remote that keeps asking
   * while it does not read the answers would make this queue grow with its input: past the
   * high-water mark plus one frame the connection is closed instead.
   */
  pushReply(frame: Frame.Frame): void {
    if (this.encoder.pending > this.highWaterMark + this.options.limits.maxFrameBytes) {
      this.lose(
        new ConnectionError({
          address: this.address,
          stage: "protocol",
          detail: "the remote keeps sending requests but does not read the replies"
        })
      )
      return
    }
    this.push(frame)
  }

  /** Whether both sides announced capability `name`. */
  supports(name: string): boolean {
    return Headers.get(this.options.capabilities, name) !== undefined &&
      this.remoteCapabilities !== undefined && Headers.get(this.remoteCapabilities, name) !== undefined
  }

  /**
   * The credit window (bytes) the remote grants each channel, or `undefined` when flow control is
   * not in use on this connection (either side did not announce `credit`).
   */
  remoteWindow: number | undefined = undefined

  /** The credit window we grant each channel (our HELLO's `credit`). */
  get localWindow(): number {
    return this.localWindowValue
  }
  private readonly localWindowValue: number

  /** The largest frame the remote accepts from us (ours, as a conservative stand-in). */
  get maxFrameBytes(): number {
    return this.maxFrameBytesValue
  }

  /** When the last bytes arrived (ms since epoch); any frame counts as a sign of life. */
  lastReceived = Date.now()

  private handleHello(frame: Frame.Frame): void {
    if (this.remoteCapabilities !== undefined) return
    this.remoteCapabilities = frame.headers
    // computed once: every channel opened from now on asks
    if (this.supports("credit")) {
      const n = Number(Headers.get(frame.headers, "credit"))
      this.remoteWindow = Number.isSafeInteger(n) && n > 0 ? n : undefined
    }
  }

  /** Called by a channel once both halves ended (or it failed): frees its id. */
  release(channel: ChannelImpl): void {
    if (this.channels.get(channel.id) !== channel) return
    this.channels.delete(channel.id)
    if (channel.direction === "incoming") this.remoteOpened--
    if (this.channels.size === 0 && this.idleWaiters.length > 0) {
      const waiters = this.idleWaiters
      this.idleWaiters = []
      for (const resume of waiters) resume(Effect.void)
    }
  }

  // --- graceful drain (PROTOCOL.md, "GoAway") ------------------------------------------------

  private remoteOpened = 0
  private idleWaiters: Array<(effect: Effect.Effect<void>) => void> = []
  /** We announced GOAWAY: this peer opens nothing new here and will close the connection. */
  goingAway = false
  /** The remote announced GOAWAY: open nothing new here; channels in flight go on. */
  remoteGoingAway = false

  /** Whether new channels of ours may be placed on this connection. */
  get acceptsOpens(): boolean {
    return this.lostWith === undefined && !this.goingAway && !this.remoteGoingAway
  }

  /** Announces that this connection is draining (GOAWAY when the remote understands it). */
  goAway(reason: string): void {
    if (this.goingAway || this.lostWith !== undefined) return
    this.goingAway = true
    if (this.supports("goaway")) {
      this.push(Frame.make(FrameType.GoAway, 0, "", Headers.empty, reason, false, null))
    }
  }

  /** Completes when no channel is open on the connection (or it is gone). */
  get idle(): Effect.Effect<void> {
    return Effect.callback<void>((resume) => {
      if (this.channels.size === 0 || this.lostWith !== undefined) return resume(Effect.void)
      this.idleWaiters.push(resume)
    })
  }

  /** Ends the connection: every channel on it fails with `ConnectionLost`. Idempotent. */
  lose(error: ConnectionError): void {
    if (this.lostWith !== undefined) return
    const lost = new Channel.ChannelError({
      reason: new Channel.ConnectionLost({ remoteId: this.remoteId, detail: error.message })
    })
    this.lostWith = lost
    this.direct?.off("drain", this.onDrain)
    const channels = Array.from(this.channels.values())
    this.channels.clear()
    for (const channel of channels) channel.lose(lost)
    this.releaseWaiters()
    const idle = this.idleWaiters
    this.idleWaiters = []
    for (const resume of idle) resume(Effect.void)
    const wake = this.writerWake
    if (wake !== undefined) {
      this.writerWake = undefined
      wake(Effect.void)
    }
    this.closedWith = error
    if (this.closedDeferred !== undefined) Deferred.doneUnsafe(this.closedDeferred, Exit.succeed(error))
    this.onLost?.(error)
  }

  private releaseWaiters(): void {
    const waiters = this.writableWaiters
    if (waiters.length === 0) return
    this.writableWaiters = []
    for (const resume of waiters) resume(Effect.void)
  }

  /** @internal the writer fiber: one socket write per wake-up with everything queued. */
  writeLoop(writer: Socket.Writer): Effect.Effect<void, ConnectionError> {
    const waitOutput = Effect.callback<void>((resume) => {
      if (this.encoder.pending > 0 || this.lostWith !== undefined) return resume(Effect.void)
      this.writerWake = resume
      return Effect.sync(() => {
        if (this.writerWake === resume) this.writerWake = undefined
      })
    })
    const self = this
    return Effect.gen(function*() {
      while (self.lostWith === undefined) {
        const bytes = self.encoder.flush()
        if (bytes === undefined) {
          yield* waitOutput
          continue
        }
        const result = yield* Effect.result(writer.write(bytes))
        if (Result.isFailure(result)) {
          return yield* new ConnectionError({ address: self.address, stage: "write", detail: result.failure.message })
        }
        if (self.encoder.pending < self.options.writeHighWaterMark) self.releaseWaiters()
      }
    })
  }

  /** Takes whatever is queued (used for a last flush when closing). */
  takeQueued(): Uint8Array | undefined {
    return this.encoder.flush()
  }
}

/**
 * The connection's side of a channel: implements `Channel.Channel` and receives frames from the
 * read loop.
 *
 * **Example** (Refusing a routed channel)
 * ```ts
 * import type { ChannelImpl } from "duplex/Connection"
 * const refuse = (channel: ChannelImpl) => channel.cancelUnsafe()
 * ```
 * @category models
 * @since 0.1.0
 */
export class ChannelImpl implements Channel.Channel {
  readonly [Channel.TypeId]: typeof Channel.TypeId = Channel.TypeId
  readonly connection: Connection
  readonly id: number
  readonly method: string
  readonly headers: Headers.Headers
  readonly direction: "outgoing" | "incoming"
  private inboxValue: Channel.Inbox | undefined = undefined
  /** Receives the remote's messages; defaults to an `Inbox` (behind `input` / `take`). */
  sink: Channel.Sink | undefined = undefined
  localEnded = false
  remoteEnded = false
  failure: Channel.ChannelError | undefined = undefined
  /** Called when the channel is aborted (remote cancel, local cancel, lost connection). */
  onAbort: (() => void) | undefined = undefined
  /** Headers of the first DATA frame received (response headers in RPC). */
  firstHeaders: Headers.Headers | undefined = undefined
  private latch: Latch.Latch | undefined = undefined
  // --- flow control (PROTOCOL.md, "Flow control"); inactive when `flow` is false
  readonly flow: boolean
  /** Bytes we may still send before the remote grants more. */
  sendCredit: number
  private creditWaiters: Array<(effect: Effect.Effect<void>) => void> | undefined = undefined
  /** Bytes the remote may still send us (negative by at most one frame). */
  private recvBudget: number
  /** Bytes our reader consumed and we have not granted back yet. */
  private unacked = 0

  constructor(
    connection: Connection,
    id: number,
    method: string,
    headers: Headers.Headers,
    direction: "outgoing" | "incoming"
  ) {
    this.connection = connection
    this.id = id
    this.method = method
    this.headers = headers
    this.direction = direction
    // Channels opened before the HELLOs were exchanged (legacy-range ids) are never flow controlled.
    const window = id < LEGACY_CHANNEL_BASE && id >= 0 ? connection.remoteWindow : undefined
    this.flow = window !== undefined && connection.localWindow > 0
    this.sendCredit = this.flow ? window! : Number.POSITIVE_INFINITY
    this.recvBudget = this.flow ? connection.localWindow : Number.POSITIVE_INFINITY
  }

  /** True when flow control forbids sending more payload until the remote grants credit. */
  get blocked(): boolean {
    return this.sendCredit <= 0 && this.failure === undefined && !this.localEnded
  }

  /** Waits until payload may be sent again (or the channel ended). */
  get awaitCredit(): Effect.Effect<void> {
    return Effect.callback<void>((resume) => {
      if (!this.blocked) return resume(Effect.void)
      ;(this.creditWaiters ??= []).push(resume)
    })
  }

  /** @internal a CREDIT frame arrived. */
  addCredit(n: number): void {
    this.sendCredit += n
    if (this.sendCredit > 0) this.releaseCreditWaiters()
  }

  private releaseCreditWaiters(): void {
    const waiters = this.creditWaiters
    if (waiters === undefined) return
    this.creditWaiters = undefined
    for (const resume of waiters) resume(Effect.void)
  }

  /** @internal the reader took `bytes`: grant them back once half a window is pending. */
  consumed(bytes: number): void {
    if (!this.flow || bytes === 0) return
    this.unacked += bytes
    const window = this.connection.localWindow
    if (this.unacked >= window / 2 && !this.remoteEnded && this.failure === undefined) {
      const grant = this.unacked
      this.unacked = 0
      this.recvBudget += grant
      const payload = new Uint8Array(4)
      new DataView(payload.buffer).setUint32(0, Math.min(grant, 0xffff_ffff))
      this.connection.push(Frame.make(FrameType.Credit, this.id, "", Headers.empty, "", false, payload))
    }
  }

  get remoteId(): string {
    return this.connection.remoteId
  }

  /** The default sink, created on first use. */
  get inbox(): Channel.Inbox {
    if (this.inboxValue === undefined) {
      const inbox = new Channel.Inbox()
      if (this.flow) inbox.onConsumed = (bytes) => this.consumed(bytes)
      this.inboxValue = inbox
      this.sink ??= inbox
    }
    return this.inboxValue
  }

  private get target(): Channel.Sink {
    return this.sink ?? this.inbox
  }

  get input(): Channel.Channel["input"] {
    return Channel.inboxStream(this.inbox)
  }

  get take(): Channel.Channel["take"] {
    return this.inbox.take
  }

  /** True once both halves ended or the channel failed. */
  get isDone(): boolean {
    return this.failure !== undefined || (this.localEnded && this.remoteEnded)
  }

  // --- receiving ---------------------------------------------------------------------------

  /** @internal handles a DATA frame for this channel. */
  receive(frame: Frame.Frame): void {
    if (frame.error !== "") {
      if (!frame.last) {
        this.abort(new Channel.ChannelError({ reason: new Channel.RemoteAborted({ text: frame.error }) }))
        return
      }
      if (this.remoteEnded) {
        this.connection.countDroppedAfterEnd()
        return
      }
      this.remoteEnded = true
      this.settle()
      this.target.finish(
        new Channel.ChannelError({
          reason: new Channel.RemoteFailure({
            text: frame.error,
            ...(frame.payload === null ? {} : { payload: frame.payload }),
            ...(Headers.isEmpty(frame.headers) ? {} : { headers: frame.headers })
          })
        }),
        undefined,
        frame
      )
      return
    }
    if (this.remoteEnded) {
      this.connection.countDroppedAfterEnd()
      return
    }
    if (this.firstHeaders === undefined) this.firstHeaders = frame.headers
    if (this.flow && frame.payload !== null) {
      const n = frame.payload.length
      this.recvBudget -= n
      if (this.recvBudget < -this.connection.maxFrameBytes) {
        // the remote ignores our window: stop it before it exhausts memory
        this.cancelUnsafe("duplex: flow control window exceeded")
        return
      }
      // a sink other than the inbox consumes at once
      if (this.sink !== undefined && this.sink !== this.inboxValue) this.consumed(n)
    }
    if (frame.last) {
      // State first: waking the reader may run its fiber synchronously.
      this.remoteEnded = true
      this.settle()
      this.target.finish(undefined, frame.payload ?? undefined, frame)
      return
    }
    this.target.offer(frame.payload ?? emptyPayload, frame)
  }

  // --- sending -----------------------------------------------------------------------------

  private closedError(): Channel.ChannelError {
    return this.failure ?? new Channel.ChannelError({ reason: new Channel.ChannelClosed({ channel: this.id }) })
  }

  /** @internal queues a frame of this channel; `ends` marks the end of the output half. */
  sendFrame(frame: Frame.Frame, ends: boolean): Effect.Effect<void, Channel.ChannelError> {
    if (this.failure !== undefined || this.localEnded) return Effect.fail(this.closedError())
    if (frame.payload !== null && frame.payload.length > 0 && this.blocked) {
      return Effect.flatMap(this.awaitCredit, () => this.sendFrame(frame, ends))
    }
    this.pushUnsafe(frame, ends)
    return this.connection.congested ? this.connection.writable : Effect.void
  }

  /**
   * Queues a DATA frame whose payload is encoded in place by `fill` (see
   * `Connection.pushDataWith`); returns the payload's length, or -1 when the half is already
   * closed. Used by the RPC layer on its hot path.
   */
  pushDataWith<A>(
    headers: Headers.Headers,
    last: boolean,
    value: A,
    fill: PayloadFill<A>
  ): number {
    if (this.failure !== undefined || this.localEnded) return -1
    const n = this.connection.pushDataWith(this.id, headers, last, value, fill)
    if (last) this.localEnded = true
    if (this.flow) this.sendCredit -= n
    if (last) this.settle()
    return n
  }

  /**
   * Queues a frame synchronously; returns `false` when the half is already closed. Used by the
   * RPC layer on its hot path.
   */
  pushUnsafe(frame: Frame.Frame, ends: boolean): boolean {
    if (this.failure !== undefined || this.localEnded) return false
    if (ends) this.localEnded = true
    if (this.flow && frame.payload !== null) this.sendCredit -= frame.payload.length
    this.connection.push(frame)
    if (ends) this.settle()
    return true
  }

  send(payload: Uint8Array): Effect.Effect<void, Channel.ChannelError> {
    return Effect.suspend(() => this.sendFrame(Frame.data(this.id, payload, false), false))
  }

  sendLast(payload: Uint8Array): Effect.Effect<void, Channel.ChannelError> {
    return Effect.suspend(() => this.sendFrame(Frame.data(this.id, payload, true), true))
  }

  get end(): Effect.Effect<void, Channel.ChannelError> {
    return Effect.suspend(() => this.sendFrame(Frame.end(this.id), true))
  }

  fail(text: string, payload?: Uint8Array, headers?: Headers.Headers): Effect.Effect<void, Channel.ChannelError> {
    return Effect.suspend(() =>
      this.sendFrame(
        Frame.make(
          FrameType.Data,
          this.id,
          "",
          headers ?? Headers.empty,
          text === "" ? "error" : text,
          true,
          payload ?? null
        ),
        true
      )
    )
  }

  sendWithHeaders(
    payload: Uint8Array,
    headers: Headers.Headers,
    last = false
  ): Effect.Effect<void, Channel.ChannelError> {
    return Effect.suspend(() =>
      this.sendFrame(Frame.make(FrameType.Data, this.id, "", headers, "", last, payload), last)
    )
  }

  get cancel(): Effect.Effect<void> {
    return Effect.sync(() => this.cancelUnsafe())
  }

  get done(): Effect.Effect<void> {
    if (this.latch === undefined) this.latch = Latch.makeUnsafe(this.isDone)
    return this.latch.await
  }

  /** Aborts the channel locally and tells the remote (unless it is already done). */
  cancelUnsafe(text: string = "CloseStream"): void {
    if (this.isDone) return
    this.connection.push(Frame.cancel(this.id, text))
    this.abort(this.closedError())
  }

  /**
   * Forgets the channel without telling the remote (e.g. after an early error reply, where the
   * original sends no cancel either). Later frames for it are dropped as unknown.
   */
  detach(): void {
    if (this.isDone) return
    this.abort(this.closedError())
  }

  /** @internal the connection is gone. */
  lose(error: Channel.ChannelError): void {
    if (this.isDone) return
    this.failure = error
    this.latch?.openUnsafe()
    this.releaseCreditWaiters()
    this.target.finish(error, undefined, undefined)
    this.onAbort?.()
  }

  private abort(error: Channel.ChannelError): void {
    if (this.failure !== undefined) return
    this.failure = error
    this.localEnded = true
    this.remoteEnded = true
    this.connection.release(this)
    this.latch?.openUnsafe()
    this.releaseCreditWaiters()
    this.target.abort(error)
    this.onAbort?.()
  }

  private settle(): void {
    if (this.localEnded && this.remoteEnded) {
      this.connection.release(this)
      this.latch?.openUnsafe()
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Starting a connection
// ---------------------------------------------------------------------------------------------

const isCleanClose = (error: Socket.SocketError): boolean =>
  error.reason._tag === "SocketCloseError" && error.reason.code === 1000

const toBytes = (chunk: Uint8Array | string): Uint8Array =>
  typeof chunk === "string" ? new TextEncoder().encode(chunk) : chunk

/**
 * Probes an idle connection: after `interval` without receiving anything, sends a PING (when both
 * sides announced `ping`); if nothing at all arrives within `timeout` after that, the connection
 * is lost. Without `ping` support (an original peer) it only relies on TCP keepalive. No timer of
 * its own: one timer checks every probe of the process (see `probes`); `stop` ends it.
 */
class Keepalive {
  private readonly connection: Connection
  readonly interval: number
  readonly timeout: number
  private readonly fail: (stage: ConnectionError["stage"], detail: string) => ConnectionError
  /**
   * When the probe acts next, on the monotonic clock (`performance.now()`): a wall-clock step
   * must neither drop a healthy connection early nor stall the probe.
   */
  private deadline: number
  private pingSentAt = 0
  constructor(
    connection: Connection,
    keepalive: { readonly interval: Duration.Input; readonly timeout: Duration.Input },
    fail: (stage: ConnectionError["stage"], detail: string) => ConnectionError
  ) {
    this.connection = connection
    this.interval = millisOf(keepalive.interval)
    this.timeout = millisOf(keepalive.timeout)
    this.fail = fail
    this.deadline = performance.now() + this.interval
    addProbe(this)
  }
  stop(): void {
    probes.delete(this)
  }
  /**
   * Called by the probes' timer: acts when the deadline has passed. `mono` is the monotonic time
   * of deadlines, `now` the wall clock of `lastReceived` and `pingSentAt`.
   */
  check(mono: number, now: number): void {
    if (mono < this.deadline) return
    const connection = this.connection
    if (!connection.isOpen) return this.stop()
    const { interval, timeout } = this
    if (this.pingSentAt > 0) {
      if (connection.lastReceived < this.pingSentAt) {
        // an endless timeout waits for the answer for ever, checking every interval
        if (!Number.isFinite(timeout)) {
          this.deadline = mono + interval
          return
        }
        this.stop()
        return connection.lose(this.fail("closed", `no answer to a ping within ${timeout} ms`))
      }
      this.pingSentAt = 0
    }
    const idle = now - connection.lastReceived
    if (idle < interval) {
      this.deadline = mono + Math.max(0, interval - idle)
      return
    }
    if (!connection.supports("ping")) {
      this.deadline = mono + interval
      return
    }
    this.pingSentAt = now
    connection.push(Frame.make(FrameType.Ping, 0, "", Headers.empty, "", false, null))
    this.deadline = mono + (Number.isFinite(timeout) ? timeout : interval)
  }
}

/**
 * Every keepalive probe of the process, checked by one timer whose period is a quarter of the
 * shortest interval or timeout among them (between 10 ms and 1 s): a thousand connections do
 * not hold a thousand timers, and a probe acts at most a period late.
 */
const probes = new Set<Keepalive>()
let probeTimer: ReturnType<typeof setTimeout> | undefined
let probePeriod = Number.POSITIVE_INFINITY

const periodOf = (probe: Keepalive): number => Math.max(10, Math.min(1000, Math.min(probe.interval, probe.timeout) / 4))

const checkProbes = (): void => {
  probeTimer = undefined
  probePeriod = Number.POSITIVE_INFINITY
  const mono = performance.now()
  const now = Date.now()
  let period = Number.POSITIVE_INFINITY
  let defect: { readonly error: unknown } | undefined
  for (const probe of probes) {
    try {
      probe.check(mono, now)
    } catch (error) {
      // a throw from code a lost connection reaches (a channel's sink) must not stop the other
      // probes: this one stops, and the throw is reported as before, uncaught, after the pass
      probe.stop()
      defect ??= { error }
    }
    if (probes.has(probe)) period = Math.min(period, periodOf(probe))
  }
  if (probes.size > 0) armProbes(period)
  if (defect !== undefined) {
    const error = defect.error
    queueMicrotask(() => {
      throw error
    })
  }
}

const armProbes = (period: number): void => {
  if (probeTimer !== undefined && period >= probePeriod) return
  if (probeTimer !== undefined) clearTimeout(probeTimer)
  probePeriod = period
  probeTimer = setTimeout(checkProbes, period)
  probeTimer.unref()
}

const addProbe = (probe: Keepalive): void => {
  probes.add(probe)
  armProbes(periodOf(probe))
}

/**
 * Performs the greeting on `socket`, then runs the connection in the current scope (directly on
 * the Node socket for Duplex's own sockets, else with a read-loop fiber and a writer fiber).
 * Returns once the greeting succeeded; `connection.closed` tells when it ends. Closing the scope
 * ends the connection (after a last flush of queued frames) and fails its channels with
 * `ConnectionLost`. On Duplex's own sockets, a connection lost otherwise (remote close, protocol
 * error, keepalive) closes its socket at once.
 *
 * **Example** (Running a connection over a socket)
 * ```ts
 * import { Effect } from "effect"
 * import type { Socket } from "effect/socket"
 * import * as Connection from "duplex/Connection"
 * import * as Headers from "duplex/Headers"
 * import { defaultLimits } from "duplex/Protocol"
 * const run = (socket: Socket.Socket) =>
 *   Connection.start(socket, {
 *     localId: crypto.randomUUID(), role: "connector", address: "tcp://127.0.0.1:7000",
 *     greetingTimeout: "10 seconds", limits: defaultLimits, capabilities: Headers.empty,
 *     writeHighWaterMark: 1 << 20, onIncoming: (channel) => channel.cancelUnsafe()
 *   }).pipe(Effect.flatMap((connection) => connection.closed), Effect.scoped)
 * ```
 * @category constructors
 * @since 0.1.0
 */
export const start = (
  socket: Socket.Socket,
  options: ConnectionOptions
): Effect.Effect<Connection, ConnectionError, Scope.Scope> => {
  const open = RawSocket.opener(socket)
  return open !== undefined ? startDirect(open, options) : startOnSocket(socket, options)
}

/**
 * Greeting and HELLO in one write (the original takes exactly 36 bytes, then frames). The same
 * for every connection made with one options object, so it is encoded once per options object
 * (`socket.write` does not keep a reference to the bytes it is given).
 */
const greetingAndHello = (options: ConnectionOptions): Uint8Array => {
  const cached = greetings.get(options)
  if (cached !== undefined) return cached
  const hello = new FrameEncoder()
  hello.write(Frame.hello(options.capabilities))
  const helloBytes = hello.flush()!
  const ourGreeting = Greeting.encode(options.localId)
  const bytes = new Uint8Array(ourGreeting.length + helloBytes.length)
  bytes.set(ourGreeting, 0)
  bytes.set(helloBytes, ourGreeting.length)
  greetings.set(options, bytes)
  return bytes
}

const greetings = new WeakMap<ConnectionOptions, Uint8Array>()

/** Milliseconds of a duration (numbers are milliseconds already: no conversion per connection). */
const millisOf = (input: Duration.Input): number =>
  typeof input === "number" ? input : Duration.toMillis(Duration.fromInputUnsafe(input))

const greetingTimeoutText = (options: ConnectionOptions): string =>
  `no greeting within ${Duration.format(Duration.fromInputUnsafe(options.greetingTimeout))}`

/**
 * The connection on a Node socket of Duplex's own transport: the greeting, then every chunk is
 * decoded and dispatched in the socket's read event, and frames are written with `socket.write`
 * (see `Connection.writeDirectly`). No fiber per connection: a `DirectLink` holds the reading
 * state, keepalive and the close, with one finalizer.
 */
const startDirect = (
  open: RawSocket.Opener,
  options: ConnectionOptions
): Effect.Effect<Connection, ConnectionError, Scope.Scope> =>
  Effect.flatMap(
    Effect.mapError(open, (e) => new ConnectionError({ address: options.address, stage: "dial", detail: e.message })),
    (opened) => {
      const link = new DirectLink(opened, options, undefined)
      // whatever happens next (a failed greeting included), closing the scope closes the socket
      return Effect.andThen(Effect.addFinalizer(() => link.close), link.greeted)
    }
  )

/**
 * What a `Link` (a connection run without a scope, see `startLink`) tells its owner.
 *
 * @internal
 */
export interface LinkHooks {
  /** The greeting succeeded: the connection carries frames from now on. */
  readonly onGreeted: (connection: Connection) => void
  /**
   * The socket is closed: after a failed greeting (`connection` undefined), or once the
   * connection ended (`connection.closedWith` says why).
   */
  readonly onClosed: (link: Link, connection: Connection | undefined) => void
}

/**
 * A connection run without a fiber or scope: it closes its socket by itself once the connection
 * ends; `close` ends it (after a last flush of queued frames).
 *
 * @internal
 */
export interface Link {
  readonly close: Effect.Effect<void>
  /** True once the socket is closed (`onClosed` was called). */
  readonly isClosed: boolean
}

/**
 * Starts a connection on an accepted Node socket without a fiber or scope (a listener with
 * thousands of connections holds one small object per connection): `hooks` hear about the
 * greeting and the end; closing is `Link.close`.
 *
 * **Example** (Running accepted sockets as links)
 * ```ts
 * import type * as Net from "node:net"
 * import * as Connection from "duplex/Connection"
 * const links = new Set<Connection.Link>()
 * const accept = (socket: Net.Socket, options: Connection.ConnectionOptions) => {
 *   const link = Connection.startLink(socket, options, {
 *     onGreeted: (connection) => console.log("greeted", connection.remoteId),
 *     onClosed: (link) => links.delete(link)
 *   })
 *   if (!link.isClosed) links.add(link)
 * }
 * ```
 * @internal
 */
export const startLink = (socket: Net.Socket, options: ConnectionOptions, hooks: LinkHooks): Link =>
  new DirectLink({ socket }, options, hooks)

/** Scratch buffers of a connection reading with `onread`, by the size of what is expected next. */
const SCRATCH_BYTES = 64 * 1024
const SCRATCH_AFTER_LARGE_BYTES = 2 * 1024
/**
 * One scratch buffer for every connection of the process: a read fills it and its bytes are
 * copied out in the same callback (libuv asks for the buffer, reads, then calls back, with no
 * other read in between), so connections never see each other's bytes, and a thousand
 * connections do not hold a thousand cold 64 KiB buffers.
 */
const sharedScratch = new Uint8Array(SCRATCH_BYTES)
const sharedSmallScratch = sharedScratch.subarray(0, SCRATCH_AFTER_LARGE_BYTES)

/**
 * One direct connection: greeting, then frames, on a `net.Socket`. Reads arrive as `data` events,
 * or through `onread` (a `ReadSink`) when the socket was opened with it: then a large frame is
 * read straight into its own buffer (the kernel copies into it), and everything else goes to a
 * shared scratch buffer whose bytes are copied out for the decoder.
 */
class DirectLink implements RawSocket.ReadSink {
  private readonly conn: Net.Socket
  private readonly options: ConnectionOptions
  private readonly decoder: FrameDecoder
  /** Set once the greeting completed (then frames are dispatched to it). */
  private connection: Connection | undefined = undefined
  private reader: Greeting.GreetingReader | undefined = new Greeting.GreetingReader()
  /** The greeting's outcome, once known (before the fiber waits for it, or after). */
  private outcome: Effect.Effect<Connection, ConnectionError> | undefined = undefined
  private resume: ((effect: Effect.Effect<Connection, ConnectionError>) => void) | undefined = undefined
  private cancelGreetingTimer: () => void = constVoid
  private keepalive: Keepalive | undefined = undefined
  private readonly hooks: LinkHooks | undefined
  /** 0: open, 1: closing (waiting for the last write), 2: closed. */
  private closeState: 0 | 1 | 2 = 0
  private closeWaiters: Array<() => void> | undefined = undefined
  // `onread` state
  private readInto: Uint8Array | undefined = undefined
  private afterLarge = false

  constructor(opened: RawSocket.Opened, options: ConnectionOptions, hooks: LinkHooks | undefined) {
    const conn = opened.socket
    this.conn = conn
    this.options = options
    this.hooks = hooks
    this.decoder = new FrameDecoder(options.limits)
    // reads arrive through the read sink when the socket was opened with `onread`, else as `data`
    if (opened.setReader !== undefined) {
      this.decoder.assembleLarge = true
      opened.setReader(this)
    } else conn.on("data", this.onData)
    conn.on("end", this.onEnd)
    conn.on("error", this.onError)
    conn.on("close", this.onEnd)
    // an accepted socket may have been paused for us (the listener pauses until a reader exists)
    conn.resume()
    const ours = greetingAndHello(options)
    if (options.role === "connector") conn.write(ours)
    this.cancelGreetingTimer = setTimer(
      millisOf(options.greetingTimeout),
      this.onGreetingTimeout
    )
    if (conn.destroyed || conn.readableEnded) this.end(undefined)
  }

  private fail(stage: ConnectionError["stage"], detail: string): ConnectionError {
    return new ConnectionError({ address: this.options.address, stage, detail })
  }

  /** Completes with the connection once the greeting succeeded. */
  get greeted(): Effect.Effect<Connection, ConnectionError> {
    return Effect.callback<Connection, ConnectionError>((resume) => {
      if (this.outcome !== undefined) return resume(this.outcome)
      this.resume = resume
      return Effect.sync(() => {
        this.resume = undefined
        this.reader = undefined
        this.cancelGreetingTimer()
      })
    })
  }

  private settleGreeting(outcome: Effect.Effect<Connection, ConnectionError>): void {
    this.reader = undefined
    this.cancelGreetingTimer()
    const resume = this.resume
    this.resume = undefined
    if (resume !== undefined) resume(outcome)
    else this.outcome = outcome
  }

  /** The greeting failed: the socket is closed (at once when nobody owns the link's scope). */
  private greetingFailed(error: ConnectionError): void {
    this.settleGreeting(Effect.fail(error))
    if (this.hooks !== undefined) this.shutdown()
  }

  private readonly onGreetingTimeout = (): void => {
    if (this.reader === undefined) return
    this.greetingFailed(
      this.fail("greeting", ProtocolError.fromReason("GreetingTimeout", greetingTimeoutText(this.options)).message)
    )
  }

  private greet(chunk: Uint8Array, reader: Greeting.GreetingReader): void {
    const result = reader.feed(chunk)
    if (Result.isFailure(result)) return this.greetingFailed(this.fail("greeting", result.failure.message))
    const state = result.success
    if (state._tag !== "Done") return
    this.reader = undefined
    this.cancelGreetingTimer()
    const options = this.options
    if (options.role === "binder") this.conn.write(greetingAndHello(options))
    const connection = new Connection(options, state.id)
    this.connection = connection
    // once lost (remote closed, protocol error, keepalive, `lose`), the socket is closed
    connection.onLost = this.onLost
    connection.writeDirectly(this.conn)
    // Bytes that came with the greeting (usually the remote's HELLO) are dispatched now, so the
    // connection is returned knowing the remote's capabilities.
    if (state.rest.length > 0) this.frames(state.rest, connection)
    if (connection.lostWith !== undefined) return this.settleGreeting(Effect.succeed(connection))
    if (options.keepalive !== undefined) {
      this.keepalive = new Keepalive(connection, options.keepalive, (stage, detail) => this.fail(stage, detail))
    }
    this.hooks?.onGreeted(connection)
    this.settleGreeting(Effect.succeed(connection))
  }

  private readonly onLost = (): void => this.shutdown()

  private frames(chunk: Uint8Array, connection: Connection): void {
    if (connection.lostWith !== undefined) return
    connection.lastReceived = Date.now()
    // Frames are dispatched inside the socket's read callback, where a throw (a defect in code a
    // frame reaches synchronously) would be an uncaught exception for the whole process: it ends
    // this connection instead.
    try {
      this.failed(this.decoder.feed(chunk, connection.dispatch), connection)
    } catch (e) {
      this.defect(e, connection)
    }
  }

  private failed(error: ProtocolError | undefined, connection: Connection): void {
    if (error === undefined) return
    connection.lose(this.fail("protocol", error.message))
    this.conn.destroy()
  }

  private defect(e: unknown, connection: Connection): void {
    connection.lose(this.fail("read", `dispatching a frame failed: ${e instanceof Error ? e.message : String(e)}`))
    this.conn.destroy()
  }

  private chunk(chunk: Uint8Array): void {
    const connection = this.connection
    if (connection !== undefined) return this.frames(chunk, connection)
    const reader = this.reader
    if (reader !== undefined) return this.greet(chunk, reader)
    // after a failed greeting: ignored (the socket is being closed)
  }

  private readonly onData = (chunk: Uint8Array): void => this.chunk(chunk)

  private readonly onEnd = (): void => this.end(undefined)

  private readonly onError = (error: Error): void => this.end(error)

  private end(error: Error | undefined): void {
    const connection = this.connection
    if (connection === undefined) {
      if (this.reader === undefined) return
      return this.greetingFailed(
        this.fail("greeting", error === undefined ? "closed before the greeting completed" : error.message)
      )
    }
    if (connection.lostWith !== undefined) return
    if (error !== undefined) return connection.lose(this.fail("read", error.message))
    const truncated = this.decoder.finish()
    connection.lose(
      truncated === undefined
        ? this.fail("closed", "remote closed the connection")
        : this.fail("protocol", truncated.message)
    )
  }

  // --- RawSocket.ReadSink (`onread`) -------------------------------------------------------

  target(): Uint8Array {
    this.readInto = this.decoder.readTarget()
    return this.readInto ?? (this.afterLarge ? sharedSmallScratch : sharedScratch)
  }

  read(n: number, buffer: Uint8Array): void {
    if (this.readInto !== undefined && buffer === this.readInto) {
      this.readInto = undefined
      this.afterLarge = true
      return this.filled(n)
    }
    // copied out: the scratch is read into again (small copies come from Node's buffer pool)
    this.chunk(Buffer.from(buffer.subarray(0, n)))
    this.afterLarge = this.decoder.readTarget() !== undefined
  }

  private filled(n: number): void {
    const connection = this.connection
    if (connection === undefined || connection.lostWith !== undefined) return
    connection.lastReceived = Date.now()
    try {
      this.failed(this.decoder.filled(n, connection.dispatch), connection)
    } catch (e) {
      this.defect(e, connection)
    }
    if (this.decoder.readTarget() === undefined) connection.countReadInPlace()
  }

  // --- closing -----------------------------------------------------------------------------

  /**
   * Ends the connection (its channels fail with `ConnectionLost`), then closes the socket once
   * our last bytes left for the kernel (their write callback; at most a second): a graceful
   * `end()` would wait forever for a remote that stopped reading. Idempotent.
   */
  private shutdown(): void {
    if (this.closeState !== 0) return
    this.closeState = 1
    this.keepalive?.stop()
    this.cancelGreetingTimer()
    this.reader = undefined
    const conn = this.conn
    const connection = this.connection
    const last = connection?.takeQueued()
    connection?.lose(this.fail("closed", "closed locally"))
    let cancelTimer = constVoid
    const close = () => {
      if (this.closeState === 2) return
      this.closeState = 2
      cancelTimer()
      conn.destroy()
      conn.off("data", this.onData)
      conn.off("end", this.onEnd)
      conn.off("error", this.onError)
      conn.off("close", this.onEnd)
      // an error the destroyed socket still reports must not become an uncaught exception
      conn.on("error", constVoid)
      const waiters = this.closeWaiters
      this.closeWaiters = undefined
      if (waiters !== undefined) { for (const resume of waiters) resume() }
      this.hooks?.onClosed(this, connection)
    }
    if (conn.destroyed || (last === undefined && conn.writableLength === 0)) return close()
    cancelTimer = setTimer(1000, close)
    // writes complete in order: this one's callback means everything before it went out too
    conn.write(last ?? emptyPayload, close)
  }

  get isClosed(): boolean {
    return this.closeState === 2
  }

  /** Closes the link (see `shutdown`) and waits until its socket is closed. */
  get close(): Effect.Effect<void> {
    return Effect.callback<void>((resume) => {
      if (this.closeState === 2) return resume(Effect.void)
      ;(this.closeWaiters ??= []).push(() => resume(Effect.void))
      this.shutdown()
    })
  }
}

/** Longest delay `setTimeout` honours (larger ones fire after 1 ms). */
const MAX_TIMER_MS = 0x7fff_ffff

/**
 * Runs `f` after `ms` milliseconds, however long (`Infinity`: never); returns the cancel. Node
 * clamps delays past 2^31 - 1 ms to 1 ms, so longer ones are chained.
 */
const setTimer = (ms: number, f: () => void): () => void => {
  if (!(ms < Number.POSITIVE_INFINITY)) return constVoid
  let timer: ReturnType<typeof setTimeout> | undefined
  const at = Date.now() + ms
  const arm = (left: number) => {
    timer = setTimeout(() => {
      const rest = at - Date.now()
      if (rest > 0) arm(rest)
      else f()
    }, Math.max(0, Math.min(left, MAX_TIMER_MS)))
    timer.unref?.()
  }
  arm(ms)
  return () => clearTimeout(timer)
}

/** The connection on any `effect/socket` Socket: a read-loop fiber and a writer fiber. */
const startOnSocket = (
  socket: Socket.Socket,
  options: ConnectionOptions
): Effect.Effect<Connection, ConnectionError, Scope.Scope> =>
  Effect.gen(function*() {
    const address = options.address
    const reader = yield* socket.reader.pipe(
      Effect.mapError((e) => new ConnectionError({ address, stage: "dial", detail: e.message }))
    )
    const writer = yield* socket.writer
    const fail = (stage: ConnectionError["stage"], detail: string) => new ConnectionError({ address, stage, detail })

    // --- greeting ---
    const ours = greetingAndHello(options)
    if (options.role === "connector") {
      yield* writer.write(ours).pipe(Effect.mapError((e) => fail("greeting", e.message)))
    }
    const greetingReader = new Greeting.GreetingReader()
    const readGreeting = Effect.gen(function*() {
      while (true) {
        const chunks = yield* reader.pull
        for (let i = 0; i < chunks.length; i++) {
          const result = greetingReader.feed(toBytes(chunks[i]!))
          if (Result.isFailure(result)) return yield* Effect.fail(result.failure)
          const state = result.success
          if (state._tag === "Done") {
            const rest: Array<Uint8Array> = state.rest.length > 0 ? [state.rest] : []
            for (let j = i + 1; j < chunks.length; j++) rest.push(toBytes(chunks[j]!))
            return { id: state.id, rest }
          }
        }
      }
    })
    const greeted = yield* readGreeting.pipe(
      Effect.timeoutOrElse({
        duration: options.greetingTimeout,
        orElse: () =>
          Effect.fail(
            ProtocolError.fromReason("GreetingTimeout", greetingTimeoutText(options))
          )
      }),
      Effect.mapError((e) =>
        e._tag === "ProtocolError"
          ? fail("greeting", e.message)
          : fail("greeting", isCleanClose(e) ? "closed before the greeting completed" : e.message)
      )
    )
    if (options.role === "binder") {
      yield* writer.write(ours).pipe(Effect.mapError((e) => fail("greeting", e.message)))
    }

    const connection = new Connection(options, greeted.id)

    // --- the loops ---
    const decoder = new FrameDecoder(options.limits)
    const feed = (bytes: Uint8Array): ConnectionError | undefined => {
      const error = decoder.feed(bytes, connection.dispatch)
      return error === undefined ? undefined : fail("protocol", error.message)
    }
    // Bytes that came with the greeting (usually the remote's HELLO) are dispatched now, so the
    // connection is returned knowing the remote's capabilities.
    let early: ConnectionError | undefined
    for (const bytes of greeted.rest) {
      early = feed(bytes)
      if (early !== undefined) break
    }
    const readLoop = Effect.gen(function*() {
      if (early !== undefined) return early
      while (connection.isOpen) {
        const result = yield* Effect.result(reader.pull)
        if (Result.isFailure(result)) {
          const e = result.failure
          if (isCleanClose(e)) {
            const truncated = decoder.finish()
            return truncated === undefined
              ? fail("closed", "remote closed the connection")
              : fail("protocol", truncated.message)
          }
          return fail("read", e.message)
        }
        const chunks = result.success
        connection.lastReceived = Date.now()
        for (let i = 0; i < chunks.length; i++) {
          const error = feed(toBytes(chunks[i]!))
          if (error !== undefined) return error
        }
      }
      return fail("closed", "connection closed")
    })

    const scope = yield* Scope.Scope
    yield* Scope.addFinalizer(
      scope,
      Effect.gen(function*() {
        const last = connection.takeQueued()
        connection.lose(fail("closed", "closed locally"))
        if (last !== undefined) yield* writer.write(last).pipe(Effect.timeout("1 second"), Effect.ignore)
        // Then close for good: a graceful end() would wait forever for a remote that stopped
        // reading, and keep the process (and a listener's close) waiting with it. Bytes already
        // handed to the kernel are still delivered.
        yield* writer.write(new Socket.CloseEvent(1000)).pipe(Effect.ignore)
      })
    )
    yield* Effect.forkIn(
      connection.writeLoop(writer).pipe(Effect.catch((error) => Effect.sync(() => connection.lose(error)))),
      scope
    )
    yield* Effect.forkIn(
      Effect.flatMap(readLoop, (error) => Effect.sync(() => connection.lose(error))),
      scope
    )
    if (options.keepalive !== undefined) {
      const probe = new Keepalive(connection, options.keepalive, fail)
      yield* Scope.addFinalizer(scope, Effect.sync(() => probe.stop()))
    }
    return connection
  })
