/**
 * bench/rpc: the RPC layer against the practical limit (raw `node:net` + u32 length prefix +
 * `@msgpack/msgpack`, per-tick write batching), server in a child process, client here.
 *
 * W1 unary throughput: 200k calls `{ id, name: 16 chars, n }` echoed, 256 in flight, one connection
 *    (duplex validates request and reply with Schema on both sides).
 * W2 unary latency: 20k sequential calls, p50 / p99.
 * W3 server stream: one call, 1M messages `{ i }`.
 * W4 bulk: 512 MiB as 64 KiB binary chunks in one stream.
 *
 * Each sample: a fresh server process; the workload runs once unmeasured (warm-up), then measured.
 *
 * Run: `npm run bench:rpc` (add `--quick` for a short run; `--only=w1,w3` to select).
 */
import { Effect, Fiber, Schema, Stream } from "effect"
import * as Net from "node:net"
import * as Peer from "../src/Peer.ts"
import * as Rpc from "../src/Rpc.ts"
import * as RpcClient from "../src/RpcClient.ts"
import * as RpcGroup from "../src/RpcGroup.ts"
import * as RpcServer from "../src/RpcServer.ts"
import { contender as rawContender } from "./compare/raw.ts"
import {
  machine,
  median,
  pinClient,
  rawDecode,
  rawFrame,
  rawReader,
  rawWriter,
  serverSide,
  startServer
} from "./harness.ts"

const quick = process.argv.includes("--quick")
const only = process.argv.find((a) => a.startsWith("--only="))?.slice(7).split(",")
const W1_CALLS = quick ? 40_000 : 200_000
const W1_INFLIGHT = 256
const W2_CALLS = quick ? 4_000 : 20_000
const W3_MESSAGES = quick ? 200_000 : 1_000_000
const W4_BYTES = (quick ? 64 : 512) * 1024 * 1024
const CHUNK = 64 * 1024
const REPS = quick ? 1 : 3
const file = new URL(import.meta.url).pathname

const request = { id: 12345, name: "abcdefghijklmnop", n: 42 }

const Item = Schema.Struct({ id: Schema.Int, name: Schema.String, n: Schema.Int })
const Bench = RpcGroup.make(
  Rpc.unary("Echo", { payload: Item, success: Item }),
  Rpc.serverStream("Count", { payload: { n: Schema.Int }, success: Schema.Struct({ i: Schema.Int }) }),
  Rpc.serverStream("Bulk", { payload: { bytes: Schema.Int, chunk: Schema.Int }, success: Schema.Uint8Array })
).prefix("Bench.")

// ---------------------------------------------------------------------------------------------
// Servers
// ---------------------------------------------------------------------------------------------

// the raw server is the head-to-head one (`bench/compare/raw.ts`): requests `[op, arg, chunk size]`
const rawServer = rawContender.server

const duplexServer = (ready: (port: number) => void) =>
  Effect.runFork(
    Effect.gen(function*() {
      const peer = yield* Peer.make()
      const chunk = new Uint8Array(CHUNK).fill(7)
      yield* RpcServer.serve(peer, Bench, {
        Echo: (item) => Effect.succeed(item),
        Count: ({ n }) => Stream.range(0, n - 1).pipe(Stream.map((i) => ({ i }))),
        Bulk: ({ bytes, chunk: size }) => Stream.range(1, Math.ceil(bytes / size)).pipe(Stream.map(() => chunk))
      })
      const address = yield* peer.bind("tcp://127.0.0.1:0")
      ready(Number(address.slice(address.lastIndexOf(":") + 1)))
      yield* Effect.never
    }).pipe(Effect.scoped)
  )

// ---------------------------------------------------------------------------------------------
// Raw client
// ---------------------------------------------------------------------------------------------

const rawConnect = (port: number) =>
  new Promise<Net.Socket>((resolve) => {
    const socket = Net.createConnection({ port, host: "127.0.0.1", noDelay: true }, () => resolve(socket))
  })

const rawW1 = async (port: number) => {
  const socket = await rawConnect(port)
  const writer = rawWriter(socket)
  let sent = 0
  let done = 0
  await new Promise<void>((resolve) => {
    const send = () => {
      sent++
      writer.write(rawFrame(["echo", request]))
    }
    rawReader(socket, (body) => {
      rawDecode(body)
      done++
      if (sent < W1_CALLS) send()
      if (done === W1_CALLS) resolve()
    })
    for (let i = 0; i < W1_INFLIGHT; i++) send()
  })
  socket.destroy()
}

const rawW2 = async (port: number) => {
  const socket = await rawConnect(port)
  const latencies: Array<number> = []
  let t0 = 0
  await new Promise<void>((resolve) => {
    const send = () => {
      t0 = performance.now()
      socket.write(rawFrame(["echo", request]))
    }
    rawReader(socket, (body) => {
      rawDecode(body)
      latencies.push(performance.now() - t0)
      if (latencies.length === W2_CALLS) resolve()
      else send()
    })
    send()
  })
  socket.destroy()
  return latencies
}

const rawStream = async (port: number, op: string, arg: number) => {
  const socket = await rawConnect(port)
  let items = 0
  let bytes = 0
  await new Promise<void>((resolve) => {
    rawReader(socket, (body) => {
      const value = rawDecode(body)
      if (value === null) return resolve()
      items++
      if (value instanceof Uint8Array) bytes += value.length
    })
    socket.write(rawFrame([op, arg, CHUNK]))
  })
  socket.destroy()
  return { items, bytes }
}

// ---------------------------------------------------------------------------------------------
// Duplex client
// ---------------------------------------------------------------------------------------------

const withClient = <A, E>(
  port: number,
  f: (client: RpcClient.Client<RpcGroup.Rpcs<typeof Bench>>) => Effect.Effect<A, E>
) =>
  Effect.runPromise(
    Effect.gen(function*() {
      const peer = yield* Peer.make()
      yield* peer.connect(`tcp://127.0.0.1:${port}`)
      yield* peer.awaitRemotes(1)
      const client = yield* RpcClient.makeWith(peer, Bench)
      return yield* f(client)
    }).pipe(Effect.scoped)
  )

const duplexW1 = (port: number) =>
  withClient(port, (client) =>
    Effect.gen(function*() {
      const per = W1_CALLS / W1_INFLIGHT
      // a new call each time: the request is encoded per call, as the raw client does
      const worker = Effect.gen(function*() {
        for (let i = 0; i < per; i++) yield* client.Echo(request)
      })
      const fibers: Array<Fiber.Fiber<void, unknown>> = []
      for (let j = 0; j < W1_INFLIGHT; j++) fibers.push(yield* Effect.forkChild(worker))
      yield* Fiber.joinAll(fibers)
    }))

const duplexW2 = (port: number) =>
  withClient(port, (client) =>
    Effect.gen(function*() {
      const latencies: Array<number> = []
      for (let i = 0; i < W2_CALLS; i++) {
        const t0 = performance.now()
        yield* client.Echo(request)
        latencies.push(performance.now() - t0)
      }
      return latencies
    }))

const duplexW3 = (port: number) => withClient(port, (client) => Stream.runCount(client.Count({ n: W3_MESSAGES })))

const duplexW4 = (port: number) =>
  withClient(
    port,
    (client) => Stream.runFold(client.Bulk({ bytes: W4_BYTES, chunk: CHUNK }), () => 0, (n, chunk) => n + chunk.length)
  )

// ---------------------------------------------------------------------------------------------
// Driver
// ---------------------------------------------------------------------------------------------

type Kind = "raw" | "duplex"

interface Sample {
  readonly workload: string
  readonly kind: Kind
  readonly value: number
  readonly extra: Record<string, number>
  readonly clientCpu: number
  readonly serverCpu: number
  readonly serverRss: number
}

const run = async (
  workload: string,
  kind: Kind,
  ops: number,
  body: (port: number) => Promise<Record<string, number> | void>,
  valueOf: (seconds: number, extra: Record<string, number>) => number
): Promise<Sample> => {
  const server = await startServer(file, kind)
  try {
    // One unmeasured run first, in the same server process: both sides measured warm (JIT done).
    await body(server.port)
    const before = await server.stats()
    const cpu0 = process.cpuUsage()
    const t0 = process.hrtime.bigint()
    const extra = (await body(server.port)) ?? {}
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9
    const cpu = process.cpuUsage(cpu0)
    const after = await server.stats()
    return {
      workload,
      kind,
      value: valueOf(seconds, extra),
      extra,
      clientCpu: (cpu.user + cpu.system) / ops,
      serverCpu: (after.cpuMicros - before.cpuMicros) / ops,
      serverRss: after.peakRss
    }
  } finally {
    server.stop()
  }
}

const percentile = (xs: Array<number>, p: number) => xs.slice().sort((a, b) => a - b)[Math.floor(xs.length * p)]!

const clientMain = async () => {
  pinClient()
  const samples: Array<Sample> = []
  const want = (w: string) => only === undefined || only.includes(w)
  const perSecond = (ops: number) => (s: number) => ops / s
  for (let rep = 0; rep < REPS; rep++) {
    for (const kind of ["raw", "duplex"] as const) {
      if (want("w1")) {
        samples.push(
          await run("W1 unary calls/s", kind, W1_CALLS, kind === "raw" ? rawW1 : duplexW1, perSecond(W1_CALLS))
        )
      }
      if (want("w2")) {
        for (const p of [0.5, 0.99]) {
          samples.push(
            await run(
              `W2 latency p${p * 100} µs`,
              kind,
              W2_CALLS,
              async (port) => {
                const latencies = kind === "raw" ? await rawW2(port) : await duplexW2(port)
                return { latency: percentile(latencies, p) * 1000 }
              },
              (_, extra) => extra["latency"]!
            )
          )
        }
      }
      if (want("w3")) {
        samples.push(
          await run(
            "W3 stream msgs/s",
            kind,
            W3_MESSAGES,
            async (port) => {
              const n = kind === "raw" ? (await rawStream(port, "count", W3_MESSAGES)).items : await duplexW3(port)
              if (n !== W3_MESSAGES) throw new Error(`W3 got ${n} messages`)
            },
            perSecond(W3_MESSAGES)
          )
        )
      }
      if (want("w4")) {
        samples.push(
          await run(
            "W4 bulk MiB/s",
            kind,
            W4_BYTES / CHUNK,
            async (port) => {
              const n = kind === "raw" ? (await rawStream(port, "bulk", W4_BYTES)).bytes : await duplexW4(port)
              if (n < W4_BYTES) throw new Error(`W4 got ${n} bytes`)
            },
            (s) => W4_BYTES / 2 ** 20 / s
          )
        )
      }
    }
  }
  console.log(`\nbench/rpc — ${machine()}${quick ? " — quick" : ""}`)
  console.log("| workload | contender | median | min–max | ratio to raw | client CPU µs/op | server CPU µs/op |")
  console.log("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
  for (const workload of [...new Set(samples.map((s) => s.workload))]) {
    const of = (kind: Kind) => samples.filter((s) => s.workload === workload && s.kind === kind)
    const raw = median(of("raw").map((s) => s.value))
    for (const kind of ["raw", "duplex"] as const) {
      const xs = of(kind)
      const values = xs.map((s) => s.value)
      const m = median(values)
      const fmt = (x: number) => (x >= 100 ? Math.round(x).toLocaleString("en") : x.toFixed(1))
      console.log(
        `| ${workload} | ${kind} | ${fmt(m)} | ${fmt(Math.min(...values))}–${fmt(Math.max(...values))} | ${
          (m / raw).toFixed(2)
        }× | ${median(xs.map((s) => s.clientCpu)).toFixed(2)} | ${median(xs.map((s) => s.serverCpu)).toFixed(2)} |`
      )
    }
  }
}

if (process.argv[2] === "server") {
  const { ready } = serverSide()
  if (process.argv[3] === "raw") rawServer(ready)
  else duplexServer(ready)
} else {
  clientMain().then(() => process.exit(0), (e) => {
    console.error(e)
    process.exit(1)
  })
}
