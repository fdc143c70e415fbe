/**
 * Frame-level tools for the flow-control, liveness and fuzz tests:
 *
 * - `FrameTap`: decodes one direction of a connection incrementally (after its 36-byte greeting),
 *   keeps a small record of every frame and lets a test wait (event-driven) for a condition.
 * - `rawPeer`: a plain `node:net` socket that speaks DUPLEX/1 by hand (greeting, optional HELLO,
 *   optional PONG answers) and decodes what it receives as it arrives (linear in the byte count,
 *   unlike `utils/raw.ts`, so it suits megabytes of traffic).
 * - `relay`: a loopback relay between two peers (TCP or Unix) that taps both directions and can
 *   silently stop forwarding without closing anything (a dropped link), then restore.
 */
import { Effect, Scope } from "effect"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Path from "node:path"
import * as Frame from "../../src/Frame.ts"
import { encodeFrame, FrameDecoder, FrameEncoder } from "../../src/FrameCodec.ts"
import * as Greeting from "../../src/Greeting.ts"
import * as Headers from "../../src/Headers.ts"
import { FrameType, GREETING_LENGTH } from "../../src/Protocol.ts"
import { netTarget, tempDir } from "./helpers.ts"

/** Encodes `frames` back to back with one encoder (`encodeFrame` allocates a 64 KiB slab per call). */
export const encodeAll = (frames: ReadonlyArray<Frame.Frame>): Uint8Array => {
  const encoder = new FrameEncoder()
  for (const frame of frames) encoder.write(frame)
  return Uint8Array.from(encoder.flush() ?? new Uint8Array(0))
}

// ---------------------------------------------------------------------------------------------
// Frame tap
// ---------------------------------------------------------------------------------------------

/** What a tap keeps of one frame: every slot but the payload, of which only the length and head. */
export interface TappedFrame {
  readonly type: number
  readonly channel: number
  readonly method: string
  readonly headers: Headers.Headers
  readonly error: string
  readonly last: boolean
  /** Payload length, or -1 for a nil payload. */
  readonly length: number
  /** The first (at most) 64 payload bytes, copied. */
  readonly head: Uint8Array
}

const keep = (frame: Frame.Frame): TappedFrame => ({
  type: frame.type,
  channel: frame.channel,
  method: frame.method,
  headers: frame.headers,
  error: frame.error,
  last: frame.last,
  length: frame.payload === null ? -1 : frame.payload.length,
  head: frame.payload === null ? new Uint8Array(0) : Uint8Array.from(frame.payload.subarray(0, 64))
})

/** A waiter list: `notify` re-runs every pending check. */
class Signal {
  private listeners: Array<() => void> = []
  notify(): void {
    const current = this.listeners
    this.listeners = []
    for (const l of current) l()
  }
  /** Resumes once `predicate` holds (checked now and on every notify); `failed` ends the wait. */
  until<E>(predicate: () => boolean, failed: () => E | undefined = () => undefined): Effect.Effect<void, E> {
    return Effect.callback<void, E>((resume) => {
      const check = () => {
        if (predicate()) return resume(Effect.void)
        const error = failed()
        if (error !== undefined) return resume(Effect.fail(error))
        this.listeners.push(check)
      }
      check()
      return Effect.sync(() => {
        this.listeners = this.listeners.filter((l) => l !== check)
      })
    })
  }
}

/** Decodes one direction of a connection: a 36-byte greeting, then frames. */
export class FrameTap {
  readonly frames: Array<TappedFrame> = []
  readonly counts = new Map<number, number>()
  /** The greeting (peer id) once 36 bytes arrived. */
  greeting: string | undefined = undefined
  /** Set when the bytes stopped decoding (the tap then ignores the rest). */
  error: string | undefined = undefined
  /** Bytes seen, greeting included. */
  bytes = 0
  private greetingBytes: Array<number> = []
  private readonly decoder = new FrameDecoder({ maxFrameBytes: 256 * 1024 * 1024 })
  private readonly signal: Signal
  private readonly onFrame: ((frame: TappedFrame) => void) | undefined

  constructor(signal: Signal = new Signal(), onFrame?: (frame: TappedFrame) => void) {
    this.signal = signal
    this.onFrame = onFrame
  }

  feed(chunk: Uint8Array): void {
    this.bytes += chunk.length
    let data = chunk
    if (this.greeting === undefined) {
      const take = Math.min(GREETING_LENGTH - this.greetingBytes.length, data.length)
      for (let i = 0; i < take; i++) this.greetingBytes.push(data[i]!)
      data = data.subarray(take)
      if (this.greetingBytes.length === GREETING_LENGTH) this.greeting = String.fromCharCode(...this.greetingBytes)
    }
    if (data.length > 0 && this.error === undefined) {
      const error = this.decoder.feed(data, (frame) => {
        const kept = keep(frame)
        this.frames.push(kept)
        this.counts.set(frame.type, (this.counts.get(frame.type) ?? 0) + 1)
        this.onFrame?.(kept)
      })
      if (error !== undefined) this.error = error.message
    }
    this.signal.notify()
  }

  count(type: number): number {
    return this.counts.get(type) ?? 0
  }

  /** Frames of `type` (optionally on `channel`). */
  ofType(type: number, channel?: number): Array<TappedFrame> {
    return this.frames.filter((f) => f.type === type && (channel === undefined || f.channel === channel))
  }

  /** Waits until `predicate` holds (checked after every chunk). */
  until(predicate: () => boolean): Effect.Effect<void> {
    return this.signal.until(predicate)
  }
}

// ---------------------------------------------------------------------------------------------
// Raw Duplex-speaking socket
// ---------------------------------------------------------------------------------------------

export class RawPeerClosed extends Error {}

export interface RawPeer {
  /** Our greeting id. */
  readonly id: string
  /** What the remote sent (its greeting, then frames). */
  readonly tap: FrameTap
  /** Writes bytes in one `write` call; resumes once they are handed to the kernel (or the socket is gone). */
  readonly write: (data: Uint8Array) => Effect.Effect<void>
  /** Encodes `frames` and writes them in one `write` call. */
  readonly send: (...frames: ReadonlyArray<Frame.Frame>) => Effect.Effect<void>
  /** Waits until `predicate` holds on what was received; fails if the socket closes first. */
  readonly until: (predicate: (tap: FrameTap) => boolean) => Effect.Effect<void, RawPeerClosed>
  /** The first received frame matching `predicate` (waiting for it). */
  readonly frame: (predicate: (frame: TappedFrame) => boolean) => Effect.Effect<TappedFrame, RawPeerClosed>
  /** Completes when the socket has closed. */
  readonly closed: Effect.Effect<void>
  readonly isClosed: () => boolean
  /** Half-closes our side (FIN). */
  readonly end: Effect.Effect<void>
  /** Stops reading: the kernel buffers fill up and the remote's writes stall. */
  readonly pause: Effect.Effect<void>
}

export interface RawPeerOptions {
  /** Capabilities of a HELLO sent right after the greeting (in the same write); none when undefined. */
  readonly hello?: Headers.Headers | undefined
  /** Answer every PING with a PONG (as a Duplex peer that announced `ping` does). */
  readonly answerPings?: boolean | undefined
  /** Our greeting id (default: random). */
  readonly id?: string | undefined
}

/** Connects to `address`, writes the greeting (and HELLO); destroyed when the scope closes. */
export const rawPeer = (
  address: string,
  options: RawPeerOptions = {}
): Effect.Effect<RawPeer, Error, Scope.Scope> =>
  Effect.gen(function*() {
    const id = options.id ?? Greeting.makeId()
    const socket = yield* Effect.acquireRelease(
      Effect.callback<Net.Socket, Error>((resume) => {
        const socket = Net.createConnection(netTarget(address))
        const onError = (error: Error) => resume(Effect.fail(error))
        socket.once("error", onError)
        socket.once("connect", () => {
          socket.off("error", onError)
          socket.setNoDelay(true) // no Nagle delay between a test's consecutive small writes
          resume(Effect.succeed(socket))
        })
      }),
      (socket) => Effect.sync(() => socket.destroy())
    )
    const signal = new Signal()
    let closed = false
    const tap = new FrameTap(signal, (frame) => {
      if (options.answerPings === true && frame.type === FrameType.Ping && !closed) {
        socket.write(encodeFrame(Frame.make(FrameType.Pong, 0, "", Headers.empty, "", false, null)))
      }
    })
    socket.on("data", (chunk: Buffer) => tap.feed(chunk))
    socket.on("error", () => {
      // reported through "close"
    })
    socket.on("close", () => {
      closed = true
      signal.notify()
    })
    const write = (data: Uint8Array) =>
      Effect.callback<void>((resume) => {
        if (closed || socket.destroyed) return resume(Effect.void)
        socket.write(data, () => resume(Effect.void))
      })
    const greeting = Greeting.encode(id)
    yield* write(
      options.hello === undefined
        ? greeting
        : Buffer.concat([greeting, encodeFrame(Frame.hello(options.hello))])
    )
    const until = (predicate: (tap: FrameTap) => boolean) =>
      signal.until(
        () => predicate(tap),
        () => closed ? new RawPeerClosed(`raw socket closed after ${tap.bytes} bytes`) : undefined
      )
    return {
      id,
      tap,
      write,
      send: (...frames) => write(encodeAll(frames)),
      until,
      frame: (predicate) => Effect.map(until((t) => t.frames.some(predicate)), () => tap.frames.find(predicate)!),
      closed: signal.until(() => closed),
      isClosed: () => closed,
      end: Effect.sync(() => {
        socket.end()
      }),
      pause: Effect.sync(() => {
        socket.pause()
      })
    }
  })

// ---------------------------------------------------------------------------------------------
// Relay
// ---------------------------------------------------------------------------------------------

interface Pair {
  readonly index: number
  readonly client: Net.Socket
  upstream: Net.Socket | undefined
  readonly c2s: FrameTap
  readonly s2c: FrameTap
  /** Bytes were dropped on this pair (or it was made during a cut): it never carries data again. */
  tainted: boolean
}

export interface Relay {
  /** The address to dial (tcp:// or unix://, the same kind as the target). */
  readonly address: string
  /** Stops forwarding in both directions without closing anything (bytes are silently dropped). */
  readonly cut: Effect.Effect<void>
  /**
   * Forwards again. Connections that lost bytes, or were accepted during the cut, are destroyed
   * (their ends see a reset), as a link that comes back cannot repair a broken byte stream.
   */
  readonly restore: Effect.Effect<void>
  /** Every pair so far, in accept order: the tap of each direction. */
  readonly pairs: () => ReadonlyArray<{ readonly c2s: FrameTap; readonly s2c: FrameTap }>
  /** Frames of `type` forwarded in a direction, over all pairs. */
  readonly count: (direction: "c2s" | "s2c", type: number) => number
  /** Waits until `predicate` holds (checked on every forwarded chunk and connection change). */
  readonly until: (predicate: () => boolean) => Effect.Effect<void>
}

/**
 * A relay in front of `target`: listens on 127.0.0.1:0 (TCP target) or a fresh Unix path, and for
 * every accepted connection dials the target and forwards both ways. Closed with the scope.
 */
export const relay = (target: string): Effect.Effect<Relay, Error, Scope.Scope> =>
  Effect.gen(function*() {
    const signal = new Signal()
    const pairs: Array<Pair> = []
    let cutting = false
    const isUnix = target.startsWith("unix://")
    const listenPath = isUnix ? Path.join(yield* tempDir, "relay.sock") : undefined

    const dropPair = (pair: Pair) => {
      pair.client.destroy()
      pair.upstream?.destroy()
    }
    const forward = (pair: Pair, from: Net.Socket, tap: FrameTap, to: () => Net.Socket | undefined) => {
      from.on("data", (chunk: Buffer) => {
        const dest = to()
        if (cutting || pair.tainted || dest === undefined) {
          pair.tainted = true
          return
        }
        tap.feed(chunk)
        dest.write(chunk)
      })
      from.on("error", () => {
        // reported through "close"
      })
      from.on("close", () => {
        // A dropped link does not carry a close either.
        if (!cutting && !pair.tainted) dropPair(pair)
        signal.notify()
      })
    }

    const server = yield* Effect.acquireRelease(
      Effect.callback<Net.Server, Error>((resume) => {
        const server = Net.createServer((client) => {
          const pair: Pair = {
            index: pairs.length,
            client,
            upstream: undefined,
            c2s: new FrameTap(signal),
            s2c: new FrameTap(signal),
            tainted: cutting
          }
          pairs.push(pair)
          forward(pair, client, pair.c2s, () => pair.upstream)
          if (!pair.tainted) {
            client.pause()
            const upstream = Net.createConnection(netTarget(target))
            pair.upstream = upstream
            upstream.once("connect", () => client.resume())
            forward(pair, upstream, pair.s2c, () => pair.client)
          }
          signal.notify()
        })
        server.once("error", (error) => resume(Effect.fail(error)))
        const listenOn = listenPath !== undefined ? { path: listenPath } : { host: "127.0.0.1", port: 0 }
        server.listen(listenOn, () => resume(Effect.succeed(server)))
      }),
      (server) =>
        Effect.callback<void>((resume) => {
          for (const pair of pairs) dropPair(pair)
          server.close(() => resume(Effect.void))
          if (listenPath !== undefined) Fs.rmSync(listenPath, { force: true })
        })
    )
    const info = server.address()
    const address = listenPath !== undefined
      ? `unix://${listenPath}`
      : `tcp://127.0.0.1:${info !== null && typeof info === "object" ? info.port : 0}`
    return {
      address,
      cut: Effect.sync(() => {
        cutting = true
      }),
      restore: Effect.sync(() => {
        cutting = false
        for (const pair of pairs) if (pair.tainted) dropPair(pair)
      }),
      pairs: () => pairs.map((p) => ({ c2s: p.c2s, s2c: p.s2c })),
      count: (direction, type) => pairs.reduce((n, p) => n + p[direction].count(type), 0),
      until: (predicate) => signal.until(predicate)
    }
  })
