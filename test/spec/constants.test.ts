import { assert, describe, it } from "@effect/vitest"
import { isProtocolError, ProtocolError, ProtocolErrorCode, type ProtocolErrorReason } from "../../src/DuplexError.ts"
import {
  CANCEL_ERROR,
  CHANNEL_ID_LIMIT,
  defaultLimits,
  FRAME_SLOTS,
  FrameType,
  GREETING_LENGTH,
  LEGACY_CHANNEL_BASE,
  PROTOCOL_VERSION
} from "../../src/Protocol.ts"

describe("Protocol constants", () => {
  it("FrameType numbers", () => {
    assert.deepStrictEqual({ ...FrameType }, {
      Open: 0,
      Data: 1,
      Hello: 2,
      Ping: 3,
      Pong: 4,
      Credit: 5,
      GoAway: 6
    })
    // Exactly these keys, in this order.
    assert.deepStrictEqual(Object.keys(FrameType), ["Open", "Data", "Hello", "Ping", "Pong", "Credit", "GoAway"])
  })

  it("FRAME_SLOTS, GREETING_LENGTH", () => {
    assert.strictEqual(FRAME_SLOTS, 7)
    assert.strictEqual(GREETING_LENGTH, 36)
  })

  it("CANCEL_ERROR, PROTOCOL_VERSION", () => {
    assert.strictEqual(CANCEL_ERROR, "CloseStream")
    assert.strictEqual(PROTOCOL_VERSION, "DUPLEX/1")
  })

  it("channel id ranges", () => {
    assert.strictEqual(LEGACY_CHANNEL_BASE, 2147483648)
    assert.strictEqual(LEGACY_CHANNEL_BASE, 2 ** 31)
    assert.strictEqual(CHANNEL_ID_LIMIT, 4294967296)
    assert.strictEqual(CHANNEL_ID_LIMIT, 2 ** 32)
  })

  it("defaultLimits", () => {
    assert.deepStrictEqual({ ...defaultLimits }, {
      maxFrameBytes: 16777216,
      maxHeaderCount: 64,
      maxHeaderBytes: 16384,
      maxMethodBytes: 1024,
      maxSkipDepth: 16,
      maxChannelsPerConnection: 65536
    })
    assert.deepStrictEqual(Object.keys(defaultLimits).sort(), [
      "maxChannelsPerConnection",
      "maxFrameBytes",
      "maxHeaderBytes",
      "maxHeaderCount",
      "maxMethodBytes",
      "maxSkipDepth"
    ])
  })
})

describe("ProtocolErrorCode", () => {
  it("codes", () => {
    assert.deepStrictEqual({ ...ProtocolErrorCode }, {
      MalformedFrame: 1,
      FrameTooLarge: 2,
      TooManyHeaders: 3,
      HeadersTooLarge: 4,
      MethodTooLong: 5,
      TruncatedFrame: 6,
      BadGreeting: 7,
      GreetingTimeout: 8
    })
  })

  it("fromReason carries the matching code, tag and message", () => {
    const reasons: ReadonlyArray<ProtocolErrorReason> = [
      "MalformedFrame",
      "FrameTooLarge",
      "TooManyHeaders",
      "HeadersTooLarge",
      "MethodTooLong",
      "TruncatedFrame",
      "BadGreeting",
      "GreetingTimeout"
    ]
    assert.deepStrictEqual(Object.keys(ProtocolErrorCode), [...reasons])
    for (const reason of reasons) {
      const error = ProtocolError.fromReason(reason, "detail")
      assert.strictEqual(error.reason, reason)
      assert.strictEqual(error.code, ProtocolErrorCode[reason])
      assert.strictEqual(error._tag, "ProtocolError")
      assert.strictEqual(error.detail, "detail")
      assert.strictEqual(error.message, `${reason}: detail`)
      assert.isTrue(isProtocolError(error))
    }
    assert.isFalse(isProtocolError(new Error("x")))
    assert.isFalse(isProtocolError({ _tag: "ProtocolError" }))
  })
})
