/**
 * The Duplex contender: `RpcServer.serve` with a group of Echo (unary), Count (server stream) and
 * Bulk (server stream of `Uint8Array`); the client is `RpcClient.makeWith`. Schema validation is
 * on for requests and replies on both sides (as in `bench/rpc.ts`).
 */
import { Effect, Schema, Stream } from "effect"
import * as Peer from "../../src/Peer.ts"
import * as Rpc from "../../src/Rpc.ts"
import * as RpcClient from "../../src/RpcClient.ts"
import * as RpcGroup from "../../src/RpcGroup.ts"
import * as RpcServer from "../../src/RpcServer.ts"
import { type Contender, HOST } from "./common.ts"
import { effectContender } from "./effect-client.ts"

const Item = Schema.Struct({ id: Schema.Int, name: Schema.String, n: Schema.Int })
const Bench = RpcGroup.make(
  Rpc.unary("Echo", { payload: Item, success: Item }),
  Rpc.serverStream("Count", { payload: { n: Schema.Int }, success: Schema.Struct({ i: Schema.Int }) }),
  Rpc.serverStream("Bulk", { payload: { bytes: Schema.Int, chunk: Schema.Int }, success: Schema.Uint8Array })
).prefix("Bench.")

type Client = RpcClient.Client<RpcGroup.Rpcs<typeof Bench>>

const server = (ready: (port: number) => void): void => {
  Effect.runFork(
    Effect.gen(function*() {
      const peer = yield* Peer.make()
      let chunk = new Uint8Array(0)
      yield* RpcServer.serve(peer, Bench, {
        Echo: (item) => Effect.succeed(item),
        Count: ({ n }) => Stream.range(0, n - 1).pipe(Stream.map((i) => ({ i }))),
        Bulk: ({ bytes, chunk: size }) => {
          if (chunk.length !== size) chunk = new Uint8Array(size).fill(7)
          return Stream.range(1, Math.ceil(bytes / size), 1).pipe(Stream.map(() => chunk))
        }
      })
      const address = yield* peer.bind(`tcp://${HOST}:0`)
      ready(Number(address.slice(address.lastIndexOf(":") + 1)))
      return yield* Effect.never
    }).pipe(Effect.scoped)
  )
}

/** A peer connected to the server (in the current scope) and a client on it. */
const connect = (port: number) =>
  Effect.gen(function*() {
    const peer = yield* Peer.make()
    yield* peer.connect(`tcp://${HOST}:${port}`)
    return yield* RpcClient.makeWith(peer, Bench)
  })

export const contender: Contender = effectContender<Client>(server, {
  connect,
  echo: (client, payload) => client.Echo(payload),
  count: (client, n) => client.Count({ n }),
  bulk: (client, bytes, chunk) => client.Bulk({ bytes, chunk })
})
