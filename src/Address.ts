/**
 * Peer addresses as strings: `tcp://host:port` (IPv4, `[IPv6]`, or a name) and `unix:///absolute/path`
 * (or `unix:relative/path`). Parsing never throws: bad input is an `AddressError` naming the
 * problem. Other schemes (`ws://`, `wss://`) are recognised and reported as not supported yet.
 *
 * @since 0.1.0
 */
import * as Predicate from "effect/Predicate"
import * as Result from "effect/Result"
import * as Schema from "effect/Schema"

/**
 * A TCP endpoint. `host` has no brackets (`::1`, not `[::1]`).
 *
 * @category models
 * @since 0.1.0
 */
export interface TcpAddress {
  readonly _tag: "Tcp"
  readonly host: string
  readonly port: number
}

/**
 * A Unix domain socket path (absolute, or relative to the working directory).
 *
 * @category models
 * @since 0.1.0
 */
export interface UnixAddress {
  readonly _tag: "Unix"
  readonly path: string
}

/**
 * Any address a peer can bind or connect to.
 *
 * @category models
 * @since 0.1.0
 */
export type Address = TcpAddress | UnixAddress

/**
 * The address string could not be parsed.
 *
 * **Example** (Catching a bad address)
 * ```ts
 * import { Effect } from "effect"
 * import * as Address from "duplex/Address"
 * const program = Effect.fromResult(Address.parse("tcp://nowhere")).pipe(
 *   Effect.catchTag("AddressError", (e) => Effect.succeed(e.message))
 * )
 * ```
 * @category errors
 * @since 0.1.0
 */
export class AddressError extends Schema.TaggedError<AddressError>()("AddressError", {
  input: Schema.String,
  detail: Schema.String
}) {
  override get message(): string {
    return `invalid address ${JSON.stringify(this.input)}: ${this.detail}`
  }
}

/**
 * Builds a TCP address.
 *
 * **Example** (Loopback)
 * ```ts
 * import * as Address from "duplex/Address"
 * const a = Address.tcp("127.0.0.1", 0)
 * ```
 * @category constructors
 * @since 0.1.0
 */
export const tcp = (host: string, port: number): TcpAddress => ({ _tag: "Tcp", host, port })

/**
 * Builds a Unix socket address.
 *
 * **Example** (A socket in a temp dir)
 * ```ts
 * import * as Address from "duplex/Address"
 * const a = Address.unix("/tmp/duplex.sock")
 * ```
 * @category constructors
 * @since 0.1.0
 */
export const unix = (path: string): UnixAddress => ({ _tag: "Unix", path })

const fail = (input: string, detail: string) => Result.fail(new AddressError({ input, detail }))

/**
 * Parses an address string.
 *
 * **Example** (Parsing)
 * ```ts
 * import * as Address from "duplex/Address"
 * Address.parse("tcp://[::1]:7000") // Result.succeed({ _tag: "Tcp", host: "::1", port: 7000 })
 * Address.parse("unix:///run/app.sock") // Result.succeed({ _tag: "Unix", path: "/run/app.sock" })
 * ```
 * @category parsing
 * @since 0.1.0
 */
export const parse = (input: string): Result.Result<Address, AddressError> => {
  const colon = input.indexOf(":")
  if (colon <= 0) return fail(input, "missing scheme (expected tcp:// or unix://)")
  const scheme = input.slice(0, colon).toLowerCase()
  const rest = input.slice(colon + 1)
  switch (scheme) {
    case "tcp":
      return parseTcp(input, rest)
    case "unix": {
      const path = rest.startsWith("//") ? rest.slice(2) : rest
      if (path.length === 0) return fail(input, "empty socket path")
      if (path.includes("\0")) return fail(input, "socket path contains a NUL byte")
      return Result.succeed(unix(path))
    }
    case "ws":
    case "wss":
      return fail(input, `scheme ${scheme}:// is not supported yet`)
    default:
      return fail(input, `unknown scheme ${JSON.stringify(scheme)}`)
  }
}

const parseTcp = (input: string, rest: string): Result.Result<Address, AddressError> => {
  if (!rest.startsWith("//")) return fail(input, "expected tcp://host:port")
  const hostPort = rest.slice(2)
  let host: string
  let portText: string
  if (hostPort.startsWith("[")) {
    const close = hostPort.indexOf("]")
    if (close < 0) return fail(input, "unterminated [IPv6] host")
    host = hostPort.slice(1, close)
    if (!/^[0-9a-fA-F:.]+(%[\w.-]+)?$/.test(host)) return fail(input, "invalid IPv6 address")
    if (hostPort[close + 1] !== ":") return fail(input, "missing :port")
    portText = hostPort.slice(close + 2)
  } else {
    const i = hostPort.lastIndexOf(":")
    if (i < 0) return fail(input, "missing :port")
    host = hostPort.slice(0, i)
    portText = hostPort.slice(i + 1)
    if (host.includes(":")) return fail(input, "IPv6 hosts must be in brackets, e.g. tcp://[::1]:7000")
    if (!/^[A-Za-z0-9.-]+$/.test(host)) return fail(input, "invalid host name")
  }
  if (host.length === 0) return fail(input, "empty host")
  if (!/^\d{1,5}$/.test(portText)) return fail(input, "port must be a number")
  const port = Number(portText)
  if (port > 65535) return fail(input, "port out of range")
  return Result.succeed(tcp(host, port))
}

/**
 * Formats an address back to its string form.
 *
 * **Example** (Formatting)
 * ```ts
 * import * as Address from "duplex/Address"
 * Address.format(Address.tcp("::1", 7000)) // "tcp://[::1]:7000"
 * ```
 * @category formatting
 * @since 0.1.0
 */
export const format = (address: Address): string =>
  address._tag === "Tcp"
    ? `tcp://${address.host.includes(":") ? `[${address.host}]` : address.host}:${address.port}`
    : address.path.startsWith("/")
    ? `unix://${address.path}`
    : `unix:${address.path}`

/**
 * Accepts an `Address` or a string and returns an `Address`.
 *
 * **Example** (Normalising input)
 * ```ts
 * import * as Address from "duplex/Address"
 * Address.fromInput("tcp://127.0.0.1:7000")
 * ```
 * @category parsing
 * @since 0.1.0
 */
export const fromInput = (input: string | Address): Result.Result<Address, AddressError> =>
  Predicate.isString(input) ? parse(input) : Result.succeed(input)
