/**
 * A small set of channel handlers used by the peer tests, and helpers to set up connected peers.
 * Every handler records what it saw in a queue *before* its last output, so once the opener has
 * seen the end of its input the record is there.
 */
import { Effect, Exit, Queue, Schedule, Scope, Stream } from "effect"
import type * as Channel from "../../src/Channel.ts"
import * as Peer from "../../src/Peer.ts"
import { bytes, collect, inputFailure, text, within } from "./helpers.ts"

export interface Seen {
  readonly method: string
  readonly headers: Readonly<Record<string, string>>
  readonly remoteId: string
  readonly direction: "outgoing" | "incoming"
  readonly id: number
  readonly note: string
}

export type Log = Queue.Queue<Seen>

/** `Tag:text` of a channel error (text empty for reasons without one). */
export const describeError = (error: Channel.ChannelError): string => {
  const reason = error.reason
  const payload = reason._tag === "RemoteFailure" && reason.payload !== undefined
    ? `:${Buffer.from(reason.payload).toString("hex")}`
    : ""
  return `${reason._tag}:${"text" in reason ? reason.text : ""}${payload}`
}

const outcome = <A>(effect: Effect.Effect<Array<A>, Channel.ChannelError>) =>
  Effect.match(effect, {
    onSuccess: (items) => `ok:${items.join(",")}`,
    onFailure: (error) => `err:${describeError(error)}`
  })

/**
 * - `Echo.Each`: echoes every message as it arrives; ends after the input ended.
 * - `Info.Get`: sends a JSON description of the channel as it sees it, reads the input, ends.
 * - `Half.AfterEnd`: reads the whole input, then sends each message back with `!`, then ends.
 * - `Half.EndFirst`: sends `h1`, `h2`, ends its output, then reads the whole input.
 * - `Fail.Now`: fails its output with `boom <method>`, then reads the input.
 * - `Report`: reads the input (recording success or the failure), then ends.
 * - `Abort.Wait`: sends `ready`, then waits for its input to fail.
 * - `Cancel.Me`: sends `bye` and returns at once (the runtime cancels the channel).
 * - `Count`: replies `ok` with last = true and reads the input.
 * - `Die.Now`: records, then dies with a defect.
 */
export const handler = (log: Log): Peer.Handler => (channel) =>
  Effect.gen(function*() {
    const record = (note: string) =>
      Queue.offer(log, {
        method: channel.method,
        headers: { ...channel.headers },
        remoteId: channel.remoteId,
        direction: channel.direction,
        id: channel.id,
        note
      })
    switch (channel.method) {
      case "Echo.Each": {
        const seen: Array<string> = []
        yield* Stream.runForEach(channel.input, (message) => {
          seen.push(text(message))
          return channel.send(message)
        })
        yield* record(seen.join(","))
        return yield* channel.end
      }
      case "Info.Get": {
        yield* channel.send(bytes(JSON.stringify({
          method: channel.method,
          headers: { ...channel.headers },
          remoteId: channel.remoteId,
          direction: channel.direction
        })))
        const note = yield* outcome(collect(channel))
        yield* record(note)
        return yield* channel.end
      }
      case "Half.AfterEnd": {
        const input = yield* collect(channel)
        for (const message of input) yield* channel.send(bytes(message + "!"))
        yield* record(input.join(","))
        return yield* channel.end
      }
      case "Half.EndFirst": {
        yield* channel.send(bytes("h1"))
        yield* channel.send(bytes("h2"))
        yield* channel.end
        const note = yield* outcome(collect(channel))
        yield* record(note)
        return yield* channel.done
      }
      case "Fail.Now": {
        yield* channel.fail(`boom ${channel.method}`)
        const note = yield* outcome(collect(channel))
        return yield* record(note)
      }
      case "Report": {
        const note = yield* outcome(collect(channel))
        yield* record(note)
        return yield* channel.end
      }
      case "Abort.Wait": {
        yield* channel.send(bytes("ready"))
        const error = yield* inputFailure(channel)
        yield* channel.done
        return yield* record(`err:${describeError(error)}`)
      }
      case "Cancel.Me": {
        yield* channel.send(bytes("bye"))
        return yield* record("returned")
      }
      case "Count": {
        yield* record("")
        yield* channel.sendLast(bytes("ok"))
        return yield* Stream.runDrain(channel.input)
      }
      case "Die.Now": {
        yield* record("dying")
        return yield* Effect.die(new Error("handler bug"))
      }
      default:
        return yield* channel.fail(`no such method ${channel.method}`)
    }
  })

/** Fast redial for tests. */
export const fastReconnect = Schedule.spaced("20 millis")

/** Opens `method`, sends `messages` (the last with last = true), returns the replies as text. */
export const call = (
  peer: Peer.Peer,
  method: string,
  messages: ReadonlyArray<string>,
  options: Peer.OpenOptions = {}
): Effect.Effect<Array<string>, Channel.ChannelError | Peer.EdgeQueueFull | Peer.PeerClosed> =>
  Effect.scoped(Effect.gen(function*() {
    const channel = yield* peer.open(method, options)
    for (let i = 0; i < messages.length; i++) {
      const message = bytes(messages[i]!)
      yield* i === messages.length - 1 ? channel.sendLast(message) : channel.send(message)
    }
    if (messages.length === 0) yield* channel.end
    return yield* collect(channel)
  }))

/** Takes the next record of a handler log (bounded). */
export const nextSeen = (log: Log, label = "handler record"): Effect.Effect<Seen> =>
  Queue.take(log).pipe(within(label, "10 seconds"))

export interface Pair {
  readonly binder: Peer.Peer
  readonly connector: Peer.Peer
  readonly bound: string
  readonly binderLog: Log
  readonly connectorLog: Log
}

/** A binder bound on `address` and a connector connected to it, both serving `handler`. */
export const connectedPair = (
  address: string,
  options: { readonly binder?: Peer.Options; readonly connector?: Peer.Options } = {}
): Effect.Effect<Pair, unknown, Scope.Scope> =>
  Effect.gen(function*() {
    const binderLog = yield* Queue.unbounded<Seen>()
    const connectorLog = yield* Queue.unbounded<Seen>()
    const binder = yield* Peer.make(options.binder)
    yield* binder.serve(handler(binderLog))
    const bound = yield* binder.bind(address)
    const connector = yield* Peer.make({ reconnect: fastReconnect, ...options.connector })
    yield* connector.serve(handler(connectorLog))
    yield* connector.connect(bound)
    yield* connector.awaitRemotes(1).pipe(within("connector sees the binder", "10 seconds"))
    yield* binder.awaitRemotes(1).pipe(within("binder sees the connector", "10 seconds"))
    return { binder, connector, bound, binderLog, connectorLog }
  })

/** Runs `effect` in a fresh scope that the caller closes with the returned `close`. */
export const inScope = <A, E, R>(
  effect: Effect.Effect<A, E, R>
): Effect.Effect<{ readonly value: A; readonly close: Effect.Effect<void> }, E, Exclude<R, Scope.Scope>> =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const value = yield* effect.pipe(
      Scope.provide(scope),
      Effect.onError(() => Scope.close(scope, Exit.void))
    )
    return { value, close: Scope.close(scope, Exit.void) }
  })
