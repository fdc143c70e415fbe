import { assert, describe, it } from "@effect/vitest"
import { Result } from "effect"
import * as Address from "../src/Address.ts"

const ok = (input: string): Address.Address => {
  const result = Address.parse(input)
  if (Result.isFailure(result)) return assert.fail(`expected ${input} to parse, got: ${result.failure.message}`)
  return result.success
}

const bad = (input: string): Address.AddressError => {
  let result: Result.Result<Address.Address, Address.AddressError>
  try {
    result = Address.parse(input)
  } catch (thrown) {
    return assert.fail(`parse(${JSON.stringify(input)}) threw ${String(thrown)}`)
  }
  if (Result.isSuccess(result)) {
    return assert.fail(`expected ${JSON.stringify(input)} to be rejected, got ${JSON.stringify(result.success)}`)
  }
  const error = result.failure
  assert.instanceOf(error, Address.AddressError)
  assert.strictEqual(error._tag, "AddressError")
  assert.strictEqual(error.input, input)
  return error
}

describe("Address.parse", () => {
  describe("tcp", () => {
    it("IPv4", () => {
      assert.deepStrictEqual(ok("tcp://127.0.0.1:7000"), { _tag: "Tcp", host: "127.0.0.1", port: 7000 })
    })

    it("bracketed IPv6, with the brackets removed", () => {
      assert.deepStrictEqual(ok("tcp://[::1]:7000"), { _tag: "Tcp", host: "::1", port: 7000 })
      assert.deepStrictEqual(ok("tcp://[2001:db8::42]:1"), { _tag: "Tcp", host: "2001:db8::42", port: 1 })
      assert.deepStrictEqual(ok("tcp://[fe80::1%eth0]:9"), { _tag: "Tcp", host: "fe80::1%eth0", port: 9 })
    })

    it("host names", () => {
      assert.deepStrictEqual(ok("tcp://localhost:80"), { _tag: "Tcp", host: "localhost", port: 80 })
      assert.deepStrictEqual(ok("tcp://node-1.example.test:65535"), {
        _tag: "Tcp",
        host: "node-1.example.test",
        port: 65535
      })
    })

    it("the scheme is case-insensitive", () => {
      assert.deepStrictEqual(ok("TCP://127.0.0.1:1"), { _tag: "Tcp", host: "127.0.0.1", port: 1 })
    })

    it("port range: 0 (any, for bind) to 65535", () => {
      assert.deepStrictEqual(ok("tcp://127.0.0.1:0"), Address.tcp("127.0.0.1", 0))
      assert.deepStrictEqual(ok("tcp://127.0.0.1:65535"), Address.tcp("127.0.0.1", 65535))
      assert.match(bad("tcp://127.0.0.1:65536").detail, /range/)
      assert.match(bad("tcp://127.0.0.1:99999").detail, /range/)
      bad("tcp://127.0.0.1:123456")
      bad("tcp://127.0.0.1:-1")
      bad("tcp://127.0.0.1:1e3")
      bad("tcp://127.0.0.1:0x10")
      bad("tcp://127.0.0.1: 80")
      bad("tcp://127.0.0.1:80/path")
    })

    it("missing port", () => {
      assert.match(bad("tcp://127.0.0.1").detail, /port/)
      assert.match(bad("tcp://localhost").detail, /port/)
      assert.match(bad("tcp://[::1]").detail, /port/)
      bad("tcp://127.0.0.1:")
      bad("tcp://[::1]:")
    })

    it("unbracketed IPv6 is rejected with a hint", () => {
      assert.match(bad("tcp://::1:7000").detail, /bracket/)
      assert.match(bad("tcp://2001:db8::1:80").detail, /bracket/)
    })

    it("malformed hosts", () => {
      bad("tcp://:7000")
      bad("tcp://[]:7000")
      bad("tcp://[::1:7000")
      bad("tcp://[::1]x:7000")
      bad("tcp://[zz::1]:7000")
      bad("tcp://user@host:7000")
      bad("tcp://ho st:7000")
      bad("tcp://host/x:7000")
    })

    it("tcp without //", () => {
      bad("tcp:127.0.0.1:7000")
    })
  })

  describe("unix", () => {
    it("absolute path: unix:///x", () => {
      assert.deepStrictEqual(ok("unix:///x"), { _tag: "Unix", path: "/x" })
      assert.deepStrictEqual(ok("unix:///run/duplex/app.sock"), { _tag: "Unix", path: "/run/duplex/app.sock" })
    })

    it("relative path: unix:rel/x", () => {
      assert.deepStrictEqual(ok("unix:rel/x"), { _tag: "Unix", path: "rel/x" })
      assert.deepStrictEqual(ok("unix:app.sock"), { _tag: "Unix", path: "app.sock" })
    })

    it("empty path", () => {
      assert.match(bad("unix:").detail, /empty/)
      assert.match(bad("unix://").detail, /empty/)
    })

    it("NUL byte in the path", () => {
      bad("unix:///tmp/a\u0000b")
    })
  })

  describe("schemes", () => {
    it("unknown scheme", () => {
      assert.match(bad("http://127.0.0.1:80").detail, /unknown scheme/)
      assert.match(bad("udp://127.0.0.1:80").detail, /unknown scheme/)
    })

    it("ws:// and wss:// are recognised but not supported yet", () => {
      assert.match(bad("ws://127.0.0.1:80").detail, /not supported/)
      assert.match(bad("wss://example.test:443/x").detail, /not supported/)
    })

    it("missing scheme", () => {
      bad("")
      bad("127.0.0.1")
      bad(":7000")
      bad("//127.0.0.1:7000")
    })

    it("never throws, whatever the input", () => {
      const inputs = [
        "",
        ":",
        "::",
        "tcp:",
        "tcp:/",
        "tcp://",
        "tcp://[",
        "tcp://]",
        "tcp://[]",
        "tcp://[:]:",
        "unix:/",
        "\u0000",
        "tcp://\u0000:1",
        "tcp://h:\u0661\u0662",
        "tcp://" + "a".repeat(10_000) + ":1",
        "x".repeat(100_000),
        "tcp://h:" + "9".repeat(400),
        "🙂://x:1",
        "tcp://🙂:1"
      ]
      for (const input of inputs) {
        const result = Address.parse(input)
        if (Result.isFailure(result)) assert.instanceOf(result.failure, Address.AddressError)
      }
    })

    it("AddressError message names the input", () => {
      const error = bad("tcp://nowhere")
      assert.include(error.message, "tcp://nowhere")
    })
  })
})

describe("Address.format", () => {
  it("round-trips canonical strings", () => {
    for (
      const input of [
        "tcp://127.0.0.1:7000",
        "tcp://[::1]:7000",
        "tcp://[fe80::1%eth0]:9",
        "tcp://localhost:0",
        "tcp://node-1.example.test:65535",
        "unix:///x",
        "unix:///run/duplex/app.sock",
        "unix:rel/x"
      ]
    ) {
      assert.strictEqual(Address.format(ok(input)), input)
    }
  })

  it("parse(format(a)) is a for constructed addresses", () => {
    for (
      const address of [
        Address.tcp("127.0.0.1", 1),
        Address.tcp("::1", 7000),
        Address.tcp("2001:db8::42", 65535),
        Address.tcp("example.test", 0),
        Address.unix("/tmp/a.sock"),
        Address.unix("relative/b.sock")
      ]
    ) {
      assert.deepStrictEqual(ok(Address.format(address)), address)
    }
  })

  it("formats IPv6 hosts in brackets", () => {
    assert.strictEqual(Address.format(Address.tcp("::1", 7000)), "tcp://[::1]:7000")
  })

  it("fromInput accepts strings and addresses", () => {
    const address = Address.tcp("127.0.0.1", 5)
    assert.deepStrictEqual(Address.fromInput(address), Result.succeed(address))
    assert.deepStrictEqual(Address.fromInput("tcp://127.0.0.1:5"), Result.succeed(address))
    assert.isTrue(Result.isFailure(Address.fromInput("nope")))
  })
})
