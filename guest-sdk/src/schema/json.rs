//! A module's description as JSON, written at compile time (`const fn`): first its length
//! ([`json_len`]), then the bytes into an array of that length ([`write_json`]).
//!
//! Leaves are strings (`"u64"`, `"string"`, …); the rest are one-key objects: `{"option": t}`,
//! `{"list": t}`, `{"map": [k, v]}`, `{"tuple": [..]}`, `{"struct": {name, doc, fields}}`,
//! `{"enum": {name, doc, repr, variants}}`. A named type is written in full wherever it is
//! used; readers take the first definition of a name.

use super::{Command, EnumRepr, FORMAT, Field, Module, Push, Type, VariantKind};

/// Bytes of `module`'s JSON.
pub const fn json_len(module: &Module) -> usize {
    let mut w = Writer::<0> { buf: [], len: 0 };
    w.module(module);
    w.len
}

/// `module`'s JSON; `N` must be [`json_len`].
pub const fn write_json<const N: usize>(module: &Module) -> [u8; N] {
    let mut w = Writer::<N> {
        buf: [0; N],
        len: 0,
    };
    w.module(module);
    assert!(w.len == N, "json_len and write_json disagree");
    w.buf
}

/// Writes into `buf` while it has room, counting every byte.
struct Writer<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> Writer<N> {
    const fn byte(&mut self, b: u8) {
        if self.len < N {
            self.buf[self.len] = b;
        }
        self.len += 1;
    }

    const fn raw(&mut self, s: &str) {
        let bytes = s.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            self.byte(bytes[i]);
            i += 1;
        }
    }

    /// A JSON string, escaped.
    const fn string(&mut self, s: &str) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let bytes = s.as_bytes();
        self.byte(b'"');
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            if b == b'"' || b == b'\\' {
                self.byte(b'\\');
                self.byte(b);
            } else if b < 0x20 {
                self.raw("\\u00");
                self.byte(HEX[(b >> 4) as usize]);
                self.byte(HEX[(b & 15) as usize]);
            } else {
                self.byte(b);
            }
            i += 1;
        }
        self.byte(b'"');
    }

    /// `"key":`, preceded by a comma unless `first`.
    const fn key(&mut self, key: &str, first: bool) {
        if !first {
            self.byte(b',');
        }
        self.string(key);
        self.byte(b':');
    }

    const fn uint(&mut self, n: u32) {
        let mut digits = [0u8; 10];
        let (mut n, mut count) = (n, 0);
        loop {
            digits[count] = b'0' + (n % 10) as u8;
            count += 1;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        while count > 0 {
            count -= 1;
            self.byte(digits[count]);
        }
    }

    const fn module(&mut self, m: &Module) {
        self.raw("{");
        self.key("format", true);
        self.uint(FORMAT);
        self.key("module", false);
        self.string(m.name);
        self.key("commands", false);
        self.raw("[");
        let mut i = 0;
        while i < m.commands.len() {
            if i > 0 {
                self.byte(b',');
            }
            self.command(&m.commands[i]);
            i += 1;
        }
        self.raw("]");
        self.key("pushes", false);
        self.raw("[");
        let mut i = 0;
        while i < m.pushes.len() {
            if i > 0 {
                self.byte(b',');
            }
            self.push(&m.pushes[i]);
            i += 1;
        }
        self.raw("]}");
    }

    const fn command(&mut self, c: &Command) {
        self.raw("{");
        self.key("id", true);
        self.uint(c.id);
        self.key("name", false);
        self.string(c.name);
        self.key("doc", false);
        self.string(c.doc);
        self.key("request", false);
        self.ty(c.request);
        self.key("reply", false);
        self.ty(c.reply);
        self.raw("}");
    }

    const fn push(&mut self, p: &Push) {
        self.raw("{");
        self.key("topic", true);
        self.uint(p.topic);
        self.key("name", false);
        self.string(p.name);
        self.key("doc", false);
        self.string(p.doc);
        self.key("payload", false);
        self.ty(p.payload);
        self.raw("}");
    }

    const fn types(&mut self, items: &[&Type]) {
        self.raw("[");
        let mut i = 0;
        while i < items.len() {
            if i > 0 {
                self.byte(b',');
            }
            self.ty(items[i]);
            i += 1;
        }
        self.raw("]");
    }

    const fn fields(&mut self, fields: &[Field]) {
        self.raw("[");
        let mut i = 0;
        while i < fields.len() {
            let f = &fields[i];
            if i > 0 {
                self.byte(b',');
            }
            self.raw("{");
            self.key("name", true);
            self.string(f.name);
            self.key("doc", false);
            self.string(f.doc);
            self.key("optional", false);
            self.raw(if f.optional { "true" } else { "false" });
            self.key("type", false);
            self.ty(f.ty);
            self.raw("}");
            i += 1;
        }
        self.raw("]");
    }

    const fn ty(&mut self, t: &Type) {
        let leaf = match t {
            Type::Bool => "bool",
            Type::I8 => "i8",
            Type::I16 => "i16",
            Type::I32 => "i32",
            Type::I64 => "i64",
            Type::U8 => "u8",
            Type::U16 => "u16",
            Type::U32 => "u32",
            Type::U64 => "u64",
            Type::F32 => "f32",
            Type::F64 => "f64",
            Type::String => "string",
            Type::Bytes => "bytes",
            Type::Raw => "raw",
            Type::Unit => "unit",
            Type::Any => "any",
            _ => "",
        };
        if !leaf.is_empty() {
            self.string(leaf);
            return;
        }
        match t {
            Type::Option { of } => {
                self.raw("{\"option\":");
                self.ty(of);
            }
            Type::List { of } => {
                self.raw("{\"list\":");
                self.ty(of);
            }
            Type::Map { key, value } => {
                self.raw("{\"map\":[");
                self.ty(key);
                self.byte(b',');
                self.ty(value);
                self.raw("]");
            }
            Type::Tuple { items } => {
                self.raw("{\"tuple\":");
                self.types(items);
            }
            Type::Struct { name, doc, fields } => {
                self.raw("{\"struct\":{");
                self.key("name", true);
                self.string(name);
                self.key("doc", false);
                self.string(doc);
                self.key("fields", false);
                self.fields(fields);
                self.raw("}");
            }
            Type::Enum {
                name,
                doc,
                repr,
                variants,
            } => {
                self.raw("{\"enum\":{");
                self.key("name", true);
                self.string(name);
                self.key("doc", false);
                self.string(doc);
                self.key("repr", false);
                match repr {
                    EnumRepr::External => self.string("external"),
                    EnumRepr::Untagged => self.string("untagged"),
                    EnumRepr::Internal { tag } => {
                        self.raw("{\"internal\":{\"tag\":");
                        self.string(tag);
                        self.raw("}}");
                    }
                    EnumRepr::Adjacent { tag, content } => {
                        self.raw("{\"adjacent\":{\"tag\":");
                        self.string(tag);
                        self.raw(",\"content\":");
                        self.string(content);
                        self.raw("}}");
                    }
                }
                self.key("variants", false);
                self.raw("[");
                let mut i = 0;
                while i < variants.len() {
                    let v = &variants[i];
                    if i > 0 {
                        self.byte(b',');
                    }
                    self.raw("{");
                    self.key("name", true);
                    self.string(v.name);
                    self.key("doc", false);
                    self.string(v.doc);
                    self.key("kind", false);
                    match &v.kind {
                        VariantKind::Unit => self.string("unit"),
                        VariantKind::Newtype { of } => {
                            self.raw("{\"newtype\":");
                            self.ty(of);
                            self.raw("}");
                        }
                        VariantKind::Tuple { items } => {
                            self.raw("{\"tuple\":");
                            self.types(items);
                            self.raw("}");
                        }
                        VariantKind::Struct { fields } => {
                            self.raw("{\"struct\":");
                            self.fields(fields);
                            self.raw("}");
                        }
                    }
                    self.raw("}");
                    i += 1;
                }
                self.raw("]}");
            }
            _ => {}
        }
        self.raw("}");
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Schema, Variant};
    use super::*;

    const LINE: Type = Type::Struct {
        name: "Line",
        doc: "A \"line\"\nof text",
        fields: &[
            Field {
                name: "id",
                doc: "",
                ty: <u64 as Schema>::TYPE,
                optional: false,
            },
            Field {
                name: "tags",
                doc: "",
                ty: <Option<Vec<(String, bool)>> as Schema>::TYPE,
                optional: true,
            },
        ],
    };
    const KEEP: Type = Type::Enum {
        name: "Keep",
        doc: "",
        repr: EnumRepr::Adjacent {
            tag: "t",
            content: "c",
        },
        variants: &[
            Variant {
                name: "best",
                doc: "",
                kind: VariantKind::Unit,
            },
            Variant {
                name: "n",
                doc: "",
                kind: VariantKind::Newtype { of: &Type::I32 },
            },
        ],
    };
    const MODULE: Module = Module {
        name: "chat",
        commands: &[Command {
            id: 4_000_000_000,
            name: "say",
            doc: "",
            request: &LINE,
            reply: &KEEP,
        }],
        pushes: &[Push {
            topic: 0,
            name: "p",
            doc: "",
            payload: <std::collections::BTreeMap<String, crate::Raw> as Schema>::TYPE,
        }],
    };
    const LEN: usize = json_len(&MODULE);
    static JSON: [u8; LEN] = write_json::<LEN>(&MODULE);

    #[test]
    fn the_description_is_the_json_expected() {
        let text = std::str::from_utf8(&JSON).unwrap();
        assert_eq!(
            text,
            concat!(
                r#"{"format":1,"module":"chat","commands":[{"id":4000000000,"name":"say","doc":"","#,
                r#""request":{"struct":{"name":"Line","doc":"A \"line\"\u000aof text","fields":["#,
                r#"{"name":"id","doc":"","optional":false,"type":"u64"},"#,
                r#"{"name":"tags","doc":"","optional":true,"type":{"option":{"list":{"tuple":["string","bool"]}}}}]}},"#,
                r#""reply":{"enum":{"name":"Keep","doc":"","repr":{"adjacent":{"tag":"t","content":"c"}},"#,
                r#""variants":[{"name":"best","doc":"","kind":"unit"},{"name":"n","doc":"","kind":{"newtype":"i32"}}]}}}],"#,
                r#""pushes":[{"topic":0,"name":"p","doc":"","payload":{"map":["string","raw"]}}]}"#,
            )
        );
    }
}
