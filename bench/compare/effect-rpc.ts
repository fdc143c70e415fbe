/**
 * The effect/rpc contender (effect 4.1): `RpcServer.layerProtocolSocketServer` on
 * `NodeSocketServer`, `RpcClient.makeProtocolSocket` on `NodeSocket.makeNet`, serialization
 * `RpcSerialization.ndjson` (4.1 has no msgpack serialization; `Uint8Array` chunks travel as base64
 * strings). Tracing is disabled on both sides (Duplex does not trace by default).
 */
import { NodeSocket, NodeSocketServer } from "@effect/platform-node"
import { Effect, Layer, Schema, Stream } from "effect"
import { Rpc, RpcClient, type RpcClientError, RpcGroup, RpcSerialization, RpcServer } from "effect/rpc"
import { Socket, SocketServer } from "effect/socket"
import { type Contender, HOST } from "./common.ts"
import { effectContender } from "./effect-client.ts"

const Item = Schema.Struct({ id: Schema.Int, name: Schema.String, n: Schema.Int })
class Bench extends RpcGroup.make(
  Rpc.make("Echo", { payload: Item, success: Item }),
  Rpc.make("Count", { payload: { n: Schema.Int }, success: Schema.Struct({ i: Schema.Int }), stream: true }),
  Rpc.make("Bulk", { payload: { bytes: Schema.Int, chunk: Schema.Int }, success: Schema.Uint8Array, stream: true })
) {}

type Client = RpcClient.RpcClient<RpcGroup.Rpcs<typeof Bench>, RpcClientError.RpcClientError>

const serialization = RpcSerialization.ndjson

const server = (ready: (port: number) => void): void => {
  let chunk = new Uint8Array(0)
  const handlers = Bench.toLayer({
    Echo: (item) => Effect.succeed(item),
    Count: ({ n }) => Stream.range(0, n - 1).pipe(Stream.map((i) => ({ i }))),
    Bulk: ({ bytes, chunk: size }) => {
      if (chunk.length !== size) chunk = new Uint8Array(size).fill(7)
      return Stream.range(1, Math.ceil(bytes / size), 1).pipe(Stream.map(() => chunk))
    }
  })
  Effect.runFork(
    Effect.gen(function*() {
      const socketServer = yield* NodeSocketServer.make({ port: 0, host: HOST, noDelay: true })
      yield* Layer.build(
        RpcServer.layer(Bench, { disableTracing: true }).pipe(
          Layer.provide(handlers),
          Layer.provide(RpcServer.layerProtocolSocketServer),
          Layer.provide(Layer.succeed(RpcSerialization.RpcSerialization)(serialization)),
          Layer.provide(Layer.succeed(SocketServer.SocketServer)(socketServer))
        )
      )
      const address = socketServer.address
      if (address._tag === "UnixPathAddress") return yield* Effect.die(new Error("expected a TCP address"))
      ready(address.port)
      return yield* Effect.never
    }).pipe(Effect.scoped)
  )
}

/** A socket, protocol and client in the current scope. */
const connect = (port: number) =>
  Effect.gen(function*() {
    const socket = yield* NodeSocket.makeNet({ host: HOST, port, noDelay: true })
    const protocol = yield* RpcClient.makeProtocolSocket().pipe(
      Effect.provideService(Socket.Socket, socket),
      Effect.provideService(RpcSerialization.RpcSerialization, serialization)
    )
    return yield* RpcClient.make(Bench, { disableTracing: true }).pipe(
      Effect.provideService(RpcClient.Protocol, protocol)
    )
  })

export const contender: Contender = effectContender<Client>(server, {
  connect,
  echo: (client, payload) => client.Echo(payload),
  count: (client, n) => client.Count({ n }),
  bulk: (client, bytes, chunk) => client.Bulk({ bytes, chunk })
})
