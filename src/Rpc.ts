/**
 * One remote procedure: a name, a kind and three Schemas.
 *
 * | kind       | caller sends            | callee replies              | handler                                  |
 * | ---------- | ----------------------- | --------------------------- | ---------------------------------------- |
 * | `unary`    | one payload             | one success or error        | `(payload, call) => Effect`              |
 * | `server`   | one payload             | a stream of successes       | `(payload, call) => Stream`              |
 * | `client`   | a stream of payloads    | one success or error        | `(payloads: Stream, call) => Effect`     |
 * | `bidi`     | a stream of payloads    | a stream of successes       | `(payloads: Stream, call) => Stream`     |
 *
 * Only describes: a contract module imports no sockets.
 *
 * @since 0.1.0
 */
import * as Predicate from "effect/Predicate"
import * as Schema from "effect/Schema"

/**
 * **Example** (Reading the type id)
 * ```ts
 * import * as Rpc from "duplex/Rpc"
 * Rpc.unary("Ping")[Rpc.TypeId] // "~duplex/Rpc"
 * ```
 * @category type ids
 * @since 0.1.0
 */
export const TypeId = "~duplex/Rpc"

/**
 * The four call kinds.
 *
 * @category models
 * @since 0.1.0
 */
export type Kind = "unary" | "server" | "client" | "bidi"

/**
 * A procedure's contract.
 *
 * @category models
 * @since 0.1.0
 */
export interface Rpc<
  out Tag extends string,
  out K extends Kind,
  out Payload extends Schema.Top,
  out Success extends Schema.Top,
  out Error extends Schema.Top
> {
  readonly [TypeId]: typeof TypeId
  /** The procedure's name within its group (the wire method is the group prefix + this). */
  readonly _tag: Tag
  readonly kind: K
  readonly payloadSchema: Payload
  readonly successSchema: Success
  readonly errorSchema: Error
}

/**
 * Any procedure.
 *
 * @category models
 * @since 0.1.0
 */
export interface Any extends Rpc<string, Kind, Schema.Top, Schema.Top, Schema.Top> {}

/**
 * Schema or struct fields, as accepted for `payload`.
 *
 * @category models
 * @since 0.1.0
 */
export type PayloadInput = Schema.Top | Schema.Struct.Fields

/**
 * The Schema a `PayloadInput` stands for.
 *
 * @category models
 * @since 0.1.0
 */
export type PayloadSchema<P extends PayloadInput> = P extends Schema.Struct.Fields ? Schema.Struct<P>
  : P extends Schema.Top ? P
  : never

const toSchema = (input: PayloadInput | undefined): Schema.Top =>
  input === undefined ? Schema.Void : Schema.isSchema(input) ? input : Schema.Struct(input)

/**
 * Builds a procedure of any kind.
 *
 * **Example** (The original's Arith.Add)
 * ```ts
 * import { Schema } from "effect"
 * import * as Rpc from "duplex/Rpc"
 * const Add = Rpc.make("Add", {
 *   kind: "unary",
 *   payload: { A: Schema.Int, B: Schema.Int },
 *   success: Schema.Struct({ C: Schema.Int })
 * })
 * ```
 * @category constructors
 * @since 0.1.0
 */
export const make = <
  const Tag extends string,
  const K extends Kind = "unary",
  P extends PayloadInput = typeof Schema.Void,
  S extends Schema.Top = typeof Schema.Void,
  E extends Schema.Top = typeof Schema.Never
>(tag: Tag, options: {
  readonly kind?: K | undefined
  readonly payload?: P | undefined
  readonly success?: S | undefined
  readonly error?: E | undefined
} = {}): Rpc<Tag, K, PayloadSchema<P>, S, E> => {
  const rpc = {
    [TypeId]: TypeId,
    _tag: tag,
    kind: options.kind ?? "unary",
    payloadSchema: toSchema(options.payload),
    successSchema: options.success ?? Schema.Void,
    errorSchema: options.error ?? Schema.Never
  }
  // The one unchecked step: the runtime values above are exactly the declared schemas.
  return rpc as unknown as Rpc<Tag, K, PayloadSchema<P>, S, E>
}

/**
 * A unary procedure: one payload in, one success (or error) out.
 *
 * **Example** (Division with a typed error)
 * ```ts
 * import { Schema } from "effect"
 * import * as Rpc from "duplex/Rpc"
 * class DivByZero extends Schema.TaggedError<DivByZero>()("DivByZero", {}) {}
 * const Div = Rpc.unary("Div", { payload: { A: Schema.Int, B: Schema.Int }, success: Schema.Number, error: DivByZero })
 * ```
 * @category constructors
 * @since 0.1.0
 */
export const unary = <
  const Tag extends string,
  P extends PayloadInput = typeof Schema.Void,
  S extends Schema.Top = typeof Schema.Void,
  E extends Schema.Top = typeof Schema.Never
>(tag: Tag, options: {
  readonly payload?: P | undefined
  readonly success?: S | undefined
  readonly error?: E | undefined
} = {}): Rpc<Tag, "unary", PayloadSchema<P>, S, E> => make(tag, { ...options, kind: "unary" })

/**
 * A server-streaming procedure: one payload in, a stream of successes out.
 *
 * **Example** (Counting)
 * ```ts
 * import { Schema } from "effect"
 * import * as Rpc from "duplex/Rpc"
 * const Count = Rpc.serverStream("Count", { payload: { A: Schema.Int }, success: Schema.Struct({ C: Schema.Int }) })
 * ```
 * @category constructors
 * @since 0.1.0
 */
export const serverStream = <
  const Tag extends string,
  P extends PayloadInput = typeof Schema.Void,
  S extends Schema.Top = typeof Schema.Void,
  E extends Schema.Top = typeof Schema.Never
>(tag: Tag, options: {
  readonly payload?: P | undefined
  readonly success?: S | undefined
  readonly error?: E | undefined
} = {}): Rpc<Tag, "server", PayloadSchema<P>, S, E> => make(tag, { ...options, kind: "server" })

/**
 * A client-streaming procedure: a stream of payloads in, one success out.
 *
 * **Example** (Summing)
 * ```ts
 * import { Schema } from "effect"
 * import * as Rpc from "duplex/Rpc"
 * const Sum = Rpc.clientStream("Sum", { payload: { A: Schema.Int }, success: Schema.Struct({ C: Schema.Int }) })
 * ```
 * @category constructors
 * @since 0.1.0
 */
export const clientStream = <
  const Tag extends string,
  P extends PayloadInput = typeof Schema.Void,
  S extends Schema.Top = typeof Schema.Void,
  E extends Schema.Top = typeof Schema.Never
>(tag: Tag, options: {
  readonly payload?: P | undefined
  readonly success?: S | undefined
  readonly error?: E | undefined
} = {}): Rpc<Tag, "client", PayloadSchema<P>, S, E> => make(tag, { ...options, kind: "client" })

/**
 * A bidirectional procedure: a stream in, a stream out.
 *
 * **Example** (Echo)
 * ```ts
 * import { Schema } from "effect"
 * import * as Rpc from "duplex/Rpc"
 * const Echo = Rpc.bidi("Echo", { payload: Schema.String, success: Schema.String })
 * ```
 * @category constructors
 * @since 0.1.0
 */
export const bidi = <
  const Tag extends string,
  P extends PayloadInput = typeof Schema.Void,
  S extends Schema.Top = typeof Schema.Void,
  E extends Schema.Top = typeof Schema.Never
>(tag: Tag, options: {
  readonly payload?: P | undefined
  readonly success?: S | undefined
  readonly error?: E | undefined
} = {}): Rpc<Tag, "bidi", PayloadSchema<P>, S, E> => make(tag, { ...options, kind: "bidi" })

/**
 * Checks whether a value is a Duplex `Rpc`.
 *
 * **Example** (Guard)
 * ```ts
 * import * as Rpc from "duplex/Rpc"
 * Rpc.isRpc(Rpc.unary("Ping")) // true
 * ```
 * @category guards
 * @since 0.1.0
 */
export const isRpc = (u: unknown): u is Any => Predicate.hasProperty(u, TypeId)
