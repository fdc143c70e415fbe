/**
 * `node examples/arith.ts`: unary calls and a typed error. A server peer serves `Arith`; a client
 * peer calls Add and Div, and Div by zero fails with the typed `DivideByZero`.
 */
import { Effect, Stream } from "effect"
import * as Peer from "../src/Peer.ts"
import * as RpcClient from "../src/RpcClient.ts"
import * as RpcServer from "../src/RpcServer.ts"
import { Arith, DivideByZero } from "./contracts.ts"

const program = Effect.gen(function*() {
  const server = yield* Peer.make()
  yield* RpcServer.serve(server, Arith, {
    Add: ({ A, B }) => Effect.succeed({ C: A + B }),
    Div: ({ A, B }) =>
      B === 0 ? Effect.fail(new DivideByZero({ dividend: A })) : Effect.succeed({ C: Math.trunc(A / B) }),
    Count: () => Stream.die("not used here"),
    Sum: () => Effect.die("not used here")
  })
  const address = yield* server.bind("tcp://127.0.0.1:0")

  const client = yield* Peer.make()
  yield* client.connect(address)
  const arith = yield* RpcClient.makeWith(client, Arith)
  console.log("Add(7, 8) =", (yield* arith.Add({ A: 7, B: 8 })).C)
  console.log("Div(7, 2) =", (yield* arith.Div({ A: 7, B: 2 })).C)
  const error = yield* Effect.flip(arith.Div({ A: 7, B: 0 }))
  console.log(
    "Div(7, 0) failed:",
    error._tag,
    error instanceof DivideByZero ? `(${error.message}, dividend ${error.dividend})` : ""
  )
}).pipe(Effect.scoped, Effect.timeout("10 seconds"))

Effect.runPromise(program).then(() => console.log("arith done"), (e) => {
  console.error(e)
  process.exitCode = 1
})
