/**
 * `Proxy.serve` end to end, over TCP and over Unix sockets: a caller → a proxy (auth + tracing
 * middleware) → upstream pools.
 *
 * - round-robin across two upstreams; auth at the edge;
 * - unary with a typed error, response headers and `duplex-timeout` passing through; a deadline
 *   through the proxy interrupts the upstream handler;
 * - server stream, client stream and bidi through the proxy; a caller that stops reading a stream
 *   stops the upstream producer;
 * - routing by method prefix and by header to different pools; no route is `UnknownMethod`;
 * - an upstream child process killed with SIGKILL mid-stream: the caller's calls fail typed;
 * - a proxy drained mid-load: every call ends (completed or a typed failure), none hangs, and new
 *   calls go to the caller's other proxy.
 *
 * Bugs found here are pinned by `it.live.fails` tests after these: a drained peer that a remote
 * dialled never finishes closing, the proxy splits every final frame in two, and a caller's cancel
 * does not reach an upstream call that sends nothing.
 *
 * Every wait is on an event (a reply, an item, a Deferred set by a handler or a finalizer, a
 * child's stdout line) and bounded by `within`.
 */
import { assert, describe, it } from "@effect/vitest"
import { Cause, Context, Deferred, Effect, Exit, Fiber, Option, Queue, Schema, Scope, Stream } from "effect"
import * as Headers from "../src/Headers.ts"
import * as Middleware from "../src/Middleware.ts"
import * as Peer from "../src/Peer.ts"
import * as Proxy from "../src/Proxy.ts"
import * as Rpc from "../src/Rpc.ts"
import * as RpcClient from "../src/RpcClient.ts"
import { Rejected, RpcClientError } from "../src/RpcError.ts"
import * as RpcGroup from "../src/RpcGroup.ts"
import * as RpcServer from "../src/RpcServer.ts"
import { StreamingArith } from "./fixtures/arith.ts"
import { spawnFixture, type Transport, transports, within } from "./utils/rpc.ts"

// ---------------------------------------------------------------------------------------------
// Contracts
// ---------------------------------------------------------------------------------------------

class Oops extends Schema.TaggedError<Oops>()("Oops", { n: Schema.Int }) {}

/** What an upstream saw of a unary call. */
const Info = Schema.Struct({
  server: Schema.String,
  /** The peer id of whoever called the upstream: the proxy's pool peer. */
  caller: Schema.String,
  timeout: Schema.String,
  traceparent: Schema.String,
  lane: Schema.String
})
type Info = typeof Info.Type

const Svc = RpcGroup.make(
  Rpc.unary("Who", { payload: { fail: Schema.Boolean }, success: Info, error: Oops }),
  Rpc.unary("Hang", { success: Schema.Void }),
  /** `n` items 1..n; `n <= 0`: endless. */
  Rpc.serverStream("Count", { payload: { n: Schema.Int }, success: Schema.Int }),
  /** `started`, then (once the test opens the gate) `released`. */
  Rpc.serverStream("Hold", { success: Schema.String }),
  Rpc.clientStream("Sum", { payload: Schema.Int, success: Schema.String }),
  Rpc.bidi("Echo", { payload: Schema.Int, success: Schema.String })
).prefix("Svc.")

const Admin = RpcGroup.make(Rpc.unary("Who", { payload: { fail: Schema.Boolean }, success: Info, error: Oops }))
  .prefix("Admin.")

/** Served by nobody. */
const Nope = RpcGroup.make(Rpc.unary("X", { success: Schema.Void }), Rpc.serverStream("S", { success: Schema.Int }))
  .prefix("Nope.")

// ---------------------------------------------------------------------------------------------
// Topology
// ---------------------------------------------------------------------------------------------

/** Shared by every upstream of a test; each value is the name of the upstream it happened on. */
interface Probes {
  readonly calls: Record<string, number>
  readonly endlessProduced: { n: number }
  readonly endlessDone: Deferred.Deferred<string>
  readonly hangStarted: Deferred.Deferred<string>
  readonly hangInterrupted: Deferred.Deferred<string>
  readonly gate: Deferred.Deferred<void>
}

const makeProbes = Effect.gen(function*() {
  const probes: Probes = {
    calls: {},
    endlessProduced: { n: 0 },
    endlessDone: yield* Deferred.make<string>(),
    hangStarted: yield* Deferred.make<string>(),
    hangInterrupted: yield* Deferred.make<string>(),
    gate: yield* Deferred.make<void>()
  }
  return probes
})

const info = (server: string, call: RpcGroup.Call): Info => ({
  server,
  caller: call.remoteId,
  timeout: Headers.get(call.headers, "duplex-timeout") ?? "",
  traceparent: Headers.get(call.headers, "traceparent") ?? "",
  lane: Headers.get(call.headers, "x-lane") ?? ""
})

const who = (name: string, probes: Probes) => ({ fail }: { readonly fail: boolean }, call: RpcGroup.Call) =>
  Effect.suspend(() => {
    probes.calls[name] = (probes.calls[name] ?? 0) + 1
    call.setHeader("x-served-by", name)
    return fail ? Effect.fail(new Oops({ n: 7 })) : Effect.succeed(info(name, call))
  })

const svcHandlers = (name: string, probes: Probes): RpcGroup.Handlers<RpcGroup.Rpcs<typeof Svc>, never> => ({
  Who: who(name, probes),
  Hang: () =>
    Deferred.succeed(probes.hangStarted, name).pipe(
      Effect.andThen(Effect.never),
      Effect.onInterrupt(() => Deferred.succeed(probes.hangInterrupted, name))
    ),
  Count: ({ n }) =>
    n > 0
      ? Stream.range(1, n)
      : Stream.iterate(1, (i) => i + 1).pipe(
        Stream.tap(() => Effect.sync(() => probes.endlessProduced.n++)),
        Stream.ensuring(Deferred.succeed(probes.endlessDone, name))
      ),
  Hold: () =>
    Stream.concat(Stream.make("started"), Stream.fromEffect(Effect.as(Deferred.await(probes.gate), "released"))),
  Sum: (xs) => Effect.map(Stream.runFold(xs, () => 0, (total, x) => total + x), (total) => `${name}:${total}`),
  Echo: (xs) => Stream.map(xs, (x) => `${name}:${x}`)
})

interface Upstream {
  readonly name: string
  readonly peer: Peer.Peer
  readonly address: string
}

/** A peer serving `Svc` and `Admin` as `name`, bound on `address`. */
const upstream = (name: string, address: string, probes: Probes) =>
  Effect.gen(function*() {
    const peer = yield* Effect.orDie(Peer.make())
    yield* RpcServer.serve(peer, Svc, svcHandlers(name, probes))
    yield* RpcServer.serve(peer, Admin, { Who: who(name, probes) })
    const bound = yield* Effect.orDie(peer.bind(address))
    return { name, peer, address: bound } satisfies Upstream
  })

/** A peer connected to every address, once all are connected. */
const connectedTo = (addresses: ReadonlyArray<string>, label: string) =>
  Effect.gen(function*() {
    const peer = yield* Effect.orDie(Peer.make())
    for (const address of addresses) yield* Effect.orDie(peer.connect(address))
    yield* peer.awaitRemotes(addresses.length).pipe(within(`${label} connected`))
    return peer
  })

/** A proxy peer serving `options`, bound on `address`. */
const proxyOn = <R = never>(address: string, options: Proxy.Options<R>) =>
  Effect.gen(function*() {
    const front = yield* Effect.orDie(Peer.make())
    yield* Proxy.serve(front, options)
    const bound = yield* Effect.orDie(front.bind(address))
    return { front, address: bound }
  })

const TOKEN = "Bearer proxy-token"
const edge = [Middleware.auth({ check: (token) => Effect.succeed(token === TOKEN) }), Middleware.tracing()]

/** caller → proxy (auth + tracing) → pool of two upstreams `a` and `b`. */
const standard = (transport: Transport) =>
  Effect.gen(function*() {
    const probes = yield* makeProbes
    const a = yield* upstream("a", yield* transport.address, probes)
    const b = yield* upstream("b", yield* transport.address, probes)
    const pool = yield* connectedTo([a.address, b.address], "pool")
    const proxy = yield* proxyOn(yield* transport.address, {
      routes: [{ prefix: "Svc.", upstream: pool }],
      middleware: edge
    })
    const caller = yield* connectedTo([proxy.address], "caller")
    const svc = yield* RpcClient.makeWith(caller, Svc, { headers: { authorization: TOKEN } })
    return { probes, pool, proxy, caller, svc }
  })

const reasonOf = (error: unknown): RpcClientError["reason"] => {
  if (error instanceof RpcClientError) return error.reason
  throw new Error(`expected an RpcClientError, got ${String(error)}`)
}

/** `ok:<value>`, `typed:<RpcClientError reason>`, or `untyped:<cause>` (the last never expected). */
const outcome = (exit: Exit.Exit<string, unknown>): string => {
  if (Exit.isSuccess(exit)) return `ok:${exit.value}`
  const error = Cause.findErrorOption(exit.cause)
  if (Option.isSome(error) && error.value instanceof RpcClientError) return `typed:${error.value.reason._tag}`
  return `untyped:${Cause.pretty(exit.cause)}`
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

describe.each(transports)("Proxy over $name", (transport) => {
  it.live("round-robin across two upstreams; auth and tracing at the edge", () =>
    Effect.gen(function*() {
      const { probes, pool, caller, svc } = yield* standard(transport)
      const served: Array<string> = []
      for (let i = 0; i < 6; i++) {
        const reply = yield* svc.Who({ fail: false }).pipe(within(`Who ${i}`))
        assert.strictEqual(reply.caller, pool.id, "the upstream is called by the proxy's pool peer")
        served.push(reply.server)
      }
      assert.sameMembers([...new Set(served)], ["a", "b"])
      for (let i = 1; i < served.length; i++) assert.notStrictEqual(served[i], served[i - 1], served.join(","))

      // auth at the proxy: nothing reaches an upstream without the token (any kind)
      const anonymous = yield* RpcClient.makeWith(caller, Svc)
      const before = { ...probes.calls }
      const rejected = reasonOf(yield* Effect.flip(anonymous.Who({ fail: false })).pipe(within("anonymous Who")))
      assert.strictEqual(rejected._tag, "Rejected")
      assert.deepInclude(rejected, { kind: "auth", text: "missing authorization header" })
      const wrong = yield* RpcClient.makeWith(caller, Svc, { headers: { authorization: "Bearer nope" } })
      assert.deepInclude(reasonOf(yield* Effect.flip(wrong.Who({ fail: false }))), { kind: "auth" })
      const stream = yield* Effect.flip(Stream.runCollect(anonymous.Count({ n: 3 }))).pipe(within("anonymous Count"))
      assert.deepInclude(reasonOf(stream), { _tag: "Rejected", kind: "auth" })
      const sum = yield* Effect.flip(anonymous.Sum(Stream.make(1, 2))).pipe(within("anonymous Sum"))
      assert.deepInclude(reasonOf(sum), { _tag: "Rejected", kind: "auth" })
      assert.deepStrictEqual(probes.calls, before)

      // tracing at the proxy does not stop the caller's trace context from reaching the upstream
      const traced = yield* RpcClient.makeWith(caller, Svc, { headers: { authorization: TOKEN }, tracing: true })
      const { traceId, reply } = yield* Effect.gen(function*() {
        const span = yield* Effect.orDie(Effect.currentSpan)
        return { traceId: span.traceId, reply: yield* traced.Who({ fail: false }) }
      }).pipe(Effect.withSpan("caller"), within("traced Who"))
      assert.strictEqual(Middleware.parseTraceparent(reply.traceparent)?.traceId, traceId)
    }))

  it.live("unary: typed error, response headers and duplex-timeout pass through; a deadline interrupts upstream", () =>
    Effect.gen(function*() {
      const { probes, svc } = yield* standard(transport)
      const oops = yield* Effect.flip(svc.Who({ fail: true })).pipe(within("failing Who"))
      assert.instanceOf(oops, Oops)
      assert.strictEqual(oops instanceof Oops ? oops.n : -1, 7)

      let responseHeaders: Headers.Headers | undefined
      const reply = yield* svc.Who({ fail: false }, {
        timeout: "3 seconds",
        onResponseHeaders: (headers) => (responseHeaders = headers)
      }).pipe(within("Who with a deadline"))
      assert.strictEqual(reply.timeout, "3000")
      assert.strictEqual(Headers.get(responseHeaders ?? Headers.empty, "x-served-by"), reply.server)

      // a call past its deadline: DeadlineExceeded for the caller; the upstream enforces the
      // duplex-timeout it received through the proxy, so its handler is interrupted
      const late = yield* Effect.flip(svc.Hang(undefined, { timeout: "200 millis" })).pipe(within("Hang"))
      assert.strictEqual(reasonOf(late)._tag, "DeadlineExceeded")
      const started = yield* Deferred.await(probes.hangStarted).pipe(within("Hang started"))
      assert.strictEqual(yield* Deferred.await(probes.hangInterrupted).pipe(within("Hang interrupted")), started)
    }))

  it.live("server stream, client stream and bidi through the proxy", () =>
    Effect.gen(function*() {
      const { svc } = yield* standard(transport)
      assert.deepStrictEqual(yield* Stream.runCollect(svc.Count({ n: 5 })).pipe(within("Count 5")), [1, 2, 3, 4, 5])
      // a long stream crosses the proxy with backpressure on both hops
      assert.strictEqual(yield* Stream.runCount(svc.Count({ n: 30_000 })).pipe(within("Count 30k")), 30_000)
      const total = yield* svc.Sum(Stream.range(1, 100)).pipe(within("Sum"))
      assert.match(total, /^[ab]:5050$/)
      const echoed = yield* Stream.runCollect(svc.Echo(Stream.make(1, 2, 3))).pipe(within("Echo"))
      assert.lengthOf(echoed, 3)
      const server = echoed[0]?.split(":")[0] ?? "?"
      assert.deepStrictEqual(echoed, [`${server}:1`, `${server}:2`, `${server}:3`], "one bidi call, one upstream")
      // a long bidi exchange
      const many = yield* Stream.runCount(svc.Echo(Stream.range(1, 5_000))).pipe(within("Echo 5k"))
      assert.strictEqual(many, 5_000)
    }))

  it.live("a caller that stops reading a stream (Stream.take) stops the upstream producer", () =>
    Effect.gen(function*() {
      const { probes, svc } = yield* standard(transport)
      const first = yield* Stream.runCollect(svc.Count({ n: 0 }).pipe(Stream.take(3))).pipe(within("take 3"))
      assert.deepStrictEqual(first, [1, 2, 3])
      const server = yield* Deferred.await(probes.endlessDone).pipe(within("upstream producer finalizer"))
      assert.include(["a", "b"], server)
      const produced = probes.endlessProduced.n
      assert.isAtLeast(produced, 3)
      // the proxy still works afterwards
      assert.include(["a", "b"], (yield* svc.Who({ fail: false }).pipe(within("Who after cancel"))).server)
    }))

  it.live("routing by method prefix and by header to different pools; no route is UnknownMethod", () =>
    Effect.gen(function*() {
      const probes = yield* makeProbes
      /** An upstream named `name` and a pool connected to it alone. */
      const poolOf = (name: string) =>
        Effect.gen(function*() {
          const server = yield* upstream(name, yield* transport.address, probes)
          return yield* connectedTo([server.address], `${name} pool`)
        })
      const proxy = yield* proxyOn(yield* transport.address, {
        routes: [
          { prefix: "Admin.", upstream: yield* poolOf("admin") },
          { prefix: "Svc.", header: { name: "x-lane", value: "canary" }, upstream: yield* poolOf("canary") },
          { header: { name: "x-debug" }, upstream: yield* poolOf("debug") },
          { prefix: "Svc.", upstream: yield* poolOf("main") }
        ]
      })
      const caller = yield* connectedTo([proxy.address], "caller")
      const svc = yield* RpcClient.makeWith(caller, Svc)
      const adminClient = yield* RpcClient.makeWith(caller, Admin)
      const serverOf = (call: Effect.Effect<Info, unknown>) => Effect.map(call, (i) => i.server).pipe(within("Who"))

      assert.strictEqual(yield* serverOf(svc.Who({ fail: false })), "main")
      assert.strictEqual(yield* serverOf(svc.Who({ fail: false }, { headers: { "x-lane": "canary" } })), "canary")
      assert.strictEqual(yield* serverOf(svc.Who({ fail: false }, { headers: { "x-lane": "blue" } })), "main")
      assert.strictEqual(yield* serverOf(svc.Who({ fail: false }, { headers: { "x-debug": "" } })), "debug")
      assert.strictEqual(yield* serverOf(adminClient.Who({ fail: false })), "admin")
      // the first matching route wins
      assert.strictEqual(
        yield* serverOf(adminClient.Who({ fail: false }, { headers: { "x-lane": "canary" } })),
        "admin"
      )
      const laneSeen = yield* svc.Who({ fail: false }, { headers: { "x-lane": "canary" } }).pipe(within("Who"))
      assert.strictEqual(laneSeen.lane, "canary", "the routing header reaches the upstream")
      // streams are routed the same way
      const echoed = yield* Stream.runCollect(svc.Echo(Stream.make(1), { headers: { "x-lane": "canary" } }))
      assert.deepStrictEqual(echoed, ["canary:1"])

      // no route: the proxy answers UnknownMethod itself, for every kind
      const nope = yield* RpcClient.makeWith(caller, Nope)
      const unknown = reasonOf(yield* Effect.flip(nope.X(undefined)).pipe(within("Nope.X")))
      assert.deepInclude(unknown, {
        _tag: "UnknownMethod",
        method: "Nope.X",
        text: "duplex: can't find service Nope.X"
      })
      const unknownStream = reasonOf(yield* Effect.flip(Stream.runCollect(nope.S(undefined))).pipe(within("Nope.S")))
      assert.strictEqual(unknownStream._tag, "UnknownMethod")
      // a route whose upstream does not serve the method: the upstream's UnknownMethod comes back
      const routedNowhere = yield* Effect.flip(nope.X(undefined, { headers: { "x-debug": "" } })).pipe(within("X"))
      assert.strictEqual(reasonOf(routedNowhere)._tag, "UnknownMethod")
    }))

  it.live(
    "an upstream child process killed with SIGKILL mid-stream: the caller's calls fail typed",
    () =>
      Effect.gen(function*() {
        const child = yield* spawnFixture("rpc-binder.ts", [yield* transport.address])
        const ready = yield* child.nextLine.pipe(within("child ready", "20 seconds"))
        assert.match(ready, /^ready /)
        const pool = yield* connectedTo([ready.slice("ready ".length)], "pool")
        const proxy = yield* proxyOn(yield* transport.address, { routes: [{ upstream: pool }] })
        const caller = yield* connectedTo([proxy.address], "caller")
        const streaming = yield* RpcClient.makeWith(caller, StreamingArith)
        const probe = yield* RpcClient.makeWith(
          caller,
          RpcGroup.make(Rpc.unary("Hang", { success: Schema.Void })).prefix("Probe.")
        )

        const items = { n: 0 }
        const firstItem = yield* Deferred.make<void>()
        const stream = yield* Effect.forkChild(
          streaming.Thrive({ A: 1, Count: 1_000_000_000, ErrorAt: -1 }).pipe(
            Stream.tap(() => Effect.andThen(Effect.sync(() => items.n++), Deferred.succeed(firstItem, undefined))),
            Stream.runDrain,
            Effect.flip
          )
        )
        const unary = yield* Effect.forkChild(Effect.flip(probe.Hang(undefined)))
        yield* Deferred.await(firstItem).pipe(within("first Thrive item through the proxy"))
        assert.strictEqual(yield* child.nextLine.pipe(within("Hang reached the child")), "called Probe.Hang")
        yield* child.kill("SIGKILL")
        yield* child.exited.pipe(within("child exits"))

        const typed = ["ConnectionLost", "Cancelled"]
        const streamError = yield* Fiber.join(stream).pipe(within("Thrive fails", "5 seconds"))
        assert.include(typed, reasonOf(streamError)._tag)
        assert.isAbove(items.n, 0)
        const unaryError = yield* Fiber.join(unary).pipe(within("Hang fails", "5 seconds"))
        assert.include(typed, reasonOf(unaryError)._tag)
        // the caller's connection to the proxy is still there
        assert.lengthOf(yield* caller.remotes, 1)
      }),
    30_000
  )

  it.live(
    "a proxy drained mid-load: every call ends completed or typed, and new calls go to the other proxy",
    () =>
      Effect.gen(function*() {
        const probes = yield* makeProbes
        const a = yield* upstream("a", yield* transport.address, probes)
        const b = yield* upstream("b", yield* transport.address, probes)
        const poolOne = yield* connectedTo([a.address, b.address], "pool one")
        const poolTwo = yield* connectedTo([a.address, b.address], "pool two")
        // Proxy one lives in its own scope, closed in the background at the end: closing a drained
        // peer that a remote redialled while it drained never finishes (see the BUG test below).
        const oneScope = yield* Scope.make()
        const one = yield* proxyOn(yield* transport.address, { routes: [{ upstream: poolOne }] }).pipe(
          Scope.provide(oneScope)
        )
        const two = yield* proxyOn(yield* transport.address, { routes: [{ upstream: poolTwo }] })
        const caller = yield* connectedTo([one.address, two.address], "caller")
        yield* Effect.addFinalizer(() => Effect.asVoid(Effect.forkDetach(Scope.close(oneScope, Exit.void))))
        const svc = yield* RpcClient.makeWith(caller, Svc)
        const via = (reply: Info) => reply.caller === poolOne.id ? "one" : reply.caller === poolTwo.id ? "two" : "?"

        // a call held in flight on proxy one until the gate opens
        const held = yield* Queue.unbounded<string>()
        const holding = yield* Effect.forkChild(
          Stream.runForEach(svc.Hold(undefined, { remote: one.front.id }), (item) => Queue.offer(held, item))
        )
        assert.strictEqual(yield* Queue.take(held).pipe(within("held call started")), "started")
        // and a call on proxy one that will not finish within the grace period
        const stuck = yield* Effect.forkChild(Effect.flip(svc.Hang(undefined, { remote: one.front.id })))
        yield* Deferred.await(probes.hangStarted).pipe(within("stuck call started"))

        // load: unary calls and short streams from 8 fibers, without pause
        const outcomes: Array<string> = []
        let stop = false
        const loaded = yield* Deferred.make<void>()
        const worker = Effect.gen(function*() {
          for (let k = 0; !stop && k < 20_000; k++) { // bounded even if every call failed at once
            const call = k % 2 === 0
              ? Effect.map(svc.Who({ fail: false }), via)
              : Effect.as(Stream.runDrain(svc.Count({ n: 20 })), "stream")
            outcomes.push(outcome(yield* Effect.exit(call.pipe(within("a load call", "10 seconds")))))
            if (outcomes.length >= 40) yield* Deferred.succeed(loaded, undefined)
          }
        })
        const workers = yield* Effect.forEach(Array.from({ length: 8 }), () => Effect.forkChild(worker))
        yield* Deferred.await(loaded).pipe(within("load running"))
        assert.include(outcomes, "ok:one", "proxy one served load before the drain")

        // drain proxy one: GOAWAY goes out at once (on the caller's connection, before anything else
        // proxy one sends from now on)
        const draining = yield* Effect.forkChild(one.front.drain({ grace: "1 second" }), { startImmediately: true })
        yield* Deferred.succeed(probes.gate, undefined)
        // this item came after GOAWAY on the same connection: the caller has seen GOAWAY
        assert.strictEqual(yield* Queue.take(held).pipe(within("held call released")), "released")
        for (let i = 0; i < 10; i++) {
          assert.strictEqual(via(yield* svc.Who({ fail: false }).pipe(within(`Who ${i} after GOAWAY`))), "two")
        }
        // the call in flight on proxy one completed normally during the drain
        yield* Fiber.join(holding).pipe(within("held call completes"))
        yield* Fiber.join(draining).pipe(within("drain returns", "10 seconds"))
        // past the grace period the stuck call fails typed (its upstream handler is not cancelled: see
        // the BUG test "a caller's cancel reaches a silent upstream call")
        assert.include(
          ["ConnectionLost", "Cancelled"],
          reasonOf(yield* Fiber.join(stuck).pipe(within("stuck call")))._tag
        )
        const afterDrain = outcomes.length

        stop = true
        yield* Fiber.joinAll(workers).pipe(within("every load call ended", "15 seconds"))
        const untyped = outcomes.filter((o) => o.startsWith("untyped:") || o === "ok:?")
        assert.deepStrictEqual(untyped, [], "every call completed or failed with a typed RpcClientError")
        assert.notInclude(outcomes.slice(afterDrain), "ok:one", "nothing went through proxy one after its drain")
        // proxy one is gone for the caller; proxy two serves everything
        assert.deepStrictEqual((yield* caller.remotes).map((r) => r.id), [two.front.id])
        for (let i = 0; i < 4; i++) assert.strictEqual(via(yield* svc.Who({ fail: false }).pipe(within("Who"))), "two")
      }),
    30_000
  )
})

// BUG: the proxy splits every final frame in two. `Proxy.pipe` forwards each message with `send`
// and the end with a separate `end`, so a request or reply sent as one DATA frame with `last` (every
// unary call, the original's convention) arrives as DATA, then an empty EOF frame. Both ends see
// twice the frames for a unary call, and the extra EOF comes after the receiver has already
// finished with the channel: it is dropped and counted in `droppedUnknownChannel`, the counter meant
// for hostile or broken remotes, once per call at the caller and once at the upstream. (This is
// part of the W1 cost of a hop in bench/proxy.ts.) Fix idea: forward the last message of a half
// with `sendLast` (hold one message back, or use the frame's `last` flag).
describe("Proxy framing", () => {
  it.live("BUG: a unary call through the proxy uses one frame each way and drops nothing", () =>
    Effect.gen(function*() {
      const probes = yield* makeProbes
      const a = yield* upstream("a", "tcp://127.0.0.1:0", probes)
      const pool = yield* connectedTo([a.address], "pool")
      const proxy = yield* proxyOn("tcp://127.0.0.1:0", { routes: [{ upstream: pool }] })
      const caller = yield* connectedTo([proxy.address], "caller")
      const svc = yield* RpcClient.makeWith(caller, Svc)
      const stats = (peer: Peer.Peer) =>
        Effect.map(peer.connections, (cs) =>
          cs.reduce(
            (sum, c) => ({
              framesIn: sum.framesIn + c.stats.framesIn,
              dropped: sum.dropped + c.stats.droppedUnknownChannel
            }),
            { framesIn: 0, dropped: 0 }
          ))
      const callerBefore = yield* stats(caller)
      const upstreamBefore = yield* stats(a.peer)
      const calls = 20
      for (let i = 0; i < calls; i++) yield* svc.Who({ fail: false }).pipe(within(`Who ${i}`))
      // let the trailing frames, if any, arrive: one more call's reply comes after them
      yield* svc.Who({ fail: false }).pipe(within("one more Who"))
      const callerAfter = yield* stats(caller)
      const upstreamAfter = yield* stats(a.peer)
      assert.deepStrictEqual(
        {
          callerDropped: callerAfter.dropped - callerBefore.dropped,
          upstreamDropped: upstreamAfter.dropped - upstreamBefore.dropped,
          callerFramesPerCall: (callerAfter.framesIn - callerBefore.framesIn) / (calls + 1)
        },
        { callerDropped: 0, upstreamDropped: 0, callerFramesPerCall: 1 }
      )
    }))
})

// BUG: a caller's cancel (or its lost connection) does not reach an upstream call that is silent.
// `Proxy.forward` runs two pipes, caller → upstream and upstream → caller, and only a pipe that is
// reading or writing notices the other side going away. Once a unary call's single request (or a
// server stream's) has been forwarded, the caller → upstream pipe has ended, and the upstream →
// caller pipe waits on the upstream's input; so a CloseStream from the caller, or the loss of the
// caller's connection (e.g. a proxy drained past its grace), changes nothing until the upstream
// sends something. A slow unary call keeps running upstream for nothing (the fiber, the upstream
// channel and the proxy's forwarding fiber all leak until the upstream answers); a server stream is
// cancelled only at its next item. The module doc promises "either side's cancel cancels the other".
// Fix idea: also watch the incoming channel's end (e.g. its `done`, or a cancel/lose hook) and
// cancel the outgoing channel when it is aborted or lost.
describe.each(transports)("Proxy cancellation over $name", (transport) => {
  it.live("BUG: a caller's cancel reaches a silent upstream call", () =>
    Effect.gen(function*() {
      const { probes, svc } = yield* standard(transport)
      const call = yield* Effect.forkChild(svc.Hang(undefined))
      const server = yield* Deferred.await(probes.hangStarted).pipe(within("Hang started upstream"))
      yield* Fiber.interrupt(call).pipe(within("interrupting the caller"))
      assert.strictEqual(
        yield* Deferred.await(probes.hangInterrupted).pipe(within("upstream Hang interrupted", "2 seconds")),
        server
      )
    }))
})

// BUG: a drained peer that a remote dials while it drains never finishes closing. While draining,
// `Peer.bind`'s accept handler returns at once without touching the socket (src/Peer.ts, bind:
// "sockets still arriving are closed at once (the handler just returns)"), but the platform's
// `SocketServer` only acquires (and later closes) a connection when the handler uses the socket, and
// it paused the connection on accept: nothing ever reads or destroys it. The remote's greeting stays
// unread, so the connection never closes (the dialler waits for a greeting until its own
// greetingTimeout), and closing the peer's scope waits forever in `server.close()` for that
// connection. In a proxy tier this is the normal sequence: drain a proxy, its callers' `connect`
// loops redial it at once, and the proxy's shutdown hangs. (Found by the drain test above, which
// closes its drained proxy in the background for that reason.) Fix idea: in the draining branch,
// close the socket (e.g. acquire its writer and end it, or destroy the `NodeSocket.NetSocket`), or
// stop the listeners when the drain starts.
describe.each(transports)("Drained peer over $name", (transport) => {
  it.live("BUG: a drained peer that was dialled while draining still closes", () =>
    Effect.gen(function*() {
      const child = yield* spawnFixture("drained-binder.ts", [yield* transport.address])
      assert.match(yield* child.nextLine.pipe(within("child drained", "20 seconds")), /^drained /)
      assert.strictEqual(yield* child.nextLine.pipe(within("dialled")), "dialled")
      assert.strictEqual(yield* child.nextLine.pipe(within("client closed")), "client closed")
      // the child prints this once the drained peer's scope has closed (it exits when it cannot)
      assert.strictEqual(yield* child.nextLine.pipe(within("drained peer closes", "5 seconds")), "peer closed")
    }), 30_000)
})

/** Methods the edge lets through (a service the proxy's middleware reads). */
class Allowed extends Context.Service<Allowed, ReadonlySet<string>>()("test/Proxy/Allowed") {}

describe("Proxy middleware", () => {
  it.live("reads services provided to Proxy.serve; a custom rejection reaches the caller typed", () =>
    Effect.gen(function*() {
      const probes = yield* makeProbes
      const a = yield* upstream("a", "tcp://127.0.0.1:0", probes)
      const pool = yield* connectedTo([a.address], "pool")
      const allowList: Middleware.Middleware<Allowed> = (call, next) =>
        Effect.flatMap(
          Effect.service(Allowed),
          (allowed) =>
            allowed.has(call.method) ? next : Effect.fail(new Rejected({ kind: "forbidden", text: call.method }))
        )
      const front = yield* Effect.orDie(Peer.make())
      yield* Proxy.serve(front, { routes: [{ upstream: pool }], middleware: [allowList] }).pipe(
        Effect.provideService(Allowed, new Set(["Svc.Who"]))
      )
      const address = yield* Effect.orDie(front.bind("tcp://127.0.0.1:0"))
      const caller = yield* connectedTo([address], "caller")
      const svc = yield* RpcClient.makeWith(caller, Svc)
      assert.strictEqual((yield* svc.Who({ fail: false }).pipe(within("Who"))).server, "a")
      const refused = reasonOf(yield* Effect.flip(Stream.runCollect(svc.Count({ n: 2 }))).pipe(within("Count")))
      assert.deepInclude(refused, { _tag: "Rejected", kind: "forbidden", text: "Svc.Count" })
    }))
})
