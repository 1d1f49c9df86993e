//! The embedded store, run by the data-owning node: every object in memory, each write
//! journaled before it is acknowledged, dirty objects flushed to SQL in batches.
//!
//! # Concurrency
//! One mutex guards the cache, the dirty set and the id counters; nothing awaits while holding
//! it. A write checks the version, installs the new object, assigns the next journal sequence
//! number and queues the record, all under the mutex, so the journal's order is the order in
//! which writes were accepted. It then waits (without the mutex) until the journal writer has
//! committed its sequence number. A read of an object whose last write is not yet durable waits
//! for it the same way, so nobody ever observes a write that a crash could take back.

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use firefly_abi::data::{FieldSchema, Key, Rank, RankPage, RankSchema, Stored, TableSchema};
use tokio::sync::{mpsc, watch};

mod flush;
mod ranks;

use super::DataError;
use super::journal::{Journal, Record};
use super::ranks::{Group, Rankings};
use super::schema::{self, SchemaError};
use super::sql::{Sql, SqlValue};
use super::store::{self, Dirty, Registered, Store, Write, WriteBehind};
use crate::config::StorageSpec;

/// Most objects written to SQL in one transaction.
const MAX_BATCH: usize = 2000;
/// Clean objects are dropped from memory beyond this many cached objects.
const CACHE_CAPACITY: usize = 200_000;
/// How long a write may wait for its journal commit before it is reported unavailable.
const DURABLE_TIMEOUT: Duration = Duration::from_secs(10);

type ObjKey = (Arc<str>, Key);

/// One cached object (or the knowledge that it does not exist).
#[derive(Clone)]
struct Slot {
    /// 0 for an object never stored.
    version: u64,
    /// `None`: absent or deleted.
    object: Option<Arc<Vec<u8>>>,
    /// Journal sequence number of the write that produced this state (0: read from SQL).
    seq: u64,
}

#[derive(Default)]
struct State {
    tables: HashMap<Arc<str>, Arc<TableSchema>>,
    cache: HashMap<ObjKey, Slot>,
    /// Objects whose state has not reached SQL yet → the sequence number of that state.
    dirty: HashMap<ObjKey, u64>,
    /// Last id handed out per table.
    ids: HashMap<Arc<str>, i64>,
    /// Id counters changed since the last flush.
    ids_dirty: bool,
    next_seq: u64,
    /// Bumped whenever clean objects are evicted: a load that raced an eviction retries.
    evictions: u64,
    /// The rankings of ranked tables that have been asked for (kept current by every write).
    ranks: HashMap<Arc<str>, Rankings>,
}

/// Write-behind counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlushStats {
    /// Rows written to SQL.
    pub flushed_rows: u64,
    /// Flushes that failed (and were retried).
    pub flush_failures: u64,
    /// Journal commits that failed (and were retried).
    pub journal_failures: u64,
    /// Objects not yet in SQL.
    pub dirty: u64,
}

pub(crate) struct LocalStore {
    sql: Sql,
    journal: Arc<Journal>,
    prefix: String,
    max_object: usize,
    state: Mutex<State>,
    /// Highest journal sequence number known durable.
    committed: watch::Receiver<u64>,
    records: mpsc::UnboundedSender<Record>,
    /// One flush at a time (the periodic one, `flush_now`, the final one).
    flushing: tokio::sync::Mutex<()>,
    /// One schema change at a time.
    registering: tokio::sync::Mutex<()>,
    flushed_rows: AtomicU64,
    flush_failures: AtomicU64,
    journal_failures: Arc<AtomicU64>,
    stop: watch::Sender<bool>,
}

impl LocalStore {
    /// Opens SQL and the journal, loads the stored schemas and id counters, replays the journal
    /// and starts the journal writer and the flusher.
    pub async fn open(spec: &StorageSpec, journal_path: &Path) -> anyhow::Result<Arc<LocalStore>> {
        let sql = Sql::connect(&spec.database).await?;
        let prefix = spec.table_prefix.clone();
        sql.ensure_meta(&prefix).await?;
        let journal = Arc::new(Journal::open(journal_path).await?);
        let mut state = State::default();
        for t in sql.load_schemas(&prefix).await? {
            let name: Arc<str> = Arc::from(t.name.as_str());
            state.tables.insert(name, Arc::new(t));
        }
        for (table, last) in sql.load_ids(&prefix).await? {
            let e = state.ids.entry(Arc::from(table.as_str())).or_insert(0);
            *e = (*e).max(last);
        }
        for (table, last) in journal.ids().await? {
            let e = state.ids.entry(Arc::from(table.as_str())).or_insert(0);
            *e = (*e).max(last);
            state.ids_dirty = true;
        }
        let (replayed, max_seq) = journal.replay().await?;
        let replayed_count = replayed.len();
        for r in replayed {
            let key: ObjKey = (Arc::from(r.table.as_str()), r.key);
            state.cache.insert(
                key.clone(),
                Slot {
                    version: r.version,
                    object: r.object.map(Arc::new),
                    seq: r.seq,
                },
            );
            state.dirty.insert(key, r.seq);
        }
        if replayed_count > 0 {
            tracing::info!(
                records = replayed_count,
                "data journal replayed; flushing to SQL"
            );
        }
        state.next_seq = max_seq + 1;
        let (committed_tx, committed) = watch::channel(max_seq);
        let (records, rx) = mpsc::unbounded_channel();
        let journal_failures = Arc::new(AtomicU64::new(0));
        tokio::spawn(journal_writer(
            journal.clone(),
            rx,
            committed_tx,
            journal_failures.clone(),
        ));
        let (stop, stop_rx) = watch::channel(false);
        let store = Arc::new(LocalStore {
            sql,
            journal,
            prefix,
            max_object: spec.max_object,
            state: Mutex::new(state),
            committed,
            records,
            flushing: tokio::sync::Mutex::new(()),
            registering: tokio::sync::Mutex::new(()),
            flushed_rows: AtomicU64::new(0),
            flush_failures: AtomicU64::new(0),
            journal_failures,
            stop,
        });
        tokio::spawn(store::flusher(
            Arc::downgrade(&store),
            spec.flush_interval,
            stop_rx,
        ));
        Ok(store)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counters.
    pub fn stats(&self) -> FlushStats {
        FlushStats {
            flushed_rows: self.flushed_rows.load(Ordering::Relaxed),
            flush_failures: self.flush_failures.load(Ordering::Relaxed),
            journal_failures: self.journal_failures.load(Ordering::Relaxed),
            dirty: self.lock().dirty.len() as u64,
        }
    }

    /// Creates or extends tables (refusing destructive changes before touching anything).
    pub async fn register(&self, tables: &[TableSchema]) -> Result<(), SchemaError> {
        let _one = self.registering.lock().await;
        let olds: Vec<Option<Arc<TableSchema>>> = {
            let st = self.lock();
            tables
                .iter()
                .map(|t| st.tables.get(t.name.as_str()).cloned())
                .collect()
        };
        let ready = store::register_tables(&self.sql, &self.prefix, tables, &olds).await?;
        let mut st = self.lock();
        for Registered { table: t, id_floor } in ready {
            let name: Arc<str> = Arc::from(t.name.as_str());
            let e = st.ids.entry(name.clone()).or_insert(0);
            *e = (*e).max(id_floor);
            if st.tables.get(&name).map(|x| &**x) != Some(&t) {
                tracing::info!(table = %t.name, "table ready");
                // Its ranked field may have changed: rankings are rebuilt when next asked for.
                st.ranks.remove(&name);
                st.tables.insert(name, Arc::new(t));
            }
        }
        Ok(())
    }

    fn table_of(&self, name: &str) -> Result<(Arc<str>, Arc<TableSchema>), DataError> {
        let st = self.lock();
        match st.tables.get_key_value(name) {
            Some((k, t)) => Ok((k.clone(), t.clone())),
            None => Err(DataError::UnknownTable(format!(
                "no table `{name}` is declared (declare it with #[derive(Table)] in a loaded module)"
            ))),
        }
    }

    /// Runs one module operation.
    pub async fn call(&self, op: &[u8]) -> Result<Vec<u8>, DataError> {
        store::dispatch(self, op).await
    }

    /// Makes sure `key` has a cache slot (loading it from SQL if needed).
    async fn ensure_cached(
        &self,
        name: &Arc<str>,
        t: &TableSchema,
        key: &Key,
    ) -> Result<(), DataError> {
        let k: ObjKey = (name.clone(), key.clone());
        loop {
            let epoch = {
                let st = self.lock();
                if st.cache.contains_key(&k) {
                    return Ok(());
                }
                st.evictions
            };
            let loaded =
                self.sql.load(&self.prefix, t, key).await.map_err(|e| {
                    DataError::Unavailable(format!("reading `{name}` {key}: {e:#}"))
                })?;
            let mut st = self.lock();
            if st.cache.contains_key(&k) {
                return Ok(());
            }
            if st.evictions != epoch {
                continue;
            }
            let slot = match loaded {
                Some((version, values)) => Slot {
                    version,
                    object: Some(Arc::new(schema::encode_row(t, &values))),
                    seq: 0,
                },
                None => Slot {
                    version: 0,
                    object: None,
                    seq: 0,
                },
            };
            st.cache.insert(k, slot);
            return Ok(());
        }
    }

    async fn wait_durable(&self, seq: u64) -> Result<(), DataError> {
        let mut committed = self.committed.clone();
        let wait = committed.wait_for(|c| *c >= seq);
        match tokio::time::timeout(DURABLE_TIMEOUT, wait).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(DataError::Unavailable(
                "the data journal did not commit in time; the write may not have happened".into(),
            )),
        }
    }
}

impl WriteBehind for LocalStore {
    fn flush_all(&self) -> impl Future<Output = anyhow::Result<usize>> + Send {
        LocalStore::flush_all(self)
    }

    fn flush_failures(&self) -> &AtomicU64 {
        &self.flush_failures
    }
}

impl Store for LocalStore {
    fn max_object(&self) -> usize {
        self.max_object
    }

    async fn table(&self, name: &str) -> Result<(Arc<str>, Arc<TableSchema>), DataError> {
        self.table_of(name)
    }

    async fn get(&self, name: &Arc<str>, t: &TableSchema, key: Key) -> Result<Stored, DataError> {
        self.ensure_cached(name, t, &key).await?;
        let slot = {
            let st = self.lock();
            st.cache.get(&(name.clone(), key.clone())).cloned()
        };
        let Some(slot) = slot else {
            return Err(DataError::Unavailable(
                "the object was evicted; retry".into(),
            ));
        };
        self.wait_durable(slot.seq).await?;
        match slot.object {
            Some(object) => Ok(Stored {
                version: slot.version,
                object: object.to_vec(),
            }),
            None => Err(DataError::NotFound(format!(
                "no `{name}` object with key {key}"
            ))),
        }
    }

    async fn write(
        &self,
        name: &Arc<str>,
        t: &TableSchema,
        key: Key,
        write: Write,
    ) -> Result<u64, DataError> {
        let k: ObjKey = (name.clone(), key.clone());
        for _ in 0..8 {
            self.ensure_cached(name, t, &key).await?;
            let (seq, version) = {
                let mut st = self.lock();
                let Some(slot) = st.cache.get(&k) else {
                    continue;
                };
                let old = slot.object.clone();
                let (version, object) = store::apply(
                    name,
                    &key,
                    slot.version,
                    old.as_deref().map(Vec::as_slice),
                    &write,
                )?;
                let object = object.map(Arc::new);
                if let Some(rankings) = st.ranks.get_mut(name) {
                    let (old, new) = (old.as_deref(), object.as_deref());
                    super::ranks::apply(
                        rankings,
                        t,
                        &key,
                        old.map(Vec::as_slice),
                        new.map(Vec::as_slice),
                    );
                }
                let seq = st.next_seq;
                st.next_seq += 1;
                st.cache.insert(
                    k.clone(),
                    Slot {
                        version,
                        object: object.clone(),
                        seq,
                    },
                );
                st.dirty.insert(k.clone(), seq);
                let record = Record::Object {
                    seq,
                    table: name.clone(),
                    key: key.clone(),
                    version,
                    object,
                };
                if self.records.send(record).is_err() {
                    return Err(DataError::Unavailable("the data store is stopping".into()));
                }
                (seq, version)
            };
            self.wait_durable(seq).await?;
            return Ok(version);
        }
        Err(DataError::Unavailable(format!(
            "`{name}` {key} kept being evicted; retry"
        )))
    }

    async fn alloc_id(&self, name: &Arc<str>) -> Result<u64, DataError> {
        let (seq, id) = {
            let mut st = self.lock();
            let last = st.ids.get(name).copied().unwrap_or(0);
            let id = last
                .checked_add(1)
                .ok_or_else(|| DataError::Invalid(format!("the ids of `{name}` are exhausted")))?;
            st.ids.insert(name.clone(), id);
            st.ids_dirty = true;
            let seq = st.next_seq;
            st.next_seq += 1;
            let record = Record::Id {
                seq,
                table: name.clone(),
                last: id,
            };
            if self.records.send(record).is_err() {
                return Err(DataError::Unavailable("the data store is stopping".into()));
            }
            (seq, id)
        };
        self.wait_durable(seq).await?;
        Ok(u64::try_from(id).unwrap_or(0))
    }

    async fn rank_of(
        &self,
        name: &Arc<str>,
        t: &TableSchema,
        rank: &RankSchema,
        key: Key,
    ) -> Result<Rank, DataError> {
        self.rank_of_key(name, t, rank, key).await
    }

    async fn rank_range(
        &self,
        name: &Arc<str>,
        t: &TableSchema,
        rank: &RankSchema,
        group: Group,
        start: u64,
        count: u32,
    ) -> Result<RankPage, DataError> {
        self.rank_page(name, t, rank, group, start, count).await
    }

    async fn list_by(
        &self,
        name: &Arc<str>,
        t: &TableSchema,
        field: &FieldSchema,
        wanted: &SqlValue,
    ) -> Result<Vec<Key>, DataError> {
        let pending: Vec<(Key, Slot)> = {
            let st = self.lock();
            st.dirty
                .iter()
                .filter(|((tbl, _), _)| tbl == name)
                .filter_map(|(k, _)| st.cache.get(k).map(|s| (k.1.clone(), s.clone())))
                .collect()
        };
        let mut keys: Vec<Key> = self
            .sql
            .list_by(&self.prefix, t, &field.name, wanted)
            .await
            .map_err(|e| DataError::Unavailable(format!("listing `{name}`: {e:#}")))?;
        let last_seq = pending.iter().map(|(_, s)| s.seq).max().unwrap_or(0);
        store::merge_pending(
            &mut keys,
            pending
                .iter()
                .map(|(k, s)| (k, s.object.as_deref().map(Vec::as_slice))),
            t,
            &field.name,
            wanted,
        );
        self.wait_durable(last_seq).await?;
        Ok(keys)
    }
}

/// Commits journal records in groups: everything queued while the previous commit ran goes
/// into the next transaction. A failed commit is retried (and counted) until it succeeds;
/// writers wait meanwhile, and time out as unavailable rather than being acknowledged.
async fn journal_writer(
    journal: Arc<Journal>,
    mut rx: mpsc::UnboundedReceiver<Record>,
    committed: watch::Sender<u64>,
    failures: Arc<AtomicU64>,
) {
    let mut batch = Vec::new();
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < 4096 {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        let mut delay = Duration::from_millis(10);
        loop {
            match journal.append(&batch).await {
                Ok(()) => break,
                Err(e) => {
                    failures.fetch_add(1, Ordering::Relaxed);
                    tracing::error!("data journal commit failed, retrying: {e}");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(1));
                }
            }
        }
        let last = batch.iter().map(Record::seq).max().unwrap_or(0);
        committed.send_modify(|c| *c = (*c).max(last));
        batch.clear();
    }
}
