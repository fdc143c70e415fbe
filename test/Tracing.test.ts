/**
 * Tracing across calls: `RpcClient` option `tracing` (a `duplex.client <method>` span whose context
 * travels in the W3C `traceparent` header) and `Middleware.tracing()` (a `duplex.server <method>`
 * span whose parent is the caller's span), over TCP, directly and through a `Proxy`; and the unit
 * behaviour of `Middleware.parseTraceparent` and `RpcClient.traceparent`.
 *
 * The server side runs Effect's default tracer; where a test needs the client's (or the proxy's)
 * spans themselves, that side gets a recording tracer that creates the default `NativeSpan`s.
 *
 * Bugs are pinned by `it.live.fails` tests: a bidi call is not traced at all, a server-stream
 * call's client span ends before its stream, and `parseTraceparent` accepts uppercase hex.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Option, Schema, Stream, Tracer } from "effect"
import * as Headers from "../src/Headers.ts"
import * as Middleware from "../src/Middleware.ts"
import * as Peer from "../src/Peer.ts"
import * as Proxy from "../src/Proxy.ts"
import * as Rpc from "../src/Rpc.ts"
import * as RpcClient from "../src/RpcClient.ts"
import * as RpcGroup from "../src/RpcGroup.ts"
import * as RpcServer from "../src/RpcServer.ts"
import { connectedPair, within } from "./utils/rpc.ts"

// ---------------------------------------------------------------------------------------------
// A service reporting the span its handler runs in
// ---------------------------------------------------------------------------------------------

const SpanInfo = Schema.Struct({
  /** Empty when the handler runs in no span. */
  name: Schema.String,
  kind: Schema.String,
  traceId: Schema.String,
  spanId: Schema.String,
  sampled: Schema.Boolean,
  parentSpanId: Schema.String,
  parentTag: Schema.String,
  /** The `traceparent` request header as the handler received it (empty when absent). */
  traceparent: Schema.String
})
type SpanInfo = typeof SpanInfo.Type

const Traced = RpcGroup.make(
  Rpc.unary("Who", { success: SpanInfo }),
  Rpc.serverStream("Items", { success: SpanInfo }),
  Rpc.clientStream("Collect", { payload: Schema.Int, success: SpanInfo }),
  Rpc.bidi("Chat", { payload: Schema.Int, success: SpanInfo })
).prefix("Trace.")

const spanInfo = (call: { readonly headers: Headers.Headers }): Effect.Effect<SpanInfo> =>
  Effect.map(Effect.option(Effect.currentSpan), (current) => {
    const traceparent = Headers.get(call.headers, "traceparent") ?? ""
    if (Option.isNone(current)) {
      return {
        name: "",
        kind: "",
        traceId: "",
        spanId: "",
        sampled: false,
        parentSpanId: "",
        parentTag: "",
        traceparent
      }
    }
    const span = current.value
    const parent = Option.getOrUndefined(span.parent)
    return {
      name: span.name,
      kind: span.kind,
      traceId: span.traceId,
      spanId: span.spanId,
      sampled: span.sampled,
      parentSpanId: parent?.spanId ?? "",
      parentTag: parent?._tag ?? "",
      traceparent
    }
  })

const handlers: RpcGroup.Handlers<RpcGroup.Rpcs<typeof Traced>, never> = {
  Who: (_, call) => spanInfo(call),
  Items: (_, call) => Stream.fromEffect(spanInfo(call)),
  Collect: (xs, call) => Effect.andThen(Stream.runDrain(xs), spanInfo(call)),
  Chat: (xs, call) => Stream.fromEffect(Effect.andThen(Stream.runDrain(xs), spanInfo(call)))
}

const tcp = "tcp://127.0.0.1:0"

/** A tracer recording the (default, native) spans it creates. */
const recording = () => {
  const spans: Array<Tracer.Span> = []
  const tracer = Tracer.make({
    span: (options) => {
      const span = new Tracer.NativeSpan(options)
      spans.push(span)
      return span
    }
  })
  return { spans, tracer, named: (name: string) => spans.filter((s) => s.name === name) }
}

/** A traced server (default tracer) and a connected client peer. */
const tracedPair = Effect.gen(function*() {
  const { binder, connector, address } = yield* connectedPair(tcp, {
    binder: (peer) => RpcServer.serve(peer, Traced, handlers, { middleware: [Middleware.tracing()] })
  })
  return { server: binder, client: connector, address }
})

/** The caller's span and what `body` returns, run inside a fresh span `caller`. */
const inCallerSpan = <A, E, R>(body: Effect.Effect<A, E, R>) =>
  Effect.withSpan(
    Effect.gen(function*() {
      const caller = yield* Effect.orDie(Effect.currentSpan)
      return { caller, result: yield* body }
    }),
    "caller"
  )

const TRACEPARENT_SHAPE = /^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$/

/** Parses a header the test expects to be valid. */
const parsed = (header: string) => {
  const span = Middleware.parseTraceparent(header)
  if (span === undefined) throw new Error(`invalid traceparent: ${JSON.stringify(header)}`)
  return span
}

// ---------------------------------------------------------------------------------------------
// Direct calls
// ---------------------------------------------------------------------------------------------

describe("tracing, direct", () => {
  it.live("the server span has the caller's trace id and the client span as its parent", () =>
    Effect.gen(function*() {
      const { client } = yield* tracedPair
      const svc = yield* RpcClient.makeWith(client, Traced, { tracing: true })
      const { caller, result: server } = yield* inCallerSpan(svc.Who(undefined)).pipe(within("Who"))

      assert.match(server.traceparent, TRACEPARENT_SHAPE)
      const sent = parsed(server.traceparent)
      assert.strictEqual(sent.traceId, caller.traceId, "the header carries the caller's trace")
      assert.notStrictEqual(sent.spanId, caller.spanId, "…and the client span's id, not the caller's")
      assert.isTrue(sent.sampled)

      assert.strictEqual(server.name, "duplex.server Trace.Who")
      assert.strictEqual(server.kind, "server")
      assert.strictEqual(server.traceId, caller.traceId)
      assert.strictEqual(server.parentTag, "ExternalSpan")
      assert.strictEqual(server.parentSpanId, sent.spanId)
      assert.notStrictEqual(server.spanId, sent.spanId)
    }))

  it.live("the client span (recorded) is the caller's child and the server span's parent", () =>
    Effect.gen(function*() {
      const { client } = yield* tracedPair
      const recorder = recording()
      const svc = yield* RpcClient.makeWith(client, Traced, { tracing: true })
      const { caller, result: server } = yield* inCallerSpan(svc.Who(undefined)).pipe(
        Effect.provideService(Tracer.Tracer, recorder.tracer),
        within("Who")
      )
      const [clientSpan, ...more] = recorder.named("duplex.client Trace.Who")
      assert.isDefined(clientSpan)
      assert.lengthOf(more, 0)
      if (clientSpan === undefined) return
      assert.strictEqual(clientSpan.kind, "client")
      assert.strictEqual(clientSpan.attributes.get("rpc.method"), "Trace.Who")
      assert.strictEqual(clientSpan.attributes.get("rpc.system"), "duplex")
      assert.strictEqual(Option.getOrUndefined(clientSpan.parent)?.spanId, caller.spanId)
      assert.strictEqual(clientSpan.traceId, caller.traceId)
      assert.strictEqual(clientSpan.status._tag, "Ended", "the client span ends with the call")
      // the link across the wire
      assert.strictEqual(server.parentSpanId, clientSpan.spanId)
      assert.strictEqual(server.traceId, clientSpan.traceId)
      assert.strictEqual(server.traceparent, RpcClient.traceparent(clientSpan))
    }))

  it.live("server-stream and client-stream calls are traced the same way", () =>
    Effect.gen(function*() {
      const { client } = yield* tracedPair
      const svc = yield* RpcClient.makeWith(client, Traced, { tracing: true })
      const { caller, result } = yield* inCallerSpan(
        Effect.all([Stream.runCollect(svc.Items(undefined)), svc.Collect(Stream.make(1, 2, 3))])
      ).pipe(within("Items and Collect"))
      const [[items], collect] = result
      for (const [server, method] of [[items, "Items"], [collect, "Collect"]] as const) {
        assert.isDefined(server)
        if (server === undefined) return
        assert.strictEqual(server.name, `duplex.server Trace.${method}`)
        assert.strictEqual(server.traceId, caller.traceId, method)
        assert.strictEqual(server.parentSpanId, parsed(server.traceparent).spanId, method)
        assert.notStrictEqual(server.parentSpanId, caller.spanId, method)
      }
    }))

  // Regression: a server-stream call's client span used to cover only placing the call; streaming calls
  // now run inside `Stream.withSpan`.
  it.live("a server-stream call's client span lasts until the stream ends", () =>
    Effect.gen(function*() {
      const { client } = yield* tracedPair
      const recorder = recording()
      const svc = yield* RpcClient.makeWith(client, Traced, { tracing: true })
      const statusAtFirstItem: Array<string> = []
      yield* Stream.runDrain(
        svc.Items(undefined).pipe(
          Stream.tap(() =>
            Effect.sync(() => {
              const span = recorder.named("duplex.client Trace.Items")[0]
              statusAtFirstItem.push(span?.status._tag ?? "no span")
            })
          )
        )
      ).pipe(Effect.provideService(Tracer.Tracer, recorder.tracer), within("Items"))
      assert.deepStrictEqual(statusAtFirstItem, ["Started"], "the call is still running at its first item")
      assert.strictEqual(recorder.named("duplex.client Trace.Items")[0]?.status._tag, "Ended")
    }))

  // BUG: the bidi client never runs `traced` (src/RpcClient.ts, makeMethod case "bidi" builds its
  // stream without the client span or the `traceparent` header, unlike the three other kinds), so a
  // bidi call made with `tracing: true` sends no traceparent and the server's span starts a new trace.
  it.live("BUG: a bidi call is traced too", () =>
    Effect.gen(function*() {
      const { client } = yield* tracedPair
      const svc = yield* RpcClient.makeWith(client, Traced, { tracing: true })
      const { caller, result } = yield* inCallerSpan(Stream.runCollect(svc.Chat(Stream.make(1, 2)))).pipe(
        within("Chat")
      )
      const server = result[0]
      assert.isDefined(server)
      assert.match(server?.traceparent ?? "", TRACEPARENT_SHAPE)
      assert.strictEqual(server?.traceId, caller.traceId)
    }))

  it.live("without tracing on the client: no traceparent, and the server span is the root of its own trace", () =>
    Effect.gen(function*() {
      const { client } = yield* tracedPair
      const svc = yield* RpcClient.makeWith(client, Traced)
      const { caller, result: server } = yield* inCallerSpan(svc.Who(undefined)).pipe(within("Who"))
      assert.strictEqual(server.traceparent, "")
      assert.strictEqual(server.name, "duplex.server Trace.Who")
      assert.strictEqual(server.parentTag, "")
      assert.notStrictEqual(server.traceId, caller.traceId)
    }))

  it.live("a call outside any span starts the trace at the client span; an unsampled caller stays unsampled", () =>
    Effect.gen(function*() {
      const { client } = yield* tracedPair
      const svc = yield* RpcClient.makeWith(client, Traced, { tracing: true })
      const root = yield* svc.Who(undefined).pipe(within("Who without a caller span"))
      const sent = parsed(root.traceparent)
      assert.strictEqual(root.traceId, sent.traceId)
      assert.strictEqual(root.parentSpanId, sent.spanId)

      const unsampled = yield* svc.Who(undefined).pipe(
        Effect.withSpan("quiet caller", { sampled: false }),
        within("Who from an unsampled span")
      )
      assert.match(unsampled.traceparent, /-00$/)
      assert.isFalse(parsed(unsampled.traceparent).sampled)
      assert.isFalse(unsampled.sampled, "the server span follows the caller's sampling decision")
    }))

  it.live("a bad traceparent from the caller is ignored: the server starts a new trace", () =>
    Effect.gen(function*() {
      const { client } = yield* tracedPair
      const svc = yield* RpcClient.makeWith(client, Traced, {
        headers: { traceparent: "00-00000000000000000000000000000000-00f067aa0ba902b7-01" }
      })
      const server = yield* svc.Who(undefined).pipe(within("Who"))
      assert.strictEqual(server.name, "duplex.server Trace.Who")
      assert.strictEqual(server.parentTag, "")
      assert.notStrictEqual(server.traceId, "00000000000000000000000000000000")
    }))
})

// ---------------------------------------------------------------------------------------------
// Through a proxy
// ---------------------------------------------------------------------------------------------

describe("tracing through a proxy", () => {
  /** caller → front (Proxy with Middleware.tracing, recording tracer) → upstream (traced server). */
  const proxied = Effect.gen(function*() {
    const upstream = yield* Effect.orDie(Peer.make())
    yield* RpcServer.serve(upstream, Traced, handlers, { middleware: [Middleware.tracing()] })
    const upstreamAddress = yield* Effect.orDie(upstream.bind(tcp))
    const pool = yield* Effect.orDie(Peer.make())
    yield* Effect.orDie(pool.connect(upstreamAddress))
    yield* pool.awaitRemotes(1).pipe(within("pool connected"))

    const proxyTrace = recording()
    const { connector: client } = yield* connectedPair(tcp, {
      binder: (front) =>
        Proxy.serve(front, { routes: [{ upstream: pool }], middleware: [Middleware.tracing()] }).pipe(
          Effect.provideService(Tracer.Tracer, proxyTrace.tracer)
        )
    })
    return { client, proxyTrace }
  })

  it.live("one trace from the caller through the proxy to the upstream", () =>
    Effect.gen(function*() {
      const { client, proxyTrace } = yield* proxied
      const clientTrace = recording()
      const svc = yield* RpcClient.makeWith(client, Traced, { tracing: true })
      const { caller, result: server } = yield* inCallerSpan(svc.Who(undefined)).pipe(
        Effect.provideService(Tracer.Tracer, clientTrace.tracer),
        within("Who through the proxy")
      )
      const clientSpan = clientTrace.named("duplex.client Trace.Who")[0]
      assert.isDefined(clientSpan)
      if (clientSpan === undefined) return

      // the upstream joined the caller's trace
      assert.strictEqual(server.traceId, caller.traceId)
      assert.strictEqual(server.name, "duplex.server Trace.Who")
      // the proxy forwards the header unchanged: the upstream's parent is the client span
      assert.strictEqual(server.traceparent, RpcClient.traceparent(clientSpan))
      assert.strictEqual(server.parentSpanId, clientSpan.spanId)

      // the proxy's own span is in the same trace, a child of the client span too
      const proxySpan = proxyTrace.named("duplex.server Trace.Who")[0]
      assert.isDefined(proxySpan)
      if (proxySpan === undefined) return
      assert.strictEqual(proxySpan.kind, "server")
      assert.strictEqual(proxySpan.traceId, caller.traceId)
      assert.strictEqual(Option.getOrUndefined(proxySpan.parent)?.spanId, clientSpan.spanId)
      assert.strictEqual(proxySpan.status._tag, "Ended", "the proxy span ends when the forwarded call does")
    }))

  it.live("a traced server stream through the proxy stays in the caller's trace", () =>
    Effect.gen(function*() {
      const { client, proxyTrace } = yield* proxied
      const svc = yield* RpcClient.makeWith(client, Traced, { tracing: true })
      const { caller, result } = yield* inCallerSpan(Stream.runCollect(svc.Items(undefined))).pipe(
        within("Items through the proxy")
      )
      assert.strictEqual(result[0]?.traceId, caller.traceId)
      assert.strictEqual(proxyTrace.named("duplex.server Trace.Items")[0]?.traceId, caller.traceId)
    }))
})

// ---------------------------------------------------------------------------------------------
// parseTraceparent and traceparent
// ---------------------------------------------------------------------------------------------

describe("parseTraceparent", () => {
  const traceId = "4bf92f3577b34da6a3ce929d0e0e4736"
  const spanId = "00f067aa0ba902b7"

  it("a valid header is the caller's span, external, with its sampled flag", () => {
    const sampled = Middleware.parseTraceparent(`00-${traceId}-${spanId}-01`)
    assert.strictEqual(sampled?._tag, "ExternalSpan")
    assert.strictEqual(sampled?.traceId, traceId)
    assert.strictEqual(sampled?.spanId, spanId)
    assert.isTrue(sampled?.sampled)
    assert.isFalse(Middleware.parseTraceparent(`00-${traceId}-${spanId}-00`)?.sampled)
    // only bit 0 of the flags is "sampled"
    assert.isTrue(Middleware.parseTraceparent(`00-${traceId}-${spanId}-03`)?.sampled)
    assert.isFalse(Middleware.parseTraceparent(`00-${traceId}-${spanId}-02`)?.sampled)
    // surrounding whitespace (optional whitespace of a header value) is tolerated
    assert.strictEqual(Middleware.parseTraceparent(` 00-${traceId}-${spanId}-01 `)?.spanId, spanId)
  })

  it("missing header", () => {
    assert.isUndefined(Middleware.parseTraceparent(undefined))
    assert.isUndefined(Middleware.parseTraceparent(""))
  })

  it("version ff is invalid", () => {
    assert.isUndefined(Middleware.parseTraceparent(`ff-${traceId}-${spanId}-01`))
  })

  it("all-zero trace id or span id is invalid", () => {
    assert.isUndefined(Middleware.parseTraceparent(`00-${"0".repeat(32)}-${spanId}-01`))
    assert.isUndefined(Middleware.parseTraceparent(`00-${traceId}-${"0".repeat(16)}-01`))
  })

  it("wrong lengths are invalid", () => {
    for (
      const header of [
        `00-${traceId.slice(1)}-${spanId}-01`, // trace id 31
        `00-${traceId}0-${spanId}-01`, // trace id 33
        `00-${traceId}-${spanId.slice(1)}-01`, // span id 15
        `00-${traceId}-${spanId}0-01`, // span id 17
        `0-${traceId}-${spanId}-01`, // version 1 digit
        `00-${traceId}-${spanId}-1`, // flags 1 digit
        `00-${traceId}-${spanId}-001`, // flags 3 digits
        `00-${traceId}-${spanId}-01-extra`, // version 00 has exactly four fields
        `00-${traceId}-${spanId}`, // no flags
        `00_${traceId}_${spanId}_01` // wrong separators
      ]
    ) {
      assert.isUndefined(Middleware.parseTraceparent(header), header)
    }
  })

  it("non-hex characters are invalid", () => {
    assert.isUndefined(Middleware.parseTraceparent(`00-${traceId.slice(0, 31)}g-${spanId}-01`))
    assert.isUndefined(Middleware.parseTraceparent(`00-${traceId}-${spanId.slice(0, 15)}.-01`))
    assert.isUndefined(Middleware.parseTraceparent(`0x-${traceId}-${spanId}-01`))
  })

  // BUG: W3C Trace Context §3.2.2 defines every field of traceparent with HEXDIGLC (lowercase hex:
  // DIGIT / "a"–"f"), and §3.2.2.3/§3.2.2.4: "If the trace-id [parent-id] value is invalid (for
  // example if it contains non-allowed characters …), vendors MUST ignore the traceparent".
  // parseTraceparent lowercases the header before matching (`header.trim().toLowerCase()`), so an
  // uppercase header is accepted and joined instead of ignored. (If accepting it is a deliberate
  // leniency, flip this test and document it.)
  it.live("BUG: uppercase hex is invalid (W3C: lowercase only)", () =>
    Effect.sync(() => {
      assert.isUndefined(Middleware.parseTraceparent(`00-${traceId.toUpperCase()}-${spanId}-01`))
      assert.isUndefined(Middleware.parseTraceparent(`00-${traceId}-${spanId.toUpperCase()}-01`))
    }))
})

describe("traceparent", () => {
  it("formats a span as version 00 with its sampled flag, and round-trips through parseTraceparent", () => {
    const span = { traceId: "4bf92f3577b34da6a3ce929d0e0e4736", spanId: "00f067aa0ba902b7", sampled: true }
    assert.strictEqual(RpcClient.traceparent(span), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    assert.strictEqual(
      RpcClient.traceparent({ ...span, sampled: false }),
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
    )
    const back = Middleware.parseTraceparent(RpcClient.traceparent(span))
    assert.deepInclude(back, span)
  })

  it("pads short ids and keeps the low-order digits of long ones (tracers with other id sizes)", () => {
    assert.strictEqual(
      RpcClient.traceparent({ traceId: "abc", spanId: "12", sampled: true }),
      `00-${"0".repeat(29)}abc-${"0".repeat(14)}12-01`
    )
    assert.strictEqual(
      RpcClient.traceparent({ traceId: "f".repeat(40), spanId: "e".repeat(20), sampled: true }),
      `00-${"f".repeat(32)}-${"e".repeat(16)}-01`
    )
  })
})
