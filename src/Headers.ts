/**
 * Frame headers: an immutable string → string map for routing, tracing and auth. Storage is a
 * null-prototype object, so keys from the wire such as `__proto__` or `constructor` are plain keys
 * and can never pollute prototypes.
 *
 * @since 0.1.0
 */

/**
 * Read-only header map with a null prototype.
 *
 * @category models
 * @since 0.1.0
 */
export type Headers = { readonly [key: string]: string }

/**
 * The shared empty header map (frozen, null prototype).
 *
 * **Example** (No headers)
 * ```ts
 * import * as Headers from "duplex/Headers"
 * Object.keys(Headers.empty).length // 0
 * ```
 * @category constructors
 * @since 0.1.0
 */
export const empty: Headers = Object.freeze(Object.create(null))

/**
 * Builds a header map from a record or from entries. The result has a null prototype.
 *
 * **Example** (From a record)
 * ```ts
 * import * as Headers from "duplex/Headers"
 * const h = Headers.make({ "trace-id": "abc" })
 * Headers.get(h, "trace-id") // "abc"
 * ```
 * @category constructors
 * @since 0.1.0
 */
export const make = (input: Readonly<Record<string, string>> | Iterable<readonly [string, string]>): Headers => {
  const out: Record<string, string> = Object.create(null)
  const entries = Symbol.iterator in input
    ? input as Iterable<readonly [string, string]>
    : Object.entries(input as Readonly<Record<string, string>>)
  let n = 0
  for (const [k, v] of entries) {
    out[k] = v
    n++
  }
  return n === 0 ? empty : out
}

/**
 * Reads one header; `undefined` when absent. Only own keys count.
 *
 * **Example** (Reading)
 * ```ts
 * import * as Headers from "duplex/Headers"
 * Headers.get(Headers.make({ a: "1" }), "toString") // undefined
 * ```
 * @category getters
 * @since 0.1.0
 */
export const get = (self: Headers, key: string): string | undefined =>
  self === empty ? undefined : Object.hasOwn(self, key) ? self[key] : undefined

/**
 * Returns a new map with `key` set to `value`.
 *
 * **Example** (Setting)
 * ```ts
 * import * as Headers from "duplex/Headers"
 * const h = Headers.set(Headers.empty, "auth", "token")
 * ```
 * @category combinators
 * @since 0.1.0
 */
export const set = (self: Headers, key: string, value: string): Headers => {
  const out: Record<string, string> = Object.create(null)
  Object.assign(out, self)
  out[key] = value
  return out
}

/**
 * Returns a new map with the keys of `that` overriding those of `self`.
 *
 * **Example** (Merging)
 * ```ts
 * import * as Headers from "duplex/Headers"
 * const h = Headers.merge(Headers.make({ a: "1" }), Headers.make({ b: "2" }))
 * ```
 * @category combinators
 * @since 0.1.0
 */
export const merge = (self: Headers, that: Headers): Headers => {
  if (isEmpty(that)) return self
  if (isEmpty(self)) return that
  const out: Record<string, string> = Object.create(null)
  Object.assign(out, self, that)
  return out
}

/**
 * True when the map has no keys.
 *
 * **Example** (Empty check)
 * ```ts
 * import * as Headers from "duplex/Headers"
 * Headers.isEmpty(Headers.empty) // true
 * ```
 * @category getters
 * @since 0.1.0
 */
export const isEmpty = (self: Headers): boolean => {
  for (const _ in self) return false
  return true
}
