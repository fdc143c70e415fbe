/**
 * Discovery and `Peer.auto`.
 *
 * - Unit: `diff`, `fromList` (deduplicated, then never ends), `dns` over `Dns.layerStatic`.
 * - A static source: lazy dialling (nothing dialled before the first open, compared with an eager
 *   peer on the same servers), round-robin over the set, `disconnect` draining within its grace.
 * - A real DNS server (dnsmasq on 127.0.0.1, see `utils/dnsmasq.ts`) serving SRV and A records for
 *   local peers, queried with `NodeDns.make({ nameServers })`: the peer connects lazily, spreads
 *   opens round-robin, follows record changes (SIGHUP reload for A records, restart for SRV
 *   records), drains and drops a removed target, and keeps the last good set while the server is
 *   down. Waits are on events (peer events, logged DNS queries, failed resolutions), each bounded.
 */
import { NodeDns } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Layer, Option, Queue, Result, Stream } from "effect"
import { Dns, Host, NetAddress } from "effect/net"
import { TestClock } from "effect/testing"
import * as Discovery from "../src/Discovery.ts"
import * as Peer from "../src/Peer.ts"
import { dnsmasq, type Zone } from "./utils/dnsmasq.ts"
import { bytes, collect, tcpPort, within } from "./utils/helpers.ts"
import { call, fastReconnect } from "./utils/peers.ts"

const add = (address: string): Discovery.Change => ({ _tag: "Add", address })
const remove = (address: string): Discovery.Change => ({ _tag: "Remove", address })

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

interface Server {
  readonly name: string
  readonly peer: Peer.Peer
  readonly bound: string
  readonly port: number
}

/** A peer bound on `address` whose every channel reads its input, then replies its name. */
const server = (name: string, address: string) =>
  Effect.gen(function*() {
    const peer = yield* Peer.make()
    // (a channel whose connection is closed under it, after a short disconnect grace, just ends)
    yield* peer.serve((channel) =>
      Effect.ignore(Effect.flatMap(Stream.runDrain(channel.input), () => channel.sendLast(bytes(name))))
    )
    const bound = yield* peer.bind(address)
    return { name, peer, bound, port: tcpPort(bound)! } satisfies Server
  })

/** Which server answered each of `n` sequential opens: name → count. */
const spread = (peer: Peer.Peer, n: number) =>
  Effect.gen(function*() {
    const counts: Record<string, number> = {}
    for (let i = 0; i < n; i++) {
      const reply = yield* call(peer, "Who", ["?"]).pipe(within(`open ${i}`, "5 seconds"))
      const name = reply.join(",")
      counts[name] = (counts[name] ?? 0) + 1
    }
    return counts
  })

/** A channel on the server `remote`, left open (input not ended) until `finish`. */
const hold = (peer: Peer.Peer, remote: Server) =>
  Effect.gen(function*() {
    const channel = yield* peer.open("Hold", { remote: remote.peer.id })
    yield* channel.send(bytes("hold"))
    return {
      finish: Effect.flatMap(channel.sendLast(bytes("done")), () => collect(channel)),
      failure: collect(channel).pipe(Effect.flip)
    }
  })

/**
 * Every event of `peer` from now on (subscribed before this returns). `seen` lists them all;
 * `next(tag, address)` waits for a matching one, recorded before or after the call.
 */
const recordEvents = (peer: Peer.Peer) =>
  Effect.gen(function*() {
    const signal = yield* Queue.unbounded<void>()
    const seen: Array<Peer.PeerEvent> = []
    yield* Effect.forkChild(
      Stream.runForEach(peer.events, (e) => {
        seen.push(e)
        return Queue.offer(signal, undefined)
      }),
      { startImmediately: true }
    )
    const next = (tag: Peer.PeerEvent["_tag"], address: string) =>
      Effect.gen(function*() {
        while (true) {
          const event = seen.find((e) => e._tag === tag && e.remote.address === address)
          if (event !== undefined) return event
          yield* Queue.take(signal)
        }
      }).pipe(within(`${tag} ${address}`, "10 seconds"))
    return { seen, next }
  })

const addresses = (peer: Peer.Peer) => Effect.map(peer.remotes, (remotes) => remotes.map((r) => r.address).sort())

const sorted = (servers: ReadonlyArray<Server>) => servers.map((s) => s.bound).sort()

const counts = (servers: ReadonlyArray<Server>, each: number) => Object.fromEntries(servers.map((s) => [s.name, each]))

// ---------------------------------------------------------------------------------------------
// Unit
// ---------------------------------------------------------------------------------------------

describe("Discovery (unit)", () => {
  it("diff: removals first, then additions; nothing for equal sets", () => {
    assert.deepStrictEqual(Discovery.diff(new Set(["a", "b"]), new Set(["b", "c"])), [remove("a"), add("c")])
    assert.deepStrictEqual(Discovery.diff(new Set(), new Set(["a", "b"])), [add("a"), add("b")])
    assert.deepStrictEqual(Discovery.diff(new Set(["a", "b"]), new Set()), [remove("a"), remove("b")])
    assert.deepStrictEqual(Discovery.diff(new Set(["a", "b"]), new Set(["b", "a"])), [])
  })

  it.effect("fromList: each address once, in order, then never ends", () =>
    Effect.gen(function*() {
      const source = Discovery.fromList(["tcp://a:1", "tcp://b:2", "tcp://a:1", "tcp://c:3"])
      const first = yield* Stream.runCollect(Stream.take(source, 3))
      assert.deepStrictEqual(first, [add("tcp://a:1"), add("tcp://b:2"), add("tcp://c:3")])
      // a fourth change never comes (TestClock: the timeout fires only when the clock is moved)
      const fourth = yield* Effect.forkChild(
        Stream.runCollect(Stream.take(source, 4)).pipe(Effect.timeoutOption("1 hour"))
      )
      yield* TestClock.adjust("1 hour")
      assert.isTrue(Option.isNone(yield* Fiber.join(fourth)))
    }))

  it.effect("dns over a static Dns: A records with the port; SRV targets resolved to addresses", () =>
    Effect.gen(function*() {
      const target = (name: string) => Host.domainNameFromStringUnsafe(name)
      const v4 = (ip: string) => Result.getOrThrow(NetAddress.ipv4FromString(ip))
      const static_ = Dns.layerStatic({
        records: {
          "peers.example.test": [
            Dns.makeRecordUnsafe("A", { address: v4("10.0.0.1") }),
            Dns.makeRecordUnsafe("A", { address: v4("10.0.0.2") })
          ],
          "_duplex._tcp.example.test": [
            Dns.makeRecordUnsafe("SRV", { target: target("n1.example.test."), port: 7001, priority: 0, weight: 0 }),
            Dns.makeRecordUnsafe("SRV", { target: target("n2.example.test"), port: 7002, priority: 0, weight: 0 })
          ],
          "n1.example.test": [Dns.makeRecordUnsafe("A", { address: v4("10.0.1.1") })],
          "n2.example.test": [Dns.makeRecordUnsafe("A", { address: v4("10.0.1.2") })]
        }
      })
      const a = yield* Stream.runCollect(
        Stream.take(Discovery.dns({ type: "A", name: "peers.example.test", port: 7000 }), 2)
      )
        .pipe(Effect.provide(static_))
      assert.deepStrictEqual(a.map((c) => c.address).sort(), ["tcp://10.0.0.1:7000", "tcp://10.0.0.2:7000"])
      const srv = yield* Stream.runCollect(
        Stream.take(Discovery.dns({ type: "SRV", name: "_duplex._tcp.example.test" }), 2)
      )
        .pipe(Effect.provide(static_))
      assert.deepStrictEqual(srv.map((c) => c.address).sort(), ["tcp://10.0.1.1:7001", "tcp://10.0.1.2:7002"])
    }))
})

// ---------------------------------------------------------------------------------------------
// A static source
// ---------------------------------------------------------------------------------------------

describe("Peer.auto with a static source", () => {
  it.live("lazy dialling, round-robin over the set, disconnect drains within its grace", () =>
    Effect.gen(function*() {
      const servers = yield* Effect.forEach(["a", "b", "c"], (name) => server(name, "tcp://127.0.0.1:0"))
      const [a, b, c] = servers as [Server, Server, Server]
      const list = servers.map((s) => s.bound)

      // The lazy peer gets the list; then an eager peer dials it. Had the lazy peer dialled on the
      // changes, its connections would have started first.
      const seenChanges = yield* Queue.unbounded<Discovery.Change>()
      const lazy = yield* Peer.make({ reconnect: fastReconnect })
      yield* lazy.auto(Stream.tap(Discovery.fromList(list), (change) => Queue.offer(seenChanges, change)))
      for (let i = 0; i < 3; i++) yield* Queue.take(seenChanges).pipe(within("lazy peer sees the list", "5 seconds"))
      const eager = yield* Peer.make({ reconnect: fastReconnect })
      yield* eager.auto(Discovery.fromList(list), { lazy: false })
      yield* eager.awaitRemotes(3).pipe(within("eager peer connects to all three", "10 seconds"))
      for (const s of servers) {
        yield* s.peer.awaitRemotes(1).pipe(within(`${s.name} sees the eager peer`, "5 seconds"))
      }
      assert.deepStrictEqual(yield* addresses(lazy), [])
      for (const s of servers) {
        assert.deepStrictEqual((yield* s.peer.remotes).map((r) => r.id), [eager.id], `${s.name}: eager peer only`)
      }

      // the first open dials the whole set; then opens go round-robin
      const first = yield* call(lazy, "Who", ["?"]).pipe(within("first open", "10 seconds"))
      assert.oneOf(first.join(), ["a", "b", "c"])
      yield* lazy.awaitRemotes(3).pipe(within("lazy peer connects to all three", "10 seconds"))
      assert.deepStrictEqual(yield* addresses(lazy), sorted(servers))
      assert.deepStrictEqual(yield* spread(lazy, 30), counts(servers, 10))

      // disconnect(a): GOAWAY, new opens avoid a, the channel in flight finishes, then a is dropped
      const events = yield* recordEvents(lazy)
      const held = yield* hold(lazy, a)
      const leaving = yield* Effect.forkChild(lazy.disconnect(a.bound, { grace: "10 seconds" }), {
        startImmediately: true
      })
      assert.deepStrictEqual(yield* spread(lazy, 30), counts([b, c], 15))
      assert.include(yield* addresses(lazy), a.bound, "a is draining, still connected")
      assert.deepStrictEqual(yield* held.finish.pipe(within("held channel on a", "5 seconds")), ["a"])
      yield* Fiber.join(leaving).pipe(within("disconnect a", "5 seconds"))
      yield* events.next("Disconnected", a.bound)
      assert.deepStrictEqual(yield* addresses(lazy), sorted([b, c]))
      assert.deepStrictEqual(yield* spread(lazy, 10), counts([b, c], 5), "a is not redialled")

      // disconnect(b) with a short grace: the channel still open then fails
      const stuck = yield* hold(lazy, b)
      yield* lazy.disconnect(b.bound, { grace: "100 millis" }).pipe(within("disconnect b", "5 seconds"))
      const error = yield* stuck.failure.pipe(within("held channel on b fails", "5 seconds"))
      assert.strictEqual(error.reason._tag, "ConnectionLost")
      yield* events.next("Disconnected", b.bound)
      assert.deepStrictEqual(yield* addresses(lazy), [c.bound])
      assert.deepStrictEqual(yield* spread(lazy, 3), counts([c], 3))
    }))
})

// ---------------------------------------------------------------------------------------------
// A real DNS server
// ---------------------------------------------------------------------------------------------

const SERVICE = "_duplex._tcp.duplex.test"

const srvZone = (servers: ReadonlyArray<Server>, all: ReadonlyArray<Server>): Zone => ({
  hosts: Object.fromEntries(all.map((s) => [`${s.name}.duplex.test`, ["127.0.0.1"]])),
  srv: { [SERVICE]: servers.map((s) => ({ target: `${s.name}.duplex.test`, port: s.port })) }
})

describe("Peer.auto with DNS (dnsmasq)", () => {
  it.live("SRV: lazy, round-robin, follows record changes, drains the removed target", () =>
    Effect.gen(function*() {
      const all = yield* Effect.forEach(["p1", "p2", "p3", "p4"], (name) => server(name, "tcp://127.0.0.1:0"))
      const [p1, p2, p3, p4] = all as [Server, Server, Server, Server]
      const dns = yield* dnsmasq(srvZone([p1, p2, p3], all))
      const context = yield* Layer.build(dns.layer)
      const peer = yield* Peer.make({ reconnect: fastReconnect })
      const events = yield* recordEvents(peer)
      yield* peer.auto(Discovery.dns({ type: "SRV", name: SERVICE, interval: "200 millis", retry: "100 millis" }), {
        grace: "10 seconds"
      }).pipe(Effect.provideContext(context))

      // lazy: two resolutions later, still nothing dialled
      yield* dns.awaitQueries("SRV", SERVICE, 2)
      assert.deepStrictEqual(yield* addresses(peer), [])
      for (const s of all) assert.strictEqual((yield* s.peer.remotes).length, 0, `${s.name} was not dialled`)

      // the first open dials all three; opens go round-robin
      const first = yield* call(peer, "Who", ["?"]).pipe(within("first open", "10 seconds"))
      assert.oneOf(first.join(), ["p1", "p2", "p3"])
      yield* peer.awaitRemotes(3).pipe(within("connected to the three SRV targets", "10 seconds"))
      assert.deepStrictEqual(yield* addresses(peer), sorted([p1, p2, p3]))
      assert.deepStrictEqual(yield* spread(peer, 30), counts([p1, p2, p3], 10))

      // SRV records change: p1 out, p4 in. p1 drains (its channel in flight finishes), p4 is dialled.
      const held = yield* hold(peer, p1)
      yield* dns.update(srvZone([p2, p3, p4], all))
      yield* events.next("Connected", p4.bound)
      assert.include(yield* addresses(peer), p1.bound, "p1 is draining, still connected")
      assert.deepStrictEqual(yield* spread(peer, 30), counts([p2, p3, p4], 10))
      assert.deepStrictEqual(yield* held.finish.pipe(within("held channel on p1", "5 seconds")), ["p1"])
      const gone = yield* events.next("Disconnected", p1.bound)
      assert.strictEqual(gone.remote.direction, "outgoing")
      assert.deepStrictEqual(yield* addresses(peer), sorted([p2, p3, p4]))
    }))

  it.live("SRV: a failing DNS server keeps the last good set", () =>
    Effect.gen(function*() {
      const all = yield* Effect.forEach(["p1", "p2", "p3"], (name) => server(name, "tcp://127.0.0.1:0"))
      const dns = yield* dnsmasq(srvZone(all, all))
      // the same NodeDns service, reporting each failed query
      const failures = yield* Queue.unbounded<Dns.DnsError>()
      const nodeDns = yield* Effect.orDie(
        NodeDns.make({ nameServers: [dns.nameServer], timeout: "1 second", tries: 1 })
      )
      const reporting = Dns.Dns.of({
        ...nodeDns,
        resolve: (name, type) => Effect.tapError(nodeDns.resolve(name, type), (e) => Queue.offer(failures, e))
      })
      const peer = yield* Peer.make({ reconnect: fastReconnect })
      const events = yield* recordEvents(peer)
      yield* peer.auto(Discovery.dns({ type: "SRV", name: SERVICE, interval: "200 millis", retry: "100 millis" }), {
        lazy: false
      }).pipe(Effect.provideService(Dns.Dns, reporting))
      yield* peer.awaitRemotes(3).pipe(within("eager: connected to the three SRV targets", "10 seconds"))
      assert.strictEqual(yield* Queue.size(failures), 0)

      yield* dns.stop
      for (let i = 0; i < 2; i++) {
        const error = yield* Queue.take(failures).pipe(within("a failed resolution", "10 seconds"))
        // nobody listens: Refused (ICMP port unreachable); a query in flight at the kill: Timeout
        assert.oneOf(error.reason, ["Refused", "Timeout"])
      }
      assert.deepStrictEqual(yield* addresses(peer), sorted(all))
      assert.deepStrictEqual(yield* spread(peer, 30), counts(all, 10))

      // back up with the same records: nothing changes
      const before = dns.queries("SRV", SERVICE)
      yield* dns.start
      yield* dns.awaitQueries("SRV", SERVICE, before + 2)
      assert.deepStrictEqual(yield* addresses(peer), sorted(all))
      assert.deepStrictEqual(events.seen.filter((e) => e._tag === "Disconnected"), [])
    }))

  it.live("A records: one name, three loopback addresses; reload (SIGHUP) changes the set", () =>
    Effect.gen(function*() {
      const hosts = [["h2", "127.0.0.2"], ["h3", "127.0.0.3"], ["h4", "127.0.0.4"], ["h5", "127.0.0.5"]] as const
      const [h2, h3, h4, h5] = yield* samePort(hosts)
      const port = h2.port
      const zone = (servers: ReadonlyArray<Server>): Zone => ({
        hosts: servers.length === 0 ? {} : { "peers.duplex.test": servers.map((s) => tcpHost(s.bound)) },
        srv: {}
      })
      const dns = yield* dnsmasq(zone([h2, h3, h4]))
      const context = yield* Layer.build(dns.layer)
      const peer = yield* Peer.make({ reconnect: fastReconnect })
      const events = yield* recordEvents(peer)
      yield* peer.auto(
        Discovery.dns({ type: "A", name: "peers.duplex.test", port, interval: "200 millis" }),
        { grace: "1 second" }
      ).pipe(Effect.provideContext(context))
      // lazy: two resolutions later, still nothing dialled
      yield* dns.awaitQueries("A", "peers.duplex.test", 2)
      assert.deepStrictEqual(yield* addresses(peer), [])
      for (const s of [h2, h3, h4]) assert.strictEqual((yield* s.peer.remotes).length, 0, `${s.name} was not dialled`)

      yield* call(peer, "Who", ["?"]).pipe(within("first open", "10 seconds"))
      yield* peer.awaitRemotes(3).pipe(within("connected to the three addresses", "10 seconds"))
      assert.deepStrictEqual(yield* addresses(peer), sorted([h2, h3, h4]))
      assert.deepStrictEqual(yield* spread(peer, 30), counts([h2, h3, h4], 10))

      // 127.0.0.2 out, 127.0.0.5 in (hosts file rewritten, SIGHUP)
      yield* dns.update(zone([h3, h4, h5]))
      yield* events.next("Connected", h5.bound)
      yield* events.next("Disconnected", h2.bound)
      assert.deepStrictEqual(yield* addresses(peer), sorted([h3, h4, h5]))
      assert.deepStrictEqual(yield* spread(peer, 30), counts([h3, h4, h5], 10))

      // the name is gone (NXDOMAIN): an empty set, every address removed
      yield* dns.update(zone([]))
      for (const s of [h3, h4, h5]) yield* events.next("Disconnected", s.bound)
      assert.deepStrictEqual(yield* addresses(peer), [])
    }))
})

const tcpHost = (address: string): string => /^tcp:\/\/(.+):\d+$/.exec(address)![1]!

/**
 * Servers on distinct loopback addresses (Linux routes 127/8 to lo) with one port: the first binds
 * port 0, the others that port (retried with a fresh port if one of them is taken).
 */
const samePort = (hosts: ReadonlyArray<readonly [name: string, host: string]>) =>
  Effect.gen(function*() {
    for (let attempt = 0;; attempt++) {
      const [name, host] = hosts[0]!
      const first = yield* server(name, `tcp://${host}:0`)
      const rest = yield* Effect.forEach(hosts.slice(1), ([name, host]) => server(name, `tcp://${host}:${first.port}`))
        .pipe(Effect.result)
      if (Result.isSuccess(rest)) return [first, ...rest.success] as [Server, Server, Server, Server]
      if (attempt === 4) return yield* Effect.die(rest.failure)
    }
  })
