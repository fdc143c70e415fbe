/**
 * bench/soak: a long run of unary calls and server streams across connection drops.
 *
 * A server process serves `Soak.Echo` (unary) and `Soak.Ticks` (a server stream of `n` items); a
 * client process makes `--calls` unary calls (default 1,000,000) paced evenly over `--seconds`
 * (default 300), `--concurrency` at a time (default 64), while `--streams` workers (default 4) keep
 * consuming server streams. Every `--drop-every` seconds (default 5) this script SIGKILLs the
 * server and starts a new one on the same address, so the client's connection drops and the peer
 * redials. Reported: calls done, calls failed by typed reason, streams done and failed, connection
 * drops seen by the client, and the client's heap (after GC) at the start and at the end, stable
 * when within ±10%.
 *
 * Run: `node bench/soak.ts [--calls 1000000] [--seconds 300] [--drop-every 5] [--concurrency 64]
 *      [--streams 4] [--unix]` (the client runs with `--expose-gc`).
 */
import { Effect, Exit, Schema, Stream } from "effect"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Peer from "../src/Peer.ts"
import * as Rpc from "../src/Rpc.ts"
import * as RpcClient from "../src/RpcClient.ts"
import * as RpcGroup from "../src/RpcGroup.ts"
import * as RpcServer from "../src/RpcServer.ts"
import { machine } from "./harness.ts"

const Item = Schema.Struct({ id: Schema.Int, name: Schema.String })
const Soak = RpcGroup.make(
  Rpc.unary("Echo", { payload: Item, success: Item }),
  Rpc.serverStream("Ticks", { payload: { n: Schema.Int }, success: Schema.Struct({ i: Schema.Int }) })
).prefix("Soak.")

const STREAM_ITEMS = 2000
const CALL_TIMEOUT = "5 seconds"

const option = (name: string, fallback: number): number => {
  const i = process.argv.indexOf(`--${name}`)
  const text = i >= 0
    ? process.argv[i + 1]
    : process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3)
  return text === undefined ? fallback : Number(text)
}

const mib = (n: number): string => (n / 1024 / 1024).toFixed(1)

// ---------------------------------------------------------------------------------------------
// Server process
// ---------------------------------------------------------------------------------------------

const server = (address: string) =>
  Effect.runPromise(
    Effect.gen(function*() {
      const peer = yield* Peer.make()
      yield* RpcServer.serve(peer, Soak, {
        Echo: (item) => Effect.succeed(item),
        Ticks: ({ n }) => Stream.range(0, n - 1).pipe(Stream.rechunk(50), Stream.map((i) => ({ i })))
      })
      const bound = yield* peer.bind(address)
      process.stdout.write(`ready ${bound}\n`)
      return yield* Effect.never
    }).pipe(Effect.scoped)
  )

// ---------------------------------------------------------------------------------------------
// Client process
// ---------------------------------------------------------------------------------------------

const Counts = Schema.Record(Schema.String, Schema.Number)
const ResultSchema = Schema.Struct({
  ok: Schema.Number,
  issued: Schema.Number,
  failed: Counts,
  streamsOk: Schema.Number,
  streamsFailed: Counts,
  items: Schema.Number,
  disconnects: Schema.Number,
  heapStart: Schema.Number,
  heapEnd: Schema.Number,
  rssStart: Schema.Number,
  rssEnd: Schema.Number,
  seconds: Schema.Number
})
type Result = typeof ResultSchema.Type
const decodeResult = Schema.decodeUnknownSync(ResultSchema)

const describe = (error: unknown): string => {
  if (typeof error === "object" && error !== null && "_tag" in error) {
    if (error._tag === "RpcClientError" && "reason" in error) {
      const reason = error.reason
      if (typeof reason === "object" && reason !== null && "_tag" in reason) {
        return `RpcClientError.${String(reason._tag)}`
      }
    }
    return String(error._tag)
  }
  return String(error)
}

const gcHeap = (): number => {
  const gc = globalThis.gc
  if (gc !== undefined) { for (let i = 0; i < 3; i++) gc() }
  return process.memoryUsage().heapUsed
}

const client = (address: string, calls: number, seconds: number, concurrency: number, streams: number) =>
  Effect.runPromise(
    Effect.gen(function*() {
      const peer = yield* Peer.make()
      let disconnects = 0
      yield* Effect.forkChild(
        Stream.runForEach(peer.events, (e) =>
          Effect.sync(() => {
            if (e._tag === "Disconnected") disconnects++
          })),
        { startImmediately: true }
      )
      yield* peer.connect(address)
      yield* peer.awaitRemotes(1)
      const soak = yield* RpcClient.makeWith(peer, Soak)

      // Warm up (JIT, schema compilers, pools), then measure the starting heap.
      for (let i = 0; i < 50; i++) {
        yield* Effect.all(Array.from({ length: 100 }, (_, j) => soak.Echo({ id: i * 100 + j, name: "warm-up" })), {
          concurrency: "unbounded"
        })
      }
      yield* Stream.runDrain(soak.Ticks({ n: STREAM_ITEMS }))
      const heapStart = gcHeap()
      const rssStart = process.memoryUsage().rss
      process.stdout.write(`start ${heapStart} ${rssStart}\n`)

      const failed: Record<string, number> = {}
      const streamsFailed: Record<string, number> = {}
      let failedCalls = 0
      const count = (table: Record<string, number>, key: string) => {
        table[key] = (table[key] ?? 0) + 1
        if (table === failed) failedCalls++
      }
      let ok = 0
      let issued = 0
      let streamsOk = 0
      let items = 0
      const started = performance.now()
      const deadline = started + seconds * 1000
      const rate = calls / seconds

      let ticks = 0
      const progress = setInterval(() => {
        // every 10 s, the heap after a full GC (the trend shows a leak; the GC pauses are short)
        if (++ticks % 10 === 0) process.stdout.write(`gcheap ${Math.round(performance.now() - started)} ${gcHeap()}\n`)
        const m = process.memoryUsage()
        process.stdout.write(
          `progress ${
            Math.round(performance.now() - started)
          } ${ok} ${failedCalls} ${streamsOk} ${m.heapUsed} ${m.rss} ${disconnects}\n`
        )
      }, 1000)

      const unaryWorker = Effect.gen(function*() {
        while (issued < calls && performance.now() < deadline) {
          const n = issued++
          const wait = started + (n / rate) * 1000 - performance.now()
          if (wait >= 1) yield* Effect.sleep(Math.floor(wait))
          const exit = yield* Effect.exit(soak.Echo({ id: n, name: "soak-0123456789" }, { timeout: CALL_TIMEOUT }))
          if (Exit.isSuccess(exit)) {
            if (exit.value.id === n) ok++
            else count(failed, "WrongReply")
          } else {
            const error = exit.cause.reasons[0]
            count(failed, error?._tag === "Fail" ? describe(error.error) : `Cause.${error?._tag ?? "empty"}`)
          }
        }
      })
      const streamWorker = Effect.gen(function*() {
        while (performance.now() < deadline && issued < calls) {
          const exit = yield* Effect.exit(
            Stream.runFold(soak.Ticks({ n: STREAM_ITEMS }), () => 0, (seen, { i }) => (i === seen ? seen + 1 : -1e9))
          )
          if (Exit.isSuccess(exit)) {
            if (exit.value === STREAM_ITEMS) streamsOk++
            else count(streamsFailed, "OutOfOrder")
            items += Math.max(0, exit.value)
          } else {
            const error = exit.cause.reasons[0]
            count(streamsFailed, error?._tag === "Fail" ? describe(error.error) : `Cause.${error?._tag ?? "empty"}`)
          }
        }
      })
      yield* Effect.all(
        [
          ...Array.from({ length: concurrency }, () => unaryWorker),
          ...Array.from({ length: streams }, () => streamWorker)
        ],
        { concurrency: "unbounded", discard: true }
      )
      const elapsed = (performance.now() - started) / 1000
      clearInterval(progress)

      // Measure the end heap connected, as at the start.
      yield* peer.awaitRemotes(1).pipe(Effect.timeout("30 seconds"), Effect.ignore)
      yield* Effect.all(Array.from({ length: 100 }, (_, j) => soak.Echo({ id: j, name: "cool-down" })), {
        concurrency: "unbounded"
      }).pipe(Effect.ignore)
      const heapEnd = gcHeap()
      const result: Result = {
        ok,
        issued,
        failed,
        streamsOk,
        streamsFailed,
        items,
        disconnects,
        heapStart,
        heapEnd,
        rssStart,
        rssEnd: process.memoryUsage().rss,
        seconds: elapsed
      }
      process.stdout.write(`result ${JSON.stringify(result)}\n`)
    }).pipe(Effect.scoped)
  ).then(() => process.exit(0))

// ---------------------------------------------------------------------------------------------
// Orchestrator
// ---------------------------------------------------------------------------------------------

const self = new URL(import.meta.url).pathname

const spawn = (nodeArgs: ReadonlyArray<string>, args: ReadonlyArray<string>, onLine: (line: string) => void) => {
  const child = ChildProcess.spawn(process.execPath, [...nodeArgs, self, ...args], {
    stdio: ["ignore", "pipe", "inherit"]
  })
  let buffer = ""
  child.stdout.setEncoding("utf8")
  child.stdout.on("data", (chunk: string) => {
    buffer += chunk
    let i: number
    while ((i = buffer.indexOf("\n")) >= 0) {
      onLine(buffer.slice(0, i))
      buffer = buffer.slice(i + 1)
    }
  })
  return child
}

const freeTcpAddress = () =>
  new Promise<string>((resolve) => {
    const probe = Net.createServer()
    probe.listen(0, "127.0.0.1", () => {
      const info = probe.address()
      const port = info !== null && typeof info === "object" ? info.port : 0
      probe.close(() => resolve(`tcp://127.0.0.1:${port}`))
    })
  })

const startServer = (address: string) =>
  new Promise<ChildProcess.ChildProcess>((resolve, reject) => {
    const child = spawn([], ["server", address], (line) => {
      if (line.startsWith("ready ")) resolve(child)
    })
    child.once("exit", (code, signal) => reject(new Error(`server exited before ready (${code ?? signal})`)))
  })

const main = async () => {
  const calls = option("calls", 1_000_000)
  const seconds = option("seconds", 300)
  const dropEvery = option("drop-every", 5)
  const concurrency = option("concurrency", 64)
  const streams = option("streams", 4)
  const unix = process.argv.includes("--unix")
  const dir = unix ? Fs.mkdtempSync(Path.join(Os.tmpdir(), "duplex-soak-")) : undefined
  const address = dir !== undefined ? `unix://${Path.join(dir, "soak.sock")}` : await freeTcpAddress()
  console.log(`# bench/soak — ${machine()}`)
  console.log(
    `${calls} unary calls over ${seconds} s (${concurrency} at a time, ${CALL_TIMEOUT} deadline), ${streams} ` +
      `stream workers (${STREAM_ITEMS} items per stream), server SIGKILLed and restarted every ${dropEvery} s on ${address}`
  )

  let current = await startServer(address)
  let restarts = 0
  let stopping = false
  const killAll = () => current.kill("SIGKILL")
  process.once("exit", killAll)
  const dropper = setInterval(() => {
    if (stopping) return
    const victim = current
    victim.once("exit", () => {
      if (stopping) return
      startServer(address).then(
        (next) => {
          current = next
          restarts++
          if (stopping) next.kill("SIGKILL")
        },
        (error: unknown) => console.error(`restart failed: ${String(error)}`)
      )
    })
    victim.kill("SIGKILL")
  }, dropEvery * 1000)

  let result: Result | undefined
  let heapStart = 0
  const gcHeaps: Array<string> = []
  const rows: Array<string> = []
  let lastOk = 0
  let lastT = 0
  await new Promise<void>((resolve, reject) => {
    const child = spawn(
      ["--expose-gc"],
      ["client", address, String(calls), String(seconds), String(concurrency), String(streams)],
      (line) => {
        const [kind, ...rest] = line.split(" ")
        if (kind === "start") heapStart = Number(rest[0])
        else if (kind === "gcheap") gcHeaps.push(`${(Number(rest[0]) / 1000).toFixed(0)} s: ${mib(Number(rest[1]))}`)
        else if (kind === "progress") {
          const [t, ok, failed, streamsOk, heap, rss, disconnects] = rest.map(Number)
          const perSecond = ((ok! - lastOk) / ((t! - lastT) / 1000)).toFixed(0)
          lastOk = ok!
          lastT = t!
          rows.push(
            `| ${(t! / 1000).toFixed(0).padStart(5)} | ${String(ok).padStart(9)} | ${perSecond.padStart(7)} | ${
              String(failed).padStart(6)
            } | ${String(streamsOk).padStart(7)} | ${String(disconnects).padStart(6)} | ${mib(heap!).padStart(9)} | ${
              mib(rss!).padStart(8)
            } |`
          )
        } else if (kind === "result") result = decodeResult(JSON.parse(rest.join(" ")))
      }
    )
    child.once("exit", (code) => (code === 0 ? resolve() : reject(new Error(`client exited (${code})`))))
  })
  stopping = true
  clearInterval(dropper)
  killAll()
  if (dir !== undefined) Fs.rmSync(dir, { recursive: true, force: true })

  console.log("")
  console.log("| t (s) |  calls ok | calls/s | failed | streams | drops | heap (MiB) | rss (MiB) |")
  console.log("| ----: | --------: | ------: | -----: | ------: | ----: | ---------: | --------: |")
  const every = Math.max(1, Math.ceil(rows.length / 60))
  rows.forEach((row, i) => {
    if (i % every === 0 || i === rows.length - 1) console.log(row)
  })
  if (result === undefined) throw new Error("no result from the client")
  const failedTotal = Object.values(result.failed).reduce((a, b) => a + b, 0)
  const drift = (result.heapEnd - result.heapStart) / result.heapStart
  console.log("")
  console.log(
    `elapsed ${
      result.seconds.toFixed(1)
    } s; server restarts ${restarts}; drops seen by the client ${result.disconnects}`
  )
  console.log(`calls: ${result.issued} issued, ${result.ok} ok, ${failedTotal} failed`)
  for (const [reason, n] of Object.entries(result.failed).sort((a, b) => b[1] - a[1])) {
    console.log(`  failed ${reason}: ${n}`)
  }
  console.log(
    `streams: ${result.streamsOk} ok (${result.items} items), failed: ${JSON.stringify(result.streamsFailed)}`
  )
  console.log(
    `client heap after GC: start ${mib(heapStart || result.heapStart)} MiB, end ${mib(result.heapEnd)} MiB ` +
      `(${(drift * 100).toFixed(1)}%) — ${
        Math.abs(drift) <= 0.1
          ? "stable (within ±10%)"
          : drift < 0
          ? "NOT within ±10%, but lower at the end: no growth"
          : "NOT stable: grew beyond +10%"
      }`
  )
  console.log(`client heap after GC every 10 s (MiB): ${gcHeaps.join(", ")}`)
  console.log(`client rss: start ${mib(result.rssStart)} MiB, end ${mib(result.rssEnd)} MiB`)
  process.exit(0)
}

const [role, ...args] = process.argv.slice(2)
if (role === "server") void server(args[0]!)
else if (role === "client") {
  void client(args[0]!, Number(args[1]), Number(args[2]), Number(args[3]), Number(args[4]))
} else {
  main().catch((error: unknown) => {
    console.error(error)
    process.exit(1)
  })
}
