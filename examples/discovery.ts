/**
 * `node examples/discovery.ts`: a client that finds its servers through discovery.
 *
 * Three `Arith` servers; a client following `Discovery.fromList([...])` merged with a Queue of
 * later changes, with lazy dialling (the default): nothing is dialled until the first call. Calls
 * spread round-robin over the three; then one address is removed through the Queue, the client
 * drains and drops that connection, and calls go to the remaining two.
 */
import { Effect, Fiber, Queue, Stream } from "effect"
import * as Discovery from "../src/Discovery.ts"
import * as Headers from "../src/Headers.ts"
import * as Peer from "../src/Peer.ts"
import * as RpcClient from "../src/RpcClient.ts"
import type * as RpcGroup from "../src/RpcGroup.ts"
import * as RpcServer from "../src/RpcServer.ts"
import { Arith, DivideByZero } from "./contracts.ts"

/** An Arith server that names itself in a response header. */
const server = (name: string) =>
  Effect.gen(function*() {
    const peer = yield* Peer.make()
    yield* RpcServer.serve(peer, Arith, {
      Add: ({ A, B }, call) => Effect.sync(() => (call.setHeader("x-served-by", name), { C: A + B })),
      Div: ({ A, B }) =>
        B === 0 ? Effect.fail(new DivideByZero({ dividend: A })) : Effect.succeed({ C: Math.trunc(A / B) }),
      Count: ({ A }) => Stream.range(1, A).pipe(Stream.map((C) => ({ C }))),
      Sum: (inputs) => Effect.map(Stream.runFold(inputs, () => 0, (n, { A }) => n + A), (C) => ({ C }))
    })
    return { name, peer, address: yield* peer.bind("tcp://127.0.0.1:0") }
  })

type ArithClient = RpcClient.Client<RpcGroup.Rpcs<typeof Arith>>

/** One call; the name of the server that answered it. */
const servedBy = (arith: ArithClient) =>
  Effect.gen(function*() {
    let name = "?"
    yield* arith.Add({ A: 1, B: 2 }, {
      onResponseHeaders: (headers) => (name = Headers.get(headers, "x-served-by") ?? "?")
    })
    return name
  })

/** `n` calls; which server answered each, as `s1 ×2, s2 ×2, …` (by name). */
const spread = (arith: ArithClient, n: number) =>
  Effect.gen(function*() {
    const counts: Record<string, number> = {}
    for (let i = 0; i < n; i++) {
      const name = yield* servedBy(arith)
      counts[name] = (counts[name] ?? 0) + 1
    }
    return Object.keys(counts).sort().map((name) => `${name} ×${counts[name]}`).join(", ")
  })

const program = Effect.gen(function*() {
  const s1 = yield* server("s1")
  const s2 = yield* server("s2")
  const s3 = yield* server("s3")
  const servers = [s1, s2, s3]
  const addresses = servers.map((s) => s.address)
  const clientsSeen = Effect.forEach(servers, (s) => Effect.map(s.peer.remotes, (r) => r.length))

  // the client: a static list, plus a queue for later changes
  const client = yield* Peer.make()
  const changes = yield* Queue.unbounded<Discovery.Change>()
  yield* client.auto(Stream.merge(Discovery.fromList(addresses), Stream.fromQueue(changes))) // lazy by default

  // an eager peer on the same list for comparison: it connects to all three at once
  yield* Effect.scoped(Effect.gen(function*() {
    const eager = yield* Peer.make()
    yield* eager.auto(Discovery.fromList(addresses), { lazy: false })
    yield* eager.awaitRemotes(3)
    const lazyRemotes = (yield* client.remotes).length
    console.log(`eager peer: ${(yield* eager.remotes).length} connections`)
    console.log(
      lazyRemotes === 0
        ? `lazy peer: no connection before first use (servers see ${(yield* clientsSeen).join("/")} clients)`
        : `lazy peer: ${lazyRemotes} connections?!`
    )
  }))

  const arith = yield* RpcClient.makeWith(client, Arith)
  console.log(`first call (dials all three now): served by ${yield* servedBy(arith)}`)
  yield* client.awaitRemotes(3)
  console.log(`round-robin over 3: ${yield* spread(arith, 6)}`)

  // remove s3 through the queue: the client drains and drops that connection
  const dropped = yield* Effect.forkChild(
    client.events.pipe(Stream.filter((event) => event._tag === "Disconnected"), Stream.runHead),
    { startImmediately: true }
  )
  yield* Queue.offer(changes, { _tag: "Remove", address: s3.address })
  const event = yield* Fiber.join(dropped)
  if (event._tag === "Some" && event.value.remote.id === s3.peer.id) {
    console.log("removed s3 from discovery: its connection drained and closed")
  }
  console.log(`remotes now: ${(yield* client.remotes).length}`)
  console.log(`round-robin over the remaining 2: ${yield* spread(arith, 6)}`)
}).pipe(Effect.scoped, Effect.timeout("10 seconds"))

Effect.runPromise(program).then(() => console.log("discovery done"), (e) => {
  console.error(e)
  process.exitCode = 1
})
