/**
 * Duplex: brokerless, symmetric RPC and message streaming for Effect.
 *
 * @since 0.1.0
 */

/** @since 0.1.0 */
export * as Address from "./Address.ts"

/** @since 0.1.0 */
export * as Channel from "./Channel.ts"

/** @since 0.1.0 */
export * as Codec from "./Codec.ts"

/** @since 0.1.0 */
export * as Connection from "./Connection.ts"

/** @since 0.1.0 */
export * as Discovery from "./Discovery.ts"

/** @since 0.1.0 */
export * as DuplexError from "./DuplexError.ts"

/** @since 0.1.0 */
export * as EffectRpc from "./EffectRpc.ts"

/** @since 0.1.0 */
export * as Frame from "./Frame.ts"

/** @since 0.1.0 */
export * as FrameCodec from "./FrameCodec.ts"

/** @since 0.1.0 */
export * as Greeting from "./Greeting.ts"

/** @since 0.1.0 */
export * as Headers from "./Headers.ts"

/** @since 0.1.0 */
export * as Middleware from "./Middleware.ts"

/** @since 0.1.0 */
export * as Peer from "./Peer.ts"

/** @since 0.1.0 */
export * as Protocol from "./Protocol.ts"

/** @since 0.1.0 */
export * as Proxy from "./Proxy.ts"

/** @since 0.1.0 */
export * as Rpc from "./Rpc.ts"

/** @since 0.1.0 */
export * as RpcClient from "./RpcClient.ts"

/** @since 0.1.0 */
export * as RpcError from "./RpcError.ts"

/** @since 0.1.0 */
export * as RpcGroup from "./RpcGroup.ts"

/** @since 0.1.0 */
export * as RpcServer from "./RpcServer.ts"

/** @since 0.1.0 */
export * as Transport from "./Transport.ts"
