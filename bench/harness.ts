/**
 * Shared benchmark plumbing: a server in a child process (the bench file itself, run with
 * `server <kind>`), its CPU and peak RSS, medians, and the raw length-prefixed msgpack framing
 * used by the "raw" contender (the practical limit: `node:net`, u32 length prefix,
 * `@msgpack/msgpack` bodies with reused Encoder/Decoder, per-tick write batching).
 */
import { Decoder, Encoder } from "@msgpack/msgpack"
import * as ChildProcess from "node:child_process"
import type * as Net from "node:net"
import * as Os from "node:os"

export interface Server {
  readonly port: number
  readonly stats: () => Promise<{ readonly peakRss: number; readonly cpuMicros: number }>
  readonly stop: () => void
}

/** In the child: report peak RSS and CPU on "stats", print "ready <port>" via the returned fn. */
export const serverSide = (): { readonly ready: (port: number) => void } => {
  process.on("SIGINT", () => process.exit(0))
  let peak = 0
  const sample = () => {
    peak = Math.max(peak, process.memoryUsage().rss)
  }
  setInterval(sample, Number(process.env["BENCH_RSS_SAMPLE_MS"] ?? 20)).unref()
  process.stdin.on("data", (d) => {
    if (d.toString().trim() !== "stats") return
    sample()
    const cpu = process.cpuUsage()
    process.stdout.write(`stats ${peak} ${cpu.user + cpu.system}\n`)
    peak = process.memoryUsage().rss
  })
  return { ready: (port) => process.stdout.write(`ready ${port}\n`) }
}

/** Starts `file server kind` in a child process (pinned to CPU 0 with taskset when available). */
export const startServer = (file: string, kind: string): Promise<Server> =>
  new Promise((resolve, reject) => {
    const profile = process.env["DUPLEX_PROF_DIR"]
    const nodeArgs = profile !== undefined ? ["--cpu-prof", `--cpu-prof-dir=${profile}`] : []
    const child = ChildProcess.spawn(process.execPath, [...nodeArgs, file, "server", kind], {
      stdio: ["pipe", "pipe", "inherit"]
    })
    if (Os.cpus().length > 1 && child.pid !== undefined) {
      ChildProcess.spawnSync("taskset", ["-p", "-c", "0", String(child.pid)], { stdio: "ignore" })
    }
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

/** Pins this process to CPU 1 when the machine has two or more. */
export const pinClient = (): void => {
  if (Os.cpus().length > 1) {
    ChildProcess.spawnSync("taskset", ["-p", "-c", "1", String(process.pid)], { stdio: "ignore" })
  }
}

export const median = (xs: ReadonlyArray<number>): number =>
  xs.slice().sort((a, b) => a - b)[Math.floor(xs.length / 2)]!

export const machine = (): string =>
  `${new Date().toISOString()} — Node ${process.version} — ${Os.cpus()[0]?.model ?? "?"} ×${Os.cpus().length}`

// --- raw framing -----------------------------------------------------------------------------

const encoder = new Encoder()
const decoder = new Decoder()

/** One length-prefixed msgpack frame. */
export const rawFrame = (value: unknown): Buffer => {
  const body = encoder.encode(value)
  const frame = Buffer.allocUnsafe(4 + body.length)
  frame.writeUInt32BE(body.length, 0)
  frame.set(body, 4)
  return frame
}

export const rawDecode = (bytes: Uint8Array): unknown => decoder.decode(bytes)

/** Reads length-prefixed frames from a socket, calling `onBody` for each body. */
export const rawReader = (socket: Net.Socket, onBody: (body: Uint8Array) => void): void => {
  let pending: Buffer = Buffer.alloc(0)
  socket.on("data", (chunk: Buffer) => {
    pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk])
    let p = 0
    while (pending.length - p >= 4) {
      const n = pending.readUInt32BE(p)
      if (pending.length - p - 4 < n) break
      onBody(pending.subarray(p + 4, p + 4 + n))
      p += 4 + n
    }
    pending = pending.subarray(p)
  })
}

/** Batches writes per event-loop turn; `write` returns false when the socket wants a drain. */
export const rawWriter = (socket: Net.Socket) => {
  let out: Array<Buffer> = []
  let scheduled = false
  let full = false
  const flush = () => {
    scheduled = false
    if (out.length === 0) return
    const chunks = out
    out = []
    full = !socket.write(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks))
  }
  return {
    write: (frame: Buffer): void => {
      out.push(frame)
      if (!scheduled) {
        scheduled = true
        setImmediate(flush)
      }
    },
    get full() {
      return full
    },
    flushNow: flush
  }
}
