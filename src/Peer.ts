/**
 * The symmetric endpoint. A peer binds any number of addresses and connects to any number of
 * remotes; on every connection, whichever side dialled, it opens and accepts channels the same way.
 *
 * - **Placement**: `open` puts a channel on the ready connections round-robin, or on the connection
 *   to one remote peer id.
 * - **Edge queue**: with no ready connection, an open waits in the peer's bounded edge queue and
 *   goes out as soon as one is ready (opens before any `connect`/`bind` are legal). When the queue
 *   is full the caller suspends (default) or fails with `EdgeQueueFull`.
 * - **Reconnect**: `connect` keeps its address in the pool and redials with a `Schedule` when the
 *   connection drops (default: exponential backoff from 50 ms, capped at 5 s, jittered). Connections
 *   accepted by `bind` are not redialled by the binder.
 * - **Failure**: channels on a dropped connection fail with `ConnectionLost`; opens still waiting
 *   go to the next ready connection.
 *
 * Everything closes with the peer's scope: listeners, sockets, fibers and socket files.
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import { constVoid } from "effect/Function"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as PubSub from "effect/PubSub"
import * as Queue from "effect/Queue"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as Socket from "effect/socket/Socket"
import * as Stream from "effect/Stream"
import type * as Net from "node:net"
import * as Address from "./Address.ts"
import type * as Channel from "./Channel.ts"
import * as Connection from "./Connection.ts"
import type * as Discovery from "./Discovery.ts"
import * as Frame from "./Frame.ts"
import * as Greeting from "./Greeting.ts"
import * as Headers from "./Headers.ts"
import { defaultLimits, type Limits } from "./Protocol.ts"
import * as Transport from "./Transport.ts"

// ---------------------------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------------------------

/**
 * Settings of a peer. Every field is optional; see `defaults`.
 *
 * @category models
 * @since 0.1.0
 */
export interface Options {
  /** This peer's id (a UUID sent in greetings). Default: a random v4 UUID. */
  readonly id?: string | undefined
  /** When to redial a `connect` address after a failed dial or a dropped connection. */
  readonly reconnect?: Schedule.Schedule<unknown, unknown> | undefined
  /** How long a dial may take before it counts as failed. */
  readonly connectTimeout?: Duration.Input | undefined
  /** How long to wait for the remote's greeting (same as `limits.greetingTimeout`). */
  readonly greetingTimeout?: Duration.Input | undefined
  /**
   * Every limit in one place (see `PeerLimits` and `defaultPeerLimits`): frame size, header count
   * and bytes, method length, skip depth, channels per connection, pending opens, greeting timeout.
   */
  readonly limits?: Partial<PeerLimits> | undefined
  /** Most opens waiting for a connection (same as `limits.maxPendingOpens`). */
  readonly edgeQueueCapacity?: number | undefined
  /** What `open` does when the edge queue is full: wait for room, or fail with `EdgeQueueFull`. */
  readonly whenEdgeQueueFull?: "suspend" | "fail" | undefined
  /** Bytes queued on one connection above which senders suspend until the socket drains. */
  readonly writeHighWaterMark?: number | undefined
  /** Incoming channels buffered for `accept`/`incoming` when no handler is set. */
  readonly incomingCapacity?: number | undefined
  /**
   * Liveness probing (PING/PONG with Duplex remotes, TCP keepalive with every remote): probe after
   * `interval` without receiving anything; declare the connection dead after `timeout` more.
   * `false` disables it.
   */
  readonly keepalive?: { readonly interval: Duration.Input; readonly timeout: Duration.Input } | false | undefined
  /**
   * Flow control: bytes each channel may receive before its reader has consumed them (the credit
   * window this peer grants per channel and direction). Used with Duplex remotes that announce
   * `credit` too; `false` disables it.
   */
  readonly flowControlWindow?: number | false | undefined
  /** Drain gracefully (see `drain`) with this grace period when the peer's scope closes. */
  readonly drainOnClose?: Duration.Input | undefined
}

/**
 * All limits of a peer. Exceeding one gives a typed error to whoever caused it and protects the
 * peer: a remote's oversized or malformed frame closes that connection (`ProtocolError`), an OPEN
 * beyond `maxChannelsPerConnection` is refused on its own, an open beyond `maxPendingOpens` suspends
 * or fails with `EdgeQueueFull`, a greeting slower than `greetingTimeout` closes the connection.
 *
 * @category models
 * @since 0.1.0
 */
export interface PeerLimits extends Limits {
  /** Most opens waiting in the edge queue for a connection (the queue's high-water mark). */
  readonly maxPendingOpens: number
  /** Longest wait for the remote's greeting. */
  readonly greetingTimeout: Duration.Input
}

/**
 * Default limits: the frame decoder's `defaultLimits`, 4,096 pending opens, a 10 s greeting.
 *
 * **Example** (Tighter limits for an edge service)
 * ```ts
 * import * as Peer from "duplex/Peer"
 * const peer = Peer.make({ limits: { maxFrameBytes: 1024 * 1024, maxChannelsPerConnection: 1000 } })
 * ```
 * @category constants
 * @since 0.1.0
 */
export const defaultPeerLimits: PeerLimits = {
  ...defaultLimits,
  maxPendingOpens: 4096,
  greetingTimeout: "10 seconds"
}

/**
 * The default reconnect schedule: exponential backoff from 50 ms, each delay capped at 5 s, with
 * jitter; retries forever.
 *
 * **Example** (Giving up after ten redials)
 * ```ts
 * import { Schedule } from "effect"
 * import * as Peer from "duplex/Peer"
 * const peer = Peer.make({ reconnect: Schedule.max([Peer.defaultReconnect, Schedule.recurs(10)]) })
 * ```
 * @category constants
 * @since 0.1.0
 */
export const defaultReconnect: Schedule.Schedule<unknown, unknown> = Schedule.exponential("50 millis").pipe(
  Schedule.modifyDelay(({ duration }) => Effect.succeed(Duration.min(duration, Duration.seconds(5)))),
  Schedule.jittered
)

/**
 * Default settings.
 *
 * **Example** (Doubling the edge queue)
 * ```ts
 * import * as Peer from "duplex/Peer"
 * const peer = Peer.make({ edgeQueueCapacity: Peer.defaults.edgeQueueCapacity * 2 })
 * ```
 * @category constants
 * @since 0.1.0
 */
export const defaults = {
  connectTimeout: "10 seconds",
  greetingTimeout: "10 seconds",
  edgeQueueCapacity: 4096,
  whenEdgeQueueFull: "suspend",
  writeHighWaterMark: 1024 * 1024,
  incomingCapacity: 4096,
  keepalive: { interval: "15 seconds", timeout: "10 seconds" },
  flowControlWindow: 256 * 1024,
  drainGrace: "5 seconds"
} as const

// ---------------------------------------------------------------------------------------------
// Errors and events
// ---------------------------------------------------------------------------------------------

/**
 * The edge queue is full and the peer was configured to fail fast.
 *
 * **Example** (Failing fast when the edge queue is full)
 * ```ts
 * import { Effect } from "effect"
 * import * as Peer from "duplex/Peer"
 * const open = (peer: Peer.Peer) =>
 *   peer.open("Echo").pipe(Effect.catchTag("EdgeQueueFull", (e) => Effect.die(e.message)))
 * ```
 * @category errors
 * @since 0.1.0
 */
export class EdgeQueueFull extends Schema.TaggedError<EdgeQueueFull>()("EdgeQueueFull", {
  capacity: Schema.Number
}) {
  override get message(): string {
    return `edge queue full (${this.capacity} opens waiting for a connection)`
  }
}

/**
 * A peer option is invalid (for example an `id` that is not a UUID).
 *
 * **Example** (A peer id that is not a UUID)
 * ```ts
 * import { Effect } from "effect"
 * import * as Peer from "duplex/Peer"
 * const peer = Peer.make({ id: "not-a-uuid" }).pipe(Effect.catchTag("InvalidOptions", (e) => Effect.die(e.detail)))
 * ```
 * @category errors
 * @since 0.1.0
 */
export class InvalidOptions extends Schema.TaggedError<InvalidOptions>()("InvalidOptions", {
  detail: Schema.String
}) {
  override get message(): string {
    return `invalid peer options: ${this.detail}`
  }
}

/**
 * The peer's scope has closed.
 *
 * **Example** (Matching a closed peer)
 * ```ts
 * import * as Peer from "duplex/Peer"
 * const isClosed = (e: Peer.EdgeQueueFull | Peer.PeerClosed) => e._tag === "PeerClosed"
 * ```
 * @category errors
 * @since 0.1.0
 */
export class PeerClosed extends Schema.TaggedError<PeerClosed>()("PeerClosed", {}) {
  override get message(): string {
    return "peer is closed"
  }
}

/**
 * A connected remote peer, as seen from this peer.
 *
 * @category models
 * @since 0.1.0
 */
export interface RemoteInfo {
  /** The remote peer's id (its greeting UUID). */
  readonly id: string
  /** The address dialled (outgoing) or the listener that accepted it (incoming). */
  readonly address: string
  /** `"outgoing"` when this peer connected, `"incoming"` when it accepted. */
  readonly direction: "outgoing" | "incoming"
  /** Whether the remote announced Duplex extensions (`false` for an original peer). */
  readonly duplex: boolean
}

/**
 * A change in the set of connected remotes.
 *
 * @category models
 * @since 0.1.0
 */
export type PeerEvent =
  | { readonly _tag: "Connected"; readonly remote: RemoteInfo }
  | { readonly _tag: "Disconnected"; readonly remote: RemoteInfo; readonly reason: string }

/**
 * Options of `open`.
 *
 * @category models
 * @since 0.1.0
 */
export interface OpenOptions {
  /** Headers of the OPEN frame. */
  readonly headers?: Headers.Headers | Readonly<Record<string, string>> | undefined
  /** Put the channel on the connection to this remote peer id (waits until it is connected). */
  readonly remote?: string | undefined
}

/**
 * Handles one incoming channel. The channel is cancelled if the handler returns before both halves
 * ended.
 *
 * @category models
 * @since 0.1.0
 */
export type Handler = (channel: Channel.Channel) => Effect.Effect<void, unknown>

// ---------------------------------------------------------------------------------------------
// The peer
// ---------------------------------------------------------------------------------------------

/**
 * A Duplex peer.
 *
 * @category models
 * @since 0.1.0
 */
export interface Peer {
  /** This peer's id. */
  readonly id: string
  /** Listens on an address until the peer closes; returns the bound address (real port for 0). */
  readonly bind: (
    address: string | Address.Address
  ) => Effect.Effect<string, Address.AddressError | Transport.BindError>
  /** Adds an address to the pool: dials it now and redials it whenever the connection drops. */
  readonly connect: (address: string | Address.Address) => Effect.Effect<void, Address.AddressError>
  /**
   * Removes an address from the pool: stops redialling it, drains its connections (GOAWAY, channels
   * in flight finish within `grace`), then closes them.
   */
  readonly disconnect: (
    address: string | Address.Address,
    options?: { readonly grace?: Duration.Input | undefined; readonly reason?: string | undefined }
  ) => Effect.Effect<void, Address.AddressError>
  /**
   * Follows a discovery source: connects to every address it adds and disconnects (after draining)
   * from every address it removes, for the peer's lifetime. Round-robin placement follows the live
   * set. With `lazy` (the default), nothing is dialled until the peer is first used (an open or a
   * call).
   */
  readonly auto: <E, R>(
    discovery: Discovery.Discovery<E, R>,
    options?: { readonly lazy?: boolean | undefined; readonly grace?: Duration.Input | undefined }
  ) => Effect.Effect<void, never, R>
  /**
   * Opens a channel; waits in the edge queue while no suitable connection is ready. The channel
   * is cancelled when the scope closes unless both halves have ended.
   */
  readonly open: (
    method: string,
    options?: OpenOptions
  ) => Effect.Effect<Channel.Channel, EdgeQueueFull | PeerClosed, Scope.Scope>
  /**
   * Opens a channel, runs `f` with it, and cancels it afterwards unless both halves ended — `open`
   * without a `Scope`, for request/response exchanges (cheaper: no scope per channel).
   */
  readonly withChannel: <A, E, R>(
    method: string,
    f: (channel: Channel.Channel) => Effect.Effect<A, E, R>,
    options?: OpenOptions
  ) => Effect.Effect<A, E | EdgeQueueFull | PeerClosed, R>
  /** Sets the handler for incoming channels (one fiber per channel) until the scope closes. */
  readonly serve: (handler: Handler) => Effect.Effect<void, never, Scope.Scope>
  /**
   * Advanced (used by the RPC server): handles incoming channels for `method` synchronously inside
   * the connection's read loop, before any of their frames is dispatched. While any route exists,
   * a channel for a method without a route (and no `serve` handler) is refused at once with the
   * original's error text (`duplex: can't find method …`). Returns a function removing the route.
   */
  readonly routeUnsafe: (method: string, handler: (channel: Connection.ChannelImpl) => void) => () => void
  /**
   * Advanced (used by the RPC client): places a channel like `open`, calling `onPlaced` synchronously
   * once it is on a connection (possibly at once) or `onFail`. Returns a function that removes a
   * still-waiting open from the edge queue. The caller owns the channel (no scope).
   */
  readonly placeUnsafe: (
    method: string,
    headers: Headers.Headers,
    remote: string | undefined,
    listener: PlaceListener
  ) => () => void
  /** Incoming channels when no handler is set. */
  readonly incoming: Stream.Stream<Channel.Channel>
  /** The connected remotes. */
  readonly remotes: Effect.Effect<ReadonlyArray<RemoteInfo>>
  /** Connection changes from now on. */
  readonly events: Stream.Stream<PeerEvent>
  /** Waits until at least `count` remotes are connected. */
  readonly awaitRemotes: (count: number) => Effect.Effect<void>
  /**
   * Drains gracefully: announces GOAWAY on the connections (to remotes that understand it), stops
   * placing new opens there, lets the channels in flight finish within `grace` (default 5 s), then
   * closes those connections; channels still open then fail with `ConnectionLost`. Without
   * `remote`, the whole peer drains: listeners stop accepting, `connect` stops redialling, and opens
   * still waiting fail with `PeerClosed`. With `remote`, only the connections to that peer id.
   */
  readonly drain: (options?: {
    readonly grace?: Duration.Input | undefined
    readonly remote?: string | undefined
    readonly reason?: string | undefined
  }) => Effect.Effect<void>
  /** Number of opens waiting in the edge queue. */
  readonly pendingOpens: Effect.Effect<number>
  /** The live connections (diagnostics: channel tables, counters). */
  readonly connections: Effect.Effect<ReadonlyArray<Connection.Connection>>
}

/**
 * Service tag for a `Peer` provided by `layer`.
 *
 * **Example** (Using the peer from context)
 * ```ts
 * import { Effect } from "effect"
 * import * as Peer from "duplex/Peer"
 * const program = Effect.flatMap(Effect.service(Peer.Peer), (peer) => peer.connect("tcp://127.0.0.1:7000"))
 * ```
 * @category services
 * @since 0.1.0
 */
export const Peer: Context.Service<Peer, Peer> = Context.Service<Peer>("duplex/Peer")

const unknownMethodHeaders = Headers.make({ "duplex-error": "unknown-method" })

/**
 * Receives the outcome of `placeUnsafe`.
 *
 * @category models
 * @since 0.1.0
 */
export interface PlaceListener {
  readonly onPlaced: (channel: Connection.ChannelImpl) => void
  readonly onFail: (error: EdgeQueueFull | PeerClosed) => void
}

interface Waiter {
  readonly method: string
  readonly headers: Headers.Headers
  readonly remote: string | undefined
  readonly listener: PlaceListener
}

/**
 * Creates a peer that lives as long as the current scope.
 *
 * **Example** (Two peers on loopback)
 * ```ts
 * import { Effect, Stream } from "effect"
 * import * as Peer from "duplex/Peer"
 * const program = Effect.gen(function*() {
 *   const server = yield* Peer.make()
 *   yield* server.serve((channel) => Effect.flatMap(Stream.runCollect(channel.input), () => channel.end))
 *   const address = yield* server.bind("tcp://127.0.0.1:0")
 *   const client = yield* Peer.make()
 *   yield* client.connect(address)
 *   const channel = yield* client.open("Echo.Hello")
 *   yield* channel.sendLast(new TextEncoder().encode("hi"))
 *   yield* Stream.runDrain(channel.input)
 * }).pipe(Effect.scoped)
 * ```
 * @category constructors
 * @since 0.1.0
 */
export const make = (options: Options = {}): Effect.Effect<Peer, InvalidOptions, Scope.Scope> =>
  Effect.gen(function*() {
    const id = options.id === undefined ?
      Greeting.makeId() :
      yield* Effect.fromResult(Greeting.parseId(options.id)).pipe(
        Effect.mapError((e) => new InvalidOptions({ detail: `id: ${e.detail}` }))
      )
    const stableAfterMillis = 1000
    const limits: PeerLimits = { ...defaultPeerLimits, ...options.limits }
    const reconnect = options.reconnect ?? defaultReconnect
    const connectTimeout = options.connectTimeout ?? defaults.connectTimeout
    // durations are converted once here, not for every connection
    const duration = (name: string, input: Duration.Input) =>
      Effect.mapError(
        Effect.fromOption(Option.map(Duration.fromInput(input), Duration.toMillis)),
        () => new InvalidOptions({ detail: `${name}: not a duration: ${String(input)}` })
      )
    const greetingTimeout = yield* duration(
      "greetingTimeout",
      options.limits?.greetingTimeout ?? options.greetingTimeout ?? limits.greetingTimeout
    )
    const edgeCapacity = options.limits?.maxPendingOpens ?? options.edgeQueueCapacity ?? limits.maxPendingOpens
    const whenFull = options.whenEdgeQueueFull ?? defaults.whenEdgeQueueFull
    const writeHighWaterMark = options.writeHighWaterMark ?? defaults.writeHighWaterMark
    const keepaliveInput = options.keepalive === false ? undefined : options.keepalive ?? defaults.keepalive
    const window = options.flowControlWindow ?? defaults.flowControlWindow
    if (window !== false && !(Number.isSafeInteger(window) && window > 0 && window < 2 ** 32)) {
      return yield* new InvalidOptions({ detail: `flowControlWindow must be false or an integer in 1..2^32-1` })
    }
    const keepalive = keepaliveInput === undefined ? undefined : {
      interval: yield* duration("keepalive.interval", keepaliveInput.interval),
      timeout: yield* duration("keepalive.timeout", keepaliveInput.timeout)
    }
    if (
      keepalive !== undefined &&
      !(Duration.toMillis(keepalive.interval) > 0 && Duration.toMillis(keepalive.timeout) > 0)
    ) {
      return yield* new InvalidOptions({ detail: "keepalive interval and timeout must be positive" })
    }
    const capabilities = Headers.make(
      window === false || window <= 0 ? { ping: "", goaway: "" } : { ping: "", goaway: "", credit: String(window) }
    )

    const scope = yield* Scope.Scope
    // Background fibers (dial loops, discovery), interrupted when the peer closes. A plain Set:
    // a peer is cheap to make (a client process may hold thousands of them).
    const background = new Set<Fiber.Fiber<unknown, unknown>>()
    const runForkIn = Effect.runForkWith(yield* Effect.context<never>())
    const runFork = <A, E>(effect: Effect.Effect<A, E>): Fiber.Fiber<A, E> => {
      const fiber = runForkIn(effect)
      if (fiber.pollUnsafe() === undefined) {
        background.add(fiber)
        fiber.addObserver(() => background.delete(fiber))
      }
      return fiber
    }
    yield* Effect.addFinalizer(() =>
      Effect.suspend(() => {
        const running = Array.from(background)
        background.clear()
        return running.length === 0 ? Effect.void : Fiber.interruptAll(running)
      })
    )
    // The events hub and the queue of incoming channels are made on first use.
    let ended = false
    let eventsHub: PubSub.PubSub<PeerEvent> | undefined
    let eventsEnded = false
    const publish = (event: PeerEvent): void => {
      if (eventsHub !== undefined) PubSub.publishUnsafe(eventsHub, event)
    }
    let incomingQueueValue: Queue.Queue<Channel.Channel, Cause.Done> | undefined
    const incomingQueue = (): Queue.Queue<Channel.Channel, Cause.Done> => {
      if (incomingQueueValue === undefined) {
        incomingQueueValue = Effect.runSync(
          Queue.bounded<Channel.Channel, Cause.Done>(options.incomingCapacity ?? defaults.incomingCapacity)
        )
        if (ended) Queue.endUnsafe(incomingQueueValue)
      }
      return incomingQueueValue
    }

    let closed = false
    let draining = false
    const ready: Array<Connection.Connection> = []
    const infos = new Map<Connection.Connection, RemoteInfo>()
    let cursor = 0
    let pending: Array<Waiter> = []
    let overflow: Array<Waiter> = []
    let remoteWaiters: Array<{ count: number; resume: (effect: Effect.Effect<void>) => void }> = []
    let handler: Handler | undefined = undefined
    const routes = new Map<string, (channel: Connection.ChannelImpl) => void>()
    const routeStacks = new Map<string, Array<(channel: Connection.ChannelImpl) => void>>()
    const services = new Map<string, number>()
    const rejectUnknown = (channel: Connection.ChannelImpl): void => {
      const method = channel.method
      const parts = method.split(".")
      const text = parts.length !== 2
        ? `duplex: service/method request ill-formed: ${method}`
        : services.has(parts[0]!)
        ? `duplex: can't find method ${method}`
        : `duplex: can't find service ${method}`
      channel.connection.pushReply(Frame.make(1, channel.id, "", unknownMethodHeaders, text, true, null))
      channel.detach()
    }

    // --- placement -------------------------------------------------------------------------

    const pick = (remote: string | undefined): Connection.Connection | undefined => {
      const n = ready.length
      if (n === 0) return undefined
      if (remote !== undefined) {
        for (const c of ready) if (c.remoteId === remote && c.acceptsOpens) return c
        return undefined
      }
      for (let i = 0; i < n; i++) {
        const c = ready[cursor++ % n]!
        if (c.acceptsOpens) return c
      }
      return undefined
    }

    const drainPending = (): void => {
      if (pending.length === 0 || ready.length === 0) return
      const still: Array<Waiter> = []
      for (const waiter of pending) {
        const connection = pick(waiter.remote)
        if (connection === undefined) still.push(waiter)
        else waiter.listener.onPlaced(connection.open(waiter.method, waiter.headers))
      }
      pending = still
      while (overflow.length > 0 && pending.length < edgeCapacity) {
        const waiter = overflow.shift()!
        const connection = pick(waiter.remote)
        if (connection === undefined) pending.push(waiter)
        else waiter.listener.onPlaced(connection.open(waiter.method, waiter.headers))
      }
    }

    const place: Peer["placeUnsafe"] = (method, headers, remote, listener) => {
      if (!used) markUsed()
      if (closed) {
        listener.onFail(new PeerClosed())
        return constVoid
      }
      const connection = pick(remote)
      if (connection !== undefined) {
        listener.onPlaced(connection.open(method, headers))
        return constVoid
      }
      const waiter: Waiter = { method, headers, remote, listener }
      if (pending.length < edgeCapacity) pending.push(waiter)
      else if (whenFull === "fail") {
        listener.onFail(new EdgeQueueFull({ capacity: edgeCapacity }))
        return constVoid
      } else overflow.push(waiter)
      return () => {
        pending = pending.filter((w) => w !== waiter)
        overflow = overflow.filter((w) => w !== waiter)
        // keep arrival order: the oldest overflowing open takes the freed slot
        while (overflow.length > 0 && pending.length < edgeCapacity) pending.push(overflow.shift()!)
      }
    }

    const acquire = (method: string, headers: Headers.Headers, remote: string | undefined) =>
      Effect.callback<Connection.ChannelImpl, EdgeQueueFull | PeerClosed>((resume) => {
        const remove = place(method, headers, remote, {
          onPlaced: (channel) => resume(Effect.succeed(channel)),
          onFail: (error) => resume(Effect.fail(error))
        })
        return remove === constVoid ? undefined : Effect.sync(remove)
      })

    const open: Peer["open"] = (method, openOptions) => {
      const headers = openOptions?.headers === undefined ? Headers.empty : Headers.make(openOptions.headers)
      const acquired = acquire(method, headers, openOptions?.remote)
      return Effect.uninterruptibleMask((restore) =>
        Effect.flatMap(restore(acquired), (channel) => Effect.as(Effect.addFinalizer(() => channel.cancel), channel))
      )
    }

    const withChannel: Peer["withChannel"] = (method, f, openOptions) => {
      const headers = openOptions?.headers === undefined ? Headers.empty : Headers.make(openOptions.headers)
      const acquired = acquire(method, headers, openOptions?.remote)
      return Effect.uninterruptibleMask((restore) =>
        Effect.flatMap(restore(acquired), (channel) => Effect.onExit(restore(f(channel)), () => channel.cancel))
      )
    }

    // --- incoming channels -----------------------------------------------------------------

    // Handler fibers: started at once (most short handlers finish synchronously and are never
    // tracked); those that suspend are kept here and interrupted when the peer closes.
    const handlerFibers = new Set<Fiber.Fiber<void, unknown>>()
    const runForkHandler = Effect.runForkWith(yield* Effect.context<never>())
    const handlerDone = (channel: Connection.ChannelImpl, exit: Exit.Exit<void, unknown>): void => {
      if (Exit.isFailure(exit) && !Cause.hasInterruptsOnly(exit.cause)) {
        runForkHandler(Effect.logError("duplex: channel handler failed", exit.cause))
      }
      channel.cancelUnsafe() // no-op when both halves ended
    }
    const runHandler = (h: Handler, channel: Connection.ChannelImpl): void => {
      let effect: Effect.Effect<void, unknown>
      try {
        effect = h(channel)
      } catch (defect) {
        effect = Effect.die(defect)
      }
      const fiber = runForkHandler(effect)
      const now = fiber.pollUnsafe()
      if (now !== undefined) return handlerDone(channel, now)
      handlerFibers.add(fiber)
      fiber.addObserver((exit) => {
        handlerFibers.delete(fiber)
        handlerDone(channel, exit)
      })
    }
    yield* Effect.addFinalizer(() =>
      Effect.suspend(() => {
        const fibers = Array.from(handlerFibers)
        handlerFibers.clear()
        return fibers.length === 0 ? Effect.void : Fiber.interruptAll(fibers)
      })
    )

    const onIncoming = (channel: Connection.ChannelImpl): void => {
      if (routes.size > 0) {
        const route = routes.get(channel.method)
        if (route !== undefined) return route(channel)
        if (handler === undefined) return rejectUnknown(channel)
      }
      const h = handler
      if (h !== undefined) return runHandler(h, channel)
      if (!Queue.offerUnsafe(incomingQueue(), channel)) {
        channel.connection.pushReply(Frame.error(channel.id, "duplex: peer is not accepting channels"))
        channel.detach()
      }
    }

    // --- connection registry ---------------------------------------------------------------

    const register = (connection: Connection.Connection, direction: "outgoing" | "incoming") => {
      const info: RemoteInfo = {
        id: connection.remoteId,
        address: connection.address,
        direction,
        duplex: connection.remoteCapabilities !== undefined
      }
      infos.set(connection, info)
      ready.push(connection)
      publish({ _tag: "Connected", remote: info })
      drainPending()
      if (remoteWaiters.length > 0) {
        const waiting = remoteWaiters
        remoteWaiters = []
        for (const w of waiting) {
          if (ready.length >= w.count) w.resume(Effect.void)
          else remoteWaiters.push(w)
        }
      }
    }

    const unregister = (connection: Connection.Connection, reason: string) => {
      const info = infos.get(connection)
      if (info === undefined) return
      infos.delete(connection)
      const i = ready.indexOf(connection)
      if (i >= 0) ready.splice(i, 1)
      publish({ _tag: "Disconnected", remote: info, reason })
    }

    const connectionOptions = (role: Connection.Role, address: string): Connection.ConnectionOptions => ({
      localId: id,
      role,
      address,
      greetingTimeout,
      limits,
      capabilities,
      writeHighWaterMark,
      onIncoming,
      keepalive
    })

    const runConnection = (
      socket: Socket.Socket,
      options: Connection.ConnectionOptions
    ): Effect.Effect<Connection.ConnectionError, Connection.ConnectionError> =>
      Effect.scoped(
        Effect.gen(function*() {
          const connection = yield* Connection.start(socket, options)
          yield* Effect.addFinalizer(() =>
            Effect.sync(() => unregister(connection, connection.lostWith?.message ?? "closed"))
          )
          register(connection, options.role === "connector" ? "outgoing" : "incoming")
          const reason = yield* connection.closed
          unregister(connection, reason.message)
          return reason
        })
      )

    // --- bind / connect --------------------------------------------------------------------

    const bind: Peer["bind"] = (input) =>
      Effect.gen(function*() {
        const address = yield* Effect.fromResult(Address.fromInput(input))
        let text = Address.format(address)
        // Accepted connections run without a fiber each (a link per socket, see
        // `Connection.startLink`); the listener's scope closes those still open, then the listener.
        const links = new Set<Connection.Link>()
        let linkOptions: Connection.ConnectionOptions | undefined
        const hooks: Connection.LinkHooks = {
          onGreeted: (connection) => register(connection, "incoming"),
          onClosed: (link, connection) => {
            links.delete(link)
            if (connection !== undefined) unregister(connection, connection.closedWith?.message ?? "closed")
          }
        }
        const accept = (socket: Net.Socket): void => {
          // while draining, sockets still arriving are closed at once
          if (draining || closed) return void socket.destroy()
          linkOptions ??= connectionOptions("binder", text)
          const link = Connection.startLink(socket, linkOptions, hooks)
          // (a socket that was already closed is done at once)
          if (!link.isClosed) links.add(link)
        }
        // the listener stops accepting, then closes these links, then the server
        const closeLinks = Effect.suspend(() =>
          Effect.forEach(Array.from(links), (link) => link.close, { concurrency: "unbounded", discard: true })
        )
        const bound = yield* Scope.provide(Transport.listenNet(address, accept, closeLinks), transports)
        text = Address.format(bound)
        return text
      })

    const connect: Peer["connect"] = (input) =>
      Effect.gen(function*() {
        const address = yield* Effect.fromResult(Address.fromInput(input))
        const text = Address.format(address)
        const dialOptions = connectionOptions("connector", text)
        // One attempt = dial, greet, run until the connection ends. A failed dial, or a connection
        // that ended within `stableAfter`, counts as a failure and the next dial waits for the
        // schedule; a connection that lived longer restarts the schedule from its beginning.
        const attempt = Effect.gen(function*() {
          const socket = yield* Transport.dial(address, connectTimeout)
          const started = Date.now()
          const reason = yield* runConnection(socket, dialOptions)
          if (Date.now() - started < stableAfterMillis) return yield* Effect.fail(reason)
        })
        const loop = Effect.gen(function*() {
          while (!closed && !draining) yield* Effect.retry(attempt, reconnect)
        })
        if (dialers.has(text)) return // already in the pool
        const fiber = runFork(Effect.ignore(loop))
        dialers.set(text, fiber)
        fiber.addObserver(() => {
          if (dialers.get(text) === fiber) dialers.delete(text)
        })
      })

    const dialers = new Map<string, Fiber.Fiber<void>>()

    const disconnect: Peer["disconnect"] = (input, disconnectOptions = {}) =>
      Effect.gen(function*() {
        const text = Address.format(yield* Effect.fromResult(Address.fromInput(input)))
        const fiber = dialers.get(text)
        dialers.delete(text)
        const targets = ready.filter((c) => c.address === text && c.role === "connector")
        for (const c of targets) c.goAway(disconnectOptions.reason ?? "disconnecting")
        yield* Effect.all(targets.map((c) => c.idle), { concurrency: "unbounded", discard: true }).pipe(
          Effect.timeoutOption(disconnectOptions.grace ?? defaults.drainGrace)
        )
        if (fiber !== undefined) yield* Fiber.interrupt(fiber)
        for (const c of targets) {
          c.lose(new Connection.ConnectionError({ address: c.address, stage: "closed", detail: "disconnected" }))
        }
      })

    // --- discovery -------------------------------------------------------------------------

    let autoWanted: Set<string> | undefined = undefined // addresses known while nothing was used yet
    let used = false
    const markUsed = (): void => {
      if (used) return
      used = true
      const wanted = autoWanted
      autoWanted = undefined
      if (wanted !== undefined) { for (const address of wanted) runFork(Effect.ignore(connect(address))) }
    }

    const auto: Peer["auto"] = (discovery, autoOptions = {}) => {
      const lazy = autoOptions.lazy ?? true
      if (lazy && !used) autoWanted ??= new Set()
      const apply = (change: Discovery.Change): Effect.Effect<void> => {
        if (change._tag === "Add") {
          if (lazy && autoWanted !== undefined && !used) {
            autoWanted.add(change.address)
            return Effect.void
          }
          return Effect.ignore(connect(change.address))
        }
        autoWanted?.delete(change.address)
        return Effect.ignore(disconnect(change.address, { grace: autoOptions.grace, reason: "removed by discovery" }))
      }
      return Effect.asVoid(
        Effect.forkIn(
          Stream.runForEach(discovery, (change) => Effect.forkIn(apply(change), scope)).pipe(
            Effect.catchCause((cause) => Effect.logError("duplex: discovery failed", cause))
          ),
          scope
        )
      )
    }

    // --- graceful drain --------------------------------------------------------------------

    const drain: Peer["drain"] = (drainOptions = {}) =>
      Effect.gen(function*() {
        const remote = drainOptions.remote
        const grace = drainOptions.grace ?? defaults.drainGrace
        const targets = ready.filter((c) => remote === undefined || c.remoteId === remote)
        if (remote === undefined) draining = true
        for (const c of targets) c.goAway(drainOptions.reason ?? "draining")
        // new opens go to the other connections (or wait for one) from now on
        yield* Effect.all(targets.map((c) => c.idle), { concurrency: "unbounded", discard: true }).pipe(
          Effect.timeoutOption(grace)
        )
        for (const c of targets) {
          c.lose(new Connection.ConnectionError({ address: c.address, stage: "closed", detail: "drained" }))
        }
        if (remote === undefined) failWaiting()
      })

    const failWaiting = () => {
      closed = true
      const waiting = [...pending, ...overflow]
      pending = []
      overflow = []
      for (const w of waiting) w.listener.onFail(new PeerClosed())
    }

    // --- lifecycle -------------------------------------------------------------------------

    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        failWaiting()
        for (const w of remoteWaiters) w.resume(Effect.void)
        remoteWaiters = []
        // streams of incoming channels and events end with the peer
        ended = true
        if (incomingQueueValue !== undefined) Queue.endUnsafe(incomingQueueValue)
      })
    )
    yield* Effect.addFinalizer(() =>
      Effect.suspend(() => {
        eventsEnded = true
        return eventsHub === undefined ? Effect.void : PubSub.shutdown(eventsHub)
      })
    )
    // Listeners live in their own scope, closed after a graceful drain (when `drainOnClose` is set)
    // and before the connections.
    const transports = yield* Scope.make()
    yield* Effect.addFinalizer((exit) => Scope.close(transports, exit))
    if (options.drainOnClose !== undefined) {
      const grace = options.drainOnClose
      yield* Effect.addFinalizer(() => drain({ grace, reason: "closing" }))
    }

    const peer: Peer = {
      id,
      bind,
      connect,
      open,
      withChannel,
      serve: (h) =>
        Effect.acquireRelease(
          Effect.sync(() => {
            handler = h
          }),
          () =>
            Effect.sync(() => {
              if (handler === h) handler = undefined
            })
        ),
      routeUnsafe: (method, f) => {
        // A method served twice is shadowed, not lost: removing the later route restores the earlier.
        const stack = routeStacks.get(method) ?? []
        stack.push(f)
        routeStacks.set(method, stack)
        routes.set(method, f)
        const dot = method.indexOf(".")
        const service = dot > 0 ? method.slice(0, dot) : undefined
        if (service !== undefined) services.set(service, (services.get(service) ?? 0) + 1)
        let removed = false
        return () => {
          if (removed) return
          removed = true
          const i = stack.lastIndexOf(f)
          if (i >= 0) stack.splice(i, 1)
          const top = stack[stack.length - 1]
          if (top === undefined) {
            routes.delete(method)
            routeStacks.delete(method)
          } else routes.set(method, top)
          if (service !== undefined) {
            const n = (services.get(service) ?? 1) - 1
            if (n === 0) services.delete(service)
            else services.set(service, n)
          }
        }
      },
      placeUnsafe: place,
      drain,
      disconnect,
      auto,
      get incoming() {
        return Stream.fromQueue(incomingQueue())
      },
      remotes: Effect.sync(() => ready.map((c) => ({ ...infos.get(c)!, duplex: c.remoteCapabilities !== undefined }))),
      get events() {
        if (eventsHub === undefined) {
          eventsHub = Effect.runSync(PubSub.unbounded<PeerEvent>())
          if (eventsEnded) Effect.runSync(PubSub.shutdown(eventsHub))
        }
        return Stream.fromPubSub(eventsHub)
      },
      awaitRemotes: (count) =>
        Effect.callback<void>((resume) => {
          if (ready.length >= count || closed) return resume(Effect.void)
          const entry = { count, resume }
          remoteWaiters.push(entry)
          return Effect.sync(() => {
            remoteWaiters = remoteWaiters.filter((w) => w !== entry)
          })
        }),
      pendingOpens: Effect.sync(() => pending.length + overflow.length),
      connections: Effect.sync(() => ready.slice())
    }
    return peer
  })

/**
 * A layer providing a `Peer`; it closes with the layer's scope.
 *
 * **Example** (Providing a peer)
 * ```ts
 * import { Effect } from "effect"
 * import * as Peer from "duplex/Peer"
 * const program = Effect.gen(function*() {
 *   const peer = yield* Peer.Peer
 *   yield* peer.connect("tcp://127.0.0.1:7000")
 * }).pipe(Effect.provide(Peer.layer()))
 * ```
 * @category layers
 * @since 0.1.0
 */
export const layer = (options: Options = {}): Layer.Layer<Peer, InvalidOptions> => Layer.effect(Peer, make(options))
