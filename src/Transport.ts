/**
 * Moves bytes, never frames: dials and listens on TCP and Unix sockets with `node:net`, handing
 * out `effect/socket` Sockets that `Connection.start` reads and writes directly (the
 * `@effect/platform-node` `NodeSocket` wrapper is made only when a socket's reader or writer is
 * used).
 *
 * - TCP sockets get `noDelay` (Duplex batches its own writes) and TCP keepalive (15 s), the only
 *   liveness check with an original peer, which has no PING.
 * - A Unix listener removes its socket file when its scope closes, and a stale file left by a
 *   crashed process (nobody accepting on it) is replaced instead of failing the bind.
 *
 * @since 0.1.0
 */
import * as NodeSocket from "@effect/platform-node/NodeSocket"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import { constVoid } from "effect/Function"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as Socket from "effect/socket/Socket"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Address from "./Address.ts"
import * as RawSocket from "./internal/rawSocket.ts"

/**
 * A listener could not be opened.
 *
 * **Example** (Handling a busy port)
 * ```ts
 * import { Effect } from "effect"
 * import * as Address from "duplex/Address"
 * import * as Transport from "duplex/Transport"
 * const program = Transport.listen(Address.tcp("127.0.0.1", 7000), () => Effect.void).pipe(
 *   Effect.catchTag("BindError", (e) => Effect.logError(e.detail)), Effect.scoped)
 * ```
 * @category errors
 * @since 0.1.0
 */
export class BindError extends Schema.TaggedError<BindError>()("BindError", {
  address: Schema.String,
  detail: Schema.String
}) {
  override get message(): string {
    return `cannot bind ${this.address}: ${this.detail}`
  }
}

/**
 * Creates a client socket for `address`. The connection is made when the socket's reader is
 * acquired (see `effect/socket`).
 *
 * **Example** (Dialling)
 * ```ts
 * import * as Address from "duplex/Address"
 * import * as Transport from "duplex/Transport"
 * const socket = Transport.dial(Address.tcp("127.0.0.1", 7000), "5 seconds")
 * ```
 * @category constructors
 * @since 0.1.0
 */
export const dial = (address: Address.Address, openTimeout: Duration.Input): Effect.Effect<Socket.Socket> =>
  makeNet(
    address._tag === "Tcp"
      ? { host: address.host, port: address.port, noDelay: true, keepAlive: true, keepAliveInitialDelay: 15_000 }
      : { path: address.path },
    openTimeout
  )

/**
 * A socket whose `Connection.start` opens the `net.Socket` itself and reads and writes it without
 * the `effect/socket` reader and writer (see `internal/rawSocket.ts`); other users of the returned
 * Socket get the usual `effect/socket` behaviour (`NodeSocket.makeNet`, made on first use).
 */
const makeNet = (options: Net.NetConnectOpts, openTimeout: Duration.Input): Effect.Effect<Socket.Socket> =>
  Effect.sync(() =>
    new RawSocket.DirectSocket(
      openNet(options, Duration.toMillis(Duration.fromInputUnsafe(openTimeout))),
      () => NodeSocket.makeNet({ ...options, openTimeout })
    )
  )

/** Opens a `net.Socket` (destroyed when the scope closes), failing after `timeoutMillis`. */
const openNet = (options: Net.NetConnectOpts, timeoutMillis: number): RawSocket.Opener =>
  Effect.suspend(() => {
    let opened: Net.Socket | undefined
    const close = Effect.addFinalizer(() => Effect.sync(() => opened?.destroy()))
    // reads go where the connection says (`onread`): large frames are read straight into their
    // own buffer instead of Node's 64 KiB chunks
    const reads = RawSocket.deferredReads()
    return Effect.andThen(
      close,
      Effect.map(
        open({ ...options, onread: reads.onread }, timeoutMillis, (conn) => opened = conn),
        (socket): RawSocket.Opened => ({ socket, setReader: reads.setReader })
      )
    )
  })

const open = (options: Net.NetConnectOpts, timeoutMillis: number, onOpen: (conn: Net.Socket) => void) =>
  Effect.callback<Net.Socket, Socket.SocketError>((resume) => {
    const conn = Net.createConnection(options)
    let settled = false
    const settle = (effect: Effect.Effect<Net.Socket, Socket.SocketError>) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      conn.off("connect", onConnect)
      // the error listener stays (a no-op from now on): an 'error' before the connection's own
      // listeners are attached must not become an uncaught exception
      resume(effect)
    }
    const onConnect = () => {
      // from here the connection's own listeners see errors; the scope destroys the socket
      onOpen(conn)
      settle(Effect.succeed(conn))
    }
    const onError = (cause: Error) => {
      conn.destroy()
      settle(Effect.fail(new Socket.SocketError({ reason: new Socket.SocketOpenError({ kind: "Unknown", cause }) })))
    }
    // Node fires delays past 2^31 - 1 ms at once: such a timeout (or Infinity) means none
    const timer = timeoutMillis <= 0x7fff_ffff
      ? setTimeout(() => {
        conn.destroy()
        settle(
          Effect.fail(
            new Socket.SocketError({
              reason: new Socket.SocketOpenError({ kind: "Timeout", cause: new Error("Connection timed out") })
            })
          )
        )
      }, timeoutMillis)
      : undefined
    conn.once("connect", onConnect)
    conn.on("error", onError)
    return Effect.sync(() => {
      conn.destroy()
      settle(Effect.interrupt)
    })
  })

/** Pending connections a listener queues (the kernel caps it at `net.core.somaxconn`). */
const LISTEN_BACKLOG = 4096

/** Connects to a Unix path to learn whether something is listening there. */
const probeUnix = (path: string): Effect.Effect<boolean> =>
  Effect.callback<boolean>((resume) => {
    const socket = Net.createConnection({ path })
    socket.once("connect", () => {
      socket.destroy()
      resume(Effect.succeed(true))
    })
    socket.once("error", () => {
      socket.destroy()
      resume(Effect.succeed(false))
    })
    return Effect.sync(() => socket.destroy())
  })

const prepareUnixPath = (path: string, text: string): Effect.Effect<void, BindError> =>
  Effect.gen(function*() {
    let stat: Fs.Stats
    try {
      stat = Fs.lstatSync(path)
    } catch {
      return
    }
    if (!stat.isSocket()) return yield* new BindError({ address: text, detail: "path exists and is not a socket" })
    if (yield* probeUnix(path)) return yield* new BindError({ address: text, detail: "address in use" })
    try {
      Fs.unlinkSync(path)
    } catch (cause) {
      return yield* new BindError({ address: text, detail: `cannot remove stale socket file: ${String(cause)}` })
    }
  })

/**
 * Listens on `address` and runs `handler` in its own fiber for every accepted socket, until the
 * scope closes (which interrupts the handlers still running and closes their sockets). A socket
 * is closed when its handler ends. Returns the bound address (with the real port when `0` was
 * asked for).
 *
 * **Example** (An echo-less listener)
 * ```ts
 * import { Effect } from "effect"
 * import * as Address from "duplex/Address"
 * import * as Transport from "duplex/Transport"
 * const program = Transport.listen(Address.tcp("127.0.0.1", 0), () => Effect.void).pipe(Effect.scoped)
 * ```
 * @category constructors
 * @since 0.1.0
 */
export const listen = <R>(
  address: Address.Address,
  handler: (socket: Socket.Socket) => Effect.Effect<void, never, R>
): Effect.Effect<Address.Address, BindError, Scope.Scope | R> =>
  Effect.gen(function*() {
    const runFork = Effect.runForkWith(Context.omit(Scope.Scope)(yield* Effect.context<R>()))
    const handlers = new Set<Fiber.Fiber<void>>()
    const bound = yield* listenNet(
      address,
      (conn) => {
        const socket = new RawSocket.DirectSocket(
          Effect.succeed({ socket: conn }),
          () => NodeSocket.fromDuplex(acceptedDuplex(conn), { tlsServer: true })
        )
        const fiber = runFork(Effect.scoped(handler(socket)))
        const done = () => {
          handlers.delete(fiber)
          conn.destroy()
        }
        if (fiber.pollUnsafe() !== undefined) return done()
        handlers.add(fiber)
        fiber.addObserver(done)
      },
      Effect.suspend(() => {
        const running = Array.from(handlers)
        handlers.clear()
        return Fiber.interruptAll(running)
      })
    )
    return bound
  })

/**
 * Listens on `address` with a plain `net.Server` and hands every accepted socket (paused, with
 * `noDelay` and TCP keepalive on TCP) to `onConnection`, until the scope closes. Closing happens
 * in order: sockets still arriving are destroyed at once, `beforeClose` runs (the owner ends what
 * it started on the accepted sockets), sockets still open are destroyed, and the close waits for
 * the server. Returns the bound address. The base of `listen`, and of `Peer`, which runs accepted
 * connections without a fiber each.
 *
 * **Example** (Closing every accepted socket at once)
 * ```ts
 * import { Effect } from "effect"
 * import * as Address from "duplex/Address"
 * import * as Transport from "duplex/Transport"
 * const program = Transport.listenNet(Address.tcp("127.0.0.1", 0), (socket) => socket.destroy()).pipe(Effect.scoped)
 * ```
 * @internal
 */
export const listenNet = (
  address: Address.Address,
  onConnection: (conn: Net.Socket) => void,
  beforeClose: Effect.Effect<void> = Effect.void
): Effect.Effect<Address.Address, BindError, Scope.Scope> =>
  Effect.gen(function*() {
    const text = Address.format(address)
    if (address._tag === "Unix") yield* prepareUnixPath(address.path, text)
    const server = Net.createServer({ pauseOnConnect: true })
    const open = new Set<Net.Socket>()
    // one listener for every socket (`this` is the socket), not a closure each
    const forget = function(this: Net.Socket) {
      open.delete(this)
    }
    let closing = false
    server.on("connection", (conn: Net.Socket) => {
      if (closing) return void conn.destroy()
      if (address._tag === "Tcp") {
        conn.setNoDelay(true)
        conn.setKeepAlive(true, 15_000) // the liveness of remotes without PING
      }
      // errors before the connection's own listeners are attached are reported by its reads
      conn.on("error", constVoid)
      open.add(conn)
      conn.on("close", forget)
      onConnection(conn)
    })
    yield* Effect.acquireRelease(
      Effect.callback<void, BindError>((resume) => {
        const onError = (error: Error) => {
          server.off("listening", onListening)
          resume(Effect.fail(new BindError({ address: text, detail: error.message })))
        }
        const onListening = () => {
          server.off("error", onError)
          // later errors (a failed accept) must not become uncaught exceptions; the listener stays
          server.on("error", constVoid)
          resume(Effect.void)
        }
        server.once("error", onError)
        server.once("listening", onListening)
        // a large accept backlog: a burst of connecting peers (thousands at a service's start)
        // must not overflow Node's default of 511, which drops SYNs into a one-second retransmit
        server.listen(
          address._tag === "Tcp"
            ? { host: address.host, port: address.port, backlog: LISTEN_BACKLOG }
            : { path: address.path, backlog: LISTEN_BACKLOG }
        )
      }),
      () =>
        Effect.suspend(() => {
          closing = true
          return beforeClose
        }).pipe(Effect.andThen(Effect.callback<void>((resume) => {
          // the close completes once every accepted socket is closed
          server.close(() => resume(Effect.void))
          for (const conn of Array.from(open)) conn.destroy()
        })))
    )
    if (address._tag === "Unix") {
      // Only once the listen succeeded: the file is ours to remove.
      yield* Effect.addFinalizer(() =>
        Effect.sync(() => {
          try {
            Fs.unlinkSync(address.path)
          } catch {
            // already gone
          }
        })
      )
    }
    const bound = server.address()
    if (address._tag === "Unix" || bound === null || typeof bound === "string") return address
    return Address.tcp(address.host, bound.port)
  })

/** An accepted socket as `effect/socket` opens it: failed if it already closed or errored. */
const acceptedDuplex = (conn: Net.Socket): Effect.Effect<Net.Socket, Socket.SocketError, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.suspend(() =>
      conn.destroyed || conn.closed
        ? Effect.fail(new Socket.SocketError({ reason: new Socket.SocketCloseError({ code: 1000 }) }))
        : Effect.succeed(conn)
    ),
    (conn) =>
      Effect.sync(() => {
        if (!conn.closed) conn.destroySoon()
      })
  )
