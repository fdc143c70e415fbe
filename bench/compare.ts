/**
 * bench/compare: Duplex against the practical limit and its peers, each as a server process and a
 * client process on loopback (pinned to CPU 0 and CPU 1 with `taskset` when available).
 *
 * Contenders (`bench/compare/*.ts`):
 * - raw: `node:net`, u32 length prefix, `@msgpack/msgpack`, per-tick write batching (the limit).
 * - duplex: `RpcServer.serve` + `RpcClient.makeWith`, Schema validation on both sides.
 * - effect-rpc: effect/rpc 4.1 over its socket protocol (NodeSocket/NodeSocketServer).
 * - grpc: `@grpc/grpc-js`, service defined in code, msgpack serialize/deserialize.
 * - zeromq: DEALER/ROUTER, msgpack bodies.
 *
 * Workloads (identical payloads for all):
 * - W1 unary throughput: 200k calls `{ id, name: 16 chars, n }` echoed, 256 in flight, one connection.
 * - W2 unary latency: 20k sequential calls; p50, p99.
 * - W3 server stream: one call, 1M messages `{ i }`.
 * - W4 bulk: 512 MiB as 64 KiB binary chunks in one stream.
 * - W5 fan-in: 1,000 connections × 100 sequential calls, all concurrent; calls/s, connect time
 *   (all connections opened concurrently, each completing one call), server RSS.
 *
 * Method: each sample is a fresh server + client pair; the client warms up on the same
 * connection (W5: on 20 other connections), then the measured part runs; 3 interleaved
 * repetitions (for each repetition, for each workload, every contender in turn); median and
 * min–max; CPU µs per op of each process (`process.cpuUsage`, all threads) and its busy share of
 * its CPU; peak RSS of each process during the measured part.
 *
 * Run: `npm run bench:compare` (full, < 15 min), `-- --quick` (about 1/5 sizes, < 3 min),
 * `--only=` with contenders and/or workloads (`--only=duplex,grpc,w1,w3`; raw always runs, as the
 * baseline), `--reps=N` (default 3), `--pin=process|main|none` (default `process`: every thread of
 * a child on its CPU; `main`: only the main thread, as `bench/harness.ts` does).
 * Writes `bench/results/compare-<date>.json`; a run without `--only` also writes
 * `compare-latest.json` and the chart `compare.svg` (ratios to raw, log scale).
 */
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import {
  type Contender,
  CONTROL,
  cpuMicros,
  type Metrics,
  onControl,
  peakRssTracker,
  sendControl,
  type Session,
  type Sizes,
  sizesFor,
  type WorkloadId
} from "./compare/common.ts"
import { median } from "./harness.ts"

const CONTENDERS = ["raw", "duplex", "effect-rpc", "grpc", "zeromq"] as const
type ContenderId = (typeof CONTENDERS)[number]
const WORKLOADS: ReadonlyArray<WorkloadId> = ["w1", "w2", "w3", "w4", "w5"]

const loaders: Record<ContenderId, () => Promise<Contender>> = {
  raw: () => import("./compare/raw.ts").then((m) => m.contender),
  duplex: () => import("./compare/duplex.ts").then((m) => m.contender),
  "effect-rpc": () => import("./compare/effect-rpc.ts").then((m) => m.contender),
  grpc: () => import("./compare/grpc.ts").then((m) => m.contender),
  zeromq: () => import("./compare/zeromq.ts").then((m) => m.contender)
}

/** The third-party library each contender needs beyond this repo's dependencies. */
const libraryOf: Partial<Record<ContenderId, () => Promise<unknown>>> = {
  grpc: () => import("@grpc/grpc-js"),
  zeromq: () => import("zeromq")
}

const isContender = (s: string): s is ContenderId => CONTENDERS.some((c) => c === s)
const isWorkload = (s: string): s is WorkloadId => WORKLOADS.some((w) => w === s)

const file = new URL(import.meta.url).pathname
const root = Path.resolve(Path.dirname(file), "..")

// ---------------------------------------------------------------------------------------------
// Child processes
// ---------------------------------------------------------------------------------------------

const serverMain = async (id: ContenderId) => {
  const contender = await loaders[id]()
  const rss = peakRssTracker()
  onControl((line) => {
    if (line !== "stats") return
    const out = `stats ${cpuMicros()} ${rss.peak()}`
    rss.reset()
    sendControl(out)
  })
  contender.server((port) => sendControl(`ready ${port}`))
}

const clientMain = async (id: ContenderId, workload: WorkloadId, port: number, quick: boolean) => {
  const contender = await loaders[id]()
  const rss = peakRssTracker()
  const waiting: Array<{ readonly line: string; readonly resolve: () => void }> = []
  onControl((line) => {
    const i = waiting.findIndex((w) => w.line === line)
    if (i >= 0) waiting.splice(i, 1)[0]!.resolve()
  })
  const waitFor = (line: string) => new Promise<void>((resolve) => waiting.push({ line, resolve }))
  let cpu0 = 0
  let t0 = 0
  const session: Session = {
    port,
    sizes: sizesFor(quick),
    begin: async () => {
      const go = waitFor("go")
      sendControl("ready")
      await go
      rss.reset()
      cpu0 = cpuMicros()
      t0 = performance.now()
    },
    end: async (metrics) => {
      const seconds = (performance.now() - t0) / 1000
      const cpu = cpuMicros() - cpu0
      const peakRss = rss.peak()
      const values = typeof metrics === "function" ? metrics() : metrics
      const ack = waitFor("ack")
      sendControl(`end ${JSON.stringify({ seconds, cpuMicros: cpu, peakRss, metrics: values })}`)
      await ack
    }
  }
  await contender[workload](session)
  process.exit(0)
}

const canPin = Os.cpus().length > 1 &&
  ChildProcess.spawnSync("taskset", ["-c", "0", "true"], { stdio: "ignore" }).status === 0

/**
 * How children are pinned: `process` (default) puts every thread of the process on its CPU
 * (`taskset -c` at spawn, so V8's GC and compiler threads share it); `main` pins only the main
 * thread after spawn (`taskset -p`, as `bench/harness.ts` does); `none` leaves them free.
 */
type PinMode = "process" | "main" | "none"

interface Child {
  /** Resolves with the rest of the next control line starting with `word`. */
  readonly next: (word: string) => Promise<string>
  readonly send: (line: string) => void
  readonly exited: Promise<number | null>
  readonly kill: () => void
}

const spawnChild = (pin: PinMode, cpu: number, args: ReadonlyArray<string>): Child => {
  const nodeArgs = [file, ...args]
  const child = pin === "process"
    ? ChildProcess.spawn("taskset", ["-c", String(cpu), process.execPath, ...nodeArgs], {
      stdio: ["pipe", "pipe", "inherit"]
    })
    : ChildProcess.spawn(process.execPath, nodeArgs, { stdio: ["pipe", "pipe", "inherit"] })
  if (pin === "main" && child.pid !== undefined) {
    ChildProcess.spawnSync("taskset", ["-p", "-c", String(cpu), String(child.pid)], { stdio: "ignore" })
  }
  const lines: Array<string> = []
  const waiters: Array<{ readonly word: string; readonly resolve: (rest: string) => void }> = []
  let dead: Error | undefined
  const rejecters = new Set<(e: Error) => void>()
  const deliver = () => {
    for (let i = 0; i < waiters.length; i++) {
      const w = waiters[i]!
      const j = lines.findIndex((l) => l === w.word || l.startsWith(w.word + " "))
      if (j < 0) continue
      const [line] = lines.splice(j, 1)
      waiters.splice(i--, 1)
      w.resolve(line!.slice(w.word.length + 1))
    }
  }
  let buffer = ""
  child.stdout.on("data", (d: Buffer) => {
    buffer += d.toString()
    let i
    while ((i = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, i)
      buffer = buffer.slice(i + 1)
      if (line.startsWith(CONTROL)) lines.push(line.slice(CONTROL.length))
      else process.stderr.write(`  [${args.slice(0, 3).join(" ")}] ${line}\n`)
    }
    deliver()
  })
  const exited = new Promise<number | null>((resolve) =>
    child.once("exit", (code) => {
      dead = new Error(`${args.slice(0, 3).join(" ")} exited with ${code}`)
      rejecters.forEach((reject) => reject(dead!))
      resolve(code)
    })
  )
  child.stdin.on("error", () => {})
  return {
    next: (word) =>
      new Promise<string>((resolve, reject) => {
        if (dead !== undefined) return reject(dead)
        rejecters.add(reject)
        waiters.push({
          word,
          resolve: (rest) => {
            rejecters.delete(reject)
            resolve(rest)
          }
        })
        deliver()
      }),
    send: (line) => {
      if (dead === undefined) child.stdin.write(`${line}\n`)
    },
    exited,
    kill: () => {
      if (dead === undefined) child.kill("SIGKILL")
    }
  }
}

// ---------------------------------------------------------------------------------------------
// One sample
// ---------------------------------------------------------------------------------------------

interface Sample {
  readonly rep: number
  readonly contender: ContenderId
  readonly workload: WorkloadId
  readonly seconds: number
  readonly ops: number
  readonly metrics: Readonly<Record<string, number>>
  readonly clientCpuPerOp: number
  readonly serverCpuPerOp: number
  /** Share of its (pinned) CPU each process was busy during the measured part. */
  readonly clientBusy: number
  readonly serverBusy: number
  readonly clientPeakRss: number
  readonly serverPeakRss: number
}

interface Failure {
  readonly rep: number
  readonly contender: ContenderId
  readonly workload: WorkloadId
  readonly error: string
}

interface EndReport {
  readonly seconds: number
  readonly cpuMicros: number
  readonly peakRss: number
  readonly metrics: Metrics
}

const MiB = 1024 * 1024

/** Parses the client's `end` line (written by `clientMain`). */
const parseEnd = (line: string): EndReport => {
  const json: unknown = JSON.parse(line)
  const num = (o: object, k: string): number => {
    const v: unknown = Object.getOwnPropertyDescriptor(o, k)?.value
    if (typeof v !== "number") throw new Error(`bad end report: ${line}`)
    return v
  }
  if (typeof json !== "object" || json === null || !("metrics" in json)) throw new Error(`bad end report: ${line}`)
  const m = json.metrics
  if (typeof m !== "object" || m === null) throw new Error(`bad end report: ${line}`)
  const metrics: Record<string, number> = {}
  for (const k of Object.keys(m)) metrics[k] = num(m, k)
  return { seconds: num(json, "seconds"), cpuMicros: num(json, "cpuMicros"), peakRss: num(json, "peakRss"), metrics }
}

const derive = (
  workload: WorkloadId,
  sizes: Sizes,
  end: EndReport,
  serverPeakRss: number
): { readonly ops: number; readonly metrics: Record<string, number> } => {
  const m = end.metrics
  const s = end.seconds
  switch (workload) {
    case "w1":
      return { ops: sizes.w1Calls, metrics: { "calls/s": sizes.w1Calls / s } }
    case "w2":
      return { ops: sizes.w2Calls, metrics: { "p50 µs": m["p50"]!, "p99 µs": m["p99"]! } }
    case "w3": {
      if (m["messages"] !== sizes.w3Messages) throw new Error(`W3 got ${m["messages"]} messages`)
      return { ops: sizes.w3Messages, metrics: { "msgs/s": sizes.w3Messages / s } }
    }
    case "w4": {
      const bytes = m["bytes"]!
      if (!(bytes >= sizes.w4Bytes)) throw new Error(`W4 got ${bytes} bytes`)
      return { ops: bytes / sizes.chunk, metrics: { "MiB/s": bytes / MiB / s } }
    }
    case "w5": {
      const calls = sizes.w5Connections * sizes.w5Calls
      return {
        ops: calls,
        metrics: { "calls/s": calls / s, "connect ms": m["connectMs"]!, "server RSS MiB": serverPeakRss / MiB }
      }
    }
  }
}

const withTimeout = <A>(promise: Promise<A>, ms: number, what: string): Promise<A> =>
  new Promise<A>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what}: timed out after ${ms / 1000} s`)), ms)
    promise.then((a) => {
      clearTimeout(timer)
      resolve(a)
    }, (e: unknown) => {
      clearTimeout(timer)
      reject(e)
    })
  })

const parseStats = (rest: string) => {
  const [cpu, rss] = rest.split(" ")
  return { cpuMicros: Number(cpu), peakRss: Number(rss) }
}

const runSample = async (
  rep: number,
  contender: ContenderId,
  workload: WorkloadId,
  quick: boolean,
  pin: PinMode,
  timeoutMs: number
): Promise<Sample> => {
  const sizes = sizesFor(quick)
  const server = spawnChild(pin, 0, ["server", contender])
  let client: Child | undefined
  try {
    return await withTimeout(
      (async () => {
        const port = await server.next("ready")
        client = spawnChild(pin, 1, ["client", contender, workload, port, quick ? "quick" : "full"])
        await client.next("ready")
        const before = parseStats(
          await new Promise<string>((resolve, reject) => {
            server.next("stats").then(resolve, reject)
            server.send("stats")
          })
        )
        client.send("go")
        const end = parseEnd(await client.next("end"))
        const after = parseStats(
          await new Promise<string>((resolve, reject) => {
            server.next("stats").then(resolve, reject)
            server.send("stats")
          })
        )
        client.send("ack")
        const code = await withTimeout(client.exited, 30_000, "client exit")
        if (code !== 0) throw new Error(`client exited with ${code}`)
        const { metrics, ops } = derive(workload, sizes, end, after.peakRss)
        const serverCpu = after.cpuMicros - before.cpuMicros
        return {
          rep,
          contender,
          workload,
          seconds: end.seconds,
          ops,
          metrics,
          clientCpuPerOp: end.cpuMicros / ops,
          serverCpuPerOp: serverCpu / ops,
          clientBusy: end.cpuMicros / (end.seconds * 1e6),
          serverBusy: serverCpu / (end.seconds * 1e6),
          clientPeakRss: end.peakRss,
          serverPeakRss: after.peakRss
        }
      })(),
      timeoutMs,
      `${contender} ${workload}`
    )
  } finally {
    client?.kill()
    server.kill()
    await server.exited
    if (client !== undefined) await client.exited
  }
}

// ---------------------------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------------------------

interface MetricDef {
  readonly key: string
  readonly better: "higher" | "lower"
}

const METRICS: Record<WorkloadId, { readonly title: string; readonly metrics: ReadonlyArray<MetricDef> }> = {
  w1: { title: "W1 unary throughput", metrics: [{ key: "calls/s", better: "higher" }] },
  w2: { title: "W2 unary latency", metrics: [{ key: "p50 µs", better: "lower" }, { key: "p99 µs", better: "lower" }] },
  w3: { title: "W3 server stream", metrics: [{ key: "msgs/s", better: "higher" }] },
  w4: { title: "W4 bulk stream", metrics: [{ key: "MiB/s", better: "higher" }] },
  w5: {
    title: "W5 fan-in",
    metrics: [
      { key: "calls/s", better: "higher" },
      { key: "connect ms", better: "lower" },
      { key: "server RSS MiB", better: "lower" }
    ]
  }
}

/** Duplex's targets as ratios to raw (issue 7). */
const TARGETS: ReadonlyArray<{ readonly workload: WorkloadId; readonly key: string; readonly ratio: number }> = [
  { workload: "w1", key: "calls/s", ratio: 0.9 },
  { workload: "w2", key: "p50 µs", ratio: 1.15 },
  { workload: "w2", key: "p99 µs", ratio: 1.3 },
  { workload: "w3", key: "msgs/s", ratio: 1.0 },
  { workload: "w4", key: "MiB/s", ratio: 0.9 },
  { workload: "w5", key: "calls/s", ratio: 0.8 }
]

interface Summary {
  readonly workload: WorkloadId
  readonly contender: ContenderId
  readonly samples: number
  readonly failures: number
  readonly metrics: Record<string, { readonly median: number; readonly min: number; readonly max: number }>
  readonly ratioToRaw: Record<string, number | null>
  readonly clientCpuPerOp: number
  readonly serverCpuPerOp: number
  readonly clientBusy: number
  readonly serverBusy: number
  readonly clientPeakRssMiB: number
  readonly serverPeakRssMiB: number
}

const summarize = (
  samples: ReadonlyArray<Sample>,
  failures: ReadonlyArray<Failure>,
  workloads: ReadonlyArray<WorkloadId>,
  contenders: ReadonlyArray<ContenderId>
): Array<Summary> => {
  const out: Array<Summary> = []
  for (const workload of workloads) {
    const rawOf = samples.filter((s) => s.workload === workload && s.contender === "raw")
    for (const contender of contenders) {
      const xs = samples.filter((s) => s.workload === workload && s.contender === contender)
      const failed = failures.filter((f) => f.workload === workload && f.contender === contender).length
      if (xs.length === 0) {
        if (failed > 0) {
          out.push({
            workload,
            contender,
            samples: 0,
            failures: failed,
            metrics: {},
            ratioToRaw: {},
            clientCpuPerOp: NaN,
            serverCpuPerOp: NaN,
            clientBusy: NaN,
            serverBusy: NaN,
            clientPeakRssMiB: NaN,
            serverPeakRssMiB: NaN
          })
        }
        continue
      }
      const metrics: Summary["metrics"] = {}
      const ratioToRaw: Summary["ratioToRaw"] = {}
      for (const { key } of METRICS[workload].metrics) {
        const values = xs.map((s) => s.metrics[key]!)
        const m = median(values)
        metrics[key] = { median: m, min: Math.min(...values), max: Math.max(...values) }
        ratioToRaw[key] = rawOf.length === 0 ? null : m / median(rawOf.map((s) => s.metrics[key]!))
      }
      out.push({
        workload,
        contender,
        samples: xs.length,
        failures: failed,
        metrics,
        ratioToRaw,
        clientCpuPerOp: median(xs.map((s) => s.clientCpuPerOp)),
        serverCpuPerOp: median(xs.map((s) => s.serverCpuPerOp)),
        clientBusy: median(xs.map((s) => s.clientBusy)),
        serverBusy: median(xs.map((s) => s.serverBusy)),
        clientPeakRssMiB: median(xs.map((s) => s.clientPeakRss)) / MiB,
        serverPeakRssMiB: median(xs.map((s) => s.serverPeakRss)) / MiB
      })
    }
  }
  return out
}

const fmt = (x: number): string =>
  !Number.isFinite(x) ? "—" : Math.abs(x) >= 100 ? Math.round(x).toLocaleString("en") : x.toFixed(x >= 10 ? 1 : 2)

const tables = (summaries: ReadonlyArray<Summary>, workloads: ReadonlyArray<WorkloadId>): string => {
  const lines: Array<string> = []
  for (const workload of workloads) {
    const rows = summaries.filter((s) => s.workload === workload)
    if (rows.length === 0) continue
    const defs = METRICS[workload].metrics
    lines.push("", `### ${METRICS[workload].title}`, "")
    lines.push(
      `| contender | ${
        defs.map((d) => `${d.key} median (min–max) | ${d.better === "higher" ? "↑" : "↓"} × raw`).join(" | ")
      } | client CPU µs/op | server CPU µs/op | client busy | server busy | client RSS MiB | server RSS MiB |`
    )
    lines.push(`| --- | ${defs.map(() => "---: | ---:").join(" | ")} | ---: | ---: | ---: | ---: | ---: | ---: |`)
    for (const r of rows) {
      if (r.samples === 0) {
        lines.push(`| ${r.contender} | ${defs.map(() => "failed | —").join(" | ")} | — | — | — | — | — | — |`)
        continue
      }
      const cells = defs.map((d) => {
        const m = r.metrics[d.key]!
        const ratio = r.ratioToRaw[d.key]
        return `${fmt(m.median)} (${fmt(m.min)}–${fmt(m.max)}) | ${
          ratio === null || ratio === undefined ? "—" : `${ratio.toFixed(2)}×`
        }`
      })
      const pct = (x: number) => `${Math.round(x * 100)}%`
      lines.push(
        `| ${r.contender}${r.failures > 0 ? ` (${r.failures} failed)` : ""} | ${cells.join(" | ")} | ${
          fmt(r.clientCpuPerOp)
        } | ${fmt(r.serverCpuPerOp)} | ${pct(r.clientBusy)} | ${pct(r.serverBusy)} | ${fmt(r.clientPeakRssMiB)} | ${
          fmt(r.serverPeakRssMiB)
        } |`
      )
    }
  }
  return lines.join("\n")
}

interface TargetCheck {
  readonly workload: WorkloadId
  readonly metric: string
  readonly target: string
  readonly ratio: number | null
  readonly met: boolean | null
  readonly clientCpuPerOp: number
  readonly serverCpuPerOp: number
  readonly clientBusy: number
  readonly serverBusy: number
  readonly bottleneck: string
}

const checkTargets = (summaries: ReadonlyArray<Summary>): Array<TargetCheck> =>
  TARGETS.flatMap((t) => {
    const s = summaries.find((x) => x.workload === t.workload && x.contender === "duplex")
    const raw = summaries.find((x) => x.workload === t.workload && x.contender === "raw")
    if (s === undefined) return []
    const def = METRICS[t.workload].metrics.find((d) => d.key === t.key)!
    const ratio = s.ratioToRaw[t.key] ?? null
    const met = ratio === null ? null : def.better === "higher" ? ratio >= t.ratio : ratio <= t.ratio
    // Throughput: the side that spends more CPU per op caps it (at 100% busy it is the limit);
    // the busy shares tell whether either side was saturated at all. Latency: the side that adds
    // more CPU per call over raw's same side adds the most to each round trip.
    const pct = (x: number) => `${Math.round(x * 100)}%`
    const bottleneck = def.better === "higher"
      ? `${s.clientCpuPerOp >= s.serverCpuPerOp ? "client" : "server"} (more CPU per op; busy client ${
        pct(s.clientBusy)
      }, server ${pct(s.serverBusy)}${
        Math.max(s.clientBusy, s.serverBusy) < 0.7 ? ": neither saturated, so waiting dominates" : ""
      })`
      : raw === undefined
      ? "—"
      : `${
        s.clientCpuPerOp - raw.clientCpuPerOp >= s.serverCpuPerOp - raw.serverCpuPerOp ? "client" : "server"
      } (CPU µs/call over raw: client +${fmt(s.clientCpuPerOp - raw.clientCpuPerOp)}, server +${
        fmt(s.serverCpuPerOp - raw.serverCpuPerOp)
      })`
    return [{
      workload: t.workload,
      metric: t.key,
      target: `${def.better === "higher" ? "≥" : "≤"} ${t.ratio.toFixed(2)}×`,
      ratio,
      met,
      clientCpuPerOp: s.clientCpuPerOp,
      serverCpuPerOp: s.serverCpuPerOp,
      clientBusy: s.clientBusy,
      serverBusy: s.serverBusy,
      bottleneck
    }]
  })

const targetTable = (checks: ReadonlyArray<TargetCheck>): string =>
  [
    "",
    "### Duplex targets (ratio to raw)",
    "",
    "| workload | metric | target | duplex | met | client CPU µs/op | server CPU µs/op | bottleneck |",
    "| --- | --- | --- | ---: | --- | ---: | ---: | --- |",
    ...checks.map((c) =>
      `| ${c.workload.toUpperCase()} | ${c.metric} | ${c.target} | ${
        c.ratio === null ? "—" : `${c.ratio.toFixed(2)}×`
      } | ${c.met === null ? "—" : c.met ? "yes" : "**no**"} | ${fmt(c.clientCpuPerOp)} | ${fmt(c.serverCpuPerOp)} | ${
        c.met === false ? c.bottleneck : ""
      } |`
    )
  ].join("\n")

// ---------------------------------------------------------------------------------------------
// SVG chart
// ---------------------------------------------------------------------------------------------

const COLORS: Record<ContenderId, string> = {
  raw: "#888888",
  duplex: "#1f77b4",
  "effect-rpc": "#ff7f0e",
  grpc: "#2ca02c",
  zeromq: "#9467bd"
}

const escapeXml = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")

/**
 * Grouped bars of ratios to raw, one group per workload metric, one colour per contender, on a
 * log scale with bars growing from the 1.0× line (raw), so 2× and 0.5× are equally far from it.
 */
const chart = (
  summaries: ReadonlyArray<Summary>,
  workloads: ReadonlyArray<WorkloadId>,
  contenders: ReadonlyArray<ContenderId>,
  subtitle: string
): string => {
  const bars = contenders.filter((c) => c !== "raw")
  const groups = workloads.flatMap((w) =>
    METRICS[w].metrics.map((d) => ({
      workload: w,
      def: d,
      label: `${w.toUpperCase()} ${d.key}`,
      values: bars.map((c) => summaries.find((s) => s.workload === w && s.contender === c)?.ratioToRaw[d.key] ?? null)
    }))
  )
  const all = groups.flatMap((g) => g.values).filter((v): v is number => v !== null && v > 0)
  const lo = Math.min(-2, Math.floor(Math.log2(Math.min(1, ...all))))
  const hi = Math.max(1, Math.ceil(Math.log2(Math.max(1, ...all))))
  const barW = 16
  const groupW = Math.max(1, bars.length) * barW + 28
  const left = 64
  const top = 64
  const plotH = 360
  const width = left + groups.length * groupW + 20
  const height = top + plotH + 110
  const y = (ratio: number) => top + ((hi - Math.log2(ratio)) / (hi - lo)) * plotH
  const out: Array<string> = []
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="11">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${left}" y="22" font-size="15" font-weight="bold">Duplex and peers relative to raw node:net + msgpack (1.0× = raw)</text>`,
    `<text x="${left}" y="40" fill="#555">${escapeXml(subtitle)}</text>`
  )
  for (let e = lo; e <= hi; e++) {
    const r = 2 ** e
    const yy = y(r).toFixed(1)
    out.push(
      `<line x1="${left}" x2="${width - 20}" y1="${yy}" y2="${yy}" stroke="${
        e === 0 ? "#000" : "#e4e4e4"
      }" stroke-width="${e === 0 ? 1.5 : 1}"${e === 0 ? ` stroke-dasharray="6 3"` : ""}/>`,
      `<text x="${left - 6}" y="${(y(r) + 4).toFixed(1)}" text-anchor="end" fill="#333">${
        r >= 1 ? r : `1/${1 / r}`
      }×</text>`
    )
  }
  groups.forEach((g, gi) => {
    const x0 = left + gi * groupW + 14
    g.values.forEach((v, bi) => {
      const x = x0 + bi * barW
      if (v === null || !(v > 0)) {
        out.push(`<text x="${x + barW / 2}" y="${y(1) - 4}" text-anchor="middle" fill="#999">–</text>`)
        return
      }
      const y1 = y(Math.min(Math.max(v, 2 ** lo), 2 ** hi))
      const y0 = y(1)
      out.push(
        `<rect x="${x + 1}" y="${Math.min(y0, y1).toFixed(1)}" width="${barW - 2}" height="${
          Math.max(1, Math.abs(y1 - y0)).toFixed(1)
        }" fill="${COLORS[bars[bi]!]}"><title>${
          escapeXml(`${bars[bi]} ${g.label}: ${v.toFixed(2)}× raw`)
        }</title></rect>`,
        `<text x="${x + barW / 2}" y="${
          (v >= 1 ? y1 - 3 : y1 + 10).toFixed(1)
        }" text-anchor="middle" font-size="8" fill="#333">${v >= 10 ? v.toFixed(0) : v.toFixed(2)}</text>`
      )
    })
    const cx = x0 + (bars.length * barW) / 2
    out.push(
      `<text x="${cx}" y="${top + plotH + 18}" text-anchor="middle" font-weight="bold">${
        escapeXml(g.workload.toUpperCase())
      }</text>`,
      `<text x="${cx}" y="${top + plotH + 32}" text-anchor="middle">${escapeXml(g.def.key)}</text>`,
      `<text x="${cx}" y="${top + plotH + 46}" text-anchor="middle" fill="#555">${
        g.def.better === "higher" ? "higher is better" : "lower is better"
      }</text>`
    )
  })
  bars.forEach((c, i) => {
    const x = left + i * 120
    out.push(
      `<rect x="${x}" y="${height - 30}" width="12" height="12" fill="${COLORS[c]}"/>`,
      `<text x="${x + 16}" y="${height - 20}">${escapeXml(c)}</text>`
    )
  })
  out.push(
    `<text x="${left + bars.length * 120}" y="${height - 20}" fill="#333">- - - raw = 1.0×</text>`,
    `</svg>`
  )
  return out.join("\n") + "\n"
}

// ---------------------------------------------------------------------------------------------
// Driver
// ---------------------------------------------------------------------------------------------

const versionOf = (pkg: string): string | null => {
  try {
    const json: unknown = JSON.parse(
      Fs.readFileSync(Path.join(root, pkg === "duplex" ? "" : `node_modules/${pkg}`, "package.json"), "utf8")
    )
    return typeof json === "object" && json !== null && "version" in json && typeof json.version === "string"
      ? json.version
      : null
  } catch {
    return null
  }
}

const mainOrchestrator = async () => {
  const args = process.argv.slice(2)
  const quick = args.includes("--quick")
  const only = args.find((a) => a.startsWith("--only="))?.slice(7).split(",").filter((s) => s.length > 0) ?? []
  const repsArg = args.find((a) => a.startsWith("--reps="))
  const reps = repsArg === undefined ? 3 : Math.max(1, Number(repsArg.slice(7)))
  const pinArg = args.find((a) => a.startsWith("--pin="))?.slice(6) ?? "process"
  if (pinArg !== "process" && pinArg !== "main" && pinArg !== "none") throw new Error(`--pin: ${pinArg}`)
  const pin: PinMode = canPin ? pinArg : "none"
  for (const token of only) {
    if (!isContender(token) && !isWorkload(token)) throw new Error(`--only: unknown contender or workload ${token}`)
  }
  const onlyContenders = only.filter(isContender)
  const onlyWorkloads = only.filter(isWorkload)
  const workloads = onlyWorkloads.length > 0 ? WORKLOADS.filter((w) => onlyWorkloads.includes(w)) : WORKLOADS
  const wanted = onlyContenders.length > 0
    ? CONTENDERS.filter((c) => c === "raw" || onlyContenders.includes(c))
    : CONTENDERS

  const skipped: Array<{ readonly contender: ContenderId; readonly reason: string }> = []
  const contenders: Array<ContenderId> = []
  for (const c of wanted) {
    const library = libraryOf[c]
    if (library !== undefined) {
      try {
        await library()
      } catch (e) {
        skipped.push({ contender: c, reason: `cannot load its library: ${String(e).split("\n")[0]}` })
        continue
      }
    }
    contenders.push(c)
  }

  const sizes = sizesFor(quick)
  const started = Date.now()
  const cpuModel = Os.cpus()[0]?.model ?? "?"
  const loadAtStart = Os.loadavg()[0]!
  const notes = [
    "effect/rpc: RpcSerialization.layerNdjson (effect 4.1 has no msgpack serialization; binary chunks travel as base64 JSON strings); tracing disabled on client and server (Duplex does not trace by default).",
    "grpc: @grpc/grpc-js, service defined in code (makeGenericClientConstructor / Server.addService), msgpack serialize/deserialize, insecure credentials, HTTP/2 flow-control window 256 KiB (Duplex's default credit window; grpc-js's default is 64 KiB); W5 uses a local subchannel pool so each client has its own connection.",
    "zeromq: DEALER (client) / ROUTER (server, mandatory routing so sends wait at the high-water mark instead of dropping), msgpack bodies.",
    "duplex and effect-rpc stream handlers: Stream.range(...) then map; bulk emits one 64 KiB chunk per stream chunk.",
    "W5 connect time: all connections opened concurrently, each until its first call completed; calls/s covers the following calls only.",
    `Each sample: fresh server and client processes (${
      pin === "none"
        ? "not pinned"
        : `taskset, ${pin === "process" ? "all threads" : "main thread only"}: server CPU 0, client CPU 1`
    }), warm-up in the same processes first; CPU µs/op from process.cpuUsage (all threads); busy = CPU time / wall time of the measured part (under outside load, waiting for a CPU counts as idle).`
  ]
  console.error(
    `bench/compare${quick ? " --quick" : ""}: ${contenders.join(", ")} × ${workloads.join(", ")} × ${reps} reps` +
      (skipped.length > 0 ? ` (skipped: ${skipped.map((s) => `${s.contender}: ${s.reason}`).join("; ")})` : "")
  )

  const samples: Array<Sample> = []
  const failures: Array<Failure> = []
  const timeoutMs = quick ? 60_000 : 180_000
  for (let rep = 1; rep <= reps; rep++) {
    for (const workload of workloads) {
      for (const contender of contenders) {
        const t0 = Date.now()
        try {
          const s = await runSample(rep, contender, workload, quick, pin, timeoutMs)
          samples.push(s)
          console.error(
            `rep ${rep}/${reps} ${workload} ${contender}: ${
              Object.entries(s.metrics).map(([k, v]) => `${fmt(v)} ${k}`).join(", ")
            } — client ${fmt(s.clientCpuPerOp)} / server ${fmt(s.serverCpuPerOp)} CPU µs/op (${
              ((Date.now() - t0) / 1000).toFixed(1)
            } s)`
          )
        } catch (e) {
          const error = e instanceof Error ? e.message : String(e)
          failures.push({ rep, contender, workload, error })
          console.error(`rep ${rep}/${reps} ${workload} ${contender}: FAILED ${error}`)
        }
      }
    }
  }

  const summaries = summarize(samples, failures, workloads, contenders)
  const checks = contenders.includes("duplex") ? checkTargets(summaries) : []
  const date = new Date().toISOString()
  const versions: Record<string, string | null> = {
    duplex: versionOf("duplex"),
    effect: versionOf("effect"),
    "@effect/platform-node": versionOf("@effect/platform-node"),
    "@msgpack/msgpack": versionOf("@msgpack/msgpack"),
    "@grpc/grpc-js": versionOf("@grpc/grpc-js"),
    zeromq: versionOf("zeromq")
  }
  const machine = {
    node: process.version,
    cpu: cpuModel,
    cores: Os.cpus().length,
    platform: `${Os.platform()} ${Os.release()} ${Os.arch()}`,
    pinned: pin,
    loadAverageAtStart: loadAtStart,
    loadAverageAtEnd: Os.loadavg()[0]!
  }
  const elapsed = (Date.now() - started) / 1000
  const header = `bench/compare — ${date} — Node ${process.version} — ${cpuModel} ×${Os.cpus().length}${
    quick ? " — quick" : ""
  } — ${reps} reps — ${Math.round(elapsed)} s — load ${loadAtStart.toFixed(2)}→${machine.loadAverageAtEnd.toFixed(2)}`
  const versionLine = Object.entries(versions).map(([k, v]) => `${k} ${v ?? "—"}`).join(", ")
  console.log(`\n## ${header}\n\n${versionLine}\n`)
  for (const note of notes) console.log(`- ${note}`)
  for (const s of skipped) console.log(`- skipped ${s.contender}: ${s.reason}`)
  console.log(tables(summaries, workloads))
  if (checks.length > 0) console.log(targetTable(checks))
  if (failures.length > 0) {
    console.log("\nFailures:")
    for (const f of failures) console.log(`- rep ${f.rep} ${f.workload} ${f.contender}: ${f.error}`)
  }

  const outDir = Path.join(root, "bench", "results")
  Fs.mkdirSync(outDir, { recursive: true })
  const result = {
    date,
    machine,
    versions,
    config: { quick, reps, contenders, workloads, sizes, elapsedSeconds: elapsed },
    notes,
    skipped,
    summaries,
    targets: checks,
    samples,
    failures
  }
  const json = JSON.stringify(result, null, 2) + "\n"
  const stamp = date.replace(/:/g, "-").replace(/\..*$/, "")
  const written = [`compare-${stamp}.json`]
  Fs.writeFileSync(Path.join(outDir, written[0]!), json)
  // Only a run of every available contender and workload replaces the latest results and chart.
  if (only.length === 0) {
    Fs.writeFileSync(Path.join(outDir, "compare-latest.json"), json)
    Fs.writeFileSync(
      Path.join(outDir, "compare.svg"),
      chart(
        summaries,
        workloads,
        contenders,
        `${date.slice(0, 10)} · Node ${process.version} · ${cpuModel} ×${Os.cpus().length} · ${
          quick ? "quick" : "full"
        } · medians of ${reps} · log scale`
      )
    )
    written.push("compare-latest.json", "compare.svg")
  }
  console.log(`\nwrote ${written.map((f) => `bench/results/${f}`).join(", ")}`)
}

const [mode, id, workload, port, size] = process.argv.slice(2)
if (mode === "server" && id !== undefined && isContender(id)) {
  void serverMain(id)
} else if (
  mode === "client" && id !== undefined && isContender(id) && workload !== undefined && isWorkload(workload)
) {
  clientMain(id, workload, Number(port), size === "quick").catch((e: unknown) => {
    console.error(e)
    process.exit(1)
  })
} else {
  mainOrchestrator().then(() => process.exit(0), (e: unknown) => {
    console.error(e)
    process.exit(1)
  })
}
