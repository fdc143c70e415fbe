/**
 * Client-side middleware wraps outgoing calls as server middleware wraps incoming ones: it can add
 * request headers, observe outcomes, and reject a call before it is sent (as a typed
 * `RpcClientError` reason `Rejected`).
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Metric, Schema, Stream } from "effect"
import * as Middleware from "../src/Middleware.ts"
import * as Peer from "../src/Peer.ts"
import * as Rpc from "../src/Rpc.ts"
import * as RpcClient from "../src/RpcClient.ts"
import { Rejected, RpcClientError } from "../src/RpcError.ts"
import * as RpcGroup from "../src/RpcGroup.ts"
import * as RpcServer from "../src/RpcServer.ts"
import { within } from "./utils/helpers.ts"

const Svc = RpcGroup.make(
  Rpc.unary("Echo", { success: Schema.String }),
  Rpc.serverStream("Numbers", { success: Schema.Int })
).prefix("Svc.")

const setup = Effect.gen(function*() {
  const calls = { n: 0 }
  const server = yield* Peer.make()
  yield* RpcServer.serve(server, Svc, {
    Echo: (_, call) =>
      Effect.sync(() => {
        calls.n++
        return call.headers["x-token"] ?? "none"
      }),
    Numbers: (_, call) => Stream.make(Number(call.headers["x-count"] ?? "0"))
  })
  const address = yield* server.bind("tcp://127.0.0.1:0")
  const client = yield* Peer.make()
  yield* client.connect(address)
  return { client, calls }
})

describe("client middleware", () => {
  it.live("adds request headers to unary and streaming calls, in list order", () =>
    Effect.gen(function*() {
      const { client } = yield* setup
      const order: Array<string> = []
      const tag = (name: string): Middleware.Middleware => (call, next) =>
        Effect.suspend(() => {
          order.push(`${name} ${call.method}`)
          call.setHeader("x-token", name)
          call.setHeader("x-count", "3")
          return next
        })
      const svc = yield* RpcClient.makeWith(client, Svc, { middleware: [tag("first"), tag("second")] })
      // the later middleware's header wins: it runs closer to the call
      assert.strictEqual(yield* svc.Echo(undefined).pipe(within("Echo", "10 seconds")), "second")
      assert.deepStrictEqual(yield* Stream.runCollect(svc.Numbers(undefined)).pipe(within("Numbers", "10 seconds")), [
        3
      ])
      assert.deepStrictEqual(order, ["first Svc.Echo", "second Svc.Echo", "first Svc.Numbers", "second Svc.Numbers"])
    }))

  it.live("a rejection fails the call locally, typed, without sending it", () =>
    Effect.gen(function*() {
      const { client, calls } = yield* setup
      const refuse: Middleware.Middleware = () => Effect.fail(new Rejected({ kind: "local", text: "not now" }))
      const svc = yield* RpcClient.makeWith(client, Svc, { middleware: [refuse] })
      const error = yield* Effect.flip(svc.Echo(undefined)).pipe(within("Echo", "10 seconds"))
      assert.instanceOf(error, RpcClientError)
      assert.strictEqual(error.reason._tag, "Rejected")
      const streamError = yield* Effect.flip(Stream.runCollect(svc.Numbers(undefined))).pipe(
        within("Numbers", "10 seconds")
      )
      assert.instanceOf(streamError, RpcClientError)
      assert.strictEqual(calls.n, 0)
    }))
})

describe("peer metrics", () => {
  it.live("observePeer samples open channels, connections and edge-queue depth", () =>
    Effect.gen(function*() {
      const server = yield* Peer.make()
      const held = yield* Deferred.make<void>()
      yield* server.serve(() => Deferred.await(held))
      const address = yield* server.bind("tcp://127.0.0.1:0")
      const client = yield* Peer.make()
      // two opens before any connection: the edge queue holds them
      yield* Effect.forkChild(client.withChannel("Hold.One", () => Deferred.await(held)), { startImmediately: true })
      yield* Effect.forkChild(client.withChannel("Hold.Two", () => Deferred.await(held)), { startImmediately: true })
      const gauges = yield* Middleware.observePeer(client, { prefix: "test_client", interval: "1 hour" })
      assert.strictEqual((yield* Metric.value(gauges.queueDepth)).value, 2)
      assert.strictEqual((yield* Metric.value(gauges.connections)).value, 0)
      yield* client.connect(address)
      yield* client.awaitRemotes(1).pipe(within("connected", "10 seconds"))
      const again = yield* Middleware.observePeer(client, { prefix: "test_client2", interval: "1 hour" })
      assert.strictEqual((yield* Metric.value(again.queueDepth)).value, 0)
      assert.strictEqual((yield* Metric.value(again.connections)).value, 1)
      assert.strictEqual((yield* Metric.value(again.openChannels)).value, 2)
      yield* Deferred.succeed(held, undefined)
    }))
})
