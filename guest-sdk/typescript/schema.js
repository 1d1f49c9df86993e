// What a TypeScript module says about its commands' types and its push topics, for typed
// clients (`firefly client-gen`). The same description a Rust module's `#[derive(Schema)]`
// types give (format 1 of `firefly.schema`): `handle(id, fn, { request, reply })` and
// `pushTopic(...)` record it here while the module loads, and `firefly build` writes it into the
// module's `firefly.schema` section. Nothing here runs when a request is served.

/** The description being built (read by `firefly build`). */
const described = (globalThis.__firefly_schema ??= { commands: [], pushes: [] });

/** Wire types, as `firefly.schema` spells them. */
export const t = {
  bool: () => "bool",
  /** A signed 64-bit integer (a `number`, or a `bigint` past 2^53). */
  int: () => "i64",
  /** An unsigned 64-bit integer. */
  uint: () => "u64",
  i32: () => "i32",
  u32: () => "u32",
  float: () => "f64",
  string: () => "string",
  bytes: () => "bytes",
  /** Nothing (nil). */
  unit: () => "unit",
  /** Any MessagePack value. */
  any: () => "any",
  optional: (type) => ({ option: type }),
  list: (type) => ({ list: type }),
  map: (key, value) => ({ map: [key, value] }),
  tuple: (...types) => ({ tuple: types }),
  /** A map with named fields; a field typed `t.optional(x)` may be absent. */
  object: (name, fields, doc = "") => {
    if (typeof name !== "string" || name === "") throw new TypeError("t.object needs a type name");
    return {
      struct: {
        name,
        doc,
        fields: Object.entries(fields).map(([field, type]) => ({
          name: field,
          doc: "",
          optional: typeof type === "object" && type !== null && "option" in type,
          type,
        })),
      },
    };
  },
  /** One of these strings (a fieldless enum, sent by name). */
  oneOf: (name, variants, doc = "") => ({
    enum: {
      name,
      doc,
      repr: "external",
      variants: variants.map((v) => ({ name: v, doc: "", kind: "unit" })),
    },
  }),
};

/** Records command `id`'s handler (`fn`'s name unless `options.name`) and its types. */
export function describeCommand(id, fn, options) {
  const raw = options?.raw ?? false;
  described.commands = described.commands.filter((c) => c.id !== id);
  described.commands.push({
    id,
    name: options?.name ?? (fn?.name || `command_${id}`),
    doc: options?.doc ?? "",
    request: raw ? "raw" : options?.request ?? "any",
    reply: raw ? "raw" : options?.reply ?? "any",
  });
}

/** Declares push topic `topic`, named `name`, carrying `payload` (for typed clients). */
export function pushTopic(topic, name, payload = "any", doc = "") {
  described.pushes = described.pushes.filter((p) => p.topic !== topic);
  described.pushes.push({ topic, name, doc, payload });
}
