/**
 * Byte-level helpers shared by the frame codec and the msgpack path.
 *
 * @internal
 */

/** UTF-8 length of `s` as TextEncoder writes it (a lone surrogate becomes U+FFFD, 3 bytes). */
export const utf8Length = (s: string): number => {
  let n = 0
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c < 0x80) n += 1
    else if (c < 0x800) n += 2
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1)
      if (d >= 0xdc00 && d <= 0xdfff) {
        n += 4
        i++
      } else n += 3
    } else n += 3
  }
  return n
}

/**
 * Writes a safe integer at `p` in its smallest msgpack form (positive/negative fixint, uint8–64,
 * int8–64), as `@msgpack/msgpack` and the original do; returns the position after it. The caller
 * ensures 9 bytes of room.
 */
export const writeInt = (buf: Uint8Array, p: number, v: number): number => {
  if (v >= 0) {
    if (v < 0x80) buf[p++] = v
    else if (v < 0x100) {
      buf[p++] = 0xcc
      buf[p++] = v
    } else if (v < 0x10000) {
      buf[p++] = 0xcd
      buf[p++] = v >>> 8
      buf[p++] = v & 0xff
    } else if (v < 0x1_0000_0000) {
      buf[p++] = 0xce
      buf[p++] = v >>> 24
      buf[p++] = (v >>> 16) & 0xff
      buf[p++] = (v >>> 8) & 0xff
      buf[p++] = v & 0xff
    } else {
      buf[p] = 0xcf
      p = write64(buf, p + 1, v)
    }
    return p
  }
  if (v >= -32) buf[p++] = v & 0xff
  else if (v >= -128) {
    buf[p++] = 0xd0
    buf[p++] = v & 0xff
  } else if (v >= -32768) {
    buf[p++] = 0xd1
    buf[p++] = (v >> 8) & 0xff
    buf[p++] = v & 0xff
  } else if (v >= -2147483648) {
    buf[p++] = 0xd2
    buf[p++] = (v >> 24) & 0xff
    buf[p++] = (v >> 16) & 0xff
    buf[p++] = (v >> 8) & 0xff
    buf[p++] = v & 0xff
  } else {
    buf[p] = 0xd3
    p = write64(buf, p + 1, v)
  }
  return p
}

/** Writes a safe integer as 8 big-endian two's-complement bytes at `p`; returns `p + 8`. */
const write64 = (buf: Uint8Array, p: number, v: number): number => {
  const hi = Math.floor(v / 0x1_0000_0000)
  const lo = (v - hi * 0x1_0000_0000) >>> 0
  buf[p] = (hi >>> 24) & 0xff
  buf[p + 1] = (hi >>> 16) & 0xff
  buf[p + 2] = (hi >>> 8) & 0xff
  buf[p + 3] = hi & 0xff
  buf[p + 4] = lo >>> 24
  buf[p + 5] = (lo >>> 16) & 0xff
  buf[p + 6] = (lo >>> 8) & 0xff
  buf[p + 7] = lo & 0xff
  return p + 8
}

/**
 * Writes `s` at `p` as a msgpack fixstr when it is ASCII and shorter than 32 characters (one
 * byte per character); returns the position after it, or -1 (nothing committed) otherwise. The
 * caller ensures `s.length + 1` bytes of room.
 */
export const writeShortAscii = (buf: Uint8Array, p: number, s: string): number => {
  const n = s.length
  if (n >= 32) return -1
  let q = p + 1
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i)
    if (c >= 0x80) return -1
    buf[q++] = c
  }
  buf[p] = 0xa0 | n
  return q
}
