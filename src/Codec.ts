/**
 * Payload codecs: values ⇄ payload bytes. A peer holds several at once; each channel names its
 * codec in the `duplex-codec` header, and a channel without it uses msgpack (what the original
 * sends). Built in: `msgpack` (default, `@msgpack/msgpack`) and `json`. Add your own (CBOR,
 * protobuf, …) with `layer`.
 *
 * A codec declares its `representation`: `"binary"` codecs receive the output of
 * `Schema.encode` as is (a `Uint8Array` stays bytes), `"json"` codecs receive JSON-safe values
 * (from `Schema.toCodecJson`, so bytes become base64 text and so on).
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Layer from "effect/Layer"
import { decode as msgpackDecode, MsgpackEncoder } from "./internal/msgpack.ts"

/**
 * The header naming a channel's codec (absent: `msgpack`).
 *
 * **Example** (Asking for JSON on a channel)
 * ```ts
 * import * as Codec from "duplex/Codec"
 * const headers = { [Codec.CODEC_HEADER]: "json" }
 * ```
 * @category constants
 * @since 0.1.0
 */
export const CODEC_HEADER = "duplex-codec"

/**
 * A payload codec. `decode` may throw on malformed bytes; callers turn that into a typed error.
 *
 * **Example** (A UTF-8 text codec)
 * ```ts
 * import type { Codec } from "duplex/Codec"
 * const text: Codec = {
 *   name: "text",
 *   representation: "json",
 *   encode: (value) => new TextEncoder().encode(String(value)),
 *   decode: (bytes) => new TextDecoder().decode(bytes)
 * }
 * ```
 * @category models
 * @since 0.1.0
 */
export interface Codec {
  readonly name: string
  readonly representation: "binary" | "json"
  readonly encode: (value: unknown) => Uint8Array
  readonly decode: (bytes: Uint8Array) => unknown
  /**
   * Optional: encodes into a buffer the codec reuses, valid only until its next call. Duplex uses
   * it where the bytes are copied into a frame at once (saves one copy per message).
   */
  readonly encodeShared?: ((value: unknown) => Uint8Array) | undefined
  /**
   * Optional: encodes `value` into `target` from `pos`, never at or past `end`; returns where it
   * stopped, or -1 when it did not fit in that room (it may say so a few bytes early; Duplex then
   * calls it again with more). Duplex uses it to write stream items straight into the frame being
   * built, without an intermediate buffer.
   */
  readonly encodeInto?: ((value: unknown, target: Uint8Array, pos: number, end: number) => number) | undefined
}

const msgpackEncoder = new MsgpackEncoder()

/**
 * msgpack: the same bytes and values as `@msgpack/msgpack` with default options, through a
 * faster path for plain data (objects, arrays, strings, numbers, booleans, null, bytes) that
 * hands the rest (`Date` and other extension types, class instances) to `@msgpack/msgpack`
 * itself. Binary values decode as views into the payload, not copies. Strings written by the
 * original in the old raw family decode as strings.
 *
 * **Example** (Encoding)
 * ```ts
 * import { msgpack } from "duplex/Codec"
 * msgpack.encode({ A: 7, B: 8 }) // 82 a1 41 07 a1 42 08
 * ```
 * @category codecs
 * @since 0.1.0
 */
export const msgpack: Codec = {
  name: "msgpack",
  representation: "binary",
  encode: (value) => msgpackEncoder.encode(value),
  decode: msgpackDecode,
  encodeShared: (value) => msgpackEncoder.encodeShared(value),
  encodeInto: (value, target, pos, end) => msgpackEncoder.encodeInto(value, target, pos, end)
}

const textEncoder = new TextEncoder()
const textDecoder = new TextDecoder("utf-8", { fatal: true })

/**
 * JSON as UTF-8 text.
 *
 * **Example** (Encoding)
 * ```ts
 * import { json } from "duplex/Codec"
 * json.encode({ a: 1 }) // the bytes of {"a":1}
 * ```
 * @category codecs
 * @since 0.1.0
 */
export const json: Codec = {
  name: "json",
  representation: "json",
  encode: (value) => textEncoder.encode(JSON.stringify(value)),
  decode: (bytes) => JSON.parse(textDecoder.decode(bytes))
}

/**
 * The codecs a peer's RPC layer knows, by name.
 *
 * @category models
 * @since 0.1.0
 */
export interface Registry {
  readonly get: (name: string) => Codec | undefined
  readonly names: ReadonlyArray<string>
}

/**
 * Builds a registry; later codecs replace earlier ones of the same name.
 *
 * **Example** (msgpack and JSON)
 * ```ts
 * import * as Codec from "duplex/Codec"
 * const registry = Codec.registry([Codec.msgpack, Codec.json])
 * registry.get("json")?.name // "json"
 * ```
 * @category constructors
 * @since 0.1.0
 */
export const registry = (codecs: ReadonlyArray<Codec>): Registry => {
  const map = new Map<string, Codec>()
  for (const codec of codecs) map.set(codec.name, codec)
  return { get: (name) => map.get(name), names: Array.from(map.keys()) }
}

/**
 * The codecs in use (a `Context.Reference`: msgpack and JSON unless a layer says otherwise).
 *
 * **Example** (Listing the codecs in use)
 * ```ts
 * import { Effect } from "effect"
 * import * as Codec from "duplex/Codec"
 * const names = Effect.map(Effect.service(Codec.Codecs), (registry) => registry.names)
 * ```
 * @category services
 * @since 0.1.0
 */
export const Codecs: Context.Reference<Registry> = Context.Reference<Registry>("duplex/Codecs", {
  defaultValue: () => registry([msgpack, json])
})

/**
 * A layer adding codecs to msgpack and JSON.
 *
 * **Example** (Registering a custom codec)
 * ```ts
 * import { Effect } from "effect"
 * import * as Codec from "duplex/Codec"
 * declare const cbor: Codec.Codec
 * const program = Effect.void.pipe(Effect.provide(Codec.layer(cbor)))
 * ```
 * @category layers
 * @since 0.1.0
 */
export const layer = (...codecs: ReadonlyArray<Codec>): Layer.Layer<never> =>
  Layer.succeed(Codecs, registry([msgpack, json, ...codecs]))
