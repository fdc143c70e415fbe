/**
 * `peer.withChannel`: the scope-free `open` for request/response exchanges (TCP and Unix).
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Stream } from "effect"
import * as Peer from "../src/Peer.ts"
import { transports, within } from "./utils/helpers.ts"

const text = new TextEncoder()
const str = new TextDecoder()

describe.each(transports)("withChannel over $name", (transport) => {
  it.live("runs an exchange and leaves no channel behind", () =>
    Effect.gen(function*() {
      const server = yield* Peer.make()
      yield* server.serve((channel) => Effect.flatMap(channel.take, (m) => channel.sendLast(m)))
      const address = yield* server.bind(yield* transport.address)
      const client = yield* Peer.make()
      yield* client.connect(address)
      const reply = yield* client.withChannel(
        "Echo.Once",
        (channel) => Effect.andThen(channel.sendLast(text.encode("hi")), channel.take)
      ).pipe(within("exchange", "10 seconds"))
      assert.strictEqual(str.decode(reply), "hi")
      const [connection] = yield* client.connections
      assert.strictEqual(connection?.channels.size, 0)
    }))

  it.live("cancels the channel when the body ends early, and the remote sees it", () =>
    Effect.gen(function*() {
      const aborted = yield* Deferred.make<string>()
      const server = yield* Peer.make()
      yield* server.serve((channel) =>
        Stream.runDrain(channel.input).pipe(
          Effect.catch((e) => Deferred.succeed(aborted, e.reason._tag)),
          Effect.asVoid
        )
      )
      const address = yield* server.bind(yield* transport.address)
      const client = yield* Peer.make()
      yield* client.connect(address)
      const exit = yield* Effect.exit(
        client.withChannel("Stream.Forever", (channel) =>
          Effect.andThen(channel.send(text.encode("x")), Effect.fail("stop")))
      )
      assert.isTrue(Exit.isFailure(exit))
      assert.strictEqual(yield* Deferred.await(aborted).pipe(within("remote abort", "10 seconds")), "RemoteAborted")
    }))
})
