/**
 * The Node socket behind an `effect/socket` Socket, when Duplex's own transport made it: the
 * connection then writes its frames to it directly (no writer fiber) and reuses the encoder's
 * memory once the socket holds none of it (`FrameEncoder.recycle`). Sockets from elsewhere are
 * not registered and go through the `effect/socket` writer.
 *
 * @internal
 */
import type * as Socket from "effect/socket/Socket"
import type * as Net from "node:net"

const registry = new WeakMap<Socket.Socket, () => Net.Socket | undefined>()

/** @internal */
export const register = (socket: Socket.Socket, raw: () => Net.Socket | undefined): void => {
  registry.set(socket, raw)
}

/**
 * The open Node socket of `socket`, if Duplex's transport made it (dialled sockets have one once
 * their reader is acquired).
 *
 * @internal
 */
export const get = (socket: Socket.Socket): Net.Socket | undefined => registry.get(socket)?.()
