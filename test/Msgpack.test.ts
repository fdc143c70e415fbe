/**
 * Differential tests of the fast msgpack codec (`src/internal/msgpack.ts`) against
 * `@msgpack/msgpack` 3 with default options: same bytes when encoding, same values (or both
 * throwing) when decoding. Deterministic: every random input comes from a seeded PRNG.
 *
 * Accepted differences, excluded from equality (but still run, so a throw of a non-Error or a
 * hang would show): strings with lone UTF-16 surrogates when encoding (ours writes U+FFFD as
 * `TextEncoder` does) and invalid UTF-8 inside strings when decoding (ours yields U+FFFD).
 */
import { assert, describe, expect, it } from "@effect/vitest"
import { Decoder, Encoder, ExtData } from "@msgpack/msgpack"
import * as Codec from "../src/Codec.ts"
import { decode, MsgpackEncoder } from "../src/internal/msgpack.ts"
import { fromHex, makeRng, mixSeed, mutate, type Rng, toHex } from "./fuzz/generators.ts"

// ---------------------------------------------------------------------------------------------
// Reference and helpers
// ---------------------------------------------------------------------------------------------

const refEncoder = new Encoder()
const refDecoder = new Decoder()
const libEncode = (value: unknown): Uint8Array => refEncoder.encode(value)
const libDecode = (bytes: Uint8Array): unknown => refDecoder.decode(bytes)

const encoder = new MsgpackEncoder()

type Outcome<A> = { readonly ok: true; readonly value: A } | { readonly ok: false; readonly error: unknown }

const run = <A>(f: () => A): Outcome<A> => {
  try {
    return { ok: true, value: f() }
  } catch (error) {
    return { ok: false, error }
  }
}

const errorText = (error: unknown): string =>
  error instanceof Error ? `${error.name}: ${error.message}` : `non-Error ${String(error)}`

const preview = (bytes: Uint8Array): string => {
  const hex = toHex(bytes.subarray(0, 48))
  return bytes.length > 48 ? `${hex}… (${bytes.length} bytes)` : hex
}

const bytesEqual = (a: Uint8Array, b: Uint8Array): boolean => Buffer.compare(a, b) === 0

const firstDifference = (a: Uint8Array, b: Uint8Array): number => {
  const n = Math.min(a.length, b.length)
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i
  return n
}

const describeValue = (value: unknown): string => {
  if (typeof value === "string") return JSON.stringify(value.length > 40 ? value.slice(0, 40) + "…" : value)
  if (typeof value === "number") return Object.is(value, -0) ? "-0" : String(value)
  if (typeof value === "bigint" || typeof value === "boolean" || typeof value === "undefined") return String(value)
  if (typeof value === "symbol" || typeof value === "function") return typeof value
  if (value === null) return "null"
  if (value instanceof Uint8Array) return `${value.constructor.name}(${preview(value)})`
  if (Array.isArray(value)) return `Array(${value.length})`
  return Object.prototype.toString.call(value)
}

/** Whether a string is one our decoder produced from invalid UTF-8 (the accepted difference). */
const replaced = (s: string): boolean => s.includes("\uFFFD")

interface DiffState {
  /** Set when a difference was excused (strings where ours holds U+FFFD). */
  excused: boolean
}

/**
 * The first difference between our decoded value and the library's (`undefined`: none), strict
 * about prototypes/classes, key order, `-0`, `NaN` and bytes. Differing strings (values or keys)
 * are excused when ours holds U+FFFD (invalid UTF-8 in the input).
 */
const diff = (ours: unknown, lib: unknown, path: string, state: DiffState): string | undefined => {
  if (typeof ours !== typeof lib) return `${path}: ours ${describeValue(ours)} vs library ${describeValue(lib)}`
  if (typeof ours === "string" && typeof lib === "string") {
    if (ours === lib) return undefined
    if (replaced(ours)) {
      state.excused = true
      return undefined
    }
    return `${path}: ours ${describeValue(ours)} vs library ${describeValue(lib)}`
  }
  if (typeof ours !== "object" || typeof lib !== "object" || ours === null || lib === null) {
    return Object.is(ours, lib) ? undefined : `${path}: ours ${describeValue(ours)} vs library ${describeValue(lib)}`
  }
  if (Object.getPrototypeOf(ours) !== Object.getPrototypeOf(lib)) {
    return `${path}: ours ${describeValue(ours)} vs library ${describeValue(lib)} (different prototypes)`
  }
  if (ours instanceof Uint8Array && lib instanceof Uint8Array) {
    return bytesEqual(ours, lib) ? undefined : `${path}: ours bytes ${preview(ours)} vs library ${preview(lib)}`
  }
  if (ours instanceof Date && lib instanceof Date) {
    return Object.is(ours.getTime(), lib.getTime())
      ? undefined
      : `${path}: ours ${ours.getTime()} vs library ${lib.getTime()}`
  }
  if (ours instanceof ExtData && lib instanceof ExtData) {
    if (ours.type !== lib.type) return `${path}: ext type ${ours.type} vs ${lib.type}`
    return diff(ours.data, lib.data, `${path}.data`, state)
  }
  if (Array.isArray(ours) && Array.isArray(lib)) {
    if (ours.length !== lib.length) return `${path}: length ${ours.length} vs ${lib.length}`
    for (let i = 0; i < ours.length; i++) {
      const d = diff(ours[i], lib[i], `${path}[${i}]`, state)
      if (d !== undefined) return d
    }
    return undefined
  }
  const oursKeys = Object.keys(ours)
  const libKeys = Object.keys(lib)
  if (oursKeys.length !== libKeys.length || oursKeys.some((k, i) => k !== libKeys[i])) {
    if (oursKeys.some(replaced)) {
      state.excused = true
      return undefined
    }
    return `${path}: keys ${JSON.stringify(oursKeys.slice(0, 8))} vs ${JSON.stringify(libKeys.slice(0, 8))}`
  }
  for (const key of oursKeys) {
    const d = diff(Reflect.get(ours, key), Reflect.get(lib, key), `${path}.${key}`, state)
    if (d !== undefined) return d
  }
  return undefined
}

/** Compares our encoding of `value` (both `encode` and `encodeShared`) with the library's. */
const checkEncode = (value: unknown, label: string): string | undefined => {
  const lib = run(() => libEncode(value))
  const ours = run(() => encoder.encode(value))
  if (!ours.ok && !(ours.error instanceof Error)) return `${label}: ours threw ${errorText(ours.error)}`
  if (!lib.ok) {
    if (ours.ok) return `${label}: library throws (${errorText(lib.error)}) but ours encodes ${preview(ours.value)}`
    const shared = run(() => encoder.encodeShared(value))
    return shared.ok ? `${label}: encodeShared encodes, library throws` : undefined
  }
  if (!ours.ok) return `${label}: ours throws (${errorText(ours.error)}), library encodes ${preview(lib.value)}`
  if (!bytesEqual(ours.value, lib.value)) {
    const at = firstDifference(ours.value, lib.value)
    return `${label}: bytes differ at ${at}: ours ${preview(ours.value.subarray(at))} (${ours.value.length} bytes) ` +
      `vs library ${preview(lib.value.subarray(at))} (${lib.value.length} bytes)`
  }
  const shared = run(() => encoder.encodeShared(value))
  if (!shared.ok) return `${label}: encodeShared throws ${errorText(shared.error)}`
  if (!bytesEqual(shared.value, lib.value)) return `${label}: encodeShared bytes differ`
  return undefined
}

interface DecodeStats {
  cases: number
  bothThrew: number
  excused: number
}

const newStats = (): DecodeStats => ({ cases: 0, bothThrew: 0, excused: 0 })

const isExtraBytes = (error: unknown): boolean => error instanceof RangeError && error.message.startsWith("Extra ")

/** Decodes `bytes` with ours and the library: both throw, or both give the same value. */
const checkDecode = (bytes: Uint8Array, label: string, stats: DecodeStats): string | undefined => {
  stats.cases++
  const lib = run(() => libDecode(bytes))
  const ours = run(() => decode(bytes))
  const where = `${label} [${preview(bytes)}]`
  if (!ours.ok && !(ours.error instanceof Error)) return `${where}: ours threw ${errorText(ours.error)}`
  if (!lib.ok) {
    if (ours.ok) {
      return `${where}: library throws (${errorText(lib.error)}) but ours gives ${describeValue(ours.value)}`
    }
    stats.bothThrew++
    // trailing bytes: the same RangeError as the library, message included
    if (isExtraBytes(lib.error) || isExtraBytes(ours.error)) {
      if (errorText(lib.error) !== errorText(ours.error)) {
        return `${where}: library ${errorText(lib.error)} vs ours ${errorText(ours.error)}`
      }
    }
    return undefined
  }
  if (!ours.ok) return `${where}: ours throws (${errorText(ours.error)}), library gives ${describeValue(lib.value)}`
  const state: DiffState = { excused: false }
  const d = diff(ours.value, lib.value, "$", state)
  if (d !== undefined) return `${where}: ${d}`
  if (state.excused) stats.excused++
  return undefined
}

const field = (value: unknown, key: string): unknown =>
  typeof value === "object" && value !== null ? Reflect.get(value, key) : undefined

const nestArrays = (depth: number, inner: unknown): unknown => {
  let v = inner
  for (let i = 0; i < depth; i++) v = [v]
  return v
}

const nestObjects = (depth: number, inner: unknown): unknown => {
  let v = inner
  for (let i = 0; i < depth; i++) v = { a: v }
  return v
}

const concatBytes = (...parts: ReadonlyArray<Uint8Array | ReadonlyArray<number>>): Uint8Array => {
  const out: Array<number> = []
  for (const p of parts) out.push(...p)
  return Uint8Array.from(out)
}

// ---------------------------------------------------------------------------------------------
// Value generators
// ---------------------------------------------------------------------------------------------

const INT_BOUNDARIES: ReadonlyArray<number> = [
  0,
  127,
  128,
  255,
  256,
  65535,
  65536,
  2 ** 32 - 1,
  2 ** 32,
  2 ** 53 - 1,
  -1,
  -32,
  -33,
  -128,
  -129,
  -32768,
  -32769,
  -(2 ** 31),
  -(2 ** 31) - 1,
  -(2 ** 53 - 1)
]

/** Integer ranges of each msgpack width (inclusive). */
const INT_RANGES: ReadonlyArray<readonly [number, number]> = [
  [0, 127],
  [128, 255],
  [256, 65535],
  [65536, 2 ** 32 - 1],
  [2 ** 32, 2 ** 53 - 1],
  [-32, -1],
  [-128, -33],
  [-32768, -129],
  [-(2 ** 31), -32769],
  [-(2 ** 53 - 1), -(2 ** 31) - 1]
]

const FLOATS: ReadonlyArray<number> = [
  0.5,
  -0.5,
  1.1,
  -1.1,
  1 / 3,
  1e-300,
  -1e300,
  Number.MIN_VALUE,
  -Number.MIN_VALUE,
  Number.MAX_VALUE,
  -Number.MAX_VALUE,
  Number.EPSILON,
  2 ** 53,
  -(2 ** 53),
  2 ** 53 + 2,
  2 ** 64,
  -(2 ** 63),
  -(2 ** 63) - 4096,
  3.4028234663852886e38,
  Math.fround(0.1),
  NaN,
  Infinity,
  -Infinity,
  -0
]

const randomInt = (rng: Rng): number => {
  if (rng.chance(0.5)) return rng.pick(INT_BOUNDARIES) + rng.range(-2, 2)
  const [lo, hi] = rng.pick(INT_RANGES)
  const fraction = rng.next() + rng.next() / 0x1_0000_0000
  return Math.min(hi, lo + Math.floor(fraction * (hi - lo + 1)))
}

const randomFloat = (rng: Rng): number => {
  if (rng.chance(0.4)) return rng.pick(FLOATS)
  const v = (rng.next() - 0.5) * 10 ** rng.range(-12, 24)
  return rng.chance(0.2) ? Math.fround(v) : v
}

type CharKind = "ascii" | "two" | "three" | "four" | "mixed"
const CHAR_KINDS: ReadonlyArray<CharKind> = ["ascii", "two", "three", "four", "mixed"]

/**
 * A random character of a UTF-8 width. No lone surrogates (accepted difference) and no U+FEFF
 * (a known mismatch at the start of short strings, tested on its own below).
 */
const randomChar = (rng: Rng, kind: CharKind): string => {
  const k = kind === "mixed" ? rng.pick(["ascii", "two", "three", "four"] as const) : kind
  switch (k) {
    case "ascii":
      return String.fromCharCode(rng.int(0x80))
    case "two":
      return String.fromCharCode(0x80 + rng.int(0x800 - 0x80))
    case "three": {
      let c = 0x800 + rng.int(0x10000 - 0x800)
      while ((c >= 0xd800 && c < 0xe000) || c === 0xfeff) c = 0x800 + rng.int(0x10000 - 0x800)
      return String.fromCharCode(c)
    }
    case "four":
      return String.fromCodePoint(0x10000 + rng.int(0x110000 - 0x10000))
  }
}

const utf8Size = (char: string): number => {
  const c = char.codePointAt(0) ?? 0
  return c < 0x80 ? 1 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4
}

/** A string of exactly `bytes` UTF-8 bytes (padded with ASCII where a wide char would not fit). */
const stringOfBytes = (rng: Rng, bytes: number, kind: CharKind): string => {
  const parts: Array<string> = []
  let n = 0
  while (n < bytes) {
    const c = randomChar(rng, kind)
    const size = utf8Size(c)
    if (n + size > bytes) {
      parts.push("x".repeat(bytes - n))
      break
    }
    parts.push(c)
    n += size
  }
  return parts.join("")
}

const SMALL_STRING_SIZES: ReadonlyArray<number> = [
  0,
  1,
  2,
  5,
  15,
  16,
  17,
  30,
  31,
  32,
  33,
  64,
  100,
  200,
  201,
  255,
  256,
  257
]

const randomString = (rng: Rng): string => {
  const size = rng.chance(0.7) ? rng.pick(SMALL_STRING_SIZES) : rng.int(300)
  return stringOfBytes(rng, size, rng.pick(CHAR_KINDS))
}

const NAMED_KEYS: ReadonlyArray<string> = [
  "",
  "a",
  "id",
  "type",
  "constructor",
  "toString",
  "valueOf",
  "hasOwnProperty",
  "prototype",
  "0",
  "1",
  "42",
  "-1",
  "01",
  "1.5",
  "4294967294",
  "4294967295",
  "x".repeat(16),
  "x".repeat(17),
  "y".repeat(31),
  "y".repeat(32)
]

const randomKey = (rng: Rng): string => {
  switch (rng.int(4)) {
    case 0:
      return rng.pick(NAMED_KEYS)
    case 1:
      return stringOfBytes(rng, rng.int(17), "ascii")
    case 2:
      return stringOfBytes(rng, rng.int(40), rng.pick(CHAR_KINDS))
    default:
      return "k" + rng.int(20)
  }
}

const randomBytes = (rng: Rng): Uint8Array => {
  const size = rng.chance(0.6) ? rng.pick([0, 1, 15, 16, 255, 256, 257]) : rng.int(600)
  const bytes = rng.bytes(size)
  switch (rng.int(4)) {
    case 0:
      return Buffer.from(bytes)
    case 1: {
      // a view with a non-zero byteOffset into a larger buffer
      const backing = rng.bytes(size + 20)
      backing.set(bytes, 7)
      return backing.subarray(7, 7 + size)
    }
    default:
      return bytes
  }
}

/** A class instance (encoded by the library as a map of its own enumerable properties). */
class Point {
  x = 1
  y: unknown
  constructor(y: unknown) {
    this.y = y
  }
}

const DATES_MS: ReadonlyArray<number> = [
  0,
  -1,
  1,
  999,
  1_700_000_000_123,
  2 ** 32 * 1000 - 1000, // timestamp 32 upper edge
  2 ** 32 * 1000, // timestamp 64
  2 ** 34 * 1000, // timestamp 96
  -62_135_596_800_000,
  8.64e15,
  -8.64e15
]

interface Budget {
  n: number
}

/** Values the fast path hands to the library (ext types, non-plain objects, typed arrays). */
const randomExotic = (rng: Rng, depth: number, budget: Budget): unknown => {
  switch (rng.int(7)) {
    case 0:
      return new Date(rng.chance(0.5) ? rng.pick(DATES_MS) : Math.floor((rng.next() - 0.3) * 1e13))
    case 1:
      return new ExtData(rng.int(128), rng.bytes(rng.pick([0, 1, 2, 4, 8, 16, 3, 17, 300])))
    case 2:
      return new Point(randomValue(rng, depth + 1, budget, true))
    case 3:
      return new Map([["a", 1]])
    case 4:
      return new Int16Array([1, -2, 300])
    case 5:
      return new Float64Array([0.5, NaN])
    default:
      return new ArrayBuffer(3)
  }
}

const randomArray = (rng: Rng, depth: number, budget: Budget, exotic: boolean): Array<unknown> => {
  const size = rng.chance(0.12) ? rng.pick([15, 16, 17]) : rng.int(6)
  const out: Array<unknown> = []
  for (let i = 0; i < size; i++) out.push(randomValue(rng, depth + 1, budget, exotic))
  // sparse arrays: holes encode as nil
  if (size > 0 && rng.chance(0.03)) delete out[rng.int(size)]
  return out
}

const randomObject = (rng: Rng, depth: number, budget: Budget, exotic: boolean): Record<string, unknown> => {
  const size = rng.chance(0.12) ? rng.pick([15, 16, 17]) : rng.int(6)
  const out: Record<string, unknown> = rng.chance(0.15) ? Object.create(null) : {}
  for (let i = 0; i < size; i++) out[randomKey(rng)] = randomValue(rng, depth + 1, budget, exotic)
  return out
}

function randomValue(rng: Rng, depth: number, budget: Budget, exotic: boolean): unknown {
  budget.n--
  const containers = depth < 6 && budget.n > 0
  const r = rng.int(100)
  if (r < 18) return randomInt(rng)
  if (r < 28) return randomFloat(rng)
  if (r < 35) return rng.pick([true, false, null, undefined])
  if (r < 52) return randomString(rng)
  if (r < 58) return randomBytes(rng)
  if (r < 77 && containers) return randomArray(rng, depth, budget, exotic)
  if (r < 98 && containers) return randomObject(rng, depth, budget, exotic)
  if (exotic && r >= 98 && rng.chance(0.5)) return randomExotic(rng, depth, budget)
  return randomInt(rng)
}

const randomValues = (seed: number, count: number, budget: number): Array<unknown> => {
  const out: Array<unknown> = []
  for (let i = 0; i < count; i++) {
    const rng = makeRng(mixSeed(seed, i))
    out.push(randomValue(rng, 0, { n: rng.range(1, budget) }, true))
  }
  return out
}

/** Hand-picked values at every boundary the brief lists (labelled). */
const fixedValues = (): Array<readonly [string, unknown]> => {
  const rng = makeRng(0xf1ced)
  const out: Array<readonly [string, unknown]> = []
  for (const n of INT_BOUNDARIES) for (const d of [-1, 0, 1]) out.push([`int ${n}${d >= 0 ? "+" : ""}${d}`, n + d])
  for (const f of FLOATS) out.push([`float ${Object.is(f, -0) ? "-0" : f}`, f])
  for (const v of [true, false, null, undefined]) out.push([String(v), v])
  for (const size of [0, 1, 31, 32, 33, 200, 201, 255, 256, 257, 65535, 65536, 65537]) {
    for (const kind of CHAR_KINDS) out.push([`string ${kind} ${size}B`, stringOfBytes(rng, size, kind)])
  }
  // few UTF-16 units but many bytes, and the other way round (our header-size estimate)
  for (const chars of [10, 11, 31, 32, 85, 86, 21845, 21846, 21847]) {
    out.push([`string ${chars} x 3-byte chars`, "€".repeat(chars)])
    out.push([`string é + ${chars * 3} ASCII`, "é" + "a".repeat(chars * 3)])
    out.push([`string ${chars} x 4-byte chars`, "😀".repeat(chars)])
  }
  for (const s of ["a\uFEFF", "\uFEFF" + "é".repeat(150), "\uFFFD", "\u0000", "é", "€", "😀"]) {
    out.push([`string ${JSON.stringify(s.slice(0, 8))}`, s])
  }
  for (const size of [0, 1, 255, 256, 257, 65535, 65536, 65537]) out.push([`bytes ${size}`, rng.bytes(size)])
  out.push(["Buffer", Buffer.from([1, 2, 3, 250])])
  out.push(["Buffer 300", Buffer.from(rng.bytes(300))])
  {
    const backing = rng.bytes(400)
    out.push(["subarray view (offset 9)", backing.subarray(9, 309)])
    out.push(["Uint8Array(buffer, 3, 5)", new Uint8Array(backing.buffer, 3, 5)])
  }
  for (const size of [0, 1, 15, 16, 17, 65535, 65536, 65537]) {
    out.push([`array ${size}`, Array.from({ length: size }, (_, i) => i % 300)])
    const map: Record<string, unknown> = {}
    for (let i = 0; i < size; i++) map[`k${i}`] = i % 3 === 0 ? null : i
    out.push([`map ${size}`, map])
  }
  {
    const bare: Record<string, unknown> = Object.create(null)
    bare.a = 1
    bare.b = [bare.a, "x"]
    out.push(["Object.create(null)", bare])
    out.push(["nested Object.create(null)", { inner: bare, list: [bare] }])
    out.push(["empty Object.create(null)", Object.create(null)])
  }
  out.push(["undefined property", { a: undefined, b: 1, c: undefined }])
  out.push(["undefined in array", [undefined, 1, undefined]])
  out.push(["sparse array", [1, , 3]])
  out.push(["-0 in array", [-0, 0, -0.0]])
  out.push(["numeric keys", { 10: "a", 2: "b", x: "c", "-1": "d", "01": "e" }])
  {
    const keys: Record<string, unknown> = {}
    for (const k of ["", "é", "€uro", "😀", "x".repeat(16), "x".repeat(17), "y".repeat(31), "y".repeat(32)]) keys[k] = k
    keys["z".repeat(255)] = 1
    keys["z".repeat(256)] = 2
    keys["é".repeat(200)] = 3
    out.push(["assorted keys", keys])
  }
  {
    const proto: Record<string, unknown> = {}
    Object.defineProperty(proto, "__proto__", { value: 1, enumerable: true, writable: true, configurable: true })
    out.push(["own __proto__ key", proto])
    out.push(["JSON __proto__ key", JSON.parse("{\"__proto__\": {\"a\": 1}}")])
  }
  for (const ms of DATES_MS) out.push([`Date ${ms}`, new Date(ms)])
  out.push(["invalid Date", new Date(NaN)])
  out.push(["Date in object", { at: new Date(1_700_000_000_000), n: 1, s: "x" }])
  out.push(["Date in array", [1, new Date(0), "x"]])
  out.push(["class instance", new Point("y")])
  out.push(["class instance in object", { p: new Point([1, 2]) }])
  out.push(["Map", new Map([["a", 1]])])
  out.push(["Map in array", [new Map([["a", 1]])]])
  out.push(["ExtData", new ExtData(5, new Uint8Array([1, 2, 3]))])
  out.push(["ExtData fixext sizes", [1, 2, 4, 8, 16, 3, 300].map((n) => new ExtData(100, rng.bytes(n)))])
  out.push(["Int16Array", new Int16Array([1, -2])])
  out.push(["DataView", new DataView(new ArrayBuffer(4))])
  out.push(["ArrayBuffer", new ArrayBuffer(3)])
  out.push(["boxed Number", Object(3)])
  out.push(["bigint", 10n])
  out.push(["bigint in array", [1, 10n]])
  out.push(["symbol", Symbol("s")])
  out.push(["symbol in object", { a: 1, s: Symbol("s") }])
  out.push(["function", () => 1])
  out.push(["function in array", [1, () => 1]])
  // nesting: the library throws for any value deeper than 100 (the top level is depth 1)
  out.push(["99 arrays around 0", nestArrays(99, 0)])
  out.push(["99 arrays around []", nestArrays(99, [])])
  out.push(["100 arrays around []", nestArrays(100, [])])
  out.push(["101 arrays around []", nestArrays(101, [])])
  out.push(["99 objects around 1", nestObjects(99, 1)])
  out.push(["99 objects around {}", nestObjects(99, {})])
  out.push(["100 objects around {}", nestObjects(100, {})])
  out.push(["101 objects around {}", nestObjects(101, {})])
  out.push(["99 arrays around a Date", nestArrays(99, new Date(0))])
  out.push(["100 arrays around a Date", nestArrays(100, new Date(0))])
  out.push(["100 arrays around a Point", nestArrays(100, new Point(1))])
  return out
}

const INTERESTING_BYTES: ReadonlyArray<number> = [
  0x00,
  0x01,
  0x7f,
  0x80,
  0x81,
  0x82,
  0x8f,
  0x90,
  0x91,
  0x9f,
  0xa0,
  0xa1,
  0xa9,
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
  0xd3,
  0xd4,
  0xd5,
  0xd6,
  0xd7,
  0xd8,
  0xd9,
  0xda,
  0xdb,
  0xdc,
  0xdd,
  0xde,
  0xdf,
  0xe0,
  0xff,
  0x61,
  0xef,
  0xbb
]

// ---------------------------------------------------------------------------------------------
// 1. Encoding
// ---------------------------------------------------------------------------------------------

describe("MsgpackEncoder: same bytes as @msgpack/msgpack", () => {
  it("boundary values, sizes and delegated types", () => {
    const failures: Array<string> = []
    for (const [label, value] of fixedValues()) {
      const f = checkEncode(value, label)
      if (f !== undefined) failures.push(f)
    }
    expect(failures).toEqual([])
  })

  it("3000 random values", () => {
    const failures: Array<string> = []
    const values = randomValues(0xe1c0de, 3000, 80)
    values.forEach((value, i) => {
      const f = checkEncode(value, `random #${i}`)
      if (f !== undefined) failures.push(f)
    })
    expect(failures.slice(0, 20)).toEqual([])
  })

  it("random integers and floats of every width", () => {
    const failures: Array<string> = []
    const rng = makeRng(0x1a7)
    for (let i = 0; i < 5000; i++) {
      const n = rng.chance(0.7) ? randomInt(rng) : randomFloat(rng)
      const f = checkEncode(n, `number ${n}`) ?? checkEncode([n, { n }], `nested number ${n}`)
      if (f !== undefined) failures.push(f)
    }
    expect(failures.slice(0, 20)).toEqual([])
  })

  it("symbols, functions and bigints throw in both (top level and nested)", () => {
    for (const v of [Symbol("s"), () => 1, 1n, [Symbol("s")], { f: () => 1 }, [[1n]]]) {
      expect(run(() => libEncode(v)).ok).toBe(false)
      const ours = run(() => encoder.encode(v))
      expect(ours.ok).toBe(false)
      if (!ours.ok) expect(ours.error).toBeInstanceOf(Error)
    }
  })

  it("depth: 100 nested containers pass, deeper ones throw (both)", () => {
    expect(run(() => encoder.encode(nestArrays(99, []))).ok).toBe(true)
    expect(run(() => encoder.encode(nestArrays(100, []))).ok).toBe(false)
    expect(run(() => encoder.encode(nestArrays(101, []))).ok).toBe(false)
    expect(run(() => libEncode(nestArrays(100, []))).ok).toBe(false)
    expect(run(() => encoder.encode(nestObjects(100, {}))).ok).toBe(false)
    expect(run(() => libEncode(nestObjects(100, {}))).ok).toBe(false)
    // and the encoder is usable afterwards
    expect(toHex(encoder.encode({ a: 1 }))).toBe("81a16101")
  })

  it("encode() returns fresh copies; encodeShared() a view valid until the next call", () => {
    const rng = makeRng(0x5a4ed)
    const values = randomValues(0x5a4ed, 300, 40)
    const kept: Array<readonly [Uint8Array, Uint8Array]> = []
    for (const value of values) {
      const lib = run(() => libEncode(value))
      if (!lib.ok) continue
      const copy = encoder.encode(value)
      kept.push([copy, lib.value])
      const shared = encoder.encodeShared(value)
      expect(toHex(shared)).toBe(toHex(lib.value))
      // a copy is not the shared buffer
      expect(copy.buffer).not.toBe(shared.buffer)
      // interleave calls of both kinds (fast path and library fallback)
      if (rng.chance(0.3)) encoder.encodeShared(rng.pick(values))
      if (rng.chance(0.1)) encoder.encodeShared(new Date(0))
    }
    // a big value grows the buffer; earlier copies stay intact
    encoder.encode(stringOfBytes(rng, 200_000, "mixed"))
    encoder.encodeShared({ big: rng.bytes(100_000) })
    for (const [copy, lib] of kept) expect(bytesEqual(copy, lib)).toBe(true)
    // a shared view is correct right after its own call
    const a = encoder.encodeShared({ a: 1 })
    expect(toHex(a)).toBe("81a16101")
    const fallback = encoder.encodeShared(new Date(0))
    expect(toHex(fallback)).toBe(toHex(libEncode(new Date(0))))
  })

  it("lone surrogates (accepted difference): U+FFFD like TextEncoder, same length as the library", () => {
    const rng = makeRng(0x5e6)
    const samples = ["\uD800", "a\uDC00b", "\uDC00\uD800", "\uD83D" + "x".repeat(40), "x".repeat(300) + "\uDFFF"]
    for (let i = 0; i < 200; i++) {
      const s = stringOfBytes(rng, rng.int(80), "mixed")
      const at = rng.int(s.length + 1)
      samples.push(s.slice(0, at) + String.fromCharCode(0xd800 + rng.int(0x800)) + s.slice(at))
    }
    for (const s of samples) {
      const ours = encoder.encode(s)
      const lib = libEncode(s)
      expect(ours.length).toBe(lib.length)
      expect(decode(ours)).toBe(s.toWellFormed())
      // the library's bytes (surrogates as 3-byte sequences) are invalid UTF-8: no throw, U+FFFD
      const back = run(() => decode(lib))
      expect(back.ok).toBe(true)
      if (back.ok && typeof back.value === "string") expect(replaced(back.value) || back.value === s).toBe(true)
      // as a key too
      const keyed = run(() => decode(encoder.encode({ [s]: 1 })))
      expect(keyed.ok).toBe(true)
    }
  })
})

// ---------------------------------------------------------------------------------------------
// 2. Decoding
// ---------------------------------------------------------------------------------------------

describe("decode: same values as @msgpack/msgpack", () => {
  it("library encodings of the boundary values", () => {
    const failures: Array<string> = []
    const stats = newStats()
    for (const [label, value] of fixedValues()) {
      const bytes = run(() => libEncode(value))
      if (!bytes.ok) continue
      const f = checkDecode(bytes.value, label, stats)
      if (f !== undefined) failures.push(f)
    }
    expect(failures).toEqual([])
    expect(stats.excused).toBe(0)
  })

  it("library encodings of 3000 random values", () => {
    const failures: Array<string> = []
    const stats = newStats()
    randomValues(0xdec0de, 3000, 80).forEach((value, i) => {
      const bytes = run(() => libEncode(value))
      if (!bytes.ok) return
      const f = checkDecode(bytes.value, `random #${i}`, stats)
      if (f !== undefined) failures.push(f)
    })
    expect(failures.slice(0, 20)).toEqual([])
    expect(stats.excused).toBe(0)
    expect(stats.bothThrew).toBe(0)
  })

  it("every type byte alone and followed by random bytes", () => {
    const failures: Array<string> = []
    const stats = newStats()
    const rng = makeRng(0x7e)
    for (let b = 0; b < 256; b++) {
      const inputs: Array<Uint8Array> = [Uint8Array.of(b)]
      for (let i = 0; i < 24; i++) inputs.push(concatBytes([b], rng.bytes(rng.range(1, 10))))
      for (let i = 0; i < 8; i++) {
        inputs.push(concatBytes([b], Array.from({ length: rng.range(1, 10) }, () => rng.pick(INTERESTING_BYTES))))
      }
      for (const input of inputs) {
        const f = checkDecode(input, `type 0x${b.toString(16)}`, stats)
        if (f !== undefined) failures.push(f)
      }
    }
    expect(failures.slice(0, 20)).toEqual([])
  })

  it("lengths beyond the input throw (str, bin, ext, array, map)", () => {
    const cases = [
      "d905616263",
      "d9ff",
      "daffff6162",
      "da0100" + "61".repeat(255),
      "dbffffffff61",
      "db00010000" + "61".repeat(100),
      "c410000102",
      "c4ff",
      "c5ffff00",
      "c6ffffffff00",
      "c600100000" + "00".repeat(64),
      "c7ff0500",
      "c8ffff05",
      "c9ffffffff05",
      "d4",
      "d405",
      "d805" + "00".repeat(15),
      "dcffff01",
      "dc0010" + "01".repeat(15),
      "ddffffffff",
      "ddffffffff010203",
      "dd00010000" + "01".repeat(65535),
      "deffffa16101",
      "dfffffffffa16101",
      "df00000002a16101",
      "91ddffffffff00",
      "81a161ddffffffff",
      "8f",
      "9f",
      "81a161",
      "81",
      "82a16101a162",
      "cb00000000",
      "cf0000",
      "d3ff"
    ]
    const failures: Array<string> = []
    const stats = newStats()
    for (const hex of cases) {
      const input = fromHex(hex)
      expect(run(() => decode(input)).ok, hex).toBe(false)
      const f = checkDecode(input, "short", stats)
      if (f !== undefined) failures.push(f)
    }
    expect(failures).toEqual([])
    expect(stats.bothThrew).toBe(cases.length)
    // and the exact number of elements does decode
    const exact = decode(fromHex("dd00010000" + "01".repeat(65536)))
    expect(Array.isArray(exact) && exact.length).toBe(65536)
  })

  it("every proper prefix of a valid encoding throws (both)", () => {
    const failures: Array<string> = []
    const stats = newStats()
    randomValues(0x7a11, 300, 30).forEach((value, i) => {
      const bytes = run(() => libEncode(value))
      if (!bytes.ok) return
      for (let n = 0; n < bytes.value.length; n++) {
        const prefix = bytes.value.subarray(0, n)
        const f = checkDecode(prefix, `prefix ${n} of #${i}`, stats)
        if (f !== undefined) failures.push(f)
      }
    })
    expect(failures.slice(0, 20)).toEqual([])
    expect(stats.bothThrew).toBe(stats.cases)
  })

  it("map keys: numbers, __proto__, duplicates, odd types", () => {
    const failures: Array<string> = []
    const stats = newStats()
    const cases: Array<readonly [string, string]> = [
      ["integer key", "810102"],
      ["negative integer key", "81ffa161"],
      ["uint32 key", "81ceffffffff01"],
      ["float key", "81cb3ff800000000000001"],
      ["int and string keys", "8301a161a162020003"],
      ["nil key", "81c001"],
      ["bool key", "81c301"],
      ["array key", "819001"],
      ["map key", "818001"],
      ["bin key", "81c4016101"],
      ["ext key", "81d4050001"],
      ["0xc1 key", "81c101"],
      ["0xc1 value", "81a161c1"],
      ["__proto__ fixstr", "81a95f5f70726f746f5f5f01"],
      ["__proto__ str8", "81d9095f5f70726f746f5f5f01"],
      ["__proto__ str16", "81da00095f5f70726f746f5f5f01"],
      ["__proto__ nested", "81a16181a95f5f70726f746f5f5f01"],
      ["__proto__ after a key", "82a16101a95f5f70726f746f5f5f02"],
      ["duplicate keys", "82a16101a16102"],
      ["duplicate keys (3)", "83a16101a16202a16103"],
      ["str16 key", "81da0001610a"],
      ["str32 key", "81db00000001610a"],
      ["str8 key of 40 bytes", "81d928" + "61".repeat(40) + "01"],
      ["empty key", "81a001"],
      ["constructor key", "81ab636f6e7374727563746f7201"],
      ["toString key", "81a8746f537472696e6701"],
      ["numeric string key", "82a13202a13101"]
    ]
    for (const [label, hex] of cases) {
      const f = checkDecode(fromHex(hex), label, stats)
      if (f !== undefined) failures.push(f)
    }
    expect(failures).toEqual([])
    expect(decode(fromHex("810102"))).toEqual({ "1": 2 })
    expect(decode(fromHex("82a16101a16102"))).toEqual({ a: 2 })
    expect(run(() => decode(fromHex("81a95f5f70726f746f5f5f01"))).ok).toBe(false)
    expect(run(() => decode(fromHex("81d9095f5f70726f746f5f5f01"))).ok).toBe(false)
  })

  it("extension types: timestamps 32/64/96, unknown ext types, 0xc1", () => {
    const failures: Array<string> = []
    const stats = newStats()
    const cases: Array<readonly [string, string]> = [
      ["timestamp 32", "d6ff00000001"],
      ["timestamp 32 max", "d6ffffffffff"],
      ["timestamp 64", "d7ff0000000400000001"],
      ["timestamp 64 nanos", "d7ff" + "0ee6b28000000001"],
      ["timestamp 96", "c70cff" + "00000001" + "0000000400000000"],
      ["timestamp 96 negative", "c70cff" + "00000000" + "ffffffffffffffff"],
      ["timestamp in array", "92d6ff0000000101"],
      ["timestamp in map", "81a174d6ff00000001"],
      ["timestamp bad size (fixext1)", "d4ff00"],
      ["timestamp bad size (ext8 5)", "c705ff0000000000"],
      ["timestamp nanos too big", "d7ff" + "ffffffff00000001"],
      ["fixext 1", "d40501"],
      ["fixext 2", "d5050102"],
      ["fixext 4", "d60501020304"],
      ["fixext 8", "d7050102030405060708"],
      ["fixext 16", "d805" + "00".repeat(16)],
      ["ext8 empty", "c70005"],
      ["ext8", "c7037f010203"],
      ["ext8 negative type", "c70380010203"],
      ["ext16", "c8000305010203"],
      ["ext32", "c90000000305010203"],
      ["ext in nested array", "9191d40501"],
      ["0xc1", "c1"],
      ["0xc1 in array", "9101c1"],
      ["0xc1 after a value", "01c1"]
    ]
    for (const [label, hex] of cases) {
      const f = checkDecode(fromHex(hex), label, stats)
      if (f !== undefined) failures.push(f)
    }
    expect(failures).toEqual([])
    expect(decode(fromHex("d6ff00000001"))).toEqual(new Date(1000))
    const ext = decode(fromHex("d40501"))
    expect(ext).toBeInstanceOf(ExtData)
    expect(run(() => decode(fromHex("c1"))).ok).toBe(false)
  })

  it("trailing bytes throw the library's RangeError", () => {
    const cases = ["0102", "900000", "a16101", "81a16101c0", "c0c0", "cb3ff000000000000000", "c4010000", "92010203ff"]
    for (const hex of cases) {
      const input = fromHex(hex)
      const lib = run(() => libDecode(input))
      const ours = run(() => decode(input))
      expect(lib.ok).toBe(false)
      expect(ours.ok).toBe(false)
      if (!lib.ok && !ours.ok) {
        expect(ours.error).toBeInstanceOf(RangeError)
        expect(errorText(ours.error)).toBe(errorText(lib.error))
        expect(errorText(ours.error)).toMatch(/^RangeError: Extra \d+ of \d+ byte\(s\) found at buffer\[\d+\]$/)
      }
    }
    // through the library fallback (an ext value) the error is the library's own
    const ext = fromHex("d4050100")
    const viaLibrary = run(() => decode(ext))
    const reference = run(() => libDecode(ext))
    expect(!viaLibrary.ok && !reference.ok && errorText(viaLibrary.error) === errorText(reference.error)).toBe(true)
    const two = run(() => decode(fromHex("0102")))
    expect(two.ok ? "no error" : errorText(two.error)).toBe("RangeError: Extra 1 of 2 byte(s) found at buffer[1]")
  })

  it("deep nesting (the library decodes any depth)", () => {
    const failures: Array<string> = []
    const stats = newStats()
    for (const depth of [98, 99, 100, 101, 150, 1000]) {
      for (const [open, inner] of [["91", "90"], ["91", "01"], ["81a161", "80"], ["81a161", "c0"]] as const) {
        const input = fromHex(open.repeat(depth) + inner)
        const f = checkDecode(input, `depth ${depth} ${open}`, stats)
        if (f !== undefined) failures.push(f)
      }
    }
    expect(failures).toEqual([])
    expect(stats.bothThrew).toBe(0)
  })

  it("invalid UTF-8 in strings and keys (accepted difference): never throws, U+FFFD", () => {
    const rng = makeRng(0xbad8)
    const stats = newStats()
    const failures: Array<string> = []
    for (let i = 0; i < 3000; i++) {
      const body = rng.bytes(rng.pick([1, 2, 3, 5, 16, 17, 31, 40, 201, 300]))
      const header = body.length < 32 ? [0xa0 | body.length] : body.length < 256 ? [0xd9, body.length] : [0xda, 1, 44]
      const asValue = concatBytes(header, body)
      const asKey = concatBytes([0x81], header, body, [0x01])
      for (const input of [asValue, asKey]) {
        const ours = run(() => decode(input))
        if (!ours.ok) {
          failures.push(`${preview(input)}: ours threw ${errorText(ours.error)}`)
          continue
        }
        const f = checkDecode(input, "invalid UTF-8", stats)
        if (f !== undefined) failures.push(f)
      }
    }
    expect(failures.slice(0, 20)).toEqual([])
    expect(stats.excused).toBeGreaterThan(0)
  })

  it("fuzz: 20,000 random byte strings", () => {
    const failures: Array<string> = []
    const stats = newStats()
    for (let i = 0; i < 20_000; i++) {
      const rng = makeRng(mixSeed(0xf022, i))
      const n = rng.int(65)
      const input = i % 2 === 0
        ? rng.bytes(n)
        : Uint8Array.from({ length: n }, () => (rng.chance(0.5) ? rng.pick(INTERESTING_BYTES) : rng.int(256)))
      const f = checkDecode(input, `random #${i}`, stats)
      if (f !== undefined) failures.push(f)
    }
    expect(failures.slice(0, 20)).toEqual([])
  })

  it("fuzz: 20,000 mutations of valid encodings", () => {
    const failures: Array<string> = []
    const stats = newStats()
    const donors: Array<Uint8Array> = []
    for (const value of randomValues(0xd0708, 400, 25)) {
      const bytes = run(() => libEncode(value))
      if (bytes.ok) donors.push(bytes.value)
    }
    for (let i = 0; i < 20_000; i++) {
      const rng = makeRng(mixSeed(0x70a7e, i))
      const input = mutate(rng, rng.pick(donors), donors)
      const f = checkDecode(input, `mutation #${i}`, stats)
      if (f !== undefined) failures.push(f)
    }
    expect(failures.slice(0, 20)).toEqual([])
    // the mutations reach both outcomes
    expect(stats.bothThrew).toBeGreaterThan(1000)
    expect(stats.cases - stats.bothThrew).toBeGreaterThan(1000)
  })
})

// ---------------------------------------------------------------------------------------------
// 3. Binary values are views
// ---------------------------------------------------------------------------------------------

describe("decode: binary values are views into the input", () => {
  it("bin8/16/32 at the top level, in arrays and maps, with a non-zero byteOffset", () => {
    const rng = makeRng(0xb1)
    const small = rng.bytes(3)
    const medium = rng.bytes(300)
    const large = rng.bytes(70_000)
    const payload = libEncode({ a: small, b: [medium, large], c: "x" })
    const backing = new Uint8Array(payload.length + 20)
    backing.set(payload, 11)
    const input = backing.subarray(11, 11 + payload.length)
    const out = decode(input)
    const list = field(out, "b")
    const decoded = [
      field(out, "a"),
      Array.isArray(list) ? list[0] : undefined,
      Array.isArray(list) ? list[1] : undefined
    ]
    const expected = [small, medium, large]
    decoded.forEach((bin, i) => {
      expect(bin).toBeInstanceOf(Uint8Array)
      if (!(bin instanceof Uint8Array)) return
      expect(bin.buffer).toBe(backing.buffer)
      expect(bin.byteOffset).toBeGreaterThanOrEqual(input.byteOffset)
      expect(bin.byteOffset + bin.length).toBeLessThanOrEqual(input.byteOffset + input.length)
      expect(bytesEqual(bin, expected[i]!)).toBe(true)
    })
    for (const top of [small, medium, large]) {
      const bytes = libEncode(top)
      const bin = decode(bytes)
      expect(bin instanceof Uint8Array && bin.buffer === bytes.buffer && bytesEqual(bin, top)).toBe(true)
    }
    // an empty bin too
    const empty = fromHex("c400")
    const bin = decode(empty)
    expect(bin instanceof Uint8Array && bin.buffer === empty.buffer && bin.length === 0).toBe(true)
  })

  it("a Buffer input decodes bins as Buffers (as the library)", () => {
    const input = Buffer.from(libEncode({ a: new Uint8Array([1, 2]) }))
    const a = field(decode(input), "a")
    expect(Buffer.isBuffer(a)).toBe(true)
    expect(Buffer.isBuffer(field(libDecode(input), "a"))).toBe(true)
  })

  it("through the library fallback (a value with an ext) bins are views too", () => {
    const input = libEncode({ a: new Uint8Array([1, 2, 3]), d: new Date(0) })
    const a = field(decode(input), "a")
    expect(a instanceof Uint8Array && a.buffer === input.buffer).toBe(true)
  })
})

// ---------------------------------------------------------------------------------------------
// 4. The public codec
// ---------------------------------------------------------------------------------------------

describe("Codec.msgpack", () => {
  it("agrees with the library", () => {
    const encodeShared = Codec.msgpack.encodeShared
    expect(encodeShared).toBeDefined()
    const values: ReadonlyArray<unknown> = [
      { A: 7, B: 8 },
      [1, "x", null, true, -0, NaN, 2 ** 40, -(2 ** 40), 1.5],
      "héllo wörld 😀",
      new Uint8Array([1, 2, 3]),
      { nested: { list: [{ a: 1 }, { b: [2, 3] }], bytes: new Uint8Array(300) } },
      new Date(1_700_000_000_000),
      { at: new Date(0), p: new Point(2) },
      Array.from({ length: 20 }, (_, i) => ({ [`k${i}`]: "v".repeat(i) }))
    ]
    const stats = newStats()
    for (const value of values) {
      const lib = libEncode(value)
      expect(toHex(Codec.msgpack.encode(value))).toBe(toHex(lib))
      if (encodeShared !== undefined) expect(toHex(encodeShared(value))).toBe(toHex(lib))
      const ours = Codec.msgpack.decode(lib)
      const state: DiffState = { excused: false }
      expect(diff(ours, libDecode(lib), "$", state)).toBeUndefined()
      expect(state.excused).toBe(false)
      expect(checkDecode(lib, "codec", stats)).toBeUndefined()
    }
    expect(toHex(Codec.msgpack.encode({ A: 7, B: 8 }))).toBe("82a14107a14208")
    expect(run(() => Codec.msgpack.decode(fromHex("0102")))).toMatchObject({ ok: false })
  })
})

// ---------------------------------------------------------------------------------------------
// Former mismatches with the library, found by this file and fixed (each asserts the library's behaviour)
// ---------------------------------------------------------------------------------------------

describe("former mismatches (regressions)", () => {
  // The library checks the depth of every value, scalars included (`doEncode` throws "Too deep
  // objects in depth 101" before looking at the type); ours once checked only objects.
  it("encode: a scalar at depth 101 throws as in the library", () => {
    for (const inner of [0, "x", null, undefined, true, 1.5]) {
      for (const value of [nestArrays(100, inner), nestObjects(100, inner)]) {
        expect(run(() => libEncode(value)).ok).toBe(false)
        expect(checkEncode(value, `100 containers around ${String(inner)}`)).toBeUndefined()
      }
    }
  })

  // A default `TextDecoder` strips a leading BOM; the library decodes strings of up to 200 bytes
  // (and all cached keys) in JS and keeps it (`a6 ef bb bf 61 62 63` is "\uFEFFabc").
  it("decode: a string starting with U+FEFF keeps it", () => {
    for (const value of ["\uFEFFabc", "\uFEFF", { "\uFEFFk": 1 }, "\uFEFF" + "é".repeat(50)]) {
      const bytes = libEncode(value)
      expect(checkDecode(bytes, "BOM", newStats())).toBeUndefined()
      expect(decode(encoder.encode(value))).toEqual(value)
    }
  })

  // A getter that encodes with the same encoder instance while it encodes (re-entrance) must not
  // reset the shared buffer under the outer call (library: 83a16101a16202a16303).
  it("encode: re-entrant use from a getter", () => {
    const make = (inner: (value: unknown) => Uint8Array) => ({
      a: 1,
      get b() {
        inner("zzzzzzzz")
        return 2
      },
      c: 3
    })
    const lib = libEncode(make((v) => refEncoder.encode(v)))
    const ours = encoder.encode(make((v) => encoder.encode(v)))
    expect(toHex(ours)).toBe(toHex(lib))
  })

  // Exotic: the library writes array elements with `for…of`, so an array with its own
  // `Symbol.iterator` ([1,2,3] iterating 9,9,9) is 93090909, not 93010203.
  it("encode: an array with its own Symbol.iterator", () => {
    const array = [1, 2, 3]
    Object.defineProperty(array, Symbol.iterator, {
      value: function*() {
        yield 9
        yield 9
        yield 9
      }
    })
    expect(checkEncode(array, "own iterator")).toBeUndefined()
  })

  // Exotic: a value handed to the library after part of it was walked must not have its getters
  // run twice ({ n: 1 } written, not { n: 2 }).
  it("encode: getters run once when a value falls back to the library", () => {
    let calls = 0
    const value = {
      get n() {
        calls++
        return calls
      },
      d: new Date(0)
    }
    const ours = encoder.encode(value)
    calls = 0
    expect(toHex(ours)).toBe(toHex(libEncode(value)))
  })
})

describe("MsgpackEncoder.encodeInto", () => {
  it("writes the library's bytes into the caller's buffer, or reports that they do not fit", () => {
    const lib = new Encoder()
    const ours = new MsgpackEncoder()
    const values: ReadonlyArray<unknown> = [
      null,
      1,
      -70000,
      1.5,
      "x".repeat(40),
      "é".repeat(300),
      { i: 123456 },
      { id: 1, name: "abcdefghijklmnop", n: 42, tags: ["a", "b"], at: new Date(0) },
      new Uint8Array(70_000).fill(3),
      Array.from({ length: 100 }, (_, i) => ({ i }))
    ]
    for (const value of values) {
      const expected = Buffer.from(lib.encode(value)).toString("hex")
      const target = new Uint8Array(expected.length / 2 + 20)
      const end = ours.encodeInto(value, target, 7, target.length)
      assert.strictEqual(end, 7 + expected.length / 2)
      assert.strictEqual(Buffer.from(target.subarray(7, end)).toString("hex"), expected)
      // one byte short: -1, and the encoder still works afterwards
      assert.strictEqual(ours.encodeInto(value, target, 7, 7 + expected.length / 2 - 1), -1)
      assert.strictEqual(Buffer.from(ours.encode(value)).toString("hex"), expected)
    }
  })

  it("throws the library's error for what the library rejects", () => {
    const ours = new MsgpackEncoder()
    assert.throws(() => ours.encodeInto({ f: Symbol("x") }, new Uint8Array(100), 0, 100))
  })
})
