//! What both caches share: the module operations, the rules of a write, index listing over
//! unflushed objects, table registration and the shape of a flush. The embedded store
//! (`local`) and the Redis store (`redis`) differ only in where objects, versions, the dirty
//! set and id counters live.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use firefly_abi::data::{
    DataOp, FieldSchema, FieldType, Key, MAX_RANK_PAGE, Rank, RankPage, RankSchema, Stored,
    TableSchema,
};

use super::DataError;
use super::ranks::{self, Group};
use super::schema::{self, SchemaError};
use super::sql::{RowWrite, Sql, SqlValue};
use tokio::sync::watch;

/// A change to one object.
pub(super) enum Write {
    Insert(Vec<u8>),
    Update(u64, Vec<u8>),
    Delete(Option<u64>),
}

/// The version and object after `write` is applied to the object stored at `version`
/// (`current`: `None` when absent or deleted), or why it is refused.
pub(super) fn apply(
    name: &str,
    key: &Key,
    version: u64,
    current: Option<&[u8]>,
    write: &Write,
) -> Result<(u64, Option<Vec<u8>>), DataError> {
    let conflict = |expected: u64| {
        DataError::Conflict(format!(
            "`{name}` {key} was read at version {expected} but is now at version {version}"
        ))
    };
    match (write, current) {
        (Write::Insert(_), Some(_)) => Err(DataError::AlreadyExists(format!(
            "a `{name}` object with key {key} exists"
        ))),
        (Write::Insert(object), None) => Ok((version + 1, Some(object.clone()))),
        (Write::Update(..), None) => Err(DataError::NotFound(format!(
            "no `{name}` object with key {key} to update"
        ))),
        (Write::Update(expected, _), Some(_)) if *expected != version => Err(conflict(*expected)),
        (Write::Update(_, object), Some(stored)) => {
            Ok((version + 1, Some(schema::carry_over(stored, object))))
        }
        (Write::Delete(_), None) => Err(DataError::NotFound(format!(
            "no `{name}` object with key {key} to delete"
        ))),
        (Write::Delete(Some(expected)), Some(_)) if *expected != version => {
            Err(conflict(*expected))
        }
        (Write::Delete(_), Some(_)) => Ok((version + 1, None)),
    }
}

/// A cache: the operations [`dispatch`] needs.
pub(super) trait Store {
    /// The largest object accepted.
    fn max_object(&self) -> usize;
    /// A declared table, or `UnknownTable`.
    fn table(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<(Arc<str>, Arc<TableSchema>), DataError>> + Send;
    /// One object.
    fn get(
        &self,
        name: &Arc<str>,
        t: &TableSchema,
        key: Key,
    ) -> impl Future<Output = Result<Stored, DataError>> + Send;
    /// Applies a write (compare-and-set on the version); the new version.
    fn write(
        &self,
        name: &Arc<str>,
        t: &TableSchema,
        key: Key,
        write: Write,
    ) -> impl Future<Output = Result<u64, DataError>> + Send;
    /// The keys whose indexed `field` equals `wanted`, unsorted (duplicates allowed).
    fn list_by(
        &self,
        name: &Arc<str>,
        t: &TableSchema,
        field: &FieldSchema,
        wanted: &SqlValue,
    ) -> impl Future<Output = Result<Vec<Key>, DataError>> + Send;
    /// The next id of a table with an integer key.
    fn alloc_id(&self, name: &Arc<str>) -> impl Future<Output = Result<u64, DataError>> + Send;
    /// Where object `key` of ranked table `t` stands; `NotFound` when absent or unranked.
    fn rank_of(
        &self,
        name: &Arc<str>,
        t: &TableSchema,
        rank: &RankSchema,
        key: Key,
    ) -> impl Future<Output = Result<Rank, DataError>> + Send;
    /// `count` entries of ranking `group` of `t` from 0-based position `start`.
    fn rank_range(
        &self,
        name: &Arc<str>,
        t: &TableSchema,
        rank: &RankSchema,
        group: Group,
        start: u64,
        count: u32,
    ) -> impl Future<Output = Result<RankPage, DataError>> + Send;
}

/// Runs one module operation (the bytes of a `DataOp`) on `store`: the answer.
pub(super) async fn dispatch<S: Store>(store: &S, op: &[u8]) -> Result<Vec<u8>, DataError> {
    let op: DataOp = rmp_serde::from_slice(op)
        .map_err(|e| DataError::Invalid(format!("undecodable data operation: {e}")))?;
    match op {
        DataOp::Get { table, key } => {
            let (name, t) = store.table(&table).await?;
            schema::check_key(&t, &key)?;
            Ok(encode(&store.get(&name, &t, key).await?))
        }
        DataOp::Insert { table, object } => {
            let (name, t) = store.table(&table).await?;
            let (key, values) = schema::check_object(&t, &object, store.max_object())?;
            ranks::check_score(&t, &values)?;
            let v = store.write(&name, &t, key, Write::Insert(object)).await?;
            Ok(encode(&v))
        }
        DataOp::Update {
            table,
            version,
            object,
        } => {
            let (name, t) = store.table(&table).await?;
            let (key, values) = schema::check_object(&t, &object, store.max_object())?;
            ranks::check_score(&t, &values)?;
            let write = Write::Update(version, object);
            Ok(encode(&store.write(&name, &t, key, write).await?))
        }
        DataOp::Delete {
            table,
            key,
            version,
        } => {
            let (name, t) = store.table(&table).await?;
            schema::check_key(&t, &key)?;
            store.write(&name, &t, key, Write::Delete(version)).await?;
            Ok(Vec::new())
        }
        DataOp::ListBy {
            table,
            field,
            value,
        } => {
            let (name, t) = store.table(&table).await?;
            let Some(f) = t.field(&field) else {
                return Err(DataError::Invalid(format!(
                    "table `{name}` has no field `{field}`"
                )));
            };
            if !f.indexed {
                return Err(DataError::Invalid(format!(
                    "field `{field}` of table `{name}` is not an #[index]"
                )));
            }
            let v = rmpv::decode::read_value(&mut &value[..])
                .map_err(|e| DataError::Invalid(format!("undecodable value: {e}")))?;
            let wanted = schema::to_sql(&name, f, &v)?;
            let mut keys = store.list_by(&name, &t, f, &wanted).await?;
            keys.sort();
            keys.dedup();
            Ok(encode(&keys))
        }
        DataOp::RankOf { table, key } => {
            let (name, t) = store.table(&table).await?;
            let rank = ranks::spec(&name, &t)?;
            schema::check_key(&t, &key)?;
            Ok(encode(&store.rank_of(&name, &t, rank, key).await?))
        }
        DataOp::RankRange {
            table,
            group,
            start,
            count,
        } => {
            let (name, t) = store.table(&table).await?;
            let rank = ranks::spec(&name, &t)?;
            if count > MAX_RANK_PAGE {
                return Err(DataError::Invalid(format!(
                    "a ranking page holds at most {MAX_RANK_PAGE} entries (asked for {count})"
                )));
            }
            let group = ranks::requested_group(&name, &t, rank, &group)?;
            let page = store.rank_range(&name, &t, rank, group, start, count);
            Ok(encode(&page.await?))
        }
        DataOp::AllocId { table } => {
            let (name, t) = store.table(&table).await?;
            if t.key_field().map(|f| f.ty) != Some(FieldType::Int) {
                return Err(DataError::Invalid(format!(
                    "table `{table}` has a text key; ids are for integer keys"
                )));
            }
            Ok(encode(&store.alloc_id(&name).await?))
        }
    }
}

/// Corrects the keys SQL listed with the objects not flushed yet (taken before SQL was read,
/// so whatever a flush moved meanwhile is in one or the other): each pending key is listed
/// exactly when its pending state matches.
pub(super) fn merge_pending<'a>(
    keys: &mut Vec<Key>,
    pending: impl IntoIterator<Item = (&'a Key, Option<&'a [u8]>)>,
    t: &TableSchema,
    field: &str,
    wanted: &SqlValue,
) {
    for (key, object) in pending {
        let matches = object
            .and_then(|o| schema::field_of(t, o, field))
            .is_some_and(|x| x == *wanted);
        keys.retain(|k| k != key);
        if matches {
            keys.push(key.clone());
        }
    }
}

/// A flush batch as SQL rows, per table.
pub(super) type TableRows = Vec<(Arc<TableSchema>, Vec<RowWrite>)>;

/// One object's state on its way to SQL.
pub(super) struct Dirty<'a> {
    pub table: &'a Arc<str>,
    pub key: &'a Key,
    pub version: u64,
    /// `None`: deleted.
    pub object: Option<&'a [u8]>,
}

/// Groups a flush batch by table as SQL rows. Returns the rows and the positions (in
/// `batch`) of the objects they hold; an object that cannot be written (undeclared table,
/// not fitting its table) is logged and left out, so it stays dirty.
pub(super) fn rows<'a>(
    tables: &HashMap<Arc<str>, Arc<TableSchema>>,
    batch: impl IntoIterator<Item = Dirty<'a>>,
) -> (TableRows, Vec<usize>) {
    let mut by_table: HashMap<Arc<str>, Vec<RowWrite>> = HashMap::new();
    let mut written = Vec::new();
    for (i, d) in batch.into_iter().enumerate() {
        let (table, key) = (d.table, d.key);
        let Some(t) = tables.get(table) else {
            tracing::error!(%table, "a dirty object belongs to an undeclared table; kept");
            continue;
        };
        let values = match d.object {
            None => None,
            Some(o) => match schema::check_object(t, o, usize::MAX) {
                Ok((_, values)) => Some(values),
                Err(e) => {
                    tracing::error!(%table, %key, "a dirty object does not fit its table ({e}); kept");
                    continue;
                }
            },
        };
        by_table.entry(table.clone()).or_default().push(RowWrite {
            key: key.clone(),
            version: d.version,
            values,
        });
        written.push(i);
    }
    let grouped = by_table
        .into_iter()
        .filter_map(|(name, rows)| tables.get(&name).map(|t| (t.clone(), rows)))
        .collect();
    (grouped, written)
}

/// A table ready to use after registration, and the lowest id its counter may hand out next
/// minus one (its largest integer key in SQL).
pub(super) struct Registered {
    pub table: TableSchema,
    pub id_floor: i64,
}

/// Creates or extends `tables` in SQL, given what is stored now (`olds`, same order).
/// Refuses a destructive change before touching anything.
pub(super) async fn register_tables(
    sql: &Sql,
    prefix: &str,
    tables: &[TableSchema],
    olds: &[Option<Arc<TableSchema>>],
) -> Result<Vec<Registered>, SchemaError> {
    for (t, old) in tables.iter().zip(olds) {
        match old {
            Some(old) => schema::check_upgrade(old, t)?,
            None => schema::check_schema(t)?,
        }
    }
    let mut out = Vec::with_capacity(tables.len());
    for (t, old) in tables.iter().zip(olds) {
        let t = schema::merged(old.as_deref(), t);
        let sql_err = |e: anyhow::Error| SchemaError {
            table: t.name.clone(),
            message: format!("the database refused the change: {e:#}"),
        };
        if old.as_deref() != Some(&t) {
            sql.apply_schema(prefix, old.as_deref(), &t)
                .await
                .map_err(sql_err)?;
        }
        // Ids never collide with keys inserted explicitly (checked at every load).
        let id_floor = match t.key_field().map(|f| f.ty) {
            Some(FieldType::Int) => sql.max_int_key(prefix, &t).await.map_err(sql_err)?,
            _ => 0,
        };
        out.push(Registered { table: t, id_floor });
    }
    Ok(out)
}

/// MessagePack encoding of an answer (these types always encode).
pub(super) fn encode<T: serde::Serialize>(v: &T) -> Vec<u8> {
    rmp_serde::to_vec_named(v).unwrap_or_default()
}

/// What the periodic flusher needs of a store.
pub(super) trait WriteBehind: Send + Sync + 'static {
    /// Writes what is dirty to SQL; how many rows.
    fn flush_all(&self) -> impl Future<Output = anyhow::Result<usize>> + Send;
    /// Counts failed flushes.
    fn flush_failures(&self) -> &AtomicU64;
}

/// Flushes every `interval` until stopped (or the store is gone); failures are logged,
/// counted and retried at the next tick (the objects stay dirty).
pub(super) async fn flusher<S: WriteBehind>(
    store: Weak<S>,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => return,
        }
        let Some(store) = store.upgrade() else { return };
        if let Err(e) = store.flush_all().await {
            store.flush_failures().fetch_add(1, Ordering::Relaxed);
            tracing::error!("flushing data to SQL failed (kept, retried): {e:#}");
        }
    }
}

/// The flush of a graceful stop: `attempt` until it succeeds, at most 20 times; `kept` says
/// where the data waits meanwhile.
pub(super) async fn final_flush<F, Fut>(failures: &AtomicU64, kept: &str, mut attempt: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<usize>>,
{
    for n in 0..20 {
        match attempt().await {
            Ok(rows) => {
                tracing::info!(rows, "data flushed to SQL");
                return;
            }
            Err(e) => {
                failures.fetch_add(1, Ordering::Relaxed);
                tracing::error!(attempt = n, "final flush failed ({kept}): {e:#}");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
}
