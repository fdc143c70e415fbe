/**
 * The Duplex frame: seven slots `[type, channel, method, headers, error, last, payload]`, exactly as
 * the original Go prototype and libdpx write them. Constructors here build the frames each protocol
 * step needs (open, message, end, error, cancel, hello) with the original's conventions for unused
 * slots: empty method, empty headers, empty error, no payload.
 *
 * @since 0.1.0
 */
import * as Headers from "./Headers.ts"
import { CANCEL_ERROR, FrameType, PROTOCOL_VERSION } from "./Protocol.ts"

/**
 * One decoded or to-be-encoded frame.
 *
 * - `error` is `""` when the frame carries no error (the original never writes nil there).
 * - `payload` is `null` when there is none (encoded as msgpack nil); an empty payload is a
 *   zero-length `Uint8Array`.
 *
 * @category models
 * @since 0.1.0
 */
export interface Frame {
  readonly type: number
  readonly channel: number
  readonly method: string
  readonly headers: Headers.Headers
  readonly error: string
  readonly last: boolean
  readonly payload: Uint8Array | null
}

/**
 * Builds a frame from its seven slots.
 *
 * **Example** (A raw frame)
 * ```ts
 * import * as Frame from "duplex/Frame"
 * import * as Headers from "duplex/Headers"
 * const f = Frame.make(1, 0, "", Headers.empty, "", true, null)
 * ```
 * @category constructors
 * @since 0.1.0
 */
export const make = (
  type: number,
  channel: number,
  method: string,
  headers: Headers.Headers,
  error: string,
  last: boolean,
  payload: Uint8Array | null
): Frame => ({ type, channel, method, headers, error, last, payload })

/**
 * An OPEN frame: opens `channel` for `method` with optional headers.
 *
 * **Example** (Opening a channel)
 * ```ts
 * import * as Frame from "duplex/Frame"
 * const f = Frame.open(0, "Arith.Add")
 * ```
 * @category constructors
 * @since 0.1.0
 */
export const open = (channel: number, method: string, headers: Headers.Headers = Headers.empty): Frame =>
  make(FrameType.Open, channel, method, headers, "", false, null)

/**
 * A DATA frame carrying one message; `last = true` also ends the sender's half.
 *
 * **Example** (The only input of a unary call)
 * ```ts
 * import * as Frame from "duplex/Frame"
 * const f = Frame.data(0, new Uint8Array([0x81, 0xa1, 0x43, 0x0f]), true)
 * ```
 * @category constructors
 * @since 0.1.0
 */
export const data = (channel: number, payload: Uint8Array, last = false): Frame =>
  make(FrameType.Data, channel, "", Headers.empty, "", last, payload)

/**
 * The end marker: a DATA frame with `last = true` and no payload.
 *
 * **Example** (Ending a stream)
 * ```ts
 * import * as Frame from "duplex/Frame"
 * const f = Frame.end(3)
 * ```
 * @category constructors
 * @since 0.1.0
 */
export const end = (channel: number): Frame => make(FrameType.Data, channel, "", Headers.empty, "", true, null)

/**
 * A DATA frame ending the sender's half with an error text (`last = true`), optionally with a
 * payload (Duplex puts an encoded typed error there; the original sends none).
 *
 * **Example** (Failing a call)
 * ```ts
 * import * as Frame from "duplex/Frame"
 * const f = Frame.error(0, "divide by zero")
 * ```
 * @category constructors
 * @since 0.1.0
 */
export const error = (channel: number, text: string, payload: Uint8Array | null = null): Frame =>
  make(FrameType.Data, channel, "", Headers.empty, text, true, payload)

/**
 * The original's cancel: error `CloseStream` with `last = false`, which aborts the channel at once.
 *
 * **Example** (Cancelling)
 * ```ts
 * import * as Frame from "duplex/Frame"
 * const f = Frame.cancel(0)
 * ```
 * @category constructors
 * @since 0.1.0
 */
export const cancel = (channel: number, text: string = CANCEL_ERROR): Frame =>
  make(FrameType.Data, channel, "", Headers.empty, text, false, null)

/**
 * The HELLO extension frame announcing this peer's capabilities.
 *
 * **Example** (Announcing no extensions)
 * ```ts
 * import * as Frame from "duplex/Frame"
 * import * as Headers from "duplex/Headers"
 * const f = Frame.hello(Headers.empty)
 * ```
 * @category constructors
 * @since 0.1.0
 */
export const hello = (capabilities: Headers.Headers): Frame =>
  make(FrameType.Hello, 0, PROTOCOL_VERSION, capabilities, "", false, null)

/**
 * True for a frame that aborts its channel at once (error set, `last = false`).
 *
 * **Example** (Detecting a cancel)
 * ```ts
 * import * as Frame from "duplex/Frame"
 * Frame.isAbort(Frame.cancel(0)) // true
 * ```
 * @category guards
 * @since 0.1.0
 */
export const isAbort = (self: Frame): boolean => self.error !== "" && !self.last
