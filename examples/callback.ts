/**
 * `node examples/callback.ts`: symmetric RPC. The client serves `Progress`; during `Jobs.Run` the
 * server calls back into the client that called it (same connection, by remote peer id) to report
 * progress, then replies.
 */
import { Effect } from "effect"
import * as Peer from "../src/Peer.ts"
import * as RpcClient from "../src/RpcClient.ts"
import * as RpcServer from "../src/RpcServer.ts"
import { Jobs, Progress } from "./contracts.ts"

const program = Effect.gen(function*() {
  const server = yield* Peer.make()
  yield* RpcServer.serve(server, Jobs, {
    Run: ({ steps }, call) =>
      Effect.gen(function*() {
        const caller = yield* RpcClient.makeWith(server, Progress, { remote: call.remoteId })
        for (let step = 1; step <= steps; step++) {
          yield* caller.Report({ percent: Math.round((100 * step) / steps) })
        }
        return `ran ${steps} steps for ${call.remoteId.slice(0, 8)}`
      }).pipe(Effect.orDie)
  })
  const address = yield* server.bind("tcp://127.0.0.1:0")

  const client = yield* Peer.make()
  yield* RpcServer.serve(client, Progress, {
    Report: ({ percent }) => Effect.sync(() => console.log(`client: progress ${percent}%`)).pipe(Effect.as(true))
  })
  yield* client.connect(address)
  const jobs = yield* RpcClient.makeWith(client, Jobs)
  console.log("client:", yield* jobs.Run({ steps: 4 }))
}).pipe(Effect.scoped, Effect.timeout("10 seconds"))

Effect.runPromise(program).then(() => console.log("callback done"), (e) => {
  console.error(e)
  process.exitCode = 1
})
