/**
 * `node examples/count.ts`: a server stream. `Arith.Count({ A: 5 })` streams C = 1..5; a second
 * call reads only 3 items of an endless count and the server's producer stops.
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
    Count: ({ A }) =>
      (A > 0 ? Stream.range(1, A) : Stream.iterate(1, (n) => n + 1)).pipe(
        Stream.map((C) => ({ C })),
        Stream.onExit((exit) => Effect.sync(() => console.log(`server: Count(${A}) producer ended (${exit._tag})`)))
      ),
    Sum: () => Effect.die("not used here")
  })
  const address = yield* server.bind("tcp://127.0.0.1:0")

  const client = yield* Peer.make()
  yield* client.connect(address)
  const arith = yield* RpcClient.makeWith(client, Arith)
  const five = yield* Stream.runCollect(arith.Count({ A: 5 }))
  console.log("Count(5):", five.map((r) => r.C).join(" "))
  const three = yield* Stream.runCollect(arith.Count({ A: 0 }).pipe(Stream.take(3)))
  console.log("first 3 of an endless count:", three.map((r) => r.C).join(" "))
}).pipe(Effect.scoped, Effect.timeout("10 seconds"))

Effect.runPromise(program).then(() => console.log("count done"), (e) => {
  console.error(e)
  process.exitCode = 1
})
