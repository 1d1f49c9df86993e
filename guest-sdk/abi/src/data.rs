//! Cached database objects: the table schema a module declares and the operations it runs.
//!
//! A module declares its tables in its [`Manifest`](crate::Manifest); the host creates or
//! extends the SQL tables when the module loads. An operation crosses the ABI as one
//! MessagePack [`DataOp`] through `data_call`; the answer's meaning depends on the returned
//! [`data_status`] code.
//!
//! Objects cross as MessagePack maps with named fields (the module's struct, primary key
//! included). The host checks every field against the schema before it stores anything.

use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

/// The type of a field, as stored in its own SQL column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    /// A signed 64-bit integer (Rust integer types; `u64` values above `i64::MAX` are refused).
    Int,
    /// A 64-bit float.
    Float,
    /// A boolean.
    Bool,
    /// UTF-8 text.
    Text,
    /// Raw bytes (`Vec<u8>`).
    Bytes,
    /// Any other serde value (a nested struct, a list...), stored as MessagePack bytes.
    Value,
}

/// One field of a table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldSchema {
    /// Its name (the struct field's name; the SQL column's name).
    pub name: String,
    /// Its type.
    pub ty: FieldType,
    /// `Option<T>`: may be absent or nil.
    #[serde(default)]
    pub nullable: bool,
    /// `#[serde(default)]`: may be absent (the module supplies the default when it reads).
    #[serde(default)]
    pub defaulted: bool,
    /// `#[index]`: keys can be listed by this field's value.
    #[serde(default)]
    pub indexed: bool,
}

/// A table a module declares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableSchema {
    /// The table's name (lowercase letters, digits and `_`).
    pub name: String,
    /// The name of the primary key field (an `Int` or `Text` field of `fields`).
    pub key: String,
    /// Every field, the primary key included, in declaration order.
    pub fields: Vec<FieldSchema>,
    /// `#[rank]`: the objects are ranked by this integer field, highest first.
    #[serde(default)]
    pub rank: Option<RankSchema>,
}

/// A ranked field (`#[rank]` / `#[rank(by = "board")]`): the host keeps an order-statistic
/// index over it, so an object's rank and any page of the ranking cost O(log n).
///
/// Order: highest score first; equal scores by primary key, ascending. An object whose score
/// is nil (an `Option` field set to `None`) is not ranked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RankSchema {
    /// The score: an `Int` field.
    pub field: String,
    /// Objects are ranked among those with the same value of this field (an `Int`, `Text` or
    /// `Bool` field: a board, a season...); `None`: one ranking for the whole table.
    #[serde(default)]
    pub by: Option<String>,
}

impl TableSchema {
    /// The field called `name`.
    pub fn field(&self, name: &str) -> Option<&FieldSchema> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// The primary key field (`None` only in a malformed schema).
    pub fn key_field(&self) -> Option<&FieldSchema> {
        self.field(&self.key)
    }
}

/// A primary key value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Key {
    /// An integer key.
    Int(i64),
    /// A text key.
    Text(String),
}

impl core::fmt::Display for Key {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Key::Int(i) => write!(f, "{i}"),
            Key::Text(s) => write!(f, "{s:?}"),
        }
    }
}

macro_rules! int_keys {
    ($($t:ty),*) => {$(
        impl From<$t> for Key {
            fn from(v: $t) -> Self {
                // Values above i64::MAX wrap to negative keys; the SQL column is signed.
                Key::Int(v as i64)
            }
        }
    )*};
}

int_keys!(i8, i16, i32, i64, u8, u16, u32, u64, isize, usize);

impl From<String> for Key {
    fn from(v: String) -> Self {
        Key::Text(v)
    }
}

impl From<&str> for Key {
    fn from(v: &str) -> Self {
        Key::Text(v.into())
    }
}

impl From<&String> for Key {
    fn from(v: &String) -> Self {
        Key::Text(v.clone())
    }
}

/// One data operation, MessagePack-encoded as the input of `data_call`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum DataOp {
    /// Read one object. Answer: a [`Stored`].
    Get {
        /// Table name.
        table: String,
        /// Primary key.
        key: Key,
    },
    /// Create an object (its primary key is inside it); fails with `ALREADY_EXISTS`.
    /// Answer: the new version (MessagePack `u64`).
    Insert {
        /// Table name.
        table: String,
        /// The object: a MessagePack map of its fields.
        #[serde(with = "serde_bytes")]
        object: Vec<u8>,
    },
    /// Replace an object if its stored version is still `version`; fails with `CONFLICT`
    /// otherwise, `NOT_FOUND` when it does not exist. Answer: the new version.
    Update {
        /// Table name.
        table: String,
        /// The version the module read.
        version: u64,
        /// The object: a MessagePack map of its fields.
        #[serde(with = "serde_bytes")]
        object: Vec<u8>,
    },
    /// Delete an object (if `version` is given, only while it is still that version).
    /// Answer: nothing.
    Delete {
        /// Table name.
        table: String,
        /// Primary key.
        key: Key,
        /// Expected version, if any.
        version: Option<u64>,
    },
    /// The keys of every object whose indexed `field` equals `value`. Answer: `Vec<Key>`,
    /// sorted.
    ListBy {
        /// Table name.
        table: String,
        /// An `#[index]` field.
        field: String,
        /// The value, MessagePack-encoded.
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
    },
    /// The rank of one object of a table with a `#[rank]` field. Answer: a [`Rank`];
    /// `NOT_FOUND` when the object does not exist or is not ranked (nil score).
    RankOf {
        /// Table name.
        table: String,
        /// Primary key.
        key: Key,
    },
    /// A page of a ranking: the objects ranked `start + 1 ..= start + count` among those whose
    /// `by` field equals `group` (MessagePack; nil for a table ranked as a whole).
    /// Answer: a [`RankPage`]. `count` is at most [`MAX_RANK_PAGE`].
    RankRange {
        /// Table name.
        table: String,
        /// The `by` field's value, MessagePack-encoded.
        #[serde(with = "serde_bytes")]
        group: Vec<u8>,
        /// How many ranks to skip (0: from the top).
        start: u64,
        /// How many entries at most.
        count: u32,
    },
    /// A new id for `table`, unique forever (never reused, never reset by a restart).
    /// Answer: MessagePack `u64`, starting at 1.
    AllocId {
        /// Table name.
        table: String,
    },
}

/// The answer of a successful `Get`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stored {
    /// The object's version (1 after insert, +1 per update).
    pub version: u64,
    /// The object: a MessagePack map of its fields.
    #[serde(with = "serde_bytes")]
    pub object: Vec<u8>,
}

/// Most entries one `RankRange` answers.
pub const MAX_RANK_PAGE: u32 = 1000;

/// Where one object stands (the answer of `RankOf`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rank {
    /// 1 for the highest score.
    pub rank: u64,
    /// Its score.
    pub score: i64,
    /// How many objects its ranking holds.
    pub total: u64,
}

/// One ranked object in a [`RankPage`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RankEntry {
    /// Its rank (1 for the highest score).
    pub rank: u64,
    /// Its primary key.
    pub key: Key,
    /// Its score.
    pub score: i64,
}

/// The answer of `RankRange`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RankPage {
    /// How many objects the ranking holds.
    pub total: u64,
    /// The entries asked for, best first (fewer near the end).
    pub entries: Vec<RankEntry>,
}

/// Outcomes of `data_call`. Every expected failure is one of these, never a trap.
pub mod data_status {
    /// Done; the answer is the operation's result.
    pub const OK: u32 = 0;
    /// No object with that key (or, for `Get`, the answer is empty).
    pub const NOT_FOUND: u32 = 1;
    /// The object changed since it was read (its version is not the one given).
    pub const CONFLICT: u32 = 2;
    /// `Insert` of a key that exists.
    pub const ALREADY_EXISTS: u32 = 3;
    /// The object or arguments do not match the schema (wrong type, missing field...).
    pub const INVALID: u32 = 4;
    /// No table of that name is declared.
    pub const UNKNOWN_TABLE: u32 = 5;
    /// The object is larger than the storage's `max_object`.
    pub const TOO_LARGE: u32 = 6;
    /// The storage cannot be reached now (the data-owning node is restarting, Redis is
    /// down...). The operation did not happen; retrying later may succeed.
    pub const UNAVAILABLE: u32 = 7;
}
