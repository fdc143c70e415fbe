/**
 * Faults across process boundaries: the binder runs in a child process (test/fixtures/binder.ts)
 * and is SIGKILLed mid-stream, then restarted on the same address; and a process running two peers
 * must exit on its own once their scope has closed (test/fixtures/scope-exit.ts).
 */
import { assert, describe, it } from "@effect/vitest"
import { Cause, Effect, Exit, Fiber, Option, Queue, Stream } from "effect"
import * as Fs from "node:fs"
import type * as Channel from "../src/Channel.ts"
import * as Greeting from "../src/Greeting.ts"
import * as Peer from "../src/Peer.ts"
import { GREETING_LENGTH } from "../src/Protocol.ts"
import { spawnFixture } from "./utils/child.ts"
import { bytes, text, transports, unixPath, within } from "./utils/helpers.ts"
import { call, fastReconnect } from "./utils/peers.ts"
import { listenRaw } from "./utils/raw.ts"

/** Starts the binder fixture on `address`; returns the child and the address it bound. */
const startBinder = (address: string) =>
  Effect.gen(function*() {
    const child = yield* spawnFixture("binder.ts", [address])
    const line = yield* child.nextLine.pipe(within(`binder child ready on ${address}`, "15 seconds"))
    const match = /^ready (.+)$/.exec(line)
    if (match === null) return yield* Effect.die(new Error(`unexpected line from binder: ${line}\n${child.stderr()}`))
    return { child, bound: match[1]! }
  })

/** A streaming channel whose input is pumped into a queue by a fiber; `result` is the input's exit. */
const streaming = (peer: Peer.Peer, name: string) =>
  Effect.gen(function*() {
    const channel = yield* peer.open("Echo.Stream")
    const received = yield* Queue.unbounded<string>()
    const reader = yield* Effect.forkChild(
      Stream.runForEach(channel.input, (message) => Queue.offer(received, text(message))),
      { startImmediately: true }
    )
    return { name, channel, received, reader }
  })

describe.each(transports)("Process faults over $name", (transport) => {
  it.live(
    "SIGKILL of the binder mid-stream: ConnectionLost, opens queue, restart on the same address flows them",
    () =>
      Effect.gen(function*() {
        const first = yield* startBinder(yield* transport.address)
        const connector = yield* Peer.make({ reconnect: fastReconnect })
        yield* connector.connect(first.bound)
        yield* connector.awaitRemotes(1).pipe(within("connected to the first child", "10 seconds"))

        // Streaming channels with traffic in flight: a pump per channel keeps sending (with the
        // runtime's backpressure) while the child echoes; kill once every channel has seen echoes.
        const streams = yield* Effect.forEach([0, 1, 2, 3, 4], (i) => streaming(connector, `s${i}`))
        const pumps = yield* Effect.forEach(streams, (s) =>
          Effect.forkChild(
            Effect.gen(function*() {
              for (let n = 0;; n++) {
                yield* s.channel.send(bytes(`${s.name}-${n}`))
                if (n % 16 === 15) yield* Effect.yieldNow
              }
            }),
            { startImmediately: true }
          ))
        for (const s of streams) {
          for (let n = 0; n < 10; n++) {
            const echo = yield* Queue.take(s.received).pipe(within(`${s.name} echo ${n}`, "10 seconds"))
            assert.strictEqual(echo, `${s.name}-${n}`)
          }
        }

        yield* first.child.kill("SIGKILL")
        assert.strictEqual(yield* first.child.exited.pipe(within("child exit", "10 seconds")), "SIGKILL")

        // Every open channel's input fails with ConnectionLost, and so do the senders.
        for (const s of streams) {
          const exit = yield* Fiber.await(s.reader).pipe(within(`${s.name} input fails`, "10 seconds"))
          assert.isTrue(Exit.isFailure(exit), `${s.name} input must fail`)
          const failure: Channel.ChannelError | undefined = Exit.isFailure(exit)
            ? Option.getOrUndefined(Cause.findErrorOption(exit.cause))
            : undefined
          assert.strictEqual(failure?._tag, "ChannelError")
          assert.strictEqual(failure?.reason._tag, "ConnectionLost", `${s.name}: ${String(failure)}`)
          yield* s.channel.done.pipe(within(`${s.name} done`, "1 second"))
        }
        for (const [i, pump] of pumps.entries()) {
          const exit = yield* Fiber.await(pump).pipe(within(`pump ${i} stops`, "10 seconds"))
          const failure = Exit.isFailure(exit) ? Option.getOrUndefined(Cause.findErrorOption(exit.cause)) : undefined
          assert.strictEqual(failure?.reason._tag, "ConnectionLost", `pump ${i}: ${String(exit)}`)
        }

        // Opens issued now wait in the edge queue (the connector keeps redialling meanwhile).
        const queued = yield* Effect.forEach([0, 1, 2], (i) =>
          Effect.forkChild(call(connector, "Echo.Stream", [`queued-${i}-a`, `queued-${i}-b`]), {
            startImmediately: true
          }))
        assert.strictEqual(yield* connector.pendingOpens, 3)

        // Restart on the same address (TCP: the port the first child printed; Unix: the same path,
        // whose stale socket file the SIGKILL left behind).
        const path = unixPath(first.bound)
        if (path !== undefined) {
          assert.isTrue(Fs.lstatSync(path).isSocket(), "stale socket file left by SIGKILL")
        }
        const second = yield* startBinder(first.bound)
        assert.strictEqual(second.bound, first.bound)

        // The connector reconnects by itself and the queued opens flow.
        const replies = yield* Effect.forEach(queued, Fiber.join).pipe(
          within("queued opens after restart", "15 seconds")
        )
        assert.deepStrictEqual(replies, [0, 1, 2].map((i) => [`queued-${i}-a`, `queued-${i}-b`]))
        assert.strictEqual(yield* connector.pendingOpens, 0)
        assert.deepStrictEqual(
          yield* call(connector, "Echo.Stream", ["fresh"]).pipe(within("fresh call", "10 seconds")),
          [
            "fresh"
          ]
        )
        const remotes = yield* connector.remotes
        assert.strictEqual(remotes.length, 1)
        assert.strictEqual(remotes[0]?.address, first.bound)
      }),
    45_000
  )

  it.live("a process running two peers exits by itself once their scope has closed", () =>
    Effect.gen(function*() {
      const address = yield* transport.address
      const child = yield* spawnFixture("scope-exit.ts", [address])
      const exchanged = yield* child.nextLine.pipe(within("channels exchanged in the child", "15 seconds"))
      const match = /^exchanged (.+)$/.exec(exchanged)
      assert.isNotNull(match, `${exchanged}\n${child.stderr()}`)
      assert.strictEqual(yield* child.nextLine.pipe(within("scope closed in the child", "10 seconds")), "closed")
      const code = yield* child.exited.pipe(
        within(`the child exits by itself (leaked handles?)\n${child.stderr()}`, "10 seconds")
      )
      assert.strictEqual(code, 0, child.stderr())
      const path = match === null ? undefined : unixPath(match[1]!)
      if (path !== undefined) assert.isFalse(Fs.existsSync(path), "socket file removed")
    }), 40_000)

  // BUG: a connection to a remote that stopped reading keeps the process alive after the peer's
  // scope closed: the connection's finalizer ends the socket gracefully (`end()` / `destroySoon()`),
  // which waits forever for the unread bytes to drain, so the socket handle is never released.
  // After the bounded last flush the socket should be destroyed.
  it.live(
    "a process whose remote stopped reading still exits once the peer's scope has closed",
    () =>
      Effect.gen(function*() {
        const server = yield* listenRaw(yield* transport.address)
        const child = yield* spawnFixture("stalled-remote.ts", [server.address])
        const { socket } = yield* server.nth(0).pipe(within("child dials", "15 seconds"))
        yield* socket.waitBytes(GREETING_LENGTH).pipe(within("child greeting", "10 seconds"))
        yield* socket.write(Greeting.encode(Greeting.makeId()))
        yield* socket.pause
        assert.strictEqual(yield* child.nextLine.pipe(within("child connected", "10 seconds")), "connected")
        assert.strictEqual(yield* child.nextLine.pipe(within("child scope closed", "10 seconds")), "closed")
        const code = yield* Effect.timeoutOption(child.exited, "3 seconds")
        assert.deepStrictEqual(code, Option.some(0), `the child exits by itself\n${child.stderr()}`)
      }),
    30_000
  )
})
