/**
 * Shared test helpers: transports table, temp dirs, bounded waits, text payloads, channel I/O.
 */
import { Duration, Effect, Scope, Stream } from "effect"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Address from "../../src/Address.ts"
import type * as Channel from "../../src/Channel.ts"

// ---------------------------------------------------------------------------------------------
// Transports
// ---------------------------------------------------------------------------------------------

/** A fresh temp dir, removed (recursively) when the scope closes. */
export const tempDir: Effect.Effect<string, never, Scope.Scope> = Effect.acquireRelease(
  Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "duplex-test-"))),
  (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
)

export interface TransportCase {
  readonly name: "tcp" | "unix"
  /** A fresh address to bind: port 0 for TCP, a socket path in a fresh temp dir for Unix. */
  readonly address: Effect.Effect<string, never, Scope.Scope>
}

export const transports: ReadonlyArray<TransportCase> = [
  { name: "tcp", address: Effect.succeed("tcp://127.0.0.1:0") },
  { name: "unix", address: Effect.map(tempDir, (dir) => "unix://" + Path.join(dir, "peer.sock")) }
]

/**
 * An address nobody listens on yet, which can be bound later: a path in a fresh temp dir for Unix;
 * for TCP a port the kernel just handed out (listen on 0, then close).
 */
export const unboundAddress = (name: TransportCase["name"]): Effect.Effect<string, never, Scope.Scope> =>
  name === "unix"
    ? Effect.map(tempDir, (dir) => "unix://" + Path.join(dir, "later.sock"))
    : Effect.callback<string>((resume) => {
      const server = Net.createServer()
      server.listen(0, "127.0.0.1", () => {
        const info = server.address()
        const port = info !== null && typeof info === "object" ? info.port : 0
        server.close(() => resume(Effect.succeed(`tcp://127.0.0.1:${port}`)))
      })
    })

/** Node connect options for an address string. */
export const netTarget = (address: string): Net.NetConnectOpts => {
  const parsed = Address.parse(address)
  if (parsed._tag === "Failure") throw new Error(`bad address in test: ${address}`)
  const a = parsed.success
  return a._tag === "Tcp" ? { host: a.host, port: a.port } : { path: a.path }
}

/** The filesystem path of a unix:// address (undefined for TCP). */
export const unixPath = (address: string): string | undefined => {
  const parsed = Address.parse(address)
  if (parsed._tag === "Failure") return undefined
  return parsed.success._tag === "Unix" ? parsed.success.path : undefined
}

/** The port of a tcp:// address (undefined for Unix). */
export const tcpPort = (address: string): number | undefined => {
  const parsed = Address.parse(address)
  if (parsed._tag === "Failure") return undefined
  return parsed.success._tag === "Tcp" ? parsed.success.port : undefined
}

// ---------------------------------------------------------------------------------------------
// Bounded waits
// ---------------------------------------------------------------------------------------------

export class WaitTimeout extends Error {
  constructor(label: string, duration: Duration.Input) {
    super(`timed out after ${Duration.format(Duration.fromInputUnsafe(duration))}: ${label}`)
  }
}

/** Bounds `self` by `duration`; on timeout dies with a message naming what was awaited. */
export const within = (label: string, duration: Duration.Input) => <A, E, R>(self: Effect.Effect<A, E, R>) =>
  Effect.timeoutOrElse(self, { duration, orElse: () => Effect.die(new WaitTimeout(label, duration)) })

// ---------------------------------------------------------------------------------------------
// Payloads and channels
// ---------------------------------------------------------------------------------------------

const encoder = new TextEncoder()
const decoder = new TextDecoder()
export const bytes = (text: string): Uint8Array => encoder.encode(text)
export const text = (data: Uint8Array): string => decoder.decode(data)

/** All remaining messages of a channel's input, as text. */
export const collect = (channel: Channel.Channel): Effect.Effect<Array<string>, Channel.ChannelError> =>
  Effect.map(Stream.runCollect(channel.input), (items) => items.map(text))

/** Reads the input and returns its failure (dies if the input ends cleanly). */
export const inputFailure = (channel: Channel.Channel): Effect.Effect<Channel.ChannelError> =>
  Stream.runDrain(channel.input).pipe(
    Effect.flip,
    Effect.catchCause(() => Effect.die(new Error(`input of ${channel.method} ended without an error`)))
  )

/** Hex of bytes, lowercase, no separators. */
export const hex = (data: Uint8Array): string => Buffer.from(data).toString("hex")
