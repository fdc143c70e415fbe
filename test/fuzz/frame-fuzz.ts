/**
 * Frame decoder fuzzer: `npm run fuzz [cases]` (or `FUZZ_CASES=… FUZZ_SEED=… npm run fuzz`).
 *
 * Inputs: random bytes, mutations of every vector line and of random valid frames, mutated streams
 * of several frames; each fed whole and in random chunks (incl. one byte at a time), then
 * `finish()`. Every case must either decode or end in a typed `ProtocolError` (code matching its
 * reason), and chunking must not change the outcome. Any thrown exception, or a case running
 * longer than 1 s, fails the run (exit code 1).
 *
 * The cases run in a worker thread; the main thread is a watchdog that can also catch a case that
 * never returns (an infinite loop): it terminates the worker, counts a hang and restarts after it.
 * Each case has its own seed (derived from FUZZ_SEED and the case index), so any reported case can
 * be replayed with `FUZZ_SEED=<seed> FUZZ_FROM=<index> npm run fuzz 1`.
 */
import { isMainThread, parentPort, Worker, workerData } from "node:worker_threads"
import { isProtocolError, ProtocolErrorCode, type ProtocolErrorReason } from "../../src/DuplexError.ts"
import { encodeFrame } from "../../src/FrameCodec.ts"
import {
  decodeChunks,
  fuzzCase,
  loadVectorLines,
  makeRng,
  mixSeed,
  type Outcome,
  plain,
  randomChunks,
  toHex
} from "./generators.ts"

const HANG_MS = 1000
const REASONS: ReadonlyArray<ProtocolErrorReason> = [
  "MalformedFrame",
  "FrameTooLarge",
  "TooManyHeaders",
  "HeadersTooLarge",
  "MethodTooLong",
  "TruncatedFrame",
  "BadGreeting",
  "GreetingTimeout"
]

// Shared counters (Float64 slots, written only by the worker, read by the watchdog).
const SLOT = {
  next: 0, // index of the next case to run
  caseStart: 1, // performance.timeOrigin-based ms when the current case began, 0 when idle
  cases: 2,
  clean: 3, // cases without any error
  frames: 4, // frames decoded (whole-input pass)
  throws: 5,
  slow: 6, // completed, but took > HANG_MS
  mismatch: 7, // chunked outcome differs from whole outcome
  reasons: 8 // 8 slots, one per ProtocolErrorReason
} as const
const SLOTS = SLOT.reasons + REASONS.length

interface WorkerInput {
  readonly shared: SharedArrayBuffer
  readonly seed: number
  readonly from: number
  readonly to: number
}

interface Report {
  readonly kind: "throw" | "slow" | "mismatch"
  readonly index: number
  readonly detail: string
  readonly hex: string
}

const isWorkerInput = (u: unknown): u is WorkerInput =>
  typeof u === "object" && u !== null && "shared" in u && u.shared instanceof SharedArrayBuffer && "seed" in u
  && typeof u.seed === "number" && "from" in u && typeof u.from === "number" && "to" in u && typeof u.to === "number"

const isReport = (u: unknown): u is Report =>
  typeof u === "object" && u !== null && "kind" in u && typeof u.kind === "string" && "index" in u
  && typeof u.index === "number" && "detail" in u && typeof u.detail === "string" && "hex" in u
  && typeof u.hex === "string"

const sameOutcome = (a: Outcome, b: Outcome): string | undefined => {
  if (a.error?.reason !== b.error?.reason) return `reason ${a.error?.reason} vs ${b.error?.reason}`
  if (a.frames.length !== b.frames.length) return `frames ${a.frames.length} vs ${b.frames.length}`
  for (let k = 0; k < a.frames.length; k++) {
    if (JSON.stringify(plain(a.frames[k]!)) !== JSON.stringify(plain(b.frames[k]!))) return `frame ${k} differs`
  }
  return undefined
}

const checkError = (outcome: Outcome): void => {
  const error = outcome.error
  if (error === undefined) return
  if (!isProtocolError(error)) throw new Error(`untyped error value: ${String(error)}`)
  if (error.code !== ProtocolErrorCode[error.reason]) throw new Error(`code ${error.code} for ${error.reason}`)
}

// ---------------------------------------------------------------------------------------------
// Worker: runs cases
// ---------------------------------------------------------------------------------------------

const runWorker = (input: WorkerInput): void => {
  const port = parentPort
  if (port === null) throw new Error("no parent port")
  const stats = new Float64Array(input.shared)
  const vectorLines = loadVectorLines()
  const report = (r: Report): void => port.postMessage(r)
  for (let i = input.from; i < input.to; i++) {
    stats[SLOT.next] = i
    const started = performance.timeOrigin + performance.now()
    stats[SLOT.caseStart] = started
    const rng = makeRng(mixSeed(input.seed, i))
    const c = fuzzCase(rng, vectorLines, encodeFrame)
    try {
      const whole = decodeChunks([c.bytes], c.limits)
      const chunked = decodeChunks(randomChunks(rng, c.bytes), c.limits)
      checkError(whole)
      checkError(chunked)
      const diff = sameOutcome(whole, chunked)
      if (diff !== undefined) {
        stats[SLOT.mismatch]! += 1
        report({ kind: "mismatch", index: i, detail: diff, hex: toHex(c.bytes) })
      }
      stats[SLOT.frames]! += whole.frames.length
      if (whole.error === undefined) stats[SLOT.clean]! += 1
      else stats[SLOT.reasons + REASONS.indexOf(whole.error.reason)]! += 1
    } catch (e) {
      stats[SLOT.throws]! += 1
      report({
        kind: "throw",
        index: i,
        detail: e instanceof Error ? e.stack ?? e.message : String(e),
        hex: toHex(c.bytes)
      })
    }
    const took = performance.timeOrigin + performance.now() - started
    if (took > HANG_MS) {
      stats[SLOT.slow]! += 1
      report({ kind: "slow", index: i, detail: `${took.toFixed(0)} ms`, hex: toHex(c.bytes) })
    }
    stats[SLOT.caseStart] = 0
    stats[SLOT.cases]! += 1
  }
  stats[SLOT.next] = input.to
}

// ---------------------------------------------------------------------------------------------
// Main: watchdog and report
// ---------------------------------------------------------------------------------------------

const parseCount = (text: string | undefined, fallback: number): number => {
  if (text === undefined || text === "") return fallback
  const n = Number(text.replace(/_/g, ""))
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`not a count: ${text}`)
  return n
}

const main = async (): Promise<void> => {
  const cases = parseCount(process.argv[2] ?? process.env["FUZZ_CASES"], 1_000_000)
  const seed = parseCount(process.env["FUZZ_SEED"], 0xd0_91e5) >>> 0
  const from = parseCount(process.env["FUZZ_FROM"], 0)
  const end = from + cases
  const shared = new SharedArrayBuffer(SLOTS * 8)
  const stats = new Float64Array(shared)
  const reports: Array<Report> = []
  const hangs: Array<number> = []
  const t0 = performance.now()
  console.log(`frame fuzz: ${cases} cases from #${from}, seed ${seed}`)

  let start = from
  while (start < end) {
    const worker = new Worker(new URL(import.meta.url), {
      workerData: { shared, seed, from: start, to: end } satisfies WorkerInput
    })
    worker.on("message", (m: unknown) => {
      if (isReport(m)) {
        reports.push(m)
        if (reports.length <= 20) {
          console.log(`  ${m.kind} at case ${m.index}: ${m.detail}\n    input ${m.hex.slice(0, 240)}`)
        }
      }
    })
    const outcome = await new Promise<"done" | "hang">((resolve, reject) => {
      let lastLog = performance.now()
      const timer = setInterval(() => {
        const caseStart = stats[SLOT.caseStart]!
        const now = performance.timeOrigin + performance.now()
        if (caseStart !== 0 && now - caseStart > HANG_MS) {
          clearInterval(timer)
          resolve("hang")
        }
        if (performance.now() - lastLog > 10_000) {
          lastLog = performance.now()
          const done = stats[SLOT.cases]!
          console.log(`  … ${done} cases, ${(done / ((performance.now() - t0) / 1000)).toFixed(0)} cases/s`)
        }
      }, 100)
      worker.once("error", (e) => {
        clearInterval(timer)
        reject(e)
      })
      worker.once("exit", () => {
        clearInterval(timer)
        resolve("done")
      })
    })
    if (outcome === "hang") {
      // A case that never returned: kill the worker, count it, continue after it.
      const index = stats[SLOT.next]!
      hangs.push(index)
      console.log(`  hang at case ${index} (no return within ${HANG_MS} ms); restarting after it`)
      await worker.terminate()
      stats[SLOT.caseStart] = 0
      stats[SLOT.cases]! += 1
      start = index + 1
    } else {
      start = end
    }
  }

  const seconds = (performance.now() - t0) / 1000
  const done = stats[SLOT.cases]!
  const slow = stats[SLOT.slow]!
  const byReason: Record<string, number> = {}
  REASONS.forEach((reason, i) => {
    const n = stats[SLOT.reasons + i]!
    if (n > 0) byReason[reason] = n
  })
  const summary = {
    cases: done,
    seed,
    seconds: Number(seconds.toFixed(2)),
    casesPerSecond: Math.round(done / seconds),
    framesDecoded: stats[SLOT.frames]!,
    cleanCases: stats[SLOT.clean]!,
    typedErrors: byReason,
    untypedThrows: stats[SLOT.throws]!,
    hangs: hangs.length + slow,
    chunkingMismatches: stats[SLOT.mismatch]!
  }
  console.log(JSON.stringify(summary, null, 2))
  const failed = summary.untypedThrows > 0 || summary.hangs > 0 || summary.chunkingMismatches > 0
  if (failed) {
    console.log(`FAILED (replay a case with FUZZ_SEED=${seed} FUZZ_FROM=<case> npm run fuzz 1)`)
    process.exitCode = 1
  }
}

if (isMainThread) {
  await main()
} else if (isWorkerInput(workerData)) {
  runWorker(workerData)
} else {
  throw new Error("frame-fuzz worker started without input")
}
