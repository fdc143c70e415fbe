/**
 * Compatibility with `effect/rpc` contracts: an `RpcGroup` built with `effect/rpc`'s `Rpc.make`
 * (unary, and `stream: true`) is served and called over Duplex peers unchanged.
 *
 * - `fromGroup` turns the contract into a Duplex group: each procedure keeps its tag (the wire
 *   method name), payload and error Schemas; `stream: true` procedures become server streams whose
 *   error Schema is the union of the procedure's and the stream's errors.
 * - `serve` / `layer` serve it with the handlers registered by the group's own `toLayer(...)`, so
 *   existing handler layers work as they are.
 * - `makeClient` returns a client whose methods have effect/rpc's shapes: unary calls are
 *   `Effect`s, stream calls are `Stream`s.
 *
 * Duplex's own contract form (`duplex/Rpc`) adds the client-stream and bidi kinds.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as HttpHeaders from "effect/http/Headers"
import * as Layer from "effect/Layer"
import * as Predicate from "effect/Predicate"
import type * as EffectRpcModule from "effect/rpc/Rpc"
import { ServerClient } from "effect/rpc/Rpc"
import type * as EffectRpcGroup from "effect/rpc/RpcGroup"
import * as RpcMessage from "effect/rpc/RpcMessage"
import * as RpcSchema from "effect/rpc/RpcSchema"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Peer from "./Peer.ts"
import * as Rpc from "./Rpc.ts"
import * as RpcClient from "./RpcClient.ts"
import type { RpcClientError } from "./RpcError.ts"
import * as RpcGroup from "./RpcGroup.ts"
import * as RpcServer from "./RpcServer.ts"

/**
 * The Duplex procedure for an effect/rpc procedure.
 *
 * @category models
 * @since 0.1.0
 */
export type ToDuplex<R> = R extends EffectRpcModule.Rpc<
  infer Tag,
  infer Payload,
  infer Success,
  infer Error,
  infer _Middleware,
  infer _Requires
> ?
  Success extends RpcSchema.Stream<infer A, infer E> ?
    A extends Schema.Top ? E extends Schema.Top ? Rpc.Rpc<Tag, "server", Payload, A, Schema.Union<readonly [Error, E]>>
      : never
    : never
  : Rpc.Rpc<Tag, "unary", Payload, Success, Error>
  : never

const hasSchemas = (rpc: EffectRpcModule.Any): rpc is EffectRpcModule.AnyWithProps =>
  Predicate.hasProperty(rpc, "payloadSchema") && Predicate.hasProperty(rpc, "successSchema") &&
  Predicate.hasProperty(rpc, "errorSchema")

const toDuplex = (rpc: EffectRpcModule.AnyWithProps): Rpc.Any => {
  const success = rpc.successSchema
  if (RpcSchema.isStreamSchema(success)) {
    return Rpc.make(rpc._tag, {
      kind: "server",
      payload: rpc.payloadSchema,
      success: success.success,
      error: Schema.Union([rpc.errorSchema, success.error])
    })
  }
  return Rpc.make(rpc._tag, {
    kind: "unary",
    payload: rpc.payloadSchema,
    success,
    error: rpc.errorSchema
  })
}

/**
 * The Duplex group for an effect/rpc group (method names are the procedures' tags).
 *
 * **Example** (Converting a contract)
 * ```ts
 * import { Schema } from "effect"
 * import { Rpc, RpcGroup } from "effect/rpc"
 * import * as EffectRpc from "duplex/EffectRpc"
 * class Api extends RpcGroup.make(Rpc.make("Echo", { payload: { text: Schema.String }, success: Schema.String })) {}
 * const group = EffectRpc.fromGroup(Api)
 * ```
 * @category constructors
 * @since 0.1.0
 */
export const fromGroup = <R extends EffectRpcModule.Any>(
  group: EffectRpcGroup.RpcGroup<R>
): RpcGroup.RpcGroup<ToDuplex<R>> => {
  const rpcs: Array<Rpc.Any> = []
  for (const rpc of group.requests.values()) if (hasSchemas(rpc)) rpcs.push(toDuplex(rpc))
  // Each procedure was converted by `toDuplex`, which builds exactly `ToDuplex<R>`.
  return RpcGroup.make(...rpcs) as unknown as RpcGroup.RpcGroup<ToDuplex<R>>
}

let nextClientId = 1

/**
 * Serves an effect/rpc group on `peer` with the handlers its `toLayer(...)` registered (the
 * `Rpc.ToHandler<R>` services in context). Handlers receive effect/rpc's options: `headers` (the
 * request headers), `client` (one id per call) and `requestId`.
 *
 * **Example** (Serving effect/rpc handlers over Duplex)
 * ```ts
 * import { Effect, Layer, Schema } from "effect"
 * import { Rpc, RpcGroup } from "effect/rpc"
 * import * as EffectRpc from "duplex/EffectRpc"
 * import * as Peer from "duplex/Peer"
 * class Api extends RpcGroup.make(Rpc.make("Echo", { payload: { text: Schema.String }, success: Schema.String })) {}
 * const Handlers = Api.toLayer({ Echo: ({ text }) => Effect.succeed(text) })
 * const Server = EffectRpc.layer(Api).pipe(Layer.provide(Handlers), Layer.provideMerge(Peer.layer()))
 * ```
 * @category serving
 * @since 0.1.0
 */
export const serve = <R extends EffectRpcModule.Any>(
  peer: Peer.Peer,
  group: EffectRpcGroup.RpcGroup<R>
): Effect.Effect<void, never, Scope.Scope | EffectRpcModule.ToHandler<R>> =>
  Effect.gen(function*() {
    const handlers: Record<string, (payload: unknown, call: RpcGroup.Call) => unknown> = {}
    for (const rpc of group.requests.values()) {
      const handler = yield* group.accessHandler(rpc._tag)
      let requestId = 0
      handlers[rpc._tag] = (payload, call) =>
        // `payload` was decoded with this procedure's own payload Schema.
        handler(payload as Parameters<typeof handler>[0], {
          client: new ServerClient(nextClientId++),
          requestId: RpcMessage.RequestId(++requestId),
          headers: HttpHeaders.fromInput(call.headers)
        })
    }
    // The handlers were looked up from the group's own `Rpc.ToHandler<R>` services (with their
    // context already provided by effect/rpc), and each returns the Effect or Stream its procedure's
    // kind requires; the record cannot be typed per procedure after that lookup.
    yield* RpcServer.serve(peer, fromGroup(group), handlers as RpcGroup.Handlers<ToDuplex<R>, never>)
  }) as Effect.Effect<void, never, Scope.Scope | EffectRpcModule.ToHandler<R>>

/**
 * A layer serving an effect/rpc group on the `Peer` in context.
 *
 * **Example** (Serving effect/rpc handlers on the peer in context)
 * ```ts
 * import { Effect, Layer, Schema } from "effect"
 * import { Rpc, RpcGroup } from "effect/rpc"
 * import * as EffectRpc from "duplex/EffectRpc"
 * class Api extends RpcGroup.make(Rpc.make("Echo", { payload: { text: Schema.String }, success: Schema.String })) {}
 * const Server = EffectRpc.layer(Api).pipe(Layer.provide(Api.toLayer({ Echo: ({ text }) => Effect.succeed(text) })))
 * ```
 * @category layers
 * @since 0.1.0
 */
export const layer = <R extends EffectRpcModule.Any>(
  group: EffectRpcGroup.RpcGroup<R>
): Layer.Layer<never, never, Peer.Peer | EffectRpcModule.ToHandler<R>> =>
  Layer.effectDiscard(Effect.flatMap(Effect.service(Peer.Peer), (peer) => serve(peer, group)))

/**
 * A client for an effect/rpc group over a Duplex peer: unary procedures return `Effect`s and
 * `stream: true` procedures return `Stream`s, failing with the procedure's errors or
 * `RpcClientError`.
 *
 * **Example** (Calling effect/rpc procedures through Duplex)
 * ```ts
 * import { Effect, Schema } from "effect"
 * import { Rpc, RpcGroup } from "effect/rpc"
 * import * as EffectRpc from "duplex/EffectRpc"
 * import * as Peer from "duplex/Peer"
 * class Api extends RpcGroup.make(Rpc.make("Echo", { payload: { text: Schema.String }, success: Schema.String })) {}
 * const program = Effect.gen(function*() {
 *   const peer = yield* Peer.make()
 *   yield* peer.connect("tcp://127.0.0.1:7000")
 *   const client = yield* EffectRpc.makeClient(peer, Api)
 *   return yield* client.Echo({ text: "hi" })
 * })
 * ```
 * @category constructors
 * @since 0.1.0
 */
export const makeClient = <R extends EffectRpcModule.Any>(
  peer: Peer.Peer,
  group: EffectRpcGroup.RpcGroup<R>,
  options?: RpcClient.Options
): Effect.Effect<RpcClient.Client<ToDuplex<R>>, RpcClientError> => RpcClient.makeWith(peer, fromGroup(group), options)
