/**
 * Shared, deterministic generators for the frame codec tests and the standalone fuzzer
 * (`npm run fuzz`). Only erasable TypeScript syntax: this file also runs under Node's type
 * stripping.
 */
import * as fs from "node:fs"
import type { ProtocolError } from "../../src/DuplexError.ts"
import type { Frame } from "../../src/Frame.ts"
import { FrameDecoder } from "../../src/FrameCodec.ts"
import * as Headers from "../../src/Headers.ts"
import type { Limits } from "../../src/Protocol.ts"

// ---------------------------------------------------------------------------------------------
// PRNG
// ---------------------------------------------------------------------------------------------

/** A seeded pseudo-random source (sfc32). */
export interface Rng {
  /** Uniform in [0, 1). */
  readonly next: () => number
  /** Uniform integer in [0, n). */
  readonly int: (n: number) => number
  /** Uniform integer in [lo, hi] (inclusive). */
  readonly range: (lo: number, hi: number) => number
  /** True with probability `p`. */
  readonly chance: (p: number) => boolean
  /** One element of a non-empty array. */
  readonly pick: <A>(items: ReadonlyArray<A>) => A
  /** `n` random bytes. */
  readonly bytes: (n: number) => Uint8Array
}

/** Mixes two 32-bit values into a well-spread 32-bit seed (for per-case seeds). */
export const mixSeed = (a: number, b: number): number => {
  let h = (a ^ 0x9e3779b9) >>> 0
  h = Math.imul(h ^ (b >>> 0), 0x85ebca6b) >>> 0
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35) >>> 0
  h = Math.imul(h ^ (h >>> 16), 0x27d4eb2f) >>> 0
  return (h ^ (h >>> 15)) >>> 0
}

export const makeRng = (seed: number): Rng => {
  let a = 0x9e3779b9 ^ seed
  let b = 0x243f6a88 ^ Math.imul(seed, 0x85ebca6b)
  let c = 0xb7e15162 ^ Math.imul(seed, 0xc2b2ae35)
  let d = 1
  const u32 = (): number => {
    a >>>= 0
    b >>>= 0
    c >>>= 0
    d >>>= 0
    const t = (a + b + d) >>> 0
    d = (d + 1) >>> 0
    a = b ^ (b >>> 9)
    b = (c + (c << 3)) >>> 0
    c = (c << 21) | (c >>> 11)
    c = (c + t) >>> 0
    return t
  }
  for (let i = 0; i < 15; i++) u32()
  const next = (): number => u32() / 0x1_0000_0000
  const int = (n: number): number => Math.floor(next() * n)
  return {
    next,
    int,
    range: (lo, hi) => lo + int(hi - lo + 1),
    chance: (p) => next() < p,
    pick: <A>(items: ReadonlyArray<A>): A => items[int(items.length)]!,
    bytes: (n) => {
      const out = new Uint8Array(n)
      let i = 0
      for (; i + 4 <= n; i += 4) {
        const v = u32()
        out[i] = v & 0xff
        out[i + 1] = (v >>> 8) & 0xff
        out[i + 2] = (v >>> 16) & 0xff
        out[i + 3] = v >>> 24
      }
      for (; i < n; i++) out[i] = u32() & 0xff
      return out
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Bytes helpers
// ---------------------------------------------------------------------------------------------

/** Parses hex (whitespace ignored) into bytes. */
export const fromHex = (hex: string): Uint8Array => {
  const clean = hex.replace(/\s+/g, "")
  if (clean.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(clean)) throw new Error(`bad hex: ${hex}`)
  // A plain Uint8Array (not a pooled Buffer), so tests can reason about `.buffer`.
  return new Uint8Array(Buffer.from(clean, "hex"))
}

/** Lowercase hex of bytes. */
export const toHex = (bytes: Uint8Array): string =>
  Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("hex")

/** Hex of an ASCII / UTF-8 string. */
export const textHex = (text: string): string => toHex(new TextEncoder().encode(text))

export const concat = (parts: ReadonlyArray<Uint8Array>): Uint8Array => {
  let n = 0
  for (const p of parts) n += p.length
  const out = new Uint8Array(n)
  let o = 0
  for (const p of parts) {
    out.set(p, o)
    o += p.length
  }
  return out
}

/** Splits `bytes` at `cuts - 1` random points (chunks may be empty). Chunks are views on `bytes`. */
export const splitAt = (rng: Rng, bytes: Uint8Array, cuts: number): Array<Uint8Array> => {
  const points: Array<number> = []
  for (let i = 0; i < cuts - 1; i++) points.push(rng.int(bytes.length + 1))
  points.sort((x, y) => x - y)
  const out: Array<Uint8Array> = []
  let prev = 0
  for (const p of points) {
    out.push(bytes.subarray(prev, p))
    prev = p
  }
  out.push(bytes.subarray(prev))
  return out
}

/** Random chunking: sometimes one byte at a time, sometimes a few big pieces, sometimes many. */
export const randomChunks = (rng: Rng, bytes: Uint8Array): Array<Uint8Array> => {
  const mode = rng.int(4)
  if (mode === 0 && bytes.length <= 4096) {
    const out: Array<Uint8Array> = []
    for (let i = 0; i < bytes.length; i++) out.push(bytes.subarray(i, i + 1))
    return out
  }
  if (mode === 1) return splitAt(rng, bytes, rng.range(2, 4))
  return splitAt(rng, bytes, rng.range(2, Math.max(2, Math.min(64, bytes.length))))
}

// ---------------------------------------------------------------------------------------------
// Strings and frames
// ---------------------------------------------------------------------------------------------

const ONE = 1
const TWO = 2
const THREE = 3
const FOUR = 4

const charOf = (rng: Rng, width: number): string => {
  switch (width) {
    case ONE:
      return String.fromCharCode(rng.int(0x80))
    case TWO:
      return String.fromCharCode(rng.range(0x80, 0x7ff))
    case THREE: {
      // BMP outside the surrogate range.
      const c = rng.range(0x800, 0xffff - 0x800)
      return String.fromCharCode(c >= 0xd800 ? c + 0x800 : c)
    }
    default:
      // Astral: emoji most of the time (surrogate pairs in UTF-16).
      return String.fromCodePoint(rng.chance(0.5) ? rng.range(0x1f300, 0x1faff) : rng.range(0x10000, 0x10ffff))
  }
}

/**
 * A random string of exactly `byteLength` UTF-8 bytes. `ascii` restricts to 1-byte characters;
 * otherwise it mixes 1-, 2-, 3- and 4-byte (emoji / surrogate pair) characters.
 */
export const randomString = (rng: Rng, byteLength: number, ascii: boolean): string => {
  const parts: Array<string> = []
  let left = byteLength
  while (left > 0) {
    const width = ascii ? 1 : Math.min(left, rng.range(1, 4))
    parts.push(charOf(rng, width))
    left -= width
  }
  return parts.join("")
}

/** UTF-8 byte lengths around the msgpack raw-string boundaries. */
export const STRING_BOUNDARIES: ReadonlyArray<number> = [0, 1, 31, 32, 33, 255, 256, 65535, 65536]

/** Channel ids at every integer-form boundary, plus the negative range. */
export const CHANNEL_BOUNDARIES: ReadonlyArray<number> = [
  0,
  1,
  127,
  128,
  255,
  256,
  65535,
  65536,
  0x7fff_ffff,
  0x8000_0000,
  0xffff_ffff,
  0x1_0000_0000,
  Number.MAX_SAFE_INTEGER,
  -1,
  -32,
  -33,
  -128,
  -129,
  -32768,
  -32769,
  -(2 ** 31),
  -(2 ** 31) - 1,
  -(2 ** 40),
  Number.MIN_SAFE_INTEGER
]

export interface FrameOptions {
  /** Probability that a string / payload length is drawn from the large boundaries (≥ 255). */
  readonly bigChance: number
  /** Largest random (non-boundary) string length. */
  readonly smallString: number
  /** Largest number of headers. */
  readonly maxHeaders: number
}

export const smallFrames: FrameOptions = { bigChance: 0, smallString: 40, maxHeaders: 4 }

const stringLength = (rng: Rng, options: FrameOptions): number => {
  if (rng.chance(0.3)) {
    const boundaries = rng.chance(options.bigChance) ? STRING_BOUNDARIES : STRING_BOUNDARIES.slice(0, 5)
    return rng.pick(boundaries)
  }
  return rng.int(options.smallString + 1)
}

const randomChannel = (rng: Rng): number => {
  switch (rng.int(6)) {
    case 0:
    case 1:
      return rng.pick(CHANNEL_BOUNDARIES)
    case 2:
      return rng.int(256)
    case 3:
      return rng.int(0x1_0000_0000)
    case 4:
      return -rng.int(0x8000_0000) - 1
    default:
      return (rng.chance(0.5) ? 1 : -1) * Math.floor(rng.next() * Number.MAX_SAFE_INTEGER)
  }
}

const PAYLOAD_SIZES: ReadonlyArray<number> = [1, 31, 32, 255, 256, 65535, 65536, 100_000]

const randomPayload = (rng: Rng, options: FrameOptions): Uint8Array | null => {
  const r = rng.int(10)
  if (r < 2) return null
  if (r === 2) return new Uint8Array(0)
  if (r === 3) {
    const size = rng.pick(PAYLOAD_SIZES)
    return rng.bytes(size > 256 && !rng.chance(options.bigChance) ? rng.int(257) : size)
  }
  return rng.bytes(rng.int(64))
}

/** A random frame (valid for the encoder: type 0–6, safe-integer channel, well-formed strings). */
export const randomFrame = (rng: Rng, options: FrameOptions = smallFrames): Frame => {
  const entries: Array<readonly [string, string]> = []
  const seen = new Set<string>()
  const headerCount = rng.chance(0.4) ? 0 : rng.int(options.maxHeaders + 1)
  for (let i = 0; i < headerCount; i++) {
    const key = rng.chance(0.05)
      ? rng.pick(["__proto__", "constructor", "toString", "hasOwnProperty"])
      : randomString(rng, rng.int(Math.min(options.smallString, 24) + 1), rng.chance(0.6))
    if (seen.has(key)) continue
    seen.add(key)
    entries.push([key, randomString(rng, rng.int(options.smallString + 1), rng.chance(0.5))])
  }
  return {
    type: rng.int(7),
    channel: randomChannel(rng),
    method: randomString(rng, stringLength(rng, options), rng.chance(0.5)),
    headers: Headers.make(entries),
    error: rng.chance(0.6) ? "" : randomString(rng, stringLength(rng, options), rng.chance(0.5)),
    last: rng.chance(0.5),
    payload: randomPayload(rng, options)
  }
}

// ---------------------------------------------------------------------------------------------
// Comparison
// ---------------------------------------------------------------------------------------------

/** A frame in a plain, comparable form (headers as sorted entries, payload as hex or null). */
export interface PlainFrame {
  readonly type: number
  readonly channel: number
  readonly method: string
  readonly headers: ReadonlyArray<readonly [string, string]>
  readonly error: string
  readonly last: boolean
  readonly payload: string | null
}

export const plain = (frame: Frame): PlainFrame => ({
  type: frame.type,
  channel: frame.channel,
  method: frame.method,
  headers: Object.entries(frame.headers).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
  error: frame.error,
  last: frame.last,
  payload: frame.payload === null ? null : toHex(frame.payload)
})

// ---------------------------------------------------------------------------------------------
// Decoding helpers
// ---------------------------------------------------------------------------------------------

export interface Outcome {
  readonly frames: Array<Frame>
  readonly error: ProtocolError | undefined
}

/** Feeds `chunks` in order into a fresh decoder, then calls `finish()`. Exceptions propagate. */
export const decodeChunks = (chunks: ReadonlyArray<Uint8Array>, limits: Partial<Limits> = {}): Outcome => {
  const decoder = new FrameDecoder(limits)
  const frames: Array<Frame> = []
  const push = (frame: Frame): void => {
    frames.push(frame)
  }
  let error: ProtocolError | undefined = undefined
  for (const chunk of chunks) {
    error = decoder.feed(chunk, push)
    if (error !== undefined) break
  }
  if (error === undefined) error = decoder.finish()
  return { frames, error }
}

/** Receive limits the fuzzers pick from: defaults and several tight ones. */
export const FUZZ_LIMITS: ReadonlyArray<Partial<Limits>> = [
  {},
  {},
  { maxFrameBytes: 64, maxHeaderCount: 2, maxHeaderBytes: 16, maxMethodBytes: 8, maxSkipDepth: 1 },
  { maxFrameBytes: 300, maxHeaderCount: 4, maxHeaderBytes: 64, maxMethodBytes: 32, maxSkipDepth: 3 },
  { maxFrameBytes: 4096, maxSkipDepth: 0 }
]

// ---------------------------------------------------------------------------------------------
// Vectors and mutation
// ---------------------------------------------------------------------------------------------

export const VECTORS_DIR = new URL("../fixtures/vectors/", import.meta.url)

/** The frame lines of every `.hex` vector file except the greetings. */
export const loadVectorLines = (): Array<Uint8Array> => {
  const out: Array<Uint8Array> = []
  for (const name of fs.readdirSync(VECTORS_DIR).sort()) {
    if (!name.endsWith(".hex") || name.startsWith("greeting.")) continue
    const text = fs.readFileSync(new URL(name, VECTORS_DIR), "utf8")
    for (const line of text.split("\n")) if (line.length > 0) out.push(fromHex(line))
  }
  return out
}

/** Interesting bytes for mutations: every msgpack type tag that the decoder branches on. */
const TAGS: ReadonlyArray<number> = [
  0x00,
  0x7f,
  0x80,
  0x8f,
  0x90,
  0x97,
  0x9f,
  0xa0,
  0xbf,
  0xc0,
  0xc1,
  0xc2,
  0xc3,
  0xc4,
  0xc5,
  0xc6,
  0xc7,
  0xc8,
  0xc9,
  0xca,
  0xcb,
  0xcc,
  0xcd,
  0xce,
  0xcf,
  0xd0,
  0xd1,
  0xd2,
  0xd3,
  0xd4,
  0xd8,
  0xd9,
  0xda,
  0xdb,
  0xdc,
  0xdd,
  0xde,
  0xdf,
  0xe0,
  0xff
]

/** Applies 1–4 random mutations (bit flips, byte sets, inserts, deletes, truncation, splices). */
export const mutate = (rng: Rng, input: Uint8Array, donors: ReadonlyArray<Uint8Array>): Uint8Array => {
  let bytes = Array.from(input)
  const rounds = rng.range(1, 4)
  for (let r = 0; r < rounds; r++) {
    const at = rng.int(bytes.length + 1)
    switch (rng.int(9)) {
      case 0:
        if (at < bytes.length) bytes[at] = bytes[at]! ^ (1 << rng.int(8))
        break
      case 1:
        if (at < bytes.length) bytes[at] = rng.chance(0.5) ? rng.pick(TAGS) : rng.int(256)
        break
      case 2:
        bytes.splice(at, 0, ...Array.from(rng.bytes(rng.range(1, 4))))
        break
      case 3:
        bytes.splice(at, 0, rng.pick(TAGS))
        break
      case 4:
        bytes.splice(at, rng.range(1, 4))
        break
      case 5:
        bytes = bytes.slice(0, at)
        break
      case 6: {
        // Splice in a piece of another valid input (vector line or random frame).
        const donor = donors.length > 0 ? rng.pick(donors) : new Uint8Array(0)
        const from = rng.int(donor.length + 1)
        const piece = Array.from(donor.subarray(from, from + rng.range(1, 32)))
        bytes.splice(at, rng.int(4), ...piece)
        break
      }
      case 7: {
        // Big-endian length fields set to extremes.
        if (at + 4 < bytes.length) {
          const v = rng.pick([0xff, 0x7f, 0x00, 0x80])
          for (let i = 1; i <= 4; i++) bytes[at + i] = v
        }
        break
      }
      default: {
        // Duplicate a region (repeated fields, nested structures).
        const from = rng.int(bytes.length + 1)
        const piece = bytes.slice(from, from + rng.range(1, 16))
        bytes.splice(at, 0, ...piece)
      }
    }
  }
  return Uint8Array.from(bytes)
}

export type CaseKind = "random" | "vector" | "frame" | "stream"

export interface FuzzCase {
  readonly kind: CaseKind
  readonly bytes: Uint8Array
  readonly limits: Partial<Limits>
}

/**
 * One fuzz input: random bytes, a mutated vector line, a mutated random frame, or a mutated
 * concatenation of several valid frames.
 */
export const fuzzCase = (
  rng: Rng,
  vectorLines: ReadonlyArray<Uint8Array>,
  encode: (frame: Frame) => Uint8Array
): FuzzCase => {
  const limits = rng.pick(FUZZ_LIMITS)
  switch (rng.int(4)) {
    case 0: {
      const prefix = rng.chance(0.5) ? [rng.pick([0x90, 0x92, 0x93, 0x96, 0x97, 0x98, 0x80, 0x87, 0xdc, 0xde])] : []
      return { kind: "random", bytes: Uint8Array.from([...prefix, ...rng.bytes(rng.int(48))]), limits }
    }
    case 1: {
      const line = rng.pick(vectorLines)
      const bytes = rng.chance(0.05) ? line : mutate(rng, line, vectorLines)
      return { kind: "vector", bytes, limits }
    }
    case 2: {
      const frame = encode(randomFrame(rng))
      return { kind: "frame", bytes: rng.chance(0.05) ? frame : mutate(rng, frame, vectorLines), limits }
    }
    default: {
      const parts: Array<Uint8Array> = []
      const n = rng.range(2, 5)
      for (let i = 0; i < n; i++) parts.push(rng.chance(0.5) ? rng.pick(vectorLines) : encode(randomFrame(rng)))
      return { kind: "stream", bytes: mutate(rng, concat(parts), vectorLines), limits }
    }
  }
}
