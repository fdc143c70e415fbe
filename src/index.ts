/**
 * Duplex: brokerless, symmetric RPC and message streaming for Effect.
 *
 * @since 0.1.0
 */

/** @since 0.1.0 */
export * as DuplexError from "./DuplexError.ts"
/** @since 0.1.0 */
export * as Frame from "./Frame.ts"
/** @since 0.1.0 */
export * as FrameCodec from "./FrameCodec.ts"
/** @since 0.1.0 */
export * as Greeting from "./Greeting.ts"
/** @since 0.1.0 */
export * as Headers from "./Headers.ts"
/** @since 0.1.0 */
export * as Protocol from "./Protocol.ts"
