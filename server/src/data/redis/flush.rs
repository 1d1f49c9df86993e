//! The flusher side of the Redis cache: dirty objects written to SQL in steps, under a
//! cluster-wide lease and the flush term.

#[allow(
    clippy::wildcard_imports,
    reason = "the parent's keys, scripts and helpers"
)]
use super::*;

impl RedisStore {
    /// Flushes dirty objects to SQL if no other node is flushing; how many rows were written.
    pub async fn flush_all(&self) -> anyhow::Result<usize> {
        let _one = self.flushing.lock().await;
        let Some(lease) = self.try_lease("flush").await? else {
            return Ok(0);
        };
        let result = self.flush_locked(&lease).await;
        self.release(&lease).await;
        result
    }

    pub(super) async fn flush_locked(&self, lease: &(String, String)) -> anyhow::Result<usize> {
        // A fencing token: should this node stall past its lease while another takes over,
        // its later writes are refused by SQL instead of landing over newer ones.
        let term = self.sql.begin_flush_term(&self.prefix).await?;
        let tables = self.reload_tables().await?;
        let mut ids = Vec::new();
        for (name, t) in &tables {
            if t.key_field().map(|f| f.ty) != Some(FieldType::Int) {
                continue;
            }
            let last: Option<i64> = self.con().get(self.ids_key(name)).await?;
            if let Some(last) = last {
                let before = self
                    .ids_flushed
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(name.as_ref())
                    .copied();
                if before != Some(last) {
                    ids.push((name.to_string(), last));
                }
            }
        }
        let mut total = 0;
        let mut dirty_total = 0u64;
        for name in tables.keys() {
            let dirty_key = self.dirty_key(name);
            let mut cursor: u64 = 0;
            loop {
                let (next, pairs): (u64, Vec<Mark>) = redis::cmd("HSCAN")
                    .arg(&dirty_key)
                    .arg(cursor)
                    .arg("COUNT")
                    .arg(FLUSH_STEP)
                    .query_async(&mut self.con())
                    .await?;
                let mut fields: Vec<Vec<u8>> = pairs.into_iter().map(|(f, _)| f).collect();
                fields.sort();
                fields.dedup();
                dirty_total += fields.len() as u64;
                if !fields.is_empty() {
                    total += self
                        .flush_fields(name, &tables, &fields, &ids, term)
                        .await?;
                    ids.clear();
                    self.renew(lease).await;
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        if !ids.is_empty() {
            self.sql
                .write_batch(&self.prefix, &[], &ids, Some(term))
                .await?;
        }
        self.dirty_seen
            .store(dirty_total.saturating_sub(total as u64), Ordering::Relaxed);
        self.flushed_rows.fetch_add(total as u64, Ordering::Relaxed);
        Ok(total)
    }

    /// Writes the objects behind some dirty marks of one table (and `ids`) to SQL, then
    /// clears the marks that still name what was written.
    async fn flush_fields(
        &self,
        name: &Arc<str>,
        tables: &HashMap<Arc<str>, Arc<TableSchema>>,
        fields: &[Vec<u8>],
        ids: &[(String, i64)],
        term: i64,
    ) -> anyhow::Result<usize> {
        let mut pipe = redis::pipe();
        for f in fields {
            let mut k = format!("{}o:{name}:", self.keys).into_bytes();
            k.extend_from_slice(f);
            pipe.cmd("HMGET").arg(k).arg("v").arg("d");
        }
        let states: Vec<(Option<u64>, Option<Vec<u8>>)> = pipe.query_async(&mut self.con()).await?;
        let mut objects = Vec::with_capacity(fields.len());
        for (f, (v, d)) in fields.iter().zip(states) {
            let Some(key) = parse_field(f) else {
                tracing::error!(table = %name, "an undecodable dirty mark; kept");
                continue;
            };
            let Some(version) = v else {
                tracing::error!(table = %name, %key, "a dirty object is missing from Redis (evicted or deleted by hand); its last state cannot be written");
                continue;
            };
            objects.push((f.clone(), key, version, d));
        }
        let (grouped, accepted) = store::rows(
            tables,
            objects.iter().map(|(_, key, version, object)| Dirty {
                table: name,
                key,
                version: *version,
                object: object.as_deref(),
            }),
        );
        if accepted.is_empty() && ids.is_empty() {
            return Ok(0);
        }
        self.sql
            .write_batch(&self.prefix, &grouped, ids, Some(term))
            .await?;
        if !ids.is_empty() {
            let mut flushed = self.ids_flushed.lock().unwrap_or_else(|p| p.into_inner());
            for (t, last) in ids {
                flushed.insert(t.clone(), *last);
            }
        }
        if accepted.is_empty() {
            return Ok(0);
        }
        let mut clean = CLEAN.key(self.dirty_key(name));
        clean.arg(CLEAN_TTL_SECS);
        for &i in &accepted {
            let (f, key, version, _) = &objects[i];
            clean.key(self.obj_key(name, key));
            clean.arg(f.as_slice()).arg(version.to_string());
        }
        let _: i64 = clean.invoke_async(&mut self.con()).await?;
        Ok(accepted.len())
    }
}
