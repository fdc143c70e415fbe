/**
 * Child processes running fixture scripts with the current Node (`process.execPath`, which strips
 * TypeScript types). Stdout is read line by line; every child is SIGKILLed (if still running) when
 * the scope closes.
 */
import { Effect, Scope } from "effect"
import * as ChildProcess from "node:child_process"
import * as Path from "node:path"

export interface Child {
  readonly pid: number
  /** The next stdout line not consumed yet (bounded by the caller). Fails when stdout ended. */
  readonly nextLine: Effect.Effect<string, Error>
  /** Waits for the process to exit; its exit code, or the signal name. */
  readonly exited: Effect.Effect<number | string>
  /** Sends a signal. */
  readonly kill: (signal: NodeJS.Signals) => Effect.Effect<void>
  /** Stderr so far (for failure messages). */
  readonly stderr: () => string
}

const fixturesDir = Path.join(import.meta.dirname, "..", "fixtures")

/** Spawns `node test/fixtures/<script> ...args`; killed with SIGKILL when the scope closes. */
export const spawnFixture = (
  script: string,
  args: ReadonlyArray<string>
): Effect.Effect<Child, never, Scope.Scope> =>
  Effect.gen(function*() {
    const proc = yield* Effect.acquireRelease(
      Effect.sync(() =>
        ChildProcess.spawn(process.execPath, [Path.join(fixturesDir, script), ...args], {
          stdio: ["ignore", "pipe", "pipe"]
        })
      ),
      (proc) =>
        Effect.callback<void>((resume) => {
          if (proc.exitCode !== null || proc.signalCode !== null) return resume(Effect.void)
          proc.once("exit", () => resume(Effect.void))
          proc.kill("SIGKILL")
        })
    )
    let exit: number | string | undefined
    const exitWaiters: Array<(code: number | string) => void> = []
    proc.once("exit", (code, signal) => {
      exit = code ?? signal ?? "unknown"
      for (const w of exitWaiters.splice(0)) w(exit)
    })
    let err = ""
    proc.stderr.setEncoding("utf8")
    proc.stderr.on("data", (chunk: string) => {
      err += chunk
    })
    const lines: Array<string> = []
    let partial = ""
    let ended = false
    let lineWaiter: (() => void) | undefined
    const wake = () => {
      const w = lineWaiter
      lineWaiter = undefined
      if (w !== undefined) w()
    }
    proc.stdout.setEncoding("utf8")
    proc.stdout.on("data", (chunk: string) => {
      partial += chunk
      let i: number
      while ((i = partial.indexOf("\n")) >= 0) {
        lines.push(partial.slice(0, i))
        partial = partial.slice(i + 1)
      }
      wake()
    })
    proc.stdout.on("end", () => {
      ended = true
      wake()
    })
    const nextLine = Effect.callback<string, Error>((resume) => {
      const check = () => {
        const line = lines.shift()
        if (line !== undefined) return resume(Effect.succeed(line))
        if (ended) return resume(Effect.fail(new Error(`child stdout ended; stderr:\n${err}`)))
        lineWaiter = check
      }
      check()
      return Effect.sync(() => {
        lineWaiter = undefined
      })
    })
    return {
      pid: proc.pid ?? -1,
      nextLine,
      exited: Effect.callback<number | string>((resume) => {
        if (exit !== undefined) return resume(Effect.succeed(exit))
        exitWaiters.push((code) => resume(Effect.succeed(code)))
      }),
      kill: (signal) =>
        Effect.sync(() => {
          proc.kill(signal)
        }),
      stderr: () => err
    }
  })
