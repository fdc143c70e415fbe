/**
 * `node examples/proxy.ts`: a caller → a proxy with auth and tracing → two upstream `Arith` servers.
 *
 * The caller finds the service through discovery (`peer.auto` over a registry stream). It first
 * reaches the upstreams directly; then the proxy registers itself in their place, and the same
 * caller code goes through the proxy — transparent insertion.
 *
 * The proxy forwards channels without decoding them: round-robin over its upstream pool, request
 * headers (the token, `traceparent`) on the way in, response headers on the way out. The example
 * prints which upstream served each call (its `x-served-by` response header), a call without a
 * token rejected at the edge, and the same trace id at the caller and at the upstream.
 */
import { Effect, Fiber, Option, Queue, Stream } from "effect"
import type * as Discovery from "../src/Discovery.ts"
import * as Headers from "../src/Headers.ts"
import * as Middleware from "../src/Middleware.ts"
import * as Peer from "../src/Peer.ts"
import * as Proxy from "../src/Proxy.ts"
import * as RpcClient from "../src/RpcClient.ts"
import * as RpcServer from "../src/RpcServer.ts"
import { Arith, DivideByZero } from "./contracts.ts"

const TOKEN = "Bearer s3cret"

/** An Arith server that names itself and its trace id in response headers. */
const upstream = (name: string) =>
  Effect.gen(function*() {
    const peer = yield* Peer.make()
    yield* RpcServer.serve(peer, Arith, {
      Add: ({ A, B }, call) =>
        Effect.map(Effect.option(Effect.currentSpan), (span) => {
          call.setHeader("x-served-by", name)
          if (Option.isSome(span)) call.setHeader("x-trace-id", span.value.traceId)
          return { C: A + B }
        }),
      Div: ({ A, B }) =>
        B === 0 ? Effect.fail(new DivideByZero({ dividend: A })) : Effect.succeed({ C: Math.trunc(A / B) }),
      Count: ({ A }) => Stream.range(1, A).pipe(Stream.map((C) => ({ C }))),
      Sum: (inputs) => Effect.map(Stream.runFold(inputs, () => 0, (n, { A }) => n + A), (C) => ({ C }))
    }, { middleware: [Middleware.tracing()] }) // the server span joins the caller's trace
    return yield* peer.bind("tcp://127.0.0.1:0")
  })

const program = Effect.gen(function*() {
  const a = yield* upstream("upstream-a")
  const b = yield* upstream("upstream-b")

  // the proxy: a peer accepting callers, and a pool peer connected to the upstreams
  const pool = yield* Peer.make()
  yield* pool.connect(a)
  yield* pool.connect(b)
  yield* pool.awaitRemotes(2)
  const front = yield* Peer.make()
  yield* Proxy.serve(front, {
    routes: [{ prefix: "Arith.", upstream: pool }],
    middleware: [Middleware.auth({ check: (token) => Effect.succeed(token === TOKEN) }), Middleware.tracing()]
  })
  const proxyAddress = yield* front.bind("tcp://127.0.0.1:0")
  console.log(`proxy on ${proxyAddress} → ${a}, ${b}`)

  // a registry (any discovery source works): the upstreams registered themselves
  const registry = yield* Queue.unbounded<Discovery.Change>()
  yield* Queue.offerAll(registry, [{ _tag: "Add", address: a }, { _tag: "Add", address: b }])

  // the caller only follows the registry
  const caller = yield* Peer.make()
  yield* caller.auto(Stream.fromQueue(registry), { grace: "1 second" })
  const arith = yield* RpcClient.makeWith(caller, Arith, { headers: { authorization: TOKEN }, tracing: true })
  yield* arith.Add({ A: 0, B: 0 })
  yield* caller.awaitRemotes(2)
  console.log(`before: the caller reaches ${(yield* caller.remotes).map((r) => r.address).join(", ")} directly`)

  // the proxy registers itself in place of the upstreams: no change in the caller's code
  const viaProxyOnly = Effect.map(caller.remotes, (rs) => rs.length === 1 && rs[0]?.address === proxyAddress)
  const switched = yield* Effect.forkChild(
    Stream.runDrain(Stream.takeUntilEffect(caller.events, () => viaProxyOnly)),
    { startImmediately: true } // listening to the caller's events before the registry changes
  )
  yield* Queue.offerAll(registry, [
    { _tag: "Add", address: proxyAddress },
    { _tag: "Remove", address: a },
    { _tag: "Remove", address: b }
  ])
  yield* Fiber.join(switched)
  console.log(`after: the caller reaches ${(yield* caller.remotes).map((r) => r.address).join(", ")} (the proxy)`)
  for (let i = 1; i <= 4; i++) {
    let servedBy = "?"
    const { C } = yield* arith.Add({ A: i, B: 10 }, {
      onResponseHeaders: (headers) => (servedBy = Headers.get(headers, "x-served-by") ?? "?")
    })
    console.log(`Add(${i}, 10) = ${C}, served by ${servedBy}`)
  }
  const error = yield* Effect.flip(arith.Div({ A: 1, B: 0 }))
  console.log(`Div(1, 0) failed: ${error._tag} (typed errors pass through the proxy)`)

  // no token: refused by the proxy, no upstream sees the call
  const anonymous = yield* RpcClient.makeWith(caller, Arith)
  const refused = yield* Effect.flip(anonymous.Add({ A: 1, B: 2 }))
  const reason = refused.reason
  console.log(
    `without a token: ${reason._tag === "Rejected" ? `rejected (${reason.kind}): ${reason.text}` : reason._tag}`
  )

  // one trace: the upstream's span joins the caller's trace across the hop
  yield* Effect.gen(function*() {
    const span = yield* Effect.orDie(Effect.currentSpan)
    let upstreamTrace = "?"
    yield* arith.Add({ A: 1, B: 1 }, {
      onResponseHeaders: (headers) => (upstreamTrace = Headers.get(headers, "x-trace-id") ?? "?")
    })
    console.log(`trace id at the caller:   ${span.traceId}`)
    console.log(`trace id at the upstream: ${upstreamTrace}`)
    console.log(`one trace across the hop: ${span.traceId === upstreamTrace}`)
  }).pipe(Effect.withSpan("example caller"))
}).pipe(Effect.scoped, Effect.timeout("10 seconds"))

Effect.runPromise(program).then(() => console.log("proxy done"), (e) => {
  console.error(e)
  process.exitCode = 1
})
