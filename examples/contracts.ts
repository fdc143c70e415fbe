/**
 * Contracts shared by the examples: the original prototype's `Arith` service (field names A, B, C
 * as the Go structs), a counter, a summer, a chat room and a progress callback.
 */
import { Schema } from "effect"
import * as Rpc from "../src/Rpc.ts"
import * as RpcGroup from "../src/RpcGroup.ts"

/** Division by zero, as a typed error. */
export class DivideByZero extends Schema.TaggedError<DivideByZero>()("DivideByZero", { dividend: Schema.Int }) {
  override get message() {
    return "divide by zero"
  }
}

export const Args = { A: Schema.Int, B: Schema.Int }
export const Reply = Schema.Struct({ C: Schema.Int })

/** `Arith.Add`, `Arith.Div` (typed error), `Arith.Count` (server stream), `Arith.Sum` (client stream). */
export const Arith = RpcGroup.make(
  Rpc.unary("Add", { payload: Args, success: Reply }),
  Rpc.unary("Div", { payload: Args, success: Reply, error: DivideByZero }),
  Rpc.serverStream("Count", { payload: { A: Schema.Int }, success: Reply }),
  Rpc.clientStream("Sum", { payload: { A: Schema.Int }, success: Reply })
).prefix("Arith.")

/** `Chat.Join`: every line sent comes back to everyone in the room (bidi). */
export const Chat = RpcGroup.make(
  Rpc.bidi("Join", { payload: Schema.String, success: Schema.Struct({ from: Schema.String, text: Schema.String }) })
).prefix("Chat.")

/** Served by the caller: the server reports progress back to it during a call. */
export const Progress = RpcGroup.make(
  Rpc.unary("Report", { payload: { percent: Schema.Int }, success: Schema.Boolean })
)
  .prefix("Progress.")

/** `Jobs.Run`: a long job that calls back into its caller. */
export const Jobs = RpcGroup.make(Rpc.unary("Run", { payload: { steps: Schema.Int }, success: Schema.String }))
  .prefix("Jobs.")
