/**
 * Flow control (capability `credit`, CREDIT frames of type 5 carrying a 4-byte big-endian
 * increment): a sender to a reader that does not read stops after about one window and resumes
 * when the reader consumes; credit is granted back in batches of about half a window; an RPC server
 * stream is held back by a slow consumer; without `credit` on either side (or with an original
 * remote, no HELLO) nothing is flow controlled; and a remote that announced `credit` but ignores
 * the window far beyond one frame gets the channel cancelled while the connection survives.
 *
 * Run over TCP and Unix sockets. Traffic is observed with a relay (test/utils/wire.ts) that counts
 * frames by type in each direction; raw remotes are `rawPeer`s.
 */
import { assert, describe, it } from "@effect/vitest"
import { Cause, Deferred, Effect, Fiber, Queue, Result, Schema, Stream } from "effect"
import type * as Channel from "../src/Channel.ts"
import * as Connection from "../src/Connection.ts"
import * as Frame from "../src/Frame.ts"
import * as Headers from "../src/Headers.ts"
import * as Peer from "../src/Peer.ts"
import { FrameType } from "../src/Protocol.ts"
import * as Rpc from "../src/Rpc.ts"
import * as RpcClient from "../src/RpcClient.ts"
import * as RpcGroup from "../src/RpcGroup.ts"
import * as RpcServer from "../src/RpcServer.ts"
import { bytes, transports, within } from "./utils/helpers.ts"
import { call, fastReconnect, handler, type Seen } from "./utils/peers.ts"
import { rawPeer, relay, type TappedFrame } from "./utils/wire.ts"

const KiB = 1024
const MiB = 1024 * KiB

// ---------------------------------------------------------------------------------------------
// Payloads
// ---------------------------------------------------------------------------------------------

/** `size` bytes: the index in the first 4 (big-endian), the rest filled with `index & 0xff`. */
const message = (index: number, size: number): Uint8Array => {
  const out = new Uint8Array(size)
  out.fill(index & 0xff)
  new DataView(out.buffer).setUint32(0, index)
  return out
}

const indexOf = (data: Uint8Array): number => new DataView(data.buffer, data.byteOffset, 4).getUint32(0)

/** Whether `data` is exactly `message(index, size)` (checks the length and both ends). */
const isMessage = (data: Uint8Array, index: number, size: number): boolean =>
  data.length === size && indexOf(data) === index && data[size - 1] === (index & 0xff)

/** The increment of a CREDIT frame. */
const creditOf = (frame: TappedFrame): number =>
  frame.head.length === 4 ? new DataView(frame.head.buffer, frame.head.byteOffset, 4).getUint32(0) : -1

const range = (n: number): Array<number> => Array.from({ length: n }, (_, i) => i)

// ---------------------------------------------------------------------------------------------
// A binder with a sink that reads only when told to
// ---------------------------------------------------------------------------------------------

interface SinkResult {
  /** Indexes of the messages read, in order. */
  readonly indexes: ReadonlyArray<number>
  /** Messages that were not exactly `message(index, size)`. */
  readonly corrupt: number
  /** Largest inbox size seen before a take. */
  readonly maxInbox: number
}

/** One `Flow.Sink` channel on the binder: it reads nothing until `start` completes. */
interface SinkCall {
  readonly channel: Connection.ChannelImpl
  readonly start: Deferred.Deferred<void>
  readonly result: Deferred.Deferred<SinkResult, Channel.ChannelError>
}

/** Reads a channel's input one `take` at a time (so credit follows each message). */
const readAll = (channel: Connection.ChannelImpl, size: number): Effect.Effect<SinkResult, Channel.ChannelError> =>
  Effect.gen(function*() {
    const indexes: Array<number> = []
    let corrupt = 0
    let maxInbox = 0
    while (true) {
      maxInbox = Math.max(maxInbox, channel.inbox.size)
      const taken = yield* Effect.result(channel.take)
      if (Result.isFailure(taken)) {
        if (Cause.isDone(taken.failure)) return { indexes, corrupt, maxInbox }
        return yield* Effect.fail(taken.failure)
      }
      const index = indexOf(taken.success)
      indexes.push(index)
      if (!isMessage(taken.success, index, size)) corrupt++
    }
  })

/**
 * A binder serving `Flow.Sink` (waits for `start`, then takes every message, checking each
 * against the `size` header, and ends), `Flow.Source` (sends `count` messages of `size` bytes, from
 * the headers, then ends, never reading) and the utils/peers.ts handlers (`Echo.Each`, …).
 */
const flowBinder = (address: string, options: Peer.Options) =>
  Effect.gen(function*() {
    const sinks = yield* Queue.unbounded<SinkCall>()
    const log = yield* Queue.unbounded<Seen>()
    const base = handler(log)
    const peer = yield* Peer.make(options)
    yield* peer.serve((channel) => {
      if (!(channel instanceof Connection.ChannelImpl)) return Effect.die(new Error("not a ChannelImpl"))
      const size = Number(Headers.get(channel.headers, "size") ?? "0")
      switch (channel.method) {
        case "Flow.Sink":
          return Effect.gen(function*() {
            const start = yield* Deferred.make<void>()
            const result = yield* Deferred.make<SinkResult, Channel.ChannelError>()
            yield* Queue.offer(sinks, { channel, start, result })
            yield* Deferred.await(start)
            const exit = yield* Effect.exit(readAll(channel, size))
            yield* Deferred.done(result, exit)
            if (exit._tag === "Success") yield* channel.end
          })
        case "Flow.Source":
          return Effect.gen(function*() {
            const count = Number(Headers.get(channel.headers, "count") ?? "0")
            for (let i = 0; i < count; i++) yield* channel.send(message(i, size))
            yield* channel.end
            yield* channel.done
          })
        default:
          return base(channel)
      }
    })
    const bound = yield* peer.bind(address)
    return { peer, bound, sinks }
  })

const nextSink = (sinks: Queue.Queue<SinkCall>) => Queue.take(sinks).pipe(within("the sink's channel", "10 seconds"))

/**
 * Sends `count` messages of `size` bytes on `channel`, counting the sends that completed, then
 * ends. `attempting` completes when the send of message `signalAt` starts.
 */
const sender = (channel: Channel.Channel, count: number, size: number, signalAt = 0) =>
  Effect.gen(function*() {
    const state = { accepted: 0 }
    const attempting = yield* Deferred.make<void>()
    const fiber = yield* Effect.forkChild(
      Effect.gen(function*() {
        for (let i = 0; i < count; i++) {
          if (i === signalAt) yield* Deferred.succeed(attempting, undefined)
          yield* channel.send(message(i, size))
          state.accepted++
        }
        yield* channel.end
      }),
      { startImmediately: true }
    )
    return { state, fiber, attempting }
  })

const noKeepalive = { keepalive: false } as const

describe.each(transports)("Flow control over $name", (transport) => {
  it.live(
    "a sender to a reader that does not read stops after one window; resumes in order, nothing lost",
    () =>
      Effect.gen(function*() {
        const window = 256 * KiB
        const size = 64 * KiB
        const count = 40
        const { bound, sinks } = yield* flowBinder(yield* transport.address, {
          flowControlWindow: window,
          ...noKeepalive
        })
        const connector = yield* Peer.make({ flowControlWindow: window, reconnect: fastReconnect, ...noKeepalive })
        yield* connector.connect(bound)
        yield* connector.awaitRemotes(1).pipe(within("connected", "10 seconds"))

        const channel = yield* connector.open("Flow.Sink", { headers: { size: String(size) } })
        assert.instanceOf(channel, Connection.ChannelImpl)
        const sink = yield* nextSink(sinks)
        const expected = window / size
        const { attempting, fiber, state } = yield* sender(channel, count, size, expected)
        // The sender has completed a window's worth of sends and is in the next one; a round trip on
        // another channel of the same connection proves the binder has dispatched every frame before.
        yield* Deferred.await(attempting).pipe(within("the sender tries one more than a window", "10 seconds"))
        yield* call(connector, "Echo.Each", ["barrier"]).pipe(within("barrier round trip", "10 seconds"))
        assert.isAtLeast(state.accepted, expected, "sends accepted before suspending")
        assert.isAtMost(state.accepted, expected + 1, "sends accepted before suspending")
        assert.isTrue(channel instanceof Connection.ChannelImpl && channel.blocked, "the sender waits for credit")
        assert.strictEqual(sink.channel.inbox.size, state.accepted, "the receiver buffered only what was sent")
        assert.isAtMost(sink.channel.inbox.size * size, window + size, "the receiver's inbox is bounded")
        assert.isTrue(sink.channel.flow, "the channel is flow controlled")

        // A second barrier: still nothing more accepted while the reader does not read.
        yield* call(connector, "Echo.Each", ["barrier 2"]).pipe(within("second barrier", "10 seconds"))
        assert.isAtMost(state.accepted, expected + 1)

        yield* Deferred.succeed(sink.start, undefined)
        const result = yield* Deferred.await(sink.result).pipe(within("the reader reads everything", "15 seconds"))
        yield* Fiber.join(fiber).pipe(within("the sender finishes", "10 seconds"))
        assert.strictEqual(state.accepted, count)
        assert.deepStrictEqual(result.indexes, range(count), "in order, nothing lost")
        assert.strictEqual(result.corrupt, 0)
        assert.isAtMost(result.maxInbox * size, window + size, "the inbox stayed within the window while reading")
      }),
    30_000
  )

  it.live(
    "credit is granted in batches of about half a window, far fewer CREDIT frames than messages",
    () =>
      Effect.gen(function*() {
        const window = 256 * KiB
        const size = 1 * KiB
        const count = 4096
        const total = count * size
        const { bound, sinks } = yield* flowBinder(yield* transport.address, {
          flowControlWindow: window,
          ...noKeepalive
        })
        const link = yield* relay(bound)
        const connector = yield* Peer.make({ flowControlWindow: window, reconnect: fastReconnect, ...noKeepalive })
        yield* connector.connect(link.address)
        yield* connector.awaitRemotes(1).pipe(within("connected", "10 seconds"))
        const [connection] = yield* connector.connections
        assert.isDefined(connection)
        const framesInBefore = connection!.stats.framesIn

        const channel = yield* connector.open("Flow.Sink", { headers: { size: String(size) } })
        const sink = yield* nextSink(sinks)
        yield* Deferred.succeed(sink.start, undefined)
        const { fiber, state } = yield* sender(channel, count, size)
        const result = yield* Deferred.await(sink.result).pipe(within("everything read", "20 seconds"))
        yield* Fiber.join(fiber).pipe(within("sender done", "10 seconds"))
        // the binder ends its half after reading: wait for that end marker to pass the relay
        yield* Stream.runDrain(channel.input).pipe(within("the sink's end", "10 seconds"))
        assert.strictEqual(state.accepted, count)
        assert.deepStrictEqual(result.indexes, range(count))

        const credits = link.pairs()[0]!.s2c.ofType(FrameType.Credit, channel.id)
        const increments = credits.map(creditOf)
        const granted = increments.reduce((a, b) => a + b, 0)
        assert.strictEqual(link.count("s2c", FrameType.Credit), credits.length, "CREDIT only for the data channel")
        assert.strictEqual(link.count("c2s", FrameType.Credit), 0, "the receiver of CREDIT grants none")
        // Each grant is at least half a window (batched), and never more than the bytes sent.
        for (const n of increments) assert.isAtLeast(n, window / 2, `grant ${n}`)
        assert.isAtMost(granted, total)
        assert.isAtLeast(credits.length, Math.floor(total / window) - 1)
        assert.isAtMost(credits.length, Math.ceil(total / (window / 2)) + 1)
        assert.isBelow(credits.length * 50, count, "far fewer CREDIT frames than messages")
        // The connector's own counters agree: it received the CREDITs and the sink's end marker.
        assert.strictEqual(connection!.stats.framesIn - framesInBefore, credits.length + 1)
      }),
    30_000
  )

  const FlowRpc = RpcGroup.make(
    Rpc.serverStream("Items", { payload: { n: Schema.Int, size: Schema.Int }, success: Schema.Uint8Array })
  ).prefix("FlowRpc.")

  /** Serves `FlowRpc.Items` on `peer`: `n` items of `size` bytes, one per chunk, counted as produced. */
  const serveItems = (peer: Peer.Peer, counter: { produced: number }) =>
    RpcServer.serve(peer, FlowRpc, {
      Items: ({ n, size }) =>
        Stream.range(0, n - 1).pipe(
          Stream.rechunk(1),
          Stream.map((i) => message(i, size)),
          Stream.tap(() =>
            Effect.sync(() => {
              counter.produced++
            })
          )
        )
    })

  /** Consumes `FlowRpc.Items` slowly; the largest produced − consumed gap seen. */
  const consumeSlowly = (peer: Peer.Peer, counter: { produced: number }, n: number, size: number) =>
    Effect.gen(function*() {
      const client = yield* RpcClient.makeWith(peer, FlowRpc)
      let consumed = 0
      let maxGap = 0
      let misordered = 0
      yield* Stream.runForEach(client.Items({ n, size }), (item) =>
        Effect.gen(function*() {
          if (!isMessage(item, consumed, size)) misordered++
          consumed++
          maxGap = Math.max(maxGap, counter.produced - consumed)
          yield* Effect.sleep("1 millis") // the slow consumer (not a synchronisation)
        }))
      return { consumed, maxGap, misordered }
    })

  it.live(
    "an RPC server stream to a slow consumer: production stays within the window plus one chunk",
    () =>
      Effect.gen(function*() {
        const window = 64 * KiB
        const size = 8 * KiB
        const n = 200
        const counter = { produced: 0 }
        const binder = yield* Peer.make({ flowControlWindow: window, ...noKeepalive })
        yield* serveItems(binder, counter)
        const bound = yield* binder.bind(yield* transport.address)
        const connector = yield* Peer.make({ flowControlWindow: window, reconnect: fastReconnect, ...noKeepalive })
        yield* connector.connect(bound)
        yield* connector.awaitRemotes(1).pipe(within("connected", "10 seconds"))

        const { consumed, maxGap, misordered } = yield* consumeSlowly(connector, counter, n, size).pipe(
          within("slow consumption", "20 seconds")
        )
        assert.strictEqual(consumed, n)
        assert.strictEqual(misordered, 0)
        assert.strictEqual(counter.produced, n)
        // In flight or buffered: at most a window of items; pulled by the client stream as one chunk:
        // at most another window; plus the item the producer holds while it waits for credit.
        const windowItems = Math.ceil(window / size)
        assert.isAtMost(maxGap, 2 * windowItems + 1, `produced − consumed reached ${maxGap}`)
        assert.isAtLeast(maxGap, windowItems / 2, "the producer did run ahead of the consumer")
      }),
    30_000
  )

  for (const off of ["binder", "connector"] as const) {
    it.live(
      `flowControlWindow: false on the ${off}: no CREDIT frames, no window, everything arrives`,
      () =>
        Effect.gen(function*() {
          const size = 64 * KiB
          const count = 32 // 2 MiB, eight default windows
          const counter = { produced: 0 }
          const { bound, peer: binder, sinks } = yield* flowBinder(yield* transport.address, {
            ...noKeepalive,
            ...(off === "binder" ? { flowControlWindow: false } : {})
          })
          yield* serveItems(binder, counter)
          const link = yield* relay(bound)
          const connector = yield* Peer.make({
            reconnect: fastReconnect,
            ...noKeepalive,
            ...(off === "connector" ? { flowControlWindow: false } : {})
          })
          yield* connector.connect(link.address)
          yield* connector.awaitRemotes(1).pipe(within("connected", "10 seconds"))
          const [connection] = yield* connector.connections
          assert.isUndefined(connection?.remoteWindow, "credit is not in use on the connection")

          // The whole transfer completes while the reader has not read anything.
          const channel = yield* connector.open("Flow.Sink", { headers: { size: String(size) } })
          const sink = yield* nextSink(sinks)
          assert.isFalse(sink.channel.flow)
          const { fiber, state } = yield* sender(channel, count, size)
          yield* Fiber.join(fiber).pipe(within("every send completes without a reader", "10 seconds"))
          assert.strictEqual(state.accepted, count)
          yield* Deferred.succeed(sink.start, undefined)
          const result = yield* Deferred.await(sink.result).pipe(within("everything read", "10 seconds"))
          assert.deepStrictEqual(result.indexes, range(count))
          assert.strictEqual(result.corrupt, 0)

          // An RPC stream works too.
          const rpc = yield* consumeSlowly(connector, counter, 50, 8 * KiB).pipe(within("rpc stream", "10 seconds"))
          assert.strictEqual(rpc.consumed, 50)
          assert.strictEqual(rpc.misordered, 0)

          assert.strictEqual(link.count("c2s", FrameType.Credit), 0)
          assert.strictEqual(link.count("s2c", FrameType.Credit), 0)
          // The side with flow control off does not announce `credit`.
          const pair = link.pairs()[0]!
          const hellos = {
            connector: pair.c2s.ofType(FrameType.Hello)[0],
            binder: pair.s2c.ofType(FrameType.Hello)[0]
          }
          const on = off === "binder" ? "connector" : "binder"
          assert.isDefined(hellos[off])
          assert.isDefined(hellos[on])
          assert.isUndefined(Headers.get(hellos[off]!.headers, "credit"), `the ${off} announces no credit`)
          assert.strictEqual(Headers.get(hellos[on]!.headers, "credit"), String(Peer.defaults.flowControlWindow))
        }),
      30_000
    )
  }

  it.live(
    "an original-style remote (no HELLO) is never flow controlled, in either direction",
    () =>
      Effect.gen(function*() {
        const size = 64 * KiB
        const count = 32
        const { bound, sinks } = yield* flowBinder(yield* transport.address, noKeepalive)
        const raw = yield* rawPeer(bound)
        yield* raw.until((t) => t.greeting !== undefined).pipe(within("binder greeting", "10 seconds"))

        // raw -> peer: 2 MiB to a reader that does not read yet.
        yield* raw.send(Frame.open(0, "Flow.Sink", Headers.make({ size: String(size) })))
        const sink = yield* nextSink(sinks)
        assert.isFalse(sink.channel.flow)
        for (let i = 0; i < count; i++) yield* raw.send(Frame.data(0, message(i, size)))
        yield* raw.send(Frame.end(0), Frame.open(2, "Echo.Each"), Frame.data(2, bytes("barrier"), true))
        yield* raw.frame((f) => f.channel === 2 && f.last).pipe(within("barrier reply", "10 seconds"))
        assert.strictEqual(sink.channel.inbox.size, count, "everything buffered, nothing cancelled")
        yield* Deferred.succeed(sink.start, undefined)
        const result = yield* Deferred.await(sink.result).pipe(within("everything read", "10 seconds"))
        assert.deepStrictEqual(result.indexes, range(count))
        yield* raw.frame((f) => f.channel === 0 && f.last).pipe(within("the sink's end", "10 seconds"))

        // peer -> raw: the peer sends 2 MiB although the raw remote never grants anything.
        yield* raw.send(Frame.open(4, "Flow.Source", Headers.make({ size: String(size), count: String(count) })))
        yield* raw.frame((f) => f.channel === 4 && f.last).pipe(within("the whole source", "10 seconds"))
        const data = raw.tap.ofType(FrameType.Data, 4)
        assert.strictEqual(data.length, count + 1)
        assert.deepStrictEqual(data.slice(0, count).map((f) => f.length), range(count).map(() => size))
        assert.deepStrictEqual(raw.tap.frames.filter((f) => f.error !== "").map((f) => f.error), [])
        for (const type of [FrameType.Ping, FrameType.Pong, FrameType.Credit]) {
          assert.strictEqual(raw.tap.count(type), 0, `no frame of type ${type} to an original peer`)
        }
      }),
    30_000
  )

  it.live(
    "a remote that announced credit and overruns the window by far more than a frame gets the channel cancelled; the connection survives",
    () =>
      Effect.gen(function*() {
        const window = 256 * KiB
        const maxFrameBytes = 1 * MiB
        const size = 64 * KiB
        const { bound, peer: binder, sinks } = yield* flowBinder(yield* transport.address, {
          flowControlWindow: window,
          limits: { maxFrameBytes },
          ...noKeepalive
        })
        const raw = yield* rawPeer(bound, { hello: Headers.make({ credit: String(64 * KiB) }) })
        yield* raw.until((t) => t.count(FrameType.Hello) > 0).pipe(within("binder greeting", "10 seconds"))

        // Overrun: 24 x 64 KiB = 1.5 MiB against a 256 KiB window and 1 MiB frames.
        yield* raw.send(Frame.open(0, "Flow.Sink", Headers.make({ size: String(size) })))
        const sink = yield* nextSink(sinks)
        assert.isTrue(sink.channel.flow)
        yield* raw.send(...range(24).map((i) => Frame.data(0, message(i, size))))
        const cancel = yield* raw.frame((f) => f.channel === 0 && f.error !== "").pipe(
          within("the cancel", "10 seconds")
        )
        assert.strictEqual(cancel.type, FrameType.Data)
        assert.strictEqual(cancel.error, "duplex: flow control window exceeded")
        assert.isFalse(cancel.last, "a cancel (last = false)")
        yield* Deferred.succeed(sink.start, undefined)
        const failed = yield* Deferred.await(sink.result).pipe(Effect.flip, within("the reader fails", "10 seconds"))
        assert.strictEqual(failed._tag, "ChannelError")

        // Frames after the cancel are dropped as for an unknown channel; the connection goes on.
        yield* raw.send(Frame.open(2, "Echo.Each"), Frame.data(2, bytes("still here"), true))
        yield* raw.frame((f) => f.channel === 2 && f.last).pipe(within("echo after the cancel", "10 seconds"))
        assert.isFalse(raw.isClosed())
        const connection = (yield* binder.connections).find((c) => c.remoteId === raw.id)
        assert.isDefined(connection, "the connection survives")
        assert.isAtLeast(connection!.stats.droppedUnknownChannel, 1, "data after the cancel is dropped")

        // An overrun within one frame is tolerated: exactly the window, then one frame just under
        // maxFrameBytes.
        yield* raw.send(Frame.open(4, "Flow.Sink", Headers.make({ size: String(size) })))
        const tolerant = yield* nextSink(sinks)
        yield* raw.send(...range(4).map((i) => Frame.data(4, message(i, size))))
        const big = message(4, maxFrameBytes - 64)
        yield* raw.send(Frame.data(4, big), Frame.open(6, "Echo.Each"), Frame.data(6, bytes("b"), true))
        yield* raw.frame((f) => f.channel === 6 && f.last).pipe(within("barrier", "10 seconds"))
        assert.isUndefined(raw.tap.frames.find((f) => f.channel === 4 && f.error !== ""), "no cancel")
        assert.strictEqual(tolerant.channel.inbox.size, 5)
        // Once read, credit flows back (the half is still open), then the raw remote ends it.
        yield* Deferred.succeed(tolerant.start, undefined)
        const grant = yield* raw.frame((f) => f.type === FrameType.Credit && f.channel === 4).pipe(
          within("credit granted to a raw remote that announced credit", "10 seconds")
        )
        assert.isAtLeast(creditOf(grant), window / 2)
        yield* raw.send(Frame.end(4))
        const read = yield* Deferred.await(tolerant.result).pipe(within("tolerated channel read", "10 seconds"))
        assert.deepStrictEqual(read.indexes, range(5))
        yield* raw.frame((f) => f.channel === 4 && f.last && f.error === "").pipe(within("sink end", "10 seconds"))
      }),
    30_000
  )
})
