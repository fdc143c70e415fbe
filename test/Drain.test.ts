/**
 * Graceful drain (GOAWAY): a server drained mid-load finishes what it has, gets no new calls,
 * and nothing hangs: every call either completes or fails with a typed error (TCP and Unix).
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, Queue, Schema } from "effect"
import * as Peer from "../src/Peer.ts"
import * as Rpc from "../src/Rpc.ts"
import * as RpcClient from "../src/RpcClient.ts"
import { RpcClientError } from "../src/RpcError.ts"
import * as RpcGroup from "../src/RpcGroup.ts"
import * as RpcServer from "../src/RpcServer.ts"
import { transports, within } from "./utils/helpers.ts"

const Work = RpcGroup.make(
  Rpc.unary("Do", { payload: { hold: Schema.Boolean }, success: Schema.String })
).prefix("Work.")

/** A server named `name`; calls with `hold` wait until `release` is done; each start is reported. */
const server = (
  name: string,
  address: string,
  release: Deferred.Deferred<void>,
  started: { n: number },
  starts: Queue.Queue<string>
) =>
  Effect.gen(function*() {
    const peer = yield* Peer.make()
    yield* RpcServer.serve(peer, Work, {
      Do: ({ hold }) =>
        Effect.gen(function*() {
          started.n++
          yield* Queue.offer(starts, name)
          if (hold) yield* Deferred.await(release)
          return name
        })
    })
    return { peer, address: yield* peer.bind(address) }
  })

/** Re-checks `condition` after each scheduler turn until it holds (bounded by the caller). */
const waitUntil = (condition: Effect.Effect<boolean>): Effect.Effect<void> =>
  Effect.flatMap(condition, (ok) => ok ? Effect.void : Effect.flatMap(Effect.yieldNow, () => waitUntil(condition)))

describe.each(transports)("graceful drain over $name", (transport) => {
  it.live("a server drained mid-load completes its calls in flight and new calls go elsewhere", () =>
    Effect.gen(function*() {
      const release = yield* Deferred.make<void>()
      const startedA = { n: 0 }
      const startedB = { n: 0 }
      const starts = yield* Queue.unbounded<string>()
      const a = yield* server("a", yield* transport.address, release, startedA, starts)
      const b = yield* server("b", yield* transport.address, release, startedB, starts)
      const client = yield* Peer.make()
      yield* client.connect(a.address)
      yield* client.connect(b.address)
      yield* client.awaitRemotes(2).pipe(within("connected", "10 seconds"))
      const work = yield* RpcClient.makeWith(client, Work)

      // 20 held calls, spread over both servers
      const held = yield* Effect.forkChild(
        Effect.all(Array.from({ length: 20 }, () => Effect.exit(work.Do({ hold: true }))), {
          concurrency: "unbounded"
        })
      )
      yield* Queue.takeN(starts, 20).pipe(within("all held calls started", "10 seconds"))
      assert.strictEqual(startedA.n, 10)

      // drain a with a long grace: its held calls may finish, it takes nothing new
      const drained = yield* Effect.forkChild(a.peer.drain({ grace: "10 seconds" }))
      // the GOAWAY frame is processed by the client's read loop: re-check after each scheduler turn
      yield* waitUntil(Effect.map(client.connections, (cs) => cs.some((c) => c.remoteGoingAway))).pipe(
        within("GOAWAY seen by the client", "10 seconds")
      )
      const after = yield* Effect.all(Array.from({ length: 10 }, () => work.Do({ hold: false }))).pipe(
        within("calls during the drain", "10 seconds")
      )
      assert.deepStrictEqual(after, Array.from({ length: 10 }, () => "b"), "new calls went to b only")
      assert.strictEqual(startedA.n, 10, "a started nothing new")

      yield* Deferred.succeed(release, undefined)
      const exits = yield* Fiber.join(held).pipe(within("held calls", "10 seconds"))
      for (const exit of exits) assert.isTrue(Exit.isSuccess(exit), "calls in flight completed")
      yield* Fiber.join(drained).pipe(within("drain", "10 seconds"))
      // a drained peer stops accepting: calls keep going to b
      assert.deepStrictEqual(yield* work.Do({ hold: false }).pipe(within("after drain", "10 seconds")), "b")
    }))

  it.live("calls still open when the grace period ends fail typed; none hangs", () =>
    Effect.gen(function*() {
      const never = yield* Deferred.make<void>()
      const started = { n: 0 }
      const starts = yield* Queue.unbounded<string>()
      const a = yield* server("a", yield* transport.address, never, started, starts)
      const client = yield* Peer.make()
      yield* client.connect(a.address)
      yield* client.awaitRemotes(1).pipe(within("connected", "10 seconds"))
      const work = yield* RpcClient.makeWith(client, Work)
      const held = yield* Effect.forkChild(
        Effect.all(Array.from({ length: 5 }, () => Effect.exit(work.Do({ hold: true }))), {
          concurrency: "unbounded"
        })
      )
      yield* Queue.takeN(starts, 5).pipe(within("held calls started", "10 seconds"))
      yield* a.peer.drain({ grace: "100 millis" }).pipe(within("drain", "10 seconds"))
      const exits = yield* Fiber.join(held).pipe(within("held calls end", "10 seconds"))
      for (const exit of exits) {
        assert.isTrue(Exit.isFailure(exit))
        if (Exit.isFailure(exit)) {
          const error = exit.cause.reasons.find((r) => r._tag === "Fail")
          assert.isTrue(error !== undefined && error._tag === "Fail" && error.error instanceof RpcClientError)
        }
      }
    }))
})
