/**
 * `npm run demo`: two Duplex peers on loopback. One binds, one connects; channels go both ways:
 *
 * 1. the connector opens `Greeter.Hello` before the connection exists (it waits in the edge queue),
 * 2. it streams numbers to `Math.Sum` and reads the total,
 * 3. the binder calls back into the connector (`Client.Progress`) on the same connection,
 * 4. a stream of replies from `Clock.Ticks` ends with EOF,
 * 5. typed RPC both ways: the connector calls `Arith.Add` / `Arith.Div` (typed error) / `Arith.Count`
 *    on the binder, and the binder calls `Progress.Report` on the connector during `Jobs.Run`.
 *
 * Then both peers close with their scope and the process exits by itself.
 */
import { Effect, Fiber, Stream } from "effect"
import * as Peer from "../src/Peer.ts"
import * as RpcClient from "../src/RpcClient.ts"
import * as RpcServer from "../src/RpcServer.ts"
import { Arith, DivideByZero, Jobs, Progress } from "./contracts.ts"

const text = new TextEncoder()
const str = new TextDecoder()
const u32 = (n: number) => new Uint8Array(new Uint32Array([n]).buffer)
const readU32 = (bytes: Uint8Array) => new DataView(bytes.buffer, bytes.byteOffset, 4).getUint32(0, true)
const log = (who: string, line: string) => Effect.sync(() => console.log(`${who.padEnd(9)} ${line}`))

const program = Effect.gen(function*() {
  // --- the binding peer ("server", but it calls back too) -----------------------------------
  const binder = yield* Peer.make()
  yield* binder.serve((channel) => {
    switch (channel.method) {
      case "Greeter.Hello":
        return Effect.gen(function*() {
          const name = str.decode(yield* channel.take)
          yield* log("binder", `Greeter.Hello from ${channel.remoteId.slice(0, 8)}: ${name}`)
          yield* channel.sendLast(text.encode(`hello, ${name}!`))
        })
      case "Math.Sum":
        return Effect.gen(function*() {
          let total = 0
          yield* Stream.runForEach(channel.input, (n) => Effect.sync(() => (total += readU32(n))))
          // calling back into the peer that called us, over the same connection
          const progress = yield* binder.open("Client.Progress", { remote: channel.remoteId })
          yield* progress.sendLast(text.encode(`summed to ${total}`))
          yield* Stream.runDrain(progress.input)
          yield* channel.sendLast(u32(total))
        }).pipe(Effect.scoped)
      case "Clock.Ticks":
        return Effect.gen(function*() {
          yield* channel.take
          for (let i = 1; i <= 3; i++) yield* channel.send(text.encode(`tick ${i}`))
          yield* channel.end
        })
      default:
        return channel.fail(`duplex: can't find method ${channel.method}`)
    }
  })
  const address = yield* binder.bind("tcp://127.0.0.1:0")
  yield* log("binder", `bound ${address}`)

  // --- the connecting peer ------------------------------------------------------------------
  const connector = yield* Peer.make()
  yield* connector.serve((channel) =>
    Effect.gen(function*() {
      const message = str.decode(yield* channel.take)
      yield* log("connector", `callback ${channel.method}: ${message}`)
      yield* channel.end
    })
  )

  // An open before any connection: it waits in the edge queue.
  const early = yield* Effect.forkChild(
    Effect.scoped(Effect.gen(function*() {
      const channel = yield* connector.open("Greeter.Hello", { headers: { "trace-id": "demo-1" } })
      yield* channel.sendLast(text.encode("Ada"))
      return str.decode(yield* channel.take)
    })),
    { startImmediately: true }
  )
  yield* log("connector", `queued opens before connecting: ${yield* connector.pendingOpens}`)
  yield* connector.connect(address)
  yield* log("connector", `reply: ${yield* Fiber.join(early)}`)

  // Streaming input, with a callback in the middle.
  const total = yield* Effect.scoped(Effect.gen(function*() {
    const channel = yield* connector.open("Math.Sum")
    for (const n of [1, 2, 3, 4]) yield* channel.send(u32(n))
    yield* channel.end
    return readU32(yield* channel.take)
  }))
  yield* log("connector", `Math.Sum(1..4) = ${total}`)

  // Streaming output.
  const ticks = yield* Effect.scoped(Effect.gen(function*() {
    const channel = yield* connector.open("Clock.Ticks")
    yield* channel.sendLast(new Uint8Array(0))
    return yield* Stream.runCollect(Stream.map(channel.input, (b) => str.decode(b)))
  }))
  yield* log("connector", `Clock.Ticks: ${ticks.join(", ")}`)

  // --- typed RPC both ways ------------------------------------------------------------------
  yield* RpcServer.serve(binder, Arith, {
    Add: ({ A, B }) => Effect.succeed({ C: A + B }),
    Div: ({ A, B }) =>
      B === 0 ? Effect.fail(new DivideByZero({ dividend: A })) : Effect.succeed({ C: Math.trunc(A / B) }),
    Count: ({ A }) => Stream.range(1, A).pipe(Stream.map((C) => ({ C }))),
    Sum: (inputs) => Stream.runFold(inputs, () => 0, (total, { A }) => total + A).pipe(Effect.map((C) => ({ C })))
  })
  yield* RpcServer.serve(binder, Jobs, {
    Run: ({ steps }, call) =>
      Effect.gen(function*() {
        // the binder calls back into the peer that called it
        const caller = yield* RpcClient.makeWith(binder, Progress, { remote: call.remoteId })
        for (let step = 1; step <= steps; step++) yield* caller.Report({ percent: (100 * step) / steps })
        return `${steps} steps done`
      }).pipe(Effect.orDie)
  })
  yield* RpcServer.serve(connector, Progress, {
    Report: ({ percent }) =>
      log("connector", `Progress.Report ${percent}% (called by the binder)`).pipe(Effect.as(true))
  })
  const arith = yield* RpcClient.makeWith(connector, Arith)
  yield* log("connector", `Arith.Add(7, 8) = ${(yield* arith.Add({ A: 7, B: 8 })).C}`)
  const divError = yield* Effect.flip(arith.Div({ A: 1, B: 0 }))
  yield* log("connector", `Arith.Div(1, 0) failed with ${divError._tag}: ${divError.message}`)
  const counted = yield* Stream.runCollect(arith.Count({ A: 3 }))
  yield* log("connector", `Arith.Count(3) streamed ${counted.map((r) => r.C).join(", ")}`)
  const jobs = yield* RpcClient.makeWith(connector, Jobs)
  yield* log("connector", `Jobs.Run: ${yield* jobs.Run({ steps: 2 })}`)

  // The binder sees who is connected.
  for (const remote of yield* binder.remotes) {
    yield* log("binder", `remote ${remote.id.slice(0, 8)} ${remote.direction} via ${remote.address}`)
  }
}).pipe(Effect.scoped, Effect.timeout("10 seconds"))

Effect.runPromise(program).then(
  () => console.log("demo done"),
  (error) => {
    console.error("demo failed:", error)
    process.exitCode = 1
  }
)
