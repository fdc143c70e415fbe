/**
 * The "raw" contender, the practical limit: `node:net`, u32 length prefix, `@msgpack/msgpack`
 * bodies with reused Encoder/Decoder, per-tick write batching (`bench/harness.ts`). Requests are
 * `[op, arg]`; a stream ends with a `null` frame.
 */
import * as Net from "node:net"
import { rawDecode, rawFrame, rawReader, rawWriter } from "../harness.ts"
import { type Contender, HOST, latencyMetrics, request, type Session } from "./common.ts"

const server = (ready: (port: number) => void): void => {
  const srv = Net.createServer((socket) => {
    socket.setNoDelay(true)
    const writer = rawWriter(socket)
    const waitDrain = () => new Promise<void>((resolve) => socket.once("drain", () => resolve()))
    // Writes in batches of about 64 KiB (one frame alone when it is that big), waiting for
    // `drain` whenever the socket asks: what a careful hand-written server does.
    const streamOut = async (count: number, make: (i: number) => unknown) => {
      for (let i = 0; i < count;) {
        const batch: Array<Buffer> = []
        let size = 0
        while (i < count && size < 65536) {
          const frame = rawFrame(make(i++))
          batch.push(frame)
          size += frame.length
        }
        if (!socket.write(batch.length === 1 ? batch[0]! : Buffer.concat(batch, size))) await waitDrain()
      }
      socket.write(rawFrame(null))
    }
    let chunk = Buffer.alloc(0)
    rawReader(socket, (body) => {
      const message = rawDecode(body)
      if (!Array.isArray(message)) return
      const [op, arg, size]: ReadonlyArray<unknown> = message
      if (op === "echo") writer.write(rawFrame(arg))
      else if (op === "count") void streamOut(Number(arg), (i) => ({ i }))
      else if (op === "bulk") {
        if (chunk.length !== Number(size)) chunk = Buffer.alloc(Number(size), 7)
        void streamOut(Math.ceil(Number(arg) / chunk.length), () => chunk)
      }
    })
    socket.on("error", () => {})
  })
  srv.listen(0, HOST, () => {
    const address = srv.address()
    if (address !== null && typeof address === "object") ready(address.port)
  })
}

const connect = (port: number) =>
  new Promise<Net.Socket>((resolve, reject) => {
    const socket = Net.createConnection({ port, host: HOST, noDelay: true }, () => resolve(socket))
    socket.once("error", reject)
  })

/** A connection with one reader callback that can be swapped between phases. */
const open = async (port: number) => {
  const socket = await connect(port)
  let onBody: (body: Uint8Array) => void = () => {}
  rawReader(socket, (body) => onBody(body))
  return {
    socket,
    writer: rawWriter(socket),
    listen: (f: (body: Uint8Array) => void) => {
      onBody = f
    }
  }
}

type Conn = Awaited<ReturnType<typeof open>>

const unaryBatch = (conn: Conn, calls: number, inflight: number) =>
  new Promise<void>((resolve) => {
    let sent = 0
    let done = 0
    const send = () => {
      sent++
      conn.writer.write(rawFrame(["echo", request]))
    }
    conn.listen((body) => {
      rawDecode(body)
      done++
      if (sent < calls) send()
      if (done === calls) resolve()
    })
    for (let i = 0; i < Math.min(inflight, calls); i++) send()
  })

const sequential = (conn: Conn, calls: number, latencies?: Array<number>) =>
  new Promise<void>((resolve) => {
    let t0 = 0
    let done = 0
    const send = () => {
      t0 = performance.now()
      conn.socket.write(rawFrame(["echo", request]))
    }
    conn.listen((body) => {
      rawDecode(body)
      latencies?.push(performance.now() - t0)
      if (++done === calls) resolve()
      else send()
    })
    send()
  })

const stream = (conn: Conn, op: string, arg: number, size = 0) =>
  new Promise<{ readonly items: number; readonly bytes: number }>((resolve) => {
    let items = 0
    let bytes = 0
    conn.listen((body) => {
      const value = rawDecode(body)
      if (value === null) return resolve({ items, bytes })
      items++
      if (value instanceof Uint8Array) bytes += value.length
    })
    conn.socket.write(rawFrame([op, arg, size]))
  })

const w1 = async (s: Session) => {
  const conn = await open(s.port)
  await unaryBatch(conn, s.sizes.warm.w1Calls, s.sizes.w1Inflight)
  await s.begin()
  await unaryBatch(conn, s.sizes.w1Calls, s.sizes.w1Inflight)
  await s.end({})
  conn.socket.destroy()
}

const w2 = async (s: Session) => {
  const conn = await open(s.port)
  await sequential(conn, s.sizes.warm.w2Calls)
  const latencies: Array<number> = []
  await s.begin()
  await sequential(conn, s.sizes.w2Calls, latencies)
  await s.end(() => latencyMetrics(latencies))
  conn.socket.destroy()
}

const w3 = async (s: Session) => {
  const conn = await open(s.port)
  await stream(conn, "count", s.sizes.warm.w3Messages)
  await s.begin()
  const { items } = await stream(conn, "count", s.sizes.w3Messages)
  await s.end({ messages: items })
  conn.socket.destroy()
}

const w4 = async (s: Session) => {
  const conn = await open(s.port)
  await stream(conn, "bulk", s.sizes.warm.w4Bytes, s.sizes.chunk)
  await s.begin()
  const { bytes } = await stream(conn, "bulk", s.sizes.w4Bytes, s.sizes.chunk)
  await s.end({ bytes })
  conn.socket.destroy()
}

const fanIn = async (port: number, connections: number, calls: number, phase: () => Promise<void>) => {
  const t0 = performance.now()
  const conns = await Promise.all(
    Array.from({ length: connections }, async () => {
      const conn = await open(port)
      await sequential(conn, 1)
      return conn
    })
  )
  const connectMs = performance.now() - t0
  await phase()
  await Promise.all(conns.map((conn) => sequential(conn, calls)))
  return { conns, connectMs }
}

const w5 = async (s: Session) => {
  const warm = await fanIn(s.port, s.sizes.warm.w5Connections, s.sizes.w5Calls, async () => {})
  warm.conns.forEach((conn) => conn.socket.destroy())
  const { conns, connectMs } = await fanIn(s.port, s.sizes.w5Connections, s.sizes.w5Calls, s.begin)
  await s.end({ connectMs })
  conns.forEach((conn) => conn.socket.destroy())
}

export const contender: Contender = { server, w1, w2, w3, w4, w5 }
