// Cached tables (the host's cached database objects) for TypeScript modules: `table(name, spec)`
// declares one (the same schema a Rust `#[table]` struct produces) and returns its handle.

import { FireflyError } from "./errors.js";

const F = globalThis.__firefly;

const DATA_ERRORS = {
  1: "not_found", 2: "conflict", 3: "already_exists", 4: "invalid_argument",
  5: "unknown_table", 6: "too_large", 7: "data_unavailable",
};
const MODIFY_ATTEMPTS = 64;
const TYPES = ["int", "float", "bool", "text", "bytes", "value"];

/** A failed data operation (its `code` is one of DATA_ERRORS'). */
export class DataError extends FireflyError {}

function dataCall(op) {
  const [status, bytes] = F.dataCall(F.encode(op));
  if (status === 0) return bytes;
  throw new DataError(DATA_ERRORS[status] ?? "handler_failed", F.utf8(bytes));
}

const keyOf = (key) => (typeof key === "string" ? { Text: key } : { Int: key });

/** The handle of a declared table. */
class Table {
  constructor(name, key) {
    this.name = name;
    this.key = key;
  }
  /** `{ version, value }`, or `null` when there is no object with `key`. */
  get(key) {
    let bytes;
    try {
      bytes = dataCall({ Get: { table: this.name, key: keyOf(key) } });
    } catch (e) {
      if (e instanceof DataError && e.code === "not_found") return null;
      throw e;
    }
    const stored = F.decode(bytes);
    return { version: stored.version, value: F.decode(stored.object) };
  }
  /** Creates `object` (its key inside it); `already_exists` if the key is taken. Returns its version. */
  insert(object) {
    return F.decode(dataCall({ Insert: { table: this.name, object: F.encode(object) } }));
  }
  /** Writes `versioned.value` if the stored object is still `versioned.version` (`conflict`
   *  otherwise); updates `versioned.version` and returns it. */
  update(versioned) {
    const version = F.decode(dataCall({
      Update: { table: this.name, version: versioned.version, object: F.encode(versioned.value) },
    }));
    versioned.version = version;
    return version;
  }
  /** Reads, changes with `change(value)` (in place) and writes, retried on conflicts. */
  modify(key, change) {
    for (let i = 0; i < MODIFY_ATTEMPTS; i++) {
      const object = this.get(key);
      if (object === null) throw new DataError("not_found", `no \`${this.name}\` object with key ${key}`);
      change(object.value);
      try {
        this.update(object);
        return object;
      } catch (e) {
        if (!(e instanceof DataError) || e.code !== "conflict") throw e;
      }
    }
    throw new DataError("conflict", "too many conflicts");
  }
  /** Deletes the object with `key` (only while it is still `version`, when given). */
  delete(key, version) {
    dataCall({ Delete: { table: this.name, key: keyOf(key), version: version ?? null } });
  }
  /** Keys of the objects whose indexed `field` equals `value`, sorted. */
  listBy(field, value) {
    const keys = F.decode(dataCall({ ListBy: { table: this.name, field, value: F.encode(value) } }));
    return keys.map((k) => k.Int ?? k.Text);
  }
  /** `{ rank, score, total }` of the object with `key`, or `null` when it is not ranked. */
  rankOf(key) {
    try {
      return F.decode(dataCall({ RankOf: { table: this.name, key: keyOf(key) } }));
    } catch (e) {
      if (e instanceof DataError && e.code === "not_found") return null;
      throw e;
    }
  }
  /** A page of the ranking of `group` (`null` for a table ranked as a whole). */
  rankRange(group, start, count) {
    const page = F.decode(dataCall({
      RankRange: { table: this.name, group: F.encode(group ?? null), start, count },
    }));
    return {
      total: page.total,
      entries: page.entries.map((e) => ({ rank: e.rank, key: e.key.Int ?? e.key.Text, score: e.score })),
    };
  }
  /** A new id for this table, unique forever. */
  allocId() {
    return F.decode(dataCall({ AllocId: { table: this.name } }));
  }
}

/** Declares table `name` (lowercase letters, digits and `_`) and returns its handle. */
export function table(name, spec) {
  const fields = Object.entries(spec.fields).map(([field, d]) => {
    const def = typeof d === "string" ? { type: d } : d;
    if (!TYPES.includes(def.type)) {
      throw new Error(`table ${name}: field ${field} has type ${def.type}; use one of ${TYPES.join(", ")}`);
    }
    return {
      name: field, ty: def.type, nullable: !!def.nullable, defaulted: !!def.defaulted,
      indexed: !!def.indexed,
    };
  });
  const rank = spec.rank === undefined ? null : { field: spec.rank.field, by: spec.rank.by ?? null };
  F.table({ name, key: spec.key, fields, rank });
  return new Table(name, spec.key);
}
