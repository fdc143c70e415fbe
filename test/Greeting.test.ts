import { assert, describe, it } from "@effect/vitest"
import * as Result from "effect/Result"
import { ProtocolErrorCode } from "../src/DuplexError.ts"
import * as Frame from "../src/Frame.ts"
import { decodeFrames, encodeFrame } from "../src/FrameCodec.ts"
import * as Greeting from "../src/Greeting.ts"
import { GREETING_LENGTH } from "../src/Protocol.ts"
import { concat, makeRng, toHex } from "./fuzz/generators.ts"

const ID = "5c99675b-a2da-42f4-8bb2-7d365c2f5723"
const V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/

const ascii = (text: string): Uint8Array => Uint8Array.from(text, (c) => c.charCodeAt(0))

const expectBadGreeting = <A>(result: Result.Result<A, { readonly reason: string; readonly code: number }>): void => {
  assert.isTrue(Result.isFailure(result))
  if (Result.isFailure(result)) {
    assert.strictEqual(result.failure.reason, "BadGreeting")
    assert.strictEqual(result.failure.code, ProtocolErrorCode.BadGreeting)
  }
}

const done = (result: Result.Result<Greeting.ReadResult, unknown>): { id: string; rest: Uint8Array } => {
  if (Result.isFailure(result)) return assert.fail(`greeting failed: ${String(result.failure)}`)
  if (result.success._tag !== "Done") return assert.fail("greeting still pending")
  return { id: result.success.id, rest: result.success.rest }
}

describe("Greeting.makeId", () => {
  it("is a lowercase version 4 UUID, unique", () => {
    const seen = new Set<string>()
    for (let i = 0; i < 200; i++) {
      const id = Greeting.makeId()
      assert.match(id, V4)
      assert.strictEqual(id.length, GREETING_LENGTH)
      assert.strictEqual(id, id.toLowerCase())
      assert.deepStrictEqual(Greeting.parseId(id), Result.succeed(id))
      seen.add(id)
    }
    assert.strictEqual(seen.size, 200)
  })
})

describe("Greeting.parseId", () => {
  it("accepts lowercase, uppercase, mixed case and the all-zero UUID; returns lowercase", () => {
    assert.deepStrictEqual(Greeting.parseId(ID), Result.succeed(ID))
    assert.deepStrictEqual(Greeting.parseId(ID.toUpperCase()), Result.succeed(ID))
    assert.deepStrictEqual(Greeting.parseId("5C99675b-A2dA-42F4-8bB2-7D365c2F5723"), Result.succeed(ID))
    const zero = "00000000-0000-0000-0000-000000000000"
    assert.deepStrictEqual(Greeting.parseId(zero), Result.succeed(zero))
    // Any version / variant (the prototype parses any UUID).
    const v1 = "6ba7b810-9dad-11d1-80b4-00c04fd430c8"
    assert.deepStrictEqual(Greeting.parseId(v1), Result.succeed(v1))
    assert.deepStrictEqual(
      Greeting.parseId("FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF"),
      Result.succeed("ffffffff-ffff-ffff-ffff-ffffffffffff")
    )
  })

  it.each([
    ["empty", ""],
    ["35 characters", ID.slice(0, 35)],
    ["37 characters", ID + "0"],
    ["trailing newline", ID + "\n"],
    ["leading space", " " + ID.slice(1)],
    ["non-hex letter g", "5c99675g-a2da-42f4-8bb2-7d365c2f5723"],
    ["non-hex Z", "Zc99675b-a2da-42f4-8bb2-7d365c2f5723"],
    ["dash moved left", "5c99675-ba2da-42f4-8bb2-7d365c2f5723"],
    ["dash moved right", "5c99675ba-2da-42f4-8bb2-7d365c2f5723"],
    ["dash in the last group", "5c99675b-a2da-42f4-8bb27-d365c2f5723"],
    ["no dashes (36 hex digits)", "5c99675ba2da42f48bb27d365c2f57230000"],
    ["underscores for dashes", "5c99675b_a2da_42f4_8bb2_7d365c2f5723"],
    ["braces", "{5c99675b-a2da-42f4-8bb2-7d365c2f57}"],
    ["a NUL byte", "5c99675b-a2da-42f4-8bb2-7d365c2f572\0"],
    ["non-ASCII digit", "5c99675b-a2da-42f4-8bb2-7d365c2f572٣"],
    ["fullwidth letter", "5c99675b-a2da-42f4-8bb2-7d365c2f572ａ"],
    ["frame bytes", String.fromCharCode(0x97, 0, 0, 0xa9) + "A".repeat(32)]
  ])("rejects %s with BadGreeting", (_, text) => {
    expectBadGreeting(Greeting.parseId(text))
  })

  it("the error detail quotes (a bounded prefix of) the input", () => {
    const result = Greeting.parseId("x".repeat(10_000))
    if (Result.isSuccess(result)) return assert.fail("accepted garbage")
    assert.include(result.failure.detail, "xxxx")
    assert.isBelow(result.failure.detail.length, 200)
  })
})

describe("Greeting.encode", () => {
  it("is the 36 ASCII bytes of the id", () => {
    const bytes = Greeting.encode(ID)
    assert.strictEqual(bytes.length, GREETING_LENGTH)
    assert.strictEqual(toHex(bytes), "35633939363735622d613264612d343266342d386262322d376433363563326635373233")
    assert.deepStrictEqual(Greeting.parseId(new TextDecoder().decode(bytes)), Result.succeed(ID))
  })
})

describe("Greeting.GreetingReader", () => {
  it("accumulates one byte at a time", () => {
    const bytes = Greeting.encode(ID)
    const reader = new Greeting.GreetingReader()
    for (let i = 0; i < GREETING_LENGTH - 1; i++) {
      const result = reader.feed(bytes.subarray(i, i + 1))
      assert.deepStrictEqual(result, Result.succeed({ _tag: "Pending" }), `byte ${i}`)
    }
    const last = done(reader.feed(bytes.subarray(GREETING_LENGTH - 1)))
    assert.strictEqual(last.id, ID)
    assert.strictEqual(last.rest.length, 0)
  })

  it("accepts any split, and empty chunks", () => {
    const bytes = Greeting.encode(ID)
    const rng = makeRng(36)
    for (let round = 0; round < 200; round++) {
      const reader = new Greeting.GreetingReader()
      let at = 0
      let result: Result.Result<Greeting.ReadResult, unknown> = Result.succeed({ _tag: "Pending" })
      while (at < GREETING_LENGTH) {
        const n = rng.int(12)
        result = reader.feed(bytes.subarray(at, at + n))
        at += n
        if (at < GREETING_LENGTH) assert.deepStrictEqual(result, Result.succeed({ _tag: "Pending" }))
      }
      assert.strictEqual(done(result).id, ID)
    }
  })

  it("returns the bytes after the 36th as rest (greeting + frames in one chunk)", () => {
    const frames = concat([encodeFrame(Frame.open(0, "Arith.Add")), encodeFrame(Frame.end(0))])
    const chunk = concat([ascii(ID.toUpperCase()), frames])
    const reader = new Greeting.GreetingReader()
    const { id, rest } = done(reader.feed(chunk))
    assert.strictEqual(id, ID)
    assert.strictEqual(toHex(rest), toHex(frames))
    assert.strictEqual(rest.buffer, chunk.buffer, "rest is a view, not a copy")
    const decoded = decodeFrames(rest)
    assert.isTrue(Result.isSuccess(decoded))
    if (Result.isSuccess(decoded)) assert.strictEqual(decoded.success.length, 2)
  })

  it("returns rest when the greeting completes inside a later chunk", () => {
    const bytes = concat([Greeting.encode(ID), Uint8Array.of(0x97, 0x01)])
    const reader = new Greeting.GreetingReader()
    assert.deepStrictEqual(reader.feed(bytes.subarray(0, 10)), Result.succeed({ _tag: "Pending" }))
    const { id, rest } = done(reader.feed(bytes.subarray(10)))
    assert.strictEqual(id, ID)
    assert.deepStrictEqual(Array.from(rest), [0x97, 0x01])
  })

  it("rejects garbage with BadGreeting once 36 bytes are in", () => {
    const reader = new Greeting.GreetingReader()
    const garbage = ascii("GET / HTTP/1.1\r\nHost: example.com\r\n\r\n")
    assert.deepStrictEqual(reader.feed(garbage.subarray(0, 35)), Result.succeed({ _tag: "Pending" }))
    expectBadGreeting(reader.feed(garbage.subarray(35)))
    // Frames instead of a greeting (a peer that skipped it), and bytes ≥ 0x80.
    expectBadGreeting(new Greeting.GreetingReader().feed(concat([encodeFrame(Frame.open(0, "x".repeat(40)))])))
    const high = new Uint8Array(36).fill(0xe1)
    expectBadGreeting(new Greeting.GreetingReader().feed(high))
    // A valid UUID with one byte's high bit set must not be masked into validity.
    const masked = Greeting.encode(ID)
    masked[0] = masked[0]! | 0x80
    expectBadGreeting(new Greeting.GreetingReader().feed(masked))
  })

  it("random 36-byte inputs are never accepted unless they are UUIDs", () => {
    const rng = makeRng(0x6e7)
    for (let i = 0; i < 2000; i++) {
      const bytes = rng.chance(0.5) ? rng.bytes(36) : Greeting.encode(Greeting.makeId())
      if (rng.chance(0.5)) bytes[rng.int(36)] = rng.int(256)
      const text = String.fromCharCode(...bytes)
      const valid = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/.test(text)
      const result = new Greeting.GreetingReader().feed(bytes)
      if (valid) assert.strictEqual(done(result).id, text.toLowerCase())
      else expectBadGreeting(result)
    }
  })
})
