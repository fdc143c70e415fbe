/**
 * A plain `node:net` socket driven from Effect, for speaking raw bytes to a Duplex peer: it
 * records everything received and lets a test wait (bounded) for a byte count, a predicate, or
 * the close.
 */
import { Effect, Scope } from "effect"
import * as Net from "node:net"
import type { Frame } from "../../src/Frame.ts"
import { FrameDecoder } from "../../src/FrameCodec.ts"
import { GREETING_LENGTH } from "../../src/Protocol.ts"
import { netTarget } from "./helpers.ts"

export interface RawSocket {
  /** Writes bytes in one `write` call. */
  readonly write: (data: Uint8Array) => Effect.Effect<void>
  /** Everything received so far. */
  readonly received: () => Buffer
  /** Waits until the received bytes satisfy `predicate` (or the socket closes: then fails). */
  readonly waitUntil: (predicate: (received: Buffer) => boolean) => Effect.Effect<Buffer, RawClosed>
  /** Waits until at least `count` bytes have arrived. */
  readonly waitBytes: (count: number) => Effect.Effect<Buffer, RawClosed>
  /** Completes when the socket has closed (the remote ended or reset it). */
  readonly closed: Effect.Effect<void>
  /** Whether the socket has closed. */
  readonly isClosed: () => boolean
  /** Half-closes our side (FIN). */
  readonly end: Effect.Effect<void>
  /** Stops reading: the kernel buffers fill up and the remote's writes stall. */
  readonly pause: Effect.Effect<void>
}

export class RawClosed extends Error {
  readonly received: Buffer
  constructor(received: Buffer) {
    super(`raw socket closed after ${received.length} bytes`)
    this.received = received
  }
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
  socket.on("error", () => {
    // reported through "close"
  })
  socket.on("close", () => {
    closed = true
    notify()
  })
  const received = () => Buffer.concat(chunks)
  const waitUntil = (predicate: (received: Buffer) => boolean): Effect.Effect<Buffer, RawClosed> =>
    Effect.callback<Buffer, RawClosed>((resume) => {
      const check = () => {
        const all = received()
        if (predicate(all)) return resume(Effect.succeed(all))
        if (closed) return resume(Effect.fail(new RawClosed(all)))
        listeners.push(check)
      }
      check()
      return Effect.sync(() => {
        listeners = listeners.filter((l) => l !== check)
      })
    })
  return {
    write: (data) =>
      Effect.callback<void>((resume) => {
        socket.write(data, () => resume(Effect.void))
      }),
    received,
    waitUntil,
    waitBytes: (count) => waitUntil((all) => all.length >= count),
    closed: Effect.callback<void>((resume) => {
      const check = () => {
        if (closed) return resume(Effect.void)
        listeners.push(check)
      }
      check()
      return Effect.sync(() => {
        listeners = listeners.filter((l) => l !== check)
      })
    }),
    isClosed: () => closed,
    end: Effect.sync(() => {
      socket.end()
    }),
    pause: Effect.sync(() => {
      socket.pause()
    })
  }
}

/** Connects a raw socket to `address` (tcp:// or unix://); destroyed when the scope closes. */
export const connectRaw = (address: string): Effect.Effect<RawSocket, Error, Scope.Scope> =>
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

/** A raw server (a stand-in for an original binder); closed with the scope. */
export interface RawServer {
  /** The bound address (the real port for TCP). */
  readonly address: string
  /** The first accepted connection. */
  readonly accepted: Effect.Effect<RawSocket>
  /** The `index`-th accepted connection (0-based), with the time (ms) it was accepted. */
  readonly nth: (index: number) => Effect.Effect<{ readonly socket: RawSocket; readonly at: number }>
}

/** Listens on `address` (port 0 / a fresh path) with a plain `node:net` server. */
export const listenRaw = (address: string): Effect.Effect<RawServer, Error, Scope.Scope> =>
  Effect.gen(function*() {
    const accepted: Array<{ readonly socket: RawSocket; readonly raw: Net.Socket; readonly at: number }> = []
    let waiters: Array<() => void> = []
    const server = yield* Effect.acquireRelease(
      Effect.callback<Net.Server, Error>((resume) => {
        const server = Net.createServer((socket) => {
          accepted.push({ socket: wrap(socket), raw: socket, at: performance.now() })
          const current = waiters
          waiters = []
          for (const w of current) w()
        })
        server.once("error", (error) => resume(Effect.fail(error)))
        const target = netTarget(address)
        const listenOn = "path" in target ? { path: target.path } : { host: target.host ?? "127.0.0.1", port: 0 }
        server.listen(listenOn, () => resume(Effect.succeed(server)))
      }),
      (server) =>
        Effect.callback<void>((resume) => {
          for (const a of accepted) a.raw.destroy()
          server.close(() => resume(Effect.void))
        })
    )
    const info = server.address()
    const bound = info !== null && typeof info === "object" ? `tcp://127.0.0.1:${info.port}` : address
    const nth = (index: number) =>
      Effect.callback<{ readonly socket: RawSocket; readonly at: number }>((resume) => {
        const check = () => {
          const entry = accepted[index]
          if (entry !== undefined) return resume(Effect.succeed({ socket: entry.socket, at: entry.at }))
          waiters.push(check)
        }
        check()
        return Effect.sync(() => {
          waiters = waiters.filter((w) => w !== check)
        })
      })
    return { address: bound, accepted: Effect.map(nth(0), (e) => e.socket), nth }
  })

/** One decoded frame with the exact bytes it was decoded from. */
export interface RawFrame {
  readonly frame: Frame
  readonly bytes: Buffer
}

/**
 * Splits a byte stream into frames with their exact bytes (a frame ends at the byte where the
 * decoder, fed one byte at a time, completes it). A partial tail is ignored.
 */
export const splitFrames = (data: Uint8Array): Array<RawFrame> => {
  const decoder = new FrameDecoder()
  const out: Array<RawFrame> = []
  let start = 0
  for (let i = 0; i < data.length; i++) {
    let completed: Frame | undefined
    const error = decoder.feed(data.subarray(i, i + 1), (f) => {
      completed = f
    })
    if (error !== undefined) throw new Error(`undecodable bytes from the peer: ${error.message}`)
    if (completed !== undefined) {
      out.push({ frame: completed, bytes: Buffer.from(data.subarray(start, i + 1)) })
      start = i + 1
    }
  }
  return out
}

/** The frames after the 36-byte greeting of `received`. */
export const framesAfterGreeting = (received: Buffer): Array<RawFrame> =>
  splitFrames(received.subarray(GREETING_LENGTH))
