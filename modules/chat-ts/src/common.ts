// What the TypeScript gameplay modules share (the twin of `modules/common`): who calls, input
// checks with clear error frames, bounded lists, insert-or-modify.
import { DataError, FireflyError, type Ctx, type Table } from "firefly-sdk";

/** Longest user id, in bytes. */
export const MAX_USER = 64;

const bytes = (text: string): number => {
  let n = 0;
  for (const ch of text) {
    const c = ch.codePointAt(0)!;
    n += c < 0x80 ? 1 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4;
  }
  return n;
};
const isControl = (ch: string): boolean => {
  const c = ch.codePointAt(0)!;
  return c < 0x20 || (c >= 0x7f && c < 0xa0);
};

/** The user bound to the calling session (`accounts` login), or `not_logged_in`. */
export function caller(ctx: Ctx): string {
  const user = ctx.user();
  if (user === null) {
    throw new FireflyError("not_logged_in", "log in first (accounts command 202 binds your user id)");
  }
  return user;
}

/** The request's `name` field, which must be a `type` (as serde refuses a missing or mistyped
 *  field in the Rust module): `bad_request` otherwise. */
export function field(req: unknown, name: string, type: "string" | "number"): void {
  const value = (req as Record<string, unknown> | null)?.[name];
  if (value === undefined) throw new FireflyError("bad_request", `missing field \`${name}\``);
  if (typeof value !== type) {
    throw new FireflyError("bad_request", `invalid type at \`${name}\`: expected a ${type}`);
  }
}

/** A user id: 1 to 64 bytes, no spaces or control characters. */
export function checkUser(field: string, user: unknown): asserts user is string {
  if (typeof user !== "string" || user.length === 0 || bytes(user) > MAX_USER || /[\s]/u.test(user) || [...user].some(isControl)) {
    throw new FireflyError("invalid_user", `\`${field}\` must be a user id of 1 to ${MAX_USER} bytes without spaces`);
  }
}

/** A name of `min` to `max` letters, digits, `_` or `-`. */
export function checkName(field: string, name: unknown, min: number, max: number): asserts name is string {
  const chars = typeof name === "string" ? [...name] : [];
  if (typeof name !== "string" || chars.length < min || chars.length > max || !chars.every((c) => /[\p{L}\p{N}_-]/u.test(c))) {
    throw new FireflyError("invalid_name", `\`${field}\` must have ${min} to ${max} letters, digits, \`_\` or \`-\``);
  }
}

/** A text of at most `max` bytes, without control characters but newlines and tabs. */
export function checkText(field: string, text: unknown, max: number, allowEmpty: boolean): asserts text is string {
  if (typeof text !== "string" || (!allowEmpty && text.trim().length === 0)) {
    throw new FireflyError("invalid_text", `\`${field}\` cannot be empty`);
  }
  if (bytes(text) > max) {
    throw new FireflyError("too_long", `\`${field}\` is ${bytes(text)} bytes; the limit is ${max}`);
  }
  if ([...text].some((c) => isControl(c) && c !== "\n" && c !== "\t")) {
    throw new FireflyError("invalid_text", `\`${field}\` contains control characters`);
  }
}

/** Adds `item` unless there; `code` when the list holds `cap` already. Whether it was added. */
export function addBounded<T>(list: T[], item: T, cap: number, code: string, what: string): boolean {
  if (list.includes(item)) return false;
  if (list.length >= cap) throw new FireflyError(code, `${what} is full (${cap} at most)`);
  list.push(item);
  return true;
}

/** Removes every `item`; whether there was one. */
export function remove<T>(list: T[], item: T): boolean {
  const before = list.length;
  for (let i = list.length - 1; i >= 0; i--) if (list[i] === item) list.splice(i, 1);
  return list.length !== before;
}

/** Modifies the object with `key`, or inserts `fresh()` changed, whichever applies. */
export function upsert<T>(table: Table<T>, key: string | number, fresh: () => T, change: (value: T) => void): T {
  for (let i = 0; i < 16; i++) {
    if (table.get(key) !== null) {
      try {
        return table.modify(key, change).value;
      } catch (e) {
        if (!(e instanceof DataError && e.code === "not_found")) throw e;
      }
    }
    const object = fresh();
    change(object);
    try {
      table.insert(object);
      return object;
    } catch (e) {
      if (!(e instanceof DataError && e.code === "already_exists")) throw e;
    }
  }
  throw new FireflyError("conflict", `\`${table.name}\` ${key} kept being created and deleted under us`);
}

/** The object with `key`, or `fresh()`. */
export function getOr<T>(table: Table<T>, key: string | number, fresh: () => T): T {
  return table.get(key)?.value ?? fresh();
}
