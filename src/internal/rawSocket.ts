/**
 * How Duplex's own transport hands a Node socket to the connection: the `effect/socket` Socket it
 * returns is a `DirectSocket`, which carries an effect that opens (dial) or returns (accept) the
 * `net.Socket`, so the connection reads and writes it directly (see `Connection.start`). The
 * `effect/socket` wrapper (reader, writer) is only made if something uses it, so a thousand
 * connections do not hold a thousand unused wrappers. Sockets made elsewhere run through the
 * `effect/socket` reader and writer.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as Socket from "effect/socket/Socket"
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

/**
 * A Socket of Duplex's transport: `open` gives the Node socket to `Connection.start`; `reader`
 * and `writer` go through an `effect/socket` wrapper made by `wrap` on first use (once).
 *
 * @internal
 */
export class DirectSocket implements Socket.Socket {
  readonly [Socket.TypeId]: typeof Socket.TypeId = Socket.TypeId
  readonly open: Opener
  private readonly wrap: () => Effect.Effect<Socket.Socket>
  private wrapped: Socket.Socket | undefined = undefined
  constructor(open: Opener, wrap: () => Effect.Effect<Socket.Socket>) {
    this.open = open
    this.wrap = wrap
  }
  private get socket(): Effect.Effect<Socket.Socket> {
    return Effect.suspend(() => {
      const wrapped = this.wrapped
      if (wrapped !== undefined) return Effect.succeed(wrapped)
      return Effect.map(this.wrap(), (socket) => this.wrapped ??= socket)
    })
  }
  get reader(): Socket.Socket["reader"] {
    return Effect.flatMap(this.socket, (socket) => socket.reader)
  }
  get writer(): Socket.Socket["writer"] {
    return Effect.flatMap(this.socket, (socket) => socket.writer)
  }
}

/** @internal the direct opener of a socket of Duplex's transport, if it is one. */
export const opener = (socket: Socket.Socket): Opener | undefined =>
  socket instanceof DirectSocket ? socket.open : undefined

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
