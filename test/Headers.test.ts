import { assert, describe, it } from "@effect/vitest"
import * as Headers from "../src/Headers.ts"

describe("Headers.make", () => {
  it("from a record", () => {
    const h = Headers.make({ "trace-id": "abc", auth: "t" })
    assert.strictEqual(Headers.get(h, "trace-id"), "abc")
    assert.strictEqual(Headers.get(h, "auth"), "t")
    assert.deepStrictEqual(Object.keys(h), ["trace-id", "auth"])
  })

  it("from entries (array, Map, generator)", () => {
    const fromArray = Headers.make([["a", "1"], ["b", "2"]])
    const fromMap = Headers.make(new Map([["a", "1"], ["b", "2"]]))
    const fromGen = Headers.make((function*(): Generator<readonly [string, string]> {
      yield ["a", "1"]
      yield ["b", "2"]
    })())
    for (const h of [fromArray, fromMap, fromGen]) {
      assert.deepStrictEqual(Object.entries(h), [["a", "1"], ["b", "2"]])
    }
    // Duplicate entries: the last one wins.
    assert.strictEqual(Headers.get(Headers.make([["k", "1"], ["k", "2"]]), "k"), "2")
  })

  it("has a null prototype", () => {
    assert.isNull(Object.getPrototypeOf(Headers.make({ a: "1" })))
    assert.isNull(Object.getPrototypeOf(Headers.make([["a", "1"]])))
    assert.isNull(Object.getPrototypeOf(Headers.empty))
  })

  it("nothing in → the shared frozen empty map", () => {
    assert.strictEqual(Headers.make({}), Headers.empty)
    assert.strictEqual(Headers.make([]), Headers.empty)
    assert.strictEqual(Headers.make(new Map()), Headers.empty)
  })

  it("__proto__ and constructor are plain keys", () => {
    const h = Headers.make([["__proto__", "x"], ["constructor", "y"]])
    assert.isNull(Object.getPrototypeOf(h))
    assert.isTrue(Object.hasOwn(h, "__proto__"))
    assert.strictEqual(Headers.get(h, "__proto__"), "x")
    assert.strictEqual(Headers.get(h, "constructor"), "y")
    const probe: Record<string, unknown> = {}
    assert.isUndefined(probe["x"])
    assert.strictEqual(typeof probe.constructor, "function")
  })
})

describe("Headers.get", () => {
  it("reads only own keys", () => {
    const h = Headers.make({ a: "1" })
    assert.isUndefined(Headers.get(h, "toString"))
    assert.isUndefined(Headers.get(h, "constructor"))
    assert.isUndefined(Headers.get(h, "__proto__"))
    assert.isUndefined(Headers.get(h, "hasOwnProperty"))
    assert.isUndefined(Headers.get(h, "b"))
    assert.isUndefined(Headers.get(Headers.empty, "toString"))
    // Works on a plain object typed as Headers too (own keys only).
    const plain: Headers.Headers = { a: "1" }
    assert.isUndefined(Headers.get(plain, "toString"))
    assert.strictEqual(Headers.get(plain, "a"), "1")
  })

  it("distinguishes an empty value from an absent key", () => {
    const h = Headers.make({ a: "" })
    assert.strictEqual(Headers.get(h, "a"), "")
    assert.isUndefined(Headers.get(h, "b"))
  })
})

describe("Headers.set", () => {
  it("returns a new map and leaves the original unchanged", () => {
    const a = Headers.make({ x: "1" })
    const b = Headers.set(a, "y", "2")
    const c = Headers.set(b, "x", "3")
    assert.notStrictEqual(a, b)
    assert.deepStrictEqual(Object.entries(a), [["x", "1"]])
    assert.deepStrictEqual(Object.entries(b), [["x", "1"], ["y", "2"]])
    assert.deepStrictEqual(Object.entries(c), [["x", "3"], ["y", "2"]])
    assert.isNull(Object.getPrototypeOf(b))
    assert.isNull(Object.getPrototypeOf(c))
  })

  it("on the empty map leaves it empty and frozen", () => {
    const h = Headers.set(Headers.empty, "auth", "token")
    assert.strictEqual(Headers.get(h, "auth"), "token")
    assert.isTrue(Headers.isEmpty(Headers.empty))
    assert.isTrue(Object.isFrozen(Headers.empty))
    assert.isNull(Object.getPrototypeOf(h))
  })

  it("sets __proto__ as an own key without changing the prototype", () => {
    const h = Headers.set(Headers.make({ a: "1" }), "__proto__", "p")
    assert.isNull(Object.getPrototypeOf(h))
    assert.strictEqual(Headers.get(h, "__proto__"), "p")
    // And copying it along in further set/merge keeps it an own key.
    const h2 = Headers.set(h, "b", "2")
    assert.strictEqual(Headers.get(h2, "__proto__"), "p")
    assert.isNull(Object.getPrototypeOf(h2))
  })
})

describe("Headers.merge", () => {
  it("keys of the second override the first; inputs unchanged", () => {
    const a = Headers.make({ x: "1", y: "1" })
    const b = Headers.make({ y: "2", z: "2" })
    const m = Headers.merge(a, b)
    assert.deepStrictEqual(Object.entries(m).sort(), [["x", "1"], ["y", "2"], ["z", "2"]])
    assert.deepStrictEqual(Object.entries(a), [["x", "1"], ["y", "1"]])
    assert.deepStrictEqual(Object.entries(b), [["y", "2"], ["z", "2"]])
    assert.isNull(Object.getPrototypeOf(m))
  })

  it("with an empty side returns the other side", () => {
    const a = Headers.make({ x: "1" })
    assert.strictEqual(Headers.merge(a, Headers.empty), a)
    assert.strictEqual(Headers.merge(Headers.empty, a), a)
    assert.strictEqual(Headers.merge(Headers.empty, Headers.empty), Headers.empty)
  })

  it("keeps __proto__ keys from either side as own keys", () => {
    const m = Headers.merge(Headers.make([["__proto__", "a"]]), Headers.make({ b: "2" }))
    assert.isNull(Object.getPrototypeOf(m))
    assert.strictEqual(Headers.get(m, "__proto__"), "a")
    assert.strictEqual(Headers.get(m, "b"), "2")
  })
})

describe("Headers.empty", () => {
  it("is frozen, has no keys and cannot be written", () => {
    assert.isTrue(Object.isFrozen(Headers.empty))
    assert.deepStrictEqual(Object.keys(Headers.empty), [])
    assert.isTrue(Headers.isEmpty(Headers.empty))
    assert.isFalse(Reflect.set(Headers.empty, "x", "1"))
    assert.isUndefined(Headers.get(Headers.empty, "x"))
  })

  it("isEmpty", () => {
    assert.isFalse(Headers.isEmpty(Headers.make({ a: "" })))
    assert.isTrue(Headers.isEmpty(Headers.make({})))
  })
})
