/**
 * A msgpack encoder and decoder for the hot path of the default codec, producing the same bytes
 * and the same values as `@msgpack/msgpack` 3 with default options (checked by differential
 * tests), at a fraction of its cost per small message: no per-call state reset or DataView
 * allocation, map keys of up to 16 bytes interned, ASCII strings copied byte by byte.
 *
 * What it does not cover it hands to `@msgpack/msgpack`: when encoding, each value that is not
 * plain data (`Date` for the timestamp extension, class instances, `Map`, typed arrays other than
 * `Uint8Array`, arrays with their own iterator) is encoded by the library in place, and anything
 * the library rejects (symbols, functions, nesting deeper than 100) gets the library's own error;
 * when decoding, a value with extension types or unusual map keys is decoded by the library.
 * Known difference: a lone UTF-16 surrogate in a string is written as U+FFFD (TextEncoder), where
 * the library may write the surrogate's bytes.
 *
 * @internal
 */
import { Decoder, Encoder } from "@msgpack/msgpack"
import { utf8Length, writeInt, writeShortAscii } from "./bytes.ts"

const library = { encoder: new Encoder(), decoder: new Decoder() }

/** Thrown inside the fast paths when a value needs the library; never escapes this module. */
const FALLBACK: unique symbol = Symbol("msgpack.fallback")

/** Thrown by `ensure` when `encodeInto`'s target is too small; never escapes this module. */
const NO_ROOM: unique symbol = Symbol("msgpack.noRoom")

const MAX_DEPTH = 100

const copyInto = (bytes: Uint8Array, target: Uint8Array, pos: number, end: number): number => {
  if (pos + bytes.length > end) return -1
  target.set(bytes, pos)
  return pos + bytes.length
}
const ObjectProto = Object.prototype
const arrayIterator = Array.prototype[Symbol.iterator]

const textEncoder = new TextEncoder()
// As the library: strings of up to 200 bytes keep a leading U+FEFF (its JS decoder), longer ones
// lose it (its TextDecoder).
const keepBom = new TextDecoder("utf-8", { ignoreBOM: true })
const stripBom = new TextDecoder()
const TEXT_DECODER_THRESHOLD = 200

// ---------------------------------------------------------------------------------------------
// Encoder
// ---------------------------------------------------------------------------------------------

/**
 * Encodes values into one reusable buffer. `encodeShared` returns a view valid until the next
 * call; `encode` returns a fresh copy.
 *
 * @internal
 */
export class MsgpackEncoder {
  private buf: Uint8Array = new Uint8Array(2048)
  private view: DataView = new DataView(this.buf.buffer)
  private pos = 0

  encode(value: unknown): Uint8Array {
    return this.encodeShared(value).slice()
  }

  private entered = false

  encodeShared(value: unknown): Uint8Array {
    // a getter of the value being encoded may encode too: it gets an encoder of its own
    if (this.entered) return new MsgpackEncoder().encodeShared(value)
    this.entered = true
    this.pos = 0
    try {
      this.value(value, 1)
    } catch (e) {
      if (e !== FALLBACK) throw e
      // too deep, or a symbol or function: the library's own error
      return library.encoder.encode(value)
    } finally {
      this.entered = false
    }
    return this.buf.subarray(0, this.pos)
  }

  /** Set while `encodeInto` writes into a caller's buffer: growing is not possible there. */
  private limit = -1
  private targetView: { buf: Uint8Array; view: DataView } | undefined = undefined

  /**
   * Encodes `value` into `target` from `pos`, never at or past `end`: returns where it stopped,
   * or -1 when the value did not fit (possibly a few bytes early: room is checked per value
   * for its largest form). Values the library encodes are copied in.
   */
  encodeInto(value: unknown, target: Uint8Array, pos: number, end: number): number {
    if (this.entered) return copyInto(new MsgpackEncoder().encodeShared(value), target, pos, end)
    const ownBuf = this.buf
    const ownView = this.view
    let cached = this.targetView
    if (cached === undefined || cached.buf !== target) {
      cached = { buf: target, view: new DataView(target.buffer, target.byteOffset, target.byteLength) }
      this.targetView = cached
    }
    this.entered = true
    this.buf = target
    this.view = cached.view
    this.pos = pos
    this.limit = end
    try {
      this.value(value, 1)
      return this.pos
    } catch (e) {
      if (e === NO_ROOM) return -1
      if (e !== FALLBACK) throw e
    } finally {
      this.buf = ownBuf
      this.view = ownView
      this.limit = -1
      this.entered = false
    }
    // too deep, or a symbol or function: the library's own answer (its error, as a rule)
    return copyInto(library.encoder.encodeSharedRef(value), target, pos, end)
  }

  private ensure(size: number): void {
    if (this.pos + size <= this.buf.length && (this.limit < 0 || this.pos + size <= this.limit)) return
    if (this.limit >= 0) throw NO_ROOM
    const next = new Uint8Array(Math.max(this.buf.length * 2, (this.pos + size) * 2))
    next.set(this.buf.subarray(0, this.pos))
    this.buf = next
    this.view = new DataView(next.buffer)
  }

  private value(value: unknown, depth: number): void {
    // as the library: every value counts, scalars included
    if (depth > MAX_DEPTH) throw FALLBACK
    switch (typeof value) {
      case "number":
        return this.number(value)
      case "string":
        return this.string(value)
      case "boolean":
        this.ensure(1)
        this.buf[this.pos++] = value ? 0xc3 : 0xc2
        return
      case "undefined":
        this.ensure(1)
        this.buf[this.pos++] = 0xc0
        return
      case "object":
        if (value === null) {
          this.ensure(1)
          this.buf[this.pos++] = 0xc0
          return
        }
        if (Array.isArray(value)) {
          // the library iterates arrays with for…of: an array with its own iterator is its case
          if (value[Symbol.iterator] !== arrayIterator) return this.borrowed(value)
          return this.array(value, depth)
        }
        if (value instanceof Uint8Array) return this.binary(value)
        {
          const proto = Object.getPrototypeOf(value)
          if (proto === ObjectProto || proto === null) return this.map(value, depth)
        }
        // Date (timestamp extension), class instances, other views: the library's bytes for this
        // value alone, so the rest of the value is read once
        return this.borrowed(value)
      default:
        throw FALLBACK
    }
  }

  /** Appends the library's encoding of one value. */
  private borrowed(value: unknown): void {
    const bytes = library.encoder.encodeSharedRef(value)
    this.ensure(bytes.length)
    this.buf.set(bytes, this.pos)
    this.pos += bytes.length
  }

  private number(n: number): void {
    this.ensure(9)
    if (Number.isSafeInteger(n)) {
      this.pos = writeInt(this.buf, this.pos, n)
      return
    }
    this.buf[this.pos] = 0xcb
    this.view.setFloat64(this.pos + 1, n)
    this.pos += 9
  }

  private string(s: string): void {
    const n = s.length
    if (n < 32) {
      this.ensure(1 + n)
      const end = writeShortAscii(this.buf, this.pos, s)
      if (end >= 0) {
        this.pos = end
        return
      }
    }
    // at most 3 bytes per UTF-16 unit; the header is written once the length is known (in a
    // caller's buffer with less room than that, the exact length decides)
    const bound = this.limit >= 0 && this.pos + 5 + n * 3 > this.limit ? utf8Length(s) : n * 3
    this.ensure(5 + bound)
    const headerSize = bound < 32 ? 1 : bound < 0x100 ? 2 : bound < 0x10000 ? 3 : 5
    const start = this.pos + headerSize
    const { written } = textEncoder.encodeInto(s, this.buf.subarray(start))
    const size = written
    // the real header may be shorter than the one room was left for: move the bytes back
    const real = size < 32 ? 1 : size < 0x100 ? 2 : size < 0x10000 ? 3 : 5
    if (real !== headerSize) this.buf.copyWithin(this.pos + real, start, start + size)
    const buf = this.buf
    let p = this.pos
    if (real === 1) buf[p++] = 0xa0 | size
    else if (real === 2) {
      buf[p++] = 0xd9
      buf[p++] = size
    } else if (real === 3) {
      buf[p++] = 0xda
      buf[p++] = size >>> 8
      buf[p++] = size & 0xff
    } else {
      buf[p++] = 0xdb
      this.view.setUint32(p, size)
      p += 4
    }
    this.pos = p + size
  }

  private binary(bytes: Uint8Array): void {
    const size = bytes.length
    this.ensure(5 + size)
    const buf = this.buf
    let p = this.pos
    if (size < 0x100) {
      buf[p++] = 0xc4
      buf[p++] = size
    } else if (size < 0x10000) {
      buf[p++] = 0xc5
      buf[p++] = size >>> 8
      buf[p++] = size & 0xff
    } else {
      buf[p++] = 0xc6
      this.view.setUint32(p, size)
      p += 4
    }
    buf.set(bytes, p)
    this.pos = p + size
  }

  private header(size: number, fix: number, b16: number): void {
    this.ensure(5)
    const buf = this.buf
    let p = this.pos
    if (size < 16) buf[p++] = fix | size
    else if (size < 0x10000) {
      buf[p++] = b16
      buf[p++] = size >>> 8
      buf[p++] = size & 0xff
    } else {
      buf[p++] = b16 + 1
      this.view.setUint32(p, size)
      p += 4
    }
    this.pos = p
  }

  private array(values: ReadonlyArray<unknown>, depth: number): void {
    const n = values.length
    this.header(n, 0x90, 0xdc)
    for (let i = 0; i < n; i++) this.value(values[i], depth + 1)
  }

  private map(object: object, depth: number): void {
    const keys = Object.keys(object)
    const record: Record<string, unknown> = object as Record<string, unknown>
    this.header(keys.length, 0x80, 0xde)
    for (let i = 0; i < keys.length; i++) {
      const key = keys[i]!
      this.string(key)
      this.value(record[key], depth + 1)
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Decoder
// ---------------------------------------------------------------------------------------------

const KEY_CACHE_SIZE = 4096
const KEY_MAX = 16

/** Interned map keys (and short strings) of up to 16 bytes, by a hash of their bytes. */
class KeyCache {
  private readonly bytes: Array<Uint8Array | undefined> = new Array(KEY_CACHE_SIZE)
  private readonly strings: Array<string> = new Array(KEY_CACHE_SIZE)

  get(buf: Uint8Array, start: number, size: number): string {
    let h = size
    for (let i = 0; i < size; i++) h = (Math.imul(h, 31) + buf[start + i]!) | 0
    const slot = (h >>> 0) & (KEY_CACHE_SIZE - 1)
    const known = this.bytes[slot]
    if (known !== undefined && known.length === size) {
      let same = true
      for (let i = 0; i < size; i++) {
        if (known[i] !== buf[start + i]) {
          same = false
          break
        }
      }
      if (same) return this.strings[slot]!
    }
    const s = decodeUtf8(buf, start, size)
    this.bytes[slot] = buf.slice(start, start + size)
    this.strings[slot] = s
    return s
  }
}

const keyCache = new KeyCache()

const decodeUtf8 = (buf: Uint8Array, start: number, size: number): string => {
  if (size <= 32) {
    let ascii = true
    for (let i = 0; i < size; i++) {
      if (buf[start + i]! >= 0x80) {
        ascii = false
        break
      }
    }
    if (ascii) {
      let s = ""
      for (let i = 0; i < size; i++) s += String.fromCharCode(buf[start + i]!)
      return s
    }
  }
  return (size > TEXT_DECODER_THRESHOLD ? stripBom : keepBom).decode(buf.subarray(start, start + size))
}

const insufficient = (): RangeError => new RangeError("Insufficient data")

/**
 * Decodes one msgpack value that must fill `bytes` exactly (as `@msgpack/msgpack`'s `decode`).
 * Binary values are views into `bytes`, not copies.
 *
 * @internal
 */
export const decode = (bytes: Uint8Array): unknown => {
  // one reader for all calls: decoding runs no user code, so it is never re-entered
  const reader = sharedReader
  reader.reset(bytes)
  let value: unknown
  try {
    value = reader.value(0)
  } catch (e) {
    if (e !== FALLBACK) throw e
    return library.decoder.decode(bytes)
  } finally {
    reader.release()
  }
  if (reader.end !== bytes.length) {
    throw new RangeError(`Extra ${bytes.length - reader.end} of ${bytes.length} byte(s) found at buffer[${reader.end}]`)
  }
  return value
}

const empty = new Uint8Array(0)

class Reader {
  pos = 0
  /** Where the last value ended (kept after `release`). */
  end = 0
  private buf: Uint8Array = empty
  private view: DataView | undefined = undefined

  reset(buf: Uint8Array): void {
    this.buf = buf
    this.pos = 0
    this.view = undefined
  }

  /** Drops the reference to the input (so a large read buffer is not kept alive). */
  release(): void {
    this.end = this.pos
    this.buf = empty
    this.view = undefined
  }

  private dataView(): DataView {
    return this.view ??= new DataView(this.buf.buffer, this.buf.byteOffset, this.buf.byteLength)
  }

  private need(n: number): number {
    const p = this.pos
    if (p + n > this.buf.length) throw insufficient()
    this.pos = p + n
    return p
  }

  value(depth: number): unknown {
    const buf = this.buf
    if (this.pos >= buf.length) throw insufficient()
    const b = buf[this.pos++]!
    if (b < 0x80) return b
    if (b < 0x90) return this.map(b - 0x80, depth)
    if (b < 0xa0) return this.array(b - 0x90, depth)
    if (b < 0xc0) return this.str(b - 0xa0)
    if (b >= 0xe0) return b - 0x100
    switch (b) {
      case 0xc0:
        return null
      case 0xc2:
        return false
      case 0xc3:
        return true
      case 0xc4:
        return this.bin(this.u8())
      case 0xc5:
        return this.bin(this.u16())
      case 0xc6:
        return this.bin(this.u32())
      case 0xca:
        return this.dataView().getFloat32(this.need(4))
      case 0xcb:
        return this.dataView().getFloat64(this.need(8))
      case 0xcc:
        return this.u8()
      case 0xcd:
        return this.u16()
      case 0xce:
        return this.u32()
      case 0xcf: {
        const p = this.need(8)
        return this.be32(p) * 0x1_0000_0000 + this.be32(p + 4)
      }
      case 0xd0: {
        const v = buf[this.need(1)]!
        return v < 0x80 ? v : v - 0x100
      }
      case 0xd1: {
        const p = this.need(2)
        return (((buf[p]! << 8) | buf[p + 1]!) << 16) >> 16
      }
      case 0xd2:
        return this.be32(this.need(4)) | 0
      case 0xd3: {
        const p = this.need(8)
        return (this.be32(p) | 0) * 0x1_0000_0000 + this.be32(p + 4)
      }
      case 0xd9:
        return this.str(this.u8())
      case 0xda:
        return this.str(this.u16())
      case 0xdb:
        return this.str(this.u32())
      case 0xdc:
        return this.array(this.u16(), depth)
      case 0xdd:
        return this.array(this.u32(), depth)
      case 0xde:
        return this.map(this.u16(), depth)
      case 0xdf:
        return this.map(this.u32(), depth)
      default:
        // extension types (0xc7-0xc9, 0xd4-0xd8) and the unused 0xc1: the library's answer
        throw FALLBACK
    }
  }

  private u8(): number {
    return this.buf[this.need(1)]!
  }

  private u16(): number {
    const p = this.need(2)
    return (this.buf[p]! << 8) | this.buf[p + 1]!
  }

  private u32(): number {
    return this.be32(this.need(4))
  }

  /** Big-endian unsigned 32-bit integer at `p` (no DataView: most inputs need none). */
  private be32(p: number): number {
    const buf = this.buf
    return buf[p]! * 0x100_0000 + ((buf[p + 1]! << 16) | (buf[p + 2]! << 8) | buf[p + 3]!)
  }

  private str(size: number): string {
    const p = this.need(size)
    return size <= KEY_MAX && size > 0 ? keyCache.get(this.buf, p, size) : decodeUtf8(this.buf, p, size)
  }

  private bin(size: number): Uint8Array {
    const p = this.need(size)
    return this.buf.subarray(p, p + size)
  }

  private array(n: number, depth: number): Array<unknown> {
    // deep nesting goes to the library, which does not recurse on the JS stack
    if (depth >= MAX_DEPTH) throw FALLBACK
    // each element takes at least one byte: a length beyond the input is truncated data
    if (n > this.buf.length - this.pos) throw insufficient()
    const out: Array<unknown> = new Array(n)
    for (let i = 0; i < n; i++) out[i] = this.value(depth + 1)
    return out
  }

  private map(n: number, depth: number): Record<string, unknown> {
    if (depth >= MAX_DEPTH) throw FALLBACK
    if (n * 2 > this.buf.length - this.pos) throw insufficient()
    const out: Record<string, unknown> = {}
    for (let i = 0; i < n; i++) {
      const b = this.pos < this.buf.length ? this.buf[this.pos]! : -1
      // string keys (fixstr, str8) on the fast path; numbers, long or odd keys: the library
      let key: string
      if (b >= 0xa0 && b < 0xc0) {
        this.pos++
        key = this.str(b - 0xa0)
      } else if (b === 0xd9) {
        this.pos++
        key = this.str(this.u8())
      } else throw FALLBACK
      if (key === "__proto__") throw FALLBACK
      out[key] = this.value(depth + 1)
    }
    return out
  }
}

const sharedReader = new Reader()
