/**
 * Middleware (`src/Middleware.ts`) around `RpcServer.serve`, over TCP (one smoke case over Unix):
 *
 * - auth: missing header, wrong token, right token, a custom header, a failing check; the check
 *   reads a service provided to the serve effect (requirements flow, at the type level too);
 * - rate limit per remote, per method and per remote and method, with a controllable clock (`now`);
 * - deadline: a handler that never finishes is interrupted and the caller gets `DeadlineExceeded`;
 * - logging into a custom `Logger` layer provided to the serve effect;
 * - metrics read with `Metric.value` from a registry of the test's own;
 * - order: the first in the list enters first and exits last; a rejection stops the rest;
 * - the streaming kinds (server stream, client stream, bidi) pass through middleware and can be
 *   rejected by it.
 *
 * A bug is pinned by an `it.live.fails` test (in "auth"): a middleware's requirements vanish from
 * the serve effect's type when the list mixes it with a middleware that needs nothing.
 *
 * Every wait is on an event (a reply, a Deferred set by a handler or a middleware) and bounded.
 */
import { assert, describe, it } from "@effect/vitest"
import {
  Cause,
  Context,
  Deferred,
  Effect,
  Fiber,
  Logger,
  Metric,
  Queue,
  References,
  Schema,
  Scope,
  Stream
} from "effect"
import * as Path from "node:path"
import { expectTypeOf } from "vitest"
import * as Middleware from "../src/Middleware.ts"
import * as Peer from "../src/Peer.ts"
import * as Rpc from "../src/Rpc.ts"
import * as RpcClient from "../src/RpcClient.ts"
import { Rejected, RpcClientError } from "../src/RpcError.ts"
import * as RpcGroup from "../src/RpcGroup.ts"
import * as RpcServer from "../src/RpcServer.ts"
import { connectedPair, tempDir, within } from "./utils/rpc.ts"

// ---------------------------------------------------------------------------------------------
// Contract, handlers and probes
// ---------------------------------------------------------------------------------------------

class Negative extends Schema.TaggedError<Negative>()("Negative", { n: Schema.Int }) {}

const Svc = RpcGroup.make(
  Rpc.unary("Ping", { payload: { n: Schema.Int }, success: Schema.Int, error: Negative }),
  Rpc.unary("Other", { success: Schema.String }),
  Rpc.unary("Hang", { success: Schema.Void }),
  Rpc.serverStream("Count", { payload: { n: Schema.Int }, success: Schema.Int }),
  Rpc.clientStream("Sum", { payload: Schema.Int, success: Schema.Int }),
  Rpc.bidi("Echo", { payload: Schema.Int, success: Schema.Int })
).prefix("Mw.")

type SvcRpcs = RpcGroup.Rpcs<typeof Svc>
type Handlers = RpcGroup.Handlers<SvcRpcs, never>

interface Probes {
  /** Handler runs by procedure tag. */
  readonly runs: Record<string, number>
  /** What handlers and tagging middleware did, in order. */
  readonly events: Array<string>
  readonly hangStarted: Deferred.Deferred<void>
  readonly hangInterrupted: Deferred.Deferred<void>
}

const makeService = Effect.gen(function*() {
  const probes: Probes = {
    runs: {},
    events: [],
    hangStarted: yield* Deferred.make<void>(),
    hangInterrupted: yield* Deferred.make<void>()
  }
  const ran = (tag: string) =>
    Effect.sync(() => {
      probes.runs[tag] = (probes.runs[tag] ?? 0) + 1
      probes.events.push(`handler ${tag}`)
    })
  const handlers: Handlers = {
    Ping: ({ n }) => Effect.andThen(ran("Ping"), n < 0 ? Effect.fail(new Negative({ n })) : Effect.succeed(n)),
    Other: () => Effect.as(ran("Other"), "other"),
    Hang: () =>
      ran("Hang").pipe(
        Effect.andThen(Deferred.succeed(probes.hangStarted, undefined)),
        Effect.andThen(Effect.never),
        Effect.onInterrupt(() => Deferred.succeed(probes.hangInterrupted, undefined))
      ),
    Count: ({ n }) => Stream.unwrap(Effect.as(ran("Count"), Stream.range(1, n))),
    Sum: (xs) => Effect.andThen(ran("Sum"), Stream.runFold(xs, () => 0, (total, x) => total + x)),
    Echo: (xs) => Stream.unwrap(Effect.as(ran("Echo"), xs))
  }
  return { probes, handlers }
})

type Serve = (peer: Peer.Peer, handlers: Handlers, probes: Probes) => Effect.Effect<void, never, Scope.Scope>

/** Serves `Svc` on a binder (with `serve`), connects a client peer to it. */
const setup = (address: string, serve: Serve) =>
  Effect.gen(function*() {
    const { probes, handlers } = yield* makeService
    const pair = yield* connectedPair(address, { binder: (peer) => serve(peer, handlers, probes) })
    return { probes, server: pair.binder, client: pair.connector, address: pair.address }
  })

const withMiddleware = (middleware: ReadonlyArray<Middleware.Middleware>): Serve => (peer, handlers) =>
  RpcServer.serve(peer, Svc, handlers, { middleware })

/** One more client peer connected to `address`. */
const anotherClient = (address: string) =>
  Effect.gen(function*() {
    const peer = yield* Effect.orDie(Peer.make())
    yield* Effect.orDie(peer.connect(address))
    yield* peer.awaitRemotes(1).pipe(within("second client connected"))
    return peer
  })

const reasonOf = (error: unknown): RpcClientError["reason"] => {
  if (error instanceof RpcClientError) return error.reason
  throw new Error(`expected an RpcClientError, got ${String(error)}`)
}

/** The kind and text of a `Rejected` reason (throws for anything else). */
const rejection = (error: unknown): { readonly kind: string; readonly text: string } => {
  const reason = reasonOf(error)
  if (!(reason instanceof Rejected)) throw new Error(`expected Rejected, got ${reason._tag}: ${reason.message}`)
  return { kind: reason.kind, text: reason.text }
}

/** Records `name>` when a call enters and `<name` when it leaves. */
const tagging = (name: string, events: Array<string>): Middleware.Middleware => (_call, next) =>
  Effect.suspend(() => {
    events.push(`${name}>`)
    return Effect.ensuring(next, Effect.sync(() => events.push(`<${name}`)))
  })

const tokenIs = (expected: string) => Middleware.auth({ check: (token) => Effect.succeed(token === expected) })

const tcp = "tcp://127.0.0.1:0"

// ---------------------------------------------------------------------------------------------
// Auth
// ---------------------------------------------------------------------------------------------

/** A token store, provided to the serve effect (not to the handlers' callers). */
class Tokens extends Context.Service<Tokens, {
  readonly accepts: (token: string, method: string) => boolean
}>()("test/Middleware/Tokens") {}

describe("auth", () => {
  it.live("missing header, wrong token and right token", () =>
    Effect.gen(function*() {
      const { client, probes } = yield* setup(tcp, withMiddleware([tokenIs("Bearer s3cret")]))
      const anonymous = yield* RpcClient.makeWith(client, Svc)
      const wrong = yield* RpcClient.makeWith(client, Svc, { headers: { authorization: "Bearer guess" } })
      const right = yield* RpcClient.makeWith(client, Svc, { headers: { authorization: "Bearer s3cret" } })

      const missing = rejection(yield* Effect.flip(anonymous.Ping({ n: 1 })).pipe(within("anonymous Ping")))
      assert.deepStrictEqual(missing, { kind: "auth", text: "missing authorization header" })
      const refused = rejection(yield* Effect.flip(wrong.Ping({ n: 1 })).pipe(within("wrong-token Ping")))
      assert.deepStrictEqual(refused, { kind: "auth", text: "not authorized" })
      assert.isUndefined(probes.runs["Ping"], "no handler ran for rejected calls")

      assert.strictEqual(yield* right.Ping({ n: 7 }).pipe(within("right-token Ping")), 7)
      // a per-call header overrides the client's
      assert.strictEqual(yield* anonymous.Ping({ n: 8 }, { headers: { authorization: "Bearer s3cret" } }), 8)
      const overridden = yield* Effect.flip(right.Ping({ n: 9 }, { headers: { authorization: "Bearer nope" } }))
      assert.strictEqual(rejection(overridden).kind, "auth")
      // the procedure's own typed error still arrives as itself behind the middleware
      const negative = yield* Effect.flip(right.Ping({ n: -2 }))
      assert.instanceOf(negative, Negative)
      assert.strictEqual(probes.runs["Ping"], 3)
    }))

  it.live("a custom header; a check that fails counts as not authorized", () =>
    Effect.gen(function*() {
      const auth = Middleware.auth({
        header: "x-api-key",
        check: (token) => token === "explode" ? Effect.fail("the token store is down") : Effect.succeed(token === "k1")
      })
      const { client, probes } = yield* setup(tcp, withMiddleware([auth]))
      const bearer = yield* RpcClient.makeWith(client, Svc, { headers: { authorization: "k1" } })
      assert.deepStrictEqual(rejection(yield* Effect.flip(bearer.Other(undefined))), {
        kind: "auth",
        text: "missing x-api-key header"
      })
      const exploding = yield* RpcClient.makeWith(client, Svc, { headers: { "x-api-key": "explode" } })
      assert.deepStrictEqual(rejection(yield* Effect.flip(exploding.Other(undefined))), {
        kind: "auth",
        text: "not authorized"
      })
      const keyed = yield* RpcClient.makeWith(client, Svc, { headers: { "x-api-key": "k1" } })
      assert.strictEqual(yield* keyed.Other(undefined), "other")
      assert.strictEqual(probes.runs["Other"], 1)
    }))

  const tokenAuth = Middleware.auth({
    check: (token, call) => Effect.map(Effect.service(Tokens), (tokens) => tokens.accepts(token, call.method))
  })

  it.live("the check uses a service provided to the serve effect, and sees the call", () =>
    Effect.gen(function*() {
      // the requirement shows in the middleware's type and in the serve effect's
      expectTypeOf(tokenAuth).toEqualTypeOf<Middleware.Middleware<Tokens>>()
      const serveNeedsTokens = (peer: Peer.Peer, handlers: Handlers) =>
        RpcServer.serve(peer, Svc, handlers, { middleware: [tokenAuth] })
      expectTypeOf(serveNeedsTokens).returns.toEqualTypeOf<Effect.Effect<void, never, Scope.Scope | Tokens>>()
      const composed = (peer: Peer.Peer, handlers: Handlers) =>
        RpcServer.serve(peer, Svc, handlers, { middleware: [Middleware.compose([tokenAuth])] })
      expectTypeOf(composed).returns.toEqualTypeOf<Effect.Effect<void, never, Scope.Scope | Tokens>>()

      // the only place that knows the valid token is the service given to the serve effect
      const store = { accepts: (token: string, method: string) => token === "from-the-store" && method !== "Mw.Other" }
      const { client, probes } = yield* setup(
        tcp,
        (peer, handlers) => serveNeedsTokens(peer, handlers).pipe(Effect.provideService(Tokens, store))
      )
      const svc = yield* RpcClient.makeWith(client, Svc, { headers: { authorization: "from-the-store" } })
      assert.strictEqual(yield* svc.Ping({ n: 3 }), 3)
      // the same token on a method the store refuses
      assert.strictEqual(rejection(yield* Effect.flip(svc.Other(undefined))).kind, "auth")
      const stranger = yield* RpcClient.makeWith(client, Svc, { headers: { authorization: "from-elsewhere" } })
      assert.strictEqual(rejection(yield* Effect.flip(stranger.Ping({ n: 3 }))).kind, "auth")
      assert.strictEqual(probes.runs["Ping"], 1)
      assert.isUndefined(probes.runs["Other"])
    }))

  // Regression: a middleware's requirements used to vanish when the list mixed it with a middleware
  // that needs nothing (`[auth, Middleware.logging()]`); `Middleware` now carries a variance marker.
  it("a mixed middleware list keeps the requirements of its members", () => {
    const mixed = (peer: Peer.Peer, handlers: Handlers) =>
      RpcServer.serve(peer, Svc, handlers, { middleware: [tokenAuth, Middleware.logging()] })
    expectTypeOf(mixed).returns.toEqualTypeOf<Effect.Effect<void, never, Scope.Scope | Tokens>>()
  })
})

// ---------------------------------------------------------------------------------------------
// Rate limit
// ---------------------------------------------------------------------------------------------

describe("rate limit", () => {
  const limited = (error: unknown) => {
    assert.deepStrictEqual(rejection(error), { kind: "rate-limit", text: "rate limit of 1/s exceeded" })
  }

  it.live("per remote: each caller has its own bucket (all methods), refilled by the clock, capped at burst", () =>
    Effect.gen(function*() {
      let now = 1_000_000
      const limit = Middleware.rateLimit({ per: "remote", ratePerSecond: 1, burst: 2, now: () => now })
      const { client, address, probes } = yield* setup(tcp, withMiddleware([limit]))
      const a = yield* RpcClient.makeWith(client, Svc)
      const b = yield* RpcClient.makeWith(yield* anotherClient(address), Svc)

      assert.strictEqual(yield* a.Ping({ n: 1 }), 1)
      assert.strictEqual(yield* a.Ping({ n: 2 }), 2)
      limited(yield* Effect.flip(a.Ping({ n: 3 })))
      limited(yield* Effect.flip(a.Other(undefined))) // the bucket is the caller's, for every method
      // another caller is not affected
      assert.strictEqual(yield* b.Ping({ n: 4 }), 4)
      assert.strictEqual(yield* b.Other(undefined), "other")
      limited(yield* Effect.flip(b.Ping({ n: 5 })))

      now += 1000 // one token back
      assert.strictEqual(yield* a.Ping({ n: 6 }), 6)
      limited(yield* Effect.flip(a.Ping({ n: 7 })))
      now += 500 // half a token
      limited(yield* Effect.flip(a.Ping({ n: 8 })))
      now += 500
      assert.strictEqual(yield* a.Ping({ n: 9 }), 9)
      now += 60_000 // a long pause refills up to the burst only
      assert.strictEqual(yield* a.Ping({ n: 10 }), 10)
      assert.strictEqual(yield* a.Ping({ n: 11 }), 11)
      limited(yield* Effect.flip(a.Ping({ n: 12 })))
      // rejected calls never reached the handler
      assert.strictEqual(probes.runs["Ping"], 7)
      assert.strictEqual(probes.runs["Other"], 1)
    }))

  it.live("per method: all callers share a method's bucket; other methods have their own", () =>
    Effect.gen(function*() {
      let now = 0
      const limit = Middleware.rateLimit({ per: "method", ratePerSecond: 1, burst: 2, now: () => now })
      const { client, address, probes } = yield* setup(tcp, withMiddleware([limit]))
      const a = yield* RpcClient.makeWith(client, Svc)
      const b = yield* RpcClient.makeWith(yield* anotherClient(address), Svc)
      assert.strictEqual(yield* a.Ping({ n: 1 }), 1)
      assert.strictEqual(yield* b.Ping({ n: 2 }), 2)
      limited(yield* Effect.flip(a.Ping({ n: 3 })))
      limited(yield* Effect.flip(b.Ping({ n: 4 })))
      assert.strictEqual(yield* a.Other(undefined), "other")
      assert.strictEqual(yield* b.Other(undefined), "other")
      limited(yield* Effect.flip(a.Other(undefined)))
      now += 1000
      assert.strictEqual(yield* b.Ping({ n: 5 }), 5)
      limited(yield* Effect.flip(a.Ping({ n: 6 })))
      assert.strictEqual(probes.runs["Ping"], 3)
      assert.strictEqual(probes.runs["Other"], 2)
    }))

  it.live("per remote and method: one bucket per pair", () =>
    Effect.gen(function*() {
      const limit = Middleware.rateLimit({ per: "remote-method", ratePerSecond: 1, now: () => 0 })
      const { client, address } = yield* setup(tcp, withMiddleware([limit]))
      const a = yield* RpcClient.makeWith(client, Svc)
      const b = yield* RpcClient.makeWith(yield* anotherClient(address), Svc)
      assert.strictEqual(yield* a.Ping({ n: 1 }), 1) // burst defaults to the rate: one token
      limited(yield* Effect.flip(a.Ping({ n: 2 })))
      assert.strictEqual(yield* a.Other(undefined), "other")
      assert.strictEqual(yield* b.Ping({ n: 3 }), 3)
      limited(yield* Effect.flip(b.Ping({ n: 4 })))
    }))
})

// ---------------------------------------------------------------------------------------------
// Deadline
// ---------------------------------------------------------------------------------------------

describe("deadline", () => {
  it.live("a handler that never finishes is interrupted; the caller gets DeadlineExceeded", () =>
    Effect.gen(function*() {
      const { client, probes } = yield* setup(tcp, withMiddleware([Middleware.deadline({ max: "150 millis" })]))
      const svc = yield* RpcClient.makeWith(client, Svc)
      assert.strictEqual(yield* svc.Ping({ n: 1 }), 1) // quick calls are not affected
      // the caller sent no deadline: the middleware's applies
      const error = yield* Effect.flip(svc.Hang(undefined)).pipe(within("Hang fails", "5 seconds"))
      assert.strictEqual(reasonOf(error)._tag, "DeadlineExceeded")
      yield* Deferred.await(probes.hangStarted).pipe(within("Hang started"))
      yield* Deferred.await(probes.hangInterrupted).pipe(within("Hang interrupted by the middleware"))
    }))

  it.live("it applies even when the caller sent a longer deadline", () =>
    Effect.gen(function*() {
      const { client, probes } = yield* setup(tcp, withMiddleware([Middleware.deadline({ max: "150 millis" })]))
      const svc = yield* RpcClient.makeWith(client, Svc, { timeout: "20 seconds" })
      const error = yield* Effect.flip(svc.Hang(undefined)).pipe(within("Hang fails well before 20 s", "5 seconds"))
      assert.strictEqual(reasonOf(error)._tag, "DeadlineExceeded")
      yield* Deferred.await(probes.hangInterrupted).pipe(within("Hang interrupted"))
    }))
})

// ---------------------------------------------------------------------------------------------
// Logging
// ---------------------------------------------------------------------------------------------

interface LogEntry {
  readonly level: string
  readonly text: string
  readonly cause: string
}

/** A logger recording every entry's level, message and cause. */
const capturing = () => {
  const entries: Array<LogEntry> = []
  const logger = Logger.make((options) => {
    const parts = Array.isArray(options.message) ? options.message : [options.message]
    entries.push({
      level: options.logLevel,
      text: parts.filter((part) => typeof part === "string").join(" "),
      cause: Cause.pretty(options.cause)
    })
  })
  return { entries, layer: Logger.layer([logger]) }
}

describe("logging", () => {
  it.live("method, caller and outcome of every call reach the logger provided to the serve effect", () =>
    Effect.gen(function*() {
      const { entries, layer } = capturing()
      const { client, probes } = yield* setup(
        tcp,
        (peer, handlers) =>
          RpcServer.serve(peer, Svc, handlers, { middleware: [Middleware.logging()] }).pipe(
            Effect.provide(layer),
            Effect.provideService(References.MinimumLogLevel, "Debug")
          )
      )
      const svc = yield* RpcClient.makeWith(client, Svc)
      const who = client.id.slice(0, 8)
      assert.strictEqual(yield* svc.Ping({ n: 1 }), 1)
      assert.instanceOf(yield* Effect.flip(svc.Ping({ n: -1 })), Negative)
      assert.strictEqual(yield* svc.Other(undefined), "other")
      assert.deepStrictEqual(yield* Stream.runCollect(svc.Count({ n: 2 })), [1, 2])
      assert.strictEqual(probes.runs["Ping"], 2)

      // each entry is logged before the reply leaves, so all four are here
      assert.strictEqual(entries.length, 4, JSON.stringify(entries))
      const [ok, failed, other, count] = entries
      assert.strictEqual(ok?.level, "Debug")
      assert.match(ok?.text ?? "", new RegExp(`^duplex: Mw\\.Ping from ${who} ok in \\d+\\.\\d ms$`))
      assert.strictEqual(failed?.level, "Info")
      assert.match(failed?.text ?? "", new RegExp(`^duplex: Mw\\.Ping from ${who} failed in \\d+\\.\\d ms$`))
      assert.include(failed?.cause ?? "", "Negative")
      assert.match(other?.text ?? "", /^duplex: Mw\.Other from [0-9a-f-]{8} ok in /)
      assert.match(count?.text ?? "", /^duplex: Mw\.Count from [0-9a-f-]{8} ok in /)
    }))

  it.live("at the default minimum level only failed calls are logged (rejections too)", () =>
    Effect.gen(function*() {
      const { entries, layer } = capturing()
      const { client } = yield* setup(tcp, (peer, handlers) =>
        RpcServer.serve(peer, Svc, handlers, {
          middleware: [Middleware.logging(), Middleware.rateLimit({ per: "remote", ratePerSecond: 1, now: () => 0 })]
        }).pipe(Effect.provide(layer)))
      const svc = yield* RpcClient.makeWith(client, Svc)
      assert.strictEqual(yield* svc.Ping({ n: 1 }), 1)
      assert.strictEqual(rejection(yield* Effect.flip(svc.Ping({ n: 2 }))).kind, "rate-limit")
      assert.strictEqual(entries.length, 1, JSON.stringify(entries))
      assert.strictEqual(entries[0]?.level, "Info")
      assert.match(entries[0]?.text ?? "", /^duplex: Mw\.Ping from [0-9a-f-]{8} failed in /)
      assert.include(entries[0]?.cause ?? "", "rate limit of 1/s exceeded")
    }))
})

// ---------------------------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------------------------

describe("metrics", () => {
  it.live("calls, errors, latency and calls in flight after N calls and M failures", () =>
    Effect.gen(function*() {
      const registry: Metric.MetricRegistry = new Map()
      const { middleware, metrics } = Middleware.metrics({ prefix: "mwtest" })
      // a probe outside the metrics middleware: it sees a call end after the metrics have recorded it
      const exited = yield* Queue.unbounded<string>()
      const probe: Middleware.Middleware = (call, next) => Effect.ensuring(next, Queue.offer(exited, call.method))
      const { client, probes } = yield* setup(tcp, (peer, handlers) =>
        RpcServer.serve(peer, Svc, handlers, { middleware: [tokenIs("t"), probe, middleware] }).pipe(
          Effect.provideService(Metric.MetricRegistry, registry)
        ))
      const read = <S>(metric: Metric.Metric<number, S>) =>
        Metric.value(metric).pipe(Effect.provideService(Metric.MetricRegistry, registry))
      const byMethod = (method: string) => ({ method })
      const svc = yield* RpcClient.makeWith(client, Svc, { headers: { authorization: "t" } })
      const anonymous = yield* RpcClient.makeWith(client, Svc)

      const N = 5
      const M = 3
      for (let i = 0; i < N; i++) {
        assert.strictEqual(yield* svc.Ping({ n: i }), i)
      }
      for (let i = 1; i <= M; i++) {
        assert.instanceOf(yield* Effect.flip(svc.Ping({ n: -i })), Negative)
      }
      assert.strictEqual(yield* svc.Other(undefined), "other")
      // rejected before the metrics middleware: not counted
      assert.strictEqual(rejection(yield* Effect.flip(anonymous.Ping({ n: 1 }))).kind, "auth")
      assert.strictEqual(probes.runs["Ping"], N + M)

      const pingCalls = yield* read(Metric.withAttributes(metrics.calls, byMethod("Mw.Ping")))
      assert.strictEqual(pingCalls.count, N + M)
      const pingErrors = yield* read(Metric.withAttributes(metrics.errors, byMethod("Mw.Ping")))
      assert.strictEqual(pingErrors.count, M)
      const otherCalls = yield* read(Metric.withAttributes(metrics.calls, byMethod("Mw.Other")))
      assert.strictEqual(otherCalls.count, 1)
      const otherErrors = yield* read(Metric.withAttributes(metrics.errors, byMethod("Mw.Other")))
      assert.strictEqual(otherErrors.count, 0)
      const latency = yield* read(Metric.withAttributes(metrics.latency, byMethod("Mw.Ping")))
      assert.strictEqual(latency.count, N + M)
      assert.isAtLeast(latency.min, 0)
      assert.isAtLeast(latency.max, latency.min)
      assert.isAbove(latency.sum, 0)
      assert.strictEqual(latency.buckets.at(-1)?.[1], N + M, "the last bucket counts every observation")
      assert.strictEqual((yield* read(metrics.inFlight)).value, 0)

      // a call in flight shows in the gauge until it ends
      const hang = yield* Effect.forkChild(svc.Hang(undefined))
      yield* Deferred.await(probes.hangStarted).pipe(within("Hang started"))
      assert.strictEqual((yield* read(metrics.inFlight)).value, 1)
      yield* Fiber.interrupt(hang)
      yield* Deferred.await(probes.hangInterrupted).pipe(within("Hang interrupted"))
      // the calls that ended so far, in order; the last is Hang
      const ended = yield* Effect.gen(function*() {
        const seen: Array<string> = []
        while (seen.at(-1) !== "Mw.Hang") {
          seen.push(yield* Queue.take(exited))
        }
        return seen
      }).pipe(within("Hang's exit through the metrics middleware"))
      assert.deepStrictEqual(ended, [...Array<string>(N + M).fill("Mw.Ping"), "Mw.Other", "Mw.Hang"])
      assert.strictEqual((yield* read(metrics.inFlight)).value, 0)
      const hangErrors = yield* read(Metric.withAttributes(metrics.errors, byMethod("Mw.Hang")))
      assert.strictEqual(hangErrors.count, 1, "an interrupted call counts as an error")
    }))
})

// ---------------------------------------------------------------------------------------------
// Order
// ---------------------------------------------------------------------------------------------

describe("order", () => {
  it.live("the first in the list enters first and exits last", () =>
    Effect.gen(function*() {
      let events: Array<string> = []
      const { client } = yield* setup(tcp, (peer, handlers, probes) => {
        events = probes.events // handlers and middleware write to the same list
        const tags = ["a", "b", "c"].map((name) => tagging(name, probes.events))
        return RpcServer.serve(peer, Svc, handlers, { middleware: tags })
      })
      const svc = yield* RpcClient.makeWith(client, Svc)
      assert.strictEqual(yield* svc.Ping({ n: 1 }), 1)
      assert.deepStrictEqual(events.splice(0), ["a>", "b>", "c>", "handler Ping", "<c", "<b", "<a"])
      // the same on failure
      assert.instanceOf(yield* Effect.flip(svc.Ping({ n: -1 })), Negative)
      assert.deepStrictEqual(events.splice(0), ["a>", "b>", "c>", "handler Ping", "<c", "<b", "<a"])
    }))

  it.live("a rejection early in the list stops later middleware and the handler", () =>
    Effect.gen(function*() {
      const closed: Middleware.Middleware = (call, next) =>
        call.method === "Mw.Other" ? Effect.fail(new Rejected({ kind: "maintenance", text: "try later" })) : next
      let events: Array<string> = []
      const { client, probes } = yield* setup(tcp, (peer, handlers, probes) => {
        events = probes.events
        return RpcServer.serve(peer, Svc, handlers, {
          middleware: [tagging("a", probes.events), closed, tagging("b", probes.events), tagging("c", probes.events)]
        })
      })
      const svc = yield* RpcClient.makeWith(client, Svc)
      assert.deepStrictEqual(rejection(yield* Effect.flip(svc.Other(undefined))), {
        kind: "maintenance",
        text: "try later"
      })
      assert.deepStrictEqual(events, ["a>", "<a"])
      assert.isUndefined(probes.runs["Other"])
      events.length = 0
      assert.strictEqual(yield* svc.Ping({ n: 2 }), 2)
      assert.deepStrictEqual(events, ["a>", "b>", "c>", "handler Ping", "<c", "<b", "<a"])
    }))

  it.live("compose(list) behaves as the list; a middleware can rewrite the outcome", () =>
    Effect.gen(function*() {
      let events: Array<string> = []
      // a failure of Ping becomes the success -1 (the reply is still encoded with the success Schema)
      const recover: Middleware.Middleware = (call, next) =>
        call.method === "Mw.Ping" ? Effect.catch(next, () => Effect.succeed(-1)) : next
      const { client } = yield* setup(tcp, (peer, handlers, probes) => {
        events = probes.events
        const stack = Middleware.compose([tagging("a", probes.events), recover, tagging("b", probes.events)])
        return RpcServer.serve(peer, Svc, handlers, { middleware: [stack] })
      })
      const svc = yield* RpcClient.makeWith(client, Svc)
      assert.strictEqual(yield* svc.Ping({ n: -5 }), -1)
      assert.deepStrictEqual(events, ["a>", "b>", "handler Ping", "<b", "<a"])
      assert.strictEqual(yield* svc.Ping({ n: 5 }), 5)
    }))
})

// ---------------------------------------------------------------------------------------------
// Streaming kinds
// ---------------------------------------------------------------------------------------------

describe("streaming kinds", () => {
  const setupStreaming = (address: string) =>
    Effect.gen(function*() {
      let events: Array<string> = []
      const { client, probes } = yield* setup(address, (peer, handlers, probes) => {
        events = probes.events
        return RpcServer.serve(peer, Svc, handlers, {
          middleware: [tagging("t", probes.events), tokenIs("ok")]
        })
      })
      return { client, probes, events: () => events }
    })

  it.live("server stream, client stream and bidi pass through middleware, which sees them end", () =>
    Effect.gen(function*() {
      const { client, events } = yield* setupStreaming(tcp)
      const svc = yield* RpcClient.makeWith(client, Svc, { headers: { authorization: "ok" } })
      assert.deepStrictEqual(yield* Stream.runCollect(svc.Count({ n: 3 })).pipe(within("Count")), [1, 2, 3])
      assert.deepStrictEqual(events().splice(0), ["t>", "handler Count", "<t"])
      assert.strictEqual(yield* svc.Sum(Stream.make(1, 2, 3, 4)).pipe(within("Sum")), 10)
      assert.deepStrictEqual(events().splice(0), ["t>", "handler Sum", "<t"])
      assert.deepStrictEqual(yield* Stream.runCollect(svc.Echo(Stream.make(5, 6))).pipe(within("Echo")), [5, 6])
      assert.deepStrictEqual(events().splice(0), ["t>", "handler Echo", "<t"])
      // a long server stream through middleware
      assert.strictEqual(yield* Stream.runCount(svc.Count({ n: 20_000 })).pipe(within("Count 20k")), 20_000)
    }))

  it.live("middleware rejects every streaming kind before its handler runs", () =>
    Effect.gen(function*() {
      const { client, probes, events } = yield* setupStreaming(tcp)
      const svc = yield* RpcClient.makeWith(client, Svc, { headers: { authorization: "nope" } })
      const count = yield* Effect.flip(Stream.runCollect(svc.Count({ n: 3 }))).pipe(within("Count rejected"))
      assert.deepStrictEqual(rejection(count), { kind: "auth", text: "not authorized" })
      const sum = yield* Effect.flip(svc.Sum(Stream.make(1, 2, 3))).pipe(within("Sum rejected"))
      assert.strictEqual(rejection(sum).kind, "auth")
      const echo = yield* Effect.flip(Stream.runCollect(svc.Echo(Stream.make(1, 2)))).pipe(within("Echo rejected"))
      assert.strictEqual(rejection(echo).kind, "auth")
      // an endless input is not a problem for a rejected bidi or client-stream call
      const endless = Stream.iterate(0, (n) => n + 1)
      assert.strictEqual(rejection(yield* Effect.flip(svc.Sum(endless)).pipe(within("endless Sum"))).kind, "auth")
      assert.strictEqual(
        rejection(yield* Effect.flip(Stream.runDrain(svc.Echo(endless))).pipe(within("endless Echo"))).kind,
        "auth"
      )
      assert.deepStrictEqual(probes.runs, {})
      assert.deepStrictEqual(events(), ["t>", "<t", "t>", "<t", "t>", "<t", "t>", "<t", "t>", "<t"])
    }))
})

// ---------------------------------------------------------------------------------------------
// Unix smoke
// ---------------------------------------------------------------------------------------------

const unixAddress = Effect.map(tempDir, (dir) => `unix://${Path.join(dir, "mw.sock")}`)

describe("over unix", () => {
  it.live("auth, rate limit and logging on a Unix socket", () =>
    Effect.gen(function*() {
      const { entries, layer } = capturing()
      let now = 0
      const { client } = yield* setup(yield* unixAddress, (peer, handlers) =>
        RpcServer.serve(peer, Svc, handlers, {
          middleware: [
            Middleware.logging(),
            tokenIs("u"),
            Middleware.rateLimit({ per: "remote", ratePerSecond: 1, now: () => now })
          ]
        }).pipe(Effect.provide(layer)))
      const svc = yield* RpcClient.makeWith(client, Svc, { headers: { authorization: "u" } })
      const anonymous = yield* RpcClient.makeWith(client, Svc)
      assert.strictEqual(rejection(yield* Effect.flip(anonymous.Ping({ n: 1 }))).kind, "auth")
      assert.strictEqual(yield* svc.Ping({ n: 1 }), 1)
      assert.strictEqual(rejection(yield* Effect.flip(svc.Ping({ n: 2 }))).kind, "rate-limit")
      now += 1000
      assert.deepStrictEqual(yield* Stream.runCollect(svc.Count({ n: 2 })), [1, 2])
      assert.deepStrictEqual(entries.map((e) => e.level), ["Info", "Info"])
    }))
})
