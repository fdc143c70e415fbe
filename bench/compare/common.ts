/**
 * Shared definitions of `bench/compare.ts`: workload sizes, the session a client workload runs
 * in, the contender interface, and process plumbing (peak RSS, control lines).
 */
import * as Fs from "node:fs"

/** The payload of every unary call (W1, W2, W5), identical for all contenders. */
export const request = { id: 12345, name: "abcdefghijklmnop", n: 42 }

export const HOST = "127.0.0.1"

export interface Sizes {
  readonly w1Calls: number
  readonly w1Inflight: number
  readonly w2Calls: number
  readonly w3Messages: number
  readonly w4Bytes: number
  readonly chunk: number
  readonly w5Connections: number
  readonly w5Calls: number
  /** Warm-up sizes, run in the same processes (and, except W5, on the same connection) first. */
  readonly warm: {
    readonly w1Calls: number
    readonly w2Calls: number
    readonly w3Messages: number
    readonly w4Bytes: number
    readonly w5Connections: number
  }
}

export const sizesFor = (quick: boolean): Sizes => {
  const w1Calls = quick ? 40_000 : 200_000
  const w2Calls = quick ? 4_000 : 20_000
  const w3Messages = quick ? 200_000 : 1_000_000
  const w4Bytes = (quick ? 100 : 512) * 1024 * 1024
  return {
    w1Calls,
    w1Inflight: 256,
    w2Calls,
    w3Messages,
    w4Bytes,
    chunk: 64 * 1024,
    w5Connections: quick ? 200 : 1_000,
    w5Calls: 100,
    // The same warm-up in quick and full runs: enough for the JIT to settle in both processes
    // (with a tenth of W2 as warm-up, 1% of the measured calls still met optimizing-compiler work
    // pinned to the same CPU, which is what a p99 then measured).
    warm: {
      w1Calls: 50_000,
      w2Calls: 20_000,
      w3Messages: 200_000,
      w4Bytes: 64 * 1024 * 1024,
      w5Connections: 20
    }
  }
}

/** Metrics a workload reports at `end` (beside the time and CPU the harness measures). */
export type Metrics = Readonly<Record<string, number>>

/**
 * What a client workload runs in: it connects and warms up, calls `begin` right before the
 * measured part, and `end` right after it (the harness measures time and CPU between the two,
 * and the server's CPU and peak RSS over the same span).
 */
export interface Session {
  readonly port: number
  readonly sizes: Sizes
  readonly begin: () => Promise<void>
  /** `metrics` may be a function, evaluated after the measured span (e.g. sorting latencies). */
  readonly end: (metrics: Metrics | (() => Metrics)) => Promise<void>
}

export type WorkloadId = "w1" | "w2" | "w3" | "w4" | "w5"

/**
 * One contender: its server (run in the server process) and the client side of each workload.
 *
 * - w1: `w1Calls` unary calls, `w1Inflight` at a time, one connection.
 * - w2: `w2Calls` sequential calls; reports `p50` and `p99` (µs).
 * - w3: one server-stream call of `w3Messages` `{ i }`; reports `messages`.
 * - w4: one server-stream call of `w4Bytes` in `chunk`-byte binary messages; reports `bytes`.
 * - w5: `w5Connections` connections opened concurrently, each making one call (the connect
 *   phase, reported as `connectMs`), then `w5Calls` sequential calls on each, all concurrently.
 */
export interface Contender {
  readonly server: (ready: (port: number) => void) => void
  readonly w1: (session: Session) => Promise<void>
  readonly w2: (session: Session) => Promise<void>
  readonly w3: (session: Session) => Promise<void>
  readonly w4: (session: Session) => Promise<void>
  readonly w5: (session: Session) => Promise<void>
}

/** p-quantile of latencies in milliseconds, in microseconds. */
export const percentileMicros = (latenciesMs: ReadonlyArray<number>, p: number): number => {
  const sorted = latenciesMs.slice().sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]! * 1000
}

export const latencyMetrics = (latenciesMs: ReadonlyArray<number>): Metrics => ({
  p50: percentileMicros(latenciesMs, 0.5),
  p99: percentileMicros(latenciesMs, 0.99)
})

// ---------------------------------------------------------------------------------------------
// Process plumbing
// ---------------------------------------------------------------------------------------------

/** Prefix of control lines on a child's stdout (anything else a library prints is passed on). */
export const CONTROL = "@@compare "

export const sendControl = (line: string): void => {
  process.stdout.write(`${CONTROL}${line}\n`)
}

/** Calls `onLine` for each control line arriving on this process's stdin. */
export const onControl = (onLine: (line: string) => void): void => {
  let buffer = ""
  process.stdin.on("data", (d: Buffer) => {
    buffer += d.toString()
    let i
    while ((i = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, i).trim()
      buffer = buffer.slice(i + 1)
      if (line.length > 0) onLine(line)
    }
  })
}

/**
 * Peak resident set size since the last `reset`: the kernel's VmHWM (reset through
 * `/proc/self/clear_refs`) on Linux, else sampled every 20 ms.
 */
export const peakRssTracker = (): { readonly reset: () => void; readonly peak: () => number } => {
  const readHwm = (): number | undefined => {
    try {
      const match = /VmHWM:\s+(\d+) kB/.exec(Fs.readFileSync("/proc/self/status", "utf8"))
      return match === null ? undefined : Number(match[1]) * 1024
    } catch {
      return undefined
    }
  }
  const kernel = (() => {
    try {
      Fs.writeFileSync("/proc/self/clear_refs", "5")
      return readHwm() !== undefined
    } catch {
      return false
    }
  })()
  if (kernel) {
    return {
      reset: () => Fs.writeFileSync("/proc/self/clear_refs", "5"),
      peak: () => readHwm() ?? process.memoryUsage().rss
    }
  }
  let peak = 0
  const sample = () => {
    peak = Math.max(peak, process.memoryUsage().rss)
  }
  setInterval(sample, 20).unref()
  return {
    reset: () => {
      peak = process.memoryUsage().rss
    },
    peak: () => {
      sample()
      return peak
    }
  }
}

export const cpuMicros = (): number => {
  const cpu = process.cpuUsage()
  return cpu.user + cpu.system
}
