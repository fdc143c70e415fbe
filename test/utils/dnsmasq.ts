/**
 * A real DNS server for tests: dnsmasq on 127.0.0.1, on a free port, in a temp dir, killed when
 * the scope closes.
 *
 * - Records: A/AAAA records go to a hosts file (`--addn-hosts`), SRV records to a conf file
 *   (`--conf-file`, `srv-host=` lines). Names under `domain` that have no record answer NXDOMAIN
 *   (`--local=/<domain>/`), which `Dns` reports as `NotFound`; other names are REFUSED (no upstream).
 * - Changes (`update`): dnsmasq re-reads hosts files on SIGHUP, but not `srv-host` lines (nor any conf
 *   file). So `update` rewrites the files, then sends SIGHUP when only the hosts changed (and waits
 *   for dnsmasq's `read <hosts file> - N names` log line: the reload is done), or restarts dnsmasq on
 *   the same port when the SRV records changed.
 * - Readiness is an event: dnsmasq runs in the foreground (`--no-daemon`: no fork, no pid file, no
 *   change of user) and logs to stderr (`--log-facility=-`); after its hosts-file line the harness
 *   checks that it answers an SRV query (bounded). Queries are logged (`--log-queries`), so tests can
 *   wait for the next resolution of a name (`awaitQueries`) instead of sleeping.
 * - `stop` kills it (the name server is then down: queries fail with `Refused`); `start` starts it
 *   again on the same port.
 */
import { NodeDns } from "@effect/platform-node"
import { Duration, Effect, Layer, Schedule, Scope } from "effect"
import { Dns } from "effect/net"
import * as ChildProcess from "node:child_process"
import * as Dgram from "node:dgram"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { tempDir } from "./helpers.ts"

/** The dnsmasq executable, or undefined when it is not installed (`.ci/run` installs it). */
export const dnsmasqBinary: string | undefined = (() => {
  for (const path of ["/usr/sbin/dnsmasq", "/usr/bin/dnsmasq", "/sbin/dnsmasq", "/usr/local/sbin/dnsmasq"]) {
    if (Fs.existsSync(path)) return path
  }
  const found = ChildProcess.spawnSync("sh", ["-c", "command -v dnsmasq"], { encoding: "utf8" })
  const path = found.status === 0 ? found.stdout.trim() : ""
  return path === "" ? undefined : path
})()

export interface SrvRecord {
  readonly target: string
  readonly port: number
  readonly priority?: number
  readonly weight?: number
}

export interface Zone {
  /** A / AAAA records: host name → addresses. */
  readonly hosts: Readonly<Record<string, ReadonlyArray<string>>>
  /** SRV records: service name (e.g. `_duplex._tcp.duplex.test`) → targets. */
  readonly srv: Readonly<Record<string, ReadonlyArray<SrvRecord>>>
}

export interface Dnsmasq {
  readonly port: number
  /** `127.0.0.1:<port>`, for `NodeDns.make({ nameServers })`. */
  readonly nameServer: string
  /** A `Dns` layer querying only this server (1 s timeout, 1 try). */
  readonly layer: Layer.Layer<Dns.Dns>
  /** Replaces all records (SIGHUP when only hosts changed, restart when SRV changed); returns when served. */
  readonly update: (zone: Zone) => Effect.Effect<void>
  /** Kills the server and waits until it exited. */
  readonly stop: Effect.Effect<void>
  /** Starts it again on the same port with the current records; returns when it answers. */
  readonly start: Effect.Effect<void>
  /** Queries logged so far for `name` and `type` (over all runs). */
  readonly queries: (type: string, name: string) => number
  /** Waits until at least `count` queries for `name` and `type` were logged (over all runs). */
  readonly awaitQueries: (type: string, name: string, count: number) => Effect.Effect<void>
  /** Everything dnsmasq logged (for failure messages). */
  readonly log: () => string
}

/** A UDP port free on 127.0.0.1 right now (bind port 0, read it, close). */
const freeUdpPort: Effect.Effect<number> = Effect.callback<number>((resume) => {
  const socket = Dgram.createSocket("udp4")
  socket.bind(0, "127.0.0.1", () => {
    const port = socket.address().port
    socket.close(() => resume(Effect.succeed(port)))
  })
})

const hostsText = (zone: Zone): string =>
  Object.entries(zone.hosts).flatMap(([name, ips]) => ips.map((ip) => `${ip} ${name}\n`)).join("")

const srvText = (zone: Zone): string =>
  Object.entries(zone.srv).flatMap(([name, records]) =>
    records.map((r) => `srv-host=${name},${r.target},${r.port},${r.priority ?? 0},${r.weight ?? 0}\n`)
  ).join("")

/**
 * Starts dnsmasq serving `zone` (names under `domain` are authoritative). Dies when dnsmasq is
 * missing or does not come up within 5 s.
 */
export const dnsmasq = (zone: Zone, options: { readonly domain?: string } = {}): Effect.Effect<
  Dnsmasq,
  never,
  Scope.Scope
> =>
  Effect.gen(function*() {
    const binary = dnsmasqBinary
    if (binary === undefined) {
      return yield* Effect.die(new Error("dnsmasq not installed (apt-get install dnsmasq; .ci/run does it)"))
    }
    const domain = options.domain ?? "duplex.test"
    const dir = yield* tempDir
    const hostsFile = Path.join(dir, "hosts")
    const srvFile = Path.join(dir, "srv.conf")
    let current = zone
    Fs.writeFileSync(hostsFile, hostsText(zone))
    Fs.writeFileSync(srvFile, srvText(zone))

    // Output of every run, line by line; waiters re-check on each new line and on exit.
    const lines: Array<string> = []
    let waiters: Array<() => void> = []
    const wake = () => {
      const ws = waiters
      waiters = []
      for (const w of ws) w()
    }
    /** Waits until `check` returns a value (re-checked on each line / exit). */
    const waitFor = <A>(check: () => A | undefined): Effect.Effect<A> =>
      Effect.callback<A>((resume) => {
        const attempt = () => {
          const value = check()
          if (value !== undefined) resume(Effect.succeed(value))
          else waiters.push(attempt)
        }
        attempt()
        return Effect.sync(() => {
          waiters = waiters.filter((w) => w !== attempt)
        })
      })

    /** Bounds `self`; on timeout dies with `label` and everything dnsmasq logged so far. */
    const bounded = (label: string, duration: Duration.Input) => <A>(self: Effect.Effect<A>) =>
      Effect.timeoutOrElse(self, {
        duration,
        orElse: () => Effect.die(new Error(`timed out: ${label}; dnsmasq log:\n${lines.join("\n")}`))
      })

    let port = 0
    let proc: ChildProcess.ChildProcess | undefined
    let exited = false
    const readLine = (n: number) => lines.filter((l) => l.includes(`read ${hostsFile} - `)).length >= n

    const spawn = (): void => {
      const args = [
        "--no-daemon",
        "--log-facility=-",
        "--log-queries",
        `--port=${port}`,
        "--listen-address=127.0.0.1",
        "--bind-interfaces",
        "--no-resolv",
        "--no-hosts",
        "--no-poll",
        `--local=/${domain}/`,
        `--addn-hosts=${hostsFile}`,
        `--conf-file=${srvFile}`,
        "--cache-size=0"
      ]
      const child = ChildProcess.spawn(binary, args, { stdio: ["ignore", "pipe", "pipe"] })
      proc = child
      exited = false
      let partial = ""
      const onData = (chunk: string) => {
        partial += chunk
        let i: number
        while ((i = partial.indexOf("\n")) >= 0) {
          lines.push(partial.slice(0, i))
          partial = partial.slice(i + 1)
        }
        wake()
      }
      child.stdout!.setEncoding("utf8").on("data", onData)
      child.stderr!.setEncoding("utf8").on("data", onData)
      child.once("exit", (code, signal) => {
        lines.push(`[dnsmasq exited: ${code ?? signal}]`)
        if (proc === child) exited = true
        wake()
      })
      child.once("error", (error) => {
        lines.push(`[dnsmasq spawn error: ${error.message}]`)
        if (proc === child) exited = true
        wake()
      })
    }

    const kill: Effect.Effect<void> = Effect.callback<void>((resume) => {
      const child = proc
      if (child === undefined || child.exitCode !== null || child.signalCode !== null) return resume(Effect.void)
      child.once("exit", () => resume(Effect.void))
      child.kill("SIGKILL")
    })
    yield* Effect.addFinalizer(() => kill)

    const probe = Effect.scoped(
      Effect.gen(function*() {
        const dns = yield* NodeDns.make({ nameServers: [`127.0.0.1:${port}`], timeout: "500 millis", tries: 1 })
        // Any answer (records or NXDOMAIN) shows the server is up; only "no server" is retried.
        yield* dns.resolve(`_probe._tcp.${domain}`, "SRV").pipe(
          Effect.catchIf((e) => e.reason === "NotFound", () => Effect.void),
          Effect.retry(Schedule.spaced("20 millis"))
        )
      }).pipe(Effect.orDie)
    )

    /** Spawns on `port` and waits until it serves; false when it exited (e.g. port taken). */
    const launch: Effect.Effect<boolean> = Effect.gen(function*() {
      const reads = lines.filter((l) => l.includes(`read ${hostsFile} - `)).length
      spawn()
      const up = yield* waitFor(() => exited ? "exited" : readLine(reads + 1) ? "read" : undefined).pipe(
        bounded(`dnsmasq on port ${port} reads its hosts file`, "5 seconds")
      )
      if (up === "exited") return false
      yield* probe.pipe(bounded(`dnsmasq on port ${port} answers`, "5 seconds"))
      return true
    })

    // A free port can be taken between the probe and dnsmasq's bind (or be busy for TCP): retry.
    for (let attempt = 0;; attempt++) {
      port = yield* freeUdpPort
      if (yield* launch) break
      if (attempt === 4) return yield* Effect.die(new Error(`dnsmasq did not start:\n${lines.join("\n")}`))
    }

    const start = Effect.gen(function*() {
      if (!(yield* launch)) return yield* Effect.die(new Error(`dnsmasq did not restart:\n${lines.join("\n")}`))
    })

    const update = (next: Zone): Effect.Effect<void> =>
      Effect.gen(function*() {
        const srvChanged = srvText(next) !== srvText(current)
        current = next
        Fs.writeFileSync(hostsFile, hostsText(next))
        Fs.writeFileSync(srvFile, srvText(next))
        if (srvChanged || exited || proc === undefined) {
          yield* kill
          return yield* start
        }
        const reads = lines.filter((l) => l.includes(`read ${hostsFile} - `)).length
        proc.kill("SIGHUP")
        yield* waitFor(() => readLine(reads + 1) ? true : undefined).pipe(
          bounded(`dnsmasq re-reads ${hostsFile} after SIGHUP`, "5 seconds")
        )
      })

    const queryCount = (type: string, name: string): number => {
      const needle = `query[${type}] ${name} from`
      return lines.filter((l) => l.includes(needle)).length
    }

    const nameServer = `127.0.0.1:${port}`
    return {
      port,
      nameServer,
      layer: Layer.effect(
        Dns.Dns,
        Effect.orDie(NodeDns.make({ nameServers: [nameServer], timeout: "1 second", tries: 1 }))
      ),
      update,
      stop: kill,
      start,
      queries: queryCount,
      awaitQueries: (type, name, count) =>
        waitFor(() => queryCount(type, name) >= count ? true : undefined).pipe(
          bounded(`${count} ${type} queries for ${name}`, "10 seconds")
        ),
      log: () => lines.join("\n")
    }
  })
