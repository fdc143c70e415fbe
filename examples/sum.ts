/**
 * `node examples/sum.ts`: a client stream. The client streams numbers to `Arith.Sum` and gets one
 * total back, as the original's `StreamingArith.Sum`.
 */
import { Effect, Stream } from "effect"
import * as Peer from "../src/Peer.ts"
import * as RpcClient from "../src/RpcClient.ts"
import * as RpcServer from "../src/RpcServer.ts"
import { Arith } from "./contracts.ts"

const program = Effect.gen(function*() {
  const server = yield* Peer.make()
  yield* RpcServer.serve(server, Arith, {
    Add: ({ A, B }) => Effect.succeed({ C: A + B }),
    Div: ({ A, B }) => Effect.succeed({ C: Math.trunc(A / B) }),
    Count: () => Stream.empty,
    Sum: (inputs) => Stream.runFold(inputs, () => 0, (total, { A }) => total + A).pipe(Effect.map((C) => ({ C })))
  })
  const address = yield* server.bind("tcp://127.0.0.1:0")

  const client = yield* Peer.make()
  yield* client.connect(address)
  const arith = yield* RpcClient.makeWith(client, Arith)
  const inputs = [9, 3, 3, 6, 9]
  const { C } = yield* arith.Sum(Stream.fromIterable(inputs.map((A) => ({ A }))))
  console.log(`Sum(${inputs.join(", ")}) = ${C}`)
}).pipe(Effect.scoped, Effect.timeout("10 seconds"))

Effect.runPromise(program).then(() => console.log("sum done"), (e) => {
  console.error(e)
  process.exitCode = 1
})
