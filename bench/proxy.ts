/**
 * bench/proxy: the cost of one proxy hop. The same RPC workloads run direct (client → upstream)
 * and through one `Proxy.serve` peer (client → proxy → upstream); the table reports both and the
 * hop's cost as the ratio proxied / direct.
 *
 * W1 unary throughput: `W1_CALLS` calls `{ id, name: 16 chars, n }` echoed, 256 in flight, one
 *    connection per hop.
 * W3 server stream: one call, 1M messages `{ i }` (200k with `--quick`).
 *
 * Processes: the upstream server and the proxy are child processes (this file run with
 * `server upstream` / `server proxy:<upstream port>`, started and measured with `harness.ts`:
 * both pinned to CPU 0 when taskset is available), the client runs here (pinned to CPU 1). A
 * fresh upstream (and proxy) per sample. On a 2-core machine the proxied runs put the upstream and
 * the proxy on the same core: the figures are the cost of the hop when CPU is scarce.
 *
 * Run: `node bench/proxy.ts [--quick]`.
 */
import { Effect, Fiber, Schema, Stream } from "effect"
import * as Peer from "../src/Peer.ts"
import * as Proxy from "../src/Proxy.ts"
import * as Rpc from "../src/Rpc.ts"
import * as RpcClient from "../src/RpcClient.ts"
import * as RpcGroup from "../src/RpcGroup.ts"
import * as RpcServer from "../src/RpcServer.ts"
import { machine, median, pinClient, type Server, serverSide, startServer } from "./harness.ts"

const quick = process.argv.includes("--quick")
const W1_CALLS = quick ? 40_000 : 200_000
const W1_INFLIGHT = 256
const W3_MESSAGES = quick ? 200_000 : 1_000_000
const REPS = quick ? 1 : 3
const file = new URL(import.meta.url).pathname

const request = { id: 12345, name: "abcdefghijklmnop", n: 42 }

const Item = Schema.Struct({ id: Schema.Int, name: Schema.String, n: Schema.Int })
const Bench = RpcGroup.make(
  Rpc.unary("Echo", { payload: Item, success: Item }),
  Rpc.serverStream("Count", { payload: { n: Schema.Int }, success: Schema.Struct({ i: Schema.Int }) })
).prefix("Bench.")

const portOf = (address: string): number => Number(address.slice(address.lastIndexOf(":") + 1))

// ---------------------------------------------------------------------------------------------
// Children
// ---------------------------------------------------------------------------------------------

const upstreamServer = (ready: (port: number) => void) =>
  Effect.runFork(
    Effect.gen(function*() {
      const peer = yield* Peer.make()
      yield* RpcServer.serve(peer, Bench, {
        Echo: (item) => Effect.succeed(item),
        Count: ({ n }) => Stream.range(0, n - 1).pipe(Stream.map((i) => ({ i })))
      })
      ready(portOf(yield* peer.bind("tcp://127.0.0.1:0")))
      yield* Effect.never
    }).pipe(Effect.scoped)
  )

const proxyServer = (upstreamPort: number, ready: (port: number) => void) =>
  Effect.runFork(
    Effect.gen(function*() {
      const pool = yield* Peer.make()
      yield* pool.connect(`tcp://127.0.0.1:${upstreamPort}`)
      yield* pool.awaitRemotes(1)
      const front = yield* Peer.make()
      yield* Proxy.serve(front, { routes: [{ prefix: "Bench.", upstream: pool }] })
      ready(portOf(yield* front.bind("tcp://127.0.0.1:0")))
      yield* Effect.never
    }).pipe(Effect.scoped)
  )

// ---------------------------------------------------------------------------------------------
// Client
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

const w1 = (port: number) =>
  withClient(port, (client) =>
    Effect.gen(function*() {
      const per = W1_CALLS / W1_INFLIGHT
      const call = client.Echo(request)
      const worker = Effect.gen(function*() {
        for (let i = 0; i < per; i++) yield* call
      })
      const fibers: Array<Fiber.Fiber<void, unknown>> = []
      for (let j = 0; j < W1_INFLIGHT; j++) fibers.push(yield* Effect.forkChild(worker))
      yield* Fiber.joinAll(fibers)
    }))

const w3 = (port: number) => withClient(port, (client) => Stream.runCount(client.Count({ n: W3_MESSAGES })))

// ---------------------------------------------------------------------------------------------
// Driver
// ---------------------------------------------------------------------------------------------

type Path = "direct" | "proxied"

interface Sample {
  readonly workload: string
  readonly path: Path
  readonly value: number
  readonly clientCpu: number
  readonly upstreamCpu: number
  readonly proxyCpu: number | undefined
  readonly upstreamRss: number
  readonly proxyRss: number | undefined
}

const run = async (
  workload: string,
  path: Path,
  ops: number,
  body: (port: number) => Promise<void>
): Promise<Sample> => {
  const upstream = await startServer(file, "upstream")
  let proxy: Server | undefined
  try {
    if (path === "proxied") proxy = await startServer(file, `proxy:${upstream.port}`)
    const upstream0 = await upstream.stats()
    const proxy0 = await proxy?.stats()
    const cpu0 = process.cpuUsage()
    const t0 = process.hrtime.bigint()
    await body(proxy?.port ?? upstream.port)
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9
    const cpu = process.cpuUsage(cpu0)
    const upstream1 = await upstream.stats()
    const proxy1 = await proxy?.stats()
    return {
      workload,
      path,
      value: ops / seconds,
      clientCpu: (cpu.user + cpu.system) / ops,
      upstreamCpu: (upstream1.cpuMicros - upstream0.cpuMicros) / ops,
      proxyCpu: proxy0 === undefined || proxy1 === undefined ? undefined : (proxy1.cpuMicros - proxy0.cpuMicros) / ops,
      upstreamRss: upstream1.peakRss,
      proxyRss: proxy1?.peakRss
    }
  } finally {
    proxy?.stop()
    upstream.stop()
  }
}

const fmt = (x: number) => (x >= 100 ? Math.round(x).toLocaleString("en") : x.toFixed(2))
const mib = (bytes: number) => `${Math.round(bytes / 2 ** 20)}`

const clientMain = async () => {
  pinClient()
  const samples: Array<Sample> = []
  for (let rep = 0; rep < REPS; rep++) {
    for (const path of ["direct", "proxied"] as const) {
      samples.push(await run("W1 unary calls/s", path, W1_CALLS, w1))
      samples.push(
        await run("W3 stream msgs/s", path, W3_MESSAGES, async (port) => {
          const n = await w3(port)
          if (n !== W3_MESSAGES) throw new Error(`W3 got ${n} messages`)
        })
      )
    }
  }
  console.log(`\nbench/proxy — ${machine()}${quick ? " — quick" : ""}`)
  console.log(
    `W1: ${W1_CALLS.toLocaleString("en")} calls, ${W1_INFLIGHT} in flight; W3: one stream of ${
      W3_MESSAGES.toLocaleString("en")
    } messages; ${REPS} run(s) each, median`
  )
  console.log(
    "| workload | path | median | min–max | proxied / direct | client CPU µs/op | upstream CPU µs/op | proxy CPU µs/op | RSS MiB upstream / proxy |"
  )
  console.log("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
  for (const workload of [...new Set(samples.map((s) => s.workload))]) {
    const of = (path: Path) => samples.filter((s) => s.workload === workload && s.path === path)
    const direct = median(of("direct").map((s) => s.value))
    for (const path of ["direct", "proxied"] as const) {
      const xs = of(path)
      const values = xs.map((s) => s.value)
      const m = median(values)
      const proxyCpu = xs.flatMap((s) => (s.proxyCpu === undefined ? [] : [s.proxyCpu]))
      const proxyRss = xs.flatMap((s) => (s.proxyRss === undefined ? [] : [s.proxyRss]))
      console.log(
        `| ${workload} | ${path} | ${fmt(m)} | ${fmt(Math.min(...values))}–${fmt(Math.max(...values))} | ${
          (m / direct).toFixed(2)
        }× | ${median(xs.map((s) => s.clientCpu)).toFixed(2)} | ${median(xs.map((s) => s.upstreamCpu)).toFixed(2)} | ${
          proxyCpu.length === 0 ? "–" : median(proxyCpu).toFixed(2)
        } | ${mib(median(xs.map((s) => s.upstreamRss)))} / ${proxyRss.length === 0 ? "–" : mib(median(proxyRss))} |`
      )
    }
  }
}

if (process.argv[2] === "server") {
  const { ready } = serverSide()
  const kind = process.argv[3] ?? "upstream"
  if (kind.startsWith("proxy:")) proxyServer(Number(kind.slice("proxy:".length)), ready)
  else upstreamServer(ready)
} else {
  clientMain().then(() => process.exit(0), (e) => {
    console.error(e)
    process.exit(1)
  })
}
