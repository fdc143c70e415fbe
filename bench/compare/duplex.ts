/**
 * The Duplex contender: `RpcServer.serve` with a group of Echo (unary), Count (server stream) and
 * Bulk (server stream of `Uint8Array`); the client is `RpcClient.makeWith`. Schema validation is
 * on for requests and replies on both sides (as in `bench/rpc.ts`).
 */
import { Effect, Fiber, Schema, Scope, Stream } from "effect"
import * as Peer from "../../src/Peer.ts"
import * as Rpc from "../../src/Rpc.ts"
import * as RpcClient from "../../src/RpcClient.ts"
import * as RpcGroup from "../../src/RpcGroup.ts"
import * as RpcServer from "../../src/RpcServer.ts"
import { type Contender, HOST, latencyMetrics, type Metrics, request, type Session } from "./common.ts"

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

const run = <A, E>(effect: Effect.Effect<A, E, Scope.Scope>): Promise<A> => Effect.runPromise(Effect.scoped(effect))

const begin = (s: Session) => Effect.promise(() => s.begin())
const end = (s: Session, metrics: Metrics | (() => Metrics)) => Effect.promise(() => s.end(metrics))

const unaryBatch = (client: Client, calls: number, inflight: number) =>
  Effect.gen(function*() {
    let remaining = calls
    // A new call each time (the request is encoded per call, as every contender does).
    const worker = Effect.gen(function*() {
      while (remaining > 0) {
        remaining--
        yield* client.Echo(request)
      }
    })
    const fibers: Array<Fiber.Fiber<void, unknown>> = []
    for (let j = 0; j < Math.min(inflight, calls); j++) fibers.push(yield* Effect.forkChild(worker))
    yield* Fiber.joinAll(fibers)
  })

const sequential = (client: Client, calls: number, latencies?: Array<number>) =>
  Effect.gen(function*() {
    for (let i = 0; i < calls; i++) {
      const t0 = performance.now()
      yield* client.Echo(request)
      latencies?.push(performance.now() - t0)
    }
  })

const count = (client: Client, n: number) => Stream.runCount(client.Count({ n }))

const bulk = (client: Client, bytes: number, chunk: number) =>
  Stream.runFold(client.Bulk({ bytes, chunk }), () => 0, (n, c) => n + c.length)

const w1 = (s: Session) =>
  run(Effect.gen(function*() {
    const client = yield* connect(s.port)
    yield* unaryBatch(client, s.sizes.warm.w1Calls, s.sizes.w1Inflight)
    yield* begin(s)
    yield* unaryBatch(client, s.sizes.w1Calls, s.sizes.w1Inflight)
    yield* end(s, {})
  }))

const w2 = (s: Session) =>
  run(Effect.gen(function*() {
    const client = yield* connect(s.port)
    yield* sequential(client, s.sizes.warm.w2Calls)
    const latencies: Array<number> = []
    yield* begin(s)
    yield* sequential(client, s.sizes.w2Calls, latencies)
    yield* end(s, () => latencyMetrics(latencies))
  }))

const w3 = (s: Session) =>
  run(Effect.gen(function*() {
    const client = yield* connect(s.port)
    yield* count(client, s.sizes.warm.w3Messages)
    yield* begin(s)
    const messages = yield* count(client, s.sizes.w3Messages)
    yield* end(s, { messages })
  }))

const w4 = (s: Session) =>
  run(Effect.gen(function*() {
    const client = yield* connect(s.port)
    yield* bulk(client, s.sizes.warm.w4Bytes, s.sizes.chunk)
    yield* begin(s)
    const bytes = yield* bulk(client, s.sizes.w4Bytes, s.sizes.chunk)
    yield* end(s, { bytes })
  }))

/** `connections` peers, each connected and done with one call, then `calls` calls on each. */
const fanIn = (port: number, connections: number, calls: number, phase: Effect.Effect<void>) =>
  Effect.gen(function*() {
    const t0 = performance.now()
    const clients = yield* Effect.forEach(
      Array.from({ length: connections }),
      () => Effect.tap(connect(port), (client) => sequential(client, 1)),
      { concurrency: "unbounded" }
    )
    const connectMs = performance.now() - t0
    yield* phase
    yield* Effect.forEach(clients, (client) => sequential(client, calls), { concurrency: "unbounded", discard: true })
    return connectMs
  })

const w5 = (s: Session) =>
  run(Effect.gen(function*() {
    yield* Effect.scoped(fanIn(s.port, s.sizes.warm.w5Connections, s.sizes.w5Calls, Effect.void))
    const connectMs = yield* fanIn(s.port, s.sizes.w5Connections, s.sizes.w5Calls, begin(s))
    yield* end(s, { connectMs })
  }))

export const contender: Contender = { server, w1, w2, w3, w4, w5 }
