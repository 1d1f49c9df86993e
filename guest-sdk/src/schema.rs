//! What a module's payloads look like, for typed clients (`firefly client-gen`).
//!
//! A type describes itself with [`Schema`], usually derived: `#[derive(Serialize, Schema)]`
//! beside serde's derive, reading the same `#[serde(...)]` attributes (`rename`,
//! `rename_all`, `default`, `skip`, `skip_serializing_if`, `tag`, `content`, `untagged`,
//! `transparent`, `with = "serde_bytes"`). `#[firefly_sdk::module]` then writes the module's
//! description (each handler's request and reply type, and the push topics declared with
//! `#[push(Payload)]` on a topic constant) into the `.wasm` as the custom section
//! [`SECTION`], as JSON: nothing runs to read it.
//!
//! Everything here is evaluated at compile time: a type's description is a constant tree of
//! `&'static` references, which the module macro serialises into a byte array. A handler
//! type that does not implement [`Schema`] is described as [`Type::Any`] (the client sees an
//! untyped value), so deriving is opt-in per type. Recursive types cannot describe themselves
//! (the constant would be infinite): give such a field `#[schema(any)]`.

mod json;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

pub use firefly_macros::Schema;
pub use json::{json_len, write_json};

pub use firefly_abi::{SCHEMA_FORMAT as FORMAT, SCHEMA_SECTION as SECTION};

/// A type's shape on the wire (MessagePack, as the SDK's payloads are encoded).
#[derive(Debug)]
#[allow(
    missing_docs,
    reason = "the leaves are the Rust types of the same name"
)]
pub enum Type {
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
    /// MessagePack bin (`serde_bytes`).
    Bytes,
    /// A [`crate::Raw`] payload: the bytes as they are, not MessagePack.
    Raw,
    /// `()`: MessagePack nil.
    Unit,
    /// Anything (a type that does not describe itself).
    Any,
    /// `Option<T>`: the value or nil.
    Option {
        of: &'static Type,
    },
    /// A sequence (`Vec`, sets, arrays, slices).
    List {
        of: &'static Type,
    },
    /// A map (`HashMap`, `BTreeMap`).
    Map {
        key: &'static Type,
        value: &'static Type,
    },
    /// A tuple: an array of fixed length.
    Tuple {
        items: &'static [&'static Type],
    },
    /// A struct: a map with named fields.
    Struct {
        name: &'static str,
        doc: &'static str,
        fields: &'static [Field],
    },
    /// An enum, tagged as `repr` says.
    Enum {
        name: &'static str,
        doc: &'static str,
        repr: EnumRepr,
        variants: &'static [Variant],
    },
}

/// A named field of a struct (a MessagePack map entry).
#[derive(Debug)]
pub struct Field {
    /// Its name on the wire (after `rename`/`rename_all`).
    pub name: &'static str,
    /// Its doc comment.
    pub doc: &'static str,
    /// Its type.
    pub ty: &'static Type,
    /// May be absent (`#[serde(default)]`, `skip_serializing_if`, an `Option`).
    pub optional: bool,
}

/// How an enum's variants are told apart (serde's enum representations).
#[derive(Debug)]
pub enum EnumRepr {
    /// A unit variant is its name; any other is a one-entry map `{name: content}`.
    External,
    /// `#[serde(tag = "t")]`: a map with the name under `tag` beside the variant's fields.
    Internal {
        /// The key of the variant's name.
        tag: &'static str,
    },
    /// `#[serde(tag = "t", content = "c")]`.
    Adjacent {
        /// The key of the variant's name.
        tag: &'static str,
        /// The key of its content.
        content: &'static str,
    },
    /// `#[serde(untagged)]`: the content alone.
    Untagged,
}

/// One variant of an enum.
#[derive(Debug)]
pub struct Variant {
    /// Its name on the wire.
    pub name: &'static str,
    /// Its doc comment.
    pub doc: &'static str,
    /// What it carries.
    pub kind: VariantKind,
}

/// What a variant carries.
#[derive(Debug)]
#[allow(missing_docs, reason = "named as serde's variant kinds")]
pub enum VariantKind {
    Unit,
    Newtype { of: &'static Type },
    Tuple { items: &'static [&'static Type] },
    Struct { fields: &'static [Field] },
}

/// A type that describes its wire shape. Derive it: `#[derive(Schema)]`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not describe its wire shape (Schema)",
    label = "add `#[derive(Schema)]` to this type, or mark the field `#[schema(any)]`"
)]
pub trait Schema {
    /// The description.
    const TYPE: &'static Type;
}

/// A command of a module: its handler and the types it takes and answers.
#[derive(Debug)]
pub struct Command {
    /// The command id.
    pub id: u32,
    /// The handler function's name (the typed client's method).
    pub name: &'static str,
    /// The handler's doc comment.
    pub doc: &'static str,
    /// What it takes.
    pub request: &'static Type,
    /// What it answers.
    pub reply: &'static Type,
}

/// A push topic a module declares (`#[push(Payload)]` on its topic constant).
#[derive(Debug)]
pub struct Push {
    /// The topic id.
    pub topic: u32,
    /// Its name (`channel_message`).
    pub name: &'static str,
    /// The topic constant's doc comment.
    pub doc: &'static str,
    /// What is pushed.
    pub payload: &'static Type,
}

/// A module's description, as written into [`SECTION`].
#[derive(Debug)]
pub struct Module {
    /// The module's name.
    pub name: &'static str,
    /// Its commands, by id.
    pub commands: &'static [Command],
    /// Its declared push topics.
    pub pushes: &'static [Push],
}

macro_rules! leaf {
    ($($t:ty => $v:ident),* $(,)?) => {
        $(impl Schema for $t {
            const TYPE: &'static Type = &Type::$v;
        })*
    };
}

leaf! {
    bool => Bool, i8 => I8, i16 => I16, i32 => I32, i64 => I64, isize => I64,
    u8 => U8, u16 => U16, u32 => U32, u64 => U64, usize => U64,
    f32 => F32, f64 => F64, String => String, str => String, char => String, () => Unit,
    crate::Raw => Raw,
}

impl<T: Schema + ?Sized> Schema for &T {
    const TYPE: &'static Type = T::TYPE;
}

impl<T: Schema + ?Sized> Schema for Box<T> {
    const TYPE: &'static Type = T::TYPE;
}

impl<T: Schema + ?Sized> Schema for std::rc::Rc<T> {
    const TYPE: &'static Type = T::TYPE;
}

impl<T: Schema + ?Sized> Schema for std::sync::Arc<T> {
    const TYPE: &'static Type = T::TYPE;
}

impl<T: Schema> Schema for Option<T> {
    const TYPE: &'static Type = &Type::Option { of: T::TYPE };
}

macro_rules! list {
    ($($t:ident),*) => {
        $(impl<T: Schema> Schema for $t<T> {
            const TYPE: &'static Type = &Type::List { of: T::TYPE };
        })*
    };
}

list!(Vec, BTreeSet, HashSet);

impl<T: Schema> Schema for [T] {
    const TYPE: &'static Type = &Type::List { of: T::TYPE };
}

impl<T: Schema, const N: usize> Schema for [T; N] {
    const TYPE: &'static Type = &Type::List { of: T::TYPE };
}

impl<K: Schema, V: Schema> Schema for BTreeMap<K, V> {
    const TYPE: &'static Type = &Type::Map {
        key: K::TYPE,
        value: V::TYPE,
    };
}

impl<K: Schema, V: Schema, S> Schema for HashMap<K, V, S> {
    const TYPE: &'static Type = &Type::Map {
        key: K::TYPE,
        value: V::TYPE,
    };
}

macro_rules! tuple {
    ($(($($t:ident),+)),*) => {
        $(impl<$($t: Schema),+> Schema for ($($t,)+) {
            const TYPE: &'static Type = &Type::Tuple { items: &[$($t::TYPE),+] };
        })*
    };
}

tuple!((A), (A, B), (A, B, C), (A, B, C, D), (A, B, C, D, E));

/// A type's description, or [`Type::Any`] when it has none: `SchemaOf::<T>::TYPE` with
/// [`Fallback`] in scope picks the inherent constant when `T: Schema` and the trait's
/// otherwise (for concrete `T`, which is all the module macro names).
#[doc(hidden)]
pub struct SchemaOf<T: ?Sized>(std::marker::PhantomData<T>);

impl<T: Schema + ?Sized> SchemaOf<T> {
    /// `T`'s description.
    pub const TYPE: &'static Type = T::TYPE;
}

#[doc(hidden)]
pub trait Fallback {
    /// [`Type::Any`].
    const TYPE: &'static Type = &Type::Any;
}

impl<T: ?Sized> Fallback for SchemaOf<T> {}

#[cfg(test)]
mod tests {
    use super::*;

    struct Opaque;

    #[test]
    fn schema_of_falls_back_to_any() {
        #[allow(unused_imports)]
        use super::Fallback as _;
        assert!(matches!(SchemaOf::<Opaque>::TYPE, Type::Any));
        assert!(matches!(
            SchemaOf::<Vec<u64>>::TYPE,
            Type::List { of: Type::U64 }
        ));
    }
}
