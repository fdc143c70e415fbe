/**
 * The ZeroMQ contender (`zeromq` 6, prebuilt binary): ROUTER server, DEALER clients, msgpack
 * bodies (`[op, arg, size]` requests; a stream ends with a msgpack `null`). The router routes
 * mandatorily, so sends wait at the high-water mark instead of dropping messages. zeromq.js allows
 * one blocked `send` per socket at a time, so sends go through a small queue.
 */
import { Decoder, Encoder } from "@msgpack/msgpack"
import * as Zmq from "zeromq"
import { type Contender, HOST, latencyMetrics, request, type Session } from "./common.ts"

const encoder = new Encoder()
const decoder = new Decoder()
const encode = (value: unknown): Buffer => {
  const bytes = encoder.encode(value)
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
}

type Message = Array<Buffer>

/** Serializes sends on one socket; the returned promise resolves once ZeroMQ queued the message. */
const makeSender = (socket: Zmq.Writable<Message>) => {
  const queue: Array<{ readonly message: Message; readonly resolve: () => void }> = []
  let pumping = false
  const pump = async () => {
    pumping = true
    while (queue.length > 0) {
      const item = queue.shift()!
      await socket.send(item.message)
      item.resolve()
    }
    pumping = false
  }
  return (message: Message): Promise<void> =>
    new Promise<void>((resolve) => {
      queue.push({ message, resolve })
      if (!pumping) void pump()
    })
}

const server = (ready: (port: number) => void): void => {
  const router = new Zmq.Router({ mandatory: true, linger: 0 })
  const send = makeSender(router)
  let chunk = new Uint8Array(0)
  const streamOut = async (id: Buffer, count: number, make: (i: number) => unknown) => {
    for (let i = 0; i < count; i++) await send([id, encode(make(i))])
    await send([id, encode(null)])
  }
  const loop = async () => {
    while (true) {
      const [id, body] = await router.receive()
      if (id === undefined || body === undefined) continue
      const message: unknown = decoder.decode(body)
      if (!Array.isArray(message)) continue
      const [op, arg, size]: ReadonlyArray<unknown> = message
      // A stream is sent before the next request is read: zeromq.js can miss the wakeup of a send
      // blocked at the high-water mark while a receive is pending on the same socket (streams
      // hung in about 1 run of 4 that way).
      if (op === "echo") void send([id, encode(arg)])
      else if (op === "count") await streamOut(id, Number(arg), (i) => ({ i }))
      else if (op === "bulk") {
        if (chunk.length !== Number(size)) chunk = new Uint8Array(Number(size)).fill(7)
        await streamOut(id, Math.ceil(Number(arg) / chunk.length), () => chunk)
      }
    }
  }
  void router.bind(`tcp://${HOST}:*`).then(() => {
    const endpoint = router.lastEndpoint ?? ""
    ready(Number(endpoint.slice(endpoint.lastIndexOf(":") + 1)))
    return loop()
  })
}

/** Enough sockets for W5's connections (the default context allows 1,023). */
const context = new Zmq.Context({ maxSockets: 8192 })

const connect = (port: number) => {
  const dealer = new Zmq.Dealer({ context, linger: 0 })
  dealer.connect(`tcp://${HOST}:${port}`)
  return dealer
}

const unaryBatch = async (dealer: Zmq.Dealer, calls: number, inflight: number) => {
  const send = makeSender(dealer)
  let sent = 0
  let done = 0
  for (; sent < Math.min(inflight, calls); sent++) void send([encode(["echo", request])])
  while (done < calls) {
    const [body] = await dealer.receive()
    if (body !== undefined) decoder.decode(body)
    done++
    if (sent < calls) {
      sent++
      void send([encode(["echo", request])])
    }
  }
}

const sequential = async (dealer: Zmq.Dealer, calls: number, latencies?: Array<number>) => {
  for (let i = 0; i < calls; i++) {
    const t0 = performance.now()
    await dealer.send(encode(["echo", request]))
    const [body] = await dealer.receive()
    if (body !== undefined) decoder.decode(body)
    latencies?.push(performance.now() - t0)
  }
}

const stream = async (dealer: Zmq.Dealer, op: string, arg: number, size = 0) => {
  let items = 0
  let bytes = 0
  await dealer.send(encode([op, arg, size]))
  while (true) {
    const [body] = await dealer.receive()
    const value: unknown = body === undefined ? null : decoder.decode(body)
    if (value === null) return { items, bytes }
    items++
    if (value instanceof Uint8Array) bytes += value.length
  }
}

const w1 = async (s: Session) => {
  const dealer = connect(s.port)
  await unaryBatch(dealer, s.sizes.warm.w1Calls, s.sizes.w1Inflight)
  await s.begin()
  await unaryBatch(dealer, s.sizes.w1Calls, s.sizes.w1Inflight)
  await s.end({})
  dealer.close()
}

const w2 = async (s: Session) => {
  const dealer = connect(s.port)
  await sequential(dealer, s.sizes.warm.w2Calls)
  const latencies: Array<number> = []
  await s.begin()
  await sequential(dealer, s.sizes.w2Calls, latencies)
  await s.end(() => latencyMetrics(latencies))
  dealer.close()
}

const w3 = async (s: Session) => {
  const dealer = connect(s.port)
  await stream(dealer, "count", s.sizes.warm.w3Messages)
  await s.begin()
  const { items } = await stream(dealer, "count", s.sizes.w3Messages)
  await s.end({ messages: items })
  dealer.close()
}

const w4 = async (s: Session) => {
  const dealer = connect(s.port)
  await stream(dealer, "bulk", s.sizes.warm.w4Bytes, s.sizes.chunk)
  await s.begin()
  const { bytes } = await stream(dealer, "bulk", s.sizes.w4Bytes, s.sizes.chunk)
  await s.end({ bytes })
  dealer.close()
}

const fanIn = async (port: number, connections: number, calls: number, phase: () => Promise<void>) => {
  const t0 = performance.now()
  const dealers = await Promise.all(
    Array.from({ length: connections }, async () => {
      const dealer = connect(port)
      await sequential(dealer, 1)
      return dealer
    })
  )
  const connectMs = performance.now() - t0
  await phase()
  await Promise.all(dealers.map((dealer) => sequential(dealer, calls)))
  return { dealers, connectMs }
}

const w5 = async (s: Session) => {
  const warm = await fanIn(s.port, s.sizes.warm.w5Connections, s.sizes.w5Calls, async () => {})
  warm.dealers.forEach((dealer) => dealer.close())
  const { connectMs, dealers } = await fanIn(s.port, s.sizes.w5Connections, s.sizes.w5Calls, s.begin)
  await s.end({ connectMs })
  dealers.forEach((dealer) => dealer.close())
}

export const contender: Contender = { server, w1, w2, w3, w4, w5 }
