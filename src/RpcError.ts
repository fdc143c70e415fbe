/**
 * Errors of the RPC layer.
 *
 * - `RpcClientError` is what a caller gets for everything that is not the procedure's own typed
 *   error: its `reason` says what happened (unknown method, bad request, codec, defect, lost
 *   connection, deadline…). Typed errors from the procedure's `error` Schema arrive as themselves.
 * - `RequestStreamError` is what a client-stream or bidi handler sees when its input fails.
 *
 * On the wire, an error frame's text is human-readable (what an original peer shows) and the
 * `duplex-error` header names the kind; for typed failures the payload carries the encoded error.
 *
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"

/**
 * Header carrying the kind of an error frame (ignored by original peers).
 *
 * **Example** (Reading an error frame's kind)
 * ```ts
 * import * as Headers from "duplex/Headers"
 * import { ERROR_KIND_HEADER } from "duplex/RpcError"
 * const kindOf = (headers: Headers.Headers) => Headers.get(headers, ERROR_KIND_HEADER)
 * ```
 * @category constants
 * @since 0.1.0
 */
export const ERROR_KIND_HEADER = "duplex-error"

/**
 * Header carrying a call's deadline as a relative timeout in milliseconds.
 *
 * **Example** (A five-second deadline)
 * ```ts
 * import * as Headers from "duplex/Headers"
 * import { TIMEOUT_HEADER } from "duplex/RpcError"
 * const headers = Headers.make({ [TIMEOUT_HEADER]: "5000" })
 * ```
 * @category constants
 * @since 0.1.0
 */
export const TIMEOUT_HEADER = "duplex-timeout"

/**
 * Kinds of error frames.
 *
 * **Example** (Checking for a defect)
 * ```ts
 * import { ErrorKind } from "duplex/RpcError"
 * const isDefect = (kind: string | undefined) => kind === ErrorKind.Defect
 * ```
 * @category constants
 * @since 0.1.0
 */
export const ErrorKind = {
  Failure: "failure",
  Defect: "defect",
  UnknownMethod: "unknown-method",
  BadRequest: "bad-request",
  Codec: "codec",
  Deadline: "deadline",
  Rejected: "rejected",
  Limit: "limit"
} as const

/**
 * Header naming the kind of a `rejected` error (e.g. `auth`, `rate-limit`).
 *
 * **Example** (The headers of an auth rejection)
 * ```ts
 * import * as Headers from "duplex/Headers"
 * import { ERROR_KIND_HEADER, ErrorKind, REJECTED_KIND_HEADER } from "duplex/RpcError"
 * const headers = Headers.make({ [ERROR_KIND_HEADER]: ErrorKind.Rejected, [REJECTED_KIND_HEADER]: "auth" })
 * ```
 * @category constants
 * @since 0.1.0
 */
export const REJECTED_KIND_HEADER = "duplex-rejected"

/**
 * A middleware refused the call (server side). The caller gets `RpcClientError` reason
 * `Rejected` with the same kind and text.
 *
 * **Example** (Rejecting in a custom middleware)
 * ```ts
 * import { Effect } from "effect"
 * import { Rejected } from "duplex/RpcError"
 * const closed = Effect.fail(new Rejected({ kind: "maintenance", text: "try again later" }))
 * ```
 * @category errors
 * @since 0.1.0
 */
export class Rejected extends Schema.TaggedError<Rejected>()("Rejected", {
  kind: Schema.String,
  text: Schema.String
}) {
  override get message(): string {
    return `rejected (${this.kind}): ${this.text}`
  }
}

/**
 * The remote has no such method (or service).
 *
 * **Example** (Constructing the error)
 * ```ts
 * import { RpcClientError, UnknownMethod } from "duplex/RpcError"
 * const reason = new UnknownMethod({ method: "Arith.Mul", text: "duplex: can't find method Arith.Mul" })
 * const error = new RpcClientError({ reason })
 * ```
 * @category errors
 * @since 0.1.0
 */
export class UnknownMethod extends Schema.TaggedError<UnknownMethod>()("UnknownMethod", {
  method: Schema.String,
  text: Schema.String
}) {
  override get message(): string {
    return this.text
  }
}

/**
 * The remote could not decode the request (wrong payload for the method's Schema).
 *
 * **Example** (Matching a rejected payload)
 * ```ts
 * import type { RpcClientError } from "duplex/RpcError"
 * const isBadRequest = (e: RpcClientError) => e.reason._tag === "BadRequest"
 * ```
 * @category errors
 * @since 0.1.0
 */
export class BadRequest extends Schema.TaggedError<BadRequest>()("BadRequest", { text: Schema.String }) {
  override get message(): string {
    return `bad request: ${this.text}`
  }
}

/**
 * The reply could not be decoded with the method's Schemas.
 *
 * **Example** (Constructing the error)
 * ```ts
 * import { BadResponse, RpcClientError } from "duplex/RpcError"
 * const error = new RpcClientError({ reason: new BadResponse({ text: "Expected number, got \"7\"" }) })
 * ```
 * @category errors
 * @since 0.1.0
 */
export class BadResponse extends Schema.TaggedError<BadResponse>()("BadResponse", { text: Schema.String }) {
  override get message(): string {
    return `bad response: ${this.text}`
  }
}

/**
 * The codec named by the call is not known on one side.
 *
 * **Example** (Reading the codec name)
 * ```ts
 * import type { RpcClientError } from "duplex/RpcError"
 * const codecOf = (e: RpcClientError) => e.reason._tag === "CodecUnsupported" ? e.reason.codec : undefined
 * ```
 * @category errors
 * @since 0.1.0
 */
export class CodecUnsupported extends Schema.TaggedError<CodecUnsupported>()("CodecUnsupported", {
  codec: Schema.String
}) {
  override get message(): string {
    return `codec ${JSON.stringify(this.codec)} is not supported`
  }
}

/**
 * The remote handler died with a defect (a bug, not a declared error).
 *
 * **Example** (Matching a remote bug)
 * ```ts
 * import type { RpcClientError } from "duplex/RpcError"
 * const isRemoteBug = (e: RpcClientError) => e.reason._tag === "RemoteDefect"
 * ```
 * @category errors
 * @since 0.1.0
 */
export class RemoteDefect extends Schema.TaggedError<RemoteDefect>()("RemoteDefect", { text: Schema.String }) {
  override get message(): string {
    return `remote defect: ${this.text}`
  }
}

/**
 * The remote failed with a text that maps to no typed error (e.g. an original peer's error).
 *
 * **Example** (Constructing the error)
 * ```ts
 * import { RemoteError, RpcClientError } from "duplex/RpcError"
 * const error = new RpcClientError({ reason: new RemoteError({ text: "division by zero" }) })
 * ```
 * @category errors
 * @since 0.1.0
 */
export class RemoteError extends Schema.TaggedError<RemoteError>()("RemoteError", { text: Schema.String }) {
  override get message(): string {
    return `remote: ${this.text}`
  }
}

/**
 * The connection carrying the call dropped.
 *
 * **Example** (Retrying only on a lost connection)
 * ```ts
 * import type { RpcClientError } from "duplex/RpcError"
 * const retryable = (e: RpcClientError) => e.reason._tag === "ConnectionLost"
 * ```
 * @category errors
 * @since 0.1.0
 */
export class ConnectionLost extends Schema.TaggedError<ConnectionLost>()("ConnectionLost", {
  text: Schema.String
}) {
  override get message(): string {
    return this.text
  }
}

/**
 * The remote cancelled the call.
 *
 * **Example** (Constructing the error)
 * ```ts
 * import { Cancelled } from "duplex/RpcError"
 * const reason = new Cancelled({ text: "CloseStream" })
 * ```
 * @category errors
 * @since 0.1.0
 */
export class Cancelled extends Schema.TaggedError<Cancelled>()("Cancelled", { text: Schema.String }) {
  override get message(): string {
    return `cancelled by the remote: ${this.text}`
  }
}

/**
 * The call's deadline passed (locally or at the remote).
 *
 * **Example** (Reading the timeout)
 * ```ts
 * import type { RpcClientError } from "duplex/RpcError"
 * const timeoutOf = (e: RpcClientError) =>
 *   e.reason._tag === "DeadlineExceeded" ? e.reason.timeoutMillis : undefined
 * ```
 * @category errors
 * @since 0.1.0
 */
export class DeadlineExceeded extends Schema.TaggedError<DeadlineExceeded>()("DeadlineExceeded", {
  timeoutMillis: Schema.Number
}) {
  override get message(): string {
    return `deadline of ${this.timeoutMillis} ms exceeded`
  }
}

/**
 * The call could not be placed (edge queue full, or the peer is closed).
 *
 * **Example** (Constructing the error)
 * ```ts
 * import { RpcClientError, Unavailable } from "duplex/RpcError"
 * const error = new RpcClientError({ reason: new Unavailable({ text: "peer is closed" }) })
 * ```
 * @category errors
 * @since 0.1.0
 */
export class Unavailable extends Schema.TaggedError<Unavailable>()("Unavailable", { text: Schema.String }) {
  override get message(): string {
    return this.text
  }
}

/**
 * Every failure of a call that is not the procedure's own typed error.
 *
 * **Example** (Handling an unknown method)
 * ```ts
 * import { Effect } from "effect"
 * import type { RpcClientError } from "duplex/RpcError"
 * const orDefault = <A>(call: Effect.Effect<A, RpcClientError>, fallback: A) =>
 *   call.pipe(Effect.catchTag("RpcClientError", (e) =>
 *     e.reason._tag === "UnknownMethod" ? Effect.succeed(fallback) : Effect.fail(e)))
 * ```
 * @category errors
 * @since 0.1.0
 */
export class RpcClientError extends Schema.TaggedError<RpcClientError>()("RpcClientError", {
  reason: Schema.Union([
    UnknownMethod,
    BadRequest,
    BadResponse,
    CodecUnsupported,
    RemoteDefect,
    RemoteError,
    ConnectionLost,
    Cancelled,
    DeadlineExceeded,
    Unavailable,
    Rejected
  ])
}) {
  override get message(): string {
    return this.reason.message
  }
}

/**
 * The input stream of a client-stream or bidi handler failed.
 *
 * **Example** (Constructing the error)
 * ```ts
 * import { RequestStreamError } from "duplex/RpcError"
 * const error = new RequestStreamError({ reason: "Cancelled", text: "the client cancelled the call" })
 * ```
 * @category errors
 * @since 0.1.0
 */
export class RequestStreamError extends Schema.TaggedError<RequestStreamError>()("RequestStreamError", {
  reason: Schema.Literals(["BadRequest", "Cancelled", "ConnectionLost", "RemoteError"]),
  text: Schema.String
}) {
  override get message(): string {
    return `${this.reason}: ${this.text}`
  }
}
