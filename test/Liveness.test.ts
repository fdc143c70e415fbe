/**
 * Liveness (capability `ping`, PING 3 / PONG 4): idle connections between Duplex peers are probed
 * and stay up; a remote process that is stopped (SIGSTOP) or a link that silently drops every
 * byte (a relay told to stop forwarding) is declared dead within about interval + timeout, its
 * channels fail with `ConnectionLost`, and the peer redials; a remote that did not announce `ping`
 * (an original peer, no HELLO) is never sent a PING.
 *
 * Run over TCP and Unix sockets. Waits are on events (frames counted by a relay, child stdout,
 * channel failures), each bounded; the only clock readings are the measured detection times.
 */
import { assert, describe, it } from "@effect/vitest"
import { Cause, Effect, Exit, Fiber, Option, Queue, Stream } from "effect"
import type * as Channel from "../src/Channel.ts"
import * as Headers from "../src/Headers.ts"
import * as Peer from "../src/Peer.ts"
import { FrameType } from "../src/Protocol.ts"
import { spawnFixture } from "./utils/child.ts"
import { bytes, text, transports, within } from "./utils/helpers.ts"
import { call, fastReconnect, handler, nextSeen, type Seen } from "./utils/peers.ts"
import { rawPeer, relay } from "./utils/wire.ts"

/** Starts test/fixtures/binder.ts (serves `Echo.Stream`) on `address`; the bound address. */
const startBinder = (address: string) =>
  Effect.gen(function*() {
    const child = yield* spawnFixture("binder.ts", [address])
    const line = yield* child.nextLine.pipe(within(`binder child ready on ${address}`, "15 seconds"))
    const match = /^ready (.+)$/.exec(line)
    if (match === null) return yield* Effect.die(new Error(`unexpected line from binder: ${line}\n${child.stderr()}`))
    return { child, bound: match[1]! }
  })

/** Every event of `peer` from now on, in a queue. */
const recordEvents = (peer: Peer.Peer) =>
  Effect.gen(function*() {
    const events = yield* Queue.unbounded<Peer.PeerEvent>()
    yield* Effect.forkChild(Stream.runForEach(peer.events, (e) => Queue.offer(events, e)), { startImmediately: true })
    return events
  })

const nextDisconnect = (events: Queue.Queue<Peer.PeerEvent>, label: string) =>
  Effect.gen(function*() {
    while (true) {
      const event = yield* Queue.take(events)
      if (event._tag === "Disconnected") return event
    }
  }).pipe(within(label, "10 seconds"))

/**
 * Opens `method`, sends `first`, waits for one reply, then keeps reading in a fiber; `failure`
 * resolves with the input's error and the time it failed.
 */
const openWatched = (peer: Peer.Peer, method: string, first: string) =>
  Effect.gen(function*() {
    const channel = yield* peer.open(method)
    yield* channel.send(bytes(first))
    const reply = yield* channel.take.pipe(within(`first reply on ${method}`, "10 seconds"))
    const reader = yield* Effect.forkChild(
      Effect.map(Stream.runDrain(channel.input), () => performance.now()).pipe(
        Effect.mapError((error) => ({ error, at: performance.now() }))
      ),
      { startImmediately: true }
    )
    const failure = Effect.gen(function*() {
      const exit = yield* Fiber.await(reader)
      const error: { readonly error: Channel.ChannelError; readonly at: number } | undefined = Exit.isFailure(exit)
        ? Option.getOrUndefined(Cause.findErrorOption(exit.cause))
        : undefined
      if (error === undefined) return yield* Effect.die(new Error(`input of ${method} did not fail: ${String(exit)}`))
      return error
    })
    return { channel, reply: text(reply), failure }
  })

const keepalive = { interval: "100 millis", timeout: "200 millis" } as const
const intervalMs = 100
const timeoutMs = 200
/** Timer lateness allowed on a loaded machine on top of interval + timeout. */
const slackMs = 1000

describe.each(transports)("Liveness over $name", (transport) => {
  it.live("idle Duplex peers probe each other and stay connected", () =>
    Effect.gen(function*() {
      const log = yield* Queue.unbounded<Seen>()
      const binder = yield* Peer.make({ keepalive })
      yield* binder.serve(handler(log))
      const bound = yield* binder.bind(yield* transport.address)
      const link = yield* relay(bound)
      const connector = yield* Peer.make({ keepalive, reconnect: fastReconnect })
      yield* connector.connect(link.address)
      yield* connector.awaitRemotes(1).pipe(within("connected", "10 seconds"))
      yield* binder.awaitRemotes(1).pipe(within("accepted", "10 seconds"))
      const events = yield* recordEvents(connector)
      const [connection] = yield* connector.connections
      if (connection === undefined) return assert.fail("no connection")
      const channel = yield* connector.open("Echo.Each")
      yield* channel.send(bytes("before"))
      assert.strictEqual(text(yield* channel.take.pipe(within("echo before", "10 seconds"))), "before")

      // Idle: wait for five PINGs each way, every one answered.
      const rounds = 5
      yield* link.until(() =>
        link.count("c2s", FrameType.Ping) >= rounds && link.count("s2c", FrameType.Ping) >= rounds &&
        link.count("s2c", FrameType.Pong) >= rounds && link.count("c2s", FrameType.Pong) >= rounds
      ).pipe(within("five PING/PONG rounds each way", "15 seconds"))

      assert.isTrue(connection.isOpen)
      assert.deepStrictEqual(yield* connector.connections, [connection])
      assert.strictEqual((yield* binder.remotes).length, 1)
      assert.strictEqual(yield* Queue.size(events), 0, "no connection change")
      assert.strictEqual(link.pairs().length, 1, "no redial")
      assert.isAtLeast(connection.stats.framesOut, rounds, "the connector's counters saw its PINGs and PONGs")
      assert.isAtLeast(connection.stats.framesIn, rounds)
      // the channel opened before the idle period still works
      yield* channel.send(bytes("after"))
      assert.strictEqual(text(yield* channel.take.pipe(within("echo after", "10 seconds"))), "after")
      yield* channel.end
    }), 30_000)

  for (const resume of ["SIGCONT", "restart"] as const) {
    it.live(
      `a stopped remote process (SIGSTOP) is declared dead; channels fail with ConnectionLost; after ${
        resume === "SIGCONT" ? "SIGCONT" : "SIGKILL and a new binder"
      } queued opens flow`,
      () =>
        Effect.gen(function*() {
          const first = yield* startBinder(yield* transport.address)
          // Never leave a stopped process behind (SIGKILL on scope close is in spawnFixture; a
          // stopped process also needs SIGCONT to handle anything else).
          yield* Effect.addFinalizer(() => first.child.kill("SIGCONT"))
          const connector = yield* Peer.make({ keepalive, reconnect: fastReconnect })
          yield* connector.connect(first.bound)
          yield* connector.awaitRemotes(1).pipe(within("connected to the child", "10 seconds"))
          const events = yield* recordEvents(connector)
          const watched = yield* openWatched(connector, "Echo.Stream", "hello")
          assert.strictEqual(watched.reply, "hello")

          const stoppedAt = performance.now()
          yield* first.child.kill("SIGSTOP")
          const { at, error } = yield* watched.failure.pipe(within("the channel fails", "10 seconds"))
          const elapsed = at - stoppedAt
          assert.strictEqual(error.reason._tag, "ConnectionLost", String(error))
          assert.include(error.message, "ping")
          assert.isAtMost(elapsed, intervalMs + timeoutMs + slackMs, `declared dead after ${elapsed} ms`)
          const gone = yield* nextDisconnect(events, "Disconnected")
          assert.include(gone.reason, "no answer to a ping")
          // sending on the lost channel fails typed too
          const sendError = yield* Effect.flip(watched.channel.send(bytes("late")))
          assert.strictEqual(sendError._tag, "ChannelError")

          // Opens issued now wait in the edge queue (no ready connection while the child is stopped).
          const queued = yield* Effect.forEach([0, 1, 2], (i) =>
            Effect.forkChild(call(connector, "Echo.Stream", [`queued-${i}`]), { startImmediately: true }))
          assert.strictEqual(yield* connector.pendingOpens, 3)

          if (resume === "SIGCONT") {
            yield* first.child.kill("SIGCONT")
          } else {
            yield* first.child.kill("SIGKILL")
            yield* first.child.exited.pipe(within("child exit", "10 seconds"))
            const second = yield* startBinder(first.bound)
            assert.strictEqual(second.bound, first.bound)
          }
          const replies = yield* Effect.forEach(queued, Fiber.join).pipe(within("queued opens flow", "20 seconds"))
          assert.deepStrictEqual(replies, [0, 1, 2].map((i) => [`queued-${i}`]))
          assert.strictEqual(yield* connector.pendingOpens, 0)
          assert.strictEqual((yield* connector.remotes).length, 1)
        }),
      40_000
    )
  }

  it.live(
    "a silently dropped link is declared dead on both sides within interval + timeout; channels fail typed; the peer reconnects",
    () =>
      Effect.gen(function*() {
        const binderLog = yield* Queue.unbounded<Seen>()
        const binder = yield* Peer.make({ keepalive })
        yield* binder.serve(handler(binderLog))
        const bound = yield* binder.bind(yield* transport.address)
        const link = yield* relay(bound)
        const connector = yield* Peer.make({ keepalive, reconnect: fastReconnect, greetingTimeout: "1 second" })
        yield* connector.connect(link.address)
        yield* connector.awaitRemotes(1).pipe(within("connected", "10 seconds"))
        yield* binder.awaitRemotes(1).pipe(within("accepted", "10 seconds"))
        const connectorEvents = yield* recordEvents(connector)
        const binderEvents = yield* recordEvents(binder)
        // `Abort.Wait` sends "ready", then records how its input failed.
        const watched = yield* openWatched(connector, "Abort.Wait", "go")
        assert.strictEqual(watched.reply, "ready")

        const cutAt = performance.now()
        yield* link.cut
        const { at, error } = yield* watched.failure.pipe(within("the connector's channel fails", "10 seconds"))
        const elapsed = at - cutAt
        assert.strictEqual(error.reason._tag, "ConnectionLost", String(error))
        assert.isAtMost(elapsed, intervalMs + timeoutMs + slackMs, `connector declared dead after ${elapsed} ms`)
        assert.include((yield* nextDisconnect(connectorEvents, "connector Disconnected")).reason, "ping")
        // The binder gets no close either (the relay carries none): its own probe finds out.
        const seen = yield* nextSeen(binderLog, "the binder's channel fails")
        assert.strictEqual(seen.note, "err:ConnectionLost:")
        assert.include((yield* nextDisconnect(binderEvents, "binder Disconnected")).reason, "ping")
        const binderElapsed = performance.now() - cutAt
        assert.isAtMost(binderElapsed, intervalMs + timeoutMs + slackMs, `binder declared dead after ${binderElapsed}`)

        // While the link is down, opens wait; once it is back, the connector redials and they flow.
        const queued = yield* Effect.forkChild(call(connector, "Echo.Each", ["queued"]), { startImmediately: true })
        assert.strictEqual(yield* connector.pendingOpens, 1)
        yield* link.restore
        assert.deepStrictEqual(yield* Fiber.join(queued).pipe(within("queued open flows", "15 seconds")), ["queued"])
        yield* binder.awaitRemotes(1).pipe(within("binder sees the new connection", "10 seconds"))
        assert.strictEqual((yield* connector.remotes).length, 1)
        assert.isAtLeast(link.pairs().length, 2, "a new connection through the relay")
      }),
    30_000
  )

  it.live(
    "a remote that did not announce ping (no HELLO, or a HELLO without it) is never sent a PING",
    () =>
      Effect.gen(function*() {
        const binder = yield* Peer.make({ keepalive: { interval: "50 millis", timeout: "100 millis" } })
        const bound = yield* binder.bind(yield* transport.address)
        const original = yield* rawPeer(bound)
        const noPing = yield* rawPeer(bound, { hello: Headers.make({ credit: "65536" }) })
        yield* binder.awaitRemotes(2).pipe(within("both raw remotes registered", "10 seconds"))
        // A Duplex-like remote connected after them, answering PINGs: once it has seen eight, the
        // others have been idle for at least eight rounds too.
        const pinged = yield* rawPeer(bound, { hello: Headers.make({ ping: "" }), answerPings: true })
        yield* pinged.until((t) => t.count(FrameType.Ping) >= 8).pipe(within("eight PINGs", "15 seconds"))

        for (const [name, raw] of [["original", original], ["no ping", noPing]] as const) {
          assert.strictEqual(raw.tap.count(FrameType.Ping), 0, `${name}: no PING`)
          assert.strictEqual(raw.tap.count(FrameType.Pong), 0, `${name}: no PONG`)
          assert.isFalse(raw.isClosed(), `${name}: not declared dead`)
        }
        assert.isFalse(pinged.isClosed())
        const ids = (yield* binder.remotes).map((r) => r.id)
        for (const raw of [original, noPing, pinged]) assert.include(ids, raw.id)
      }),
    30_000
  )

  it.live(
    "a remote that announced ping but never answers is dropped after interval + timeout",
    () =>
      Effect.gen(function*() {
        const binder = yield* Peer.make({ keepalive })
        const bound = yield* binder.bind(yield* transport.address)
        const events = yield* recordEvents(binder)
        const raw = yield* rawPeer(bound, { hello: Headers.make({ ping: "" }) })
        yield* raw.until((t) => t.count(FrameType.Hello) > 0).pipe(within("binder greeting", "10 seconds"))
        const greetedAt = performance.now()
        const ping = yield* raw.frame((f) => f.type === FrameType.Ping).pipe(within("a PING", "10 seconds"))
        assert.deepStrictEqual([ping.channel, ping.method, ping.error, ping.last], [0, "", "", false])
        yield* raw.closed.pipe(within("the binder drops the silent remote", "10 seconds"))
        const elapsed = performance.now() - greetedAt
        assert.isAtMost(elapsed, intervalMs + timeoutMs + slackMs, `dropped after ${elapsed} ms`)
        assert.isAtLeast(elapsed, timeoutMs, "not before the timeout")
        assert.include((yield* nextDisconnect(events, "Disconnected")).reason, "no answer to a ping")
      }),
    30_000
  )
})
