import { assert, describe, it } from "@effect/vitest"
import * as Result from "effect/Result"
import { isProtocolError, ProtocolErrorCode, type ProtocolErrorReason } from "../src/DuplexError.ts"
import * as Frame from "../src/Frame.ts"
import { decodeFrames, encodeFrame, FrameDecoder, FrameEncoder } from "../src/FrameCodec.ts"
import * as Headers from "../src/Headers.ts"
import type { Limits } from "../src/Protocol.ts"
import {
  CHANNEL_BOUNDARIES,
  concat,
  decodeChunks,
  fromHex,
  fuzzCase,
  loadVectorLines,
  makeRng,
  mixSeed,
  type Outcome,
  plain,
  type PlainFrame,
  randomChunks,
  randomFrame,
  randomString,
  type Rng,
  smallFrames,
  splitAt,
  textHex,
  toHex
} from "./fuzz/generators.ts"

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/** Bytes from hex fragments (whitespace allowed). */
const h = (...parts: ReadonlyArray<string>): Uint8Array => fromHex(parts.join(""))

/** msgpack fixstr (≤ 31 bytes) of a text, as hex. */
const fs = (text: string): string => {
  const hex = textHex(text)
  const n = hex.length / 2
  if (n > 31) throw new Error("fixstr too long")
  return (0xa0 | n).toString(16) + hex
}

/** A one-byte-length form (`d9` str8, `c4` bin8) of a text, as hex. */
const len8 = (tag: string, text: string): string => {
  const hex = textHex(text)
  return tag + (hex.length / 2).toString(16).padStart(2, "0") + hex
}
const len16 = (tag: string, text: string): string => {
  const hex = textHex(text)
  return tag + (hex.length / 2).toString(16).padStart(4, "0") + hex
}
const len32 = (tag: string, text: string): string => {
  const hex = textHex(text)
  return tag + (hex.length / 2).toString(16).padStart(8, "0") + hex
}

const bytewise = (bytes: Uint8Array): Array<Uint8Array> => {
  const out: Array<Uint8Array> = []
  for (let i = 0; i < bytes.length; i++) out.push(bytes.subarray(i, i + 1))
  return out
}

const expectFrame = (
  f: Partial<PlainFrame> & Pick<PlainFrame, "type" | "channel">
): PlainFrame => ({
  method: "",
  headers: [],
  error: "",
  last: false,
  payload: null,
  ...f
})

/** Decodes `bytes` whole and one byte at a time; both must succeed with the same frames. */
const decodeAll = (bytes: Uint8Array, limits: Partial<Limits> = {}): Array<PlainFrame> => {
  const whole = decodeChunks([bytes], limits)
  assert.isUndefined(whole.error, whole.error?.message)
  const split = decodeChunks(bytewise(bytes), limits)
  assert.isUndefined(split.error, split.error?.message)
  const frames = whole.frames.map(plain)
  assert.deepStrictEqual(split.frames.map(plain), frames)
  return frames
}

/** Decodes exactly one frame (whole and byte by byte). */
const decodeOne = (bytes: Uint8Array, limits: Partial<Limits> = {}): PlainFrame => {
  const frames = decodeAll(bytes, limits)
  assert.strictEqual(frames.length, 1)
  return frames[0]!
}

/**
 * `bytes` must be rejected with `reason` (and its code), whole and one byte at a time, without
 * delivering a frame for the bad part. Returns the whole-input outcome.
 */
const expectReject = (
  bytes: Uint8Array,
  reason: ProtocolErrorReason,
  limits: Partial<Limits> = {},
  framesBefore = 0
): Outcome => {
  const whole = decodeChunks([bytes], limits)
  const split = decodeChunks(bytewise(bytes), limits)
  for (const outcome of [whole, split]) {
    assert.isTrue(isProtocolError(outcome.error), `expected ${reason}, got ${String(outcome.error)}`)
    assert.strictEqual(outcome.error?.reason, reason, outcome.error?.message)
    assert.strictEqual(outcome.error?.code, ProtocolErrorCode[reason])
    assert.strictEqual(outcome.frames.length, framesBefore)
  }
  const result = decodeFrames(bytes, limits)
  assert.isTrue(Result.isFailure(result))
  return whole
}

/** Sorted-entries view of a header record, for comparisons. */
const entries = (record: Readonly<Record<string, string>>): Array<[string, string]> =>
  Object.entries(record).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))

const bigLimits: Partial<Limits> = {
  maxFrameBytes: 1 << 26,
  maxHeaderCount: 1024,
  maxHeaderBytes: 1 << 24,
  maxMethodBytes: 1 << 20
}

const vectorLines = loadVectorLines()

// ---------------------------------------------------------------------------------------------
// Roundtrip
// ---------------------------------------------------------------------------------------------

describe("roundtrip", () => {
  it("decode(encode(frame)) == frame for 5000 random frames", () => {
    const rng = makeRng(0x5eed_0001)
    const options = { bigChance: 0.15, smallString: 300, maxHeaders: 20 }
    const encoder = new FrameEncoder()
    const batch: Array<PlainFrame> = []
    const seen = { bigString: 0, bigPayload: 0, multiByte: 0, negative: 0, headers20: 0, emptyPayload: 0 }
    for (let i = 0; i < 5000; i++) {
      const frame = randomFrame(rng, options)
      const want = plain(frame)
      const bytes = encodeFrame(frame)
      const result = decodeFrames(bytes, bigLimits)
      if (Result.isFailure(result)) assert.fail(`case ${i}: ${result.failure.message}`)
      assert.strictEqual(result.success.length, 1, `case ${i}`)
      assert.deepStrictEqual(plain(result.success[0]!), want, `case ${i}`)
      encoder.write(frame)
      batch.push(want)
      if (rng.chance(0.05)) {
        // Flush now and then; decode the batch in random chunks.
        const chunk = encoder.flush()!
        const outcome = decodeChunks(splitAt(rng, chunk, rng.range(1, 20)), bigLimits)
        assert.isUndefined(outcome.error)
        assert.deepStrictEqual(outcome.frames.map(plain), batch)
        batch.length = 0
      }
      if (frame.method.length >= 32768 || frame.error.length >= 32768) seen.bigString++
      if ((frame.payload?.length ?? 0) >= 65535) seen.bigPayload++
      if (/[^\x00-\x7f]/.test(frame.method)) seen.multiByte++
      if (frame.channel < 0) seen.negative++
      if (Object.keys(frame.headers).length >= 15) seen.headers20++
      if (frame.payload?.length === 0) seen.emptyPayload++
    }
    // The generator really covered the interesting regions.
    for (const [k, v] of Object.entries(seen)) assert.isAbove(v, 5, k)
  })

  it("string lengths at every raw-string boundary, ASCII and multi-byte", () => {
    const rng = makeRng(7)
    for (const n of [0, 1, 31, 32, 33, 255, 256, 65535, 65536]) {
      for (const ascii of [true, false]) {
        const text = randomString(rng, n, ascii)
        assert.strictEqual(new TextEncoder().encode(text).length, n)
        const frame = Frame.make(
          0,
          1,
          text,
          Headers.make([[text, text], ["k", text]]),
          text,
          true,
          new TextEncoder().encode(text)
        )
        const back = decodeFrames(encodeFrame(frame), bigLimits)
        if (Result.isFailure(back)) assert.fail(back.failure.message)
        assert.deepStrictEqual(plain(back.success[0]!), plain(frame), `${n} ${ascii}`)
      }
    }
  })

  it("emoji and surrogate pairs survive", () => {
    const text = "😀🎉 ünïcödé 中文 \u{10ffff}\u{1f9d1}\u200d\u{1f4bb}"
    const frame = Frame.make(1, 5, text, Headers.make({ [text]: text }), text, false, null)
    const back = decodeOne(encodeFrame(frame))
    assert.deepStrictEqual(back, plain(frame))
  })

  it("lone surrogates are encoded as U+FFFD (UTF-8 cannot carry them)", () => {
    const frame = Frame.make(0, 0, "a\ud800b", Headers.empty, "\udc00", false, null)
    const bytes = encodeFrame(frame)
    const back = decodeOne(bytes)
    assert.strictEqual(back.method, "a\ufffdb")
    assert.strictEqual(back.error, "\ufffd")
    // And the byte count the header announces is right (a5 = 5 bytes: a, ef bf bd, b).
    assert.strictEqual(toHex(bytes).slice(6, 18), "a561efbfbd62")
  })
})

// ---------------------------------------------------------------------------------------------
// Encoder strictness
// ---------------------------------------------------------------------------------------------

/** [value, smallest msgpack integer form as the 2014 codec writes it]. */
const INT_FORMS: ReadonlyArray<readonly [number, string]> = [
  [0, "00"],
  [1, "01"],
  [127, "7f"],
  [128, "cc80"],
  [255, "ccff"],
  [256, "cd0100"],
  [65535, "cdffff"],
  [65536, "ce00010000"],
  [0x7fff_ffff, "ce7fffffff"],
  [0x8000_0000, "ce80000000"],
  [0xffff_ffff, "ceffffffff"],
  [0x1_0000_0000, "cf0000000100000000"],
  [Number.MAX_SAFE_INTEGER, "cf001fffffffffffff"],
  [-1, "ff"],
  [-32, "e0"],
  [-33, "d0df"],
  [-128, "d080"],
  [-129, "d1ff7f"],
  [-32768, "d18000"],
  [-32769, "d2ffff7fff"],
  [-(2 ** 31), "d280000000"],
  [-(2 ** 31) - 1, "d3ffffffff7fffffff"],
  [-(2 ** 32), "d3ffffffff00000000"],
  [-(2 ** 40), "d3ffffff0000000000"],
  [Number.MIN_SAFE_INTEGER, "d3ffe0000000000001"]
]

/** Header of a raw string of `n` bytes: fixstr, then str16 `da`, then str32 `db`; never `d9`. */
const rawHeader = (n: number): string =>
  n < 32 ?
    (0xa0 | n).toString(16) :
    n < 0x10000 ?
    `da${n.toString(16).padStart(4, "0")}` :
    `db${n.toString(16).padStart(8, "0")}`

describe("FrameEncoder strictness", () => {
  it.each(INT_FORMS)("channel %d → %s", (value, form) => {
    const bytes = encodeFrame(Frame.make(1, value, "", Headers.empty, "", false, null))
    assert.strictEqual(toHex(bytes), `9701${form}a080a0c2c0`)
    assert.strictEqual(decodeOne(bytes).channel, value)
  })

  it.each(INT_FORMS)("type %d → %s", (value, form) => {
    const bytes = encodeFrame(Frame.make(value, 3, "", Headers.empty, "", false, null))
    assert.strictEqual(toHex(bytes), `97${form}03a080a0c2c0`)
    assert.strictEqual(decodeOne(bytes).type, value)
  })

  const lengths = [0, 1, 31, 32, 40, 255, 256, 300, 65535, 65536, 70000]

  it.each(lengths)("method of %d bytes uses the raw family", (n) => {
    for (const ascii of [true, false]) {
      const text = randomString(makeRng(n), n, ascii)
      const bytes = encodeFrame(Frame.make(0, 0, text, Headers.empty, "", false, null))
      assert.strictEqual(toHex(bytes), `970000${rawHeader(n)}${textHex(text)}80a0c2c0`)
    }
  })

  it.each(lengths)("error of %d bytes uses the raw family", (n) => {
    const text = randomString(makeRng(n + 1), n, false)
    const bytes = encodeFrame(Frame.make(1, 0, "", Headers.empty, text, true, null))
    assert.strictEqual(toHex(bytes), `970100a080${rawHeader(n)}${textHex(text)}c3c0`)
  })

  it.each(lengths)("header key and value of %d bytes use the raw family", (n) => {
    const key = randomString(makeRng(n + 2), n, false)
    const value = randomString(makeRng(n + 3), n, true)
    const bytes = encodeFrame(Frame.make(0, 0, "", Headers.make([[key, value]]), "", false, null))
    assert.strictEqual(
      toHex(bytes),
      `970000a081${rawHeader(n)}${textHex(key)}${rawHeader(n)}${textHex(value)}a0c2c0`
    )
  })

  it.each(lengths)("payload of %d bytes uses the raw family (never bin)", (n) => {
    const payload = makeRng(n + 4).bytes(n)
    const bytes = encodeFrame(Frame.make(1, 0, "", Headers.empty, "", false, payload))
    assert.strictEqual(toHex(bytes), `970100a080a0c2${rawHeader(n)}${toHex(payload)}`)
  })

  it("README: 32-byte string is da 00 20, 40-byte payload is da 00 28", () => {
    const s32 = "x".repeat(32)
    assert.strictEqual(toHex(encodeFrame(Frame.open(0, s32))).slice(6, 12), "da0020")
    assert.strictEqual(toHex(encodeFrame(Frame.data(0, new Uint8Array(40)))).slice(14, 20), "da0028")
    // 16 two-byte chars = 32 bytes: the header counts bytes, not characters.
    assert.strictEqual(toHex(encodeFrame(Frame.open(0, "é".repeat(16)))).slice(6, 12), "da0020")
    assert.strictEqual(toHex(encodeFrame(Frame.open(0, "é".repeat(15) + "e"))).slice(6, 8), "bf")
  })

  it("empty headers 80, empty error a0, null payload c0, empty payload a0, last c2/c3", () => {
    assert.strictEqual(toHex(encodeFrame(Frame.make(0, 0, "", Headers.empty, "", false, null))), "970000a080a0c2c0")
    assert.strictEqual(
      toHex(encodeFrame(Frame.make(1, 0, "", Headers.empty, "", true, new Uint8Array(0)))),
      "970100a080a0c3a0"
    )
    // A decoded empty payload stays present (not null), and re-encodes as a0.
    const back = decodeOne(h("970100a080a0c3a0"))
    assert.strictEqual(back.payload, "")
  })

  it("header maps: fixmap up to 15 entries, then map16 de", () => {
    for (const count of [1, 15, 16, 20, 70]) {
      const record: Record<string, string> = {}
      for (let i = 0; i < count; i++) record[`k${i}`] = "v"
      const hex = toHex(encodeFrame(Frame.make(0, 0, "", Headers.make(record), "", false, null)))
      const mapHeader = count < 16 ? (0x80 | count).toString(16) : `de${count.toString(16).padStart(4, "0")}`
      assert.strictEqual(hex.slice(8, 8 + mapHeader.length), mapHeader, `${count}`)
      assert.deepStrictEqual(decodeOne(fromHex(hex), bigLimits).headers, entries(record))
    }
  })

  it("frames that need the largest envelope encode correctly at every slab offset", () => {
    // Regression: the encoder reserved too few bytes for the envelope (ints up to 9 bytes, str32
    // headers), so a frame ending near the end of the 64 KiB slab was cut or threw RangeError.
    const tricky: ReadonlyArray<Frame.Frame> = [
      Frame.make(200, Number.MIN_SAFE_INTEGER, "", Headers.empty, "", true, null),
      Frame.make(2 ** 40, -(2 ** 40), "", Headers.empty, "", false, new Uint8Array(70_000)),
      Frame.make(1, 200, "€".repeat(40), Headers.empty, "€".repeat(40), false, new Uint8Array(300)),
      Frame.make(-100, 0xffff_ffff, "", Headers.make({ "€": "€".repeat(12) }), "", false, new Uint8Array(65536))
    ]
    for (let filler = 65_300; filler <= 65_530; filler++) {
      const encoder = new FrameEncoder()
      const frames = [Frame.data(0, new Uint8Array(filler)), ...tricky, ...tricky]
      for (const f of frames) encoder.write(f)
      const outcome = decodeChunks([encoder.flush()!], bigLimits)
      assert.isUndefined(outcome.error, `filler ${filler}: ${outcome.error?.message}`)
      assert.deepStrictEqual(outcome.frames.map(plain), frames.map(plain), `filler ${filler}`)
    }
    // And many small max-envelope frames back to back across several slabs.
    const encoder = new FrameEncoder()
    const frames: Array<Frame.Frame> = []
    for (let i = 0; i < 20_000; i++) {
      const f = Frame.make(
        i % 3 === 0 ? 200 : 1,
        CHANNEL_BOUNDARIES[i % CHANNEL_BOUNDARIES.length]!,
        "",
        Headers.empty,
        "",
        true,
        null
      )
      frames.push(f)
      encoder.write(f)
    }
    const bytes = encoder.flush()!
    assert.strictEqual(toHex(bytes), toHex(concat(frames.map(encodeFrame))))
  })

  it("negative frame types use the signed family", () => {
    assert.strictEqual(toHex(encodeFrame(Frame.make(-1, 0, "", Headers.empty, "", false, null))), "97ff00a080a0c2c0")
    assert.strictEqual(
      toHex(encodeFrame(Frame.make(-100, 0, "", Headers.empty, "", false, null))),
      "97d09c00a080a0c2c0"
    )
  })

  it("batching: several writes then one flush equals the concatenated encodings", () => {
    const rng = makeRng(0xba7c4)
    for (let round = 0; round < 50; round++) {
      const frames: Array<Frame.Frame> = []
      const n = rng.range(1, 40)
      for (let i = 0; i < n; i++) frames.push(randomFrame(rng, { bigChance: 0.05, smallString: 80, maxHeaders: 6 }))
      const encoder = new FrameEncoder()
      assert.strictEqual(encoder.pending, 0)
      assert.isUndefined(encoder.flush())
      let expectedPending = 0
      for (const f of frames) {
        encoder.write(f)
        expectedPending += encodeFrame(f).length
        assert.strictEqual(encoder.pending, expectedPending)
      }
      const chunk = encoder.flush()!
      assert.strictEqual(encoder.pending, 0)
      assert.isUndefined(encoder.flush())
      assert.strictEqual(toHex(chunk), toHex(concat(frames.map(encodeFrame))))
    }
  })

  it("flushed chunks are never overwritten by later writes", () => {
    const rng = makeRng(0xf1a5)
    const encoder = new FrameEncoder()
    const kept: Array<{ chunk: Uint8Array; hex: string; frames: Array<PlainFrame> }> = []
    for (let round = 0; round < 300; round++) {
      const frames: Array<Frame.Frame> = []
      const n = rng.range(1, 4)
      for (let i = 0; i < n; i++) {
        frames.push(
          rng.chance(0.1)
            ? Frame.data(round, rng.bytes(rng.range(64 * 1024, 100 * 1024)), true)
            : randomFrame(rng)
        )
      }
      for (const f of frames) encoder.write(f)
      const chunk = encoder.flush()!
      kept.push({ chunk, hex: toHex(chunk), frames: frames.map(plain) })
    }
    const buffers = new Set(kept.map((k) => k.chunk.buffer))
    assert.isAbove(buffers.size, 5, "new slabs were allocated")
    assert.isBelow(buffers.size, kept.length, "slabs were shared by several flushed chunks")
    for (const [i, k] of kept.entries()) {
      assert.strictEqual(toHex(k.chunk), k.hex, `chunk ${i} changed`)
      const outcome = decodeChunks([k.chunk], bigLimits)
      assert.isUndefined(outcome.error)
      assert.deepStrictEqual(outcome.frames.map(plain), k.frames)
    }
  })

  it("encodeFrame returns an exact, independent copy", () => {
    const a = encodeFrame(Frame.end(1))
    const b = encodeFrame(Frame.end(1))
    assert.strictEqual(a.byteLength, 8)
    assert.strictEqual(a.buffer.byteLength, 8)
    assert.notStrictEqual(a.buffer, b.buffer)
  })
})

// ---------------------------------------------------------------------------------------------
// Decoder tolerance
// ---------------------------------------------------------------------------------------------

const ADD = "Arith.Add"

describe("FrameDecoder tolerance", () => {
  it("str8 (d9) and bin8/16/32 (c4/c5/c6) for method, error, header strings and payload", () => {
    const forms: ReadonlyArray<(text: string) => string> = [
      (t) => len8("d9", t),
      (t) => len8("c4", t),
      (t) => len16("c5", t),
      (t) => len32("c6", t),
      (t) => len16("da", t),
      (t) => len32("db", t)
    ]
    for (const form of forms) {
      const bytes = h("97 00 05", form(ADD), "81", form("k"), form("v"), form("oops"), "c3", form("\x01\x02"))
      assert.deepStrictEqual(
        decodeOne(bytes),
        expectFrame({
          type: 0,
          channel: 5,
          method: ADD,
          headers: [["k", "v"]],
          error: "oops",
          last: true,
          payload: "0102"
        })
      )
    }
  })

  it("nil for method, headers, error, last and payload", () => {
    assert.deepStrictEqual(decodeOne(h("97 01 02 c0 c0 c0 c0 c0")), expectFrame({ type: 1, channel: 2 }))
    // nil type / channel read as 0 too.
    assert.deepStrictEqual(decodeOne(h("97 c0 c0 a0 80 a0 c2 c0")), expectFrame({ type: 0, channel: 0 }))
  })

  it("any integer width for type and channel", () => {
    const five = [
      "05",
      "cc05",
      "cd0005",
      "ce00000005",
      "cf0000000000000005",
      "d005",
      "d10005",
      "d200000005",
      "d30000000000000005"
    ]
    for (const t of five) {
      for (const c of five) {
        assert.deepStrictEqual(decodeOne(h("97", t, c, "a080a0c2c0")), expectFrame({ type: 5, channel: 5 }), t + c)
      }
    }
    const negatives: ReadonlyArray<readonly [string, number]> = [
      ["fb", -5],
      ["d0fb", -5],
      ["d1fed4", -300],
      ["d2fffffed4", -300],
      ["d3fffffffffffffed4", -300],
      ["d3ffffffffffffffff", -1],
      ["d280000000", -(2 ** 31)],
      ["d3ffe0000000000001", Number.MIN_SAFE_INTEGER],
      ["cf001fffffffffffff", Number.MAX_SAFE_INTEGER],
      ["d0ff", -1],
      ["d080", -128]
    ]
    for (const [form, value] of negatives) {
      assert.strictEqual(decodeOne(h("9701", form, "a080a0c2c0")).channel, value, form)
    }
  })

  it("short arrays: missing slots take zero values", () => {
    assert.deepStrictEqual(decodeOne(h("92 01 07")), expectFrame({ type: 1, channel: 7 }))
    assert.deepStrictEqual(decodeOne(h("93 00 06", fs(ADD))), expectFrame({ type: 0, channel: 6, method: ADD }))
    assert.deepStrictEqual(
      decodeOne(h("94 00 06", fs(ADD), "81", fs("k"), fs("v"))),
      expectFrame({ type: 0, channel: 6, method: ADD, headers: [["k", "v"]] })
    )
    assert.deepStrictEqual(
      decodeOne(h("95 01 06 a0 80", fs("bad"))),
      expectFrame({ type: 1, channel: 6, error: "bad" })
    )
    assert.deepStrictEqual(decodeOne(h("96 01 00 a0 80 a0 c3")), expectFrame({ type: 1, channel: 0, last: true }))
    // array16 / array32 headers for the frame itself.
    assert.deepStrictEqual(decodeOne(h("dc0002 01 07")), expectFrame({ type: 1, channel: 7 }))
    assert.deepStrictEqual(
      decodeOne(h("dd00000007 01 07 a0 80 a0 c3 c0")),
      expectFrame({ type: 1, channel: 7, last: true })
    )
  })

  /** One msgpack value of every kind, as hex. */
  const EXTRA_VALUES: ReadonlyArray<readonly [string, string]> = [
    ["nil", "c0"],
    ["false", "c2"],
    ["true", "c3"],
    ["positive fixint", "7f"],
    ["negative fixint", "e0"],
    ["uint8", "ccff"],
    ["uint16", "cdffff"],
    ["uint32", "ceffffffff"],
    ["uint64", "cfffffffffffffffff"],
    ["int8", "d080"],
    ["int16", "d18000"],
    ["int32", "d280000000"],
    ["int64", "d38000000000000000"],
    ["float32", "ca3fc00000"],
    ["float64", "cb3ff8000000000000"],
    ["fixstr", fs("extra")],
    ["str8", len8("d9", "extra")],
    ["str16", len16("da", "extra")],
    ["str32", len32("db", "extra")],
    ["bin8", len8("c4", "extra")],
    ["bin16", len16("c5", "extra")],
    ["bin32", len32("c6", "extra")],
    ["fixarray", "93 01 a1 78 c0"],
    ["nested arrays", "92 92 01 92 02 90 91 80"],
    ["array16", "dc0003 01 02 03"],
    ["array32", "dd00000002 c3 c2"],
    ["fixmap", "82 a1 61 01 a1 62 92 01 02"],
    ["nested maps", "81 a1 61 81 a1 62 81 a1 63 90"],
    ["map16", "de0001 01 02"],
    ["map32", "df00000001 a1 6b 80"],
    ["fixext1", "d4 01 ff"],
    ["fixext2", "d5 01 ffff"],
    ["fixext4", "d6 ff 00000000"],
    ["fixext8", "d7 ff 0000000000000000"],
    ["fixext16", "d8 05 00000000000000000000000000000000"],
    ["ext8", "c7 03 01 aabbcc"],
    ["ext16", "c8 0002 01 aabb"],
    ["ext32", "c9 00000001 01 aa"],
    ["empty ext8", "c7 00 01"]
  ]

  const baseFrame = `01 09 ${fs("")} 80 ${fs("")} c3 ${fs("pl")}`
  const baseExpected = expectFrame({ type: 1, channel: 9, last: true, payload: textHex("pl") })

  it.each(EXTRA_VALUES)("8-element array: extra %s is skipped", (_, value) => {
    // Followed by a second frame: the skip must consume exactly the extra value.
    const frames = decodeAll(h("98", baseFrame, value, "970100a080a0c3c0"))
    assert.deepStrictEqual(frames, [baseExpected, expectFrame({ type: 1, channel: 0, last: true })])
  })

  it("9- and many-element arrays with every kind of extra value", () => {
    const all = EXTRA_VALUES.map(([, v]) => v)
    assert.deepStrictEqual(decodeOne(h("99", baseFrame, all[0]!, all[all.length - 1]!)), baseExpected)
    const n = 7 + all.length
    assert.deepStrictEqual(decodeOne(h(`dc${n.toString(16).padStart(4, "0")}`, baseFrame, ...all)), baseExpected)
    // Every extra value also skips inside one extra array and as unknown map values.
    const inArray = `dc${all.length.toString(16).padStart(4, "0")}${all.join("")}`
    assert.deepStrictEqual(decodeOne(h("98", baseFrame, inArray)), baseExpected)
  })

  it("the map form with all keys, any order, plus unknown keys", () => {
    const bytes = h(
      "8a",
      fs("Unknown"),
      "92 01 81 a1 61 c0",
      fs("Payload"),
      fs("\x01\x02\x03"),
      fs("Type"),
      "00",
      fs("Channel"),
      "cd0100",
      fs("Method"),
      fs(ADD),
      fs("Headers"),
      `81 ${fs("k")} ${fs("v")}`,
      fs("Error"),
      fs("boom"),
      fs("Last"),
      "c3",
      fs("Extra"),
      "cb3ff8000000000000",
      "c0", // nil key: unknown, skipped
      "c0"
    )
    assert.deepStrictEqual(
      decodeOne(bytes),
      expectFrame({
        type: 0,
        channel: 256,
        method: ADD,
        headers: [["k", "v"]],
        error: "boom",
        last: true,
        payload: "010203"
      })
    )
  })

  it("the map form with the README §8 keys only (Type, Channel, Method, Last, Payload)", () => {
    const bytes = h(
      "85",
      fs("Type"),
      "00",
      fs("Channel"),
      "06",
      fs("Method"),
      fs(ADD),
      fs("Last"),
      "c2",
      fs("Payload"),
      "c0"
    )
    assert.deepStrictEqual(decodeOne(bytes), expectFrame({ type: 0, channel: 6, method: ADD }))
    // map16 form, empty map (all zero values), and keys as str8/bin.
    assert.deepStrictEqual(decodeOne(h("de0001", fs("Channel"), "07")), expectFrame({ type: 0, channel: 7 }))
    assert.deepStrictEqual(decodeOne(h("80")), expectFrame({ type: 0, channel: 0 }))
    assert.deepStrictEqual(
      decodeOne(h("82", len8("d9", "Type"), "01", len8("c4", "Channel"), "02")),
      expectFrame({ type: 1, channel: 2 })
    )
    // Keys are case-sensitive: lowercase keys are unknown.
    assert.deepStrictEqual(
      decodeOne(h("82", fs("type"), "01", fs("channel"), "02")),
      expectFrame({ type: 0, channel: 0 })
    )
  })

  it("headers {\"k\":\"v\"} and map16 headers", () => {
    assert.deepStrictEqual(decodeOne(h("970000", fs(ADD), "81", fs("k"), fs("v"), "a0c2c0")).headers, [["k", "v"]])
    assert.deepStrictEqual(
      decodeOne(h("970000", fs(ADD), "de0002", fs("a"), fs("1"), fs("b"), fs("2"), "a0c2c0")).headers,
      [["a", "1"], ["b", "2"]]
    )
    // Duplicate keys: the last one wins.
    assert.deepStrictEqual(decodeOne(h("970000a0", "82", fs("k"), fs("1"), fs("k"), fs("2"), "a0c2c0")).headers, [[
      "k",
      "2"
    ]])
  })

  it("header keys __proto__ and constructor stay own keys and do not pollute prototypes", () => {
    const bytes = h(
      "970000a0",
      "83",
      fs("__proto__"),
      fs("polluted"),
      fs("constructor"),
      fs("evil"),
      fs("toString"),
      fs("x"),
      "a0c2c0"
    )
    const result = decodeFrames(bytes)
    if (Result.isFailure(result)) return assert.fail(result.failure.message)
    const headers = result.success[0]!.headers
    assert.strictEqual(Object.getPrototypeOf(headers), null)
    assert.isTrue(Object.hasOwn(headers, "__proto__"))
    assert.isTrue(Object.hasOwn(headers, "constructor"))
    assert.strictEqual(Headers.get(headers, "__proto__"), "polluted")
    assert.strictEqual(Headers.get(headers, "constructor"), "evil")
    assert.strictEqual(Headers.get(headers, "toString"), "x")
    assert.deepStrictEqual(Object.keys(headers).sort(), ["__proto__", "constructor", "toString"])
    const probe: Record<string, unknown> = {}
    assert.isUndefined(probe["polluted"])
    assert.isFalse(Object.hasOwn(Object.prototype, "polluted"))
    assert.strictEqual(typeof probe.toString, "function")
    // Re-encoding keeps them.
    assert.deepStrictEqual(decodeOne(encodeFrame(result.success[0]!)).headers, [
      ["__proto__", "polluted"],
      ["constructor", "evil"],
      ["toString", "x"]
    ])
  })

  it("unknown frame types decode fine", () => {
    for (const [form, type] of [["07", 7], ["ccc8", 200], ["cdffff", 65535], ["ff", -1]] as const) {
      assert.deepStrictEqual(decodeOne(h("97", form, "00a080a0c2c0")), expectFrame({ type, channel: 0 }))
    }
  })

  it("invalid UTF-8 in strings is tolerated (replacement characters)", () => {
    assert.strictEqual(decodeOne(h("970000a2ff41 80a0c2c0")).method, "\ufffdA")
  })
})

// ---------------------------------------------------------------------------------------------
// Chunking and zero-copy
// ---------------------------------------------------------------------------------------------

describe("FrameDecoder chunking", () => {
  it("random frame sequences decode identically under any chunking", () => {
    const rng = makeRng(0xc4a2)
    for (let round = 0; round < 400; round++) {
      const frames: Array<Frame.Frame> = []
      const n = rng.range(1, 25)
      for (let i = 0; i < n; i++) {
        frames.push(
          rng.chance(0.3) ? Result.getOrThrow(decodeFrames(rng.pick(vectorLines)))[0]! : randomFrame(rng)
        )
      }
      const bytes = concat(frames.map(encodeFrame))
      const want = frames.map(plain)
      const splits: Array<Array<Uint8Array>> = [
        [bytes],
        splitAt(rng, bytes, rng.range(2, 4)),
        splitAt(rng, bytes, rng.range(2, 200)),
        randomChunks(rng, bytes)
      ]
      if (round % 10 === 0) splits.push(bytewise(bytes))
      for (const chunks of splits) {
        const outcome = decodeChunks(chunks)
        assert.isUndefined(outcome.error)
        assert.deepStrictEqual(outcome.frames.map(plain), want)
      }
    }
  })

  it("empty chunks are harmless", () => {
    const bytes = encodeFrame(Frame.open(3, ADD))
    const outcome = decodeChunks([new Uint8Array(0), bytes.subarray(0, 4), new Uint8Array(0), bytes.subarray(4)])
    assert.isUndefined(outcome.error)
    assert.strictEqual(outcome.frames.length, 1)
  })

  it("large payloads split across many chunks", () => {
    const rng = makeRng(99)
    const payload = rng.bytes(300_000)
    const bytes = concat([encodeFrame(Frame.data(1, payload)), encodeFrame(Frame.end(1))])
    for (const size of [1000, 4096, 65536, 100_001]) {
      const chunks: Array<Uint8Array> = []
      for (let i = 0; i < bytes.length; i += size) chunks.push(bytes.subarray(i, i + size))
      const outcome = decodeChunks(chunks)
      assert.isUndefined(outcome.error)
      assert.strictEqual(outcome.frames.length, 2)
      assert.strictEqual(toHex(outcome.frames[0]!.payload!), toHex(payload))
    }
  })

  it("zero-copy: payloads of frames wholly inside one chunk are views on that chunk", () => {
    const frames = [Frame.data(1, fromHex("0102030405")), Frame.data(2, new Uint8Array(70_000).fill(7), true)]
    const inner = concat(frames.map(encodeFrame))
    // A chunk that is itself a view at a non-zero offset of a bigger buffer.
    const backing = new Uint8Array(inner.length + 20)
    backing.set(inner, 10)
    const chunk = backing.subarray(10, 10 + inner.length)
    const decoder = new FrameDecoder()
    const got: Array<Frame.Frame> = []
    assert.isUndefined(decoder.feed(chunk, (f) => got.push(f)))
    assert.strictEqual(got.length, 2)
    for (const f of got) {
      assert.strictEqual(f.payload!.buffer, chunk.buffer)
      const offset = f.payload!.byteOffset - chunk.byteOffset
      assert.strictEqual(toHex(chunk.subarray(offset, offset + f.payload!.length)), toHex(f.payload!))
    }
    assert.strictEqual(decoder.pendingBytes, 0)
  })

  it("zero-copy resumes after a split frame; split frames still decode correctly", () => {
    const a = encodeFrame(Frame.data(1, fromHex("aabbccdd")))
    const b = encodeFrame(Frame.data(2, fromHex("11223344"), true))
    const c = encodeFrame(Frame.data(3, new Uint8Array(5000).fill(9)))
    const first = a.slice(0, 5)
    const second = concat([a.subarray(5), b, c.subarray(0, 100)])
    const third = c.slice(100)
    const decoder = new FrameDecoder()
    const got: Array<Frame.Frame> = []
    assert.isUndefined(decoder.feed(first, (f) => got.push(f)))
    assert.strictEqual(got.length, 0)
    assert.strictEqual(decoder.pendingBytes, 5)
    assert.isUndefined(decoder.feed(second, (f) => got.push(f)))
    assert.strictEqual(got.length, 2)
    assert.strictEqual(decoder.pendingBytes, 100)
    assert.isUndefined(decoder.feed(third, (f) => got.push(f)))
    assert.isUndefined(decoder.finish())
    assert.deepStrictEqual(got.map(plain), [a, b, c].map((x) => decodeOne(x)))
    // The frame that completed inside `second` (b) is a view on `second`.
    assert.strictEqual(got[1]!.payload!.buffer, second.buffer)
    // The split frames are correct copies that do not alias the chunks.
    assert.notStrictEqual(got[0]!.payload!.buffer, first.buffer)
    assert.strictEqual(toHex(got[0]!.payload!), "aabbccdd")
  })

  it("frames before a bad frame in the same chunk are delivered", () => {
    const good = concat([encodeFrame(Frame.open(0, ADD)), encodeFrame(Frame.end(0))])
    const outcome = expectReject(concat([good, h("c1"), encodeFrame(Frame.end(1))]), "MalformedFrame", {}, 2)
    assert.deepStrictEqual(outcome.frames.map(plain), decodeAll(good))
    // Same when the bad frame is in a later chunk.
    const split = decodeChunks([good.subarray(0, 7), concat([good.subarray(7), h("97 a1 30")])])
    assert.strictEqual(split.frames.length, 2)
    assert.strictEqual(split.error?.reason, "MalformedFrame")
  })
})

// ---------------------------------------------------------------------------------------------
// Rejections
// ---------------------------------------------------------------------------------------------

describe("FrameDecoder rejections", () => {
  const rest = "a080a0c2c0"

  it.each([
    ["c1 (never used)", "c1"],
    ["a top-level string", "a3616263"],
    ["a top-level str8", "d903616263"],
    ["a top-level positive int", "05"],
    ["a top-level negative int", "ff"],
    ["a top-level uint8", "cc05"],
    ["a top-level nil", "c0"],
    ["a top-level bool", "c3"],
    ["a top-level float", "cb3ff0000000000000"],
    ["a top-level bin", "c40100"],
    ["a top-level ext", "d40100"]
  ])("top level %s", (_, hex) => {
    expectReject(h(hex), "MalformedFrame")
  })

  it.each([
    ["type as string \"0\"", `97 a130 00 ${rest}`],
    ["type as bool", `97 c3 00 ${rest}`],
    ["type as float", `97 ca3f800000 00 ${rest}`],
    ["channel as float32", `97 01 ca3f800000 ${rest}`],
    ["channel as float64", `97 01 cb3ff0000000000000 ${rest}`],
    ["channel as string", `97 01 a131 ${rest}`],
    ["channel as bool", `97 01 c3 ${rest}`],
    ["channel as array", `97 01 90 ${rest}`],
    ["method as int", "97 00 00 05 80 a0 c2 c0"],
    ["method as array", "97 00 00 90 80 a0 c2 c0"],
    ["headers as array", "97 00 00 a0 90 a0 c2 c0"],
    ["headers as string", "97 00 00 a0 a0 a0 c2 c0"],
    ["header key int", "97 00 00 a0 81 01 a176 a0 c2 c0"],
    ["header value int", "97 00 00 a0 81 a16b 01 a0 c2 c0"],
    ["header value map", "97 00 00 a0 81 a16b 80 a0 c2 c0"],
    ["error as int", "97 01 00 a0 80 00 c3 c0"],
    ["error as map", "97 01 00 a0 80 80 c3 c0"],
    ["last as int 1", "97 01 00 a0 80 a0 01 c0"],
    ["last as int 0", "97 01 00 a0 80 a0 00 c0"],
    ["last as string", "97 01 00 a0 80 a0 a0 c0"],
    ["payload as int", "97 01 00 a0 80 a0 c3 05"],
    ["payload as array", "97 01 00 a0 80 a0 c3 90"],
    ["empty array", "90"],
    ["1-element array", "91 00"],
    ["array16 of 1", "dc0001 00"],
    ["uint64 2^53", `97 01 cf0020000000000000 ${rest}`],
    ["uint64 max", `97 01 cfffffffffffffffff ${rest}`],
    ["int64 -2^53", `97 01 d3ffe0000000000000 ${rest}`],
    ["int64 min", `97 01 d38000000000000000 ${rest}`],
    ["int64 2^63-1", `97 01 d37fffffffffffffff ${rest}`],
    ["type uint64 beyond safe", `97 cf0100000000000000 00 ${rest}`],
    ["extra slot with c1", "98 01 00 a0 80 a0 c2 c0 c1"],
    ["map form key int", "81 01 00"],
    ["map form Type as string", `81 ${fs("Type")} a130`],
    ["map form Last as int", `81 ${fs("Last")} 01`]
  ])("%s", (_, hex) => {
    expectReject(h(hex), "MalformedFrame")
  })

  it("truncated frame then finish() → TruncatedFrame", () => {
    const full = encodeFrame(Frame.data(4, fromHex("0102030405"), true))
    for (let cut = 1; cut < full.length; cut++) {
      const decoder = new FrameDecoder()
      let delivered = 0
      assert.isUndefined(decoder.feed(full.subarray(0, cut), () => delivered++))
      assert.strictEqual(decoder.pendingBytes, cut)
      const error = decoder.finish()
      assert.strictEqual(error?.reason, "TruncatedFrame")
      assert.strictEqual(error?.code, ProtocolErrorCode.TruncatedFrame)
      assert.strictEqual(delivered, 0)
      assert.strictEqual(decoder.error, error)
    }
    const result = decodeFrames(concat([encodeFrame(Frame.end(0)), full.subarray(0, 9)]))
    assert.isTrue(Result.isFailure(result))
    if (Result.isFailure(result)) assert.strictEqual(result.failure.reason, "TruncatedFrame")
    // A clean end is not an error.
    const decoder = new FrameDecoder()
    decoder.feed(full, () => {})
    assert.isUndefined(decoder.finish())
    assert.isUndefined(new FrameDecoder().finish())
  })

  it("after a failure, feed() and finish() keep returning the same error", () => {
    const decoder = new FrameDecoder()
    let delivered = 0
    const error = decoder.feed(h("970100a080a0c3c0", "c1"), () => delivered++)
    assert.strictEqual(delivered, 1)
    assert.isDefined(error)
    assert.strictEqual(decoder.error, error)
    assert.strictEqual(decoder.pendingBytes, 0)
    assert.strictEqual(decoder.feed(encodeFrame(Frame.end(1)), () => delivered++), error)
    assert.strictEqual(decoder.feed(new Uint8Array(0), () => delivered++), error)
    assert.strictEqual(decoder.finish(), error)
    assert.strictEqual(delivered, 1)
    // Also for a failure found while completing a buffered partial frame.
    const d2 = new FrameDecoder()
    assert.isUndefined(d2.feed(h("97 01"), () => {}))
    const e2 = d2.feed(h("a131 a080a0c2c0"), () => {})
    assert.strictEqual(e2?.reason, "MalformedFrame")
    assert.strictEqual(d2.feed(encodeFrame(Frame.end(1)), () => {}), e2)
    assert.strictEqual(d2.finish(), e2)
  })
})

// ---------------------------------------------------------------------------------------------
// Limits
// ---------------------------------------------------------------------------------------------

describe("FrameDecoder limits", () => {
  it("uses defaultLimits unless overridden", () => {
    const decoder = new FrameDecoder({ maxMethodBytes: 3 })
    assert.strictEqual(decoder.limits.maxMethodBytes, 3)
    assert.strictEqual(decoder.limits.maxFrameBytes, 16 * 1024 * 1024)
  })

  it("frames larger than maxFrameBytes", () => {
    const frame = encodeFrame(Frame.data(1, new Uint8Array(100)))
    // Exactly at the limit is fine, one byte more is not.
    decodeOne(frame, { maxFrameBytes: frame.length })
    expectReject(frame, "FrameTooLarge", { maxFrameBytes: frame.length - 1 })
    expectReject(encodeFrame(Frame.error(1, "e".repeat(100))), "FrameTooLarge", { maxFrameBytes: 64 })
    // Skipped extra values count too.
    expectReject(h("98 01 00 a0 80 a0 c2 c0", len16("da", "x".repeat(100))), "FrameTooLarge", { maxFrameBytes: 64 })
    expectReject(h("98 01 00 a0 80 a0 c2 c0 dc0100", "00".repeat(256)), "FrameTooLarge", { maxFrameBytes: 64 })
  })

  it.each([
    ["payload str32", "97 01 00 a0 80 a0 c2 db ffffffff"],
    ["payload bin32", "97 01 00 a0 80 a0 c2 c6 ffffffff"],
    ["error str32", "97 01 00 a0 80 db ffffffff"],
    ["extra str32", "98 01 00 a0 80 a0 c2 c0 db ffffffff"],
    ["extra ext32", "98 01 00 a0 80 a0 c2 c0 c9 ffffffff"],
    ["map unknown bin32", `81 ${fs("Zzz")} c6 ffffffff`]
  ])("absurd declared length (%s) is rejected at once", (_, hex) => {
    for (const limits of [{}, { maxFrameBytes: 1024 }]) {
      const decoder = new FrameDecoder(limits)
      // Only the header bytes are fed: the decoder must not wait for (or allocate) 4 GiB.
      const error = decoder.feed(h(hex), () => assert.fail("no frame expected"))
      assert.strictEqual(error?.reason, "FrameTooLarge")
      assert.strictEqual(error?.code, ProtocolErrorCode.FrameTooLarge)
      assert.strictEqual(decoder.pendingBytes, 0)
      // Byte by byte as well.
      const d2 = new FrameDecoder(limits)
      let e2 = undefined
      for (const b of bytewise(h(hex))) {
        e2 = d2.feed(b, () => {})
        if (e2 !== undefined) break
      }
      assert.strictEqual(e2?.reason, "FrameTooLarge")
    }
  })

  it("a large but legal declared payload is buffered only as it arrives", () => {
    const decoder = new FrameDecoder({ maxFrameBytes: 2_000_000 })
    const full = encodeFrame(Frame.data(1, new Uint8Array(1_000_000)))
    let delivered = 0
    assert.isUndefined(decoder.feed(full.subarray(0, 100), () => delivered++))
    assert.strictEqual(decoder.pendingBytes, 100)
    for (let i = 100; i < full.length; i += 50_000) {
      assert.isUndefined(decoder.feed(full.subarray(i, Math.min(full.length, i + 50_000)), () => delivered++))
      assert.isAtMost(decoder.pendingBytes, full.length)
    }
    assert.strictEqual(delivered, 1)
    assert.strictEqual(decoder.pendingBytes, 0)
  })

  it("more headers than maxHeaderCount", () => {
    const make = (n: number): Uint8Array => {
      const record: Record<string, string> = {}
      for (let i = 0; i < n; i++) record[`h${i}`] = "v"
      return encodeFrame(Frame.open(0, ADD, Headers.make(record)))
    }
    assert.strictEqual(decodeOne(make(3), { maxHeaderCount: 3 }).headers.length, 3)
    expectReject(make(4), "TooManyHeaders", { maxHeaderCount: 3 })
    expectReject(make(65), "TooManyHeaders")
    // An absurd declared count is rejected before reading any entry.
    const decoder = new FrameDecoder()
    assert.strictEqual(decoder.feed(h("97 00 00 a0 df ffffffff"), () => {})?.reason, "TooManyHeaders")
    assert.strictEqual(decoder.pendingBytes, 0)
  })

  it("header bytes beyond maxHeaderBytes", () => {
    // Keys plus values: "ab"+"cd"+"ef"+"gh" = 8 bytes.
    const frame = encodeFrame(Frame.open(0, ADD, Headers.make({ ab: "cd", ef: "gh" })))
    assert.strictEqual(decodeOne(frame, { maxHeaderBytes: 8 }).headers.length, 2)
    expectReject(frame, "HeadersTooLarge", { maxHeaderBytes: 7 })
    expectReject(frame, "HeadersTooLarge", { maxHeaderBytes: 3 })
    expectReject(encodeFrame(Frame.open(0, ADD, Headers.make({ k: "v".repeat(16384) }))), "HeadersTooLarge")
    // Declared with str32 of absurd length: rejected without waiting.
    const decoder = new FrameDecoder()
    assert.strictEqual(decoder.feed(h("97 00 00 a0 81 a16b db ffffffff"), () => {})?.reason, "HeadersTooLarge")
    assert.strictEqual(decoder.pendingBytes, 0)
  })

  it("method longer than maxMethodBytes", () => {
    assert.strictEqual(decodeOne(encodeFrame(Frame.open(0, ADD)), { maxMethodBytes: 9 }).method, ADD)
    expectReject(encodeFrame(Frame.open(0, ADD)), "MethodTooLong", { maxMethodBytes: 8 })
    expectReject(encodeFrame(Frame.open(0, "m".repeat(1025))), "MethodTooLong")
    decodeOne(encodeFrame(Frame.open(0, "m".repeat(1024))))
    // Multi-byte: the limit counts bytes.
    expectReject(encodeFrame(Frame.open(0, "é".repeat(5))), "MethodTooLong", { maxMethodBytes: 9 })
    // In the map form too, and with an absurd declared length.
    expectReject(h("81", fs("Method"), fs(ADD)), "MethodTooLong", { maxMethodBytes: 8 })
    const decoder = new FrameDecoder()
    assert.strictEqual(decoder.feed(h("97 00 00 db ffffffff"), () => {})?.reason, "MethodTooLong")
    assert.strictEqual(decoder.pendingBytes, 0)
  })

  it("nesting deeper than maxSkipDepth in skipped values", () => {
    const nested = (depth: number): string => "91".repeat(depth) + "00"
    const frame = (extra: string): Uint8Array => h("98 01 00 a0 80 a0 c2 c0", extra)
    decodeOne(frame(nested(2)), { maxSkipDepth: 2 })
    expectReject(frame(nested(3)), "MalformedFrame", { maxSkipDepth: 2 })
    decodeOne(frame("81 a161" + "81 a161".repeat(1) + "00"), { maxSkipDepth: 2 })
    expectReject(frame("81 a161".repeat(3) + "00"), "MalformedFrame", { maxSkipDepth: 2 })
    // Default depth 16.
    decodeOne(frame(nested(16)))
    expectReject(frame(nested(17)), "MalformedFrame")
    // Unknown map keys in the map form are depth-limited too.
    expectReject(h("81", fs("Zzz"), nested(3)), "MalformedFrame", { maxSkipDepth: 2 })
    // A deeply nested but truncated value fails as soon as the depth is exceeded.
    const decoder = new FrameDecoder({ maxSkipDepth: 4 })
    assert.strictEqual(
      decoder.feed(h("98 01 00 a0 80 a0 c2 c0", "dc ffff".repeat(6)), () => {})?.reason,
      "MalformedFrame"
    )
    assert.strictEqual(decoder.pendingBytes, 0)
  })
})

// ---------------------------------------------------------------------------------------------
// Robustness: random and mutated input
// ---------------------------------------------------------------------------------------------

describe("FrameDecoder robustness", () => {
  it("100,000 random / mutated inputs: decode or typed ProtocolError, never a throw", () => {
    const CASES = 100_000
    const SEED = 0x0f_5eed
    const failures: Array<string> = []
    const reasons = new Map<string, number>()
    let frames = 0
    for (let i = 0; i < CASES && failures.length < 5; i++) {
      const rng: Rng = makeRng(mixSeed(SEED, i))
      const input = fuzzCase(rng, vectorLines, encodeFrame)
      try {
        const whole = decodeChunks([input.bytes], input.limits)
        const chunked = decodeChunks(randomChunks(rng, input.bytes), input.limits)
        for (const outcome of [whole, chunked]) {
          if (outcome.error !== undefined) {
            if (!isProtocolError(outcome.error)) throw new Error("untyped error value")
            if (outcome.error.code !== ProtocolErrorCode[outcome.error.reason]) throw new Error("code mismatch")
          }
        }
        // Chunking never changes the outcome.
        if (whole.error?.reason !== chunked.error?.reason) {
          throw new Error(`reason differs: ${whole.error?.reason} vs ${chunked.error?.reason}`)
        }
        if (whole.frames.length !== chunked.frames.length) throw new Error("frame count differs")
        for (let k = 0; k < whole.frames.length; k++) {
          if (JSON.stringify(plain(whole.frames[k]!)) !== JSON.stringify(plain(chunked.frames[k]!))) {
            throw new Error(`frame ${k} differs`)
          }
        }
        frames += whole.frames.length
        const reason = whole.error?.reason ?? "ok"
        reasons.set(reason, (reasons.get(reason) ?? 0) + 1)
      } catch (e) {
        failures.push(`case ${i} (${input.kind}, ${toHex(input.bytes).slice(0, 200)}): ${String(e)}`)
      }
    }
    assert.deepStrictEqual(failures, [])
    // The inputs exercised both paths substantially.
    assert.isAbove(frames, 10_000)
    assert.isAbove(reasons.get("ok") ?? 0, 5_000)
    for (const reason of ["MalformedFrame", "TruncatedFrame", "FrameTooLarge"]) {
      assert.isAbove(reasons.get(reason) ?? 0, 100, reason)
    }
  })

  it("every vector line truncated at every point fails with TruncatedFrame only", () => {
    for (const line of vectorLines) {
      for (let cut = 1; cut < line.length; cut++) {
        const outcome = decodeChunks([line.subarray(0, cut)])
        assert.strictEqual(outcome.error?.reason, "TruncatedFrame")
        assert.strictEqual(outcome.frames.length, 0)
      }
    }
  })

  it("smallFrames generator produces decodable frames", () => {
    const rng = makeRng(3)
    for (let i = 0; i < 200; i++) decodeOne(encodeFrame(randomFrame(rng, smallFrames)))
  })
})

// ---------------------------------------------------------------------------------------------
describe("FrameEncoder memory reuse (recycle)", () => {
  const payloadOf = (size: number, fill: number) => new Uint8Array(size).fill(fill)
  const dataFrame = (channel: number, size: number, fill: number) =>
    Frame.make(1, channel, "", Headers.empty, "", false, payloadOf(size, fill))

  it("flushed bytes stay intact until recycle, whatever is written after them", () => {
    const rng = makeRng(7)
    const encoder = new FrameEncoder()
    const held: Array<{ bytes: Uint8Array; copy: Uint8Array }> = []
    for (let round = 0; round < 200; round++) {
      const frames = 1 + rng.int(4)
      for (let i = 0; i < frames; i++) {
        // sizes around the slab sizes (2 KiB … 64 KiB and past them)
        const size = [10, 2000, 5000, 40_000, 65_536, 70_000][rng.int(6)]!
        encoder.write(dataFrame(round, size, (round + i) & 0xff))
      }
      const bytes = encoder.flush()!
      held.push({ bytes, copy: bytes.slice() })
      // recycle only sometimes: the held chunks since the last recycle must never change
      if (rng.next() < 0.3) {
        for (const h of held) assert.deepStrictEqual(h.bytes, h.copy)
        held.length = 0
        encoder.recycle()
      }
    }
    for (const h of held) assert.deepStrictEqual(h.bytes, h.copy)
  })

  it("after recycle, same-size frames reuse memory instead of allocating", () => {
    const encoder = new FrameEncoder()
    const buffers = new Set<ArrayBufferLike>()
    for (let i = 0; i < 50; i++) {
      encoder.write(dataFrame(1, 65_536, i))
      const bytes = encoder.flush()!
      assert.strictEqual(bytes[bytes.length - 1], i)
      buffers.add(bytes.buffer)
      encoder.recycle()
    }
    // the first frames allocate while the slab grows; then the same few buffers come back
    assert.isAtMost(buffers.size, 4)
  })

  it("unflushed bytes survive a recycle", () => {
    const encoder = new FrameEncoder()
    encoder.write(dataFrame(1, 100, 1))
    const first = encoder.flush()!.slice()
    encoder.write(dataFrame(2, 100, 2))
    encoder.recycle() // one frame still queued: kept
    encoder.write(dataFrame(3, 100, 3))
    const rest = encoder.flush()!
    const decoded = decodeFrames(rest)
    assert.isTrue(Result.isSuccess(decoded))
    if (Result.isSuccess(decoded)) assert.deepStrictEqual(decoded.success.map((f) => f.channel), [2, 3])
    assert.strictEqual(decodeOne(first).channel, 1)
  })
})

// ---------------------------------------------------------------------------------------------
describe("FrameEncoder.writeDataWith (payload encoded in place)", () => {
  const fillBytes = (payload: Uint8Array, buf: Uint8Array, pos: number, end: number): number => {
    if (pos + payload.length > end) return -1
    buf.set(payload, pos)
    return pos + payload.length
  }

  it("writes the same bytes as write(Frame.make(...)) for every payload size and header set", () => {
    const rng = makeRng(11)
    for (const size of [0, 1, 29, 31, 32, 33, 255, 256, 2000, 65_535, 65_536, 70_000]) {
      for (const headers of [Headers.empty, Headers.make({ a: "1", "duplex-codec": "json", long: "x".repeat(300) })]) {
        for (const last of [false, true]) {
          const payload = rng.bytes(size)
          const expected = new FrameEncoder()
          expected.write(Frame.make(1, 12345, "", headers, "", last, payload))
          const actual = new FrameEncoder()
          // something queued first, so the frame starts mid-slab
          actual.write(Frame.data(3, rng.bytes(rng.int(3000)), false))
          const before = actual.flush()!.length
          const n = actual.writeDataWith(12345, headers, last, payload, fillBytes)
          assert.strictEqual(n, size)
          assert.strictEqual(toHex(actual.flush()!), toHex(expected.flush()!), `size ${size}, last ${last}`)
          assert.isAbove(before, -1)
        }
      }
    }
  })

  it("asks for more room until the payload fits, and leaves nothing behind when fill throws", () => {
    const encoder = new FrameEncoder()
    const big = new Uint8Array(200_000).fill(9)
    let calls = 0
    encoder.writeDataWith(1, Headers.empty, false, big, (payload, buf, pos, end) => {
      calls++
      return fillBytes(payload, buf, pos, end)
    })
    assert.isAbove(calls, 1)
    assert.throws(() =>
      encoder.writeDataWith(2, Headers.empty, false, null, () => {
        throw new Error("boom")
      })
    )
    const frames = decodeFrames(encoder.flush()!)
    assert.isTrue(Result.isSuccess(frames))
    if (Result.isSuccess(frames)) {
      assert.deepStrictEqual(frames.success.map((f) => [f.channel, f.payload?.length]), [[1, 200_000]])
    }
  })
})

// ---------------------------------------------------------------------------------------------
describe("FrameDecoder assembling large frames in place (assembleLarge)", () => {
  /** A stream of frames, small and large (16 KiB+ payloads, some with headers), and their bytes. */
  const workload = (rng: Rng) => {
    const frames: Array<Frame.Frame> = []
    for (let i = 0; i < 60; i++) {
      const size = rng.chance(0.5) ? rng.range(16 * 1024, 150_000) : rng.int(2000)
      const headers = rng.chance(0.3) ? Headers.make({ k: "v".repeat(rng.int(50)) }) : Headers.empty
      frames.push(Frame.make(1, rng.int(1000), "", headers, "", rng.chance(0.1), rng.bytes(size)))
      if (rng.chance(0.1)) frames.push(randomFrame(rng))
    }
    return { frames, bytes: concat(frames.map((f) => encodeFrame(f))) }
  }

  it("a reader that fills readTarget() directly gets the same frames, whatever the read sizes", () => {
    for (let seed = 0; seed < 20; seed++) {
      const rng = makeRng(mixSeed(seed, 0xa55e))
      const { bytes, frames } = workload(rng)
      const decoder = new FrameDecoder()
      decoder.assembleLarge = true
      const got: Array<PlainFrame> = []
      const onFrame = (f: Frame.Frame) => got.push(plain(f))
      const scratch = new Uint8Array(rng.chance(0.5) ? 512 : 65_536)
      let p = 0
      let direct = 0
      while (p < bytes.length) {
        const target = decoder.readTarget()
        const into = target ?? scratch
        // the "kernel" delivers anything from 1 byte to the whole room
        const n = Math.min(into.length, bytes.length - p, 1 + rng.int(into.length))
        into.set(bytes.subarray(p, p + n))
        p += n
        const error = target !== undefined
          ? (direct++, decoder.filled(n, onFrame))
          : decoder.feed(scratch.slice(0, n), onFrame)
        assert.isUndefined(error)
      }
      assert.isUndefined(decoder.finish())
      assert.deepStrictEqual(got, frames.map(plain), `seed ${seed}`)
      assert.isAbove(direct, 0, "some bytes went straight into assembled frames")
    }
  })

  it("feed() alone (any chunking) gives the same frames with assembling on", () => {
    for (let seed = 0; seed < 20; seed++) {
      const rng = makeRng(mixSeed(seed, 0xfeed))
      const { bytes, frames } = workload(rng)
      const decoder = new FrameDecoder()
      decoder.assembleLarge = true
      const got: Array<PlainFrame> = []
      for (const chunk of randomChunks(rng, bytes)) assert.isUndefined(decoder.feed(chunk, (f) => got.push(plain(f))))
      assert.isUndefined(decoder.finish())
      assert.deepStrictEqual(got, frames.map(plain), `seed ${seed}`)
    }
  })

  it("memory follows the bytes that arrived: a frame announcing 8 MiB that stalls holds one small buffer", () => {
    const big = encodeFrame(Frame.make(1, 5, "", Headers.empty, "", false, new Uint8Array(8 * 1024 * 1024).fill(1)))
    const decoder = new FrameDecoder()
    decoder.assembleLarge = true
    assert.isUndefined(decoder.feed(big.subarray(0, 20), () => assert.fail("no frame yet")))
    assert.isAtMost(decoder.readTarget()?.length ?? 0, 64 * 1024 + 256)
    // and the rest, in read-sized pieces into the growing buffer, still gives the frame
    let p = 20
    let frames = 0
    while (p < big.length) {
      const target = decoder.readTarget()!
      const n = Math.min(target.length, big.length - p)
      target.set(big.subarray(p, p + n))
      p += n
      assert.isUndefined(decoder.filled(n, (f) => {
        frames++
        assert.strictEqual(f.payload?.length, 8 * 1024 * 1024)
      }))
    }
    assert.strictEqual(frames, 1)
  })

  it("input ending inside an assembled frame is a TruncatedFrame", () => {
    const big = encodeFrame(Frame.make(1, 5, "", Headers.empty, "", false, new Uint8Array(40_000)))
    const decoder = new FrameDecoder()
    decoder.assembleLarge = true
    assert.isUndefined(decoder.feed(big.subarray(0, 1000), () => assert.fail("no frame yet")))
    assert.isDefined(decoder.readTarget())
    assert.isUndefined(decoder.feed(big.subarray(1000, 30_000), () => assert.fail("no frame yet")))
    assert.strictEqual(decoder.finish()?.reason, "TruncatedFrame")
  })
})
