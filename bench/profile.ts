/**
 * bench/profile: runs one workload of one `bench/compare` contender, server and client in two
 * processes (pinned to CPU 0 and 1 when `taskset` works), records a CPU profile of both over the
 * measured part only (the inspector's profiler, started at `begin`, stopped at `end`: module
 * loading and warm-up are left out), then prints the functions with the most self time in each,
 * so a change to the hot path can be checked against where the time goes.
 *
 * Run: `node bench/profile.ts duplex w1 [--scale=N] [--top=N] [--dir=DIR] [--flags=F,F]` (scale
 * multiplies the quick sizes of `bench/compare`, default 3; W5 uses the full 1,000 connections
 * with `100 × scale` calls each; flags go to both node processes). Profiles are kept in DIR
 * (default a temp dir) for Chrome DevTools or speedscope.
 */
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Inspector from "node:inspector/promises"
import * as Os from "node:os"
import * as Path from "node:path"
import type { Contender, Session, Sizes, WorkloadId } from "./compare/common.ts"
import { sizesFor } from "./compare/common.ts"

const file = new URL(import.meta.url).pathname

const load = (id: string): Promise<Contender> =>
  import(`./compare/${id}.ts`).then((m: { contender: Contender }) => m.contender)

const scaled = (scale: number): Sizes => {
  const base = sizesFor(true)
  return {
    ...base,
    w1Calls: base.w1Calls * scale,
    w2Calls: base.w2Calls * scale,
    w3Messages: base.w3Messages * scale,
    w4Bytes: base.w4Bytes * scale,
    w5Connections: sizesFor(false).w5Connections,
    w5Calls: base.w5Calls * scale
  }
}

interface ProfileNode {
  readonly id: number
  readonly callFrame: { readonly functionName: string; readonly url: string; readonly lineNumber: number }
}
interface Profile {
  readonly nodes: ReadonlyArray<ProfileNode>
  readonly samples: ReadonlyArray<number>
  readonly timeDeltas: ReadonlyArray<number>
}

/** Self time per function (name, file, line), largest first. */
const summarize = (path: string, top: number): string => {
  const profile: Profile = JSON.parse(Fs.readFileSync(path, "utf8"))
  const nodes = new Map(profile.nodes.map((n) => [n.id, n]))
  const self = new Map<string, number>()
  let total = 0
  profile.samples.forEach((id, i) => {
    const frame = nodes.get(id)?.callFrame
    if (frame === undefined) return
    const where = frame.url.split("/").slice(-2).join("/")
    const key = `${frame.functionName || "(anonymous)"} ${where}:${frame.lineNumber + 1}`
    const dt = profile.timeDeltas[i] ?? 0
    self.set(key, (self.get(key) ?? 0) + dt)
    total += dt
  })
  const busy = total - (self.get("(idle) :0") ?? 0)
  const rows = [...self].filter(([k]) => k !== "(idle) :0").sort((a, b) => b[1] - a[1]).slice(0, top)
  return [
    `busy ${(busy / 1000).toFixed(0)} ms of ${(total / 1000).toFixed(0)} ms`,
    ...rows.map(([k, t]) => `${(100 * t / busy).toFixed(1).padStart(5)}%  ${k}`)
  ].join("\n")
}

const main = async () => {
  const args = process.argv.slice(2)
  const [id, workload] = args
  if (id === undefined || workload === undefined) throw new Error("usage: bench/profile.ts <contender> <w1..w5>")
  const scale = Number(args.find((a) => a.startsWith("--scale="))?.slice(8) ?? 3)
  const top = Number(args.find((a) => a.startsWith("--top="))?.slice(6) ?? 40)
  const dir = args.find((a) => a.startsWith("--dir="))?.slice(6) ??
    Fs.mkdtempSync(Path.join(Os.tmpdir(), "duplex-profile-"))
  Fs.mkdirSync(dir, { recursive: true })
  const pin = Os.cpus().length > 1 &&
    ChildProcess.spawnSync("taskset", ["-c", "0", "true"], { stdio: "ignore" }).status === 0
  // V8/Node flags for both children, e.g. `--flags=--no-turbo-inlining` for exact self times
  const flags = args.find((a) => a.startsWith("--flags="))?.slice(8).split(",").filter((f) => f !== "") ?? []
  const spawn = (cpu: number, sub: ReadonlyArray<string>) => {
    const nodeArgs = [...flags, file, ...sub, ...(sub[0] === "server" ? ["0", "0", "0"] : []), dir]
    return pin
      ? ChildProcess.spawn("taskset", ["-c", String(cpu), process.execPath, ...nodeArgs], {
        stdio: ["pipe", "pipe", "inherit"]
      })
      : ChildProcess.spawn(process.execPath, nodeArgs, { stdio: ["pipe", "pipe", "inherit"] })
  }
  const server = spawn(0, ["server", id])
  const port = await new Promise<string>((resolve) =>
    server.stdout.on("data", (d: Buffer) => {
      const m = /port (\d+)/.exec(d.toString())
      if (m !== null) resolve(m[1]!)
    })
  )
  const client = spawn(1, ["client", id, workload, port, String(scale)])
  // The client's control lines (`begin`, `end`) are passed to the server, which profiles the same span.
  client.stdout.on("data", (d: Buffer) => {
    for (const line of d.toString().split("\n")) {
      if (line === "begin" || line === "end") server.stdin.write(`${line}\n`)
      else if (line.length > 0) console.log(line)
    }
  })
  await new Promise((resolve) => client.on("exit", resolve))
  server.stdin.end()
  await new Promise((resolve) => server.on("exit", resolve))
  for (const side of ["server", "client"]) {
    const path = Path.join(dir, `${side}.cpuprofile`)
    console.log(`\n== ${side} (${path})\n${summarize(path, top)}`)
  }
}

const startProfile = async () => {
  const session = new Inspector.Session()
  session.connect()
  await session.post("Profiler.enable")
  await session.post("Profiler.setSamplingInterval", { interval: 50 })
  await session.post("Profiler.start")
  return async (path: string) => {
    const { profile } = await session.post("Profiler.stop")
    Fs.writeFileSync(path, JSON.stringify(profile))
    session.disconnect()
  }
}

const child = async (mode: string, id: string, workload: string, port: string, scale: string, dir: string) => {
  const contender = await load(id)
  if (mode === "server") {
    contender.server((p) => process.stdout.write(`port ${p}\n`))
    let stop: Promise<(path: string) => Promise<void>> | undefined
    let written: Promise<void> = Promise.resolve()
    let buffer = ""
    process.stdin.on("data", (d: Buffer) => {
      buffer += d.toString()
      const lines = buffer.split("\n")
      buffer = lines.pop() ?? ""
      for (const line of lines) {
        if (line === "begin") stop = startProfile()
        else if (line === "end" && stop !== undefined) {
          const pending = stop
          written = pending.then((f) => f(Path.join(dir, "server.cpuprofile")))
        }
      }
    })
    process.stdin.on("end", () => void written.then(() => process.exit(0)))
    return
  }
  let stop: ((path: string) => Promise<void>) | undefined
  let t0 = 0
  let cpu0 = 0
  const session: Session = {
    port: Number(port),
    sizes: scaled(Number(scale)),
    begin: async () => {
      process.stdout.write("begin\n")
      stop = await startProfile()
      t0 = performance.now()
      cpu0 = process.cpuUsage().user + process.cpuUsage().system
    },
    end: async (metrics) => {
      const seconds = (performance.now() - t0) / 1000
      const cpu = process.cpuUsage().user + process.cpuUsage().system - cpu0
      await stop?.(Path.join(dir, "client.cpuprofile"))
      process.stdout.write("end\n")
      const values = typeof metrics === "function" ? metrics() : metrics
      console.log(`${id} ${workload}: ${seconds.toFixed(2)} s, client CPU ${(cpu / 1000).toFixed(0)} ms`, values)
    }
  }
  const run: Record<WorkloadId, (s: Session) => Promise<void>> = contender
  await run[workload as WorkloadId](session)
  process.exit(0)
}

const [mode, ...rest] = process.argv.slice(2)
if (mode === "server" || mode === "client") {
  const [id = "", workload = "", port = "0", scale = "1", dir = Os.tmpdir()] = rest
  void child(mode, id, workload, port, scale, dir)
} else {
  void main()
}
