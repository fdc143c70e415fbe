/**
 * Frames ⇄ bytes.
 *
 * - `FrameEncoder` is the strict writer: for every frame the original would write it produces the
 *   original's exact bytes (smallest integer forms, unsigned family for non-negative ints, old raw
 *   strings for strings and payload, `80` for no headers, `a0` for no error, `c0` for no payload).
 *   It writes envelopes directly into a reusable slab and copies each payload exactly once; several
 *   frames accumulate into one contiguous chunk for a single socket write.
 * - `FrameDecoder` is the tolerant, incremental reader: it accepts any chunking (one byte at a time
 *   up to many frames per chunk), everything the original accepts (str8, bin, nil fields, any
 *   integer width, short/long arrays, the map form), slices payloads without copying when a frame
 *   lies in one chunk, and rejects everything else with a typed `ProtocolError`. It never throws on
 *   input and never allocates beyond its `Limits`.
 *
 * @since 0.1.0
 */
import * as Result from "effect/Result"
import { ProtocolError, type ProtocolErrorReason } from "./DuplexError.ts"
import type { Frame } from "./Frame.ts"
import type * as Headers from "./Headers.ts"
import { empty as emptyHeaders } from "./Headers.ts"
import { utf8Length, writeInt, writeShortAscii } from "./internal/bytes.ts"
import { defaultLimits, type Limits } from "./Protocol.ts"

// ---------------------------------------------------------------------------------------------
// Encoder
// ---------------------------------------------------------------------------------------------

/** Slabs start small (an idle connection costs little) and double up to this as traffic flows. */
const SLAB_SIZE = 64 * 1024
const FIRST_SLAB = 2 * 1024
/** Frames from this size on are assembled in place when the reader supports it. */
const ASSEMBLE_MIN_BYTES = 16 * 1024
/** The first buffer of an assembled frame (a 64 KiB payload and its envelope fit). */
const ASSEMBLE_FIRST_BYTES = 64 * 1024 + 256
/** Recycled slabs an encoder keeps for reuse (see `FrameEncoder.recycle`). */
const POOL_SLABS = 2
const textEncoder = new TextEncoder()
const NodeBuffer: { allocUnsafe(size: number): Uint8Array } | undefined = (globalThis as {
  readonly Buffer?: { allocUnsafe(size: number): Uint8Array }
}).Buffer

const alloc = (size: number): Uint8Array =>
  NodeBuffer !== undefined ? NodeBuffer.allocUnsafe(size) : new Uint8Array(size)

/**
 * Writes a payload in place: `value` from `pos` in `buf`, never at or past `end`; returns where it
 * stopped, or -1 when it needs more room (see `FrameEncoder.writeDataWith`).
 *
 * **Example** (A fill writing msgpack nil)
 * ```ts
 * import type { PayloadFill } from "duplex/FrameCodec"
 * const nil: PayloadFill<null> = (_value, buf, pos, end) => {
 *   if (pos >= end) return -1
 *   buf[pos] = 0xc0
 *   return pos + 1
 * }
 * ```
 * @category encoding
 * @since 0.1.0
 */
export type PayloadFill<A> = (value: A, buf: Uint8Array, pos: number, end: number) => number

/**
 * Incremental strict frame writer. `write` appends frames; `flush` hands out everything written
 * since the previous flush as one chunk (which the caller may keep: the encoder never writes over
 * bytes it has handed out).
 *
 * **Example** (Batching two frames into one write)
 * ```ts
 * import * as Frame from "duplex/Frame"
 * import { FrameEncoder } from "duplex/FrameCodec"
 * const encoder = new FrameEncoder()
 * encoder.write(Frame.open(0, "Arith.Add"))
 * encoder.write(Frame.data(0, new Uint8Array([0x80]), true))
 * const bytes = encoder.flush() // one Uint8Array with both frames
 * ```
 * @category encoding
 * @since 0.1.0
 */
export class FrameEncoder {
  private slab = FIRST_SLAB
  private buf: Uint8Array = alloc(FIRST_SLAB)
  private start = 0
  private pos = 0

  /** Bytes written and not yet flushed. */
  get pending(): number {
    return this.pos - this.start
  }

  /** Appends one frame. */
  write(frame: Frame): void {
    const headers = frame.headers
    // Upper bound: array header 1, type and channel up to 9 each, method/map/error/payload headers
    // up to 5 each, last 1 (= 40), plus at most 3 UTF-8 bytes per UTF-16 unit of each string.
    let size = 40 + frame.method.length * 3 + frame.error.length * 3
    // one walk of the (null-prototype, so dictionary-mode) header map per frame
    const keys = headers === emptyHeaders ? noKeys : Object.keys(headers)
    for (let i = 0; i < keys.length; i++) {
      const k = keys[i]!
      size += 10 + (k.length + headers[k]!.length) * 3
    }
    const payload = frame.payload
    if (payload !== null) size += payload.length
    this.ensure(size)
    const buf = this.buf
    buf[this.pos++] = 0x97
    this.int(frame.type)
    this.int(frame.channel)
    this.str(frame.method)
    this.map(headers, keys)
    this.str(frame.error)
    buf[this.pos++] = frame.last ? 0xc3 : 0xc2
    if (payload === null) buf[this.pos++] = 0xc0
    else {
      this.rawHeader(payload.length)
      buf.set(payload, this.pos)
      this.pos += payload.length
    }
  }

  /**
   * Appends a DATA frame whose payload `fill` writes straight into the encoder's memory (no
   * intermediate buffer): `fill(value, buf, pos, end)` writes `value` from `pos`, never at or past
   * `end`, and returns where it stopped, or -1 when it needs more room (it is then called again
   * with more). Returns the payload's length. Throws what `fill` throws, with nothing appended.
   *
   * **Example** (A payload written in place)
   * ```ts
   * import * as Headers from "duplex/Headers"
   * import { FrameEncoder } from "duplex/FrameCodec"
   * const encoder = new FrameEncoder()
   * encoder.writeDataWith(0, Headers.empty, true, null, (_value, buf, pos) => {
   *   buf[pos] = 0xc0 // msgpack nil
   *   return pos + 1
   * })
   * ```
   */
  writeDataWith<A>(channel: number, headers: Headers.Headers, last: boolean, value: A, fill: PayloadFill<A>): number {
    const keys = headers === emptyHeaders ? noKeys : Object.keys(headers)
    let size = 24
    for (let i = 0; i < keys.length; i++) {
      const k = keys[i]!
      size += 10 + (k.length + headers[k]!.length) * 3
    }
    let room = 256
    for (;;) {
      this.ensure(size + room)
      const frameStart = this.pos
      const buf = this.buf
      buf[this.pos++] = 0x97
      buf[this.pos++] = 1 // FrameType.Data
      this.int(channel)
      buf[this.pos++] = 0xa0
      this.map(headers, keys)
      buf[this.pos++] = 0xa0
      buf[this.pos++] = last ? 0xc3 : 0xc2
      // the payload goes after room for a 3-byte raw header, then moves if its header differs
      const headerAt = this.pos
      const start = headerAt + 3
      let end: number
      try {
        end = fill(value, buf, start, buf.length)
      } catch (e) {
        this.pos = frameStart
        throw e
      }
      if (end < 0 || end + 2 > buf.length) {
        this.pos = frameStart
        room = Math.max(room * 4, buf.length - frameStart)
        continue
      }
      const n = end - start
      if (n < 32) {
        // small payloads (most stream items): a byte loop beats a native copyWithin call
        for (let i = 0; i < n; i++) buf[headerAt + 1 + i] = buf[start + i]!
        buf[headerAt] = 0xa0 | n
        this.pos = headerAt + 1 + n
      } else if (n < 0x10000) {
        buf[headerAt] = 0xda
        buf[headerAt + 1] = n >>> 8
        buf[headerAt + 2] = n & 0xff
        this.pos = end
      } else {
        buf.copyWithin(headerAt + 5, start, end)
        buf[headerAt] = 0xdb
        buf[headerAt + 1] = n >>> 24
        buf[headerAt + 2] = (n >>> 16) & 0xff
        buf[headerAt + 3] = (n >>> 8) & 0xff
        buf[headerAt + 4] = n & 0xff
        this.pos = headerAt + 5 + n
      }
      return n
    }
  }

  /**
   * Returns the bytes written since the last flush, or `undefined` when there are none. The
   * bytes stay valid until `recycle` is called.
   */
  flush(): Uint8Array | undefined {
    if (this.pos === this.start) return undefined
    const out = this.buf.subarray(this.start, this.pos)
    this.start = this.pos
    return out
  }

  /** Slabs left behind by `ensure` whose flushed bytes may still be in use. */
  private retired: Array<Uint8Array> | undefined = undefined
  /** Slabs free for reuse (at most `POOL_SLABS`). */
  private pool: Array<Uint8Array> = []

  /**
   * Declares every flushed byte consumed (e.g. the socket has handed all of it to the kernel):
   * the memory is reused for later frames instead of allocating new slabs. Call it only when
   * no `flush` result is referenced any more; unflushed bytes are kept.
   */
  recycle(): void {
    if (this.start === this.pos) this.start = this.pos = 0
    const retired = this.retired
    if (retired === undefined) return
    for (let i = 0; i < retired.length && this.pool.length < POOL_SLABS; i++) this.pool.push(retired[i]!)
    this.retired = undefined
  }

  private ensure(size: number): void {
    if (this.pos + size <= this.buf.length) return
    const pending = this.pos - this.start
    // grow geometrically: a burst of many frames between flushes must not copy quadratically
    this.slab = Math.min(SLAB_SIZE, this.slab * 2)
    const want = Math.max(this.slab, pending === 0 ? size : 2 * (pending + size))
    const next = this.takePooled(want) ?? alloc(want)
    next.set(this.buf.subarray(this.start, this.pos), 0)
    // The old slab: flushed bytes in it may still be in use until `recycle`; without any, it is free.
    if (this.start > 0) {
      const retired = this.retired ??= []
      if (retired.length < POOL_SLABS) retired.push(this.buf)
    } else if (this.pool.length < POOL_SLABS && this.buf.length >= FIRST_SLAB * 2) this.pool.push(this.buf)
    this.buf = next
    this.start = 0
    this.pos = pending
  }

  private takePooled(size: number): Uint8Array | undefined {
    const pool = this.pool
    for (let i = 0; i < pool.length; i++) {
      const slab = pool[i]!
      if (slab.length >= size && slab.length <= 2 * size) {
        pool[i] = pool[pool.length - 1]!
        pool.pop()
        return slab
      }
    }
    return undefined
  }

  private int(v: number): void {
    this.pos = writeInt(this.buf, this.pos, v)
  }

  private rawHeader(n: number): void {
    const buf = this.buf
    let p = this.pos
    if (n < 32) buf[p++] = 0xa0 | n
    else if (n < 0x10000) {
      buf[p++] = 0xda
      buf[p++] = n >>> 8
      buf[p++] = n & 0xff
    } else {
      buf[p++] = 0xdb
      buf[p++] = n >>> 24
      buf[p++] = (n >>> 16) & 0xff
      buf[p++] = (n >>> 8) & 0xff
      buf[p++] = n & 0xff
    }
    this.pos = p
  }

  private str(s: string): void {
    const n = s.length
    const buf = this.buf
    const end = writeShortAscii(buf, this.pos, s)
    if (end >= 0) {
      this.pos = end
      return
    }
    const bytes = utf8Length(s)
    this.rawHeader(bytes)
    if (bytes === n && n < 64) {
      let p = this.pos
      for (let i = 0; i < n; i++) buf[p++] = s.charCodeAt(i)
      this.pos = p
    } else {
      textEncoder.encodeInto(s, buf.subarray(this.pos, this.pos + bytes))
      this.pos += bytes
    }
  }

  private map(headers: Headers.Headers, keys: ReadonlyArray<string>): void {
    const count = keys.length
    const buf = this.buf
    if (count < 16) buf[this.pos++] = 0x80 | count
    else if (count < 0x10000) {
      buf[this.pos++] = 0xde
      buf[this.pos++] = count >>> 8
      buf[this.pos++] = count & 0xff
    } else {
      buf[this.pos++] = 0xdf
      buf[this.pos++] = count >>> 24
      buf[this.pos++] = (count >>> 16) & 0xff
      buf[this.pos++] = (count >>> 8) & 0xff
      buf[this.pos++] = count & 0xff
    }
    for (let i = 0; i < count; i++) {
      const k = keys[i]!
      this.str(k)
      this.str(headers[k]!)
    }
  }
}

const noKeys: ReadonlyArray<string> = []

/**
 * Encodes one frame into a fresh `Uint8Array` holding exactly its bytes.
 *
 * **Example** (The original's OPEN frame)
 * ```ts
 * import * as Frame from "duplex/Frame"
 * import { encodeFrame } from "duplex/FrameCodec"
 * encodeFrame(Frame.open(0, "Arith.Add")) // 97 00 00 a9 41726974682e416464 80 a0 c2 c0
 * ```
 * @category encoding
 * @since 0.1.0
 */
export const encodeFrame = (frame: Frame): Uint8Array => {
  const encoder = new FrameEncoder()
  encoder.write(frame)
  // A copy into a fresh, exactly-sized buffer: `Buffer#slice` would be a view on the 64 KiB slab.
  return new Uint8Array(encoder.flush()!)
}

// ---------------------------------------------------------------------------------------------
// Decoder
// ---------------------------------------------------------------------------------------------

/** Thrown internally when the buffered bytes end inside a frame; `need` is the byte count wanted. */
class Incomplete {
  need = 0
}
/** Thrown internally on a protocol violation. */
class Invalid {
  reason: ProtocolErrorReason = "MalformedFrame"
  detail = ""
}

const textDecoder = new TextDecoder("utf-8")

/**
 * Incremental tolerant frame reader. Feed it chunks in arrival order; it calls `onFrame` for each
 * complete frame and keeps any partial tail for the next chunk. After a `ProtocolError` it stays
 * failed (the connection must be closed).
 *
 * **Example** (Decoding bytes that arrive in pieces)
 * ```ts
 * import * as Frame from "duplex/Frame"
 * import { encodeFrame, FrameDecoder } from "duplex/FrameCodec"
 * const bytes = encodeFrame(Frame.open(0, "Arith.Add"))
 * const decoder = new FrameDecoder()
 * const frames: Array<Frame.Frame> = []
 * decoder.feed(bytes.subarray(0, 5), (f) => frames.push(f))
 * decoder.feed(bytes.subarray(5), (f) => frames.push(f)) // undefined: no error
 * frames[0]?.method // "Arith.Add"
 * ```
 * @category decoding
 * @since 0.1.0
 */
export class FrameDecoder {
  readonly limits: Limits
  private chunks: Array<Uint8Array> = []
  private buffered = 0
  /**
   * Set by a reader that can read straight into `readTarget()`: a large frame whose end is known
   * is then assembled in one buffer of its exact size, which the socket fills directly.
   */
  assembleLarge = false
  private assembly: Uint8Array | undefined = undefined
  private assembledBytes = 0
  private assemblyTotal = 0
  private readonly scanner = new FrameScanner()
  private failure: ProtocolError | undefined = undefined
  // parse state
  private data: Uint8Array = new Uint8Array(0)
  private pos = 0
  private frameStart = 0
  private readonly incomplete = new Incomplete()
  private readonly invalid = new Invalid()
  private current: Frame | undefined = undefined
  private strBytes = 0

  constructor(limits: Partial<Limits> = {}) {
    this.limits = { ...defaultLimits, ...limits }
  }

  /** Bytes held back because they start a frame that is not complete yet. */
  get pendingBytes(): number {
    return this.buffered + this.assembledBytes
  }

  /** The error this decoder failed with, if any. */
  get error(): ProtocolError | undefined {
    return this.failure
  }

  /**
   * Consumes one chunk, calling `onFrame` for every frame it completes. Returns the
   * `ProtocolError` that ended decoding, or `undefined`. Frames before the bad one are delivered.
   */
  feed(chunk: Uint8Array, onFrame: (frame: Frame) => void): ProtocolError | undefined {
    if (this.failure !== undefined) return this.failure
    if (chunk.length === 0) return undefined
    while (this.assembly !== undefined) {
      const assembly = this.assembly
      const k = Math.min(assembly.length - this.assembledBytes, chunk.length)
      assembly.set(chunk.subarray(0, k), this.assembledBytes)
      const error = this.filled(k, onFrame)
      if (error !== undefined || k === chunk.length) return error
      chunk = chunk.subarray(k)
    }
    const error = this.feedChunk(chunk, onFrame)
    if (error === undefined && this.assembleLarge && this.buffered > 0) this.startAssembly()
    return error
  }

  /**
   * Where the next bytes of the frame being assembled should be read to (see `assembleLarge`),
   * or `undefined` when no frame is being assembled.
   */
  readTarget(): Uint8Array | undefined {
    return this.assembly?.subarray(this.assembledBytes)
  }

  /** `n` bytes were read into `readTarget()`; delivers the frame once it is complete. */
  filled(n: number, onFrame: (frame: Frame) => void): ProtocolError | undefined {
    const assembly = this.assembly
    if (assembly === undefined) return this.failure
    this.assembledBytes += n
    if (this.assembledBytes < this.assemblyTotal) {
      if (this.assembledBytes === assembly.length) {
        // room grows with what arrived, never ahead of it by more than double
        const next = alloc(Math.min(this.assemblyTotal, assembly.length * 2))
        next.set(assembly)
        this.assembly = next
      }
      return undefined
    }
    this.assembly = undefined
    this.assembledBytes = 0
    try {
      const consumed = this.one(assembly)
      if (consumed !== assembly.length) this.raise("MalformedFrame", "frame boundary mismatch")
      const frame = this.current!
      this.current = undefined
      onFrame(frame)
      return undefined
    } catch (e) {
      if (e === this.invalid) return this.fail(this.invalid.reason, this.invalid.detail)
      throw e
    }
  }

  /** The pending frame's end is known and it is large: gather it in one buffer from now on. */
  private startAssembly(): void {
    const remaining = this.scanner.remaining()
    if (remaining < 0) return
    const total = this.buffered + remaining
    if (total < ASSEMBLE_MIN_BYTES || total > this.limits.maxFrameBytes) return
    // Memory follows the bytes that arrived, not the length the remote announced: a remote that
    // announces 16 MiB and stalls holds at most the first buffer.
    const assembly = alloc(Math.min(total, Math.max(ASSEMBLE_FIRST_BYTES, 2 * this.buffered)))
    this.assemblyTotal = total
    let p = 0
    for (const c of this.chunks) {
      assembly.set(c, p)
      p += c.length
    }
    this.assembly = assembly
    this.assembledBytes = p
    this.chunks = []
    this.buffered = 0
  }

  private feedChunk(chunk: Uint8Array, onFrame: (frame: Frame) => void): ProtocolError | undefined {
    try {
      let data = chunk
      if (this.buffered > 0) {
        // A frame is pending: find where it ends by scanning only the new bytes (resumable, so a
        // frame arriving in many small pieces costs linear time), then parse it once.
        const prevLen = this.buffered
        const end = this.scanner.scan(chunk)
        if (end === SCAN_TOO_LARGE) {
          this.chunks.push(chunk)
          this.buffered += chunk.length
          return this.failPending("FrameTooLarge", `frame exceeds ${this.limits.maxFrameBytes} bytes`)
        }
        if (end === SCAN_MORE) {
          this.chunks.push(chunk)
          this.buffered += chunk.length
          return undefined
        }
        this.chunks.push(chunk)
        const take = end === SCAN_GIVE_UP ? chunk.length : end
        const head = concatHead(this.chunks, prevLen, take)
        this.chunks = []
        this.buffered = 0
        const consumed = this.one(head)
        if (consumed < 0) {
          // Only possible after SCAN_GIVE_UP (input the scanner does not follow): keep it all.
          this.chunks = [head]
          this.buffered = head.length
          this.data = emptyBytes
          return undefined
        }
        const frame = this.current!
        this.current = undefined
        if (end !== SCAN_GIVE_UP && consumed !== head.length) {
          this.raise("MalformedFrame", "frame boundary mismatch")
        }
        onFrame(frame)
        data = end === SCAN_GIVE_UP ? head.subarray(consumed) : chunk.subarray(end)
      }
      this.run(data, onFrame)
      return undefined
    } catch (e) {
      if (e === this.invalid) return this.fail(this.invalid.reason, this.invalid.detail)
      throw e
    }
  }

  /** Parses exactly one frame at the start of `data`; its end offset, or -1 when incomplete. */
  private one(data: Uint8Array): number {
    this.data = data
    this.frameStart = 0
    this.pos = 0
    try {
      this.current = this.frame()
    } catch (e) {
      if (e === this.incomplete) return -1
      throw e
    }
    return this.pos
  }

  /** Parses every frame of `data`, keeping a partial tail for the next chunk. */
  private run(data: Uint8Array, onFrame: (frame: Frame) => void): void {
    this.data = data
    let pos = 0
    const length = data.length
    while (pos < length) {
      this.frameStart = pos
      this.pos = pos
      let frame: Frame
      try {
        frame = this.frame()
      } catch (e) {
        if (e === this.incomplete) {
          const rest = data.subarray(pos)
          this.chunks = [rest]
          this.buffered = rest.length
          this.data = emptyBytes
          if (this.scanner.start(rest, this.limits) === SCAN_TOO_LARGE) {
            this.raise("FrameTooLarge", `frame exceeds ${this.limits.maxFrameBytes} bytes`)
          }
          return
        }
        throw e
      }
      onFrame(frame)
      pos = this.pos
    }
    this.data = emptyBytes
  }

  /**
   * Signals the end of input. Returns a `TruncatedFrame` error when a frame was cut off, the
   * earlier failure if there was one, or `undefined` on a clean end.
   */
  finish(): ProtocolError | undefined {
    if (this.failure !== undefined) return this.failure
    if (this.assembly !== undefined) {
      // back to the general path: the bytes so far fail like every other truncated frame
      this.chunks = [this.assembly.subarray(0, this.assembledBytes)]
      this.buffered = this.assembledBytes
      this.assembly = undefined
      this.assembledBytes = 0
    }
    if (this.buffered > 0) {
      return this.failPending("TruncatedFrame", `input ended inside a frame (${this.buffered} bytes pending)`)
    }
    return undefined
  }

  /**
   * Fails for the pending partial frame, reporting the earliest violation in its bytes if there is
   * one (so the error does not depend on how the input was chunked), else `reason`.
   */
  private failPending(reason: ProtocolErrorReason, detail: string): ProtocolError {
    const pending = concatHead(
      this.chunks,
      this.buffered - this.chunks[this.chunks.length - 1]!.length,
      this.chunks[this.chunks.length - 1]!.length
    )
    try {
      this.one(pending)
    } catch (e) {
      if (e === this.invalid) return this.fail(this.invalid.reason, this.invalid.detail)
      throw e
    }
    return this.fail(reason, detail)
  }

  private fail(reason: ProtocolErrorReason, detail: string): ProtocolError {
    this.failure = ProtocolError.fromReason(reason, detail)
    this.chunks = []
    this.buffered = 0
    this.data = emptyBytes
    return this.failure
  }

  private raise(reason: ProtocolErrorReason, detail: string): never {
    this.invalid.reason = reason
    this.invalid.detail = detail
    throw this.invalid
  }

  /** Ensures `n` bytes are available at `pos`, else signals need / frame too large. */
  private avail(n: number): void {
    const end = this.pos + n
    if (end - this.frameStart > this.limits.maxFrameBytes) {
      this.raise("FrameTooLarge", `frame exceeds ${this.limits.maxFrameBytes} bytes`)
    }
    if (end > this.data.length) {
      this.incomplete.need = end
      throw this.incomplete
    }
  }

  private byte(): number {
    this.avail(1)
    return this.data[this.pos++]!
  }

  private be(n: number): number {
    this.avail(n)
    const d = this.data
    let p = this.pos
    let v = 0
    for (let i = 0; i < n; i++) v = v * 256 + d[p++]!
    this.pos = p
    return v
  }

  private frame(): Frame {
    const b = this.byte()
    if (b >= 0x90 && b <= 0x9f) return this.arrayFrame(b & 0x0f)
    if (b === 0xdc) return this.arrayFrame(this.be(2))
    if (b === 0xdd) return this.arrayFrame(this.be(4))
    if (b >= 0x80 && b <= 0x8f) return this.mapFrame(b & 0x0f)
    if (b === 0xde) return this.mapFrame(this.be(2))
    if (b === 0xdf) return this.mapFrame(this.be(4))
    return this.raise("MalformedFrame", `a frame must be a msgpack array or map, got byte 0x${hex(b)}`)
  }

  private arrayFrame(n: number): Frame {
    if (n < 2) this.raise("MalformedFrame", `a frame array needs at least 2 elements, got ${n}`)
    const type = this.int("type")
    const channel = this.int("channel")
    const method = n > 2 ? this.method() : ""
    const headers = n > 3 ? this.headers() : emptyHeaders
    const error = n > 4 ? this.str("error", this.limits.maxFrameBytes) : ""
    const last = n > 5 ? this.bool() : false
    const payload = n > 6 ? this.payload() : null
    for (let i = 7; i < n; i++) this.skip(0)
    this.checkSize()
    return { type, channel, method, headers, error, last, payload }
  }

  private mapFrame(n: number): Frame {
    let type = 0
    let channel = 0
    let method = ""
    let headers = emptyHeaders
    let error = ""
    let last = false
    let payload: Uint8Array | null = null
    for (let i = 0; i < n; i++) {
      const key = this.str("key", this.limits.maxFrameBytes)
      switch (key) {
        case "Type":
          type = this.int("type")
          break
        case "Channel":
          channel = this.int("channel")
          break
        case "Method":
          method = this.method()
          break
        case "Headers":
          headers = this.headers()
          break
        case "Error":
          error = this.str("error", this.limits.maxFrameBytes)
          break
        case "Last":
          last = this.bool()
          break
        case "Payload":
          payload = this.payload()
          break
        default:
          this.skip(0)
      }
    }
    this.checkSize()
    return { type, channel, method, headers, error, last, payload }
  }

  private checkSize(): void {
    if (this.pos - this.frameStart > this.limits.maxFrameBytes) {
      this.raise("FrameTooLarge", `frame exceeds ${this.limits.maxFrameBytes} bytes`)
    }
  }

  private int(field: string): number {
    const b = this.byte()
    if (b < 0x80) return b
    if (b >= 0xe0) return b - 0x100
    switch (b) {
      case 0xc0:
        return 0
      case 0xcc:
        return this.be(1)
      case 0xcd:
        return this.be(2)
      case 0xce:
        return this.be(4)
      case 0xcf: {
        const v = this.be(8)
        if (!Number.isSafeInteger(v) || v > Number.MAX_SAFE_INTEGER) {
          return this.raise("MalformedFrame", `${field} out of range`)
        }
        return v
      }
      case 0xd0: {
        const v = this.be(1)
        return v >= 0x80 ? v - 0x100 : v
      }
      case 0xd1: {
        const v = this.be(2)
        return v >= 0x8000 ? v - 0x10000 : v
      }
      case 0xd2: {
        const v = this.be(4)
        return v >= 0x8000_0000 ? v - 0x1_0000_0000 : v
      }
      case 0xd3: {
        const hi = this.be(4)
        const lo = this.be(4)
        const v = hi >= 0x8000_0000 ? (hi - 0x1_0000_0000) * 0x1_0000_0000 + lo : hi * 0x1_0000_0000 + lo
        if (!Number.isSafeInteger(v)) return this.raise("MalformedFrame", `${field} out of range`)
        return v
      }
    }
    return this.raise("MalformedFrame", `${field} must be an integer, got byte 0x${hex(b)}`)
  }

  private bool(): boolean {
    const b = this.byte()
    if (b === 0xc3) return true
    if (b === 0xc2 || b === 0xc0) return false
    return this.raise("MalformedFrame", `last must be a boolean, got byte 0x${hex(b)}`)
  }

  /** Reads a str/bin header; returns the byte length, or -1 for nil. */
  private rawLength(field: string): number {
    const b = this.byte()
    if (b >= 0xa0 && b <= 0xbf) return b & 0x1f
    switch (b) {
      case 0xc0:
        return -1
      case 0xd9:
      case 0xc4:
        return this.be(1)
      case 0xda:
      case 0xc5:
        return this.be(2)
      case 0xdb:
      case 0xc6:
        return this.be(4)
    }
    return this.raise("MalformedFrame", `${field} must be a string, got byte 0x${hex(b)}`)
  }

  private str(field: string, max: number): string {
    const n = this.rawLength(field)
    this.strBytes = n < 0 ? 0 : n
    if (n <= 0) return ""
    if (n > max) this.tooLong(field, n, max)
    this.avail(n)
    const start = this.pos
    this.pos += n
    return field === "error" ? utf8(this.data, start, n) : cachedUtf8(this.data, start, n)
  }

  private tooLong(field: string, n: number, max: number): never {
    if (field === "method") return this.raise("MethodTooLong", `method of ${n} bytes exceeds ${max}`)
    if (field === "header") return this.raise("HeadersTooLarge", `headers exceed ${max} bytes`)
    return this.raise("FrameTooLarge", `${field} of ${n} bytes exceeds ${max}`)
  }

  private method(): string {
    return this.str("method", this.limits.maxMethodBytes)
  }

  private payload(): Uint8Array | null {
    const n = this.rawLength("payload")
    if (n < 0) return null
    this.avail(n)
    const start = this.pos
    this.pos += n
    return this.data.subarray(start, start + n)
  }

  private headers(): Headers.Headers {
    const b = this.byte()
    let n: number
    if (b >= 0x80 && b <= 0x8f) n = b & 0x0f
    else if (b === 0xde) n = this.be(2)
    else if (b === 0xdf) n = this.be(4)
    else if (b === 0xc0) return emptyHeaders
    else return this.raise("MalformedFrame", `headers must be a map, got byte 0x${hex(b)}`)
    if (n === 0) return emptyHeaders
    const limits = this.limits
    if (n > limits.maxHeaderCount) {
      return this.raise("TooManyHeaders", `${n} headers exceed ${limits.maxHeaderCount}`)
    }
    const out: Record<string, string> = Object.create(null)
    let budget = limits.maxHeaderBytes
    for (let i = 0; i < n; i++) {
      const key = this.str("header", budget)
      budget -= this.strBytes
      const value = this.str("header", budget)
      budget -= this.strBytes
      out[key] = value
    }
    return out
  }

  /** Skips one msgpack value of any kind (extra array slots, unknown map keys). */
  private skip(depth: number): void {
    if (depth > this.limits.maxSkipDepth) {
      this.raise("MalformedFrame", `values nested deeper than ${this.limits.maxSkipDepth}`)
    }
    const b = this.byte()
    if (b < 0x80 || b >= 0xe0) return
    if (b <= 0x8f) return this.skipN(2 * (b & 0x0f), depth)
    if (b <= 0x9f) return this.skipN(b & 0x0f, depth)
    if (b <= 0xbf) return this.skipBytes(b & 0x1f)
    switch (b) {
      case 0xc0:
      case 0xc2:
      case 0xc3:
        return
      case 0xc4:
      case 0xd9:
        return this.skipBytes(this.be(1))
      case 0xc5:
      case 0xda:
        return this.skipBytes(this.be(2))
      case 0xc6:
      case 0xdb:
        return this.skipBytes(this.be(4))
      case 0xc7:
        return this.skipBytes(this.be(1) + 1)
      case 0xc8:
        return this.skipBytes(this.be(2) + 1)
      case 0xc9:
        return this.skipBytes(this.be(4) + 1)
      case 0xca:
        return this.skipBytes(4)
      case 0xcb:
        return this.skipBytes(8)
      case 0xcc:
      case 0xd0:
        return this.skipBytes(1)
      case 0xcd:
      case 0xd1:
        return this.skipBytes(2)
      case 0xce:
      case 0xd2:
        return this.skipBytes(4)
      case 0xcf:
      case 0xd3:
        return this.skipBytes(8)
      case 0xd4:
        return this.skipBytes(2)
      case 0xd5:
        return this.skipBytes(3)
      case 0xd6:
        return this.skipBytes(5)
      case 0xd7:
        return this.skipBytes(9)
      case 0xd8:
        return this.skipBytes(17)
      case 0xdc:
        return this.skipN(this.be(2), depth)
      case 0xdd:
        return this.skipN(this.be(4), depth)
      case 0xde:
        return this.skipN(2 * this.be(2), depth)
      case 0xdf:
        return this.skipN(2 * this.be(4), depth)
    }
    return this.raise("MalformedFrame", `invalid msgpack byte 0x${hex(b)}`)
  }

  private skipN(n: number, depth: number): void {
    for (let i = 0; i < n; i++) this.skip(depth + 1)
  }

  private skipBytes(n: number): void {
    this.avail(n)
    this.pos += n
  }
}

const emptyBytes = new Uint8Array(0)

const SCAN_MORE = -1
const SCAN_GIVE_UP = -2
const SCAN_TOO_LARGE = -3

/**
 * Resumable finder of a frame's end: walks msgpack tokens with a stack of remaining element
 * counts and a count of body bytes to skip, carrying its state across chunks. Used only while a
 * frame is split over chunks, so each byte is looked at once however small the pieces are.
 */
class FrameScanner {
  private stack: Array<number> = []
  private skip = 0
  private readonly header = new Uint8Array(9)
  private headerLength = 0
  private headerNeed = 0
  private scanned = 0
  private maxBytes = 0
  private maxDepth = 0
  private done = false
  private gaveUp = false

  /** Starts on the first bytes of a frame; returns SCAN_MORE, SCAN_TOO_LARGE or SCAN_GIVE_UP. */
  start(bytes: Uint8Array, limits: Limits): number {
    this.stack = [1]
    this.skip = 0
    this.headerLength = 0
    this.headerNeed = 0
    this.scanned = 0
    this.maxBytes = limits.maxFrameBytes
    this.maxDepth = limits.maxSkipDepth + 4
    this.done = false
    this.gaveUp = false
    const r = this.scan(bytes)
    return r >= 0 ? SCAN_GIVE_UP : r
  }

  /** Scans a new chunk: the offset just past the frame's end, or SCAN_MORE / _TOO_LARGE / _GIVE_UP. */
  scan(bytes: Uint8Array): number {
    if (this.gaveUp) return SCAN_GIVE_UP
    const n = bytes.length
    let p = 0
    while (p < n) {
      if (this.skip > 0) {
        const k = Math.min(this.skip, n - p)
        this.skip -= k
        p += k
        if (this.skip === 0 && this.valueDone()) return this.finish(p)
        continue
      }
      const b = bytes[p++]!
      if (this.headerNeed > 0) {
        this.header[this.headerLength++] = b
        if (this.headerLength < this.headerNeed) continue
        const r = this.headerDone()
        if (r !== SCAN_MORE) return r === 0 ? this.finish(p) : r
        continue
      }
      const r = this.token(b)
      if (r !== SCAN_MORE) return r === 0 ? this.finish(p) : r
    }
    this.scanned += n
    return this.scanned > this.maxBytes ? SCAN_TOO_LARGE : SCAN_MORE
  }

  /**
   * Bytes still to come before the frame ends, when that is already known (the frame's last
   * value is being skipped: its payload, as a rule); -1 otherwise.
   */
  remaining(): number {
    if (this.done || this.gaveUp || this.skip === 0 || this.headerNeed > 0) return -1
    const stack = this.stack
    for (let i = 0; i < stack.length; i++) if (stack[i] !== 1) return -1
    return this.skip
  }

  private finish(p: number): number {
    if (this.scanned + p > this.maxBytes) return SCAN_TOO_LARGE
    this.done = true
    return p
  }

  /** Marks one value complete; true when the whole frame is. */
  private valueDone(): boolean {
    const stack = this.stack
    while (stack.length > 0) {
      const top = stack.length - 1
      stack[top]!--
      if (stack[top]! > 0) return false
      stack.pop()
    }
    return true
  }

  private container(count: number): number {
    if (count === 0) return this.valueDone() ? 0 : SCAN_MORE
    if (this.stack.length >= this.maxDepth) {
      this.gaveUp = true
      return SCAN_GIVE_UP
    }
    this.stack.push(count)
    return SCAN_MORE
  }

  private body(length: number): number {
    if (length === 0) return this.valueDone() ? 0 : SCAN_MORE
    if (length > this.maxBytes) return SCAN_TOO_LARGE
    this.skip = length
    return SCAN_MORE
  }

  private expectHeader(first: number, extra: number): number {
    this.header[0] = first
    this.headerLength = 1
    this.headerNeed = 1 + extra
    return SCAN_MORE
  }

  /** First byte of a token; returns 0 when the frame ended, else SCAN_* */
  private token(b: number): number {
    if (b < 0x80 || b >= 0xe0 || b === 0xc0 || b === 0xc2 || b === 0xc3) return this.valueDone() ? 0 : SCAN_MORE
    if (b <= 0x8f) return this.container(2 * (b & 0x0f))
    if (b <= 0x9f) return this.container(b & 0x0f)
    if (b <= 0xbf) return this.body(b & 0x1f)
    switch (b) {
      case 0xc4:
      case 0xd9:
      case 0xc7:
        return this.expectHeader(b, 1)
      case 0xc5:
      case 0xda:
      case 0xdc:
      case 0xde:
      case 0xc8:
        return this.expectHeader(b, 2)
      case 0xc6:
      case 0xdb:
      case 0xdd:
      case 0xdf:
      case 0xc9:
        return this.expectHeader(b, 4)
      case 0xca:
      case 0xce:
      case 0xd2:
        return this.body(4)
      case 0xcb:
      case 0xcf:
      case 0xd3:
        return this.body(8)
      case 0xcc:
      case 0xd0:
        return this.body(1)
      case 0xcd:
      case 0xd1:
        return this.body(2)
      case 0xd4:
        return this.body(2)
      case 0xd5:
        return this.body(3)
      case 0xd6:
        return this.body(5)
      case 0xd7:
        return this.body(9)
      case 0xd8:
        return this.body(17)
    }
    this.gaveUp = true
    return SCAN_GIVE_UP
  }

  private headerDone(): number {
    const h = this.header
    const first = h[0]!
    this.headerNeed = 0
    let v = 0
    for (let i = 1; i < this.headerLength; i++) v = v * 256 + h[i]!
    switch (first) {
      case 0xc7:
      case 0xc8:
      case 0xc9:
        return this.body(v + 1) // the ext type byte, then the data
      case 0xdc:
      case 0xdd:
        return this.container(v)
      case 0xde:
      case 0xdf:
        return this.container(2 * v)
    }
    return this.body(v)
  }
}

const hex = (b: number): string => b.toString(16).padStart(2, "0")

/** Copies all chunks but the last, then the first `take` bytes of the last, into one buffer. */
const concatHead = (chunks: ReadonlyArray<Uint8Array>, prevLen: number, take: number): Uint8Array => {
  const out = alloc(prevLen + take)
  let p = 0
  const lastIndex = chunks.length - 1
  for (let i = 0; i < lastIndex; i++) {
    const c = chunks[i]!
    out.set(c, p)
    p += c.length
  }
  out.set(chunks[lastIndex]!.subarray(0, take), p)
  return out
}

// A small direct-mapped cache of short strings (method names, header keys and values repeat on
// every call): a hit costs a hash and a byte compare instead of building a new string.
const CACHE_SLOTS = 512
const cacheBytes: Array<Uint8Array | undefined> = new Array(CACHE_SLOTS)
const cacheStrings: Array<string> = new Array(CACHE_SLOTS)

const cachedUtf8 = (d: Uint8Array, start: number, n: number): string => {
  if (n > 32) return utf8(d, start, n)
  let h = 0x811c9dc5 ^ n
  for (let i = start, end = start + n; i < end; i++) h = Math.imul(h ^ d[i]!, 0x01000193)
  const slot = (h >>> 0) & (CACHE_SLOTS - 1)
  const cached = cacheBytes[slot]
  if (cached !== undefined && cached.length === n) {
    let same = true
    for (let i = 0; i < n; i++) {
      if (cached[i] !== d[start + i]) {
        same = false
        break
      }
    }
    if (same) return cacheStrings[slot]!
  }
  const s = utf8(d, start, n)
  cacheBytes[slot] = new Uint8Array(d.subarray(start, start + n)) // a copy: never retain the chunk
  cacheStrings[slot] = s
  return s
}

const utf8 = (d: Uint8Array, start: number, n: number): string => {
  if (n <= 24) {
    let s = ""
    for (let i = start, end = start + n; i < end; i++) {
      const c = d[i]!
      if (c >= 0x80) return textDecoder.decode(d.subarray(start, start + n))
      s += String.fromCharCode(c)
    }
    return s
  }
  return textDecoder.decode(d.subarray(start, start + n))
}

/**
 * Decodes a complete byte string into frames. A partial frame at the end is a `TruncatedFrame`
 * error.
 *
 * **Example** (Decoding a captured exchange)
 * ```ts
 * import { Result } from "effect"
 * import { decodeFrames } from "duplex/FrameCodec"
 * const result = decodeFrames(new Uint8Array([0x97, 0x01, 0x00, 0xa0, 0x80, 0xa0, 0xc3, 0xc0]))
 * Result.isSuccess(result) // true: one end marker on channel 0
 * ```
 * @category decoding
 * @since 0.1.0
 */
export const decodeFrames = (
  bytes: Uint8Array,
  limits: Partial<Limits> = {}
): Result.Result<Array<Frame>, ProtocolError> => {
  const decoder = new FrameDecoder(limits)
  const frames: Array<Frame> = []
  const error = decoder.feed(bytes, (f) => frames.push(f)) ?? decoder.finish()
  return error === undefined ? Result.succeed(frames) : Result.fail(error)
}
