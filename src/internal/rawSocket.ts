/**
 * How Duplex's own transport hands a Node socket to the connection: an `effect/socket` Socket it
 * made is registered with an effect that opens (dial) or returns (accept) the `net.Socket`, so
 * the connection reads and writes it directly (see `Connection.start`). Sockets made elsewhere
 * are not registered and run through the `effect/socket` reader and writer.
 *
 * @internal
 */
import type * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import type * as Socket from "effect/socket/Socket"
import type * as Net from "node:net"

/**
 * Reads of a socket opened with `onread`: `target` says where the next read goes, `read` gets
 * the byte count and the buffer that was filled (valid until the next read).
 */
export interface ReadSink {
  readonly target: () => Uint8Array
  readonly read: (n: number, buffer: Uint8Array) => void
}

/** An open socket; `setReader` is present when its reads go to a `ReadSink` (no `data` events). */
export interface Opened {
  readonly socket: Net.Socket
  readonly setReader?: ((sink: ReadSink) => void) | undefined
}

/** Opens the socket (closed when the scope closes), or fails like `effect/socket` would. */
export type Opener = Effect.Effect<Opened, Socket.SocketError, Scope.Scope>

const registry = new WeakMap<Socket.Socket, Opener>()

/** @internal */
export const register = (socket: Socket.Socket, open: Opener): void => {
  registry.set(socket, open)
}

/** @internal */
export const opener = (socket: Socket.Socket): Opener | undefined => registry.get(socket)

/** Shared by every socket: what a read puts there is copied out in the same callback. */
const scratch = new Uint8Array(64 * 1024)

/**
 * `onread` options for `net.createConnection` whose reads go to the sink set later with the
 * returned `setReader`; reads before that are copied and handed over then.
 */
export const deferredReads = (): {
  readonly onread: { readonly buffer: () => Uint8Array; readonly callback: (n: number, buf: Uint8Array) => boolean }
  readonly setReader: (sink: ReadSink) => void
} => {
  let sink: ReadSink | undefined
  const early: Array<Uint8Array> = []
  return {
    onread: {
      buffer: () => sink !== undefined ? sink.target() : scratch,
      callback: (n, buf) => {
        if (sink !== undefined) sink.read(n, buf)
        else early.push(buf.slice(0, n))
        return true
      }
    },
    setReader: (next) => {
      sink = next
      for (const bytes of early.splice(0)) next.read(bytes.length, bytes)
    }
  }
}
