/**
 * Helpers for the RPC tests: transports, bounded waits, connected peers, raw `node:net` sockets
 * that speak bytes to a Duplex peer, and child processes.
 */
import { type Duration, Effect, Scope } from "effect"
import * as Net from "node:net"
import * as Peer from "../../src/Peer.ts"
import { netTarget, within as helpersWithin } from "./helpers.ts"

// ---------------------------------------------------------------------------------------------
// Transports and waits
// ---------------------------------------------------------------------------------------------

// shared with the peer-runtime tests (test/utils/helpers.ts)
export { tempDir, transports, WaitTimeout } from "./helpers.ts"
export type { TransportCase as Transport } from "./helpers.ts"

/** Bounds an effect (default 10 s); dies with a message naming what was awaited. */
export const within = (label: string, duration: Duration.Input = "10 seconds") => helpersWithin(label, duration)

// ---------------------------------------------------------------------------------------------
// Peers
// ---------------------------------------------------------------------------------------------

type Setup = (peer: Peer.Peer) => Effect.Effect<void, never, Scope.Scope>
const noSetup: Setup = () => Effect.void

/**
 * A binding peer and a connecting peer, both set up (serving) before any connection exists, then
 * connected; returns once each sees the other.
 */
export const connectedPair = (
  address: string,
  options: { readonly binder?: Setup; readonly connector?: Setup } = {}
): Effect.Effect<
  { readonly binder: Peer.Peer; readonly connector: Peer.Peer; readonly address: string },
  never,
  Scope.Scope
> =>
  Effect.gen(function*() {
    const binder = yield* Effect.orDie(Peer.make())
    yield* (options.binder ?? noSetup)(binder)
    const bound = yield* Effect.orDie(binder.bind(address))
    const connector = yield* Effect.orDie(Peer.make())
    yield* (options.connector ?? noSetup)(connector)
    yield* Effect.orDie(connector.connect(bound))
    yield* connector.awaitRemotes(1).pipe(within("connector sees the binder"))
    yield* binder.awaitRemotes(1).pipe(within("binder sees the connector"))
    return { binder, connector, address: bound }
  })

/** Number of channels still in the tables of a peer's connections. */
export const openChannels = (peer: Peer.Peer): Effect.Effect<number> =>
  Effect.map(peer.connections, (cs) => cs.reduce((n, c) => n + c.channels.size, 0))

// ---------------------------------------------------------------------------------------------
// Raw sockets
// ---------------------------------------------------------------------------------------------

export { netTarget } from "./helpers.ts"

export class RawClosed extends Error {}

export interface RawSocket {
  /** Writes bytes with one `write` call. */
  readonly write: (data: Uint8Array) => Effect.Effect<void>
  /** Everything received so far. */
  readonly received: () => Buffer
  /** Waits until the received bytes satisfy `predicate`; fails if the socket closes first. */
  readonly waitUntil: (predicate: (received: Buffer) => boolean) => Effect.Effect<Buffer, RawClosed>
}

const wrap = (socket: Net.Socket): RawSocket => {
  const chunks: Array<Buffer> = []
  let closed = false
  let listeners: Array<() => void> = []
  const notify = () => {
    const current = listeners
    listeners = []
    for (const l of current) l()
  }
  socket.on("data", (chunk: Buffer) => {
    chunks.push(chunk)
    notify()
  })
  socket.on("error", () => {})
  socket.on("close", () => {
    closed = true
    notify()
  })
  const received = () => Buffer.concat(chunks)
  return {
    write: (data) =>
      Effect.callback<void>((resume) => {
        socket.write(data, () => resume(Effect.void))
      }),
    received,
    waitUntil: (predicate) =>
      Effect.callback<Buffer, RawClosed>((resume) => {
        const check = () => {
          const all = received()
          if (predicate(all)) return resume(Effect.succeed(all))
          if (closed) return resume(Effect.fail(new RawClosed(`raw socket closed after ${all.length} bytes`)))
          listeners.push(check)
        }
        check()
        return Effect.sync(() => {
          listeners = listeners.filter((l) => l !== check)
        })
      })
  }
}

/** A raw client socket, destroyed when the scope closes. */
export const rawConnect = (address: string): Effect.Effect<RawSocket, Error, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.callback<Net.Socket, Error>((resume) => {
      const socket = Net.createConnection(netTarget(address))
      const onError = (error: Error) => resume(Effect.fail(error))
      socket.once("error", onError)
      socket.once("connect", () => {
        socket.off("error", onError)
        resume(Effect.succeed(socket))
      })
    }),
    (socket) => Effect.sync(() => socket.destroy())
  ).pipe(Effect.map(wrap))

/** A raw TCP server on 127.0.0.1:0 handing out its first accepted connection; closed with the scope. */
export const rawListen: Effect.Effect<
  { readonly address: string; readonly accepted: Effect.Effect<RawSocket> },
  Error,
  Scope.Scope
> = Effect.gen(function*() {
  const sockets: Array<Net.Socket> = []
  let waiter: ((socket: Net.Socket) => void) | undefined
  const server = yield* Effect.acquireRelease(
    Effect.callback<Net.Server, Error>((resume) => {
      const server = Net.createServer((socket) => {
        sockets.push(socket)
        const w = waiter
        waiter = undefined
        if (w !== undefined) w(socket)
      })
      server.once("error", (error) => resume(Effect.fail(error)))
      server.listen({ host: "127.0.0.1", port: 0 }, () => resume(Effect.succeed(server)))
    }),
    (server) =>
      Effect.callback<void>((resume) => {
        for (const s of sockets) s.destroy()
        server.close(() => resume(Effect.void))
      })
  )
  const info = server.address()
  const port = info !== null && typeof info === "object" ? info.port : 0
  const accepted = Effect.callback<Net.Socket>((resume) => {
    const first = sockets[0]
    if (first !== undefined) return resume(Effect.succeed(first))
    waiter = (socket) => resume(Effect.succeed(socket))
  }).pipe(Effect.map(wrap))
  return { address: `tcp://127.0.0.1:${port}`, accepted }
})

export { type RawFrame, splitFrames } from "./raw.ts"

// ---------------------------------------------------------------------------------------------
// Child processes
// ---------------------------------------------------------------------------------------------

export { type Child, spawnFixture } from "./child.ts"
