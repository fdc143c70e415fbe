/**
 * The gRPC contender: `@grpc/grpc-js` with the service defined in code (a service definition
 * object for `Server.addService` and `makeGenericClientConstructor`), msgpack
 * serialize/deserialize functions, insecure credentials. Server streams honour `write()`'s
 * backpressure (`drain`).
 */
import * as Grpc from "@grpc/grpc-js"
import { Decoder, Encoder } from "@msgpack/msgpack"
import { type Contender, HOST, latencyMetrics, request, type Session } from "./common.ts"

const encoder = new Encoder()
const decoder = new Decoder()
const serialize = (value: unknown): Buffer => {
  const bytes = encoder.encode(value)
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
}
const deserialize = (bytes: Buffer): unknown => decoder.decode(bytes)

const method = (name: string, responseStream: boolean): Grpc.MethodDefinition<unknown, unknown> => ({
  path: `/bench.Bench/${name}`,
  requestStream: false,
  responseStream,
  requestSerialize: serialize,
  requestDeserialize: deserialize,
  responseSerialize: serialize,
  responseDeserialize: deserialize
})

const methods = { Echo: method("Echo", false), Count: method("Count", true), Bulk: method("Bulk", true) }
const service: Grpc.ServiceDefinition = methods
const Echo = methods.Echo.path
const Count = methods.Count.path
const Bulk = methods.Bulk.path

const field = (value: unknown, key: string): number => {
  const v: unknown = typeof value === "object" && value !== null
    ? Object.getOwnPropertyDescriptor(value, key)?.value
    : 0
  return typeof v === "number" ? v : 0
}

const server = (ready: (port: number) => void): void => {
  const srv = new Grpc.Server()
  const streamOut = async (
    call: Grpc.ServerWritableStream<unknown, unknown>,
    count: number,
    make: (i: number) => unknown
  ) => {
    for (let i = 0; i < count; i++) {
      if (!call.write(make(i))) await new Promise<void>((resolve) => call.once("drain", () => resolve()))
    }
    call.end()
  }
  let chunk = new Uint8Array(0)
  const echo: Grpc.handleUnaryCall<unknown, unknown> = (call, callback) => callback(null, call.request)
  const count: Grpc.handleServerStreamingCall<unknown, unknown> = (call) => {
    void streamOut(call, field(call.request, "n"), (i) => ({ i }))
  }
  const bulk: Grpc.handleServerStreamingCall<unknown, unknown> = (call) => {
    const size = field(call.request, "chunk")
    if (chunk.length !== size) chunk = new Uint8Array(size).fill(7)
    void streamOut(call, Math.ceil(field(call.request, "bytes") / size), () => chunk)
  }
  srv.addService(service, { Echo: echo, Count: count, Bulk: bulk })
  srv.bindAsync(`${HOST}:0`, Grpc.ServerCredentials.createInsecure(), (error, port) => {
    if (error !== null) throw error
    ready(port)
  })
}

const Client = Grpc.makeGenericClientConstructor(service, "bench.Bench")

/**
 * `grpc.use_local_subchannel_pool` gives each client its own connection (W5); the HTTP/2 flow
 * control window is raised from 64 KiB to 256 KiB, Duplex's default credit window per channel.
 */
const connect = (port: number): Grpc.Client =>
  new Client(`${HOST}:${port}`, Grpc.credentials.createInsecure(), {
    "grpc.use_local_subchannel_pool": 1,
    "grpc-node.flow_control_window": 256 * 1024
  })

const echoOnce = (client: Grpc.Client) =>
  new Promise<void>((resolve, reject) => {
    client.makeUnaryRequest<unknown, unknown>(Echo, serialize, deserialize, request, (error) => {
      if (error === null) resolve()
      else reject(error)
    })
  })

const unaryBatch = (client: Grpc.Client, calls: number, inflight: number) =>
  new Promise<void>((resolve, reject) => {
    let sent = 0
    let done = 0
    const send = () => {
      sent++
      client.makeUnaryRequest<unknown, unknown>(Echo, serialize, deserialize, request, onReply)
    }
    const onReply = (error: Grpc.ServiceError | null) => {
      if (error !== null) return reject(error)
      done++
      if (sent < calls) send()
      if (done === calls) resolve()
    }
    for (let i = 0; i < Math.min(inflight, calls); i++) send()
  })

const sequential = async (client: Grpc.Client, calls: number, latencies?: Array<number>) => {
  for (let i = 0; i < calls; i++) {
    const t0 = performance.now()
    await echoOnce(client)
    latencies?.push(performance.now() - t0)
  }
}

const stream = (client: Grpc.Client, path: string, argument: unknown) =>
  new Promise<{ readonly items: number; readonly bytes: number }>((resolve, reject) => {
    let items = 0
    let bytes = 0
    const call = client.makeServerStreamRequest<unknown, unknown>(path, serialize, deserialize, argument)
    call.on("data", (value: unknown) => {
      items++
      if (value instanceof Uint8Array) bytes += value.length
    })
    call.on("end", () => resolve({ items, bytes }))
    call.on("error", reject)
  })

const w1 = async (s: Session) => {
  const client = connect(s.port)
  await unaryBatch(client, s.sizes.warm.w1Calls, s.sizes.w1Inflight)
  await s.begin()
  await unaryBatch(client, s.sizes.w1Calls, s.sizes.w1Inflight)
  await s.end({})
  client.close()
}

const w2 = async (s: Session) => {
  const client = connect(s.port)
  await sequential(client, s.sizes.warm.w2Calls)
  const latencies: Array<number> = []
  await s.begin()
  await sequential(client, s.sizes.w2Calls, latencies)
  await s.end(() => latencyMetrics(latencies))
  client.close()
}

const w3 = async (s: Session) => {
  const client = connect(s.port)
  await stream(client, Count, { n: s.sizes.warm.w3Messages })
  await s.begin()
  const { items } = await stream(client, Count, { n: s.sizes.w3Messages })
  await s.end({ messages: items })
  client.close()
}

const w4 = async (s: Session) => {
  const client = connect(s.port)
  await stream(client, Bulk, { bytes: s.sizes.warm.w4Bytes, chunk: s.sizes.chunk })
  await s.begin()
  const { bytes } = await stream(client, Bulk, { bytes: s.sizes.w4Bytes, chunk: s.sizes.chunk })
  await s.end({ bytes })
  client.close()
}

const fanIn = async (port: number, connections: number, calls: number, phase: () => Promise<void>) => {
  const t0 = performance.now()
  const clients = await Promise.all(
    Array.from({ length: connections }, async () => {
      const client = connect(port)
      await echoOnce(client)
      return client
    })
  )
  const connectMs = performance.now() - t0
  await phase()
  await Promise.all(clients.map((client) => sequential(client, calls)))
  return { clients, connectMs }
}

const w5 = async (s: Session) => {
  const warm = await fanIn(s.port, s.sizes.warm.w5Connections, s.sizes.w5Calls, async () => {})
  warm.clients.forEach((client) => client.close())
  const { clients, connectMs } = await fanIn(s.port, s.sizes.w5Connections, s.sizes.w5Calls, s.begin)
  await s.end({ connectMs })
  clients.forEach((client) => client.close())
}

export const contender: Contender = { server, w1, w2, w3, w4, w5 }
