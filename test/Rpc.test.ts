/**
 * Conformance of the RPC layer (Rpc, RpcGroup, RpcServer, RpcClient, Codec), run once over TCP and
 * once over Unix sockets: the four call kinds in both bind/connect directions, typed errors and
 * every `RpcClientError` reason, cancellation, deadlines, headers, callbacks, codecs, the edge
 * queue and round-robin placement.
 *
 * Every wait is on an event (a Deferred set by a handler, a finalizer, `awaitRemotes`, a child's
 * stdout line) and bounded by `within`.
 */
import { assert, describe, it } from "@effect/vitest"
import { decode as msgpackDecode, encode as msgpackEncode } from "@msgpack/msgpack"
import { Cause, Context, Deferred, Effect, Exit, Fiber, Layer, Option, Schema, Scope, Stream } from "effect"
import * as Codec from "../src/Codec.ts"
import type * as Headers from "../src/Headers.ts"
import * as Peer from "../src/Peer.ts"
import * as Rpc from "../src/Rpc.ts"
import * as RpcClient from "../src/RpcClient.ts"
import { RequestStreamError, RpcClientError } from "../src/RpcError.ts"
import * as RpcGroup from "../src/RpcGroup.ts"
import * as RpcServer from "../src/RpcServer.ts"
import {
  Args,
  Arith,
  arithHandlers,
  DivideByZero,
  nextTurn,
  Reply,
  ScanError,
  StreamingArith,
  streamingArithHandlers,
  SumAsClientStream,
  TriggeredError
} from "./fixtures/arith.ts"
import { connectedPair, openChannels, spawnFixture, transports, within } from "./utils/rpc.ts"

// ---------------------------------------------------------------------------------------------
// Contracts used only by these tests
// ---------------------------------------------------------------------------------------------

class Rejected extends Schema.TaggedError<Rejected>()("Rejected", { reason: Schema.String, code: Schema.Int }) {}

/** A failure of the caller's own input stream (never crosses the wire as itself). */
class LocalInputError extends Schema.TaggedError<LocalInputError>()("LocalInputError", { at: Schema.Int }) {}

const Seen = Schema.Struct({
  headers: Schema.Record(Schema.String, Schema.String),
  serviceHeaders: Schema.Record(Schema.String, Schema.String),
  remoteId: Schema.String,
  serviceRemoteId: Schema.String,
  method: Schema.String
})

const Bytes = Schema.Struct({ data: Schema.Uint8Array, note: Schema.String })

const Kit = RpcGroup.make(
  Rpc.clientStream("Total", { payload: { A: Schema.Int }, success: Reply }),
  Rpc.clientStream("FirstTwo", { payload: { A: Schema.Int }, success: Reply }),
  Rpc.clientStream("Drain", { payload: { A: Schema.Int }, success: Reply }),
  Rpc.unary("Hang", { success: Schema.Void }),
  Rpc.serverStream("Endless", { success: Schema.Int }),
  Rpc.bidi("EchoInts", { payload: Schema.Int, success: Schema.Int }),
  Rpc.unary("Reject", { payload: { code: Schema.Int }, success: Schema.Void, error: Rejected }),
  Rpc.serverStream("RejectLater", { payload: { n: Schema.Int }, success: Schema.Int, error: Rejected }),
  Rpc.unary("Boom", { success: Schema.Void }),
  Rpc.serverStream("BoomLater", { success: Schema.Int }),
  Rpc.unary("SelfInterrupt", { success: Schema.Void }),
  Rpc.unary("Seen", { success: Seen }),
  Rpc.serverStream("SeenStream", { success: Schema.String }),
  Rpc.unary("Bytes", { payload: Bytes, success: Bytes }),
  Rpc.unary("Compute", { payload: Args, success: Schema.Struct({ C: Schema.Int, note: Schema.String }) })
).prefix("Kit.")

const Callback = RpcGroup.make(Rpc.unary("Ask", { payload: Schema.String, success: Schema.String })).prefix(
  "Callback."
)

/** Methods answered by a plain channel handler (no RpcServer): it cancels them. */
const Raw = RpcGroup.make(
  Rpc.unary("Cancel", { success: Schema.Void }),
  Rpc.serverStream("CancelStream", { success: Schema.Int })
).prefix("Raw.")

type ArithRpcs = RpcGroup.Rpcs<typeof Arith>
type StreamingArithRpcs = RpcGroup.Rpcs<typeof StreamingArith>
type KitRpcs = RpcGroup.Rpcs<typeof Kit>

interface Probes {
  readonly hangStarted: Deferred.Deferred<Headers.Headers>
  readonly hangInterrupted: Deferred.Deferred<void>
  readonly endless: { produced: number }
  readonly endlessDone: Deferred.Deferred<void>
  readonly drainStarted: Deferred.Deferred<void>
  readonly drainExit: Deferred.Deferred<Exit.Exit<unknown, unknown>>
  readonly firstTwoDone: Deferred.Deferred<void>
  readonly echoDone: Deferred.Deferred<void>
}

const makeKit = (peer: Peer.Peer) =>
  Effect.gen(function*() {
    const probes: Probes = {
      hangStarted: yield* Deferred.make<Headers.Headers>(),
      hangInterrupted: yield* Deferred.make<void>(),
      endless: { produced: 0 },
      endlessDone: yield* Deferred.make<void>(),
      drainStarted: yield* Deferred.make<void>(),
      drainExit: yield* Deferred.make<Exit.Exit<unknown, unknown>>(),
      firstTwoDone: yield* Deferred.make<void>(),
      echoDone: yield* Deferred.make<void>()
    }
    const handlers: RpcGroup.Handlers<KitRpcs, RpcServer.CurrentCall> = {
      Total: (items) => Effect.map(Stream.runFold(items, () => 0, (total, x) => total + x.A), (C) => ({ C })),
      FirstTwo: (items) =>
        Stream.runCollect(Stream.take(items, 2)).pipe(
          Effect.map((xs) => ({ C: xs.reduce((total, x) => total + x.A, 0) })),
          Effect.ensuring(Deferred.succeed(probes.firstTwoDone, undefined))
        ),
      Drain: (items) =>
        Stream.runForEach(items, () => Deferred.succeed(probes.drainStarted, undefined)).pipe(
          Effect.as({ C: 0 }),
          Effect.onExit((exit) => Deferred.succeed(probes.drainExit, exit))
        ),
      Hang: (_, call) =>
        Deferred.succeed(probes.hangStarted, call.headers).pipe(
          Effect.andThen(Effect.never),
          Effect.onInterrupt(() => Deferred.succeed(probes.hangInterrupted, undefined))
        ),
      Endless: () =>
        Stream.unfold(0, (i) =>
          Effect.andThen(
            nextTurn,
            Effect.sync(() => {
              probes.endless.produced++
              return [i, i + 1] as const
            })
          )).pipe(Stream.ensuring(Deferred.succeed(probes.endlessDone, undefined))),
      EchoInts: (xs) => Stream.ensuring(xs, Deferred.succeed(probes.echoDone, undefined)),
      Reject: ({ code }) => Effect.fail(new Rejected({ reason: "no", code })),
      RejectLater: ({ n }) =>
        Stream.concat(Stream.range(1, n), Stream.fail(new Rejected({ reason: "later", code: n }))),
      Boom: () => Effect.die(new Error("kaboom")),
      BoomLater: () => Stream.concat(Stream.make(1, 2), Stream.die(new Error("kaboom later"))),
      SelfInterrupt: () => Effect.interrupt,
      Seen: (_, call) =>
        Effect.gen(function*() {
          const current = yield* RpcServer.CurrentCall
          call.setHeader("x-reply", "r1")
          return {
            headers: { ...call.headers },
            serviceHeaders: { ...current.headers },
            remoteId: call.remoteId,
            serviceRemoteId: current.remoteId,
            method: call.method
          }
        }),
      SeenStream: (_, call) => {
        call.setHeader("x-reply", "s1")
        return Stream.make("a", "b")
      },
      Bytes: ({ data, note }) => Effect.succeed({ data: data.slice().reverse(), note: `${note}:${data.length}` }),
      Compute: ({ A, B }, call) =>
        Effect.gen(function*() {
          const back = yield* RpcClient.makeWith(peer, Callback, { remote: call.remoteId })
          const note = yield* back.Ask(`${A}+${B}`)
          return { C: A + B, note }
        }).pipe(Effect.orDie)
    }
    return { probes, handlers }
  })

/** Serves Arith, StreamingArith and Kit on `peer`; returns Kit's probes. */
const serveAll = (peer: Peer.Peer) =>
  Effect.gen(function*() {
    const kit = yield* makeKit(peer)
    yield* RpcServer.serve(peer, Arith, arithHandlers)
    yield* RpcServer.serve(peer, StreamingArith, streamingArithHandlers)
    yield* RpcServer.serve(peer, Kit, kit.handlers)
    return kit.probes
  })

/** Arith handlers counting the Add and Count calls of server `i`. */
const countingArith = (counts: Array<number>, i: number): RpcGroup.Handlers<ArithRpcs, never> => ({
  ...arithHandlers,
  Add: (args, call) => {
    counts[i] = (counts[i] ?? 0) + 1
    return arithHandlers.Add(args, call)
  },
  Count: (args, call) => {
    counts[i] = (counts[i] ?? 0) + 1
    return arithHandlers.Count(args, call)
  }
})

const serveCallback = (peer: Peer.Peer) =>
  RpcServer.serve(peer, Callback, {
    Ask: (question) => Effect.succeed(`ok:${question}`)
  })

/** A setup serving everything on a peer, keeping the probes for the test. */
const probesCell = () => {
  let value: Probes | undefined
  return {
    serve: (peer: Peer.Peer) =>
      Effect.map(serveAll(peer), (probes) => {
        value = probes
      }),
    get probes(): Probes {
      if (value === undefined) throw new Error("nothing served yet")
      return value
    }
  }
}

/** A pair where one side serves everything; its probes. */
const servedPair = (address: string, side: "binder" | "connector" = "binder") =>
  Effect.gen(function*() {
    const cell = probesCell()
    const pair = yield* connectedPair(address, side === "binder" ? { binder: cell.serve } : { connector: cell.serve })
    return { ...pair, probes: cell.probes }
  })

/** A binary codec: a tag byte, then msgpack. Decoding without the tag throws. */
const taggedStats = { encoded: 0, decoded: 0 }
const tagged: Codec.Codec = {
  name: "tagged",
  representation: "binary",
  encode: (value) => {
    taggedStats.encoded++
    const body = msgpackEncode(value)
    const out = new Uint8Array(body.length + 1)
    out[0] = 0x7e
    out.set(body, 1)
    return out
  },
  decode: (bytes) => {
    taggedStats.decoded++
    if (bytes[0] !== 0x7e) throw new Error("missing tag byte")
    return msgpackDecode(bytes.subarray(1))
  }
}

/** The `RpcClientError` reason of a failure (asserts it is one). */
const reasonOf = (error: unknown): RpcClientError["reason"] => {
  assert.instanceOf(error, RpcClientError)
  return error.reason
}

/** A stream of 0, 1, 2, … yielding to the event loop before each element. */
const pacedInts: Stream.Stream<number> = Stream.unfold(0, (i) => Effect.as(nextTurn, [i, i + 1] as const))

/** Collects a stream's items until it fails; returns both (dies if it ends cleanly). */
const itemsThenFailure = <A, E>(stream: Stream.Stream<A, E>) =>
  Effect.gen(function*() {
    const items: Array<A> = []
    const error = yield* Stream.runForEach(stream, (a) => Effect.sync(() => items.push(a))).pipe(Effect.flip)
    return { items, error }
  })

const StreamingArgsOf = (A: number, Count: number) => ({ A, Count, ErrorAt: 0 })

/** Calls every kind through `peer` (with `options`) and checks the answers. */
const exerciseAllKinds = (peer: Peer.Peer, options: RpcClient.Options = {}) =>
  Effect.gen(function*() {
    const arith = yield* RpcClient.makeWith(peer, Arith, options)
    const streaming = yield* RpcClient.makeWith(peer, StreamingArith, options)
    const sum = yield* RpcClient.makeWith(peer, SumAsClientStream, options)
    const kit = yield* RpcClient.makeWith(peer, Kit, options)
    // unary
    assert.deepStrictEqual(yield* arith.Add({ A: 7, B: 8 }), { C: 15 })
    assert.deepStrictEqual(yield* arith.Mul({ A: 7, B: 8 }), { C: 56 })
    assert.deepStrictEqual(yield* arith.Div({ A: 7, B: 2 }), { C: 3 })
    assert.strictEqual(yield* arith.String({ A: 27, B: 35 }), "27+35=62")
    assert.deepStrictEqual(yield* arith.Scan("12345"), { C: 12345 })
    assert.deepStrictEqual(yield* arith.Add({ A: 100000, B: -300 }), { C: 99700 })
    // server stream
    assert.deepStrictEqual(yield* Stream.runCollect(arith.Count({ A: 5, B: 0 })), [
      { C: 1 },
      { C: 2 },
      { C: 3 },
      { C: 4 },
      { C: 5 }
    ])
    assert.deepStrictEqual(yield* Stream.runCollect(arith.Count({ A: 0, B: 0 })), [])
    assert.deepStrictEqual(yield* Stream.runCollect(streaming.Thrive({ A: 3, Count: 3, ErrorAt: -1 })), [
      { C: 3, Index: 0 },
      { C: 3, Index: 1 },
      { C: 3, Index: 2 }
    ])
    // client stream
    const inputs = [9, 3, 3, 6, 9]
    assert.deepStrictEqual(yield* kit.Total(Stream.fromIterable(inputs.map((A) => ({ A })))), { C: 30 })
    assert.deepStrictEqual(yield* kit.Total(Stream.empty), { C: 0 })
    assert.deepStrictEqual(
      yield* sum.Sum(Stream.fromIterable(inputs.map((A) => StreamingArgsOf(A, 0)))),
      { C: 30, Index: 0 }
    )
    // bidi
    assert.deepStrictEqual(
      yield* Stream.runCollect(streaming.Sum(Stream.fromIterable(inputs.map((A) => StreamingArgsOf(A, 0))))),
      [{ C: 30, Index: 0 }]
    )
    assert.deepStrictEqual(
      yield* Stream.runCollect(streaming.Echo(Stream.fromIterable([1, 2, 3].map((i) => StreamingArgsOf(i, 10 * i))))),
      [{ C: 1, Index: 10 }, { C: 2, Index: 20 }, { C: 3, Index: 30 }]
    )
    assert.deepStrictEqual(yield* Stream.runCollect(kit.EchoInts(Stream.empty)), [])
    // many concurrent calls of every kind on the same connection
    const concurrent = yield* Effect.all(
      Array.from({ length: 20 }, (_, i) =>
        Effect.all([
          arith.Add({ A: i, B: i }),
          Stream.runCollect(arith.Count({ A: i % 4, B: 0 })),
          kit.Total(Stream.fromIterable([{ A: i }, { A: 1 }])),
          Stream.runCollect(kit.EchoInts(Stream.make(i, -i - 1)))
        ])),
      { concurrency: "unbounded" }
    )
    concurrent.forEach(([add, count, total, echo], i) => {
      assert.deepStrictEqual(add, { C: 2 * i })
      assert.strictEqual(count.length, i % 4)
      assert.deepStrictEqual(total, { C: i + 1 })
      assert.deepStrictEqual(echo, [i, -i - 1])
    })
  }).pipe(within("calls of every kind", "20 seconds"))

describe.each(transports)("RPC over $name", (transport) => {
  // -------------------------------------------------------------------------------------------
  // 1. The four kinds, both directions
  // -------------------------------------------------------------------------------------------

  describe("call kinds", () => {
    it.live("the binding peer serves, the connecting peer calls (all four kinds)", () =>
      Effect.gen(function*() {
        const { binder, connector } = yield* connectedPair(yield* transport.address, { binder: serveAll })
        yield* exerciseAllKinds(connector)
        // every channel of those calls has been freed on both sides
        assert.strictEqual(yield* openChannels(connector), 0)
        assert.strictEqual(yield* openChannels(binder), 0)
      }))

    it.live("the connecting peer serves, the binding peer calls it by remote id (all four kinds)", () =>
      Effect.gen(function*() {
        const { binder, connector } = yield* connectedPair(yield* transport.address, { connector: serveAll })
        yield* exerciseAllKinds(binder, { remote: connector.id })
        assert.strictEqual(yield* openChannels(connector), 0)
        assert.strictEqual(yield* openChannels(binder), 0)
      }))

    it.live("the connecting peer serves, the binding peer calls it round-robin (all four kinds)", () =>
      Effect.gen(function*() {
        const { binder } = yield* connectedPair(yield* transport.address, { connector: serveAll })
        yield* exerciseAllKinds(binder)
      }))

    it.live("both peers serve and call each other at the same time", () =>
      Effect.gen(function*() {
        const { binder, connector } = yield* connectedPair(yield* transport.address, {
          binder: serveAll,
          connector: serveAll
        })
        yield* Effect.all([exerciseAllKinds(binder, { remote: connector.id }), exerciseAllKinds(connector)], {
          concurrency: 2
        })
      }))

    it.live("large payloads and long streams (above the write high-water mark)", () =>
      Effect.gen(function*() {
        const { connector } = yield* servedPair(yield* transport.address)
        const kit = yield* RpcClient.makeWith(connector, Kit)
        const data = new Uint8Array(3 * 1024 * 1024).map((_, i) => i % 251)
        const reply = yield* kit.Bytes({ data, note: "big" }).pipe(within("3 MB Bytes"))
        assert.strictEqual(reply.note, `big:${data.length}`)
        assert.strictEqual(reply.data.length, data.length)
        assert.strictEqual(reply.data[0], data[data.length - 1])
        assert.strictEqual(reply.data[data.length - 1], data[0])
        const arith = yield* RpcClient.makeWith(connector, Arith)
        const count = yield* Stream.runCount(arith.Count({ A: 50_000, B: 0 })).pipe(within("50k items"))
        assert.strictEqual(count, 50_000)
        const total = yield* kit.Total(Stream.range(1, 20_000).pipe(Stream.map((A) => ({ A })))).pipe(
          within("20k inputs")
        )
        assert.deepStrictEqual(total, { C: 20_000 * 20_001 / 2 })
      }))

    it.live("RpcServer.layer and RpcClient.make work with the Peer service", () =>
      Effect.gen(function*() {
        const address = yield* transport.address
        const server = yield* Layer.build(
          RpcServer.layer(Arith, arithHandlers).pipe(Layer.provideMerge(Peer.layer()))
        )
        const bound = yield* Effect.orDie(Context.get(server, Peer.Peer).bind(address))
        const client = yield* Layer.build(Peer.layer())
        const result = yield* Effect.gen(function*() {
          const peer = yield* Peer.Peer
          yield* Effect.orDie(peer.connect(bound))
          const arith = yield* RpcClient.make(Arith)
          return yield* arith.Add({ A: 2, B: 3 })
        }).pipe(Effect.provide(client), within("Add through layers"))
        assert.deepStrictEqual(result, { C: 5 })
      }))
  })

  // -------------------------------------------------------------------------------------------
  // 2. Errors
  // -------------------------------------------------------------------------------------------

  describe("errors", () => {
    it.live("failures in the error Schema arrive as the same classes with their fields", () =>
      Effect.gen(function*() {
        const { connector } = yield* connectedPair(yield* transport.address, { binder: serveAll })
        const arith = yield* RpcClient.makeWith(connector, Arith)
        const streaming = yield* RpcClient.makeWith(connector, StreamingArith)
        const kit = yield* RpcClient.makeWith(connector, Kit)

        const div = yield* Effect.flip(arith.Div({ A: 7, B: 0 })).pipe(within("Div"))
        assert.instanceOf(div, DivideByZero)
        assert.strictEqual(div.message, "divide by zero")

        const scan = yield* Effect.flip(arith.Scan("twelve")).pipe(within("Scan"))
        assert.instanceOf(scan, ScanError)
        assert.strictEqual(scan.input, "twelve")

        const rejected = yield* Effect.flip(kit.Reject({ code: 42 })).pipe(within("Reject"))
        assert.instanceOf(rejected, Rejected)
        assert.strictEqual(rejected.reason, "no")
        assert.strictEqual(rejected.code, 42)

        // in a stream: the items first, then the typed error
        const thrive = yield* itemsThenFailure(streaming.Thrive({ A: 3, Count: 100, ErrorAt: 3 })).pipe(
          within("Thrive")
        )
        assert.deepStrictEqual(thrive.items, [{ C: 3, Index: 0 }, { C: 3, Index: 1 }, { C: 3, Index: 2 }])
        assert.instanceOf(thrive.error, TriggeredError)
        assert.strictEqual(thrive.error.Index, 3)

        const later = yield* itemsThenFailure(kit.RejectLater({ n: 2 })).pipe(within("RejectLater"))
        assert.deepStrictEqual(later.items, [1, 2])
        assert.instanceOf(later.error, Rejected)
        assert.strictEqual(later.error.reason, "later")
        assert.strictEqual(later.error.code, 2)
      }))

    it.live("a defect is RemoteDefect with the message", () =>
      Effect.gen(function*() {
        const { connector } = yield* connectedPair(yield* transport.address, { binder: serveAll })
        const kit = yield* RpcClient.makeWith(connector, Kit)
        const boom = reasonOf(yield* Effect.flip(kit.Boom(undefined)).pipe(within("Boom")))
        assert.strictEqual(boom._tag, "RemoteDefect")
        assert.strictEqual(boom._tag === "RemoteDefect" ? boom.text : "", "kaboom")

        const later = yield* itemsThenFailure(kit.BoomLater(undefined)).pipe(within("BoomLater"))
        assert.deepStrictEqual(later.items, [1, 2])
        const reason = reasonOf(later.error)
        assert.strictEqual(reason._tag, "RemoteDefect")
        assert.strictEqual(reason._tag === "RemoteDefect" ? reason.text : "", "kaboom later")
        // the connection is still fine
        const arith = yield* RpcClient.makeWith(connector, Arith)
        assert.deepStrictEqual(yield* arith.Add({ A: 1, B: 1 }).pipe(within("Add after defects")), { C: 2 })
      }))

    it.live("unknown method, unknown service and ill-formed names are UnknownMethod with the original's texts", () =>
      Effect.gen(function*() {
        const { connector } = yield* connectedPair(yield* transport.address, { binder: serveAll })
        const cases = [
          {
            group: RpcGroup.make(Rpc.unary("BadOperation", { payload: Args, success: Reply })).prefix("Arith."),
            method: "Arith.BadOperation",
            text: "duplex: can't find method Arith.BadOperation"
          },
          {
            group: RpcGroup.make(Rpc.unary("BadOperation", { payload: Args, success: Reply })).prefix("Nope."),
            method: "Nope.BadOperation",
            text: "duplex: can't find service Nope.BadOperation"
          },
          {
            group: RpcGroup.make(Rpc.unary("BadOperation", { payload: Args, success: Reply })),
            method: "BadOperation",
            text: "duplex: service/method request ill-formed: BadOperation"
          },
          {
            group: RpcGroup.make(Rpc.unary("BadOperation", { payload: Args, success: Reply })).prefix("Arith.Deep."),
            method: "Arith.Deep.BadOperation",
            text: "duplex: service/method request ill-formed: Arith.Deep.BadOperation"
          }
        ]
        for (const { group, method, text } of cases) {
          const client = yield* RpcClient.makeWith(connector, group)
          const reason = reasonOf(yield* Effect.flip(client.BadOperation({ A: 7, B: 8 })).pipe(within(method)))
          assert.strictEqual(reason._tag, "UnknownMethod")
          if (reason._tag === "UnknownMethod") {
            assert.strictEqual(reason.text, text)
            assert.strictEqual(reason.method, method)
            assert.strictEqual(reason.message, text)
          }
        }
        // streaming kinds too
        const streams = RpcGroup.make(
          Rpc.serverStream("NoStream", { success: Schema.Int }),
          Rpc.bidi("NoBidi", { payload: Schema.Int, success: Schema.Int }),
          Rpc.clientStream("NoClient", { payload: Schema.Int, success: Schema.Int })
        ).prefix("Arith.")
        const client = yield* RpcClient.makeWith(connector, streams)
        const results = yield* Effect.all([
          Effect.flip(Stream.runCollect(client.NoStream(undefined))),
          Effect.flip(Stream.runCollect(client.NoBidi(Stream.make(1, 2)))),
          Effect.flip(client.NoClient(Stream.make(1, 2)))
        ]).pipe(within("streaming unknown methods"))
        assert.deepStrictEqual(
          results.map((e) => {
            const reason = reasonOf(e)
            return reason._tag === "UnknownMethod" ? reason.text : reason._tag
          }),
          [
            "duplex: can't find method Arith.NoStream",
            "duplex: can't find method Arith.NoBidi",
            "duplex: can't find method Arith.NoClient"
          ]
        )
      }))

    // BUG: Peer.routeUnsafe adds the service name to the peer's `services` set but its remover
    // never takes it out, so once a group's serve scope has closed its methods are refused as
    // "duplex: can't find method Kit.Seen" instead of the original's "can't find service Kit.Seen"
    // (the route itself is removed correctly).
    it.live("a group whose serving scope closed is an unknown service again", () =>
      Effect.gen(function*() {
        const scope = yield* Scope.make()
        const { connector } = yield* connectedPair(yield* transport.address, {
          binder: (peer) =>
            Effect.gen(function*() {
              yield* RpcServer.serve(peer, Arith, arithHandlers)
              const kit = yield* makeKit(peer)
              yield* RpcServer.serve(peer, Kit, kit.handlers).pipe(Scope.provide(scope))
            })
        })
        const kit = yield* RpcClient.makeWith(connector, Kit)
        yield* kit.Seen(undefined).pipe(within("Seen while served"))
        yield* Scope.close(scope, Exit.void)
        const reason = reasonOf(yield* Effect.flip(kit.Seen(undefined)).pipe(within("Seen after the scope closed")))
        assert.strictEqual(reason._tag, "UnknownMethod")
        assert.strictEqual(reason._tag === "UnknownMethod" ? reason.text : "", "duplex: can't find service Kit.Seen")
      }))

    it.live("arguments the server cannot decode are BadRequest (every kind)", () =>
      Effect.gen(function*() {
        const { connector } = yield* connectedPair(yield* transport.address, { binder: serveAll })
        const wrong = RpcGroup.make(
          Rpc.unary("Add", { payload: Schema.String, success: Reply }),
          Rpc.serverStream("Count", { payload: { A: Schema.String }, success: Reply })
        ).prefix("Arith.")
        const wrongStreams = RpcGroup.make(
          Rpc.bidi("Echo", { payload: Schema.String, success: Schema.Int }),
          Rpc.bidi("Sum", { payload: { A: Schema.Boolean }, success: Schema.Int })
        ).prefix("StreamingArith.")
        const wrongKit = RpcGroup.make(Rpc.clientStream("Total", { payload: Schema.Int, success: Reply })).prefix(
          "Kit."
        )
        const client = yield* RpcClient.makeWith(connector, wrong)
        const streams = yield* RpcClient.makeWith(connector, wrongStreams)
        const kit = yield* RpcClient.makeWith(connector, wrongKit)
        const errors = yield* Effect.all([
          Effect.flip(client.Add("7+8")),
          Effect.flip(Stream.runCollect(client.Count({ A: "five" }))),
          Effect.flip(Stream.runCollect(streams.Echo(Stream.make("x")))),
          Effect.flip(Stream.runCollect(streams.Sum(Stream.make({ A: true })))),
          Effect.flip(kit.Total(Stream.make(1, 2)))
        ]).pipe(within("bad requests"))
        for (const error of errors) assert.strictEqual(reasonOf(error)._tag, "BadRequest")
        // the connection is still fine
        const arith = yield* RpcClient.makeWith(connector, Arith)
        assert.deepStrictEqual(yield* arith.Add({ A: 1, B: 1 }).pipe(within("Add after bad requests")), { C: 2 })
      }))

    it.live("a payload the client itself cannot encode is BadRequest without a call", () =>
      Effect.gen(function*() {
        const { connector } = yield* connectedPair(yield* transport.address, { binder: serveAll })
        const arith = yield* RpcClient.makeWith(connector, Arith)
        const error = yield* Effect.flip(arith.Add({ A: 1.5, B: 1 })).pipe(within("Add 1.5"))
        assert.strictEqual(reasonOf(error)._tag, "BadRequest")
      }))

    it.live("a reply the client cannot decode is BadResponse (unary and streams)", () =>
      Effect.gen(function*() {
        const { connector } = yield* connectedPair(yield* transport.address, { binder: serveAll })
        const wrong = RpcGroup.make(
          Rpc.unary("Add", { payload: Args, success: Schema.String }),
          Rpc.serverStream("Count", { payload: Args, success: Schema.String })
        ).prefix("Arith.")
        const wrongEcho = RpcGroup.make(
          Rpc.bidi("Echo", {
            payload: Schema.Struct({ A: Schema.Int, Count: Schema.Int, ErrorAt: Schema.Int }),
            success: Schema.Int
          })
        ).prefix("StreamingArith.")
        const client = yield* RpcClient.makeWith(connector, wrong)
        const echo = yield* RpcClient.makeWith(connector, wrongEcho)
        const errors = yield* Effect.all([
          Effect.flip(client.Add({ A: 1, B: 2 })),
          Effect.flip(Stream.runCollect(client.Count({ A: 2, B: 0 }))),
          Effect.flip(Stream.runCollect(echo.Echo(Stream.make({ A: 1, Count: 2, ErrorAt: 0 }))))
        ]).pipe(within("bad responses"))
        for (const error of errors) assert.strictEqual(reasonOf(error)._tag, "BadResponse")
      }))

    it.live("codecs: an unknown codec fails make; a codec only the client knows is CodecUnsupported", () =>
      Effect.gen(function*() {
        const { connector } = yield* connectedPair(yield* transport.address, { binder: serveAll })
        const nope = reasonOf(yield* Effect.flip(RpcClient.makeWith(connector, Arith, { codec: "nope" })))
        assert.strictEqual(nope._tag, "CodecUnsupported")
        assert.strictEqual(nope._tag === "CodecUnsupported" ? nope.codec : "", "nope")

        const clientOnly = yield* RpcClient.makeWith(connector, Arith, { codec: tagged.name }).pipe(
          Effect.provide(Codec.layer(tagged))
        )
        const reason = reasonOf(yield* Effect.flip(clientOnly.Add({ A: 1, B: 2 })).pipe(within("Add")))
        assert.strictEqual(reason._tag, "CodecUnsupported")
        assert.strictEqual(reason._tag === "CodecUnsupported" ? reason.codec : "", tagged.name)
        const streamReason = reasonOf(
          yield* Effect.flip(Stream.runCollect(clientOnly.Count({ A: 1, B: 0 }))).pipe(within("Count"))
        )
        assert.strictEqual(streamReason._tag, "CodecUnsupported")
      }))

    it.live("losing the connection mid-call (server peer closed) is ConnectionLost", () =>
      Effect.gen(function*() {
        const address = yield* transport.address
        const serverScope = yield* Scope.make()
        const binder = yield* Peer.make().pipe(Scope.provide(serverScope))
        const probes = yield* serveAll(binder).pipe(Scope.provide(serverScope))
        const bound = yield* Effect.orDie(binder.bind(address))
        const connector = yield* Peer.make()
        yield* Effect.orDie(connector.connect(bound))
        const kit = yield* RpcClient.makeWith(connector, Kit)
        const unary = yield* Effect.forkChild(Effect.flip(kit.Hang(undefined)))
        const stream = yield* Effect.forkChild(itemsThenFailure(kit.Endless(undefined)))
        yield* Deferred.await(probes.hangStarted).pipe(within("Hang started"))
        yield* Scope.close(serverScope, Exit.void)
        const unaryError = yield* Fiber.join(unary).pipe(within("Hang fails"))
        assert.strictEqual(reasonOf(unaryError)._tag, "ConnectionLost")
        const streamOutcome = yield* Fiber.join(stream).pipe(within("Endless fails"))
        assert.strictEqual(reasonOf(streamOutcome.error)._tag, "ConnectionLost")
      }))

    it.live("a binder process killed with SIGKILL mid-call is ConnectionLost", () =>
      Effect.gen(function*() {
        const child = yield* spawnFixture("rpc-binder.ts", [yield* transport.address])
        const ready = yield* child.nextLine.pipe(within("child ready", "20 seconds"))
        assert.match(ready, /^ready /)
        const connector = yield* Peer.make()
        yield* Effect.orDie(connector.connect(ready.slice("ready ".length)))
        const probe = yield* RpcClient.makeWith(
          connector,
          RpcGroup.make(Rpc.unary("Hang", { success: Schema.Void })).prefix("Probe.")
        )
        const streaming = yield* RpcClient.makeWith(connector, StreamingArith)
        const firstItem = yield* Deferred.make<void>()
        const unary = yield* Effect.forkChild(Effect.flip(probe.Hang(undefined)))
        const stream = yield* Effect.forkChild(
          itemsThenFailure(
            streaming.Thrive({ A: 1, Count: 1_000_000_000, ErrorAt: -1 }).pipe(
              Stream.tap(() => Deferred.succeed(firstItem, undefined))
            )
          )
        )
        assert.strictEqual(yield* child.nextLine.pipe(within("Hang reached the child")), "called Probe.Hang")
        yield* Deferred.await(firstItem).pipe(within("first Thrive item"))
        yield* child.kill("SIGKILL")
        yield* child.exited.pipe(within("child exits"))
        const unaryError = yield* Fiber.join(unary).pipe(within("Hang fails"))
        assert.strictEqual(reasonOf(unaryError)._tag, "ConnectionLost")
        const streamOutcome = yield* Fiber.join(stream).pipe(within("Thrive fails"))
        assert.isAbove(streamOutcome.items.length, 0)
        assert.strictEqual(reasonOf(streamOutcome.error)._tag, "ConnectionLost")
      }), 30_000)

    it.live("calls that cannot be placed are Unavailable (full edge queue, closed peer)", () =>
      Effect.gen(function*() {
        const lonely = yield* Peer.make({ edgeQueueCapacity: 1, whenEdgeQueueFull: "fail" })
        const arith = yield* RpcClient.makeWith(lonely, Arith)
        const waiting = yield* Effect.forkChild(Effect.flip(arith.Add({ A: 1, B: 1 })), { startImmediately: true })
        const full = reasonOf(yield* Effect.flip(arith.Add({ A: 1, B: 2 })).pipe(within("second Add")))
        assert.strictEqual(full._tag, "Unavailable")
        assert.match(full._tag === "Unavailable" ? full.text : "", /edge queue full/)

        // closing a peer fails the calls waiting in its edge queue, and later calls at once
        const scope = yield* Scope.make()
        const closing = yield* Peer.make().pipe(Scope.provide(scope))
        const closingArith = yield* RpcClient.makeWith(closing, Arith)
        const pending = yield* Effect.forkChild(Effect.flip(closingArith.Add({ A: 1, B: 1 })), {
          startImmediately: true
        })
        const pendingStream = yield* Effect.forkChild(
          Effect.flip(Stream.runCollect(closingArith.Count({ A: 1, B: 0 }))),
          {
            startImmediately: true
          }
        )
        yield* Scope.close(scope, Exit.void)
        assert.strictEqual(reasonOf(yield* Fiber.join(pending).pipe(within("pending Add")))._tag, "Unavailable")
        assert.strictEqual(reasonOf(yield* Fiber.join(pendingStream).pipe(within("pending Count")))._tag, "Unavailable")
        const after = reasonOf(yield* Effect.flip(closingArith.Add({ A: 1, B: 1 })).pipe(within("Add after close")))
        assert.strictEqual(after._tag, "Unavailable")
        yield* Fiber.interrupt(waiting)
      }))
  })

  // -------------------------------------------------------------------------------------------
  // 3. Cancellation
  // -------------------------------------------------------------------------------------------

  describe("cancellation", () => {
    it.live("interrupting the caller of a slow unary call interrupts the remote handler", () =>
      Effect.gen(function*() {
        const { binder, connector, probes } = yield* servedPair(yield* transport.address)
        const kit = yield* RpcClient.makeWith(connector, Kit)
        const call = yield* Effect.forkChild(kit.Hang(undefined))
        yield* Deferred.await(probes.hangStarted).pipe(within("Hang started"))
        yield* Fiber.interrupt(call).pipe(within("interrupting the caller"))
        assert.isTrue(Exit.hasInterrupts(yield* Fiber.await(call)))
        yield* Deferred.await(probes.hangInterrupted).pipe(within("remote Hang interrupted"))
        assert.strictEqual(yield* openChannels(connector), 0)
        assert.strictEqual(yield* openChannels(binder), 0)
      }))

    it.live("a server-stream consumer that stops early stops the remote producer", () =>
      Effect.gen(function*() {
        const { binder, connector, probes } = yield* servedPair(yield* transport.address)
        const kit = yield* RpcClient.makeWith(connector, Kit)
        const items = yield* Stream.runCollect(kit.Endless(undefined).pipe(Stream.take(3))).pipe(within("take(3)"))
        assert.deepStrictEqual(items, [0, 1, 2])
        yield* Deferred.await(probes.endlessDone).pipe(within("producer finalizer"))
        const produced = probes.endless.produced
        assert.isAtLeast(produced, 3)
        assert.isBelow(produced, 1000, "the producer stopped soon after the cancel")
        assert.strictEqual(yield* openChannels(connector), 0)
        assert.strictEqual(yield* openChannels(binder), 0)
      }))

    it.live("interrupting the caller of a client stream stops the remote handler", () =>
      Effect.gen(function*() {
        const { connector, probes } = yield* servedPair(yield* transport.address)
        const kit = yield* RpcClient.makeWith(connector, Kit)
        const call = yield* Effect.forkChild(kit.Drain(pacedInts.pipe(Stream.map((A) => ({ A })))))
        yield* Deferred.await(probes.drainStarted).pipe(within("Drain got input"))
        yield* Fiber.interrupt(call).pipe(within("interrupting the caller"))
        const exit = yield* Deferred.await(probes.drainExit).pipe(within("remote Drain ended"))
        // The cancel fails the handler's input (RequestStreamError "Cancelled") and interrupts its
        // fiber; whichever comes first ends it.
        assert.isTrue(Exit.isFailure(exit))
        if (Exit.isFailure(exit) && !Cause.hasInterruptsOnly(exit.cause)) {
          const error = Cause.findErrorOption(exit.cause)
          assert.isTrue(Option.isSome(error))
          if (Option.isSome(error)) {
            assert.instanceOf(error.value, RequestStreamError)
            assert.strictEqual(error.value.reason, "Cancelled")
          }
        }
      }))

    it.live("a bidi consumer that stops early stops the remote handler", () =>
      Effect.gen(function*() {
        const { binder, connector, probes } = yield* servedPair(yield* transport.address)
        const kit = yield* RpcClient.makeWith(connector, Kit)
        const items = yield* Stream.runCollect(kit.EchoInts(pacedInts).pipe(Stream.take(2))).pipe(within("take(2)"))
        assert.deepStrictEqual(items, [0, 1])
        yield* Deferred.await(probes.echoDone).pipe(within("remote EchoInts finalizer"))
        assert.strictEqual(yield* openChannels(connector), 0)
        assert.strictEqual(yield* openChannels(binder), 0)
      }))

    it.live("a cancel from the remote (CloseStream) is Cancelled", () =>
      Effect.gen(function*() {
        const { connector } = yield* connectedPair(yield* transport.address, {
          binder: (peer) =>
            Effect.gen(function*() {
              yield* serveAll(peer)
              // methods without a route go to this plain channel handler, which cancels them
              yield* peer.serve((channel) =>
                Effect.gen(function*() {
                  if (channel.method === "Raw.CancelStream") {
                    yield* channel.send(msgpackEncode(1))
                    yield* channel.send(msgpackEncode(2))
                  } else {
                    yield* channel.take
                  }
                  yield* channel.cancel
                })
              )
            })
        })
        const raw = yield* RpcClient.makeWith(connector, Raw)
        const unary = reasonOf(yield* Effect.flip(raw.Cancel(undefined)).pipe(within("Raw.Cancel")))
        assert.strictEqual(unary._tag, "Cancelled")
        assert.strictEqual(unary._tag === "Cancelled" ? unary.text : "", "CloseStream")

        // frames still queued when the cancel arrives are dropped (the original does the same)
        const stream = yield* itemsThenFailure(raw.CancelStream(undefined)).pipe(within("Raw.CancelStream"))
        assert.deepStrictEqual(stream.items, [1, 2].slice(0, stream.items.length))
        assert.strictEqual(reasonOf(stream.error)._tag, "Cancelled")

        // a handler that interrupts itself cancels the call on the wire
        const kit = yield* RpcClient.makeWith(connector, Kit)
        const self = reasonOf(yield* Effect.flip(kit.SelfInterrupt(undefined)).pipe(within("SelfInterrupt")))
        assert.strictEqual(self._tag, "Cancelled")
      }))
  })

  // -------------------------------------------------------------------------------------------
  // 4. Deadlines
  // -------------------------------------------------------------------------------------------

  describe("deadlines", () => {
    it.live("a call past its deadline is DeadlineExceeded and the handler is interrupted", () =>
      Effect.gen(function*() {
        const { connector, probes } = yield* servedPair(yield* transport.address)
        const kit = yield* RpcClient.makeWith(connector, Kit)
        const error = yield* Effect.flip(kit.Hang(undefined, { timeout: "200 millis" })).pipe(within("Hang"))
        const reason = reasonOf(error)
        assert.strictEqual(reason._tag, "DeadlineExceeded")
        assert.strictEqual(reason._tag === "DeadlineExceeded" ? reason.timeoutMillis : 0, 200)
        const headers = yield* Deferred.await(probes.hangStarted).pipe(within("Hang started"))
        assert.strictEqual(headers["duplex-timeout"], "200")
        yield* Deferred.await(probes.hangInterrupted).pipe(within("remote Hang interrupted"))
      }))

    it.live("a client-level timeout applies to every call; calls within their deadline succeed", () =>
      Effect.gen(function*() {
        const { connector, probes } = yield* servedPair(yield* transport.address)
        const arith = yield* RpcClient.makeWith(connector, Arith, { timeout: "10 seconds" })
        assert.deepStrictEqual(yield* arith.Add({ A: 1, B: 2 }).pipe(within("Add")), { C: 3 })
        assert.deepStrictEqual(
          yield* arith.Add({ A: 1, B: 2 }, { timeout: "5 seconds" }).pipe(within("Add with a call deadline")),
          { C: 3 }
        )
        assert.deepStrictEqual(yield* Stream.runCollect(arith.Count({ A: 2, B: 0 })).pipe(within("Count")), [
          { C: 1 },
          { C: 2 }
        ])
        const kit = yield* RpcClient.makeWith(connector, Kit, { timeout: "10 seconds" })
        assert.deepStrictEqual(yield* kit.Total(Stream.make({ A: 1 }, { A: 2 })).pipe(within("Total")), { C: 3 })
        assert.deepStrictEqual(yield* Stream.runCollect(kit.EchoInts(Stream.make(1, 2))).pipe(within("EchoInts")), [
          1,
          2
        ])
        const seen = yield* kit.Seen(undefined).pipe(within("Seen"))
        assert.strictEqual(seen.headers["duplex-timeout"], "10000")
        const short = yield* RpcClient.makeWith(connector, Kit, { timeout: "200 millis" })
        const reason = reasonOf(yield* Effect.flip(short.Hang(undefined)).pipe(within("Hang")))
        assert.strictEqual(reason._tag, "DeadlineExceeded")
        assert.strictEqual((yield* Deferred.await(probes.hangStarted))["duplex-timeout"], "200")
        yield* Deferred.await(probes.hangInterrupted).pipe(within("remote Hang interrupted"))
      }))

    it.live("a stream past its deadline fails with DeadlineExceeded after its items, and stops the producer", () =>
      Effect.gen(function*() {
        const { connector, probes } = yield* servedPair(yield* transport.address)
        const kit = yield* RpcClient.makeWith(connector, Kit)
        const outcome = yield* itemsThenFailure(kit.Endless(undefined, { timeout: "200 millis" })).pipe(
          within("Endless")
        )
        assert.strictEqual(reasonOf(outcome.error)._tag, "DeadlineExceeded")
        assert.deepStrictEqual(outcome.items, outcome.items.map((_, i) => i))
        yield* Deferred.await(probes.endlessDone).pipe(within("producer finalizer"))
      }))

    it.live("the server enforces duplex-timeout by itself", () =>
      Effect.gen(function*() {
        const { connector, probes } = yield* servedPair(yield* transport.address)
        // a raw call without any client-side timer
        const channel = yield* connector.open("Kit.Hang", { headers: { "duplex-timeout": "100" } })
        yield* channel.sendLast(msgpackEncode(null))
        const failure = yield* Effect.flip(channel.take).pipe(within("the deadline error frame"))
        assert.isTrue(failure._tag === "ChannelError" && failure.reason._tag === "RemoteFailure")
        if (failure._tag === "ChannelError" && failure.reason._tag === "RemoteFailure") {
          assert.strictEqual(failure.reason.headers?.["duplex-error"], "deadline")
        }
        yield* Deferred.await(probes.hangInterrupted).pipe(within("Hang interrupted"))
      }))
  })

  // -------------------------------------------------------------------------------------------
  // 5. Headers
  // -------------------------------------------------------------------------------------------

  describe("headers", () => {
    const checkHeaders = (caller: Peer.Peer, options: RpcClient.CallOptions) =>
      Effect.gen(function*() {
        const kit = yield* RpcClient.makeWith(caller, Kit, { headers: { "x-client": "c", "x-both": "client" } })
        let response: Headers.Headers | undefined
        const seen = yield* kit.Seen(undefined, {
          ...options,
          headers: { "x-both": "call", "x-call": "k" },
          onResponseHeaders: (h) => {
            response = h
          }
        }).pipe(within("Seen"))
        const expected = { "x-client": "c", "x-both": "call", "x-call": "k" }
        assert.deepStrictEqual(seen.headers, expected)
        assert.deepStrictEqual(seen.serviceHeaders, expected)
        assert.strictEqual(seen.remoteId, caller.id)
        assert.strictEqual(seen.serviceRemoteId, caller.id)
        assert.strictEqual(seen.method, "Kit.Seen")
        assert.deepStrictEqual({ ...response }, { "x-reply": "r1" })
      })

    it.live("request headers (client-level, per-call overriding) reach the handler; response headers come back", () =>
      Effect.gen(function*() {
        const { connector } = yield* servedPair(yield* transport.address)
        yield* checkHeaders(connector, {})
      }))

    it.live("the same when the connecting peer serves and the binding peer calls", () =>
      Effect.gen(function*() {
        const { binder, connector } = yield* servedPair(yield* transport.address, "connector")
        yield* checkHeaders(binder, { remote: connector.id })
      }))

    it.live("response headers of a server stream reach onResponseHeaders", () =>
      Effect.gen(function*() {
        const { connector } = yield* servedPair(yield* transport.address)
        const kit = yield* RpcClient.makeWith(connector, Kit)
        let response: Headers.Headers | undefined
        const items = yield* Stream.runCollect(kit.SeenStream(undefined, {
          onResponseHeaders: (h) => {
            response = h
          }
        })).pipe(within("SeenStream"))
        assert.deepStrictEqual(items, ["a", "b"])
        assert.deepStrictEqual({ ...response }, { "x-reply": "s1" })
      }))
  })

  // -------------------------------------------------------------------------------------------
  // 6. Callbacks
  // -------------------------------------------------------------------------------------------

  describe("callbacks", () => {
    it.live("a handler on the binding peer calls back into the connecting caller", () =>
      Effect.gen(function*() {
        const { connector } = yield* connectedPair(yield* transport.address, {
          binder: (peer) => Effect.asVoid(serveAll(peer)),
          connector: serveCallback
        })
        const kit = yield* RpcClient.makeWith(connector, Kit)
        assert.deepStrictEqual(yield* kit.Compute({ A: 1, B: 2 }).pipe(within("Compute")), { C: 3, note: "ok:1+2" })
      }))

    it.live("a handler on the connecting peer calls back into the binding caller", () =>
      Effect.gen(function*() {
        const { binder, connector } = yield* connectedPair(yield* transport.address, {
          binder: serveCallback,
          connector: (peer) => Effect.asVoid(serveAll(peer))
        })
        const kit = yield* RpcClient.makeWith(binder, Kit, { remote: connector.id })
        const results = yield* Effect.all(
          Array.from({ length: 5 }, (_, i) => kit.Compute({ A: i, B: 10 })),
          { concurrency: "unbounded" }
        ).pipe(within("Compute x5"))
        assert.deepStrictEqual(results, Array.from({ length: 5 }, (_, i) => ({ C: i + 10, note: `ok:${i}+10` })))
      }))
  })

  // -------------------------------------------------------------------------------------------
  // 7. Codecs
  // -------------------------------------------------------------------------------------------

  describe("codecs", () => {
    it.live("json: every kind, bytes as base64, typed errors", () =>
      Effect.gen(function*() {
        const { connector } = yield* servedPair(yield* transport.address)
        yield* exerciseAllKinds(connector, { codec: "json" })
        const kit = yield* RpcClient.makeWith(connector, Kit, { codec: "json" })
        const data = new Uint8Array([0, 1, 2, 255])
        const reply = yield* kit.Bytes({ data, note: "n" }).pipe(within("Bytes"))
        assert.instanceOf(reply.data, Uint8Array)
        assert.deepStrictEqual(Array.from(reply.data), [255, 2, 1, 0])
        assert.strictEqual(reply.note, "n:4")
        const arith = yield* RpcClient.makeWith(connector, Arith, { codec: "json" })
        assert.instanceOf(yield* Effect.flip(arith.Div({ A: 1, B: 0 })).pipe(within("Div")), DivideByZero)
        const seen = yield* kit.Seen(undefined).pipe(within("Seen"))
        assert.strictEqual(seen.headers["duplex-codec"], "json")

        // on the wire: JSON text, the bytes as base64
        const channel = yield* connector.open("Kit.Bytes", { headers: { "duplex-codec": "json" } })
        yield* channel.sendLast(new TextEncoder().encode(JSON.stringify({ data: "AAEC/w==", note: "w" })))
        const raw = yield* channel.take.pipe(within("raw json reply"))
        assert.deepStrictEqual(JSON.parse(new TextDecoder().decode(raw)), { data: "/wIBAA==", note: "w:4" })
      }))

    it.live("a custom codec registered on both sides with Codec.layer", () =>
      Effect.gen(function*() {
        const cell = probesCell()
        const { connector } = yield* connectedPair(yield* transport.address, {
          binder: (peer) => cell.serve(peer).pipe(Effect.provide(Codec.layer(tagged)))
        })
        const before = { ...taggedStats }
        yield* Effect.gen(function*() {
          yield* exerciseAllKinds(connector, { codec: "tagged" })
          const kit = yield* RpcClient.makeWith(connector, Kit, { codec: "tagged" })
          const reply = yield* kit.Bytes({ data: new Uint8Array([7, 8]), note: "t" }).pipe(within("Bytes"))
          assert.deepStrictEqual(Array.from(reply.data), [8, 7])
          const seen = yield* kit.Seen(undefined).pipe(within("Seen"))
          assert.strictEqual(seen.headers["duplex-codec"], "tagged")
          const arith = yield* RpcClient.makeWith(connector, Arith, { codec: "tagged" })
          assert.instanceOf(yield* Effect.flip(arith.Div({ A: 1, B: 0 })).pipe(within("Div")), DivideByZero)
        }).pipe(Effect.provide(Codec.layer(tagged)))
        // requests and replies went through it (a msgpack payload would have failed to decode)
        assert.isAbove(taggedStats.encoded - before.encoded, 20)
        assert.isAbove(taggedStats.decoded - before.decoded, 20)
        // the server still speaks the built-in codecs
        yield* exerciseAllKinds(connector)
        yield* exerciseAllKinds(connector, { codec: "json" })
      }))
  })

  // -------------------------------------------------------------------------------------------
  // 8. Placement: edge queue, round-robin
  // -------------------------------------------------------------------------------------------

  describe("placement", () => {
    it.live("calls made before any connection wait in the edge queue and complete after connect", () =>
      Effect.gen(function*() {
        const binder = yield* Peer.make()
        yield* serveAll(binder)
        const bound = yield* Effect.orDie(binder.bind(yield* transport.address))
        const connector = yield* Peer.make()
        const arith = yield* RpcClient.makeWith(connector, Arith)
        const streaming = yield* RpcClient.makeWith(connector, StreamingArith)
        const kit = yield* RpcClient.makeWith(connector, Kit)
        const start = { startImmediately: true } as const
        const unary = yield* Effect.forkChild(arith.Add({ A: 7, B: 8 }), start)
        const server = yield* Effect.forkChild(Stream.runCollect(arith.Count({ A: 3, B: 0 })), start)
        const client = yield* Effect.forkChild(kit.Total(Stream.make({ A: 1 }, { A: 2 })), start)
        const bidi = yield* Effect.forkChild(
          Stream.runCollect(streaming.Echo(Stream.make(StreamingArgsOf(1, 10), StreamingArgsOf(2, 20)))),
          start
        )
        assert.strictEqual(yield* connector.pendingOpens, 4)
        yield* Effect.orDie(connector.connect(bound))
        assert.deepStrictEqual(yield* Fiber.join(unary).pipe(within("Add")), { C: 15 })
        assert.deepStrictEqual(yield* Fiber.join(server).pipe(within("Count")), [{ C: 1 }, { C: 2 }, { C: 3 }])
        assert.deepStrictEqual(yield* Fiber.join(client).pipe(within("Total")), { C: 3 })
        assert.deepStrictEqual(yield* Fiber.join(bidi).pipe(within("Echo")), [
          { C: 1, Index: 10 },
          { C: 2, Index: 20 }
        ])
        assert.strictEqual(yield* connector.pendingOpens, 0)
      }))

    it.live("interrupting a unary call still in the edge queue removes it", () =>
      Effect.gen(function*() {
        const counts = [0]
        const binder = yield* Peer.make()
        yield* RpcServer.serve(binder, Arith, countingArith(counts, 0))
        const bound = yield* Effect.orDie(binder.bind(yield* transport.address))
        const connector = yield* Peer.make()
        const arith = yield* RpcClient.makeWith(connector, Arith)
        const unary = yield* Effect.forkChild(arith.Add({ A: 1, B: 1 }), { startImmediately: true })
        assert.strictEqual(yield* connector.pendingOpens, 1)
        yield* Fiber.interrupt(unary).pipe(within("interrupting the queued call", "2 seconds"))
        assert.strictEqual(yield* connector.pendingOpens, 0)
        yield* Effect.orDie(connector.connect(bound))
        yield* connector.awaitRemotes(1).pipe(within("connected"))
        // a later call is the first one the server sees
        assert.deepStrictEqual(yield* arith.Add({ A: 2, B: 2 }).pipe(within("Add")), { C: 4 })
        assert.deepStrictEqual(counts, [1])
      }))

    // BUG: RpcClient's acquireChannel (server-stream and bidi calls) waits for placement inside the
    // *acquire* of Effect.acquireRelease, which is uninterruptible: a streaming call waiting in the
    // edge queue cannot be interrupted (Fiber.interrupt hangs until some connection appears, then
    // the channel is opened only to be cancelled). Peer.open does it right with
    // uninterruptibleMask + restore.
    it.live("interrupting a streaming call still in the edge queue removes it", () =>
      Effect.gen(function*() {
        const connector = yield* Peer.make()
        const arith = yield* RpcClient.makeWith(connector, Arith)
        const streaming = yield* RpcClient.makeWith(connector, StreamingArith)
        const start = { startImmediately: true } as const
        const server = yield* Effect.forkDetach(Stream.runCollect(arith.Count({ A: 1, B: 0 })), start)
        const bidi = yield* Effect.forkDetach(Stream.runCollect(streaming.Echo(Stream.empty)), start)
        assert.strictEqual(yield* connector.pendingOpens, 2)
        yield* Fiber.interrupt(server).pipe(within("interrupting the queued server stream", "1 second"))
        yield* Fiber.interrupt(bidi).pipe(within("interrupting the queued bidi call", "1 second"))
        assert.strictEqual(yield* connector.pendingOpens, 0)
      }))

    // BUG: same cause: the deadline of a server-stream (or bidi) call cannot fire while the call
    // waits in the edge queue (Stream.interruptWhen cannot interrupt the uninterruptible acquire),
    // so `timeout` is not enforced until a connection appears.
    it.live("a streaming call's deadline fires while it waits in the edge queue", () =>
      Effect.gen(function*() {
        const connector = yield* Peer.make()
        const arith = yield* RpcClient.makeWith(connector, Arith)
        // forked detached and joined: a timeout around the call itself could not interrupt it either
        const call = yield* Effect.forkDetach(
          Effect.flip(Stream.runCollect(arith.Count({ A: 1, B: 0 }, { timeout: "100 millis" })))
        )
        const error = yield* Fiber.join(call).pipe(within("the deadline", "2 seconds"))
        assert.strictEqual(reasonOf(error)._tag, "DeadlineExceeded")
      }))

    it.live("a unary call's deadline fires while it waits in the edge queue", () =>
      Effect.gen(function*() {
        const connector = yield* Peer.make()
        const arith = yield* RpcClient.makeWith(connector, Arith)
        const error = yield* Effect.flip(arith.Add({ A: 1, B: 1 }, { timeout: "100 millis" })).pipe(
          within("the deadline", "2 seconds")
        )
        assert.strictEqual(reasonOf(error)._tag, "DeadlineExceeded")
        assert.strictEqual(yield* connector.pendingOpens, 0)
      }))

    it.live("a call for a given remote waits until that remote connects", () =>
      Effect.gen(function*() {
        const binder = yield* Peer.make()
        const bound = yield* Effect.orDie(binder.bind(yield* transport.address))
        const connector = yield* Peer.make()
        yield* serveAll(connector)
        const arith = yield* RpcClient.makeWith(binder, Arith, { remote: connector.id })
        const call = yield* Effect.forkChild(arith.Add({ A: 20, B: 22 }), { startImmediately: true })
        assert.strictEqual(yield* binder.pendingOpens, 1)
        yield* Effect.orDie(connector.connect(bound))
        assert.deepStrictEqual(yield* Fiber.join(call).pipe(within("Add")), { C: 42 })
      }))

    it.live("calls are spread round-robin across three servers", () =>
      Effect.gen(function*() {
        const counts = [0, 0, 0]
        const servers: Array<Peer.Peer> = []
        const connector = yield* Peer.make()
        for (let i = 0; i < 3; i++) {
          const server = yield* Peer.make()
          yield* RpcServer.serve(server, Arith, countingArith(counts, i))
          yield* Effect.orDie(connector.connect(yield* Effect.orDie(server.bind(yield* transport.address))))
          servers.push(server)
        }
        yield* connector.awaitRemotes(3).pipe(within("three remotes"))
        const arith = yield* RpcClient.makeWith(connector, Arith)
        for (let i = 0; i < 30; i++) {
          assert.deepStrictEqual(yield* arith.Add({ A: i, B: 1 }).pipe(within("Add")), { C: i + 1 })
        }
        assert.deepStrictEqual(counts, [10, 10, 10])
        for (let i = 0; i < 3; i++) {
          assert.strictEqual((yield* Stream.runCollect(arith.Count({ A: 1, B: 0 })).pipe(within("Count"))).length, 1)
        }
        assert.deepStrictEqual(counts, [11, 11, 11])
        const second = servers[1]
        assert.isDefined(second)
        for (let i = 0; i < 4; i++) {
          yield* arith.Add({ A: i, B: 1 }, { remote: second.id }).pipe(within("Add on one remote"))
        }
        assert.deepStrictEqual(counts, [11, 15, 11])
      }))

    it.live("a binding peer spreads its calls round-robin across three connected servers", () =>
      Effect.gen(function*() {
        const counts = [0, 0, 0]
        const binder = yield* Peer.make()
        const bound = yield* Effect.orDie(binder.bind(yield* transport.address))
        for (let i = 0; i < 3; i++) {
          const connector = yield* Peer.make()
          yield* RpcServer.serve(connector, Arith, countingArith(counts, i))
          yield* Effect.orDie(connector.connect(bound))
        }
        yield* binder.awaitRemotes(3).pipe(within("three remotes"))
        const arith = yield* RpcClient.makeWith(binder, Arith)
        const results = yield* Effect.all(Array.from({ length: 30 }, (_, i) => arith.Add({ A: i, B: 0 })), {
          concurrency: "unbounded"
        }).pipe(within("30 Adds"))
        assert.deepStrictEqual(results, Array.from({ length: 30 }, (_, i) => ({ C: i })))
        assert.deepStrictEqual(counts, [10, 10, 10])
      }))
  })

  // -------------------------------------------------------------------------------------------
  // 9. The caller's own input
  // -------------------------------------------------------------------------------------------

  describe("caller input", () => {
    // BUG: RpcClient's pump turns a failure of the caller's own input stream into a wire error
    // (`channel.fail(String(cause))`), so the call fails with RpcClientError BadRequest and the text
    // "remote: Cause([Fail(LocalInputError)])" (the handler's input fails, it answers bad-request)
    // instead of the caller's own error E2, which `MethodFor` declares in the error channel. The
    // Cause's debug rendering is also what crosses the wire.
    it.live("a client stream whose input fails fails with the caller's own error", () =>
      Effect.gen(function*() {
        const { connector } = yield* servedPair(yield* transport.address)
        const kit = yield* RpcClient.makeWith(connector, Kit)
        const input = Stream.concat(Stream.make({ A: 1 }), Stream.fail(new LocalInputError({ at: 1 })))
        const error = yield* Effect.flip(kit.Total(input)).pipe(within("Total"))
        assert.instanceOf(error, LocalInputError)
      }))

    // BUG: same as above for bidi calls: the reply stream fails with RpcClientError BadRequest
    // ("remote: Cause([Fail(LocalInputError)])") instead of the caller's own E2.
    it.live("a bidi call whose input fails fails with the caller's own error", () =>
      Effect.gen(function*() {
        const { connector } = yield* servedPair(yield* transport.address)
        const kit = yield* RpcClient.makeWith(connector, Kit)
        const input = Stream.concat(Stream.make(1), Stream.fail(new LocalInputError({ at: 1 })))
        const error = yield* Effect.flip(Stream.runCollect(kit.EchoInts(input))).pipe(within("EchoInts"))
        assert.instanceOf(error, LocalInputError)
      }))
  })

  // -------------------------------------------------------------------------------------------
  // 10. Channel bookkeeping
  // -------------------------------------------------------------------------------------------

  describe("channel bookkeeping", () => {
    it.live("a unary callee acts on the first message only and ignores later ones (the original's convention)", () =>
      Effect.gen(function*() {
        const { binder, connector } = yield* servedPair(yield* transport.address)
        const channel = yield* connector.open("Arith.Add")
        yield* channel.send(msgpackEncode({ A: 1, B: 2 }))
        const reply = yield* channel.take.pipe(within("reply to the first message"))
        assert.deepStrictEqual(msgpackDecode(reply), { C: 3 })
        yield* channel.sendLast(msgpackEncode({ A: 5, B: 5 }))
        // a later call on the same connection is a barrier: every frame before it was processed
        const arith = yield* RpcClient.makeWith(connector, Arith)
        assert.deepStrictEqual(yield* arith.Add({ A: 1, B: 1 }).pipe(within("Add")), { C: 2 })
        assert.strictEqual(yield* openChannels(binder), 0)
      }))

    // BUG: when a client-stream reply arrives before the caller's input has ended (the handler
    // answers early), RpcClient interrupts its sender fiber but never ends or cancels the channel:
    // the local half stays open and the channel stays in the connection's table forever (one
    // leaked entry and channel id per such call). The server has detached its side already.
    it.live("a client-stream call answered before its input ended leaves no channel behind", () =>
      Effect.gen(function*() {
        const { binder, connector, probes } = yield* servedPair(yield* transport.address)
        const kit = yield* RpcClient.makeWith(connector, Kit)
        const reply = yield* kit.FirstTwo(pacedInts.pipe(Stream.map((A) => ({ A })))).pipe(within("FirstTwo"))
        assert.deepStrictEqual(reply, { C: 1 })
        yield* Deferred.await(probes.firstTwoDone).pipe(within("FirstTwo handler done"))
        assert.strictEqual(yield* openChannels(binder), 0, "server side")
        assert.strictEqual(yield* openChannels(connector), 0, "client side")
      }))

    // BUG: a unary/server-stream call whose input half is failed by the caller before any payload
    // (an error frame with last = true right after the OPEN) gets no reply, as in the original, but
    // RpcServer's SingleInputSink.finish(error) neither answers nor detaches: the server's channel
    // stays in the connection's table forever with its local half open.
    it.live("a call whose input fails before any payload leaves no channel behind on the server", () =>
      Effect.gen(function*() {
        const { binder, connector } = yield* servedPair(yield* transport.address)
        const channel = yield* connector.open("Arith.Add")
        yield* channel.fail("changed my mind")
        const arith = yield* RpcClient.makeWith(connector, Arith)
        assert.deepStrictEqual(yield* arith.Add({ A: 1, B: 1 }).pipe(within("Add (barrier)")), { C: 2 })
        assert.strictEqual(yield* openChannels(binder), 0, "server side")
      }))

    // BUG: when the connection drops, ChannelImpl.lose calls sink.finish(error), and RpcServer's
    // SingleInputSink.finish ignores it once the call started, so a running unary or server-stream
    // handler is never interrupted (a unary handler waiting on something runs forever; its
    // finalizers never run). Only abort() (a cancel frame) interrupts it.
    it.live("losing the connection interrupts the running handlers on the server", () =>
      Effect.gen(function*() {
        const address = yield* transport.address
        const binder = yield* Peer.make()
        const probes = yield* serveAll(binder)
        const bound = yield* Effect.orDie(binder.bind(address))
        const clientScope = yield* Scope.make()
        const connector = yield* Peer.make().pipe(Scope.provide(clientScope))
        yield* Effect.orDie(connector.connect(bound))
        const kit = yield* RpcClient.makeWith(connector, Kit)
        yield* Effect.forkChild(Effect.ignore(kit.Hang(undefined)))
        yield* Deferred.await(probes.hangStarted).pipe(within("Hang started"))
        yield* Scope.close(clientScope, Exit.void)
        yield* Deferred.await(probes.hangInterrupted).pipe(within("Hang interrupted", "2 seconds"))
      }))
  })
})

// -------------------------------------------------------------------------------------------------
// Types
// -------------------------------------------------------------------------------------------------

class Greeting extends Context.Service<Greeting, { readonly word: string }>()("test/Rpc/Greeting") {}

describe("types", () => {
  it("serve and layer require exactly the handlers' services (besides CurrentCall)", () => {
    // Compile-time checks; the function is never called.
    const check = (peer: Peer.Peer) => {
      const none: Effect.Effect<void, never, Scope.Scope> = RpcServer.serve(peer, Arith, arithHandlers)
      const inline: Effect.Effect<void, never, Scope.Scope> = RpcServer.serve(peer, Callback, {
        Ask: (question) => Effect.succeed(question)
      })
      const current: Effect.Effect<void, never, Scope.Scope> = RpcServer.serve(peer, Callback, {
        Ask: () => Effect.map(Effect.service(RpcServer.CurrentCall), (call) => call.method)
      })
      const needs = RpcServer.serve(peer, Callback, {
        Ask: (question) => Effect.map(Effect.service(Greeting), (g) => `${g.word} ${question}`)
      })
      const withService: Effect.Effect<void, never, Scope.Scope | Greeting> = needs
      // @ts-expect-error the Greeting requirement must not be dropped
      const dropped: Effect.Effect<void, never, Scope.Scope> = needs
      const layer: Layer.Layer<never, never, Peer.Peer> = RpcServer.layer(Arith, arithHandlers)
      return [none, inline, current, withService, dropped, layer]
    }
    assert.isFunction(check)
  })
})
