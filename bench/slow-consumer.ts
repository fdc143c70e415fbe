/**
 * bench/slow-consumer: memory of both ends when a fast producer streams to a slow consumer.
 *
 * A producer process serves an RPC server stream of `--bytes` (default 1 GiB) as 64 KiB chunks; a
 * consumer process calls it and reads at `--rate` bytes per second (default 1 MB/s). Flow control
 * (the `credit` window, default 256 KiB per channel) must hold the producer back, so neither
 * process buffers the stream: both report their RSS every second; this script prints the RSS over
 * time, the baseline (just before the stream) and the maximum of each, and the producer's lead
 * (bytes produced − bytes consumed), then PASS when both stay under baseline + 64 MiB.
 *
 * Run: `node bench/slow-consumer.ts [--bytes 1GiB] [--rate 1MB] [--quick] [--window 256KiB]`
 *      `--quick` = `--bytes 64MiB`. Sizes take B, KB/MB/GB (10^3) and KiB/MiB/GiB (2^10).
 * At 1 MB/s the full 1 GiB run takes ~18 minutes; `--bytes 64MiB --rate 1MB` takes ~70 s.
 */
import { Effect, Schema, Stream } from "effect"
import * as ChildProcess from "node:child_process"
import * as Peer from "../src/Peer.ts"
import * as Rpc from "../src/Rpc.ts"
import * as RpcClient from "../src/RpcClient.ts"
import * as RpcGroup from "../src/RpcGroup.ts"
import * as RpcServer from "../src/RpcServer.ts"
import { machine } from "./harness.ts"

const CHUNK = 64 * 1024
const MiB = 1024 * 1024
const LIMIT = 64 * MiB

const Slow = RpcGroup.make(
  Rpc.serverStream("Bulk", { payload: { bytes: Schema.Number, chunk: Schema.Int }, success: Schema.Uint8Array })
).prefix("Slow.")

// ---------------------------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------------------------

const units: Record<string, number> = {
  "": 1,
  b: 1,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  kib: 1024,
  mib: MiB,
  gib: 1024 * MiB
}

/** Parses `64MiB`, `1GB`, `500KB`, `1048576`. */
const parseSize = (text: string): number => {
  const m = /^\s*([\d.]+)\s*([a-z]*)\s*$/i.exec(text)
  const unit = m === null ? undefined : units[m[2]!.toLowerCase()]
  if (m === null || unit === undefined) throw new Error(`bad size: ${text}`)
  return Math.round(Number(m[1]) * unit)
}

const option = (name: string): string | undefined => {
  const i = process.argv.indexOf(`--${name}`)
  if (i >= 0) return process.argv[i + 1]
  return process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3)
}

const mib = (n: number): string => (n / MiB).toFixed(1)

// ---------------------------------------------------------------------------------------------
// Children: one line per event on stdout
// ---------------------------------------------------------------------------------------------

/**
 * Answers every `sample` line on stdin with `rss <rss> <count>`: the orchestrator asks both
 * processes at the same instant, so their counts line up.
 */
const answerSamples = (count: () => number): void => {
  process.stdin.setEncoding("utf8")
  process.stdin.on("data", (chunk: string) => {
    for (const line of chunk.split("\n")) {
      if (line.trim() === "sample") process.stdout.write(`rss ${process.memoryUsage().rss} ${count()}\n`)
    }
  })
}

const producer = (window: number) => {
  let produced = 0
  answerSamples(() => produced)
  return Effect.runPromise(
    Effect.gen(function*() {
      const peer = yield* Peer.make({ flowControlWindow: window })
      yield* RpcServer.serve(peer, Slow, {
        Bulk: ({ bytes, chunk }) =>
          Stream.suspend(() => {
            process.stdout.write(`start ${process.memoryUsage().rss}\n`)
            const n = Math.ceil(bytes / chunk)
            return Stream.range(0, n - 1).pipe(
              Stream.rechunk(1), // one chunk allocated per item, when it is pulled
              Stream.map((i) => {
                const data = new Uint8Array(i === n - 1 ? bytes - chunk * (n - 1) : chunk)
                data.fill(i & 0xff)
                produced += data.length
                return data
              }),
              Stream.ensuring(Effect.sync(() => process.stdout.write(`end ${produced}\n`)))
            )
          })
      })
      const address = yield* peer.bind("tcp://127.0.0.1:0")
      process.stdout.write(`ready ${address}\n`)
      return yield* Effect.never
    }).pipe(Effect.scoped)
  )
}

const consumer = (address: string, bytes: number, rate: number, window: number) => {
  let consumed = 0
  answerSamples(() => consumed)
  return Effect.runPromise(
    Effect.gen(function*() {
      const peer = yield* Peer.make({ flowControlWindow: window })
      yield* peer.connect(address)
      yield* peer.awaitRemotes(1)
      const client = yield* RpcClient.makeWith(peer, Slow)
      process.stdout.write(`baseline ${process.memoryUsage().rss}\n`)
      const started = performance.now()
      yield* Stream.runForEach(client.Bulk({ bytes, chunk: CHUNK }), (data) =>
        Effect.gen(function*() {
          consumed += data.length
          // read at `rate`: wait until this many bytes are due
          const due = started + (consumed / rate) * 1000
          const wait = due - performance.now()
          if (wait > 0) yield* Effect.sleep(Math.ceil(wait))
        }))
      process.stdout.write(`done ${consumed} ${Math.round(performance.now() - started)}\n`)
    }).pipe(Effect.scoped)
  ).then(() => process.exit(0))
}

// ---------------------------------------------------------------------------------------------
// Orchestrator
// ---------------------------------------------------------------------------------------------

interface Sample {
  readonly at: number
  readonly rss: number
  readonly count: number
}

const spawnSelf = (args: ReadonlyArray<string>, onLine: (line: string) => void) => {
  const child = ChildProcess.spawn(process.execPath, [new URL(import.meta.url).pathname, ...args], {
    stdio: ["pipe", "pipe", "inherit"]
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

const main = async () => {
  const quick = process.argv.includes("--quick")
  const bytes = parseSize(option("bytes") ?? (quick ? "64MiB" : "1GiB"))
  const rate = parseSize(option("rate") ?? "1MB")
  const window = parseSize(option("window") ?? "256KiB")
  console.log(`# bench/slow-consumer — ${machine()}`)
  console.log(
    `stream ${mib(bytes)} MiB in ${CHUNK / 1024} KiB chunks, consumer at ${(rate / 1e6).toFixed(2)} MB/s ` +
      `(~${Math.round(bytes / rate)} s), credit window ${window / 1024} KiB`
  )

  const producerSamples: Array<Sample> = []
  const consumerSamples: Array<Sample> = []
  let producerBaseline = 0
  let consumerBaseline = 0
  let consumerStartAt = 0
  let done: { readonly bytes: number; readonly ms: number } | undefined
  let producerChild: ReturnType<typeof spawnSelf> | undefined
  let sampler: ReturnType<typeof setInterval> | undefined
  const t0 = performance.now()
  const now = () => performance.now() - t0

  const address = await new Promise<string>((resolve, reject) => {
    const child = spawnSelf(["producer", String(window)], (line) => {
      const [kind, a, b] = line.split(" ")
      if (kind === "ready") resolve(a!)
      else if (kind === "start") producerBaseline = Number(a)
      else if (kind === "rss") producerSamples.push({ at: now(), rss: Number(a), count: Number(b) })
    })
    producerChild = child
    child.once("exit", (code) => reject(new Error(`producer exited (${code})`)))
    process.once("exit", () => child.kill("SIGKILL"))
  })
  await new Promise<void>((resolve, reject) => {
    const child = spawnSelf(["consumer", address, String(bytes), String(rate), String(window)], (line) => {
      const [kind, a, b] = line.split(" ")
      if (kind === "baseline") {
        consumerBaseline = Number(a)
        consumerStartAt = now()
        // from now on, both processes sample at the same instants, once a second
        sampler = setInterval(() => {
          producerChild?.stdin.write("sample\n")
          child.stdin.write("sample\n")
        }, 1000)
      } else if (kind === "rss") consumerSamples.push({ at: now(), rss: Number(a), count: Number(b) })
      else if (kind === "done") done = { bytes: Number(a), ms: Number(b) }
    })
    child.once("exit", (code) => (code === 0 ? resolve() : reject(new Error(`consumer exited (${code})`))))
    process.once("exit", () => child.kill("SIGKILL"))
  })
  clearInterval(sampler)

  // One row per sampling instant (the i-th answer of each process).
  const rows = consumerSamples.map((c, i) => {
    const p = producerSamples[i]
    return { t: (c.at - consumerStartAt) / 1000, p, c, gap: (p?.count ?? 0) - c.count }
  })
  const every = Math.max(1, Math.ceil(rows.length / 80))
  console.log("")
  console.log("|   t (s) | producer RSS (MiB) | consumer RSS (MiB) | produced (MiB) | consumed (MiB) | lead (KiB) |")
  console.log("| ------: | -----------------: | -----------------: | -------------: | -------------: | ---------: |")
  rows.forEach((r, i) => {
    if (i % every !== 0 && i !== rows.length - 1) return
    console.log(
      `| ${r.t.toFixed(1).padStart(7)} | ${mib(r.p?.rss ?? 0).padStart(18)} | ${mib(r.c.rss).padStart(18)} | ` +
        `${mib(r.p?.count ?? 0).padStart(14)} | ${mib(r.c.count).padStart(14)} | ${
          (r.gap / 1024).toFixed(0).padStart(10)
        } |`
    )
  })
  const during = (samples: ReadonlyArray<Sample>) => samples.filter((s) => s.at >= consumerStartAt)
  const maxOf = (samples: ReadonlyArray<Sample>) => Math.max(0, ...samples.map((s) => s.rss))
  const producerMax = maxOf(during(producerSamples))
  const consumerMax = maxOf(during(consumerSamples))
  const maxGap = Math.max(0, ...rows.map((r) => r.gap))
  const ok = (max: number, base: number) => max < base + LIMIT
  console.log("")
  console.log(`consumed ${mib(done?.bytes ?? 0)} MiB in ${((done?.ms ?? 0) / 1000).toFixed(1)} s`)
  console.log(
    `producer: baseline ${mib(producerBaseline)} MiB, max ${mib(producerMax)} MiB (+${
      mib(producerMax - producerBaseline)
    }) ${ok(producerMax, producerBaseline) ? "PASS" : "FAIL"}`
  )
  console.log(
    `consumer: baseline ${mib(consumerBaseline)} MiB, max ${mib(consumerMax)} MiB (+${
      mib(consumerMax - consumerBaseline)
    }) ${ok(consumerMax, consumerBaseline) ? "PASS" : "FAIL"}`
  )
  console.log(
    `producer lead (produced − consumed, sampled each second): max ${(maxGap / 1024).toFixed(0)} KiB ` +
      `(bound: in flight ≤ window ${window / 1024} KiB, + one chunk pulled by the client stream ≤ window, ` +
      `+ one item held by the producer = ${(2 * window + CHUNK) / 1024} KiB)`
  )
  const pass = done?.bytes === bytes && ok(producerMax, producerBaseline) && ok(consumerMax, consumerBaseline)
  console.log(pass ? "PASS" : "FAIL")
  process.exit(pass ? 0 : 1)
}

const [role, ...args] = process.argv.slice(2)
if (role === "producer") void producer(Number(args[0]))
else if (role === "consumer") void consumer(args[0]!, Number(args[1]), Number(args[2]), Number(args[3]))
else {
  main().catch((error: unknown) => {
    console.error(error)
    process.exit(1)
  })
}
