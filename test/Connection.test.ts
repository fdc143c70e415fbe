/**
 * Raw-socket conformance of a Duplex peer's connections: greeting, HELLO, channel ids, tolerance
 * (dropped-and-counted frames) and strictness (garbage closes only the offending connection), and
 * the `raw-frames-echo` golden vector. Run over TCP and over Unix sockets.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Option, Queue, Schedule, Scope, Stream } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import * as Frame from "../src/Frame.ts"
import { encodeFrame } from "../src/FrameCodec.ts"
import * as Greeting from "../src/Greeting.ts"
import * as Headers from "../src/Headers.ts"
import * as Peer from "../src/Peer.ts"
import { FrameType, GREETING_LENGTH, LEGACY_CHANNEL_BASE } from "../src/Protocol.ts"
import { bytes, collect, hex, text, transports, within } from "./utils/helpers.ts"
import { call, connectedPair, fastReconnect, handler, nextSeen, type Seen } from "./utils/peers.ts"
import { connectRaw, framesAfterGreeting, listenRaw, type RawFrame, type RawSocket } from "./utils/raw.ts"

/** The HELLO a peer with default options sends: [2, 0, "DUPLEX/1", { ping, goaway, credit: "262144" }, "", false, nil]. */
const HELLO_HEX = Buffer.from(
  encodeFrame(Frame.hello(Headers.make({ ping: "", goaway: "", credit: String(Peer.defaults.flowControlWindow) })))
).toString("hex")
const vectorsDir = Path.join(import.meta.dirname, "fixtures", "vectors")
const vectorLines = (name: string): Array<string> =>
  Fs.readFileSync(Path.join(vectorsDir, name), "utf8").split("\n").map((l) => l.trim()).filter((l) => l.length > 0)

const concat = (parts: ReadonlyArray<Uint8Array>): Uint8Array => Buffer.concat(parts)

/** Frames of type DATA/OPEN (not HELLO) that `raw` received after the greeting. */
const payloadFrames = (received: Buffer): Array<RawFrame> =>
  framesAfterGreeting(received).filter((f) => f.frame.type !== FrameType.Hello)

/** Connects a raw socket, sends a greeting, and waits for the binder's greeting and HELLO. */
const greetRaw = (address: string, id = Greeting.makeId()) =>
  Effect.gen(function*() {
    const raw = yield* connectRaw(address)
    yield* raw.write(Greeting.encode(id))
    const received = yield* raw.waitBytes(GREETING_LENGTH + HELLO_HEX.length / 2).pipe(
      within("binder greeting + HELLO", "10 seconds")
    )
    return { raw, id, received }
  })

/**
 * A binder serving the handlers of utils/peers.ts plus `Raw.Frames` (echoes every payload unchanged
 * with last = false, then ends) and `Hold.Open` (reads the input, then never ends its own half).
 */
const rawFramesBinder = (address: string, options: Peer.Options = {}) =>
  Effect.gen(function*() {
    const log = yield* Queue.unbounded<Seen>()
    const binder = yield* Peer.make(options)
    const base = handler(log)
    yield* binder.serve((channel) => {
      switch (channel.method) {
        case "Raw.Frames":
          return Effect.gen(function*() {
            yield* Stream.runForEach(channel.input, (payload) => channel.send(payload))
            yield* channel.end
          })
        case "Hold.Open":
          // Reads the input, keeps its own half open until the channel is aborted.
          return Effect.gen(function*() {
            const input = yield* collect(channel)
            yield* Queue.offer(log, {
              method: channel.method,
              headers: {},
              remoteId: channel.remoteId,
              direction: channel.direction,
              id: channel.id,
              note: input.join(",")
            })
            yield* channel.done
          })
        default:
          return base(channel)
      }
    })
    const bound = yield* binder.bind(address)
    return { binder, bound, log }
  })

/** Waits until `raw` has received `count` non-HELLO frames after the greeting. */
const awaitFrames = (raw: RawSocket, count: number, label: string) =>
  raw.waitUntil((all) => all.length > GREETING_LENGTH && payloadFrames(all).length >= count).pipe(
    within(label, "10 seconds"),
    Effect.map(payloadFrames)
  )

describe.each(transports)("Connection over $name (raw sockets)", (transport) => {
  const liveFailsOnTcp = it.live

  it.live("the binder answers a greeting with its own greeting and its HELLO", () =>
    Effect.gen(function*() {
      const { binder, bound } = yield* rawFramesBinder(yield* transport.address)
      const upper = Greeting.makeId().toUpperCase()
      const { raw, received } = yield* greetRaw(bound, upper)
      assert.strictEqual(received.subarray(0, GREETING_LENGTH).toString("latin1"), binder.id)
      const frames = framesAfterGreeting(received)
      assert.strictEqual(frames[0]?.bytes.toString("hex"), HELLO_HEX)
      // The id is stored lowercased; a remote without HELLO is not a Duplex peer.
      yield* binder.awaitRemotes(1).pipe(within("registered", "10 seconds"))
      assert.deepStrictEqual((yield* binder.remotes).map((r) => [r.id, r.duplex, r.direction]), [
        [upper.toLowerCase(), false, "incoming"]
      ])
      assert.isFalse(raw.isClosed())
      // Any UUID is accepted, even the all-zero one (no version/variant check).
      const zero = yield* greetRaw(bound, "00000000-0000-0000-0000-000000000000")
      assert.strictEqual(zero.received.subarray(0, GREETING_LENGTH).toString("latin1"), binder.id)
      yield* binder.awaitRemotes(2).pipe(within("registered", "10 seconds"))
      assert.include((yield* binder.remotes).map((r) => r.id), "00000000-0000-0000-0000-000000000000")
    }), 30_000)

  it.live(
    "a greeting split over many writes is accepted; bytes after it in the same write are frames",
    () =>
      Effect.gen(function*() {
        const { bound } = yield* rawFramesBinder(yield* transport.address)
        const raw = yield* connectRaw(bound)
        const greeting = Greeting.encode(Greeting.makeId())
        for (let i = 0; i < 30; i++) yield* raw.write(greeting.subarray(i, i + 1))
        // The last 6 greeting bytes, an OPEN and a DATA frame in one write.
        yield* raw.write(concat([
          greeting.subarray(30),
          encodeFrame(Frame.open(0, "Raw.Frames")),
          encodeFrame(Frame.data(0, bytes("hi"), true))
        ]))
        const frames = yield* awaitFrames(raw, 2, "echo")
        assert.deepStrictEqual(frames.map((f) => f.bytes.toString("hex")), [
          hex(encodeFrame(Frame.data(0, bytes("hi"), false))),
          hex(encodeFrame(Frame.end(0)))
        ])
      }),
    30_000
  )

  it.live("garbage after a valid greeting closes only that connection", () =>
    Effect.gen(function*() {
      const pair = yield* connectedPair(yield* transport.address)
      const events = yield* Effect.forkChild(
        Stream.runCollect(Stream.take(pair.binder.events, 2)).pipe(within("binder events", "10 seconds")),
        { startImmediately: true }
      )
      const { raw } = yield* greetRaw(pair.bound)
      yield* pair.binder.awaitRemotes(2).pipe(within("raw registered", "10 seconds"))
      yield* raw.write(new Uint8Array([0xc1, 0xc1, 0xc1]))
      yield* raw.closed.pipe(within("raw socket closed by the binder", "10 seconds"))
      const [connected, disconnected] = yield* Fiber.join(events)
      assert.strictEqual(connected?._tag, "Connected")
      assert.strictEqual(disconnected?._tag, "Disconnected")
      assert.match(disconnected?._tag === "Disconnected" ? disconnected.reason : "", /MalformedFrame/)
      // The other connection is untouched, both ways.
      assert.deepStrictEqual((yield* pair.binder.remotes).map((r) => r.id), [pair.connector.id])
      assert.deepStrictEqual(yield* call(pair.connector, "Echo.Each", ["after garbage"]), ["after garbage"])
      assert.deepStrictEqual(yield* call(pair.binder, "Echo.Each", ["and back"], { remote: pair.connector.id }), [
        "and back"
      ])
    }), 30_000)

  it.live(
    "a malformed frame closes the connection and fails its channels with ConnectionLost",
    () =>
      Effect.gen(function*() {
        const { binder, bound, log } = yield* rawFramesBinder(yield* transport.address)
        const { raw } = yield* greetRaw(bound)
        // Open a channel from the raw side whose handler waits for input.
        yield* raw.write(encodeFrame(Frame.open(0, "Abort.Wait")))
        yield* awaitFrames(raw, 1, "ready")
        // A top-level string is not a frame.
        yield* raw.write(new Uint8Array([0xa3, 0x61, 0x62, 0x63]))
        yield* raw.closed.pipe(within("closed", "10 seconds"))
        const seen = yield* nextSeen(log)
        assert.match(seen.note, /^err:ConnectionLost:/)
        assert.deepStrictEqual(yield* binder.remotes, [])
      }),
    30_000
  )

  it.live("a bad greeting (not a UUID) gets the connection closed without a reply", () =>
    Effect.gen(function*() {
      const { binder, bound } = yield* rawFramesBinder(yield* transport.address)
      const raw = yield* connectRaw(bound)
      yield* raw.write(bytes("this-is-not-a-uuid-at-all-0123456789"))
      yield* raw.closed.pipe(within("closed after a bad greeting", "10 seconds"))
      assert.strictEqual(raw.received().length, 0)
      assert.deepStrictEqual(yield* binder.remotes, [])
      // The binder still accepts good connections.
      const { raw: good } = yield* greetRaw(bound)
      assert.isFalse(good.isClosed())
    }), 30_000)

  it.live("a silent connection is closed after the greeting timeout", () =>
    Effect.gen(function*() {
      const { bound } = yield* rawFramesBinder(yield* transport.address, { greetingTimeout: "200 millis" })
      const silent = yield* connectRaw(bound)
      const partial = yield* connectRaw(bound)
      yield* partial.write(Greeting.encode(Greeting.makeId()).subarray(0, 20))
      yield* silent.closed.pipe(within("silent closed", "10 seconds"))
      yield* partial.closed.pipe(within("partial greeting closed", "10 seconds"))
      assert.strictEqual(silent.received().length, 0)
      assert.strictEqual(partial.received().length, 0)
    }), 30_000)

  it.live(
    "frames for unknown channels, unknown frame types and duplicate OPENs are dropped and counted",
    () =>
      Effect.gen(function*() {
        const { binder, bound, log } = yield* rawFramesBinder(yield* transport.address)
        const { raw } = yield* greetRaw(bound)
        yield* binder.awaitRemotes(1).pipe(within("registered", "10 seconds"))
        yield* raw.write(concat([
          encodeFrame(Frame.data(999, bytes("nobody"), false)),
          encodeFrame(Frame.end(1001)),
          encodeFrame(Frame.cancel(77)),
          encodeFrame(Frame.make(7, 0, "", Headers.empty, "", false, null)),
          encodeFrame(Frame.make(6, 3, "x", Headers.empty, "", true, bytes("?"))),
          // A channel, then an OPEN for the same id while it is open.
          encodeFrame(Frame.open(4, "Echo.Each")),
          encodeFrame(Frame.open(4, "Echo.Each")),
          encodeFrame(Frame.data(4, bytes("one"), true))
        ]))
        const frames = yield* awaitFrames(raw, 2, "echo on channel 4")
        assert.deepStrictEqual(
          frames.map((f) => [f.frame.channel, f.frame.payload === null ? null : text(f.frame.payload)]),
          [
            [4, "one"],
            [4, null]
          ]
        )
        assert.strictEqual((yield* nextSeen(log)).note, "one")
        assert.isFalse(raw.isClosed())
        const [connection] = yield* binder.connections
        assert.strictEqual(connection?.stats.droppedUnknownChannel, 3)
        assert.strictEqual(connection?.stats.droppedUnknownType, 2)
        assert.strictEqual(connection?.stats.droppedDuplicateOpen, 1)
        // Still usable.
        yield* raw.write(
          concat([encodeFrame(Frame.open(6, "Raw.Frames")), encodeFrame(Frame.data(6, bytes("z"), true))])
        )
        const more = yield* awaitFrames(raw, 4, "second echo")
        assert.strictEqual(more[2]?.frame.channel, 6)
      }),
    30_000
  )

  it.live(
    "frames after the remote's end are dropped and counted; a second HELLO is ignored",
    () =>
      Effect.gen(function*() {
        const { binder, bound, log } = yield* rawFramesBinder(yield* transport.address)
        const { raw } = yield* greetRaw(bound)
        yield* raw.write(concat([
          encodeFrame(Frame.hello(Headers.empty)),
          encodeFrame(Frame.open(0, "Hold.Open")),
          encodeFrame(Frame.data(0, bytes("x"), true)),
          // After our end: a message and an error are dropped.
          encodeFrame(Frame.data(0, bytes("late"), false)),
          encodeFrame(Frame.error(0, "late error")),
          // A second HELLO is ignored (its capabilities are not taken).
          encodeFrame(Frame.hello(Headers.make({ second: "1" })))
        ]))
        assert.strictEqual((yield* nextSeen(log)).note, "x")
        // Cancel the held channel, then a round trip on another one to sync.
        yield* raw.write(concat([
          encodeFrame(Frame.cancel(0)),
          encodeFrame(Frame.open(2, "Raw.Frames")),
          encodeFrame(Frame.end(2))
        ]))
        const frames = yield* awaitFrames(raw, 1, "end of channel 2")
        assert.deepStrictEqual(frames.map((f) => [f.frame.channel, f.frame.last]), [[2, true]])
        const [connection] = yield* binder.connections
        assert.strictEqual(connection?.stats.droppedAfterEnd, 2)
        assert.strictEqual(connection?.stats.droppedUnknownChannel, 0)
        assert.deepStrictEqual(connection?.remoteCapabilities, Headers.empty)
        assert.strictEqual(connection?.channels.size, 0)
        assert.isFalse(raw.isClosed())
      }),
    30_000
  )

  // BUG: Peer.make uses a custom `id` as given. PROTOCOL.md: "A writer MUST use lowercase digits"
  // in the greeting, but an uppercase id is written uppercase (and `peer.id` then differs from the
  // lowercased id every remote sees, so `open(m, { remote: peer.id })` never matches).
  it.live("a custom uppercase id is written lowercase in the greeting", () =>
    Effect.gen(function*() {
      const server = yield* listenRaw(yield* transport.address)
      const upper = Greeting.makeId().toUpperCase()
      const connector = yield* Peer.make({ id: upper, reconnect: fastReconnect })
      yield* connector.connect(server.address)
      const raw = yield* server.accepted.pipe(within("accepted", "10 seconds"))
      const greeting = yield* raw.waitBytes(GREETING_LENGTH).pipe(within("greeting", "10 seconds"))
      assert.strictEqual(greeting.subarray(0, GREETING_LENGTH).toString("latin1"), upper.toLowerCase())
    }), 30_000)

  it.live("replays the raw-frames-echo vector byte for byte", () =>
    Effect.gen(function*() {
      const { bound } = yield* rawFramesBinder(yield* transport.address)
      const c2s = vectorLines("raw-frames-echo.c2s.hex")
      const s2c = vectorLines("raw-frames-echo.s2c.hex")
      assert.strictEqual(c2s.length, 5)
      assert.strictEqual(s2c.length, 5)
      const greeting = Greeting.encode(Greeting.makeId())
      const input = c2s.map((line) => Buffer.from(line, "hex"))
      // (a) greeting and all frames in one write; (b) greeting, then one write per frame.
      for (const mode of ["one write", "one write per frame"] as const) {
        const raw = yield* connectRaw(bound)
        if (mode === "one write") yield* raw.write(concat([greeting, ...input]))
        else {
          yield* raw.write(greeting)
          for (const frame of input) yield* raw.write(frame)
        }
        const frames = yield* awaitFrames(raw, s2c.length, `echo (${mode})`)
        const all = framesAfterGreeting(raw.received())
        assert.strictEqual(all[0]?.bytes.toString("hex"), HELLO_HEX, "HELLO first")
        assert.deepStrictEqual(frames.map((f) => f.bytes.toString("hex")), s2c, mode)
      }
    }), 30_000)

  it.live(
    "without the connector's HELLO the binder opens legacy-safe odd ids; after it, compact odd ids",
    () =>
      Effect.gen(function*() {
        const { binder, bound } = yield* rawFramesBinder(yield* transport.address)
        const openFrom = (rawId: string) =>
          Effect.forkChild(
            Effect.scoped(Effect.gen(function*() {
              const channel = yield* binder.open("Ping.Me", { remote: rawId, headers: { k: "v" } })
              yield* channel.sendLast(bytes("ping"))
              return yield* collect(channel)
            })),
            { startImmediately: true }
          )
        // An original connector: no HELLO.
        const legacy = yield* greetRaw(bound)
        yield* binder.awaitRemotes(1).pipe(within("registered", "10 seconds"))
        const a = yield* openFrom(legacy.id)
        const b = yield* openFrom(legacy.id)
        const frames = yield* awaitFrames(legacy.raw, 4, "two OPENs with input")
        const opens = frames.filter((f) => f.frame.type === FrameType.Open)
        assert.deepStrictEqual(opens.map((f) => f.frame.channel), [LEGACY_CHANNEL_BASE + 1, LEGACY_CHANNEL_BASE + 3])
        assert.strictEqual(
          opens[0]?.bytes.toString("hex"),
          "9700ce80000001a750696e672e4d6581a16ba176a0c2c0",
          "OPEN as the original writes it"
        )
        // Reply on those ids; the channels complete.
        yield* legacy.raw.write(concat(opens.map((f) => encodeFrame(Frame.data(f.frame.channel, bytes("pong"), true)))))
        assert.deepStrictEqual(yield* Fiber.join(a).pipe(within("reply a", "10 seconds")), ["pong"])
        assert.deepStrictEqual(yield* Fiber.join(b).pipe(within("reply b", "10 seconds")), ["pong"])

        // A Duplex connector: HELLO right after the greeting.
        const modern = yield* greetRaw(bound)
        yield* modern.raw.write(concat([
          encodeFrame(Frame.hello(Headers.empty)),
          encodeFrame(Frame.open(0, "Raw.Frames")),
          encodeFrame(Frame.data(0, bytes("sync"), true))
        ]))
        // Once the echo is back, the binder has read our HELLO.
        yield* awaitFrames(modern.raw, 2, "sync echo")
        yield* binder.awaitRemotes(2).pipe(within("two remotes", "10 seconds"))
        assert.deepStrictEqual((yield* binder.remotes).map((r) => r.duplex).sort(), [false, true])
        const c = yield* openFrom(modern.id)
        const d = yield* openFrom(modern.id)
        const modernFrames = yield* awaitFrames(modern.raw, 6, "two compact OPENs")
        const modernOpens = modernFrames.filter((f) => f.frame.type === FrameType.Open)
        assert.deepStrictEqual(modernOpens.map((f) => f.frame.channel), [1, 3])
        yield* modern.raw.write(
          concat(modernOpens.map((f) => encodeFrame(Frame.data(f.frame.channel, bytes("pong"), true))))
        )
        assert.deepStrictEqual(yield* Fiber.join(c).pipe(within("reply c", "10 seconds")), ["pong"])
        assert.deepStrictEqual(yield* Fiber.join(d).pipe(within("reply d", "10 seconds")), ["pong"])
      }),
    30_000
  )

  it.live(
    "a Duplex connector talking to an original binder: greeting, HELLO, then OPEN on 0x80000000",
    () =>
      Effect.gen(function*() {
        const server = yield* listenRaw(yield* transport.address)
        const connector = yield* Peer.make({ reconnect: fastReconnect })
        yield* connector.connect(server.address)
        const raw = yield* server.accepted.pipe(within("accepted", "10 seconds"))
        const greeting = yield* raw.waitBytes(GREETING_LENGTH).pipe(within("connector greeting", "10 seconds"))
        assert.strictEqual(greeting.subarray(0, GREETING_LENGTH).toString("latin1"), connector.id)
        // The connector's greeting may be followed by its HELLO in the same write (PROTOCOL.md,
        // Overall Behaviour); nothing else comes before our greeting.
        assert.isAtLeast(greeting.length, GREETING_LENGTH)
        const binderId = "05e79708-7692-46fd-96d0-fbab1e11322c"
        yield* raw.write(Greeting.encode(binderId))
        yield* connector.awaitRemotes(1).pipe(within("connected", "10 seconds"))
        assert.deepStrictEqual(yield* connector.remotes, [
          { id: binderId, address: server.address, direction: "outgoing", duplex: false }
        ])
        const reply = yield* Effect.forkChild(
          Effect.scoped(Effect.gen(function*() {
            const channel = yield* connector.open("Arith.Add")
            yield* channel.sendLast(Buffer.from("82a14107a14208", "hex"))
            return yield* Stream.runCollect(channel.input)
          })),
          { startImmediately: true }
        )
        const frames = yield* raw.waitUntil((all) => framesAfterGreeting(all).length >= 3).pipe(
          within("HELLO, OPEN, input", "10 seconds"),
          Effect.map(framesAfterGreeting)
        )
        // PROTOCOL.md, Worked Example.
        assert.deepStrictEqual(frames.map((f) => f.bytes.toString("hex")), [
          HELLO_HEX,
          "9700ce80000000a941726974682e41646480a0c2c0",
          "9701ce80000000a080a0c3a782a14107a14208"
        ])
        yield* raw.write(Buffer.from("9701ce80000000a080a0c3a481a1430f", "hex"))
        const replies = yield* Fiber.join(reply).pipe(within("reply", "10 seconds"))
        assert.deepStrictEqual(replies.map(hex), ["81a1430f"])
      }),
    30_000
  )

  it.live(
    "a connector whose remote never answers the greeting gives up after greetingTimeout and redials",
    () =>
      Effect.gen(function*() {
        const server = yield* listenRaw(yield* transport.address)
        const connector = yield* Peer.make({ reconnect: fastReconnect, greetingTimeout: "200 millis" })
        yield* connector.connect(server.address)
        const first = yield* server.nth(0).pipe(within("first dial", "10 seconds"))
        yield* first.socket.waitBytes(GREETING_LENGTH).pipe(within("greeting", "10 seconds"))
        yield* first.socket.closed.pipe(within("connector closes the silent connection", "10 seconds"))
        const second = yield* server.nth(1).pipe(within("redial", "10 seconds"))
        yield* second.socket.waitBytes(GREETING_LENGTH).pipe(within("greeting again", "10 seconds"))
        assert.deepStrictEqual(yield* connector.remotes, [])
      }),
    30_000
  )

  // BUG: when an established connection drops, Peer.connect redials at once and only dial *failures*
  // follow the `reconnect` schedule (`while (!closed) yield* Effect.retry(attempt, reconnect)`:
  // a connection that ends is a successful attempt). A remote that completes the greeting and then
  // closes (a crashing or overloaded server) is redialled in a hot loop: ~1,300 connections per
  // second were measured with `Schedule.spaced("1 second")`.
  it.live(
    "a remote that drops every connection after the greeting is redialled on the schedule",
    () =>
      Effect.gen(function*() {
        const server = yield* listenRaw(yield* transport.address)
        const delay = 300
        const connector = yield* Peer.make({ reconnect: Schedule.spaced(`${delay} millis`) })
        yield* connector.connect(server.address)
        const times: Array<number> = []
        for (let i = 0; i < 6; i++) {
          const { at, socket } = yield* server.nth(i).pipe(within(`dial ${i}`, "20 seconds"))
          times.push(at)
          yield* socket.waitBytes(GREETING_LENGTH).pipe(within("greeting", "10 seconds"))
          yield* socket.write(Greeting.encode(Greeting.makeId()))
          yield* socket.end
        }
        // Allow one immediate redial; the other four must wait for the schedule.
        const elapsed = times[5]! - times[0]!
        assert.isAtLeast(elapsed, 4 * delay, `6 dials in ${elapsed.toFixed(0)} ms`)
      }),
    30_000
  ) // BUG (TCP): closing a peer's scope never completes while a remote has stopped reading. The
  // connection's finalizer bounds its last flush (1 s) but then only half-closes the socket (`end()`
  // / `destroySoon()`), which waits for the unread bytes to drain, and the listener's
  // `server.close()` waits for that socket. The socket should be destroyed after the flush deadline.
  // (Over Unix sockets the close completes.)
  liveFailsOnTcp(
    "closing a binder's scope completes while a remote has stopped reading",
    () =>
      Effect.gen(function*() {
        const address = yield* transport.address
        const log = yield* Queue.unbounded<Seen>()
        const scope = yield* Scope.make()
        // (If the close hangs, the raw socket's destruction at the end of the test releases it.)
        const binder = yield* Peer.make().pipe(Scope.provide(scope))
        yield* binder.serve(handler(log)).pipe(Scope.provide(scope))
        const bound = yield* binder.bind(address).pipe(Scope.provide(scope))
        const { raw } = yield* greetRaw(bound)
        // 4 x 8 MiB to echo: far more than the socket buffers hold.
        const big = new Uint8Array(8 * 1024 * 1024)
        yield* raw.write(encodeFrame(Frame.open(0, "Echo.Each")))
        for (let i = 0; i < 3; i++) yield* raw.write(encodeFrame(Frame.data(0, big, false)))
        yield* raw.write(encodeFrame(Frame.data(0, big, true)))
        // Once 1 MiB of echo has arrived the binder is pumping; stop reading.
        yield* raw.waitBytes(GREETING_LENGTH + 1024 * 1024).pipe(within("echo flowing", "10 seconds"))
        yield* raw.pause
        const closing = yield* Effect.forkDetach(Scope.close(scope, Exit.void))
        const exit = yield* Fiber.await(closing).pipe(Effect.timeoutOption("4 seconds"))
        assert.isTrue(Option.isSome(exit), "the scope closed within 4 s")
      }),
    30_000
  )

  it.live("the input ending inside a frame drops the connection (TruncatedFrame)", () =>
    Effect.gen(function*() {
      const { binder, bound } = yield* rawFramesBinder(yield* transport.address)
      const events = yield* Effect.forkChild(
        Stream.runCollect(Stream.take(binder.events, 2)).pipe(within("binder events", "10 seconds")),
        { startImmediately: true }
      )
      const { raw } = yield* greetRaw(bound)
      yield* raw.write(encodeFrame(Frame.open(0, "Raw.Frames")).subarray(0, 5))
      yield* raw.end
      yield* raw.closed.pipe(within("closed", "10 seconds"))
      const [, disconnected] = yield* Fiber.join(events)
      assert.match(disconnected?._tag === "Disconnected" ? disconnected.reason : "", /TruncatedFrame/)
    }), 30_000)
})
