/**
 * Regressions of the direct socket path (Connection.start on Duplex's own sockets): code reached
 * synchronously from a read must not take the process down, and long or endless durations must
 * not turn into Node's 1 ms timer clamp.
 */
import { assert, describe, it } from "@effect/vitest"
import { Cause, Effect, Exit, Schema } from "effect"
import * as Peer from "../src/Peer.ts"
import { FrameType } from "../src/Protocol.ts"
import * as Rpc from "../src/Rpc.ts"
import * as RpcClient from "../src/RpcClient.ts"
import * as RpcGroup from "../src/RpcGroup.ts"
import * as RpcServer from "../src/RpcServer.ts"
import { connectedPair, transports, within } from "./utils/rpc.ts"
import { relay } from "./utils/wire.ts"

const Echo = RpcGroup.make(Rpc.unary("Say", { payload: Schema.String, success: Schema.String })).prefix("Echo.")

describe.each(transports)("direct socket path over $name", (transport) => {
  it.live("a response-headers callback that throws fails that call only (a defect); the connection lives on", () =>
    Effect.gen(function*() {
      const { connector } = yield* connectedPair(yield* transport.address, {
        binder: (peer) => RpcServer.serve(peer, Echo, { Say: (s) => Effect.succeed(s) })
      })
      const client = yield* RpcClient.makeWith(connector, Echo)
      const exit = yield* client.Say("hi", {
        onResponseHeaders: () => {
          throw new Error("bad header in user callback")
        }
      }).pipe(Effect.exit, within("the failing call"))
      assert.isTrue(Exit.isFailure(exit))
      if (Exit.isFailure(exit)) assert.match(Cause.pretty(exit.cause), /bad header in user callback/)
      assert.strictEqual(yield* client.Say("again").pipe(within("the next call")), "again")
    }))

  it.live("an endless keepalive timeout waits for answers for ever instead of dropping the connection", () =>
    Effect.gen(function*() {
      const keepalive = { interval: "20 millis", timeout: "Infinity" } as const
      const binder = yield* Peer.make({ keepalive })
      const bound = yield* binder.bind(yield* transport.address)
      const link = yield* relay(bound) // counts the frames each way
      const connector = yield* Peer.make({ keepalive })
      yield* connector.connect(link.address)
      yield* connector.awaitRemotes(1).pipe(within("connected"))
      const [connection] = yield* connector.connections
      if (connection === undefined) return assert.fail("no connection")
      // several PING rounds, answered: each would have dropped the connection 1 ms after it was sent
      yield* link.until(() => link.count("c2s", FrameType.Ping) >= 5 && link.count("s2c", FrameType.Pong) >= 5).pipe(
        within("five answered pings")
      )
      assert.isTrue(connection.isOpen)
      assert.deepStrictEqual(yield* connector.connections, [connection])
      assert.strictEqual(link.pairs().length, 1, "no redial")
    }))
})
