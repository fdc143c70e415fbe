/**
 * Transport's own listener (a plain `net.Server`) and its sockets: a handler's socket closes when
 * the handler ends, closing the listener interrupts the handlers still running and closes their
 * sockets, the `effect/socket` reader and writer of an accepted socket still work (the wrapper is
 * made on first use), and bind failures are typed. Also: keepalive probes of several peers share
 * one timer, which must follow the shortest interval among them.
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, Scope } from "effect"
import * as Fs from "node:fs"
import * as Address from "../src/Address.ts"
import * as Peer from "../src/Peer.ts"
import { FrameType } from "../src/Protocol.ts"
import * as Transport from "../src/Transport.ts"
import { unixPath } from "./utils/helpers.ts"
import { RawClosed, rawConnect, transports, within } from "./utils/rpc.ts"
import { relay } from "./utils/wire.ts"

const parse = (text: string): Address.Address => {
  const address = Address.fromInput(text)
  if (address._tag === "Failure") throw new Error(`bad test address ${text}`)
  return address.success
}

/** Listens in a fresh scope; returns the bound address text and that scope. */
const listenIn = (address: string, handler: Parameters<typeof Transport.listen<Scope.Scope>>[1]) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const bound = yield* Transport.listen(parse(address), handler).pipe(Scope.provide(scope))
    return { address: Address.format(bound), scope }
  })

describe.each(transports)("Transport.listen over $name", (transport) => {
  it.live("a socket is closed when its handler ends", () =>
    Effect.gen(function*() {
      const { address, scope } = yield* listenIn(yield* transport.address, () => Effect.void)
      const client = yield* rawConnect(address)
      const outcome = yield* client.waitUntil(() => false).pipe(Effect.flip, within("the server closes the socket"))
      assert.instanceOf(outcome, RawClosed)
      yield* Scope.close(scope, Exit.void).pipe(within("the listener closes"))
    }))

  it.live("closing the listener interrupts running handlers and closes their sockets", () =>
    Effect.gen(function*() {
      const started = yield* Deferred.make<void>()
      const interrupted = yield* Deferred.make<void>()
      const { address, scope } = yield* listenIn(
        yield* transport.address,
        () =>
          Deferred.succeed(started, undefined).pipe(
            Effect.andThen(Effect.never),
            Effect.onInterrupt(() => Deferred.succeed(interrupted, undefined))
          )
      )
      const client = yield* rawConnect(address)
      yield* Deferred.await(started).pipe(within("the handler runs"))
      const closed = yield* Effect.forkChild(client.waitUntil(() => false).pipe(Effect.flip))
      yield* Scope.close(scope, Exit.void).pipe(within("the listener closes"))
      yield* Deferred.await(interrupted).pipe(within("the handler is interrupted"))
      assert.instanceOf(yield* Fiber.join(closed).pipe(within("the client sees the close")), RawClosed)
      const path = unixPath(address)
      if (path !== undefined) assert.isFalse(Fs.existsSync(path), "the socket file is removed")
    }))

  it.live("an accepted socket's effect/socket reader and writer work (an echo)", () =>
    Effect.gen(function*() {
      const { address, scope } = yield* listenIn(
        yield* transport.address,
        (socket) =>
          Effect.gen(function*() {
            const reader = yield* socket.reader
            const writer = yield* socket.writer
            const chunks = yield* reader.pull
            for (const chunk of chunks) yield* writer.write(chunk)
            // the reply must leave before the handler ends (and its socket is closed)
            return yield* Effect.never
          }).pipe(Effect.orDie, Effect.scoped)
      )
      const client = yield* rawConnect(address)
      yield* client.write(new TextEncoder().encode("ping"))
      const echoed = yield* client.waitUntil((received) => received.length >= 4).pipe(within("the echo"))
      assert.strictEqual(echoed.toString(), "ping")
      yield* Scope.close(scope, Exit.void).pipe(within("the listener closes"))
    }))
})

describe("Transport.listen while closing", () => {
  it.live("a socket arriving while the handlers are being interrupted is closed at once, without a handler", () =>
    Effect.gen(function*() {
      let handlers = 0
      const finalizing = yield* Deferred.make<void>()
      const release = yield* Deferred.make<void>()
      const { address, scope } = yield* listenIn(
        "tcp://127.0.0.1:0",
        () =>
          Effect.gen(function*() {
            handlers++
            // a slow goodbye: the listener's close waits here
            yield* Effect.addFinalizer(() =>
              Deferred.succeed(finalizing, undefined).pipe(Effect.andThen(Deferred.await(release)))
            )
            return yield* Effect.never
          })
      )
      const first = yield* rawConnect(address)
      yield* first.write(new Uint8Array([1]))
      const closing = yield* Effect.forkChild(Scope.close(scope, Exit.void))
      yield* Deferred.await(finalizing).pipe(within("the close has started"))
      // the server still accepts (it stops once the handlers are done), but runs nothing for it
      const late = yield* rawConnect(address)
      assert.instanceOf(
        yield* late.waitUntil(() => false).pipe(Effect.flip, within("the late socket is closed")),
        RawClosed
      )
      assert.strictEqual(handlers, 1)
      yield* Deferred.succeed(release, undefined)
      yield* Fiber.join(closing).pipe(within("the listener closes"))
    }))
})

describe("Transport.listen errors", () => {
  it.live("a TCP port in use is a typed BindError", () =>
    Effect.gen(function*() {
      const first = yield* Transport.listen(Address.tcp("127.0.0.1", 0), () => Effect.void)
      const error = yield* Transport.listen(first, () => Effect.void).pipe(Effect.flip)
      assert.strictEqual(error._tag, "BindError")
      assert.match(error.detail, /EADDRINUSE/)
    }))
})

describe("keepalive probes share one timer", () => {
  it.live("a peer with a short interval is probed on time beside one with a long interval", () =>
    Effect.gen(function*() {
      // the long interval alone would let the shared timer tick once a second
      const binder = yield* Peer.make({ keepalive: { interval: "1 hour", timeout: "1 hour" } })
      const bound = yield* binder.bind("tcp://127.0.0.1:0")
      const link = yield* relay(bound) // counts the frames each way
      // an endless timeout: the next ping follows the answer after the interval (not the timeout)
      const connector = yield* Peer.make({ keepalive: { interval: "20 millis", timeout: "Infinity" } })
      yield* connector.connect(link.address)
      yield* connector.awaitRemotes(1).pipe(within("connected"))
      // 20 ms apart: at one check a second, five pings would take five seconds
      yield* link.until(() => link.count("c2s", FrameType.Ping) >= 5 && link.count("s2c", FrameType.Pong) >= 5).pipe(
        within("five answered pings", "3 seconds")
      )
      assert.strictEqual(link.count("s2c", FrameType.Ping), 0, "the binder's hour has not passed")
    }))
})
