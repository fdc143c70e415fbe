/**
 * Golden wire vectors of the original Go prototype (test/fixtures/vectors, see its README):
 * every frame decodes to the manifest's fields, re-encodes to the exact captured bytes, and whole
 * files decode the same under any chunking.
 */
import { assert, describe, it } from "@effect/vitest"
import { decode as msgpackDecode } from "@msgpack/msgpack"
import * as Result from "effect/Result"
import * as Schema from "effect/Schema"
import * as fs from "node:fs"
import * as Frame from "../../src/Frame.ts"
import { decodeFrames, encodeFrame } from "../../src/FrameCodec.ts"
import * as Greeting from "../../src/Greeting.ts"
import * as Headers from "../../src/Headers.ts"
import {
  concat,
  decodeChunks,
  fromHex,
  makeRng,
  plain,
  type PlainFrame,
  splitAt,
  textHex,
  toHex,
  VECTORS_DIR
} from "../fuzz/generators.ts"

const ManifestFrame = Schema.Struct({
  hex: Schema.String,
  type: Schema.Number,
  channel: Schema.Number,
  method: Schema.String,
  headers: Schema.Record(Schema.String, Schema.String),
  error: Schema.String,
  last: Schema.Boolean,
  payload_encoding: Schema.Literals(["nil", "fixstr", "str16"]),
  payload_hex: Schema.NullOr(Schema.String),
  payload_value: Schema.optionalKey(Schema.Unknown)
})
type ManifestFrame = typeof ManifestFrame.Type

const Manifest = Schema.Record(
  Schema.String,
  Schema.Union([Schema.Array(ManifestFrame), Schema.Struct({ ascii: Schema.String })])
)

const manifest = Schema.decodeUnknownSync(Manifest)(
  JSON.parse(fs.readFileSync(new URL("manifest.json", VECTORS_DIR), "utf8"))
)

const hexFiles = fs.readdirSync(VECTORS_DIR).filter((name) => name.endsWith(".hex")).sort()
const frameFiles = hexFiles.filter((name) => !name.startsWith("greeting."))
const greetingFiles = hexFiles.filter((name) => name.startsWith("greeting."))

const readLines = (name: string): Array<string> =>
  fs.readFileSync(new URL(name, VECTORS_DIR), "utf8").split("\n").filter((line) => line.length > 0)

const framesOf = (name: string): ReadonlyArray<ManifestFrame> => {
  const entry = manifest[name]
  if (entry === undefined || "ascii" in entry) throw new Error(`manifest has no frames for ${name}`)
  return entry
}

const expected = (m: ManifestFrame): PlainFrame => ({
  type: m.type,
  channel: m.channel,
  method: m.method,
  headers: Object.entries(m.headers).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
  error: m.error,
  last: m.last,
  payload: m.payload_hex
})

const decodeOk = (bytes: Uint8Array): Array<Frame.Frame> => {
  const result = decodeFrames(bytes)
  if (Result.isFailure(result)) throw new Error(`decode failed: ${result.failure.message}`)
  return result.success
}

/** The msgpack raw-string header the prototype writes for `n` payload bytes. */
const rawHeaderHex = (n: number): string =>
  n < 32 ?
    (0xa0 | n).toString(16) :
    n < 0x10000 ?
    `da${n.toString(16).padStart(4, "0")}` :
    `db${n.toString(16).padStart(8, "0")}`

describe("vector files", () => {
  it("the manifest covers exactly the .hex files", () => {
    assert.deepStrictEqual(Object.keys(manifest).sort(), hexFiles)
    assert.isAtLeast(frameFiles.length, 30)
    assert.strictEqual(greetingFiles.length, 2)
    let total = 0
    for (const name of frameFiles) total += framesOf(name).length
    assert.strictEqual(total, 90) // README §4: "All 90 frames in these files"
  })

  describe.each(frameFiles)("%s", (name) => {
    const lines = readLines(name)
    const frames = framesOf(name)

    it("lines match the manifest hex", () => {
      assert.deepStrictEqual(lines, frames.map((f) => f.hex))
    })

    it("each line decodes to exactly the manifest frame", () => {
      lines.forEach((line, i) => {
        const decoded = decodeOk(fromHex(line))
        assert.strictEqual(decoded.length, 1, `${name}:${i + 1}`)
        assert.deepStrictEqual(plain(decoded[0]!), expected(frames[i]!), `${name}:${i + 1}`)
      })
    })

    it("payload_encoding is what the line carries", () => {
      for (const m of frames) {
        if (m.payload_hex === null) {
          assert.strictEqual(m.payload_encoding, "nil")
          assert.isTrue(m.hex.endsWith("c0"))
        } else {
          const n = m.payload_hex.length / 2
          assert.strictEqual(m.payload_encoding, n < 32 ? "fixstr" : "str16")
          assert.isTrue(m.hex.endsWith(rawHeaderHex(n) + m.payload_hex), m.hex)
        }
      }
    })

    it("re-encoding gives exactly the captured bytes", () => {
      // Holds for the debian-int-encoding variants too: they differ only inside payloads, which
      // the encoder copies verbatim (all envelope ints there are small).
      for (const line of lines) {
        assert.strictEqual(toHex(encodeFrame(decodeOk(fromHex(line))[0]!)), line)
      }
    })

    it("the concatenated file decodes the same under any chunking", () => {
      const all = fromHex(lines.join(""))
      const want = frames.map(expected)
      const check = (chunks: ReadonlyArray<Uint8Array>, label: string): void => {
        const outcome = decodeChunks(chunks)
        assert.isUndefined(outcome.error, label)
        assert.deepStrictEqual(outcome.frames.map(plain), want, label)
      }
      check([all], "all at once")
      const bytewise: Array<Uint8Array> = []
      for (let i = 0; i < all.length; i++) bytewise.push(all.subarray(i, i + 1))
      check(bytewise, "one byte at a time")
      const rng = makeRng(0xd0_17 + all.length)
      for (let k = 0; k < 50; k++) {
        const chunks = splitAt(rng, all, 1 + rng.int(Math.min(all.length, 40)))
        check(chunks, `random chunks ${chunks.map((c) => c.length).join(",")}`)
      }
      // Frame-per-chunk, as the Debian build writes them.
      check(lines.map(fromHex), "one frame per chunk")
    })

    it("payload_value matches the msgpack document inside the payload", () => {
      for (const m of frames) {
        if (!("payload_value" in m)) continue
        assert.isNotNull(m.payload_hex)
        assert.deepStrictEqual(msgpackDecode(fromHex(m.payload_hex ?? "")), m.payload_value, m.hex)
      }
    })
  })

  it("every RPC payload has a payload_value, raw-frames-echo has none", () => {
    for (const name of frameFiles) {
      for (const m of framesOf(name)) {
        const rpcPayload = m.payload_hex !== null && !name.startsWith("raw-frames-echo.")
        assert.strictEqual("payload_value" in m, rpcPayload, `${name} ${m.hex}`)
      }
    }
  })

  it("all files concatenated decode as one stream, one byte at a time", () => {
    const all = fromHex(frameFiles.flatMap(readLines).join(""))
    const want = frameFiles.flatMap((name) => framesOf(name).map(expected))
    const bytewise: Array<Uint8Array> = []
    for (let i = 0; i < all.length; i++) bytewise.push(all.subarray(i, i + 1))
    const outcome = decodeChunks(bytewise)
    assert.isUndefined(outcome.error)
    assert.deepStrictEqual(outcome.frames.map(plain), want)
  })

  it("debian-int-encoding differs from the 2014 encoding only inside the payloads", () => {
    // Extra payload bytes in the Debian form: c2s `cc c8` → `d1 00c8`; s2c `ce` → `d2` (same size).
    for (const [dir, extra] of [["c2s", 1], ["s2c", 0]] as const) {
      const old = framesOf(`unary-add-bigints.${dir}.hex`)
      const debian = framesOf(`unary-add-bigints.debian-int-encoding.${dir}.hex`)
      assert.strictEqual(old.length, debian.length)
      old.forEach((a, i) => {
        const b = debian[i]!
        const pa = plain(decodeOk(fromHex(a.hex))[0]!)
        const pb = plain(decodeOk(fromHex(b.hex))[0]!)
        assert.deepStrictEqual({ ...pa, payload: null }, { ...pb, payload: null })
        assert.deepStrictEqual(a.payload_value, b.payload_value)
        if (a.payload_hex !== null) {
          assert.notStrictEqual(a.payload_hex, b.payload_hex)
          assert.strictEqual(b.payload_hex?.length, a.payload_hex.length + 2 * extra)
        }
      })
    }
    // README §7: `ce 000186a0` and `cc c8` versus `d2 000186a0` and `d1 00c8`.
    const input = framesOf("unary-add-bigints.c2s.hex")[1]!.payload_hex ?? ""
    const debianInput = framesOf("unary-add-bigints.debian-int-encoding.c2s.hex")[1]!.payload_hex ?? ""
    assert.include(input, "ce000186a0")
    assert.include(input, "ccc8")
    assert.include(debianInput, "d2000186a0")
    assert.include(debianInput, "d100c8")
  })
})

describe("greeting files", () => {
  it.each(greetingFiles)("%s parses and re-encodes", (name) => {
    const lines = readLines(name)
    assert.strictEqual(lines.length, 1)
    const line = lines[0]!
    assert.strictEqual(line.length, 72)
    const entry = manifest[name]
    if (entry === undefined || !("ascii" in entry)) throw new Error(`no greeting entry for ${name}`)
    assert.strictEqual(line, textHex(entry.ascii))
    const parsed = Greeting.parseId(entry.ascii)
    assert.isTrue(Result.isSuccess(parsed))
    if (Result.isSuccess(parsed)) {
      assert.strictEqual(parsed.success, entry.ascii)
      assert.strictEqual(toHex(Greeting.encode(parsed.success)), line)
    }
    const reader = new Greeting.GreetingReader()
    const read = reader.feed(fromHex(line))
    assert.isTrue(Result.isSuccess(read))
    if (Result.isSuccess(read)) {
      assert.strictEqual(read.success._tag, "Done")
      if (read.success._tag === "Done") {
        assert.strictEqual(read.success.id, entry.ascii)
        assert.strictEqual(read.success.rest.length, 0)
      }
    }
  })

  it("are the README's ids", () => {
    const c2s = manifest["greeting.c2s.hex"]
    const s2c = manifest["greeting.s2c.hex"]
    assert.deepStrictEqual(c2s, { ascii: "5c99675b-a2da-42f4-8bb2-7d365c2f5723" })
    assert.deepStrictEqual(s2c, { ascii: "05e79708-7692-46fd-96d0-fbab1e11322c" })
  })
})

describe("README worked examples", () => {
  const add = readLines("unary-add.c2s.hex")
  const reply = readLines("unary-add.s2c.hex")

  it("§3 OpenFrame of a unary call, byte by byte", () => {
    const bytes = encodeFrame(Frame.open(0, "Arith.Add"))
    assert.deepStrictEqual(Array.from(bytes), [
      0x97, // array, 7 elements
      0x00, // Type = 0 (OpenFrame)
      0x00, // Channel = 0
      0xa9, // fixstr, 9 bytes
      ...Array.from(new TextEncoder().encode("Arith.Add")),
      0x80, // Headers = {}
      0xa0, // Error = ""
      0xc2, // Last = false
      0xc0 // Payload = nil
    ])
    assert.strictEqual(toHex(bytes), "970000a941726974682e41646480a0c2c0")
    assert.strictEqual(toHex(bytes), add[0])
    const f = decodeOk(bytes)[0]!
    assert.deepStrictEqual(plain(f), {
      type: 0,
      channel: 0,
      method: "Arith.Add",
      headers: [],
      error: "",
      last: false,
      payload: null
    })
  })

  it("§3 input data frame {A:7,B:8}", () => {
    const payload = fromHex("82 a1 41 07 a1 42 08")
    const bytes = encodeFrame(Frame.data(0, payload, true))
    assert.deepStrictEqual(
      Array.from(bytes),
      [0x97, 0x01, 0x00, 0xa0, 0x80, 0xa0, 0xc3, 0xa7, 0x82, 0xa1, 0x41, 0x07, 0xa1, 0x42, 0x08]
    )
    assert.strictEqual(toHex(bytes), add[1])
    assert.deepStrictEqual(msgpackDecode(decodeOk(bytes)[0]!.payload!), { A: 7, B: 8 })
  })

  it("§3 reply {C:15}", () => {
    const bytes = encodeFrame(Frame.data(0, fromHex("81a1430f"), true))
    assert.strictEqual(toHex(bytes), "970100a080a0c3a481a1430f")
    assert.strictEqual(toHex(bytes), reply[0])
    assert.deepStrictEqual(msgpackDecode(decodeOk(bytes)[0]!.payload!), { C: 15 })
  })

  it("§7 error, end marker and cancel frames", () => {
    assert.strictEqual(
      toHex(encodeFrame(Frame.error(0, "divide by zero"))),
      "970100a080ae646976696465206279207a65726fc3c0"
    )
    assert.strictEqual(toHex(encodeFrame(Frame.error(0, "divide by zero"))), readLines("div-error.s2c.hex")[0])
    assert.strictEqual(toHex(encodeFrame(Frame.end(0))), "970100a080a0c3c0")
    assert.strictEqual(toHex(encodeFrame(Frame.end(0))), readLines("stream-count-empty.s2c.hex")[0])
    assert.strictEqual(toHex(encodeFrame(Frame.cancel(0))), "970100a080ab436c6f736553747265616dc2c0")
    assert.strictEqual(toHex(encodeFrame(Frame.cancel(0))), readLines("client-cancel.c2s.hex")[2])
    assert.isTrue(Frame.isAbort(decodeOk(fromHex(readLines("client-cancel.c2s.hex")[2]!))[0]!))
  })

  it("§7 long error texts and payloads use str16 (da), never str8", () => {
    const texts: Array<[string, number]> = [
      ["error-unknown-method.s2c.hex", 44],
      ["error-unknown-service.s2c.hex", 35],
      ["error-illformed-method.s2c.hex", 47]
    ]
    for (const [name, length] of texts) {
      const line = readLines(name)[0]!
      const f = decodeOk(fromHex(line))[0]!
      assert.strictEqual(new TextEncoder().encode(f.error).length, length)
      assert.strictEqual(line.slice(10, 16), `da00${length.toString(16)}`)
      assert.strictEqual(toHex(encodeFrame(Frame.error(f.channel, f.error))), line)
    }
    const stars = new Uint8Array(40).fill(0x2a)
    assert.strictEqual(toHex(encodeFrame(Frame.data(0, stars))), `970100a080a0c2da0028${toHex(stars)}`)
    const ramp = new Uint8Array(300).map((_, i) => i & 0xff)
    const rampLine = readLines("raw-frames-echo.c2s.hex").find((l) => l.includes("da012c"))
    assert.isDefined(rampLine)
    assert.strictEqual(toHex(encodeFrame(Frame.data(0, ramp, true))), rampLine)
  })

  it("§8 hello frame shape (extension) round-trips", () => {
    const hello = Frame.hello(Headers.make({ ping: "1" }))
    const bytes = encodeFrame(hello)
    assert.strictEqual(toHex(bytes), `970200a8${textHex("DUPLEX/1")}81a470696e67a131a0c2c0`)
    assert.deepStrictEqual(plain(decodeOk(bytes)[0]!), plain(hello))
  })

  it("greeting followed by frames in one write", () => {
    const greeting = fromHex(readLines("greeting.c2s.hex")[0]!)
    const framesBytes = fromHex(add.join(""))
    const reader = new Greeting.GreetingReader()
    const read = reader.feed(concat([greeting, framesBytes]))
    assert.isTrue(Result.isSuccess(read))
    if (Result.isSuccess(read) && read.success._tag === "Done") {
      assert.strictEqual(read.success.id, "5c99675b-a2da-42f4-8bb2-7d365c2f5723")
      assert.strictEqual(toHex(read.success.rest), add.join(""))
      assert.strictEqual(decodeOk(read.success.rest).length, 2)
    } else {
      assert.fail("greeting not read")
    }
  })
})
