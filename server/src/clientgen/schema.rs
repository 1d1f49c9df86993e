//! A module's description as `firefly.schema` holds it: the model (what the guest SDK's
//! `firefly_sdk::schema` writes, read back with serde), reading it out of a `.wasm`, and the
//! named types a client declares.

use anyhow::{Context as _, bail};
use serde::Deserialize;

pub use firefly_abi::SCHEMA_SECTION as SECTION;

/// The description format this reads.
const FORMAT: u32 = firefly_abi::SCHEMA_FORMAT;

/// A module's description.
#[derive(Debug, Clone, Deserialize)]
pub struct ModuleSchema {
    /// Format version (1).
    pub format: u32,
    /// The module's name.
    pub module: String,
    /// Its commands, by id.
    pub commands: Vec<Command>,
    /// Its declared push topics.
    pub pushes: Vec<Push>,
}

/// A command: the handler's name and the types it takes and answers.
#[derive(Debug, Clone, Deserialize)]
pub struct Command {
    /// Command id.
    pub id: u32,
    /// The handler function's name.
    pub name: String,
    /// Its doc comment.
    pub doc: String,
    /// Request type.
    pub request: Ty,
    /// Reply type.
    pub reply: Ty,
}

/// A push topic.
#[derive(Debug, Clone, Deserialize)]
pub struct Push {
    /// Topic id.
    pub topic: u32,
    /// Its name (`channel_message`).
    pub name: String,
    /// The topic constant's doc comment.
    pub doc: String,
    /// Payload type.
    pub payload: Ty,
}

/// A wire type (see `firefly_sdk::schema::Type`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(
    missing_docs,
    reason = "the leaves are the Rust types of the same name"
)]
pub enum Ty {
    Bool,
    I8,
    I16,
    I32,
    I64,
    U8,
    U16,
    U32,
    U64,
    F32,
    F64,
    String,
    Bytes,
    /// Raw payload bytes (not MessagePack).
    Raw,
    Unit,
    Any,
    Option(Box<Ty>),
    List(Box<Ty>),
    Map(Box<Ty>, Box<Ty>),
    Tuple(Vec<Ty>),
    Struct(StructDef),
    Enum(EnumDef),
}

/// A struct: a MessagePack map with named fields.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct StructDef {
    /// Type name.
    pub name: String,
    /// Doc comment.
    pub doc: String,
    /// Fields in declaration order.
    pub fields: Vec<Field>,
}

/// A struct field.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Field {
    /// Name on the wire.
    pub name: String,
    /// Doc comment.
    pub doc: String,
    /// May be absent.
    pub optional: bool,
    /// Its type.
    #[serde(rename = "type")]
    pub ty: Ty,
}

/// An enum.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct EnumDef {
    /// Type name.
    pub name: String,
    /// Doc comment.
    pub doc: String,
    /// How variants are tagged.
    pub repr: Repr,
    /// Its variants.
    pub variants: Vec<Variant>,
}

/// Serde's enum representations.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Repr {
    /// `"Unit"` or `{"Variant": content}`.
    External,
    /// `{tag: "Variant", ...fields}`.
    Internal {
        /// The tag's key.
        tag: String,
    },
    /// `{tag: "Variant", content: content}`.
    Adjacent {
        /// The tag's key.
        tag: String,
        /// The content's key.
        content: String,
    },
    /// The content alone.
    Untagged,
}

/// An enum variant.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Variant {
    /// Name on the wire.
    pub name: String,
    /// Doc comment.
    pub doc: String,
    /// What it carries.
    pub kind: Kind,
}

/// What a variant carries.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs, reason = "named as serde's variant kinds")]
pub enum Kind {
    Unit,
    Newtype(Box<Ty>),
    Tuple(Vec<Ty>),
    Struct(Vec<Field>),
}

/// A named type of a module (struct or enum), with the name it is emitted under.
#[derive(Debug, Clone)]
pub enum Named {
    /// A struct.
    Struct(StructDef),
    /// An enum.
    Enum(EnumDef),
}

impl Named {
    /// The type's name.
    pub fn name(&self) -> &str {
        match self {
            Named::Struct(s) => &s.name,
            Named::Enum(e) => &e.name,
        }
    }
}

/// The named types a module's commands and pushes use, each once, every type after the types
/// it uses (languages that evaluate type aliases in order need that). Two different types of
/// the same name: the later one's references go to the earlier (rare; a module can rename one
/// with `#[serde(rename)]`).
pub fn named_types(schema: &ModuleSchema) -> Vec<Named> {
    fn visit(ty: &Ty, out: &mut Vec<Named>) {
        match ty {
            Ty::Option(t) | Ty::List(t) => visit(t, out),
            Ty::Map(k, v) => {
                visit(k, out);
                visit(v, out);
            }
            Ty::Tuple(items) => items.iter().for_each(|t| visit(t, out)),
            Ty::Struct(s) => {
                if out.iter().any(|n| n.name() == s.name) {
                    return;
                }
                s.fields.iter().for_each(|f| visit(&f.ty, out));
                out.push(Named::Struct(s.clone()));
            }
            Ty::Enum(e) => {
                if out.iter().any(|n| n.name() == e.name) {
                    return;
                }
                for v in &e.variants {
                    match &v.kind {
                        Kind::Unit => {}
                        Kind::Newtype(t) => visit(t, out),
                        Kind::Tuple(items) => items.iter().for_each(|t| visit(t, out)),
                        Kind::Struct(fields) => fields.iter().for_each(|f| visit(&f.ty, out)),
                    }
                }
                out.push(Named::Enum(e.clone()));
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    for c in &schema.commands {
        visit(&c.request, &mut out);
        visit(&c.reply, &mut out);
    }
    for p in &schema.pushes {
        visit(&p.payload, &mut out);
    }
    out
}

/// The description in a `.wasm`'s `firefly.schema` section.
pub fn read_schema(wasm: &[u8]) -> anyhow::Result<ModuleSchema> {
    let Some(json) = custom_section(wasm, SECTION)? else {
        bail!(
            "this module has no `{SECTION}` section: it was built before the guest SDK described \
             types (build it again with this firefly)"
        );
    };
    let schema: ModuleSchema = serde_json::from_slice(json)
        .context("the module's `firefly.schema` section is not valid")?;
    if schema.format != FORMAT {
        bail!(
            "the module's description is format {} and this firefly reads {FORMAT}: use the firefly of the module's SDK",
            schema.format
        );
    }
    Ok(schema)
}

/// The contents of the custom section `name` of a WebAssembly binary, if it has one.
pub fn custom_section<'a>(wasm: &'a [u8], name: &str) -> anyhow::Result<Option<&'a [u8]>> {
    if wasm.get(..8) != Some(b"\0asm\x01\0\0\0".as_slice()) {
        bail!("not a WebAssembly module (bad magic or version)");
    }
    let mut at = 8;
    while at < wasm.len() {
        let id = wasm[at];
        let (size, after) = leb(wasm, at + 1)?;
        let end = after
            .checked_add(size)
            .filter(|&e| e <= wasm.len())
            .context("truncated WebAssembly section")?;
        if id == 0 {
            let (len, start) = leb(wasm, after)?;
            let section_name = start
                .checked_add(len)
                .filter(|&e| e <= end)
                .and_then(|e| wasm.get(start..e))
                .context("bad custom section name")?;
            if section_name == name.as_bytes() {
                return Ok(wasm.get(start + len..end));
            }
        }
        at = end;
    }
    Ok(None)
}

/// An unsigned LEB128 number at `at`: its value and the offset after it.
fn leb(bytes: &[u8], mut at: usize) -> anyhow::Result<(usize, usize)> {
    let mut value: u64 = 0;
    for shift in (0..35).step_by(7) {
        let byte = *bytes.get(at).context("truncated WebAssembly module")?;
        at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return usize::try_from(value)
                .map(|v| (v, at))
                .context("section too large");
        }
    }
    bail!("bad LEB128 number in the WebAssembly module")
}
