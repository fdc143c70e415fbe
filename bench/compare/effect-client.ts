/**
 * The client side of the five workloads for contenders driven from Effect (duplex, effect-rpc):
 * the same loops for both, so they differ only in how they connect and call.
 */
import { Effect, Fiber, type Scope, Stream } from "effect"
import { type Contender, latencyMetrics, type Metrics, request, type Session } from "./common.ts"

/** How one Effect contender connects and calls (the `{ i }` and `Uint8Array` streams included). */
export interface EffectClient<C> {
  /** A connected client in the current scope. */
  readonly connect: (port: number) => Effect.Effect<C, unknown, Scope.Scope>
  /** One unary call with `request` (built anew each time). */
  readonly echo: (client: C, payload: typeof request) => Effect.Effect<unknown, unknown>
  readonly count: (client: C, n: number) => Stream.Stream<unknown, unknown>
  readonly bulk: (client: C, bytes: number, chunk: number) => Stream.Stream<Uint8Array, unknown>
}

const run = <A, E>(effect: Effect.Effect<A, E, Scope.Scope>): Promise<A> => Effect.runPromise(Effect.scoped(effect))

const begin = (s: Session) => Effect.promise(() => s.begin())
const end = (s: Session, metrics: Metrics | (() => Metrics)) => Effect.promise(() => s.end(metrics))

/** The contender's client workloads from its `connect` and calls; `server` as given. */
export const effectContender = <C>(server: Contender["server"], ops: EffectClient<C>): Contender => {
  const unaryBatch = (client: C, calls: number, inflight: number) =>
    Effect.gen(function*() {
      let remaining = calls
      // A new call each time (the request is encoded per call, as every contender does).
      const worker = Effect.gen(function*() {
        while (remaining > 0) {
          remaining--
          yield* ops.echo(client, request)
        }
      })
      const fibers: Array<Fiber.Fiber<void, unknown>> = []
      for (let j = 0; j < Math.min(inflight, calls); j++) fibers.push(yield* Effect.forkChild(worker))
      yield* Fiber.joinAll(fibers)
    })

  const sequential = (client: C, calls: number, latencies?: Array<number>) =>
    Effect.gen(function*() {
      for (let i = 0; i < calls; i++) {
        const t0 = performance.now()
        yield* ops.echo(client, request)
        latencies?.push(performance.now() - t0)
      }
    })

  const count = (client: C, n: number) => Stream.runCount(ops.count(client, n))

  const bulk = (client: C, bytes: number, chunk: number) =>
    Stream.runFold(ops.bulk(client, bytes, chunk), () => 0, (n, c) => n + c.length)

  /** `connections` clients, each connected and done with one call, then `calls` calls on each. */
  const fanIn = (port: number, connections: number, calls: number, phase: Effect.Effect<void>) =>
    Effect.gen(function*() {
      const t0 = performance.now()
      const clients = yield* Effect.forEach(
        Array.from({ length: connections }),
        () => Effect.tap(ops.connect(port), (client) => sequential(client, 1)),
        { concurrency: "unbounded" }
      )
      const connectMs = performance.now() - t0
      yield* phase
      yield* Effect.forEach(clients, (client) => sequential(client, calls), { concurrency: "unbounded", discard: true })
      return connectMs
    })

  return {
    server,
    w1: (s) =>
      run(Effect.gen(function*() {
        const client = yield* ops.connect(s.port)
        yield* unaryBatch(client, s.sizes.warm.w1Calls, s.sizes.w1Inflight)
        yield* begin(s)
        yield* unaryBatch(client, s.sizes.w1Calls, s.sizes.w1Inflight)
        yield* end(s, {})
      })),
    w2: (s) =>
      run(Effect.gen(function*() {
        const client = yield* ops.connect(s.port)
        yield* sequential(client, s.sizes.warm.w2Calls)
        const latencies: Array<number> = []
        yield* begin(s)
        yield* sequential(client, s.sizes.w2Calls, latencies)
        yield* end(s, () => latencyMetrics(latencies))
      })),
    w3: (s) =>
      run(Effect.gen(function*() {
        const client = yield* ops.connect(s.port)
        yield* count(client, s.sizes.warm.w3Messages)
        yield* begin(s)
        const messages = yield* count(client, s.sizes.w3Messages)
        yield* end(s, { messages })
      })),
    w4: (s) =>
      run(Effect.gen(function*() {
        const client = yield* ops.connect(s.port)
        yield* bulk(client, s.sizes.warm.w4Bytes, s.sizes.chunk)
        yield* begin(s)
        const bytes = yield* bulk(client, s.sizes.w4Bytes, s.sizes.chunk)
        yield* end(s, { bytes })
      })),
    w5: (s) =>
      run(Effect.gen(function*() {
        yield* Effect.scoped(fanIn(s.port, s.sizes.warm.w5Connections, s.sizes.w5Calls, Effect.void))
        const connectMs = yield* fanIn(s.port, s.sizes.w5Connections, s.sizes.w5Calls, begin(s))
        yield* end(s, { connectMs })
      }))
  }
}
