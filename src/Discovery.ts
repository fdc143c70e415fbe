/**
 * Service discovery: a source of address changes that a peer follows with `Peer.auto`.
 *
 * A `Discovery` is a `Stream` of `Change`s (`Add` / `Remove` of an address string such as
 * `tcp://10.0.0.7:7000`), in the style of tower's `Discover`. Built in:
 *
 * - `fromList`: a fixed set of addresses;
 * - `dns`: A / AAAA records of a name plus a port, or SRV records (what Kubernetes headless
 *   services, Consul and Nomad publish), re-resolved on an interval and after a failure, using
 *   `effect/net`'s `Dns` service (e.g. `NodeDns.layer`, or `NodeDns.make({ nameServers })`).
 *
 * Any `Stream<Change>` is a source: plug in your own.
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Dns from "effect/net/Dns"
import * as NetAddress from "effect/net/NetAddress"
import * as Result from "effect/Result"
import * as Stream from "effect/Stream"

/**
 * An address appeared or disappeared.
 *
 * @category models
 * @since 0.1.0
 */
export type Change =
  | { readonly _tag: "Add"; readonly address: string }
  | { readonly _tag: "Remove"; readonly address: string }

/**
 * A discovery source: the stream of changes of a set of addresses (the first changes describe the
 * initial set).
 *
 * @category models
 * @since 0.1.0
 */
export type Discovery<E = never, R = never> = Stream.Stream<Change, E, R>

/**
 * A fixed set of addresses.
 *
 * **Example** (Three static peers)
 * ```ts
 * import * as Discovery from "duplex/Discovery"
 * const source = Discovery.fromList(["tcp://10.0.0.1:7000", "tcp://10.0.0.2:7000", "tcp://10.0.0.3:7000"])
 * ```
 * @category constructors
 * @since 0.1.0
 */
export const fromList = (addresses: Iterable<string>): Discovery =>
  Stream.concat(
    Stream.fromIterable(Array.from(new Set(addresses), (address): Change => ({ _tag: "Add", address }))),
    Stream.never
  )

/**
 * The changes that turn set `before` into set `after`.
 *
 * **Example** (Diffing)
 * ```ts
 * import * as Discovery from "duplex/Discovery"
 * Discovery.diff(new Set(["a"]), new Set(["b"])) // [Remove a, Add b]
 * ```
 * @category combinators
 * @since 0.1.0
 */
export const diff = (before: ReadonlySet<string>, after: ReadonlySet<string>): Array<Change> => {
  const out: Array<Change> = []
  for (const address of before) if (!after.has(address)) out.push({ _tag: "Remove", address })
  for (const address of after) if (!before.has(address)) out.push({ _tag: "Add", address })
  return out
}

/**
 * Options of `dns`.
 *
 * @category models
 * @since 0.1.0
 */
export type DnsOptions =
  | {
    /** A / AAAA records of `name`, each with `port`. */
    readonly type: "A" | "AAAA"
    readonly name: string
    readonly port: number
    /** Re-resolve this often (default 10 s). */
    readonly interval?: Duration.Input | undefined
    /** After a failed resolution, retry this soon (default 1 s); the last good set is kept. */
    readonly retry?: Duration.Input | undefined
  }
  | {
    /**
     * SRV records of `name` (target and port from each record); each target is resolved to its
     * addresses (A, else AAAA) through the same `Dns` service.
     */
    readonly type: "SRV"
    readonly name: string
    readonly interval?: Duration.Input | undefined
    readonly retry?: Duration.Input | undefined
  }

const trimDot = (name: string): string => (name.endsWith(".") ? name.slice(0, -1) : name)

const tcpUrl = (host: string, port: number): string => `tcp://${host.includes(":") ? `[${host}]` : host}:${port}`

const resolveOnce = (dns: Dns.Dns["Service"], options: DnsOptions): Effect.Effect<Set<string>, Dns.DnsError> => {
  switch (options.type) {
    case "A":
    case "AAAA":
      return Effect.map(
        dns.resolve(options.name, options.type),
        (records) => new Set(records.map((r) => tcpUrl(NetAddress.formatIp(r.address), options.port)))
      )
    case "SRV":
      return Effect.flatMap(
        dns.resolve(options.name, "SRV"),
        (records) => {
          // RFC 2782: only the targets of the lowest priority are used while any exists (the others
          // are backups); weights are not applied (placement is round-robin over the live set)
          const best = Math.min(...records.map((r) => r.priority))
          const preferred = records.filter((r) => r.priority === best)
          return Effect.forEach(preferred, (r) => resolveTarget(dns, trimDot(r.target), r.port), { concurrency: 8 })
            .pipe(Effect.map((urls) => new Set(urls.flat())))
        }
      )
  }
}

const isNotFound = (error: Dns.DnsError): boolean => error.reason === "NotFound"

/**
 * The addresses (`tcp://ip:port`) of an SRV target, resolved through the same `Dns` service as the
 * SRV query: a dial resolves a host name with the system resolver (`getaddrinfo`), which does not
 * know names served only by the name server given to `Dns` (e.g. `NodeDns.make({ nameServers })`).
 * A records first, AAAA when there are none; a target without addresses is skipped; any other
 * failure fails the whole resolution (so the last good set is kept).
 */
const resolveTarget = (
  dns: Dns.Dns["Service"],
  target: string,
  port: number
): Effect.Effect<Array<string>, Dns.DnsError> => {
  if (Result.isSuccess(NetAddress.ipFromString(target))) return Effect.succeed([tcpUrl(target, port)])
  const urls = (records: ReadonlyArray<Dns.A | Dns.Aaaa>) =>
    records.map((r) => tcpUrl(NetAddress.formatIp(r.address), port))
  return dns.resolve(target, "A").pipe(
    Effect.map(urls),
    Effect.catchIf(isNotFound, () => Effect.map(dns.resolve(target, "AAAA"), urls)),
    Effect.catchIf(isNotFound, () => Effect.succeed([]))
  )
}

/**
 * Follows DNS records: emits the differences each time the resolved set changes. A name that
 * resolves to nothing (NXDOMAIN / no records) is an empty set; other failures keep the last set
 * and retry sooner.
 *
 * **Example** (SRV records from a local name server)
 * ```ts
 * import { NodeDns } from "@effect/platform-node"
 * import { Effect, Layer } from "effect"
 * import { Dns } from "effect/net"
 * import * as Discovery from "duplex/Discovery"
 * const source = Discovery.dns({ type: "SRV", name: "_duplex._tcp.example.test", interval: "5 seconds" })
 * const DnsLive = Layer.effect(Dns.Dns, NodeDns.make({ nameServers: ["127.0.0.1:5353"] }))
 * ```
 * @category constructors
 * @since 0.1.0
 */
export const dns = (options: DnsOptions): Discovery<never, Dns.Dns> =>
  Stream.unwrap(Effect.gen(function*() {
    const resolver = yield* Dns.Dns
    const interval = options.interval ?? "10 seconds"
    const retry = options.retry ?? "1 second"
    let current = new Set<string>()
    let first = true
    const step: Effect.Effect<Array<Change>> = Effect.gen(function*() {
      // the first resolution, and the one after a failure (which already waited `retry`), go at once
      if (!first) yield* Effect.sleep(interval)
      first = false
      const exit = yield* Effect.exit(resolveOnce(resolver, options))
      let next: Set<string>
      if (Exit.isSuccess(exit)) next = exit.value
      else {
        const error = exit.cause.reasons.find((r) => r._tag === "Fail")
        const reason = error !== undefined && error._tag === "Fail" ? error.error.reason : undefined
        if (reason === "NotFound") next = new Set()
        else {
          yield* Effect.sleep(retry)
          first = true
          return [] as Array<Change>
        }
      }
      const changes = diff(current, next)
      current = next
      return changes
    })
    return Stream.flatMap(Stream.fromEffectRepeat(step), (changes: Array<Change>) => Stream.fromIterable(changes))
  }))
