/**
 * The Duplex wire vocabulary in one place: frame types, slot positions, greeting size, channel-id
 * ranges, the extension handshake and the default receive limits. Every value here is pinned by
 * `test/spec/constants.test.ts`, so a renumbering breaks a test before it breaks a peer.
 *
 * See PROTOCOL.md for the normative text.
 *
 * @since 0.1.0
 */

/**
 * Frame types. `Open` and `Data` are the base protocol (identical to the original Go prototype and
 * libdpx). The others are extensions: a peer sends them only after the remote announced the
 * matching capability in its `Hello` (an original peer silently drops unknown types).
 *
 * **Example** (Checking a frame type)
 * ```ts
 * import { FrameType } from "duplex/Protocol"
 * const isOpen = (type: number) => type === FrameType.Open
 * ```
 * @category constants
 * @since 0.1.0
 */
export const FrameType = {
  /** Opens a channel; slot 2 holds the method name, slot 3 the headers. */
  Open: 0,
  /** Carries a message (or the end / error of one half) of an open channel. */
  Data: 1,
  /** Extension handshake: sent once by a Duplex peer right after the greeting. */
  Hello: 2,
  /** Liveness probe (extension `ping`); reserved. */
  Ping: 3,
  /** Answer to a `Ping` (extension `ping`); reserved. */
  Pong: 4,
  /** Flow-control credit for one channel (extension `credit`); reserved. */
  Credit: 5,
  /** The sender accepts no new channels on this connection (extension `goaway`); reserved. */
  GoAway: 6
} as const

/**
 * A frame type number known to this implementation.
 *
 * @category models
 * @since 0.1.0
 */
export type FrameType = typeof FrameType[keyof typeof FrameType]

/**
 * Number of slots of a frame as the original writes it: `[type, channel, method, headers, error,
 * last, payload]`.
 *
 * **Example** (Checking an envelope's size)
 * ```ts
 * import { FRAME_SLOTS } from "duplex/Protocol"
 * const hasAllSlots = (envelope: ReadonlyArray<unknown>) => envelope.length >= FRAME_SLOTS
 * ```
 * @category constants
 * @since 0.1.0
 */
export const FRAME_SLOTS = 7

/**
 * Length in bytes of the greeting each side sends: a UUID as 36 ASCII characters.
 *
 * **Example** (Waiting for a whole greeting)
 * ```ts
 * import { GREETING_LENGTH } from "duplex/Protocol"
 * const complete = (received: Uint8Array) => received.length >= GREETING_LENGTH
 * ```
 * @category constants
 * @since 0.1.0
 */
export const GREETING_LENGTH = 36

/**
 * The error text the original uses to cancel a channel (sent with `last = false`).
 *
 * **Example** (Recognising a cancel frame)
 * ```ts
 * import type { Frame } from "duplex/Frame"
 * import { CANCEL_ERROR } from "duplex/Protocol"
 * const isCancel = (frame: Frame) => frame.error === CANCEL_ERROR && !frame.last
 * ```
 * @category constants
 * @since 0.1.0
 */
export const CANCEL_ERROR = "CloseStream"

/**
 * The protocol name and version carried in the method slot of a `Hello` frame.
 *
 * **Example** (Recognising a Hello frame)
 * ```ts
 * import type { Frame } from "duplex/Frame"
 * import { FrameType, PROTOCOL_VERSION } from "duplex/Protocol"
 * const isHello = (frame: Frame) => frame.type === FrameType.Hello && frame.method === PROTOCOL_VERSION
 * ```
 * @category constants
 * @since 0.1.0
 */
export const PROTOCOL_VERSION = "DUPLEX/1"

/**
 * Channel ids a peer allocates before it has received the remote's `Hello` start here, far above
 * the ids an original peer ever reaches with its counter from 0. After the remote's `Hello`, ids
 * start from 0 (connector) or 1 (binder). In both ranges the connector uses even ids and the binder
 * odd ids, so two Duplex peers can never pick the same id.
 *
 * **Example** (Telling the id ranges apart)
 * ```ts
 * import { LEGACY_CHANNEL_BASE } from "duplex/Protocol"
 * const allocatedBeforeHello = (id: number) => id >= LEGACY_CHANNEL_BASE
 * ```
 * @category constants
 * @since 0.1.0
 */
export const LEGACY_CHANNEL_BASE = 0x8000_0000

/**
 * Exclusive upper bound of channel ids (ids are encoded as unsigned 32-bit at most).
 *
 * **Example** (Validating a channel id)
 * ```ts
 * import { CHANNEL_ID_LIMIT } from "duplex/Protocol"
 * const isValidId = (id: number) => Number.isInteger(id) && id >= 0 && id < CHANNEL_ID_LIMIT
 * ```
 * @category constants
 * @since 0.1.0
 */
export const CHANNEL_ID_LIMIT = 0x1_0000_0000

/**
 * Receive limits of the frame decoder. Each protects the receiver from a hostile or broken sender;
 * defaults are far above honest traffic.
 *
 * @category models
 * @since 0.1.0
 */
export interface Limits {
  /** Largest encoded frame accepted, in bytes (bounds the memory one frame can take). */
  readonly maxFrameBytes: number
  /** Most headers in one frame (bounds per-frame map work). */
  readonly maxHeaderCount: number
  /** Most bytes of header keys plus values in one frame. */
  readonly maxHeaderBytes: number
  /** Longest method name, in bytes. */
  readonly maxMethodBytes: number
  /** Deepest nesting of msgpack values skipped inside an envelope (extra slots, unknown map keys). */
  readonly maxSkipDepth: number
  /**
   * Most channels the remote may have open on one connection; an OPEN beyond it is refused with an
   * error frame (`duplex-error: limit`) and the connection stays up.
   */
  readonly maxChannelsPerConnection: number
}

/**
 * Default receive limits: 16 MiB frames, 64 headers, 16 KiB of headers, 1 KiB method names, 65,536
 * channels opened by the remote per connection.
 *
 * **Example** (Raising the frame size)
 * ```ts
 * import { defaultLimits } from "duplex/Protocol"
 * const limits = { ...defaultLimits, maxFrameBytes: 64 * 1024 * 1024 }
 * ```
 * @category constants
 * @since 0.1.0
 */
export const defaultLimits: Limits = {
  maxFrameBytes: 16 * 1024 * 1024,
  maxHeaderCount: 64,
  maxHeaderBytes: 16 * 1024,
  maxMethodBytes: 1024,
  maxSkipDepth: 16,
  maxChannelsPerConnection: 65536
}
