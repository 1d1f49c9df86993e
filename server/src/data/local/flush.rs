//! The embedded store's write-behind: durable dirty objects written to SQL in batches, all of
//! them at a graceful stop.

use super::*;

impl LocalStore {
    /// Writes up to [`MAX_BATCH`] durable dirty objects to SQL; returns how many.
    async fn flush_once(&self) -> anyhow::Result<usize> {
        let committed = *self.committed.borrow();
        let (batch, ids, tables) = {
            let st = self.lock();
            let batch: Vec<(ObjKey, Slot)> = st
                .dirty
                .iter()
                .filter(|(_, seq)| **seq <= committed)
                .take(MAX_BATCH)
                .filter_map(|(k, _)| st.cache.get(k).map(|s| (k.clone(), s.clone())))
                .collect();
            let ids: Vec<(String, i64)> = if st.ids_dirty {
                st.ids.iter().map(|(t, v)| (t.to_string(), *v)).collect()
            } else {
                Vec::new()
            };
            (batch, ids, st.tables.clone())
        };
        if batch.is_empty() && ids.is_empty() {
            return Ok(0);
        }
        let (grouped, accepted) = store::rows(
            &tables,
            batch.iter().map(|((table, key), slot)| Dirty {
                table,
                key,
                version: slot.version,
                object: slot.object.as_deref().map(Vec::as_slice),
            }),
        );
        let written: Vec<(Arc<str>, Key, u64)> = accepted
            .into_iter()
            .map(|i| {
                let ((table, key), slot) = &batch[i];
                (table.clone(), key.clone(), slot.seq)
            })
            .collect();
        // One process owns the embedded store, so there is no other flusher to fence off.
        self.sql
            .write_batch(&self.prefix, &grouped, &ids, None)
            .await?;
        {
            let mut st = self.lock();
            if !ids.is_empty() {
                st.ids_dirty = false;
            }
            for (table, key, seq) in &written {
                let k = (table.clone(), key.clone());
                if st.dirty.get(&k) == Some(seq) {
                    st.dirty.remove(&k);
                }
            }
            if st.cache.len() > CACHE_CAPACITY {
                let State { cache, dirty, .. } = &mut *st;
                let target = CACHE_CAPACITY * 9 / 10;
                let mut excess = cache.len() - target;
                cache.retain(|k, s| {
                    if excess == 0 || dirty.contains_key(k) || s.seq > committed {
                        return true;
                    }
                    excess -= 1;
                    false
                });
                st.evictions += 1;
            }
        }
        if let Err(e) = self.journal.trim(&written).await {
            // Harmless: the records are replayed onto SQL again after a restart.
            tracing::warn!("cannot trim the data journal: {e}");
        }
        self.flushed_rows
            .fetch_add(written.len() as u64, Ordering::Relaxed);
        Ok(written.len())
    }

    /// Flushes until nothing durable is dirty.
    pub async fn flush_all(&self) -> anyhow::Result<usize> {
        let _one = self.flushing.lock().await;
        let mut total = 0;
        loop {
            let n = self.flush_once().await?;
            total += n;
            if n < MAX_BATCH {
                return Ok(total);
            }
        }
    }

    /// Final flush at a graceful stop (retried for a while on failure), then closes.
    pub async fn shutdown(&self) {
        let _ = self.stop.send(true);
        // Wait for the journal to commit what was accepted, so the final flush includes it.
        let last = self.lock().next_seq.saturating_sub(1);
        let _ = self.wait_durable(last).await;
        store::final_flush(&self.flush_failures, "the journal keeps the data", || {
            self.flush_all()
        })
        .await;
        self.journal.close().await;
        self.sql.close().await;
    }
}
