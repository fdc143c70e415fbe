/**
 * Frame codec throughput: Duplex `FrameEncoder` / `FrameDecoder` against `@msgpack/msgpack` (small
 * frames) and against plain memory copies (64 KiB frames).
 *
 * Run with `npm run bench` (Node 24 strips the types). Prints a markdown table and writes
 * `bench/results/frame-codec.json`.
 *
 * Method: every case is first run briefly in a global warm-up pass (so all code paths see the same,
 * realistic mix of frame shapes before anything is timed), then warmed again on its own, then timed
 * in several samples of a calibrated number of iterations with `process.hrtime.bigint()`; the median
 * sample is reported. Every case folds its outputs into a checksum that is printed, so no work can be
 * eliminated as dead code. MB/s counts each codec's own wire bytes, 1 MB = 10^6 bytes.
 */
import { decode, Decoder, encode, Encoder } from "@msgpack/msgpack"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as Frame from "../src/Frame.ts"
import { FrameDecoder, FrameEncoder } from "../src/FrameCodec.ts"
import * as Headers from "../src/Headers.ts"

// ---------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------

const SMALL_FRAMES = 4096 // frames per timed operation (≈ 220 KB of DATA frames on the wire)
const LARGE_FRAMES = 64 // frames per timed operation (4 MiB)
const LARGE_PAYLOAD = 64 * 1024
const LARGE_DISTINCT = 16 // distinct 64 KiB payloads, reused round-robin
const BATCH = 64 // frames per flush in the batched encoder case
const CHUNK = 64 * 1024 // socket read size for the chunked decoder case
const PREWARM_MS = 25
const WARMUP_MS = 150
const SAMPLE_MS = 90
const SAMPLES = 9

// ---------------------------------------------------------------------------------------------
// Checksum (dead-code elimination guard)
// ---------------------------------------------------------------------------------------------

let sink = 0
const fold = (n: number): void => {
  sink = (sink * 31 + n) | 0
}

// ---------------------------------------------------------------------------------------------
// Workloads
// ---------------------------------------------------------------------------------------------

const nameChars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
const name16 = (i: number): string => {
  let s = ""
  for (let k = 0; k < 16; k++) s += nameChars[(i * 7 + k * 13) % nameChars.length]!
  return s
}

/** msgpack payload {id, name: 16 chars, n}: 42 bytes (id as uint32, n as float64). */
const smallPayload = (i: number): Uint8Array => encode({ id: 1_000_000 + i, name: name16(i), n: i + 0.5 })

type Wire = readonly [number, number, string, Headers.Headers, string, boolean, Uint8Array | null]
const toArray = (f: Frame.Frame): Wire => [f.type, f.channel, f.method, f.headers, f.error, f.last, f.payload]

const dataFrames: ReadonlyArray<Frame.Frame> = Array.from(
  { length: SMALL_FRAMES },
  (_, i) => Frame.data(5, smallPayload(i), false)
)
const openFrames: ReadonlyArray<Frame.Frame> = Array.from(
  { length: SMALL_FRAMES },
  (_, i) =>
    Frame.open(
      2 * i,
      "Arith.Add",
      Headers.make({
        "trace-id": (0x4bf92f35 + i).toString(16).padStart(8, "0") + "77b34da6a3ce929d0e0e4736",
        "deadline-ms": String(5000 + (i % 100))
      })
    )
)
const largePayloads: ReadonlyArray<Uint8Array> = Array.from({ length: LARGE_DISTINCT }, (_, i) => {
  const p = new Uint8Array(LARGE_PAYLOAD)
  for (let k = 0; k < p.length; k++) p[k] = (k * 131 + i) & 0xff
  return p
})
const largeFrames: ReadonlyArray<Frame.Frame> = Array.from(
  { length: LARGE_FRAMES },
  (_, i) => Frame.data(5, largePayloads[i % LARGE_DISTINCT]!, false)
)

const concat = (parts: ReadonlyArray<Uint8Array>): Uint8Array => {
  let n = 0
  for (const p of parts) n += p.length
  const out = new Uint8Array(n)
  let o = 0
  for (const p of parts) {
    out.set(p, o)
    o += p.length
  }
  return out
}

const duplexWire = (frames: ReadonlyArray<Frame.Frame>): Uint8Array => {
  const enc = new FrameEncoder()
  const parts: Array<Uint8Array> = []
  for (const f of frames) {
    enc.write(f)
    parts.push(enc.flush()!)
  }
  return concat(parts)
}

const chunked = (bytes: Uint8Array, size: number): ReadonlyArray<Uint8Array> => {
  const out: Array<Uint8Array> = []
  for (let o = 0; o < bytes.length; o += size) out.push(bytes.subarray(o, Math.min(o + size, bytes.length)))
  return out
}

interface Workload {
  readonly key: string
  readonly label: string
  readonly frames: ReadonlyArray<Frame.Frame>
  readonly arrays: ReadonlyArray<Wire>
  /** Duplex wire bytes, all frames concatenated. */
  readonly wire: Uint8Array
  readonly wireChunks: ReadonlyArray<Uint8Array>
  /** Each frame as `@msgpack/msgpack` encodes the same 7-element array (payload as bin). */
  readonly mpFrames: ReadonlyArray<Uint8Array>
  readonly mpWire: Uint8Array
}

const workload = (key: string, label: string, frames: ReadonlyArray<Frame.Frame>): Workload => {
  const wire = duplexWire(frames)
  const arrays = frames.map(toArray)
  const mpFrames = arrays.map((a) => encode(a).slice())
  return { key, label, frames, arrays, wire, wireChunks: chunked(wire, CHUNK), mpFrames, mpWire: concat(mpFrames) }
}

const small = workload("data-small", "small DATA, ch 5, 42 B payload", dataFrames)
const open = workload("open-small", "small OPEN, Arith.Add + 2 headers", openFrames)
const large = workload("data-64k", "large DATA, 64 KiB payload", largeFrames)

/**
 * Sanity check, run after timing (running it first would give the decoder a second `onFrame` target and
 * change what the JIT does with the timed code): the Duplex wire bytes decode back to the input frames.
 */
const verify = (w: Workload): void => {
  const got: Array<Frame.Frame> = []
  const err = new FrameDecoder().feed(w.wire, (f) => got.push(f))
  const same = (a: Frame.Frame, b: Frame.Frame): boolean =>
    a.type === b.type && a.channel === b.channel && a.method === b.method && a.error === b.error &&
    a.last === b.last && JSON.stringify(Object.entries(a.headers)) === JSON.stringify(Object.entries(b.headers)) &&
    (a.payload === null ? b.payload === null : b.payload !== null && Buffer.compare(a.payload, b.payload) === 0)
  if (err !== undefined || got.length !== w.frames.length || !got.every((f, i) => same(f, w.frames[i]!))) {
    throw new Error(`${w.key}: Duplex wire bytes do not decode back to the input frames`)
  }
}

// ---------------------------------------------------------------------------------------------
// Cases
// ---------------------------------------------------------------------------------------------

type Direction = "encode" | "decode"

interface Case {
  readonly workload: Workload
  readonly direction: Direction
  readonly id: string
  readonly label: string
  readonly frames: number
  readonly bytes: number
  readonly run: () => number
}

const cases: Array<Case> = []
const add = (w: Workload, direction: Direction, id: string, label: string, bytes: number, run: () => number) =>
  cases.push({ workload: w, direction, id, label, frames: w.frames.length, bytes, run })

let decoded = 0
const onFrame = (f: Frame.Frame): void => {
  decoded = (decoded + f.channel + f.method.length + (f.payload === null ? 0 : f.payload.length)) | 0
}
const mpFold = (v: unknown): number => {
  const a = v as ReadonlyArray<unknown>
  const payload = a[6] as Uint8Array | null
  return (a[1] as number) + (a[2] as string).length + (payload === null ? 0 : payload.length)
}

const mpGenericEncode = (w: Workload) => (): number => {
  let s = 0
  for (const a of w.arrays) s += encode(a).length
  return s
}
const mpReusedEncode = (w: Workload) => {
  const enc = new Encoder()
  return (): number => {
    let s = 0
    for (const a of w.arrays) s += enc.encode(a).length
    return s
  }
}
const mpSharedRefEncode = (w: Workload) => {
  const enc = new Encoder()
  return (): number => {
    let s = 0
    for (const a of w.arrays) {
      const out = enc.encodeSharedRef(a)
      s += out.length + out[out.length - 1]!
    }
    return s
  }
}
const duplexEncode = (w: Workload, batch: number) => {
  const enc = new FrameEncoder()
  return (): number => {
    let s = 0
    const frames = w.frames
    for (let i = 0; i < frames.length; i++) {
      enc.write(frames[i]!)
      if ((i + 1) % batch === 0) {
        const out = enc.flush()!
        s += out.length + out[out.length - 1]!
      }
    }
    const rest = enc.flush()
    if (rest !== undefined) s += rest.length
    return s
  }
}
const duplexDecode = (w: Workload, chunks: ReadonlyArray<Uint8Array>) => {
  const dec = new FrameDecoder()
  return (): number => {
    decoded = 0
    for (const c of chunks) {
      const err = dec.feed(c, onFrame)
      if (err !== undefined) throw err
    }
    if (dec.pendingBytes !== 0) throw new Error("decoder left a partial frame")
    return decoded
  }
}
const mpGenericDecode = (w: Workload) => (): number => {
  let s = 0
  for (const b of w.mpFrames) s += mpFold(decode(b))
  return s
}
const mpReusedDecode = (w: Workload) => {
  const dec = new Decoder()
  return (): number => {
    let s = 0
    for (const b of w.mpFrames) s += mpFold(dec.decode(b))
    return s
  }
}
const mpMultiDecode = (w: Workload) => {
  const dec = new Decoder()
  return (): number => {
    let s = 0
    for (const v of dec.decodeMulti(w.mpWire)) s += mpFold(v)
    return s
  }
}

const addSmall = (w: Workload): void => {
  const n = w.wire.length
  const m = w.mpWire.length
  add(w, "encode", "duplex-batch", `duplex write+flush ×${BATCH}`, n, duplexEncode(w, BATCH))
  add(w, "encode", "duplex-single", "duplex write+flush ×1", n, duplexEncode(w, 1))
  add(w, "encode", "msgpack-generic", "msgpack encode()", m, mpGenericEncode(w))
  add(w, "encode", "msgpack-reused", "msgpack Encoder#encode (reused)", m, mpReusedEncode(w))
  add(w, "encode", "msgpack-sharedref", "msgpack Encoder#encodeSharedRef (reused)", m, mpSharedRefEncode(w))
  add(w, "decode", "duplex-whole", "duplex feed (one buffer)", n, duplexDecode(w, [w.wire]))
  add(w, "decode", "duplex-chunked", "duplex feed (64 KiB chunks)", n, duplexDecode(w, w.wireChunks))
  add(w, "decode", "msgpack-generic", "msgpack decode() per frame", m, mpGenericDecode(w))
  add(w, "decode", "msgpack-reused", "msgpack Decoder#decode (reused)", m, mpReusedDecode(w))
  add(w, "decode", "msgpack-multi", "msgpack Decoder#decodeMulti (one buffer)", m, mpMultiDecode(w))
}

const addLarge = (w: Workload): void => {
  const n = w.wire.length
  const frames = w.frames
  const header = w.wire.subarray(0, w.wire.length / frames.length - LARGE_PAYLOAD)
  const frameLen = header.length + LARGE_PAYLOAD
  add(w, "encode", "duplex-batch", `duplex write+flush ×${BATCH}`, n, duplexEncode(w, BATCH))
  add(w, "encode", "duplex-single", "duplex write+flush ×1", n, duplexEncode(w, 1))
  add(w, "encode", "msgpack-reused", "msgpack Encoder#encode (reused)", w.mpWire.length, mpReusedEncode(w))
  const dst = new Uint8Array(frameLen)
  add(w, "encode", "memcpy-set", "memcpy: set() into preallocated", n, () => {
    let s = 0
    for (const f of frames) {
      dst.set(header, 0)
      dst.set(f.payload!, header.length)
      s += dst[frameLen - 1]!
    }
    return s
  })
  add(w, "encode", "memcpy-concat", "memcpy: Buffer.concat([header, payload])", n, () => {
    let s = 0
    for (const f of frames) {
      const out = Buffer.concat([header, f.payload!], frameLen)
      s += out[frameLen - 1]!
    }
    return s
  })
  add(w, "decode", "duplex-whole", "duplex feed (one buffer)", n, duplexDecode(w, [w.wire]))
  add(w, "decode", "duplex-chunked", "duplex feed (64 KiB chunks)", n, duplexDecode(w, w.wireChunks))
  add(w, "decode", "msgpack-reused", "msgpack Decoder#decode (reused)", w.mpWire.length, mpReusedDecode(w))
  const wire = w.wire
  add(w, "decode", "memcpy-set", "memcpy: set() each frame into preallocated", n, () => {
    let s = 0
    for (let o = 0; o < wire.length; o += frameLen) {
      dst.set(wire.subarray(o, o + frameLen), 0)
      s += dst[frameLen - 1]!
    }
    return s
  })
  add(w, "decode", "memcpy-slice", "memcpy: slice() each frame (alloc + copy)", n, () => {
    let s = 0
    for (let o = 0; o < wire.length; o += frameLen) {
      const out = wire.slice(o, o + frameLen)
      s += out[frameLen - 1]!
    }
    return s
  })
}

addSmall(small)
addSmall(open)
addLarge(large)

// ---------------------------------------------------------------------------------------------
// Timing
// ---------------------------------------------------------------------------------------------

const now = (): bigint => process.hrtime.bigint()

/** Runs `run` repeatedly for about `ms`; returns the number of iterations done. */
const runFor = (run: () => number, ms: number): number => {
  const limit = BigInt(Math.round(ms * 1e6))
  const t0 = now()
  let iterations = 0
  do {
    fold(run())
    iterations++
  } while (now() - t0 < limit)
  return iterations
}

interface Result {
  readonly workload: string
  readonly direction: Direction
  readonly id: string
  readonly label: string
  readonly framesPerOp: number
  readonly bytesPerOp: number
  readonly iterationsPerSample: number
  readonly sampleNs: ReadonlyArray<number>
  readonly nsPerFrame: number
  readonly framesPerSec: number
  readonly mbPerSec: number
  /** (max − min) / median of the samples. */
  readonly spread: number
  /** Process CPU time / wall time over the samples; well below 1 means the bench was preempted. */
  readonly cpuShare: number
}

const median = (xs: ReadonlyArray<number>): number => {
  const s = [...xs].sort((a, b) => a - b)
  const mid = s.length >> 1
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2
}

const measure = (c: Case): Result => {
  const warm = runFor(c.run, WARMUP_MS)
  const iterations = Math.max(1, Math.round((warm * SAMPLE_MS) / WARMUP_MS))
  const sampleNs: Array<number> = []
  const cpu0 = process.cpuUsage()
  const wall0 = now()
  for (let s = 0; s < SAMPLES; s++) {
    const t0 = now()
    for (let i = 0; i < iterations; i++) fold(c.run())
    sampleNs.push(Number(now() - t0))
  }
  const cpu = process.cpuUsage(cpu0)
  const wallNs = Number(now() - wall0)
  const med = median(sampleNs)
  const perOp = med / iterations
  return {
    workload: c.workload.key,
    direction: c.direction,
    id: c.id,
    label: c.label,
    framesPerOp: c.frames,
    bytesPerOp: c.bytes,
    iterationsPerSample: iterations,
    sampleNs,
    nsPerFrame: perOp / c.frames,
    framesPerSec: (c.frames * 1e9) / perOp,
    mbPerSec: (c.bytes * 1e3) / perOp,
    spread: (Math.max(...sampleNs) - Math.min(...sampleNs)) / med,
    cpuShare: ((cpu.user + cpu.system) * 1e3) / wallNs
  }
}

// ---------------------------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------------------------

const started = now()
const cpus = os.cpus()
const machine = {
  node: process.version,
  v8: process.versions.v8,
  cpu: cpus[0]?.model.trim() ?? "unknown",
  cores: cpus.length,
  platform: `${os.platform()} ${os.release()} ${os.arch()}`,
  date: new Date().toISOString(),
  loadAverageAtStart: os.loadavg()[0] ?? 0
}

for (const c of cases) runFor(c.run, PREWARM_MS)
const results: Array<Result> = cases.map(measure)
verify(small)
verify(open)
verify(large)

const find = (workload: Workload, direction: Direction, id: string): Result => {
  const r = results.find((x) => x.workload === workload.key && x.direction === direction && x.id === id)
  if (r === undefined) throw new Error(`no result ${workload.key}/${direction}/${id}`)
  return r
}

interface Ratio {
  readonly name: string
  readonly value: number
  readonly target: number
  readonly met: boolean
}
const ratios: Array<Ratio> = []
const ratio = (name: string, a: Result, b: Result, target: number): void => {
  const value = a.framesPerSec / b.framesPerSec
  ratios.push({ name, value, target, met: value >= target })
}

for (const w of [small, open]) {
  for (const dir of ["encode", "decode"] as const) {
    const duplexIds = dir === "encode" ? ["duplex-batch", "duplex-single"] : ["duplex-whole", "duplex-chunked"]
    // The reference is @msgpack/msgpack's generic call and its fastest reused-instance mode.
    const reused = (dir === "encode" ? ["msgpack-reused", "msgpack-sharedref"] : ["msgpack-reused", "msgpack-multi"])
      .map((id) => find(w, dir, id))
      .reduce((best, r) => r.framesPerSec > best.framesPerSec ? r : best)
    for (const d of duplexIds) {
      for (const b of [find(w, dir, "msgpack-generic"), reused]) {
        const a = find(w, dir, d)
        ratio(`${w.key} ${dir}: ${a.label} / ${b.label}`, a, b, 1.0)
      }
    }
  }
}
for (const d of ["duplex-batch", "duplex-single"]) {
  for (const m of ["memcpy-set", "memcpy-concat"]) {
    const a = find(large, "encode", d)
    const b = find(large, "encode", m)
    ratio(`${large.key} encode: ${a.label} / ${b.label}`, a, b, 0.9)
  }
}
for (const d of ["duplex-whole", "duplex-chunked"]) {
  for (const m of ["memcpy-set", "memcpy-slice"]) {
    const a = find(large, "decode", d)
    const b = find(large, "decode", m)
    ratio(`${large.key} decode: ${a.label} / ${b.label}`, a, b, 0.9)
  }
}

const fmtInt = (x: number): string => Math.round(x).toLocaleString("en-US")
const fmt = (x: number, digits: number): string =>
  x.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits })

const lines: Array<string> = []
lines.push(`# Duplex frame codec benchmark`)
lines.push("")
const loadEnd = os.loadavg()[0] ?? 0
lines.push(
  `machine: Node ${machine.node} (V8 ${machine.v8}), ${machine.cpu} × ${machine.cores}, ${machine.platform}, ` +
    `${machine.date}, load average ${fmt(machine.loadAverageAtStart, 2)} → ${fmt(loadEnd, 2)}`
)
lines.push(
  `method: median of ${SAMPLES} samples of ~${SAMPLE_MS} ms after ${WARMUP_MS} ms warm-up; ` +
    `${SMALL_FRAMES} small / ${LARGE_FRAMES} large frames per op; MB = 10^6 B of each codec's own wire bytes`
)
lines.push("")
lines.push("| workload | dir | implementation | frames/s | MB/s | ns/frame | ± |")
lines.push("|---|---|---|---:|---:|---:|---:|")
for (const r of results) {
  const w = [small, open, large].find((x) => x.key === r.workload)!
  lines.push(
    `| ${w.label} | ${r.direction} | ${r.label} | ${fmtInt(r.framesPerSec)} | ${fmt(r.mbPerSec, 0)} | ${
      fmt(r.nsPerFrame, 1)
    } | ${fmt(r.spread * 100, 0)}% |`
  )
}
lines.push("")
lines.push("| ratio (frames/s) | value | target | met |")
lines.push("|---|---:|---:|:---:|")
for (const r of ratios) {
  lines.push(`| ${r.name} | ${fmt(r.value, 2)}× | ≥ ${fmt(r.target, 1)}× | ${r.met ? "yes" : "NO"} |`)
}
lines.push("")
const unsteady = results.filter((r) => r.spread > 0.25)
if (unsteady.length > 0) {
  lines.push(
    `note: ${unsteady.length} case(s) varied by more than 25% between samples (±); those that allocate a fresh ` +
      `64 KiB buffer per frame are bound by allocation, first-touch page faults and GC, which vary run to run`
  )
  lines.push("")
}
const preempted = results.filter((r) => r.cpuShare < 0.9)
if (preempted.length > 0) {
  lines.push(
    `warning: ${preempted.length} case(s) got < 90% of a CPU (other load on the machine: load average ` +
      `${fmt(machine.loadAverageAtStart, 2)} → ${fmt(loadEnd, 2)}); treat those numbers as noisy: ` +
      preempted.map((r) => `${r.workload}/${r.direction}/${r.id}`).join(", ")
  )
  lines.push("")
}
const elapsed = Number(now() - started) / 1e9
lines.push(`checksum ${(sink ^ decoded) >>> 0} · ${fmt(elapsed, 1)} s`)
console.log(lines.join("\n"))

const outDir = path.join(import.meta.dirname, "results")
fs.mkdirSync(outDir, { recursive: true })
fs.writeFileSync(
  path.join(outDir, "frame-codec.json"),
  JSON.stringify(
    {
      machine: { ...machine, loadAverageAtEnd: loadEnd },
      config: { SMALL_FRAMES, LARGE_FRAMES, LARGE_PAYLOAD, BATCH, CHUNK, WARMUP_MS, SAMPLE_MS, SAMPLES },
      wireBytes: {
        [small.key]: { duplex: small.wire.length / SMALL_FRAMES, msgpack: small.mpWire.length / SMALL_FRAMES },
        [open.key]: { duplex: open.wire.length / SMALL_FRAMES, msgpack: open.mpWire.length / SMALL_FRAMES },
        [large.key]: { duplex: large.wire.length / LARGE_FRAMES, msgpack: large.mpWire.length / LARGE_FRAMES }
      },
      results,
      ratios,
      checksum: (sink ^ decoded) >>> 0,
      elapsedSeconds: elapsed
    },
    null,
    2
  ) + "\n"
)
