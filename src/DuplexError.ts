/**
 * Errors shared across Duplex modules. `ProtocolError` is what malformed input from the wire turns
 * into: it names the violated rule (`reason`) and carries a stable numeric `code` for logs and
 * metrics. Protocol errors close the offending connection; the peer keeps serving the others.
 *
 * @since 0.1.0
 */
import * as Predicate from "effect/Predicate"
import * as Schema from "effect/Schema"

/**
 * Why a byte stream was rejected, with its diagnostic code (see PROTOCOL.md, "Error handling").
 *
 * **Example** (Looking up a code)
 * ```ts
 * import { ProtocolErrorCode } from "duplex/DuplexError"
 * const code = ProtocolErrorCode.FrameTooLarge // 2
 * ```
 * @category constants
 * @since 0.1.0
 */
export const ProtocolErrorCode = {
  MalformedFrame: 1,
  FrameTooLarge: 2,
  TooManyHeaders: 3,
  HeadersTooLarge: 4,
  MethodTooLong: 5,
  TruncatedFrame: 6,
  BadGreeting: 7,
  GreetingTimeout: 8
} as const

/**
 * The name of a protocol rule that input violated.
 *
 * @category models
 * @since 0.1.0
 */
export type ProtocolErrorReason = keyof typeof ProtocolErrorCode

const ProtocolErrorReasonSchema = Schema.Literals([
  "MalformedFrame",
  "FrameTooLarge",
  "TooManyHeaders",
  "HeadersTooLarge",
  "MethodTooLong",
  "TruncatedFrame",
  "BadGreeting",
  "GreetingTimeout"
])

/**
 * Input from the wire broke the protocol. Never thrown: decoders return it and connections fail
 * with it.
 *
 * **Example** (Handling a protocol error)
 * ```ts
 * import { Effect } from "effect"
 * import { ProtocolError } from "duplex/DuplexError"
 * const program = Effect.fail(ProtocolError.fromReason("FrameTooLarge", "frame of 20000000 bytes")).pipe(
 *   Effect.catchTag("ProtocolError", (e) => Effect.succeed(e.code))
 * )
 * ```
 * @category errors
 * @since 0.1.0
 */
export class ProtocolError extends Schema.TaggedError<ProtocolError>()("ProtocolError", {
  reason: ProtocolErrorReasonSchema,
  code: Schema.Int,
  detail: Schema.String
}) {
  /**
   * Builds a protocol error whose `code` matches its `reason`.
   *
   * @since 0.1.0
   */
  static fromReason(reason: ProtocolErrorReason, detail: string): ProtocolError {
    return new ProtocolError({ reason, code: ProtocolErrorCode[reason], detail })
  }

  override get message(): string {
    return `${this.reason}: ${this.detail}`
  }
}

/**
 * Checks whether a value is a `ProtocolError`.
 *
 * **Example** (Guarding)
 * ```ts
 * import { isProtocolError, ProtocolError } from "duplex/DuplexError"
 * isProtocolError(ProtocolError.fromReason("MalformedFrame", "x")) // true
 * ```
 * @category guards
 * @since 0.1.0
 */
export const isProtocolError = (u: unknown): u is ProtocolError =>
  Predicate.isTagged(u, "ProtocolError") && u instanceof ProtocolError
