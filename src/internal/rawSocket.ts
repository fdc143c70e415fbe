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

/** Opens the socket (closed when the scope closes), or fails like `effect/socket` would. */
export type Opener = Effect.Effect<Net.Socket, Socket.SocketError, Scope.Scope>

const registry = new WeakMap<Socket.Socket, Opener>()

/** @internal */
export const register = (socket: Socket.Socket, open: Opener): void => {
  registry.set(socket, open)
}

/** @internal */
export const opener = (socket: Socket.Socket): Opener | undefined => registry.get(socket)
