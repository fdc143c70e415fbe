/**
 * A set of procedures that a peer serves and a client calls, with an optional method prefix
 * (`prefix("Arith.")` makes `Add` travel as `Arith.Add`, the original's `Service.Method` form).
 * Also the handler types for each kind.
 *
 * @since 0.1.0
 */
import type * as Effect from "effect/Effect"
import * as Predicate from "effect/Predicate"
import type * as Stream from "effect/Stream"
import type * as Headers from "./Headers.ts"
import type * as Rpc from "./Rpc.ts"
import type { RequestStreamError } from "./RpcError.ts"

/**
 * **Example** (Reading the type id)
 * ```ts
 * import * as RpcGroup from "duplex/RpcGroup"
 * RpcGroup.make()[RpcGroup.TypeId] // "~duplex/RpcGroup"
 * ```
 * @category type ids
 * @since 0.1.0
 */
export const TypeId = "~duplex/RpcGroup"

/**
 * A group of procedures.
 *
 * @category models
 * @since 0.1.0
 */
export interface RpcGroup<out R extends Rpc.Any> {
  readonly [TypeId]: typeof TypeId
  /** Prepended to each procedure's tag to form the wire method name. */
  readonly methodPrefix: string
  /** Procedures by tag. */
  readonly rpcs: ReadonlyMap<string, R>
  /** The same procedures under a method prefix. */
  readonly prefix: (prefix: string) => RpcGroup<R>
  /** Adds procedures. */
  readonly add: <const Rs extends ReadonlyArray<Rpc.Any>>(...rpcs: Rs) => RpcGroup<R | Rs[number]>
}

/**
 * Any group.
 *
 * @category models
 * @since 0.1.0
 */
export type Any = RpcGroup<Rpc.Any>

/**
 * The procedures of a group.
 *
 * @category models
 * @since 0.1.0
 */
export type Rpcs<G> = G extends RpcGroup<infer R> ? R : never

const makeGroup = <R extends Rpc.Any>(rpcs: ReadonlyMap<string, R>, methodPrefix: string): RpcGroup<R> => ({
  [TypeId]: TypeId,
  methodPrefix,
  rpcs,
  prefix: (prefix) => makeGroup(rpcs, prefix),
  add: <const Rs extends ReadonlyArray<Rpc.Any>>(...more: Rs) => {
    const next = new Map<string, R | Rs[number]>(rpcs)
    for (const rpc of more) next.set(rpc._tag, rpc)
    return makeGroup<R | Rs[number]>(next, methodPrefix)
  }
})

/**
 * Groups procedures.
 *
 * **Example** (Arith, spoken as `Arith.Add` on the wire)
 * ```ts
 * import { Schema } from "effect"
 * import * as Rpc from "duplex/Rpc"
 * import * as RpcGroup from "duplex/RpcGroup"
 * const Args = { A: Schema.Int, B: Schema.Int }
 * const Reply = Schema.Struct({ C: Schema.Int })
 * const Arith = RpcGroup.make(
 *   Rpc.unary("Add", { payload: Args, success: Reply }),
 *   Rpc.unary("Mul", { payload: Args, success: Reply })
 * ).prefix("Arith.")
 * ```
 * @category constructors
 * @since 0.1.0
 */
export const make = <const Rs extends ReadonlyArray<Rpc.Any>>(...rpcs: Rs): RpcGroup<Rs[number]> =>
  makeGroup(new Map(rpcs.map((rpc) => [rpc._tag, rpc])), "")

/**
 * Checks whether a value is a Duplex `RpcGroup`.
 *
 * **Example** (Guard)
 * ```ts
 * import * as RpcGroup from "duplex/RpcGroup"
 * RpcGroup.isRpcGroup(RpcGroup.make()) // true
 * ```
 * @category guards
 * @since 0.1.0
 */
export const isRpcGroup = (u: unknown): u is Any => Predicate.hasProperty(u, TypeId)

// ---------------------------------------------------------------------------------------------
// Handlers
// ---------------------------------------------------------------------------------------------

/**
 * What a handler knows about its call (also available as the `RpcServer.CurrentCall` service).
 *
 * @category models
 * @since 0.1.0
 */
export interface Call {
  /** Peer id of the caller. */
  readonly remoteId: string
  /** Wire method name. */
  readonly method: string
  /** Request headers. */
  readonly headers: Headers.Headers
  /** Sets a response header (sent with the first reply frame). */
  readonly setHeader: (key: string, value: string) => void
}

/**
 * The handler a procedure needs, by kind.
 *
 * @category models
 * @since 0.1.0
 */
export type HandlerFor<R extends Rpc.Any, Env> = R extends Rpc.Rpc<infer _Tag, infer K, infer P, infer S, infer E> ?
  K extends "unary" ? (payload: P["Type"], call: Call) => Effect.Effect<S["Type"], E["Type"], Env>
  : K extends "server" ? (payload: P["Type"], call: Call) => Stream.Stream<S["Type"], E["Type"], Env>
  : K extends "client" ? (
      payloads: Stream.Stream<P["Type"], RequestStreamError>,
      call: Call
    ) => Effect.Effect<S["Type"], E["Type"] | RequestStreamError, Env>
  : K extends "bidi" ? (
      payloads: Stream.Stream<P["Type"], RequestStreamError>,
      call: Call
    ) => Stream.Stream<S["Type"], E["Type"] | RequestStreamError, Env>
  : never
  : never

/**
 * Handlers for every procedure of a group, keyed by tag.
 *
 * @category models
 * @since 0.1.0
 */
export type Handlers<R extends Rpc.Any, Env> = {
  readonly [Tag in R["_tag"]]: HandlerFor<Extract<R, { readonly _tag: Tag }>, Env>
}

/**
 * The services a set of handlers needs (the union of their Effects' and Streams' requirements).
 *
 * @category models
 * @since 0.1.0
 */
export type HandlerServices<H> = {
  readonly [K in keyof H]: H[K] extends (...args: ReadonlyArray<never>) => infer Out
    ? Out extends Effect.Effect<infer _A, infer _E, infer X> ? X
    : Out extends Stream.Stream<infer _A, infer _E, infer X> ? X
    : never
    : never
}[keyof H]
