//! A table the host itself keeps through the data layer (durable timers, room snapshots): its
//! schema is registered on first use, and its operations answer typed values, so they live
//! wherever the cluster's cached objects live (the embedded store or Redis, flushed to SQL).

use std::sync::Arc;

use firefly_abi::data::{DataOp, FieldSchema, FieldType, Key, Stored, TableSchema};
use serde::de::DeserializeOwned;

use super::{Data, DataError};

/// A field of a host table: never nil, never defaulted, `indexed` or not.
pub fn field(name: &str, ty: FieldType, indexed: bool) -> FieldSchema {
    FieldSchema {
        name: name.into(),
        ty,
        nullable: false,
        defaulted: false,
        indexed,
    }
}

/// One host table in `data`.
#[derive(Clone)]
pub struct HostTable {
    data: Arc<Data>,
    schema: Arc<TableSchema>,
    registered: Arc<tokio::sync::OnceCell<()>>,
}

impl HostTable {
    /// Table `schema` in `data` (registered at the first operation).
    pub fn new(data: Arc<Data>, schema: TableSchema) -> Self {
        Self {
            data,
            schema: Arc::new(schema),
            registered: Arc::default(),
        }
    }

    /// The table's name.
    pub fn name(&self) -> &str {
        &self.schema.name
    }

    /// Runs `op` (on this table) and decodes its answer. A schema the store refuses, or a
    /// store that cannot be reached, is [`DataError::Unavailable`].
    pub async fn op<T: DeserializeOwned>(&self, op: &DataOp) -> Result<T, DataError> {
        let answer = self.raw(op).await?;
        rmp_serde::from_slice(&answer)
            .map_err(|e| DataError::Invalid(format!("{}: unreadable answer: {e}", self.name())))
    }

    /// Runs `op`; its answer's bytes.
    pub async fn raw(&self, op: &DataOp) -> Result<Vec<u8>, DataError> {
        self.registered
            .get_or_try_init(|| async {
                let schema = std::slice::from_ref(&*self.schema);
                self.data
                    .register(schema)
                    .await
                    .map_err(|e| DataError::Unavailable(format!("table {}: {e}", self.schema.name)))
            })
            .await?;
        let bytes = rmp_serde::to_vec_named(op)
            .map_err(|e| DataError::Invalid(format!("{}: {e}", self.name())))?;
        self.data.call(&bytes).await
    }

    /// Object `key` as it is stored (`None`: there is none).
    pub async fn get(&self, key: Key) -> Result<Option<Stored>, DataError> {
        let op = DataOp::Get {
            table: self.name().to_owned(),
            key,
        };
        match self.op(&op).await {
            Ok(stored) => Ok(Some(stored)),
            Err(DataError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The keys of the objects whose indexed `field` is `value`.
    pub async fn list_by(
        &self,
        field: &str,
        value: &impl serde::Serialize,
    ) -> Result<Vec<Key>, DataError> {
        let value =
            rmp_serde::to_vec(value).map_err(|e| DataError::Invalid(format!("{field}: {e}")))?;
        self.op(&DataOp::ListBy {
            table: self.name().to_owned(),
            field: field.to_owned(),
            value,
        })
        .await
    }

    /// Stores a new object (`row`, its key inside); answers its version.
    pub async fn insert(&self, row: &impl serde::Serialize) -> Result<u64, DataError> {
        self.op(&DataOp::Insert {
            table: self.name().to_owned(),
            object: encode(row)?,
        })
        .await
    }

    /// Replaces the object whose key `row` holds, if it is still at `version`; answers the
    /// new version.
    pub async fn update(
        &self,
        version: u64,
        row: &impl serde::Serialize,
    ) -> Result<u64, DataError> {
        self.op(&DataOp::Update {
            table: self.name().to_owned(),
            version,
            object: encode(row)?,
        })
        .await
    }

    /// Deletes object `key` (only while at `version`, if given); gone already is fine.
    pub async fn delete(&self, key: Key, version: Option<u64>) -> Result<(), DataError> {
        let op = DataOp::Delete {
            table: self.name().to_owned(),
            key,
            version,
        };
        match self.raw(&op).await {
            Ok(_) | Err(DataError::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

fn encode(row: &impl serde::Serialize) -> Result<Vec<u8>, DataError> {
    rmp_serde::to_vec_named(row).map_err(|e| DataError::Invalid(format!("cannot encode: {e}")))
}
