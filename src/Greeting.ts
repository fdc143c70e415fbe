/**
 * The greeting: each side's peer id, a UUID as 36 ASCII characters with no terminator. The
 * connector speaks first; the binder validates it and answers. Unlike the original (which needs the
 * 36 bytes in one read), `GreetingReader` accumulates any split; bytes after the 36th belong to the
 * frame stream.
 *
 * @since 0.1.0
 */
import * as Result from "effect/Result"
import { ProtocolError } from "./DuplexError.ts"
import { GREETING_LENGTH } from "./Protocol.ts"

const UUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/

/**
 * A new random (version 4) peer id, lowercase.
 *
 * **Example** (A fresh id)
 * ```ts
 * import * as Greeting from "duplex/Greeting"
 * const id = Greeting.makeId() // e.g. "5c99675b-a2da-42f4-8bb2-7d365c2f5723"
 * ```
 * @category constructors
 * @since 0.1.0
 */
export const makeId = (): string => globalThis.crypto.randomUUID()

/**
 * Validates a peer id (8-4-4-4-12 hex digits, either case) and returns it lowercased.
 *
 * **Example** (Normalising)
 * ```ts
 * import * as Greeting from "duplex/Greeting"
 * Greeting.parseId("5C99675B-A2DA-42F4-8BB2-7D365C2F5723") // Result.succeed("5c99675b-…")
 * ```
 * @category parsing
 * @since 0.1.0
 */
export const parseId = (text: string): Result.Result<string, ProtocolError> =>
  UUID.test(text)
    ? Result.succeed(text.toLowerCase())
    : Result.fail(ProtocolError.fromReason("BadGreeting", `not a UUID: ${JSON.stringify(text.slice(0, 64))}`))

/**
 * The 36 greeting bytes for a peer id.
 *
 * **Example** (Encoding)
 * ```ts
 * import * as Greeting from "duplex/Greeting"
 * Greeting.encode("5c99675b-a2da-42f4-8bb2-7d365c2f5723").length // 36
 * ```
 * @category encoding
 * @since 0.1.0
 */
export const encode = (id: string): Uint8Array => {
  const out = new Uint8Array(GREETING_LENGTH)
  for (let i = 0; i < GREETING_LENGTH; i++) out[i] = id.charCodeAt(i) & 0x7f
  return out
}

/**
 * Result of feeding a `GreetingReader`: still waiting, or the remote id plus the bytes that
 * followed the greeting in the same chunk(s).
 *
 * @category models
 * @since 0.1.0
 */
export type ReadResult =
  | { readonly _tag: "Pending" }
  | { readonly _tag: "Done"; readonly id: string; readonly rest: Uint8Array }

const pending: ReadResult = { _tag: "Pending" }

/** Bytes to text one to one (a valid greeting is ASCII; anything else fails the UUID check). */
const latin1 = new TextDecoder("latin1")

/**
 * Accumulates greeting bytes across any number of chunks.
 *
 * **Example** (A greeting split in two)
 * ```ts
 * import * as Greeting from "duplex/Greeting"
 * const bytes = Greeting.encode(Greeting.makeId())
 * const reader = new Greeting.GreetingReader()
 * reader.feed(bytes.subarray(0, 10)) // Result.succeed({ _tag: "Pending" })
 * reader.feed(bytes.subarray(10)) // Result.succeed({ _tag: "Done", id, rest })
 * ```
 * @category decoding
 * @since 0.1.0
 */
export class GreetingReader {
  private readonly buf = new Uint8Array(GREETING_LENGTH)
  private filled = 0

  /** Consumes a chunk; fails with `BadGreeting` once 36 bytes are in and they are not a UUID. */
  feed(chunk: Uint8Array): Result.Result<ReadResult, ProtocolError> {
    const take = Math.min(GREETING_LENGTH - this.filled, chunk.length)
    this.buf.set(chunk.subarray(0, take), this.filled)
    this.filled += take
    if (this.filled < GREETING_LENGTH) return Result.succeed(pending)
    // one flat string, one native call (a `+=` loop builds 36 rope pieces, a spread iterates)
    const text = latin1.decode(this.buf)
    return Result.map(parseId(text), (id) => ({ _tag: "Done", id, rest: chunk.subarray(take) }))
  }
}
