/**
 * Conformance of the peer runtime, run once over TCP and once over Unix sockets.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Queue, Ref, Stream } from "effect"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Path from "node:path"
import * as Channel from "../src/Channel.ts"
import * as Peer from "../src/Peer.ts"
import {
  bytes,
  collect,
  inputFailure,
  tcpPort,
  tempDir,
  text,
  transports,
  unboundAddress,
  unixPath,
  within
} from "./utils/helpers.ts"
import {
  call,
  connectedPair,
  describeError,
  fastReconnect,
  handler,
  inScope,
  nextSeen,
  type Seen
} from "./utils/peers.ts"

const sorted = (xs: ReadonlyArray<string>) => [...xs].sort()

describe.each(transports)("Peer over $name", (transport) => {
  // -------------------------------------------------------------------------------------------
  // 1. Channels both ways
  // -------------------------------------------------------------------------------------------

  it.live("channels both ways: method, headers, remote peer ids, direction", () =>
    Effect.gen(function*() {
      const { binder, binderLog, connector, connectorLog } = yield* connectedPair(yield* transport.address)
      // A computed key makes `__proto__` an own, plain key (as it arrives from the wire).
      const headers: Record<string, string> = {
        "trace-id": "t-1",
        "x-unicode": "ünïcødé ✓",
        ["__proto__"]: "plain",
        empty: ""
      }
      assert.strictEqual(Object.keys(headers).length, 4)
      const cases = [
        { from: connector, to: binder, log: binderLog, options: { headers } },
        { from: binder, to: connector, log: connectorLog, options: { headers, remote: connector.id } },
        { from: binder, to: connector, log: connectorLog, options: { headers } }
      ]
      for (const { from, log, options, to } of cases) {
        yield* Effect.scoped(Effect.gen(function*() {
          const channel = yield* from.open("Info.Get", options)
          assert.strictEqual(channel.method, "Info.Get")
          assert.deepStrictEqual({ ...channel.headers }, headers)
          assert.strictEqual(channel.remoteId, to.id)
          assert.strictEqual(channel.direction, "outgoing")
          // Connector allocates even ids, binder odd ids.
          assert.strictEqual(channel.id % 2, from === connector ? 0 : 1)
          yield* channel.sendLast(bytes("payload"))
          const replies = yield* collect(channel).pipe(within("Info.Get reply", "10 seconds"))
          assert.strictEqual(replies.length, 1)
          assert.deepStrictEqual(JSON.parse(replies[0]!), {
            method: "Info.Get",
            headers,
            remoteId: from.id,
            direction: "incoming"
          })
          yield* channel.done.pipe(within("channel.done", "10 seconds"))
          const seen = yield* nextSeen(log)
          assert.strictEqual(seen.note, "ok:payload")
          assert.strictEqual(seen.id, channel.id)
        }))
      }
    }), 30_000)

  it.live("messages stream both ways in order", () =>
    Effect.gen(function*() {
      const { binder, connector } = yield* connectedPair(yield* transport.address)
      const messages = Array.from({ length: 50 }, (_, i) => `m${i}`)
      assert.deepStrictEqual(
        yield* call(connector, "Echo.Each", messages).pipe(within("echo up", "10 seconds")),
        messages
      )
      assert.deepStrictEqual(
        yield* call(binder, "Echo.Each", messages, { remote: connector.id }).pipe(within("echo down", "10 seconds")),
        messages
      )
      // Empty payloads are messages too.
      assert.deepStrictEqual(yield* call(connector, "Echo.Each", ["", "", "x"]), ["", "", "x"])
    }), 30_000)

  it.live("half-close: the opener ends first, the remote keeps sending, then ends", () =>
    Effect.gen(function*() {
      const pair = yield* connectedPair(yield* transport.address)
      for (
        const [from, log, options] of [
          [pair.connector, pair.binderLog, {}],
          [pair.binder, pair.connectorLog, { remote: pair.connector.id }]
        ] as const
      ) {
        yield* Effect.scoped(Effect.gen(function*() {
          const channel = yield* from.open("Half.AfterEnd", options)
          yield* channel.send(bytes("a"))
          yield* channel.send(bytes("b"))
          yield* channel.end
          // Our half is closed: sending again fails with ChannelClosed.
          const closed = yield* Effect.flip(channel.send(bytes("late")))
          assert.strictEqual(closed.reason._tag, "ChannelClosed")
          // The remote still sends after our end.
          assert.deepStrictEqual(yield* collect(channel).pipe(within("replies after end", "10 seconds")), ["a!", "b!"])
          yield* channel.done.pipe(within("channel.done", "10 seconds"))
          assert.strictEqual((yield* nextSeen(log)).note, "a,b")
        }))
      }
    }), 30_000)

  it.live("half-close: the remote ends first, the opener keeps sending, then ends", () =>
    Effect.gen(function*() {
      const pair = yield* connectedPair(yield* transport.address)
      for (
        const [from, log, options] of [
          [pair.connector, pair.binderLog, {}],
          [pair.binder, pair.connectorLog, { remote: pair.connector.id }]
        ] as const
      ) {
        yield* Effect.scoped(Effect.gen(function*() {
          const channel = yield* from.open("Half.EndFirst", options)
          // Read the remote's whole output (it ends first) before sending anything.
          assert.deepStrictEqual(yield* collect(channel).pipe(within("remote output", "10 seconds")), ["h1", "h2"])
          yield* channel.send(bytes("x"))
          yield* channel.send(bytes("y"))
          yield* channel.end
          yield* channel.done.pipe(within("channel.done", "10 seconds"))
          assert.strictEqual((yield* nextSeen(log)).note, "ok:x,y")
        }))
      }
    }), 30_000)

  it.live("fail(text) arrives as ChannelError RemoteFailure, both ways", () =>
    Effect.gen(function*() {
      const pair = yield* connectedPair(yield* transport.address)
      for (
        const [from, log, options] of [
          [pair.connector, pair.binderLog, {}],
          [pair.binder, pair.connectorLog, { remote: pair.connector.id }]
        ] as const
      ) {
        // The remote fails its output.
        yield* Effect.scoped(Effect.gen(function*() {
          const channel = yield* from.open("Fail.Now", options)
          const error = yield* inputFailure(channel).pipe(within("remote failure", "10 seconds"))
          assert.strictEqual(error._tag, "ChannelError")
          assert.strictEqual(error.reason._tag, "RemoteFailure")
          assert.strictEqual(describeError(error), "RemoteFailure:boom Fail.Now")
          yield* channel.sendLast(bytes("after"))
          yield* channel.done.pipe(within("channel.done", "10 seconds"))
          assert.strictEqual((yield* nextSeen(log)).note, "ok:after")
        }))
        // The opener fails its output; the remote sees it after the earlier messages.
        yield* Effect.scoped(Effect.gen(function*() {
          const channel = yield* from.open("Report", options)
          yield* channel.send(bytes("first"))
          yield* channel.fail("client boom")
          assert.deepStrictEqual(yield* collect(channel).pipe(within("remote end", "10 seconds")), [])
          yield* channel.done.pipe(within("channel.done", "10 seconds"))
          assert.strictEqual((yield* nextSeen(log)).note, "err:RemoteFailure:client boom")
        }))
        // An error payload travels with the text; an empty text becomes "error".
        yield* Effect.scoped(Effect.gen(function*() {
          const channel = yield* from.open("Report", options)
          yield* channel.fail("typed", new Uint8Array([0x81, 0xa1, 0x45, 0x01]))
          assert.deepStrictEqual(yield* collect(channel).pipe(within("remote end", "10 seconds")), [])
          assert.strictEqual((yield* nextSeen(log)).note, "err:RemoteFailure:typed:81a14501")
        }))
        yield* Effect.scoped(Effect.gen(function*() {
          const channel = yield* from.open("Report", options)
          yield* channel.fail("")
          assert.deepStrictEqual(yield* collect(channel).pipe(within("remote end", "10 seconds")), [])
          assert.strictEqual((yield* nextSeen(log)).note, "err:RemoteFailure:error")
        }))
      }
    }), 30_000)

  it.live(
    "closing a channel's scope early aborts it: the remote's input fails with RemoteAborted(CloseStream)",
    () =>
      Effect.gen(function*() {
        const pair = yield* connectedPair(yield* transport.address)
        for (
          const [from, log, options] of [
            [pair.connector, pair.binderLog, {}],
            [pair.binder, pair.connectorLog, { remote: pair.connector.id }]
          ] as const
        ) {
          const channel = yield* Effect.scoped(Effect.gen(function*() {
            const channel = yield* from.open("Abort.Wait", options)
            const first = yield* Stream.runHead(channel.input).pipe(within("ready", "10 seconds"))
            assert.strictEqual(first._tag === "Some" ? text(first.value) : "none", "ready")
            return channel
          }))
          // Our side is done at once and refuses further sends.
          yield* channel.done.pipe(within("local done after cancel", "1 second"))
          const closed = yield* Effect.flip(channel.send(bytes("late")))
          assert.strictEqual(closed.reason._tag, "ChannelClosed")
          assert.strictEqual((yield* nextSeen(log)).note, "err:RemoteAborted:CloseStream")
        }
      }),
    30_000
  )

  it.live(
    "a handler returning early cancels the channel: the opener's input fails with RemoteAborted",
    () =>
      Effect.gen(function*() {
        const pair = yield* connectedPair(yield* transport.address)
        for (
          const [from, log, options] of [
            [pair.connector, pair.binderLog, {}],
            [pair.binder, pair.connectorLog, { remote: pair.connector.id }]
          ] as const
        ) {
          yield* Effect.scoped(Effect.gen(function*() {
            const channel = yield* from.open("Cancel.Me", options)
            const error = yield* inputFailure(channel).pipe(within("cancel from the handler", "10 seconds"))
            assert.strictEqual(describeError(error), "RemoteAborted:CloseStream")
            yield* channel.done.pipe(within("channel.done", "10 seconds"))
            assert.strictEqual((yield* nextSeen(log)).note, "returned")
          }))
        }
      }),
    30_000
  )

  it.live("a handler that dies cancels only its own channel", () =>
    Effect.gen(function*() {
      const pair = yield* connectedPair(yield* transport.address)
      const open = yield* pair.connector.open("Echo.Each")
      yield* open.send(bytes("kept"))
      const dying = yield* Effect.scoped(Effect.gen(function*() {
        const channel = yield* pair.connector.open("Die.Now")
        return yield* inputFailure(channel).pipe(within("cancel after the defect", "10 seconds"))
      }))
      assert.strictEqual(describeError(dying), "RemoteAborted:CloseStream")
      assert.strictEqual((yield* nextSeen(pair.binderLog)).note, "dying")
      // The other channel and new channels still work.
      yield* open.sendLast(bytes("going"))
      assert.deepStrictEqual(yield* collect(open).pipe(within("other channel", "10 seconds")), ["kept", "going"])
      assert.deepStrictEqual(yield* call(pair.connector, "Echo.Each", ["next"]), ["next"])
    }), 30_000)

  it.live("remotes and events describe the connection", () =>
    Effect.gen(function*() {
      const address = yield* transport.address
      const binder = yield* Peer.make()
      const log = yield* Queue.unbounded<Seen>()
      yield* binder.serve(handler(log))
      const bound = yield* binder.bind(address)
      const binderEvents = yield* Effect.forkChild(
        Stream.runCollect(Stream.take(binder.events, 2)).pipe(within("binder events", "10 seconds")),
        { startImmediately: true }
      )
      const client = yield* inScope(Effect.gen(function*() {
        const connector = yield* Peer.make({ reconnect: fastReconnect })
        const events = yield* Effect.forkChild(
          Stream.runCollect(Stream.take(connector.events, 1)).pipe(within("connector events", "10 seconds")),
          { startImmediately: true }
        )
        yield* connector.connect(bound)
        yield* connector.awaitRemotes(1).pipe(within("connected", "10 seconds"))
        return { connector, events }
      }))
      const { connector } = client.value
      // A round trip, so both sides have the other's HELLO.
      assert.deepStrictEqual(yield* call(connector, "Echo.Each", ["x"]), ["x"])
      const [connectorEvent] = yield* Fiber.join(client.value.events)
      assert.deepStrictEqual(connectorEvent?._tag === "Connected" ? connectorEvent.remote.id : undefined, binder.id)
      assert.deepStrictEqual(yield* connector.remotes, [
        { id: binder.id, address: bound, direction: "outgoing", duplex: true }
      ])
      const remotes = yield* binder.remotes
      assert.strictEqual(remotes.length, 1)
      assert.strictEqual(remotes[0]?.id, connector.id)
      assert.strictEqual(remotes[0]?.direction, "incoming")
      assert.strictEqual(remotes[0]?.duplex, true)
      assert.strictEqual(remotes[0]?.address, bound, "the listener that accepted it")
      yield* client.close
      const events = yield* Fiber.join(binderEvents)
      assert.deepStrictEqual(events.map((e) => e._tag), ["Connected", "Disconnected"])
      assert.deepStrictEqual(events.map((e) => e.remote.id), [connector.id, connector.id])
      assert.deepStrictEqual(events.map((e) => e.remote.direction), ["incoming", "incoming"])
      assert.deepStrictEqual(yield* binder.remotes, [])
    }), 30_000)

  // BUG: the Connected event always carries `duplex: false`, even when the remote is a Duplex peer
  // (RemoteInfo.duplex is computed once in `register`, before the remote's HELLO was processed;
  // only `remotes` recomputes it).
  it.live("Connected events report duplex: true for a Duplex remote", () =>
    Effect.gen(function*() {
      const address = yield* transport.address
      const binder = yield* Peer.make()
      const bound = yield* binder.bind(address)
      const connector = yield* Peer.make({ reconnect: fastReconnect })
      const events = yield* Effect.forkChild(
        Stream.runCollect(Stream.take(connector.events, 1)).pipe(within("connector events", "10 seconds")),
        { startImmediately: true }
      )
      yield* connector.connect(bound)
      const [event] = yield* Fiber.join(events)
      assert.strictEqual(event?.remote.duplex, true)
    }), 30_000)

  // -------------------------------------------------------------------------------------------
  // 2. Round-robin placement
  // -------------------------------------------------------------------------------------------

  it.live("one connector, three binders: 300 opens are spread 100/100/100", () =>
    Effect.gen(function*() {
      const connector = yield* Peer.make({ reconnect: fastReconnect })
      const counters = yield* Effect.forEach([0, 1, 2], () => Ref.make(0))
      const binders = yield* Effect.forEach(counters, (counter) =>
        Effect.gen(function*() {
          const binder = yield* Peer.make()
          yield* binder.serve((channel) =>
            Effect.gen(function*() {
              yield* Ref.update(counter, (n) => n + 1)
              yield* channel.sendLast(bytes("ok"))
              yield* Stream.runDrain(channel.input)
            })
          )
          const bound = yield* binder.bind(yield* transport.address)
          yield* connector.connect(bound)
          return binder
        }))
      yield* connector.awaitRemotes(3).pipe(within("three remotes", "10 seconds"))
      assert.deepStrictEqual(sorted((yield* connector.remotes).map((r) => r.id)), sorted(binders.map((b) => b.id)))
      yield* Effect.forEach(
        Array.from({ length: 300 }, (_, i) => i),
        (i) =>
          Effect.gen(function*() {
            const replies = yield* call(connector, "RoundRobin.Count", [`${i}`])
            assert.deepStrictEqual(replies, ["ok"])
          }),
        { concurrency: 16 }
      ).pipe(within("300 calls", "30 seconds"))
      assert.deepStrictEqual(yield* Effect.forEach(counters, Ref.get), [100, 100, 100])
    }), 40_000)

  // -------------------------------------------------------------------------------------------
  // 3. Edge queue
  // -------------------------------------------------------------------------------------------

  it.live(
    "opens issued before connect wait in the edge queue and are delivered once connected",
    () =>
      Effect.gen(function*() {
        const log = yield* Queue.unbounded<Seen>()
        const binder = yield* Peer.make()
        yield* binder.serve(handler(log))
        const bound = yield* binder.bind(yield* transport.address)
        const connector = yield* Peer.make({ reconnect: fastReconnect })
        assert.strictEqual(yield* connector.pendingOpens, 0)
        const early = yield* Effect.forEach(
          [0, 1, 2],
          (i) => Effect.forkChild(call(connector, "Echo.Each", [`early-${i}`]), { startImmediately: true })
        )
        assert.strictEqual(yield* connector.pendingOpens, 3)
        yield* connector.connect(bound)
        const replies = yield* Effect.forEach(early, Fiber.join).pipe(within("early opens", "10 seconds"))
        assert.deepStrictEqual(replies, [["early-0"], ["early-1"], ["early-2"]])
        assert.strictEqual(yield* connector.pendingOpens, 0)
      }),
    30_000
  )

  it.live(
    "opens wait while the binder does not exist yet; connect redials until it is bound",
    () =>
      Effect.gen(function*() {
        const address = yield* unboundAddress(transport.name)
        const connector = yield* Peer.make({ reconnect: fastReconnect })
        const before = yield* Effect.forkChild(call(connector, "Echo.Each", ["before-connect"]), {
          startImmediately: true
        })
        yield* connector.connect(address)
        const after = yield* Effect.forkChild(call(connector, "Echo.Each", ["after-connect"]), {
          startImmediately: true
        })
        // Nothing listens yet: both wait.
        assert.strictEqual(yield* connector.pendingOpens, 2)
        const log = yield* Queue.unbounded<Seen>()
        const binder = yield* Peer.make()
        yield* binder.serve(handler(log))
        assert.strictEqual(yield* binder.bind(address), address)
        assert.deepStrictEqual(yield* Fiber.join(before).pipe(within("queued open 1", "10 seconds")), [
          "before-connect"
        ])
        assert.deepStrictEqual(yield* Fiber.join(after).pipe(within("queued open 2", "10 seconds")), ["after-connect"])
        assert.strictEqual(yield* connector.pendingOpens, 0)
        assert.deepStrictEqual(sorted([(yield* nextSeen(log)).note, (yield* nextSeen(log)).note]), [
          "after-connect",
          "before-connect"
        ])
      }),
    30_000
  )

  it.live("a binder's opens issued before anyone connected go to the first connector", () =>
    Effect.gen(function*() {
      const binder = yield* Peer.make()
      const bound = yield* binder.bind(yield* transport.address)
      const waiting = yield* Effect.forkChild(call(binder, "Echo.Each", ["from the binder"]), {
        startImmediately: true
      })
      assert.strictEqual(yield* binder.pendingOpens, 1)
      const log = yield* Queue.unbounded<Seen>()
      const connector = yield* Peer.make({ reconnect: fastReconnect })
      yield* connector.serve(handler(log))
      yield* connector.connect(bound)
      assert.deepStrictEqual(yield* Fiber.join(waiting).pipe(within("binder open", "10 seconds")), ["from the binder"])
      const seen = yield* nextSeen(log)
      assert.strictEqual(seen.remoteId, binder.id)
      assert.strictEqual(seen.id % 2, 1, "binder ids are odd")
    }), 30_000)

  it.live(
    "a full edge queue with whenEdgeQueueFull: \"fail\" fails the open with EdgeQueueFull",
    () =>
      Effect.gen(function*() {
        const log = yield* Queue.unbounded<Seen>()
        const binder = yield* Peer.make()
        yield* binder.serve(handler(log))
        const bound = yield* binder.bind(yield* transport.address)
        const connector = yield* Peer.make({
          reconnect: fastReconnect,
          edgeQueueCapacity: 2,
          whenEdgeQueueFull: "fail"
        })
        const queued = yield* Effect.forEach(
          [0, 1],
          (i) => Effect.forkChild(call(connector, "Echo.Each", [`q${i}`]), { startImmediately: true })
        )
        assert.strictEqual(yield* connector.pendingOpens, 2)
        const error = yield* Effect.flip(Effect.scoped(connector.open("Echo.Each")))
        assert.strictEqual(error._tag, "EdgeQueueFull")
        assert.instanceOf(error, Peer.EdgeQueueFull)
        assert.strictEqual(error._tag === "EdgeQueueFull" ? error.capacity : -1, 2)
        assert.strictEqual(yield* connector.pendingOpens, 2)
        yield* connector.connect(bound)
        assert.deepStrictEqual(yield* Effect.forEach(queued, Fiber.join).pipe(within("queued opens", "10 seconds")), [
          ["q0"],
          ["q1"]
        ])
        // The rejected open never reached the binder.
        assert.deepStrictEqual(sorted([(yield* nextSeen(log)).note, (yield* nextSeen(log)).note]), ["q0", "q1"])
        assert.strictEqual(yield* Queue.size(log), 0)
      }),
    30_000
  )

  it.live("a full edge queue with the default \"suspend\" makes the open wait for room", () =>
    Effect.gen(function*() {
      const log = yield* Queue.unbounded<Seen>()
      const binder = yield* Peer.make()
      yield* binder.serve(handler(log))
      const bound = yield* binder.bind(yield* transport.address)
      const connector = yield* Peer.make({ reconnect: fastReconnect, edgeQueueCapacity: 1 })
      const fibers = yield* Effect.forEach([0, 1, 2], (i) =>
        Effect.forkChild(call(connector, "Echo.Each", [`s${i}`]), { startImmediately: true }))
      assert.strictEqual(yield* connector.pendingOpens, 3)
      yield* connector.connect(bound)
      assert.deepStrictEqual(yield* Effect.forEach(fibers, Fiber.join).pipe(within("suspended opens", "10 seconds")), [
        ["s0"],
        ["s1"],
        ["s2"]
      ])
      assert.strictEqual(yield* connector.pendingOpens, 0)
    }), 30_000)

  it.live("interrupting a waiting open removes it from the edge queue", () =>
    Effect.gen(function*() {
      const log = yield* Queue.unbounded<Seen>()
      const binder = yield* Peer.make()
      yield* binder.serve(handler(log))
      const bound = yield* binder.bind(yield* transport.address)
      const connector = yield* Peer.make({ reconnect: fastReconnect, edgeQueueCapacity: 1 })
      const waiting = yield* Effect.forkChild(call(connector, "Echo.Each", ["interrupted"]), {
        startImmediately: true
      })
      const overflow = yield* Effect.forkChild(call(connector, "Echo.Each", ["interrupted-overflow"]), {
        startImmediately: true
      })
      assert.strictEqual(yield* connector.pendingOpens, 2)
      yield* Fiber.interrupt(overflow)
      assert.strictEqual(yield* connector.pendingOpens, 1)
      yield* Fiber.interrupt(waiting)
      assert.strictEqual(yield* connector.pendingOpens, 0)
      yield* connector.connect(bound)
      assert.deepStrictEqual(yield* call(connector, "Echo.Each", ["kept"]).pipe(within("open", "10 seconds")), [
        "kept"
      ])
      // Only the open that was not interrupted reached the binder (frames are ordered on the connection).
      assert.strictEqual((yield* nextSeen(log)).note, "kept")
      assert.strictEqual(yield* Queue.size(log), 0)
    }), 30_000)

  it.live("opens waiting when the peer closes fail with PeerClosed; later opens too", () =>
    Effect.gen(function*() {
      const client = yield* inScope(Peer.make())
      const waiting = yield* Effect.forkChild(Effect.scoped(client.value.open("Echo.Each")), {
        startImmediately: true
      })
      yield* client.close
      const error = yield* Effect.flip(Fiber.join(waiting)).pipe(within("PeerClosed", "5 seconds"))
      assert.strictEqual(error._tag, "PeerClosed")
      const later = yield* Effect.flip(Effect.scoped(client.value.open("Echo.Each")))
      assert.strictEqual(later._tag, "PeerClosed")
    }), 30_000)

  // -------------------------------------------------------------------------------------------
  // 4. Many channels
  // -------------------------------------------------------------------------------------------

  it.live("10,000 concurrent channels on one connection, one message and one echo each", () =>
    Effect.gen(function*() {
      const { binder, connector } = yield* connectedPair(yield* transport.address)
      const n = 10_000
      const results = yield* Effect.forEach(
        Array.from({ length: n }, (_, i) => i),
        (i) => call(connector, "Echo.Each", [`c${i}`]),
        { concurrency: "unbounded" }
      ).pipe(within(`${n} channels`, "45 seconds"))
      let wrong = 0
      for (let i = 0; i < n; i++) if (results[i]?.length !== 1 || results[i]?.[0] !== `c${i}`) wrong++
      assert.strictEqual(wrong, 0)
      // Every channel was released on both sides.
      const [up] = yield* connector.connections
      const [down] = yield* binder.connections
      assert.strictEqual(up?.channels.size, 0)
      assert.strictEqual(down?.channels.size, 0)
    }), 60_000)

  it.live("concurrent opens in both directions never collide", () =>
    Effect.gen(function*() {
      const { binder, connector } = yield* connectedPair(yield* transport.address)
      const n = 500
      const [up, down] = yield* Effect.all([
        Effect.forEach(Array.from({ length: n }, (_, i) => i), (i) => call(connector, "Echo.Each", [`u${i}`]), {
          concurrency: "unbounded"
        }),
        Effect.forEach(
          Array.from({ length: n }, (_, i) => i),
          (i) => call(binder, "Echo.Each", [`d${i}`], { remote: connector.id }),
          { concurrency: "unbounded" }
        )
      ], { concurrency: 2 }).pipe(within("both directions", "30 seconds"))
      assert.deepStrictEqual(up, Array.from({ length: n }, (_, i) => [`u${i}`]))
      assert.deepStrictEqual(down, Array.from({ length: n }, (_, i) => [`d${i}`]))
      const [connection] = yield* connector.connections
      assert.strictEqual(connection?.stats.droppedDuplicateOpen, 0)
      assert.strictEqual(connection?.stats.droppedUnknownChannel, 0)
    }), 40_000)

  it.live("large messages and bulk streams survive chunking and backpressure", () =>
    Effect.gen(function*() {
      const { binder, connector } = yield* connectedPair(yield* transport.address, {
        connector: { writeHighWaterMark: 64 * 1024 }
      })
      const big = new Uint8Array(4 * 1024 * 1024 + 3)
      for (let i = 0; i < big.length; i++) big[i] = (i * 31 + 7) & 0xff
      const echoed = yield* Effect.scoped(Effect.gen(function*() {
        const channel = yield* connector.open("Echo.Each")
        yield* channel.sendLast(big)
        return yield* Stream.runCollect(channel.input)
      })).pipe(within("4 MiB echo", "20 seconds"))
      assert.strictEqual(echoed.length, 1)
      assert.isTrue(Buffer.from(echoed[0]!).equals(Buffer.from(big)), "4 MiB payload intact")
      // 400 messages of 64 KiB each way, concurrently, on two channels.
      const chunk = (tag: number) => new Uint8Array(64 * 1024).fill(tag)
      const bulk = (from: Peer.Peer, options: Peer.OpenOptions) =>
        Effect.scoped(Effect.gen(function*() {
          const channel = yield* from.open("Echo.Each", options)
          const reader = yield* Effect.forkChild(
            Stream.runFold(channel.input, () => ({ count: 0, bytes: 0, ok: true }), (acc, m) => ({
              count: acc.count + 1,
              bytes: acc.bytes + m.length,
              ok: acc.ok && m[0] === (acc.count & 0xff) && m[m.length - 1] === (acc.count & 0xff)
            })),
            { startImmediately: true }
          )
          for (let i = 0; i < 400; i++) yield* channel.send(chunk(i & 0xff))
          yield* channel.end
          return yield* Fiber.join(reader)
        }))
      const [up, down] = yield* Effect.all([
        bulk(connector, {}),
        bulk(binder, { remote: connector.id })
      ], { concurrency: 2 }).pipe(within("bulk streams", "30 seconds"))
      assert.deepStrictEqual(up, { count: 400, bytes: 400 * 64 * 1024, ok: true })
      assert.deepStrictEqual(down, { count: 400, bytes: 400 * 64 * 1024, ok: true })
    }), 60_000)

  it.live(
    "a frame above the receiver's maxFrameBytes drops the connection; the connector redials",
    () =>
      Effect.gen(function*() {
        const { connector } = yield* connectedPair(yield* transport.address, {
          binder: { limits: { maxFrameBytes: 4096 } }
        })
        assert.deepStrictEqual(yield* call(connector, "Echo.Each", ["small"]), ["small"])
        const error = yield* Effect.scoped(Effect.gen(function*() {
          const channel = yield* connector.open("Echo.Each")
          yield* channel.sendLast(new Uint8Array(8192))
          return yield* inputFailure(channel)
        })).pipe(within("oversized frame", "10 seconds"))
        assert.strictEqual(error.reason._tag, "ConnectionLost")
        assert.deepStrictEqual(
          yield* call(connector, "Echo.Each", ["after"]).pipe(within("after redial", "10 seconds")),
          [
            "after"
          ]
        )
      }),
    30_000
  )

  it.live(
    "without a handler, channels are delivered on incoming; beyond incomingCapacity they are refused",
    () =>
      Effect.gen(function*() {
        const binder = yield* Peer.make({ incomingCapacity: 2 })
        const bound = yield* binder.bind(yield* transport.address)
        const connector = yield* Peer.make({ reconnect: fastReconnect })
        yield* connector.connect(bound)
        const opened = yield* Effect.forEach([0, 1, 2], (i) =>
          Effect.gen(function*() {
            const channel = yield* connector.open("Queued.Call", { headers: { n: `${i}` } })
            yield* channel.send(bytes(`q${i}`))
            return channel
          }))
        // The third is refused at once with an error the opener sees.
        const refused = yield* inputFailure(opened[2]!).pipe(within("refused", "10 seconds"))
        assert.strictEqual(describeError(refused), "RemoteFailure:duplex: peer is not accepting channels")
        const accepted = yield* Stream.runCollect(Stream.take(binder.incoming, 2)).pipe(
          within("incoming", "10 seconds")
        )
        assert.deepStrictEqual(accepted.map((c) => [c.method, c.headers["n"], c.direction, c.remoteId]), [
          ["Queued.Call", "0", "incoming", connector.id],
          ["Queued.Call", "1", "incoming", connector.id]
        ])
        for (const [i, channel] of accepted.entries()) {
          const first = yield* Stream.runHead(channel.input).pipe(within("first message", "10 seconds"))
          assert.strictEqual(first._tag === "Some" ? text(first.value) : "", `q${i}`)
          yield* channel.sendLast(bytes(`reply${i}`))
          yield* opened[i]!.end
          assert.deepStrictEqual(yield* collect(opened[i]!).pipe(within("reply", "10 seconds")), [`reply${i}`])
          yield* channel.done.pipe(within("accepted channel done", "10 seconds"))
        }
      }),
    30_000
  )

  it.live(
    "an open for a given remote waits until that remote is connected, even if others are",
    () =>
      Effect.gen(function*() {
        const logs = [yield* Queue.unbounded<Seen>(), yield* Queue.unbounded<Seen>()]
        const binders = yield* Effect.forEach(logs, (log) =>
          Effect.gen(function*() {
            const binder = yield* Peer.make()
            yield* binder.serve(handler(log))
            const bound = yield* binder.bind(yield* transport.address)
            return { binder, bound }
          }))
        const connector = yield* Peer.make({ reconnect: fastReconnect })
        const targeted = yield* Effect.forkChild(
          call(connector, "Echo.Each", ["for the second"], { remote: binders[1]!.binder.id }),
          { startImmediately: true }
        )
        yield* connector.connect(binders[0]!.bound)
        yield* connector.awaitRemotes(1).pipe(within("first remote", "10 seconds"))
        assert.strictEqual(yield* connector.pendingOpens, 1)
        // Untargeted opens go to the connected remote meanwhile.
        assert.deepStrictEqual(yield* call(connector, "Echo.Each", ["any"]), ["any"])
        yield* connector.connect(binders[1]!.bound)
        assert.deepStrictEqual(yield* Fiber.join(targeted).pipe(within("targeted open", "10 seconds")), [
          "for the second"
        ])
        assert.strictEqual((yield* nextSeen(logs[0]!)).note, "any")
        const seen = yield* nextSeen(logs[1]!)
        assert.strictEqual(seen.note, "for the second")
        assert.strictEqual(seen.remoteId, connector.id)
      }),
    30_000
  )

  it.live("Channel.sendAll streams out and ends; a failing stream becomes RemoteFailure", () =>
    Effect.gen(function*() {
      const { binderLog, connector } = yield* connectedPair(yield* transport.address)
      yield* Effect.scoped(Effect.gen(function*() {
        const channel = yield* connector.open("Report")
        yield* Channel.sendAll(channel, Stream.make(bytes("a"), bytes("b"), bytes("c")))
        assert.deepStrictEqual(yield* collect(channel).pipe(within("end", "10 seconds")), [])
      }))
      assert.strictEqual((yield* nextSeen(binderLog)).note, "ok:a,b,c")
      yield* Effect.scoped(Effect.gen(function*() {
        const channel = yield* connector.open("Report")
        yield* Channel.sendAll(channel, Stream.concat(Stream.make(bytes("a")), Stream.fail("stream broke")))
        assert.deepStrictEqual(yield* collect(channel).pipe(within("end", "10 seconds")), [])
      }))
      assert.strictEqual((yield* nextSeen(binderLog)).note, "err:RemoteFailure:stream broke")
    }), 30_000)

  it.live("a peer connected to itself serves its own calls over both connections", () =>
    Effect.gen(function*() {
      const log = yield* Queue.unbounded<Seen>()
      const peer = yield* Peer.make({ reconnect: fastReconnect })
      yield* peer.serve(handler(log))
      const bound = yield* peer.bind(yield* transport.address)
      yield* peer.connect(bound)
      yield* peer.awaitRemotes(2).pipe(within("both ends registered", "10 seconds"))
      assert.deepStrictEqual((yield* peer.remotes).map((r) => [r.id, r.direction]).sort(), [
        [peer.id, "incoming"],
        [peer.id, "outgoing"]
      ])
      const replies = yield* Effect.forEach([0, 1, 2, 3], (i) => call(peer, "Echo.Each", [`self${i}`])).pipe(
        within("self calls", "10 seconds")
      )
      assert.deepStrictEqual(replies, [["self0"], ["self1"], ["self2"], ["self3"]])
      const seen = yield* Effect.forEach([0, 1, 2, 3], () => nextSeen(log))
      // Round-robin over the two connections: both parities were used.
      assert.deepStrictEqual([...new Set(seen.map((s) => s.id % 2))].sort(), [0, 1])
    }), 30_000)

  // -------------------------------------------------------------------------------------------
  // Connection loss inside one process
  // -------------------------------------------------------------------------------------------

  it.live(
    "a remote peer closing fails the open channels with ConnectionLost; the connector redials",
    () =>
      Effect.gen(function*() {
        const address = yield* transport.address
        const first = yield* inScope(Effect.gen(function*() {
          const binder = yield* Peer.make()
          yield* binder.serve(handler(yield* Queue.unbounded<Seen>()))
          return yield* binder.bind(address)
        }))
        const bound = first.value
        const connector = yield* Peer.make({ reconnect: fastReconnect })
        yield* connector.connect(bound)
        const channel = yield* connector.open("Echo.Each")
        yield* channel.send(bytes("one"))
        const reply = yield* Stream.runHead(channel.input).pipe(within("first echo", "10 seconds"))
        assert.strictEqual(reply._tag === "Some" ? text(reply.value) : "", "one")
        yield* first.close
        const error = yield* inputFailure(channel).pipe(within("ConnectionLost", "10 seconds"))
        assert.strictEqual(error.reason._tag, "ConnectionLost")
        yield* channel.done.pipe(within("done after loss", "1 second"))
        // Sending on a lost channel fails.
        const sendError = yield* Effect.flip(channel.send(bytes("two")))
        assert.strictEqual(sendError.reason._tag, "ConnectionLost")
        // A new binder on the same address: the connector redials by itself.
        const log = yield* Queue.unbounded<Seen>()
        const again = yield* Peer.make()
        yield* again.serve(handler(log))
        yield* again.bind(bound)
        assert.deepStrictEqual(
          yield* call(connector, "Echo.Each", ["again"]).pipe(within("after redial", "10 seconds")),
          [
            "again"
          ]
        )
      }),
    30_000
  )

  // -------------------------------------------------------------------------------------------
  // 8. Scope close leaves nothing
  // -------------------------------------------------------------------------------------------

  it.live(
    "closing the peers' scope frees the address (socket file removed, port bindable)",
    () =>
      Effect.gen(function*() {
        const address = yield* transport.address
        const run = yield* inScope(Effect.gen(function*() {
          const pair = yield* connectedPair(address)
          assert.deepStrictEqual(yield* call(pair.connector, "Echo.Each", ["x"]), ["x"])
          assert.deepStrictEqual(yield* call(pair.binder, "Echo.Each", ["y"], { remote: pair.connector.id }), ["y"])
          // A channel left open when the scope closes.
          const open = yield* pair.connector.open("Echo.Each")
          yield* open.send(bytes("pending"))
          return pair.bound
        }))
        const bound = run.value
        const path = unixPath(bound)
        if (path !== undefined) assert.isTrue(Fs.existsSync(path))
        yield* run.close.pipe(within("scope close", "10 seconds"))
        if (path !== undefined) assert.isFalse(Fs.existsSync(path), "socket file removed")
        // The same address can be bound again at once, and it works.
        const pair = yield* connectedPair(bound)
        assert.strictEqual(pair.bound, bound)
        if (transport.name === "tcp") assert.notStrictEqual(tcpPort(bound), 0)
        assert.deepStrictEqual(yield* call(pair.connector, "Echo.Each", ["again"]), ["again"])
      }),
    30_000
  )

  it.live("bind errors: address in use, and a path that is not a socket", () =>
    Effect.gen(function*() {
      const pair = yield* connectedPair(yield* transport.address)
      const other = yield* Peer.make()
      const inUse = yield* Effect.flip(other.bind(pair.bound))
      assert.strictEqual(inUse._tag, "BindError")
      // The failed bind did not disturb the live listener.
      const path = unixPath(pair.bound)
      if (path !== undefined) assert.isTrue(Fs.existsSync(path))
      const late = yield* Peer.make({ reconnect: fastReconnect })
      yield* late.connect(pair.bound)
      assert.deepStrictEqual(yield* call(late, "Echo.Each", ["still"]).pipe(within("live listener", "10 seconds")), [
        "still"
      ])
      if (transport.name === "unix") {
        const dir = yield* tempDir
        const file = Path.join(dir, "regular-file")
        Fs.writeFileSync(file, "x")
        const notSocket = yield* Effect.flip(other.bind("unix://" + file))
        assert.strictEqual(notSocket._tag, "BindError")
        assert.strictEqual(Fs.readFileSync(file, "utf8"), "x", "the file is left alone")
      }
      const badAddress = yield* Effect.flip(other.bind("ws://127.0.0.1:1"))
      assert.strictEqual(badAddress._tag, "AddressError")
      const badConnect = yield* Effect.flip(other.connect("tcp://[::1"))
      assert.strictEqual(badConnect._tag, "AddressError")
    }), 30_000)
})

describe("Peer (Unix specifics)", () => {
  // BUG: a Unix bind that fails *after* the path check (here: the directory does not exist yet)
  // leaves its "unlink the socket file" finalizer in the peer's scope. When that peer closes later,
  // it deletes whatever socket file is at that path by then, e.g. another peer's live listener.
  it.live(
    "a failed bind does not remove the socket file of a later, successful bind",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const sub = Path.join(dir, "later")
        const address = "unix://" + Path.join(sub, "peer.sock")
        const failed = yield* inScope(Effect.gen(function*() {
          const peer = yield* Peer.make()
          const error = yield* Effect.flip(peer.bind(address))
          assert.strictEqual(error._tag, "BindError")
        }))
        Fs.mkdirSync(sub)
        const binder = yield* Peer.make()
        yield* binder.serve(handler(yield* Queue.unbounded<Seen>()))
        yield* binder.bind(address)
        yield* failed.close
        assert.isTrue(Fs.existsSync(Path.join(sub, "peer.sock")), "the live listener's socket file is still there")
      }),
    30_000
  )

  it.live("a stale socket file (nobody listening) does not block the bind", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const path = Path.join(dir, "stale.sock")
      // Make a stale socket file (as a crashed process leaves it): listen, move the socket file
      // aside so closing the listener cannot unlink it, close, and move the file back.
      yield* Effect.callback<void>((resume) => {
        const server = Net.createServer()
        server.listen(path, () => {
          Fs.renameSync(path, path + ".keep")
          server.close(() => {
            Fs.renameSync(path + ".keep", path)
            resume(Effect.void)
          })
        })
      })
      assert.isTrue(Fs.lstatSync(path).isSocket())
      const pair = yield* connectedPair("unix://" + path)
      assert.deepStrictEqual(yield* call(pair.connector, "Echo.Each", ["fresh"]), ["fresh"])
    }), 30_000)
})

describe("Peer lifecycle", () => {
  it.live("Peer.layer provides a peer that closes with the layer", () =>
    Effect.gen(function*() {
      const peer = yield* Peer.Peer
      assert.match(peer.id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
      assert.strictEqual(yield* peer.pendingOpens, 0)
      assert.deepStrictEqual(yield* peer.remotes, [])
    }).pipe(Effect.provide(Peer.layer())), 10_000)

  // BUG: `incoming` (a Queue) and `events` (a PubSub) are not shut down when the peer's scope
  // closes, so a consumer running outside that scope waits forever instead of seeing the end.
  it.live("incoming and events end when the peer's scope closes", () =>
    Effect.gen(function*() {
      const client = yield* inScope(Peer.make())
      const incoming = yield* Effect.forkChild(Stream.runDrain(client.value.incoming), { startImmediately: true })
      const events = yield* Effect.forkChild(Stream.runDrain(client.value.events), { startImmediately: true })
      yield* client.close
      const ended = yield* Effect.all([Fiber.await(incoming), Fiber.await(events)]).pipe(
        Effect.timeoutOption("2 seconds")
      )
      yield* Fiber.interrupt(incoming)
      yield* Fiber.interrupt(events)
      assert.isTrue(ended._tag === "Some", "both streams ended")
    }), 10_000)

  // BUG: a custom `id` is used as given: with an uppercase UUID, `peer.id` differs from the
  // (lowercased) id its remotes see, so `open(m, { remote: peer.id })` never finds the connection.
  it.live(
    "a custom uppercase id is normalised, so remotes can address the peer by peer.id",
    () =>
      Effect.gen(function*() {
        const binder = yield* Peer.make()
        const bound = yield* binder.bind("tcp://127.0.0.1:0")
        const connector = yield* Peer.make({ id: "5C99675B-A2DA-42F4-8BB2-7D365C2F5723", reconnect: fastReconnect })
        yield* connector.serve(handler(yield* Queue.unbounded<Seen>()))
        yield* connector.connect(bound)
        yield* binder.awaitRemotes(1).pipe(within("connected", "10 seconds"))
        assert.deepStrictEqual((yield* binder.remotes).map((r) => r.id), [connector.id])
        assert.deepStrictEqual(
          yield* call(binder, "Echo.Each", ["x"], { remote: connector.id }).pipe(
            within("open by peer.id", "2 seconds")
          ),
          ["x"]
        )
      }),
    10_000
  )
})
