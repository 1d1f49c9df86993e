//! Rankings in the embedded store: one [`RankTree`] per ranking, built from SQL (plus the
//! objects not flushed yet) the first time it is asked for, then kept current by every write
//! under the store's mutex, so a rank never disagrees with the objects.

use std::sync::Arc;

use firefly_abi::data::{Key, Rank, RankEntry, RankPage, RankSchema, TableSchema};

use super::{LocalStore, ObjKey};
use crate::data::DataError;
use crate::data::ranks::{self, Group, RankTree};

impl LocalStore {
    pub(super) async fn rank_of_key(
        &self,
        name: &Arc<str>,
        t: &TableSchema,
        rank: &RankSchema,
        key: Key,
    ) -> Result<Rank, DataError> {
        let k: ObjKey = (name.clone(), key.clone());
        let not_ranked = || DataError::NotFound(format!("`{name}` {key} is not ranked"));
        for _ in 0..8 {
            self.ensure_cached(name, t, &key).await?;
            let (group, answer, seq) = {
                let st = self.lock();
                let Some(slot) = st.cache.get(&k) else {
                    continue;
                };
                let Some((group, _)) = slot.object.as_deref().and_then(|o| ranks::entry(t, o))
                else {
                    return Err(not_ranked());
                };
                let answer = st.ranks.get(name).and_then(|r| r.get(&group)).map(|tree| {
                    tree.rank(&key)
                        .zip(tree.score(&key))
                        .map(|(rank, score)| Rank {
                            rank,
                            score,
                            total: tree.len(),
                        })
                });
                (group, answer, st.next_seq.saturating_sub(1))
            };
            match answer {
                Some(found) => {
                    self.wait_durable(seq).await?;
                    return found.ok_or_else(not_ranked);
                }
                None => {
                    self.load_ranking(name, t, rank, &group).await?;
                }
            }
        }
        Err(DataError::Unavailable(format!(
            "`{name}` {key} kept being evicted; retry"
        )))
    }

    pub(super) async fn rank_page(
        &self,
        name: &Arc<str>,
        t: &TableSchema,
        rank: &RankSchema,
        group: Group,
        start: u64,
        count: u32,
    ) -> Result<RankPage, DataError> {
        for _ in 0..2 {
            let found = {
                let st = self.lock();
                let page = st
                    .ranks
                    .get(name)
                    .and_then(|r| r.get(&group))
                    .map(|tree| RankPage {
                        total: tree.len(),
                        entries: tree
                            .range(start, count as usize)
                            .into_iter()
                            .map(|(rank, key, score)| RankEntry { rank, key, score })
                            .collect(),
                    });
                page.map(|p| (p, st.next_seq.saturating_sub(1)))
            };
            match found {
                Some((page, seq)) => {
                    self.wait_durable(seq).await?;
                    return Ok(page);
                }
                None => {
                    if !self.load_ranking(name, t, rank, &group).await? {
                        // Nobody is in it (an empty ranking is not kept in memory).
                        return Ok(RankPage {
                            total: 0,
                            entries: Vec::new(),
                        });
                    }
                }
            }
        }
        Err(DataError::Unavailable(
            "the ranking was dropped; retry".into(),
        ))
    }

    /// Builds ranking `group` of `name` unless it is loaded: its rows in SQL, corrected by the
    /// objects that have not reached SQL. No flush runs meanwhile, so every change is in one
    /// or the other. Returns whether the ranking is held (an empty one is not).
    async fn load_ranking(
        &self,
        name: &Arc<str>,
        t: &TableSchema,
        rank: &RankSchema,
        group: &Group,
    ) -> Result<bool, DataError> {
        let loaded = |st: &super::State| st.ranks.get(name).is_some_and(|r| r.contains_key(group));
        if loaded(&self.lock()) {
            return Ok(true);
        }
        let _no_flush = self.flushing.lock().await;
        if loaded(&self.lock()) {
            return Ok(true);
        }
        let by_value = group.to_sql();
        let by = rank.by.as_deref().zip(by_value.as_ref());
        let started = std::time::Instant::now();
        let rows = self
            .sql
            .rank_rows(&self.prefix, t, &rank.field, by)
            .await
            .map_err(|e| {
                DataError::Unavailable(format!("reading the ranking of `{name}`: {e:#}"))
            })?;
        let from_sql = rows.len();
        let mut tree = RankTree::default();
        for (key, score, _) in rows {
            tree.set(key, score);
        }
        let mut st = self.lock();
        let st = &mut *st;
        for k in st.dirty.keys().filter(|(table, _)| table == name) {
            tree.remove(&k.1);
            let object = st.cache.get(k).and_then(|slot| slot.object.as_deref());
            if let Some((g, score)) = object.and_then(|o| ranks::entry(t, o))
                && g == *group
            {
                tree.set(k.1.clone(), score);
            }
        }
        tracing::debug!(
            table = %name,
            group = %group.key_part(),
            from_sql,
            members = tree.len(),
            took_ms = started.elapsed().as_millis() as u64,
            "ranking loaded"
        );
        if tree.len() == 0 {
            return Ok(false);
        }
        st.ranks
            .entry(name.clone())
            .or_default()
            .insert(group.clone(), tree);
        Ok(true)
    }
}
