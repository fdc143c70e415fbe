/**
 * bench/channels: channel throughput of the peer runtime against the practical limit, a plain
 * `node:net` echo with u32 length-prefixed msgpack bodies and per-tick write batching.
 *
 * C1: one connection, 256 channels in flight, each OPEN + one DATA (≈40 B, last) echoed back with
 *     last. Reports channels/s and CPU µs per channel (client and server).
 * C2: 1,000 connections × 100 sequential channels each, all concurrent. Reports channels/s and
 *     the server's peak RSS.
 *
 * The server runs in a child process (this file with argv `server <kind>`), the client here.
 * Run: `npm run bench:channels` (or `node bench/channels.ts [--quick]`).
 */
import { Encoder } from "@msgpack/msgpack"
import { Effect, Fiber } from "effect"
import * as Net from "node:net"
import * as Peer from "../src/Peer.ts"
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
const C1_TOTAL = quick ? 20_000 : 100_000
const C1_INFLIGHT = 256
const C2_CONNECTIONS = quick ? 200 : 1000
const C2_PER_CONNECTION = quick ? 20 : 100
// reused instances: the fast mode of @msgpack/msgpack (a fair "practical limit")
const file = new URL(import.meta.url).pathname
const request = { id: 12345, name: "abcdefghijklmnop", n: 42 }
const payload = new Encoder().encode(request) // the same body as the raw contender's request

type Kind = "raw" | "duplex"

// ---------------------------------------------------------------------------------------------
// Servers (child process)
// ---------------------------------------------------------------------------------------------

const rawServer = (ready: (port: number) => void) => {
  const server = Net.createServer((socket) => {
    socket.setNoDelay(true)
    const writer = rawWriter(socket)
    // a real echo service: decode the request, encode the reply
    rawReader(socket, (body) => writer.write(rawFrame(rawDecode(body))))
    socket.on("error", () => {})
  })
  server.listen(0, "127.0.0.1", () => {
    const address = server.address()
    if (address !== null && typeof address === "object") ready(address.port)
  })
}

const duplexServer = (ready: (port: number) => void) =>
  Effect.runFork(
    Effect.gen(function*() {
      const peer = yield* Peer.make()
      yield* peer.serve((channel) => Effect.flatMap(channel.take, (message) => channel.sendLast(message)))
      const address = yield* peer.bind("tcp://127.0.0.1:0")
      ready(Number(address.slice(address.lastIndexOf(":") + 1)))
      yield* Effect.never
    }).pipe(Effect.scoped)
  )

// ---------------------------------------------------------------------------------------------
// Client side
// ---------------------------------------------------------------------------------------------

/** Raw client: one connection, `inflight` requests outstanding, `total` in all. */
const rawConnection = (port: number, total: number, inflight: number): Promise<void> =>
  new Promise((resolve) => {
    const socket = Net.createConnection({ port, host: "127.0.0.1", noDelay: true })
    const writer = rawWriter(socket)
    let sent = 0
    let done = 0
    const send = () => {
      sent++
      writer.write(rawFrame(request))
    }
    socket.on("connect", () => {
      for (let i = 0; i < Math.min(inflight, total); i++) send()
    })
    rawReader(socket, (body) => {
      rawDecode(body)
      done++
      if (sent < total) send()
      if (done === total) {
        socket.destroy()
        resolve()
      }
    })
  })

const duplexRun = (port: number, connections: number, perConnection: number, inflight: number) =>
  Effect.gen(function*() {
    const peers = []
    for (let i = 0; i < connections; i++) {
      const peer = yield* Peer.make()
      yield* peer.connect(`tcp://127.0.0.1:${port}`)
      peers.push(peer)
    }
    // One exchange on a fresh channel: OPEN + DATA(last) out, one DATA(last) back. `withChannel` is
    // the scope-free form of `open` meant for request/response exchanges.
    const one = (peer: Peer.Peer) =>
      peer.withChannel("Bench.Echo", (channel) => Effect.andThen(channel.sendLast(payload), channel.take))
    const worker = (peer: Peer.Peer, count: number) =>
      Effect.gen(function*() {
        const exchange = one(peer) // an Effect is a reusable description: build it once
        for (let i = 0; i < count; i++) yield* exchange
      })
    const fibers = []
    for (const peer of peers) {
      const per = Math.floor(perConnection / inflight)
      for (let j = 0; j < inflight; j++) fibers.push(yield* Effect.forkChild(worker(peer, per)))
    }
    yield* Fiber.joinAll(fibers)
  }).pipe(Effect.scoped)

interface Row {
  readonly name: string
  readonly kind: Kind
  readonly perSecond: number
  readonly clientCpu: number
  readonly serverCpu: number
  readonly serverPeakRss: number
  readonly ops: number
}

const measure = async (
  name: string,
  kind: Kind,
  ops: number,
  run: (port: number) => Promise<void>
): Promise<Row> => {
  const server = await startServer(file, kind)
  try {
    const before = await server.stats()
    const cpu0 = process.cpuUsage()
    const t0 = process.hrtime.bigint()
    await run(server.port)
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9
    const cpu = process.cpuUsage(cpu0)
    const after = await server.stats()
    return {
      name,
      kind,
      ops,
      perSecond: ops / seconds,
      clientCpu: (cpu.user + cpu.system) / ops,
      serverCpu: (after.cpuMicros - before.cpuMicros) / ops,
      serverPeakRss: after.peakRss
    }
  } finally {
    server.stop()
  }
}

const clientMain = async () => {
  pinClient()
  const rows: Array<Row> = []
  const c1Raw = (port: number) => rawConnection(port, C1_TOTAL, C1_INFLIGHT)
  const c1Duplex = (port: number) => Effect.runPromise(duplexRun(port, 1, C1_TOTAL, C1_INFLIGHT))
  const c2Raw = (port: number) =>
    Promise.all(Array.from({ length: C2_CONNECTIONS }, () => rawConnection(port, C2_PER_CONNECTION, 1))).then(() => {})
  const c2Duplex = (port: number) => Effect.runPromise(duplexRun(port, C2_CONNECTIONS, C2_PER_CONNECTION, 1))
  // warm-up
  await measure("warmup", "duplex", 2000, (port) => Effect.runPromise(duplexRun(port, 1, 2000, 64)))
  const only = process.argv.find((a) => a.startsWith("--only="))?.slice(7)
  for (let rep = 0; rep < (quick ? 1 : 3); rep++) {
    if (only === "c1") {
      rows.push(await measure("C1 256 in flight", "duplex", C1_TOTAL, c1Duplex))
      continue
    }
    rows.push(await measure("C1 256 in flight", "raw", C1_TOTAL, c1Raw))
    rows.push(await measure("C1 256 in flight", "duplex", C1_TOTAL, c1Duplex))
    rows.push(await measure(`C2 ${C2_CONNECTIONS} conns`, "raw", C2_CONNECTIONS * C2_PER_CONNECTION, c2Raw))
    rows.push(await measure(`C2 ${C2_CONNECTIONS} conns`, "duplex", C2_CONNECTIONS * C2_PER_CONNECTION, c2Duplex))
  }
  if (only !== undefined) {
    for (const r of rows) console.log(r)
    return
  }
  const names = [...new Set(rows.map((r) => r.name))]
  console.log(`\nbench/channels — ${machine()}`)
  console.log(
    "| workload | contender | channels/s (median) | ratio to raw | client CPU µs/ch | server CPU µs/ch | server peak RSS MiB |"
  )
  console.log("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
  for (const name of names) {
    const get = (kind: Kind) => rows.filter((r) => r.name === name && r.kind === kind)
    const raw = median(get("raw").map((r) => r.perSecond))
    for (const kind of ["raw", "duplex"] as const) {
      const rs = get(kind)
      const ps = median(rs.map((r) => r.perSecond))
      console.log(
        `| ${name} | ${kind} | ${Math.round(ps).toLocaleString("en")} | ${(ps / raw).toFixed(2)}× | ${
          median(rs.map((r) => r.clientCpu)).toFixed(1)
        } | ${median(rs.map((r) => r.serverCpu)).toFixed(1)} | ${
          (median(rs.map((r) => r.serverPeakRss)) / 2 ** 20).toFixed(0)
        } |`
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
