//! The module-facing operations of the Redis cache ([`Store`]): reads through Redis,
//! loading from SQL on a miss, writes marked dirty for the flusher.

#[allow(
    clippy::wildcard_imports,
    reason = "the parent's keys, scripts and helpers"
)]
use super::*;
use crate::data::ranks::{self, Group};
use firefly_abi::data::{Rank, RankPage, RankSchema};

impl Store for RedisStore {
    fn max_object(&self) -> usize {
        self.max_object
    }

    async fn table(&self, name: &str) -> Result<(Arc<str>, Arc<TableSchema>), DataError> {
        let found = |tables: &HashMap<Arc<str>, Arc<TableSchema>>| {
            tables
                .get_key_value(name)
                .map(|(k, t)| (k.clone(), t.clone()))
        };
        if let Some(hit) = found(&self.lock_tables()) {
            return Ok(hit);
        }
        // Perhaps a module on another node declared it.
        let tables = self
            .reload_tables()
            .await
            .map_err(|e| DataError::Unavailable(format!("reading the table list: {e:#}")))?;
        found(&tables).ok_or_else(|| {
            DataError::UnknownTable(format!(
                "no table `{name}` is declared (declare it with #[derive(Table)] in a loaded module)"
            ))
        })
    }

    async fn get(&self, name: &Arc<str>, t: &TableSchema, key: Key) -> Result<Stored, DataError> {
        match self.slot(name, t, &key).await? {
            (version, Some(object)) => Ok(Stored { version, object }),
            (_, None) => Err(DataError::NotFound(format!(
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
        let k = self.obj_key(name, &key);
        let dirty = self.dirty_key(name);
        let f = field(&key);
        for _ in 0..16 {
            let (version, current) = self.slot(name, t, &key).await?;
            let (next, object) = store::apply(name, &key, version, current.as_deref(), &write)?;
            let (leave, join) = self.rank_move(name, t, current.as_deref(), object.as_deref());
            let mut cas = WRITE.key(&k);
            cas.key(&dirty)
                .key(leave.as_deref().unwrap_or(&dirty))
                .key(join.as_ref().map_or(dirty.as_str(), |(z, _)| z.as_str()))
                .arg(version)
                .arg(next)
                .arg(&f)
                .arg(if object.is_some() { "p" } else { "a" })
                .arg(object.unwrap_or_default())
                .arg(if t.rank.is_some() {
                    ranks::member(&key)
                } else {
                    String::new()
                })
                .arg(if leave.is_some() { "1" } else { "0" })
                .arg(if join.is_some() { "1" } else { "0" })
                .arg(join.map_or(0.0, |(_, s)| s));
            let answer: i64 = cas.invoke_async(&mut self.con()).await.map_err(|e| {
                unavailable(
                    "did not confirm the write (it may or may not have happened)",
                    e,
                )
            })?;
            if answer == -2 {
                return Ok(next);
            }
            // Evicted or changed since it was read: decide again on what is there now.
        }
        Err(DataError::Unavailable(format!(
            "`{name}` {key} changed under too many concurrent writers; retry"
        )))
    }

    async fn list_by(
        &self,
        name: &Arc<str>,
        t: &TableSchema,
        field: &FieldSchema,
        wanted: &SqlValue,
    ) -> Result<Vec<Key>, DataError> {
        let marks: Vec<Vec<u8>> = self
            .con()
            .hkeys(self.dirty_key(name))
            .await
            .map_err(|e| unavailable("did not answer", e))?;
        let mut pending = Vec::with_capacity(marks.len());
        if !marks.is_empty() {
            let mut pipe = redis::pipe();
            let mut keys = Vec::with_capacity(marks.len());
            for m in &marks {
                let Some(key) = parse_field(m) else { continue };
                pipe.cmd("HGET").arg(self.obj_key(name, &key)).arg("d");
                keys.push(key);
            }
            let objects: Vec<Option<Vec<u8>>> = pipe
                .query_async(&mut self.con())
                .await
                .map_err(|e| unavailable("did not answer", e))?;
            pending.extend(keys.into_iter().zip(objects));
        }
        let mut keys = self
            .sql
            .list_by(&self.prefix, t, &field.name, wanted)
            .await
            .map_err(|e| DataError::Unavailable(format!("listing `{name}`: {e:#}")))?;
        store::merge_pending(
            &mut keys,
            pending.iter().map(|(k, o)| (k, o.as_deref())),
            t,
            &field.name,
            wanted,
        );
        Ok(keys)
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

    async fn alloc_id(&self, name: &Arc<str>) -> Result<u64, DataError> {
        let ids = self.ids_key(name);
        for _ in 0..2 {
            let id: Option<i64> = ALLOC
                .key(&ids)
                .invoke_async(&mut self.con())
                .await
                .map_err(|e| unavailable("did not answer", e))?;
            if let Some(id) = id {
                return Ok(u64::try_from(id).unwrap_or(0));
            }
            // The counter is gone (Redis restarted without it): never hand out a used id.
            let t = self.table(name).await?.1;
            let seed = async {
                let stored = self.sql.load_ids(&self.prefix).await?;
                let max_key = self.sql.max_int_key(&self.prefix, &t).await?;
                let floor = max_key.max(stored.get(name.as_ref()).copied().unwrap_or(0));
                self.raise_ids(name, floor).await
            };
            seed.await.map_err(|e| {
                DataError::Unavailable(format!("restoring the ids of `{name}`: {e:#}"))
            })?;
        }
        Err(DataError::Unavailable(format!(
            "the id counter of `{name}` cannot be restored"
        )))
    }
}
