/**
 * Replays the Go prototype's captured exchanges (test/fixtures/vectors, README §5–§9) against Duplex.
 *
 * Forward: a Duplex peer binds and serves the fixture groups (`Arith`, `StreamingArith`, plus a plain
 * channel handler for `Raw.Frames`); a raw `node:net` client sends a greeting, reads the server's,
 * then writes the caller's frames byte for byte in file order. The frames the server sends back are
 * decoded and must mean what the captured callee frames mean: same channel ids, last flags, error
 * texts, payload values and end markers; frames without an error must even be byte-identical.
 * After each exchange a probe call on a fresh channel acts as a barrier: everything the server sent
 * for the exchange precedes the probe's reply, so "nothing else was sent" is checked exactly.
 *
 * Differences by design, asserted as such:
 * - After its greeting a Duplex binder sends a HELLO frame (type 2, ignored by the original).
 * - Error frames carry a `duplex-error` header naming the kind; a typed failure (a failure in the
 *   procedure's error Schema) also carries the encoded error as payload (the original sends nil).
 * - `two-concurrent-calls`: Duplex serves calls concurrently, so the replies of the two channels may
 *   come in either order (the original's `Serve` is sequential).
 * - `client-cancel`: the number of items before the cancel varies (as in the original).
 * - `unary-add-bigints.debian-int-encoding`: Duplex always answers with the 2014 codec's integer
 *   forms, so that reply is equal in value but not in bytes.
 *
 * Reverse: a Duplex client calls a raw fake server that behaves as the original (no HELLO) and
 * answers with the captured callee frames, re-addressed to the channel id the client chose (Duplex
 * picks ids from 2^31 until it has seen a HELLO, PROTOCOL.md "Channel ids"; only the channel field is
 * changed, every other byte is the vector's).
 */
import { assert, describe, it } from "@effect/vitest"
import { decode as msgpackDecode, encode as msgpackEncode } from "@msgpack/msgpack"
import { Cause, Effect, Exit, Fiber, Option, Schema, Stream } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import type { Frame } from "../src/Frame.ts"
import * as FrameModule from "../src/Frame.ts"
import { encodeFrame } from "../src/FrameCodec.ts"
import * as Peer from "../src/Peer.ts"
import * as Rpc from "../src/Rpc.ts"
import * as RpcClient from "../src/RpcClient.ts"
import { RpcClientError } from "../src/RpcError.ts"
import * as RpcGroup from "../src/RpcGroup.ts"
import * as RpcServer from "../src/RpcServer.ts"
import {
  Args,
  Arith,
  arithHandlers,
  Reply,
  StreamingArith,
  streamingArithHandlers,
  SumAsClientStream
} from "./fixtures/arith.ts"
import { rawConnect, type RawFrame, rawListen, type RawSocket, splitFrames, within } from "./utils/rpc.ts"

// ---------------------------------------------------------------------------------------------
// The vectors
// ---------------------------------------------------------------------------------------------

const vectorsDir = Path.join(import.meta.dirname, "fixtures", "vectors")

/** The frames of a `.hex` file, one per line. */
const hexLines = (file: string): Array<Buffer> =>
  Fs.readFileSync(Path.join(vectorsDir, file), "utf8")
    .split("\n")
    .filter((line) => line.length > 0)
    .map((line) => Buffer.from(line, "hex"))

const ManifestFrame = Schema.Struct({
  hex: Schema.String,
  type: Schema.Int,
  channel: Schema.Int,
  method: Schema.String,
  headers: Schema.Record(Schema.String, Schema.String),
  error: Schema.String,
  last: Schema.Boolean,
  payload_encoding: Schema.String,
  payload_hex: Schema.NullOr(Schema.String),
  payload_value: Schema.optionalKey(Schema.Unknown)
})
type ManifestFrame = typeof ManifestFrame.Type

const Manifest = Schema.Record(
  Schema.String,
  Schema.Union([Schema.Array(ManifestFrame), Schema.Struct({ ascii: Schema.String })])
)

const manifest = Schema.decodeUnknownSync(Manifest)(
  JSON.parse(Fs.readFileSync(Path.join(vectorsDir, "manifest.json"), "utf8"))
)

const manifestFrames = (file: string): ReadonlyArray<ManifestFrame> => {
  const entry = manifest[file]
  if (entry === undefined || "ascii" in entry) throw new Error(`no frames for ${file} in manifest.json`)
  return entry
}

/** A vector file's frames: the exact bytes and the manifest's decoding. */
const vector = (file: string): Array<{ readonly bytes: Buffer; readonly expected: ManifestFrame }> => {
  const lines = hexLines(file)
  const frames = manifestFrames(file)
  assert.strictEqual(lines.length, frames.length, `${file}: lines vs manifest`)
  return lines.map((bytes, i) => {
    const expected = frames[i]!
    assert.strictEqual(bytes.toString("hex"), expected.hex, `${file}#${i}: hex vs manifest`)
    return { bytes, expected }
  })
}

const greetingC2S = hexLines("greeting.c2s.hex")[0]!
const greetingS2C = hexLines("greeting.s2c.hex")[0]!
const GREETING = 36
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

const hexOf = (bytes: Uint8Array | null): string | null => bytes === null ? null : Buffer.from(bytes).toString("hex")

const plainHeaders = (frame: Frame): Record<string, string> => ({ ...frame.headers })

// ---------------------------------------------------------------------------------------------
// Forward: raw caller → Duplex callee
// ---------------------------------------------------------------------------------------------

/** A Duplex binder serving the fixture groups (and `Raw.Frames` if asked); its address. */
const duplexCallee = (rawFrames = false) =>
  Effect.gen(function*() {
    const peer = yield* Peer.make()
    yield* RpcServer.serve(peer, Arith, arithHandlers)
    yield* RpcServer.serve(peer, StreamingArith, streamingArithHandlers)
    if (rawFrames) {
      // Raw.Frames (README §7): echoes each payload's bytes unchanged with last = false, then the end
      // marker. (With such a fallback handler, unknown methods are no longer refused with the
      // original's texts, so only the raw-frames-echo exchange uses it.)
      yield* peer.serve((channel) =>
        channel.method === "Raw.Frames"
          ? Effect.andThen(Stream.runForEach(channel.input, (payload) => channel.send(payload)), channel.end)
          : channel.cancel
      )
    }
    const address = yield* Effect.orDie(peer.bind("tcp://127.0.0.1:0"))
    return { peer, address }
  })

const PROBE_CHANNEL = 999

/** A raw caller connected to a fresh Duplex callee, past the greetings and the HELLO. */
const rawCaller = (rawFrames = false) =>
  Effect.gen(function*() {
    const { address, peer } = yield* duplexCallee(rawFrames)
    const raw = yield* rawConnect(address)
    yield* raw.write(greetingC2S)
    const hello = yield* raw.waitUntil((all) => splitFrames(all.subarray(GREETING)).length >= 1).pipe(
      within("server greeting and HELLO")
    )
    const serverId = hello.subarray(0, GREETING).toString("latin1")
    assert.match(serverId, UUID)
    assert.strictEqual(serverId, peer.id)
    const first = splitFrames(hello.subarray(GREETING))[0]!.frame
    assert.strictEqual(first.type, 2, "a Duplex binder announces itself with HELLO (type 2)")
    assert.strictEqual(first.channel, 0)
    assert.strictEqual(first.method, "DUPLEX/1")
    return raw
  })

/** Every frame received after the greeting, without the HELLO. */
const framesFrom = (raw: RawSocket): Array<RawFrame> =>
  splitFrames(raw.received().subarray(GREETING)).filter((f) => f.frame.type !== 2)

const hasFinal = (channel: number) => (frames: ReadonlyArray<RawFrame>) =>
  frames.some((f) => f.frame.channel === channel && f.frame.last)

/**
 * Sends the probe call (Arith.Add {1,1} on PROBE_CHANNEL), waits for its reply and returns every
 * frame that came before it.
 */
const untilProbe = (raw: RawSocket) =>
  Effect.gen(function*() {
    yield* raw.write(Buffer.concat([
      encodeFrame(FrameModule.open(PROBE_CHANNEL, "Arith.Add")),
      encodeFrame(FrameModule.data(PROBE_CHANNEL, msgpackEncode({ A: 1, B: 1 }), true))
    ]))
    yield* raw.waitUntil(() => hasFinal(PROBE_CHANNEL)(framesFrom(raw))).pipe(within("probe reply"))
    const frames = framesFrom(raw)
    const probeAt = frames.findIndex((f) => f.frame.channel === PROBE_CHANNEL)
    assert.strictEqual(probeAt, frames.length - 1, "the probe reply is the last frame")
    assert.deepStrictEqual(msgpackDecode(frames[probeAt]!.frame.payload ?? new Uint8Array()), { C: 2 })
    return frames.slice(0, probeAt)
  })

interface Expectations {
  /** `duplex-error` header of error frames. */
  readonly errorKind?: string
  /** Decoded payload of error frames (a typed error), or `undefined` for none. */
  readonly errorPayload?: unknown
  /** Frames without an error are byte-identical (default true). */
  readonly byteExact?: boolean
  /** The replies of different channels keep the vector's order (default true). */
  readonly ordered?: boolean
}

/** Checks one received frame against a captured one. */
const checkFrame = (
  label: string,
  actual: RawFrame,
  captured: { readonly bytes: Buffer; readonly expected: ManifestFrame },
  expectations: Expectations
) => {
  const { expected } = captured
  const frame = actual.frame
  assert.strictEqual(frame.type, expected.type, `${label}: type`)
  assert.strictEqual(frame.channel, expected.channel, `${label}: channel`)
  assert.strictEqual(frame.method, expected.method, `${label}: method`)
  assert.strictEqual(frame.last, expected.last, `${label}: last`)
  assert.strictEqual(frame.error, expected.error, `${label}: error`)
  if (expected.error !== "") {
    // by design: the kind travels in a header, a typed failure's encoded error in the payload
    assert.deepStrictEqual(plainHeaders(frame), { "duplex-error": expectations.errorKind ?? "" }, `${label}: headers`)
    if (expectations.errorPayload === undefined) assert.isNull(frame.payload, `${label}: payload`)
    else {
      assert.isNotNull(frame.payload, `${label}: payload`)
      assert.deepStrictEqual(msgpackDecode(frame.payload ?? new Uint8Array()), expectations.errorPayload)
    }
    return
  }
  assert.deepStrictEqual(plainHeaders(frame), expected.headers, `${label}: headers`)
  assert.strictEqual(hexOf(frame.payload) === null, expected.payload_hex === null, `${label}: payload presence`)
  if ("payload_value" in expected) {
    assert.deepStrictEqual(msgpackDecode(frame.payload ?? new Uint8Array()), expected.payload_value, `${label}: value`)
  } else if (expected.payload_hex !== null) {
    assert.strictEqual(hexOf(frame.payload), expected.payload_hex, `${label}: payload bytes`)
  }
  if (expectations.byteExact ?? true) {
    assert.strictEqual(actual.bytes.toString("hex"), captured.bytes.toString("hex"), `${label}: bytes`)
  }
}

/** Checks the received frames against the captured callee frames of `name`. */
const checkReplies = (name: string, received: ReadonlyArray<RawFrame>, expectations: Expectations) => {
  const captured = vector(`${name}.s2c.hex`)
  assert.strictEqual(received.length, captured.length, `${name}: number of frames`)
  const channels = [...new Set(captured.map((c) => c.expected.channel))]
  assert.deepStrictEqual(
    [...new Set(received.map((r) => r.frame.channel))].sort(),
    [...channels].sort(),
    `${name}: channels`
  )
  if (expectations.ordered ?? true) {
    received.forEach((frame, i) => checkFrame(`${name}#${i}`, frame, captured[i]!, expectations))
    return
  }
  for (const channel of channels) {
    const mine = received.filter((r) => r.frame.channel === channel)
    const theirs = captured.filter((c) => c.expected.channel === channel)
    assert.strictEqual(mine.length, theirs.length, `${name}: frames of channel ${channel}`)
    mine.forEach((frame, i) => checkFrame(`${name}/${channel}#${i}`, frame, theirs[i]!, expectations))
  }
}

/** Writes the caller's frames one by one in file order, then checks the callee's answer. */
const replay = (name: string, expectations: Expectations = {}) =>
  Effect.gen(function*() {
    const raw = yield* rawCaller(name === "raw-frames-echo")
    const c2s = vector(`${name}.c2s.hex`)
    for (const { bytes } of c2s) yield* raw.write(bytes)
    // streams may still be running: wait for the final frame of every channel, then the probe
    const channels = [...new Set(vector(`${name}.s2c.hex`).map((f) => f.expected.channel))]
    yield* raw.waitUntil(() => channels.every((channel) => hasFinal(channel)(framesFrom(raw)))).pipe(
      within("the final frames")
    )
    checkReplies(name, yield* untilProbe(raw), expectations)
  })

const exchanges: ReadonlyArray<readonly [string, Expectations]> = [
  ["unary-add", {}],
  ["unary-string-arg", {}],
  ["unary-string-reply", {}],
  ["unary-add-bigints", {}],
  ["unary-add-bigints.debian-int-encoding", { byteExact: false }],
  ["unary-add-negative", {}],
  ["div-error", { errorKind: "failure", errorPayload: { _tag: "DivideByZero" } }],
  ["stream-count", {}],
  ["stream-count-empty", {}],
  ["stream-error", { errorKind: "failure", errorPayload: { _tag: "TriggeredError", Index: 3 } }],
  ["stream-input-sum", {}],
  ["stream-bidi-echo", {}],
  ["raw-frames-echo", {}],
  ["two-concurrent-calls", { ordered: false }],
  ["error-unknown-method", { errorKind: "unknown-method" }],
  ["error-unknown-service", { errorKind: "unknown-method" }],
  ["error-illformed-method", { errorKind: "unknown-method" }]
]

describe("vectors: a raw original caller against a Duplex callee", () => {
  it.live.each(exchanges)("%s", ([name, expectations]) => replay(name, expectations))

  it.live("client-cancel: cancel after the first item; no end marker; the next call is answered", () =>
    Effect.gen(function*() {
      const raw = yield* rawCaller()
      const c2s = vector("client-cancel.c2s.hex")
      const [open0, input0, cancel0, open1, input1] = c2s
      assert.isDefined(open0)
      assert.isDefined(input0)
      assert.isDefined(cancel0)
      assert.isDefined(open1)
      assert.isDefined(input1)
      assert.strictEqual(cancel0.expected.error, "CloseStream")
      assert.isFalse(cancel0.expected.last)
      // Thrive {A:3, Count:1000, ErrorAt:-1}, then the cancel once an item arrived
      yield* raw.write(open0.bytes)
      yield* raw.write(input0.bytes)
      yield* raw.waitUntil(() => framesFrom(raw).some((f) => f.frame.channel === 0)).pipe(within("a first item"))
      yield* raw.write(cancel0.bytes)
      yield* raw.write(open1.bytes)
      yield* raw.write(input1.bytes)
      yield* raw.waitUntil(() => hasFinal(1)(framesFrom(raw))).pipe(within("the reply on channel 1"))
      const received = yield* untilProbe(raw)

      const captured = vector("client-cancel.s2c.hex")
      const item0 = captured[0]!
      const reply1 = captured[1]!
      const items = received.filter((f) => f.frame.channel === 0)
      const others = received.filter((f) => f.frame.channel !== 0)
      assert.isAtLeast(items.length, 1)
      assert.isBelow(items.length, 1000, "the stream was cancelled before its end")
      items.forEach((item, i) => {
        // plain items only: no end marker and no error frame for the cancelled channel
        assert.isFalse(item.frame.last, `item ${i}: last`)
        assert.strictEqual(item.frame.error, "", `item ${i}: error`)
        assert.deepStrictEqual(msgpackDecode(item.frame.payload ?? new Uint8Array()), { C: 3, Index: i })
      })
      checkFrame("client-cancel#0", items[0]!, item0, {})
      assert.strictEqual(others.length, 1)
      checkFrame("client-cancel/1", others[0]!, reply1, {})
      assert.strictEqual(received[received.length - 1]?.frame.channel, 1, "the reply to channel 1 comes last")
    }))

  it.live("the greeting may be any case and be followed by frames in the same write", () =>
    Effect.gen(function*() {
      const { address } = yield* duplexCallee()
      const raw = yield* rawConnect(address)
      const unaryAdd = vector("unary-add.c2s.hex")
      yield* raw.write(Buffer.concat([
        Buffer.from(greetingC2S.toString("latin1").toUpperCase(), "latin1"),
        ...unaryAdd.map((f) => f.bytes)
      ]))
      yield* raw.waitUntil(() => hasFinal(0)(framesFrom(raw))).pipe(within("reply"))
      checkReplies("unary-add", framesFrom(raw), {})
    }))
})

// ---------------------------------------------------------------------------------------------
// Reverse: Duplex caller → raw original callee
// ---------------------------------------------------------------------------------------------

const LEGACY_BASE = 0x8000_0000

/** The vector frame's bytes with its channel (a positive fixint at offset 2) replaced by `channel`. */
const readdress = (bytes: Buffer, channel: number): Buffer => {
  assert.strictEqual(bytes[0], 0x97)
  assert.isBelow(bytes[2] ?? 0xff, 0x80, "channel written as a positive fixint")
  const id = Buffer.alloc(5)
  id[0] = 0xce
  id.writeUInt32BE(channel, 1)
  return Buffer.concat([bytes.subarray(0, 2), id, bytes.subarray(3)])
}

/** The frame a Duplex caller sends for a captured caller frame, addressed to `channel`. */
const asSentTo = (expected: ManifestFrame, channel: number): Buffer =>
  Buffer.from(encodeFrame(FrameModule.make(
    expected.type,
    channel,
    expected.method,
    expected.headers,
    expected.error,
    expected.last,
    expected.payload_hex === null ? null : Buffer.from(expected.payload_hex, "hex")
  )))

interface Reverse {
  readonly name: string
  /** The Duplex call(s) to make. */
  readonly call: (peer: Peer.Peer) => Effect.Effect<unknown, unknown>
  /** What the call must return or fail with. */
  readonly check: (outcome: { readonly value?: unknown; readonly error?: unknown }) => void
  /**
   * How the caller's frames compare: "exact" (byte-identical but for the channel field) or
   * "stream" (a Duplex client stream sends every item with last = false, then an end marker without
   * payload; the original's last frame carries the last item).
   */
  readonly c2s?: "exact" | "stream"
}

const reasonOf = (error: unknown): RpcClientError["reason"] => {
  assert.instanceOf(error, RpcClientError)
  return error.reason
}

const checkUnknown = (error: unknown, text: string) => {
  const reason = reasonOf(error)
  assert.strictEqual(reason._tag, "UnknownMethod")
  assert.strictEqual(reason._tag === "UnknownMethod" ? reason.text : "", text)
}

const arithClient = (peer: Peer.Peer) => RpcClient.makeWith(peer, Arith)
const streamingClient = (peer: Peer.Peer) => RpcClient.makeWith(peer, StreamingArith)

const reverses: ReadonlyArray<Reverse> = [
  {
    name: "unary-add",
    call: (peer) => Effect.flatMap(arithClient(peer), (arith) => arith.Add({ A: 7, B: 8 })),
    check: ({ value }) => assert.deepStrictEqual(value, { C: 15 })
  },
  {
    name: "unary-add-bigints",
    call: (peer) => Effect.flatMap(arithClient(peer), (arith) => arith.Add({ A: 100000, B: 200 })),
    check: ({ value }) => assert.deepStrictEqual(value, { C: 100200 })
  },
  {
    name: "unary-add-negative",
    call: (peer) => Effect.flatMap(arithClient(peer), (arith) => arith.Add({ A: -5, B: -300 })),
    check: ({ value }) => assert.deepStrictEqual(value, { C: -305 })
  },
  {
    name: "unary-string-arg",
    call: (peer) => Effect.flatMap(arithClient(peer), (arith) => arith.Scan("12345")),
    check: ({ value }) => assert.deepStrictEqual(value, { C: 12345 })
  },
  {
    name: "unary-string-reply",
    call: (peer) => Effect.flatMap(arithClient(peer), (arith) => arith.String({ A: 27, B: 35 })),
    check: ({ value }) => assert.strictEqual(value, "27+35=62")
  },
  {
    // an original callee sends no typed error: the text arrives as RemoteError
    name: "div-error",
    call: (peer) => Effect.flatMap(arithClient(peer), (arith) => arith.Div({ A: 7, B: 0 })),
    check: ({ error }) => {
      const reason = reasonOf(error)
      assert.strictEqual(reason._tag, "RemoteError")
      assert.strictEqual(reason._tag === "RemoteError" ? reason.text : "", "divide by zero")
      // shown as the original's client shows remote errors
      assert.strictEqual(error instanceof Error ? error.message : "", "remote: divide by zero")
    }
  },
  {
    name: "stream-count",
    call: (peer) => Effect.flatMap(arithClient(peer), (arith) => Stream.runCollect(arith.Count({ A: 5, B: 0 }))),
    check: ({ value }) => assert.deepStrictEqual(value, [{ C: 1 }, { C: 2 }, { C: 3 }, { C: 4 }, { C: 5 }])
  },
  {
    name: "stream-count-empty",
    call: (peer) => Effect.flatMap(arithClient(peer), (arith) => Stream.runCollect(arith.Count({ A: 0, B: 0 }))),
    check: ({ value }) => assert.deepStrictEqual(value, [])
  },
  {
    name: "stream-error",
    call: (peer) =>
      Effect.gen(function*() {
        const streaming = yield* streamingClient(peer)
        const items: Array<unknown> = []
        const error = yield* Stream.runForEach(
          streaming.Thrive({ A: 3, Count: 100, ErrorAt: 3 }),
          (item) => Effect.sync(() => items.push(item))
        ).pipe(Effect.flip)
        return { items, error }
      }),
    check: ({ value }) => {
      assert.isObject(value)
      if (typeof value === "object" && value !== null && "items" in value && "error" in value) {
        assert.deepStrictEqual(value.items, [{ C: 3, Index: 0 }, { C: 3, Index: 1 }, { C: 3, Index: 2 }])
        const reason = reasonOf(value.error)
        assert.strictEqual(reason._tag, "RemoteError")
        assert.strictEqual(reason._tag === "RemoteError" ? reason.text : "", "Triggered error in middle")
      }
    }
  },
  {
    name: "stream-input-sum",
    c2s: "stream",
    call: (peer) =>
      Effect.flatMap(
        RpcClient.makeWith(peer, SumAsClientStream),
        (sum) => sum.Sum(Stream.fromIterable([9, 3, 3, 6, 9].map((A) => ({ A, Count: 0, ErrorAt: 0 }))))
      ),
    check: ({ value }) => assert.deepStrictEqual(value, { C: 30, Index: 0 })
  },
  {
    name: "stream-bidi-echo",
    c2s: "stream",
    call: (peer) =>
      Effect.flatMap(streamingClient(peer), (streaming) =>
        Stream.runCollect(
          streaming.Echo(Stream.fromIterable([1, 2, 3, 4, 5].map((i) => ({ A: i, Count: 10 * i, ErrorAt: 0 }))))
        )),
    check: ({ value }) => assert.deepStrictEqual(value, [1, 2, 3, 4, 5].map((i) => ({ C: i, Index: 10 * i })))
  },
  {
    name: "error-unknown-method",
    call: (peer) =>
      Effect.flatMap(
        RpcClient.makeWith(
          peer,
          RpcGroup.make(Rpc.unary("BadOperation", { payload: Args, success: Reply })).prefix("Arith.")
        ),
        (client) => client.BadOperation({ A: 7, B: 0 })
      ),
    check: ({ error }) => checkUnknown(error, "duplex: can't find method Arith.BadOperation")
  },
  {
    name: "error-unknown-service",
    call: (peer) =>
      Effect.flatMap(
        RpcClient.makeWith(peer, RpcGroup.make(Rpc.unary("Add", { payload: Args, success: Reply })).prefix("Nope.")),
        (client) => client.Add({ A: 7, B: 8 })
      ),
    check: ({ error }) => checkUnknown(error, "duplex: can't find service Nope.Add")
  },
  {
    name: "error-illformed-method",
    call: (peer) =>
      Effect.flatMap(
        RpcClient.makeWith(peer, RpcGroup.make(Rpc.unary("echo", { payload: Args, success: Reply }))),
        (client) => client.echo({ A: 7, B: 8 })
      ),
    check: ({ error }) => checkUnknown(error, "duplex: service/method request ill-formed: echo")
  },
  {
    // two calls at once; Duplex sends each call's OPEN and input together, so the caller's frames
    // interleave differently than in the capture (compared per channel)
    name: "two-concurrent-calls",
    call: (peer) =>
      Effect.flatMap(
        arithClient(peer),
        (arith) => Effect.all([arith.Mul({ A: 7, B: 8 }), arith.Add({ A: 7, B: 8 })], { concurrency: "unbounded" })
      ),
    check: ({ value }) => assert.deepStrictEqual(value, [{ C: 56 }, { C: 15 }])
  }
]

/** Runs a Duplex call against a raw callee that answers with the captured callee frames. */
const reverseExchange = (reverse: Reverse) =>
  Effect.gen(function*() {
    const server = yield* rawListen
    const peer = yield* Peer.make()
    yield* Effect.orDie(peer.connect(server.address))
    const raw = yield* server.accepted.pipe(within("accept"))
    const greeting = yield* raw.waitUntil((all) => all.length >= GREETING).pipe(within("the caller's greeting"))
    assert.strictEqual(greeting.subarray(0, GREETING).toString("latin1"), peer.id)
    assert.match(peer.id, UUID)
    yield* raw.write(greetingS2C)
    yield* peer.awaitRemotes(1).pipe(within("connected"))
    const call = yield* Effect.forkChild(Effect.exit(reverse.call(peer)))

    const c2s = vector(`${reverse.name}.c2s.hex`)
    const mode = reverse.c2s ?? "exact"
    const expectedCount = mode === "stream" ? c2s.length + 1 : c2s.length
    yield* raw.waitUntil(() => framesFrom(raw).length >= expectedCount).pipe(within("the caller's frames"))
    const all = splitFrames(raw.received().subarray(GREETING))
    assert.strictEqual(all[0]?.frame.type, 2, "a Duplex connector sends HELLO after the greeting")
    const sent = framesFrom(raw)
    assert.strictEqual(sent.length, expectedCount, "no other frames")

    // the vector's channels and the ones the Duplex caller picked, matched by method
    const methodOf = new Map(
      c2s.filter((f) => f.expected.type === 0).map((f) => [f.expected.channel, f.expected.method])
    )
    const picked = new Map(sent.filter((f) => f.frame.type === 0).map((f) => [f.frame.method, f.frame.channel]))
    const channelFor = (vectorChannel: number): number => {
      const id = picked.get(methodOf.get(vectorChannel) ?? "")
      assert.isDefined(id, `no OPEN for the vector's channel ${vectorChannel}`)
      return id
    }
    for (const vectorChannel of methodOf.keys()) {
      const id = channelFor(vectorChannel)
      // no HELLO from the callee: ids from the legacy-safe range, even for a connector
      assert.isAtLeast(id, LEGACY_BASE)
      assert.strictEqual(id % 2, 0)
      const mine = sent.filter((f) => f.frame.channel === id)
      const theirs = c2s.filter((f) => f.expected.channel === vectorChannel)
      if (mode === "exact") {
        assert.strictEqual(mine.length, theirs.length)
        mine.forEach((frame, i) =>
          assert.strictEqual(
            frame.bytes.toString("hex"),
            asSentTo(theirs[i]!.expected, id).toString("hex"),
            `${reverse.name}: caller frame ${i}`
          )
        )
      } else {
        // OPEN, then every item with last = false, then an end marker without payload
        assert.strictEqual(mine.length, theirs.length + 1)
        assert.strictEqual(mine[0]!.bytes.toString("hex"), asSentTo(theirs[0]!.expected, id).toString("hex"))
        theirs.slice(1).forEach(({ expected }, i) => {
          const frame = mine[i + 1]!.frame
          assert.isFalse(frame.last)
          assert.strictEqual(frame.error, "")
          assert.deepStrictEqual(msgpackDecode(frame.payload ?? new Uint8Array()), expected.payload_value)
        })
        const end = mine[mine.length - 1]!
        assert.strictEqual(end.bytes.toString("hex"), Buffer.from(encodeFrame(FrameModule.end(id))).toString("hex"))
      }
    }

    // the captured answer, re-addressed
    const s2c = vector(`${reverse.name}.s2c.hex`)
    yield* raw.write(Buffer.concat(s2c.map(({ bytes, expected }) => readdress(bytes, channelFor(expected.channel)))))
    const exit = yield* Fiber.join(call).pipe(within("the call"))
    if (Exit.isSuccess(exit)) reverse.check({ value: exit.value })
    else {
      const error = Cause.findErrorOption(exit.cause)
      assert.isTrue(Option.isSome(error), `the call died: ${Cause.pretty(exit.cause)}`)
      if (Option.isSome(error)) reverse.check({ error: error.value })
    }
  })

describe("vectors: a Duplex caller against a raw original callee", () => {
  it.live.each(reverses)("$name", (reverse) => reverseExchange(reverse))
})
