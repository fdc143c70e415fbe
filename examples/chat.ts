/**
 * `node examples/chat.ts`: bidi streams. Two clients join a chat room on a server peer; every line
 * either sends is broadcast to both (a PubSub on the server), and each client reads until it has
 * seen all four lines.
 */
import { Effect, Fiber, PubSub, Stream } from "effect"
import * as Peer from "../src/Peer.ts"
import * as RpcClient from "../src/RpcClient.ts"
import * as RpcServer from "../src/RpcServer.ts"
import { Chat } from "./contracts.ts"

const program = Effect.gen(function*() {
  // the room replays its history to late joiners, so everyone sees every line
  const room = yield* PubSub.unbounded<{ from: string; text: string }>({ replay: 16 })
  const server = yield* Peer.make()
  yield* RpcServer.serve(server, Chat, {
    Join: (lines, call) =>
      Stream.unwrap(Effect.gen(function*() {
        const subscription = yield* PubSub.subscribe(room)
        const who = call.headers["user"] ?? call.remoteId.slice(0, 8)
        yield* Effect.forkScoped(Stream.runForEach(lines, (text) => PubSub.publish(room, { from: who, text })))
        return Stream.fromSubscription(subscription)
      }))
  })
  const address = yield* server.bind("tcp://127.0.0.1:0")

  const join = (user: string, lines: ReadonlyArray<string>) =>
    Effect.gen(function*() {
      const peer = yield* Peer.make()
      yield* peer.connect(address)
      const chat = yield* RpcClient.makeWith(peer, Chat, { headers: { user } })
      // keep our input open (never-ending after our lines) while we read the room
      const input = Stream.concat(Stream.fromIterable(lines), Stream.never)
      const seen = yield* Stream.runCollect(chat.Join(input).pipe(Stream.take(4)))
      for (const line of seen) console.log(`${user} sees ${line.from}: ${line.text}`)
    })

  const ada = yield* Effect.forkChild(join("ada", ["hello", "how are you?"]))
  const bob = yield* Effect.forkChild(join("bob", ["hi ada", "fine, thanks"]))
  yield* Fiber.joinAll([ada, bob])
}).pipe(Effect.scoped, Effect.timeout("10 seconds"))

Effect.runPromise(program).then(() => console.log("chat done"), (e) => {
  console.error(e)
  process.exitCode = 1
})
