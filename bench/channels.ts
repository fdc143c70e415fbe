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
import { Decoder, Encoder } from "@msgpack/msgpack"
import { Effect, Fiber } from "effect"
import * as ChildProcess from "node:child_process"
import * as Net from "node:net"
import * as Os from "node:os"
import * as Peer from "../src/Peer.ts"

const quick = process.argv.includes("--quick")
const C1_TOTAL = quick ? 20_000 : 100_000
const C1_INFLIGHT = 256
const C2_CONNECTIONS = quick ? 200 : 1000
const C2_PER_CONNECTION = quick ? 20 : 100
// reused instances: the fast mode of @msgpack/msgpack (a fair "practical limit")
const msgpackEncoder = new Encoder()
const msgpackDecoder = new Decoder()
const encode = (value: unknown): Uint8Array => msgpackEncoder.encode(value)
const decode = (bytes: Uint8Array): unknown => msgpackDecoder.decode(bytes)
const request = { id: 12345, name: "abcdefghijklmnop", n: 42 }
const payload = encode(request)

type Kind = "raw" | "duplex"

// ---------------------------------------------------------------------------------------------
// Servers (child process)
// ---------------------------------------------------------------------------------------------

const rawServer = () => {
  const server = Net.createServer((socket) => {
    socket.setNoDelay(true)
    let pending: Buffer = Buffer.alloc(0)
    let out: Array<Buffer> = []
    let scheduled = false
    const flush = () => {
      scheduled = false
      if (out.length === 0) return
      const chunks = out
      out = []
      socket.write(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks))
    }
    socket.on("data", (chunk: Buffer) => {
      pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk])
      let p = 0
      while (pending.length - p >= 4) {
        const n = pending.readUInt32BE(p)
        if (pending.length - p - 4 < n) break
        // a real echo service: decode the request, encode the reply
        const body = encode(decode(pending.subarray(p + 4, p + 4 + n)))
        const frame = Buffer.allocUnsafe(4 + body.length)
        frame.writeUInt32BE(body.length, 0)
        frame.set(body, 4)
        out.push(frame)
        p += 4 + n
      }
      pending = pending.subarray(p)
      if (!scheduled) {
        scheduled = true
        setImmediate(flush)
      }
    })
    socket.on("error", () => {})
  })
  server.listen(0, "127.0.0.1", () => {
    const address = server.address()
    if (address !== null && typeof address === "object") process.stdout.write(`ready ${address.port}\n`)
  })
}

const duplexServer = () =>
  Effect.runFork(
    Effect.gen(function*() {
      const peer = yield* Peer.make()
      yield* peer.serve((channel) => Effect.flatMap(channel.take, (message) => channel.sendLast(message)))
      const address = yield* peer.bind("tcp://127.0.0.1:0")
      process.stdout.write(`ready ${address.slice(address.lastIndexOf(":") + 1)}\n`)
      yield* Effect.never
    }).pipe(Effect.scoped)
  )

const serverMain = (kind: Kind) => {
  process.on("SIGINT", () => process.exit(0))
  let peak = 0
  const sample = () => {
    peak = Math.max(peak, process.memoryUsage().rss)
  }
  setInterval(sample, 20).unref()
  process.stdin.on("data", (d) => {
    const cmd = d.toString().trim()
    sample()
    if (cmd === "stats") {
      const cpu = process.cpuUsage()
      process.stdout.write(`stats ${peak} ${cpu.user + cpu.system}\n`)
      peak = process.memoryUsage().rss
    }
  })
  if (kind === "raw") rawServer()
  else duplexServer()
}

// ---------------------------------------------------------------------------------------------
// Client side
// ---------------------------------------------------------------------------------------------

interface Server {
  readonly port: number
  readonly stats: () => Promise<{ peakRss: number; cpuMicros: number }>
  readonly stop: () => void
}

const startServer = (kind: Kind): Promise<Server> =>
  new Promise((resolve, reject) => {
    const profile = process.env["DUPLEX_PROF_DIR"]
    const nodeArgs = profile !== undefined ? ["--cpu-prof", `--cpu-prof-dir=${profile}`] : []
    const child = ChildProcess.spawn(
      process.execPath,
      [...nodeArgs, new URL(import.meta.url).pathname, "server", kind],
      {
        stdio: ["pipe", "pipe", "inherit"]
      }
    )
    let buffer = ""
    const waiters: Array<(line: string) => void> = []
    child.stdout.on("data", (d: Buffer) => {
      buffer += d.toString()
      let i
      while ((i = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, i)
        buffer = buffer.slice(i + 1)
        if (line.startsWith("ready ")) {
          resolve({
            port: Number(line.slice(6)),
            stats: () =>
              new Promise((res) => {
                waiters.push((l) => {
                  const [, rss, cpu] = l.split(" ")
                  res({ peakRss: Number(rss), cpuMicros: Number(cpu) })
                })
                child.stdin.write("stats\n")
              }),
            stop: () => child.kill(profile !== undefined ? "SIGINT" : "SIGKILL")
          })
        } else if (line.startsWith("stats ")) waiters.shift()?.(line)
      }
    })
    child.once("exit", (code) => reject(new Error(`server exited ${code}`)))
  })

/** Raw client: one connection, `inflight` requests outstanding, `total` in all. */
const rawConnection = (port: number, total: number, inflight: number): Promise<void> =>
  new Promise((resolve) => {
    const socket = Net.createConnection({ port, host: "127.0.0.1", noDelay: true })
    let sent = 0
    let done = 0
    let pending: Buffer = Buffer.alloc(0)
    let out: Array<Buffer> = []
    let scheduled = false
    const flush = () => {
      scheduled = false
      if (out.length === 0) return
      socket.write(Buffer.concat(out))
      out = []
    }
    const send = () => {
      sent++
      const body = encode(request)
      const frame = Buffer.allocUnsafe(4 + body.length)
      frame.writeUInt32BE(body.length, 0)
      frame.set(body, 4)
      out.push(frame)
      if (!scheduled) {
        scheduled = true
        setImmediate(flush)
      }
    }
    socket.on("connect", () => {
      for (let i = 0; i < Math.min(inflight, total); i++) send()
    })
    socket.on("data", (chunk: Buffer) => {
      pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk])
      let p = 0
      while (pending.length - p >= 4) {
        const n = pending.readUInt32BE(p)
        if (pending.length - p - 4 < n) break
        decode(pending.subarray(p + 4, p + 4 + n))
        p += 4 + n
        done++
        if (sent < total) send()
      }
      pending = pending.subarray(p)
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
  const server = await startServer(kind)
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
  const median = (xs: Array<number>) => xs.slice().sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
  const names = [...new Set(rows.map((r) => r.name))]
  console.log(
    `\nbench/channels — ${new Date().toISOString()} — Node ${process.version} — ${
      Os.cpus()[0]?.model ?? "?"
    } ×${Os.cpus().length}`
  )
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

if (process.argv[2] === "server") serverMain(process.argv[3] === "raw" ? "raw" : "duplex")
else {
  clientMain().then(() => process.exit(0), (e) => {
    console.error(e)
    process.exit(1)
  })
}
