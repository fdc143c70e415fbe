/**
 * effect/rpc contracts over Duplex: an `RpcGroup` built with effect/rpc's `Rpc.make` (unary and
 * `stream: true`) is served with its own `toLayer` handlers and called, unchanged, over real
 * sockets (TCP and Unix).
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Schema, Stream } from "effect"
import { Rpc, RpcGroup } from "effect/rpc"
import * as EffectRpc from "../src/EffectRpc.ts"
import * as Peer from "../src/Peer.ts"
import { RpcClientError } from "../src/RpcError.ts"
import { transports, within } from "./utils/helpers.ts"

class EchoError extends Schema.TaggedError<EchoError>()("EchoError", { reason: Schema.String }) {}

const Echo = Rpc.make("Echo", { payload: { text: Schema.String }, success: Schema.String, error: EchoError })
const Count = Rpc.make("Count", { payload: { n: Schema.Int }, success: Schema.Int, error: EchoError, stream: true })
const Boom = Rpc.make("Boom", { success: Schema.String })
class Api extends RpcGroup.make(Echo, Count, Boom) {}

const Handlers = Api.toLayer({
  Echo: ({ text }, { headers }) =>
    text === ""
      ? Effect.fail(new EchoError({ reason: "empty" }))
      : Effect.succeed(`${text.toUpperCase()}${headers["x-suffix"] ?? ""}`),
  Count: ({ n }) => n < 0 ? Stream.fail(new EchoError({ reason: "negative" })) : Stream.range(1, n),
  Boom: () => Effect.die(new Error("kaboom"))
})

describe.each(transports)("effect/rpc groups over $name", (transport) => {
  const setup = Effect.gen(function*() {
    const server = yield* Peer.Peer
    const address = yield* server.bind(yield* transport.address)
    const client = yield* Peer.make()
    yield* client.connect(address)
    return yield* EffectRpc.makeClient(client, Api, { headers: { "x-suffix": "!" } })
  })
  // the server lives for the whole test body
  const Server = EffectRpc.layer(Api).pipe(Layer.provide(Handlers), Layer.provideMerge(Peer.layer()))

  it.live("unary calls reach the toLayer handlers, with headers", () =>
    Effect.gen(function*() {
      const client = yield* setup
      assert.strictEqual(yield* client.Echo({ text: "hi" }).pipe(within("Echo", "10 seconds")), "HI!")
    }).pipe(Effect.provide(Server)))

  it.live("declared errors arrive typed", () =>
    Effect.gen(function*() {
      const client = yield* setup
      const error = yield* Effect.flip(client.Echo({ text: "" })).pipe(within("Echo error", "10 seconds"))
      assert.instanceOf(error, EchoError)
      assert.strictEqual(error._tag === "EchoError" ? error.reason : "", "empty")
    }).pipe(Effect.provide(Server)))

  it.live("stream: true procedures are server streams, with stream errors typed", () =>
    Effect.gen(function*() {
      const client = yield* setup
      assert.deepStrictEqual(
        yield* Stream.runCollect(client.Count({ n: 4 })).pipe(within("Count", "10 seconds")),
        [1, 2, 3, 4]
      )
      const error = yield* Effect.flip(Stream.runCollect(client.Count({ n: -1 }))).pipe(
        within("Count error", "10 seconds")
      )
      assert.instanceOf(error, EchoError)
    }).pipe(Effect.provide(Server)))

  it.live("defects are RemoteDefect", () =>
    Effect.gen(function*() {
      const client = yield* setup
      const error = yield* Effect.flip(client.Boom(undefined)).pipe(within("Boom", "10 seconds"))
      assert.instanceOf(error, RpcClientError)
      assert.strictEqual(error instanceof RpcClientError ? error.reason._tag : "", "RemoteDefect")
    }).pipe(Effect.provide(Server)))
})
