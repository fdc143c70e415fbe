/**
 * Every example runs with one command (`node examples/<name>.ts`) and prints what it promises.
 * Each runs in its own process, as a user would run it, with a bounded time.
 */
import { assert, describe, it } from "@effect/vitest"
import * as ChildProcess from "node:child_process"
import * as Path from "node:path"

const root = Path.resolve(import.meta.dirname, "..")

const run = (name: string): Promise<{ code: number | null; out: string }> =>
  new Promise((resolve) => {
    const child = ChildProcess.spawn(process.execPath, [Path.join(root, "examples", `${name}.ts`)], { cwd: root })
    let out = ""
    child.stdout.on("data", (d: Buffer) => (out += d.toString()))
    child.stderr.on("data", (d: Buffer) => (out += d.toString()))
    const timer = setTimeout(() => child.kill("SIGKILL"), 25_000)
    child.on("exit", (code) => {
      clearTimeout(timer)
      resolve({ code, out })
    })
  })

const cases: ReadonlyArray<readonly [string, ReadonlyArray<string>]> = [
  ["demo", [
    "queued opens before connecting: 1",
    "reply: hello, Ada!",
    "Math.Sum(1..4) = 10",
    "Arith.Add(7, 8) = 15",
    "failed with DivideByZero",
    "Progress.Report 100% (called by the binder)",
    "demo done"
  ]],
  ["arith", [
    "Add(7, 8) = 15",
    "Div(7, 2) = 3",
    "Div(7, 0) failed: DivideByZero (divide by zero, dividend 7)",
    "arith done"
  ]],
  ["count", ["Count(5): 1 2 3 4 5", "first 3 of an endless count: 1 2 3", "count done"]],
  ["sum", ["Sum(9, 3, 3, 6, 9) = 30", "sum done"]],
  ["chat", ["ada sees bob: fine, thanks", "bob sees ada: hello", "chat done"]],
  ["callback", ["client: progress 100%", "client: ran 4 steps", "callback done"]],
  ["proxy", [
    "directly",
    "(the proxy)",
    "served by upstream-a",
    "served by upstream-b",
    "Div(1, 0) failed: DivideByZero",
    "without a token: rejected (auth): missing authorization header",
    "one trace across the hop: true",
    "proxy done"
  ]],
  ["discovery", [
    "lazy peer: no connection before first use (servers see 1/1/1 clients)",
    "round-robin over 3: s1 ×2, s2 ×2, s3 ×2",
    "removed s3 from discovery: its connection drained and closed",
    "remotes now: 2",
    "round-robin over the remaining 2: s1 ×3, s2 ×3",
    "discovery done"
  ]]
]

describe("examples", () => {
  it.each(cases)("%s runs and exits by itself", async (name, expected) => {
    const { code, out } = await run(name)
    assert.strictEqual(code, 0, out)
    for (const line of expected) assert.include(out, line)
  }, 30_000)
})
