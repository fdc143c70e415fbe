/**
 * The Node socket behind an `effect/socket` Socket, when Duplex's own transport made it: the
 * connection's writer asks it whether all written bytes have left for the kernel, so the frame
 * encoder can reuse their memory (`FrameEncoder.recycle`). Sockets from elsewhere simply are not
 * registered and their frames always get fresh memory.
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
 * A check that is true when the socket has no written bytes left in its buffers (every write
 * completed, so no buffer passed to it is referenced any more), or `undefined` when unknown.
 *
 * @internal
 */
export const drainedCheck = (socket: Socket.Socket): (() => boolean) | undefined => {
  const raw = registry.get(socket)
  if (raw === undefined) return undefined
  return () => {
    const conn = raw()
    return conn !== undefined && conn.writableLength === 0
  }
}
