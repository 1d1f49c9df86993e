//! Cached database objects: tables declared in Rust, typed get / insert / update / delete,
//! keys listed by an indexed field, atomic ids.
//!
//! ```ignore
//! #[derive(Serialize, Deserialize, Table)]
//! #[table(name = "players")]
//! pub struct Player {
//!     #[primary_key]
//!     pub id: u64,
//!     #[index]
//!     pub name: String,
//!     pub gold: i64,
//!     #[serde(default)]
//!     pub level: u32,
//! }
//!
//! let id = ctx.alloc_id::<Player>()?;
//! ctx.insert(&Player { id, name: "ann".into(), gold: 10, level: 1 })?;
//! let p = ctx.modify::<Player>(id, |p| { p.gold += 5; Ok(()) })?;
//! ```
//!
//! Every object has a version. [`Ctx::update`] succeeds only while the stored version is still
//! the one read; otherwise it returns [`DataError::Conflict`] and nothing is written, so two
//! nodes updating the same object never lose an update. [`Ctx::modify`] is the
//! read-change-write loop that retries conflicts for you.

use serde::Serialize;
use serde::de::DeserializeOwned;

use firefly_abi::data::{DataOp, Stored, data_status};
pub use firefly_abi::data::{
    FieldSchema, FieldType, Key, MAX_RANK_PAGE, Rank, RankEntry, RankPage, RankSchema, TableSchema,
};
/// `#[derive(Table)]` (same name as the trait, like serde's derives).
pub use firefly_macros::Table;

use crate::ctx::Ctx;
use crate::error::Error;
use crate::raw;

/// A struct stored as a table: implement it with `#[derive(Table)]`.
pub trait Table: Serialize + DeserializeOwned {
    /// The table's name.
    const NAME: &'static str;
    /// The declared schema (goes into the module's manifest).
    fn schema() -> TableSchema;
    /// This object's primary key.
    fn key(&self) -> Key;
}

/// An object together with the version it was read at.
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned<T> {
    /// The version read (pass it back through [`Ctx::update`]).
    pub version: u64,
    /// The object.
    pub value: T,
}

impl<T> std::ops::Deref for Versioned<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T> std::ops::DerefMut for Versioned<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.value
    }
}

/// Why a data operation failed. Every variant is an expected outcome the module can match on;
/// `?` turns it into an [`Error`] with the code of [`DataError::code`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataError {
    /// No object with that key.
    NotFound(String),
    /// The object changed since it was read: read it again and retry (or use [`Ctx::modify`]).
    Conflict(String),
    /// `insert` of a key that exists.
    AlreadyExists(String),
    /// The object or an argument does not match the table's schema.
    Invalid(String),
    /// No table of that name is declared.
    UnknownTable(String),
    /// The object is larger than the storage allows.
    TooLarge(String),
    /// The storage is unreachable now; nothing was written.
    Unavailable(String),
}

impl DataError {
    /// The error code it becomes in an error frame.
    pub fn code(&self) -> &'static str {
        match self {
            DataError::NotFound(_) => "not_found",
            DataError::Conflict(_) => "conflict",
            DataError::AlreadyExists(_) => "already_exists",
            DataError::Invalid(_) => "invalid_argument",
            DataError::UnknownTable(_) => "unknown_table",
            DataError::TooLarge(_) => "too_large",
            DataError::Unavailable(_) => "data_unavailable",
        }
    }

    /// The explanation.
    pub fn message(&self) -> &str {
        match self {
            DataError::NotFound(m)
            | DataError::Conflict(m)
            | DataError::AlreadyExists(m)
            | DataError::Invalid(m)
            | DataError::UnknownTable(m)
            | DataError::TooLarge(m)
            | DataError::Unavailable(m) => m,
        }
    }
}

impl std::fmt::Display for DataError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code(), self.message())
    }
}

impl std::error::Error for DataError {}

impl From<DataError> for Error {
    fn from(e: DataError) -> Self {
        Error::new(e.code(), e.message())
    }
}

/// How many times [`Ctx::modify`] retries a conflict before giving up with it.
pub const MODIFY_ATTEMPTS: u32 = 128;

/// Runs one encoded operation: `Ok(answer)` or the error its status names.
pub fn call(op: &DataOp) -> Result<Vec<u8>, DataError> {
    let bytes = rmp_serde::to_vec_named(op)
        .map_err(|e| DataError::Invalid(format!("cannot encode the operation: {e}")))?;
    call_bytes(&bytes)
}

/// Runs an operation already encoded as MessagePack (for modules that build objects by hand;
/// the host checks everything anyway).
pub fn call_bytes(op: &[u8]) -> Result<Vec<u8>, DataError> {
    // SAFETY: the pointer and length describe `op`, which the host only reads.
    let packed = unsafe { raw::data_call(op.as_ptr() as u32, op.len() as u32) };
    let status = (packed >> 32) as u32;
    let len = (packed & 0xffff_ffff) as usize;
    let mut answer = vec![0u8; len];
    // SAFETY: `answer` is exactly `len` bytes; the host writes within it.
    unsafe { raw::data_reply_read(answer.as_mut_ptr() as u32, len as u32) };
    let text = || String::from_utf8_lossy(&answer).into_owned();
    match status {
        data_status::OK => Ok(answer),
        data_status::NOT_FOUND => Err(DataError::NotFound(text())),
        data_status::CONFLICT => Err(DataError::Conflict(text())),
        data_status::ALREADY_EXISTS => Err(DataError::AlreadyExists(text())),
        data_status::INVALID => Err(DataError::Invalid(text())),
        data_status::UNKNOWN_TABLE => Err(DataError::UnknownTable(text())),
        data_status::TOO_LARGE => Err(DataError::TooLarge(text())),
        _ => Err(DataError::Unavailable(text())),
    }
}

fn decode<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, DataError> {
    rmp_serde::from_slice(bytes)
        .map_err(|e| DataError::Invalid(format!("cannot decode {what}: {e}")))
}

fn encode<T: Table>(object: &T) -> Result<Vec<u8>, DataError> {
    rmp_serde::to_vec_named(object)
        .map_err(|e| DataError::Invalid(format!("cannot encode a `{}` object: {e}", T::NAME)))
}

impl Ctx {
    /// The object of table `T` with primary key `key`, with its version; `None` if absent.
    pub fn get<T: Table>(&self, key: impl Into<Key>) -> Result<Option<Versioned<T>>, DataError> {
        let op = DataOp::Get {
            table: T::NAME.into(),
            key: key.into(),
        };
        match call(&op) {
            Ok(answer) => {
                let stored: Stored = decode(&answer, "the stored object")?;
                let value = decode(&stored.object, T::NAME)?;
                Ok(Some(Versioned {
                    version: stored.version,
                    value,
                }))
            }
            Err(DataError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Stores a new object; [`DataError::AlreadyExists`] if its key is taken. Returns its
    /// version (1, or the next one after a deleted object of the same key).
    pub fn insert<T: Table>(&self, object: &T) -> Result<u64, DataError> {
        let op = DataOp::Insert {
            table: T::NAME.into(),
            object: encode(object)?,
        };
        decode(&call(&op)?, "the new version")
    }

    /// Replaces the object read as `object` (same key) if nobody changed it since:
    /// [`DataError::Conflict`] otherwise, [`DataError::NotFound`] if it was deleted. On
    /// success `object.version` becomes the new version, so it can be updated again.
    pub fn update<T: Table>(&self, object: &mut Versioned<T>) -> Result<u64, DataError> {
        let op = DataOp::Update {
            table: T::NAME.into(),
            version: object.version,
            object: encode(&object.value)?,
        };
        let version = decode(&call(&op)?, "the new version")?;
        object.version = version;
        Ok(version)
    }

    /// Reads the object `key`, applies `change` and writes it back, retrying from a fresh
    /// read when another writer got there first (up to [`MODIFY_ATTEMPTS`] times). `change`
    /// may run several times, so it must only change the object. Fails with `not_found`
    /// when there is no such object, or with `change`'s own error (nothing written).
    pub fn modify<T: Table>(
        &self,
        key: impl Into<Key>,
        mut change: impl FnMut(&mut T) -> Result<(), Error>,
    ) -> Result<Versioned<T>, Error> {
        let key = key.into();
        let mut last = None;
        for _ in 0..MODIFY_ATTEMPTS {
            let Some(mut object) = self.get::<T>(key.clone())? else {
                return Err(
                    DataError::NotFound(format!("no `{}` object with key {key}", T::NAME)).into(),
                );
            };
            change(&mut object.value)?;
            match self.update(&mut object) {
                Ok(_) => return Ok(object),
                Err(e @ DataError::Conflict(_)) => last = Some(e),
                Err(e) => return Err(e.into()),
            }
        }
        Err(last
            .unwrap_or_else(|| DataError::Conflict("too many conflicts".into()))
            .into())
    }

    /// Deletes the object `key` of table `T`; [`DataError::NotFound`] if there is none.
    pub fn delete<T: Table>(&self, key: impl Into<Key>) -> Result<(), DataError> {
        call(&DataOp::Delete {
            table: T::NAME.into(),
            key: key.into(),
            version: None,
        })
        .map(|_| ())
    }

    /// Deletes `object` only if it is still at the version it was read at
    /// ([`DataError::Conflict`] otherwise).
    pub fn delete_versioned<T: Table>(&self, object: &Versioned<T>) -> Result<(), DataError> {
        call(&DataOp::Delete {
            table: T::NAME.into(),
            key: object.value.key(),
            version: Some(object.version),
        })
        .map(|_| ())
    }

    /// The keys (sorted) of every object of `T` whose `#[index]` field `field` equals `value`.
    pub fn list_by<T: Table, V: Serialize>(
        &self,
        field: &str,
        value: &V,
    ) -> Result<Vec<Key>, DataError> {
        let value = rmp_serde::to_vec_named(value)
            .map_err(|e| DataError::Invalid(format!("cannot encode the value: {e}")))?;
        let op = DataOp::ListBy {
            table: T::NAME.into(),
            field: field.into(),
            value,
        };
        decode(&call(&op)?, "the key list")
    }

    /// Where the object of `T` with key `key` stands in its ranking (the table's `#[rank]`
    /// field, highest first): its rank (1 = best), score and the ranking's size. `None` when
    /// the object does not exist or its score is `None`. O(log n) on the host.
    pub fn rank<T: Table>(&self, key: impl Into<Key>) -> Result<Option<Rank>, DataError> {
        let op = DataOp::RankOf {
            table: T::NAME.into(),
            key: key.into(),
        };
        match call(&op) {
            Ok(answer) => decode(&answer, "the rank").map(Some),
            Err(DataError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Entries `start + 1 ..= start + count` of the ranking of the objects of `T` whose
    /// `#[rank(by = ...)]` field equals `group` (pass `&()` for a table ranked as a whole),
    /// best first; `count` is at most [`MAX_RANK_PAGE`]. O(log n + count) on the host.
    pub fn rank_range<T: Table, G: Serialize>(
        &self,
        group: &G,
        start: u64,
        count: u32,
    ) -> Result<RankPage, DataError> {
        let group = rmp_serde::to_vec_named(group)
            .map_err(|e| DataError::Invalid(format!("cannot encode the group: {e}")))?;
        let op = DataOp::RankRange {
            table: T::NAME.into(),
            group,
            start,
            count,
        };
        decode(&call(&op)?, "the ranking page")
    }

    /// A fresh id for table `T`: unique across the cluster and forever (never reused, never
    /// reset by a restart), starting at 1.
    pub fn alloc_id<T: Table>(&self) -> Result<u64, DataError> {
        let op = DataOp::AllocId {
            table: T::NAME.into(),
        };
        decode(&call(&op)?, "the id")
    }
}

/// Turns a field value into a [`Key`] (used by `#[derive(Table)]`).
#[doc(hidden)]
pub fn key_of<K: Clone + Into<Key>>(k: &K) -> Key {
    k.clone().into()
}
