/**
 * Compiled Schema work for one procedure: payload, success and error parsers built once per codec
 * representation ("binary" codecs see `Schema.encode` output as is; "json" codecs see the output of
 * `Schema.toCodecJson`). Every function returns a small Either and never throws.
 *
 * @internal
 */
import * as Arr from "effect/Array"
import * as Cause from "effect/Cause"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as SchemaJITCompiler from "effect/schema/SchemaJITCompiler"
import * as SchemaAST from "effect/SchemaAST"
import type * as Codec from "../Codec.ts"
import type * as Rpc from "../Rpc.ts"

export type Either<A> = { readonly _tag: "Left"; readonly error: string } | {
  readonly _tag: "Right"
  readonly value: A
}

const left = (error: string): Either<never> => ({ _tag: "Left", error })
const right = <A>(value: A): Either<A> => ({ _tag: "Right", value })

interface Parsers {
  readonly decode: (u: unknown) => Exit.Exit<unknown, Schema.SchemaError>
  readonly encode: (u: unknown) => Exit.Exit<unknown, Schema.SchemaError>
}

const parsers = (schema: Schema.Top, representation: Codec.Codec["representation"]): Parsers => {
  // `Schema.Top` carries `unknown` services; procedures are declared without services, which the
  // Rpc constructors guarantee, so the parsers need none.
  const codec = (representation === "json" ? Schema.toCodecJson(schema) : schema) as Schema.Codec<unknown, unknown>
  // Compile the parsers to JavaScript once (falls back to the interpreter where `new Function` is
  // blocked): Schema work runs on every call on both sides.
  SchemaJITCompiler.enable(codec.ast)
  SchemaJITCompiler.enable(SchemaAST.flip(codec.ast))
  return { decode: Schema.decodeUnknownExit(codec), encode: Schema.encodeUnknownExit(codec) }
}

const describe = (exit: Exit.Exit<unknown, Schema.SchemaError>): string => {
  if (Exit.isSuccess(exit)) return ""
  const error = Cause.findErrorOption(exit.cause)
  return Option.isSome(error) ? error.value.message : Cause.pretty(exit.cause)
}

/** @internal */
export interface Compiled {
  readonly decodePayload: (codec: Codec.Codec, bytes: Uint8Array) => Either<unknown>
  readonly encodePayload: (codec: Codec.Codec, value: unknown) => Either<Uint8Array>
  readonly decodeSuccess: (codec: Codec.Codec, bytes: Uint8Array) => Either<unknown>
  readonly encodeSuccess: (codec: Codec.Codec, value: unknown) => Either<Uint8Array>
  /** Like `encodeSuccess`, into the codec's reused buffer: copy it (push the frame) at once. */
  readonly encodeSuccessShared: (codec: Codec.Codec, value: unknown) => Either<Uint8Array>
  /** Schema encoding of a success value only (for codecs with `encodeInto`). */
  readonly encodeSuccessValue: (codec: Codec.Codec, value: unknown) => Either<unknown>
  readonly decodeError: (codec: Codec.Codec, bytes: Uint8Array) => Either<unknown>
  readonly encodeError: (codec: Codec.Codec, value: unknown) => Either<Uint8Array>
}

const firstError = (exit: Exit.Exit<unknown, Schema.SchemaError>): string => {
  if (Exit.isSuccess(exit)) return ""
  const text = describe(exit)
  return text.length > 500 ? `${text.slice(0, 500)}…` : text
}

const side = (schema: Schema.Top) => {
  let binary: Parsers | undefined
  let json: Parsers | undefined
  const get = (codec: Codec.Codec): Parsers =>
    codec.representation === "json" ? (json ??= parsers(schema, "json")) : (binary ??= parsers(schema, "binary"))
  const decode = (codec: Codec.Codec, bytes: Uint8Array): Either<unknown> => {
    let raw: unknown
    try {
      raw = codec.decode(bytes)
    } catch (e) {
      return left(`not valid ${codec.name}: ${e instanceof Error ? e.message : String(e)}`)
    }
    const exit = get(codec).decode(raw)
    return Exit.isSuccess(exit) ? right(exit.value) : left(firstError(exit))
  }
  /** Schema work only: the value in the codec's representation, for `Codec.encodeInto`. */
  const encodeValue = (codec: Codec.Codec, value: unknown): Either<unknown> => {
    const exit = get(codec).encode(value)
    return Exit.isSuccess(exit) ? right(exit.value) : left(firstError(exit))
  }
  const encodeWith = (shared: boolean) => (codec: Codec.Codec, value: unknown): Either<Uint8Array> => {
    const exit = get(codec).encode(value)
    if (Exit.isFailure(exit)) return left(firstError(exit))
    try {
      const f = shared && codec.encodeShared !== undefined ? codec.encodeShared : codec.encode
      return right(f(exit.value))
    } catch (e) {
      return left(`cannot encode with ${codec.name}: ${e instanceof Error ? e.message : String(e)}`)
    }
  }
  return { decode, encode: encodeWith(false), encodeShared: encodeWith(true), encodeValue }
}

/** Compiled parsers per procedure: every client and server of the same group shares them. */
const compiled = new WeakMap<Rpc.Any, Compiled>()

/** @internal */
export const compile = (rpc: Rpc.Any): Compiled => {
  let out = compiled.get(rpc)
  if (out === undefined) {
    out = compileNew(rpc)
    compiled.set(rpc, out)
  }
  return out
}

const compileNew = (rpc: Rpc.Any): Compiled => {
  const payload = side(rpc.payloadSchema)
  const success = side(rpc.successSchema)
  const error = side(rpc.errorSchema)
  return {
    decodePayload: payload.decode,
    encodePayload: payload.encode,
    decodeSuccess: success.decode,
    encodeSuccess: success.encode,
    encodeSuccessShared: success.encodeShared,
    encodeSuccessValue: success.encodeValue,
    decodeError: error.decode,
    encodeError: error.encode
  }
}

/**
 * Decodes a batch of payloads; the first failure wins. Used to map whole stream chunks at once.
 *
 * @internal
 */
export const decodeBatch = (
  decode: (codec: Codec.Codec, bytes: Uint8Array) => Either<unknown>,
  codec: Codec.Codec,
  batch: Arr.NonEmptyReadonlyArray<Uint8Array>
): Either<Arr.NonEmptyReadonlyArray<unknown>> => {
  const out: Array<unknown> = new Array(batch.length)
  for (let i = 0; i < batch.length; i++) {
    const decoded = decode(codec, batch[i]!)
    if (decoded._tag === "Left") return decoded
    out[i] = decoded.value
  }
  return Arr.isArrayNonEmpty(out) ? right(out) : left("empty batch")
}
