/**
 * MessagePack with 64-bit integers that survive the trip: ids and counters past 2^53 (session
 * ids of gates numbered 32 and up, `u64` keys, `i64` scores) are `bigint`, never floats.
 *
 * * Encoding: a `bigint` goes out as a MessagePack int 64 / uint 64; so does an integral
 *   `number` outside the 32-bit range (`2 ** 60` is exact as a double, and the server's
 *   `u64`/`i64` fields refuse floats). Other numbers are encoded as usual.
 * * Decoding: a 64-bit integer is a `number` when it is a safe integer (|n| < 2^53) and a
 *   `bigint` otherwise, so nothing is silently rounded. With `useBigInt64: true` every 64-bit
 *   integer is a `bigint`.
 */
import { decode, encode } from "@msgpack/msgpack";

const SAFE_MAX = BigInt(Number.MAX_SAFE_INTEGER);
const SAFE_MIN = BigInt(Number.MIN_SAFE_INTEGER);
const U64_LIMIT = 2 ** 64;
const I64_MIN = -(2 ** 63);

/** Encodes `value` as MessagePack (see the module's notes on 64-bit integers). */
export function encodeValue(value: unknown): Uint8Array {
  return encode(widen(value), { useBigInt64: true });
}

/** Decodes MessagePack; 64-bit integers are numbers when safe, else bigints (all bigints with
 *  `allBigInt`). */
export function decodeValue(bytes: Uint8Array, allBigInt = false): unknown {
  const value = decode(bytes, { useBigInt64: true });
  return allBigInt ? value : narrow(value);
}

/** Integral numbers outside the 32-bit range become bigints (copies only what changes). */
function widen(value: unknown): unknown {
  if (typeof value === "number") {
    if (Number.isInteger(value) && (value >= 2 ** 32 || value < -(2 ** 31)) && value < U64_LIMIT && value >= I64_MIN) {
      return BigInt(value);
    }
    return value;
  }
  if (Array.isArray(value)) {
    let out: unknown[] | undefined;
    value.forEach((item, i) => {
      const w = widen(item);
      if (w !== item) (out ??= value.slice())[i] = w;
    });
    return out ?? value;
  }
  if (value instanceof Map) {
    let changed = false;
    const out = new Map();
    for (const [k, v] of value) {
      const [wk, wv] = [widen(k), widen(v)];
      changed ||= wk !== k || wv !== v;
      out.set(wk, wv);
    }
    return changed ? out : value;
  }
  if (isPlainObject(value)) {
    let out: Record<string, unknown> | undefined;
    for (const key of Object.keys(value)) {
      const item = value[key];
      const w = widen(item);
      if (w !== item) (out ??= { ...value })[key] = w;
    }
    return out ?? value;
  }
  return value;
}

/** Bigints that are safe integers become numbers (in place: the value was just decoded). */
function narrow(value: unknown): unknown {
  if (typeof value === "bigint") {
    return value <= SAFE_MAX && value >= SAFE_MIN ? Number(value) : value;
  }
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) value[i] = narrow(value[i]);
  } else if (value instanceof Map) {
    for (const [k, v] of value) value.set(k, narrow(v));
  } else if (isPlainObject(value)) {
    for (const key of Object.keys(value)) value[key] = narrow(value[key]);
  }
  return value;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (value === null || typeof value !== "object") return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}
