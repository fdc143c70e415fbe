/**
 * Large binary payloads over real sockets keep every byte: the frame encoder reuses its memory
 * once the socket has written it (FrameEncoder.recycle), so a reuse too early would show here as
 * a chunk whose content belongs to a later one.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Schema, Stream } from "effect"
import * as Rpc from "../src/Rpc.ts"
import * as RpcClient from "../src/RpcClient.ts"
import * as RpcGroup from "../src/RpcGroup.ts"
import * as RpcServer from "../src/RpcServer.ts"
import { connectedPair, transports, within } from "./utils/rpc.ts"

const Bulk = RpcGroup.make(
  Rpc.serverStream("Download", { payload: { chunks: Schema.Int, size: Schema.Int }, success: Schema.Uint8Array }),
  Rpc.clientStream("Upload", { payload: Schema.Uint8Array, success: Schema.Array(Schema.Int) })
).prefix("Bulk.")

/** Chunk `i`: every byte derived from `i` and its position, so any mix-up shows. */
const chunk = (i: number, size: number): Uint8Array => {
  const out = new Uint8Array(size)
  for (let j = 0; j < size; j++) out[j] = (i * 31 + j * 7) & 0xff
  return out
}

/** The index a chunk was made from, or -1 when its bytes are not exactly `chunk(i, size)`. */
const indexOf = (bytes: Uint8Array, size: number): number => {
  if (bytes.length !== size) return -1
  for (let i = 0; i < 256; i++) {
    if (bytes[0] !== ((i * 31) & 0xff)) continue
    let same = true
    for (let j = 0; j < size; j++) {
      if (bytes[j] !== ((i * 31 + j * 7) & 0xff)) {
        same = false
        break
      }
    }
    if (same) return i
  }
  return -1
}

describe.each(transports)("bulk integrity over $name", (transport) => {
  // sizes around the encoder's 64 KiB slab, several windows' worth of data each way
  const sizes = [65_536, 65_500, 100_000, 3_000]

  it.live("server streams of large chunks arrive byte-exact and in order", () =>
    Effect.gen(function*() {
      const { connector } = yield* connectedPair(yield* transport.address, {
        binder: (peer) =>
          RpcServer.serve(peer, Bulk, {
            Download: ({ chunks, size }) => Stream.range(0, chunks - 1).pipe(Stream.map((i) => chunk(i % 256, size))),
            Upload: () => Effect.succeed([])
          })
      })
      const client = yield* RpcClient.makeWith(connector, Bulk)
      for (const size of sizes) {
        const chunks = Math.ceil((8 * 1024 * 1024) / size)
        const got = yield* Stream.runCollect(client.Download({ chunks, size }))
        assert.strictEqual(got.length, chunks)
        got.forEach((bytes, i) => assert.strictEqual(indexOf(bytes, size), i % 256, `size ${size}, chunk ${i}`))
      }
      // the dialling side read the large chunks straight into their own buffers
      const [connection] = yield* connector.connections
      assert.isAbove(connection?.stats.framesReadInPlace ?? 0, 100)
    }).pipe(within("large downloads", "60 seconds")), 90_000)

  it.live("client streams of large chunks arrive byte-exact and in order", () =>
    Effect.gen(function*() {
      const { connector } = yield* connectedPair(yield* transport.address, {
        binder: (peer) =>
          RpcServer.serve(peer, Bulk, {
            Download: () => Stream.empty,
            Upload: (chunks) => Stream.runCollect(Stream.map(chunks, (bytes) => indexOf(bytes, bytes.length)))
          })
      })
      const client = yield* RpcClient.makeWith(connector, Bulk)
      for (const size of sizes) {
        const n = Math.ceil((8 * 1024 * 1024) / size)
        const indices = yield* client.Upload(Stream.range(0, n - 1).pipe(Stream.map((i) => chunk(i % 256, size))))
        assert.deepStrictEqual(indices, Array.from({ length: n }, (_, i) => i % 256), `size ${size}`)
      }
    }).pipe(within("large uploads", "60 seconds")), 90_000)
})
