//! Rankings in the Redis cache: one sorted set per ranking, `K r:<table>:<field>:<by>:<group>`
//! (member: the object's key as [`ranks::member`], score: minus its score, so ascending order
//! is best first and equal scores sort by key). Every write of a ranked object moves it in the
//! same Lua script that stores it, so a ranking never disagrees with the objects. A ranking is
//! built from SQL once per Redis lifetime (the marker `K rb:…` says it was), the first time
//! it is asked for.

#[allow(
    clippy::wildcard_imports,
    reason = "the parent's keys, scripts and helpers"
)]
use super::*;
use crate::data::ranks::{self, Group};
use firefly_abi::data::{Rank, RankEntry, RankPage, RankSchema};

/// Adds SQL rows to a ranking unless Redis holds a newer version of the object (whose write
/// placed it already). KEYS: the sorted set, then the objects; ARGV: member, SQL version and
/// sorted-set score per object.
static BACKFILL: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
for i = 2, #KEYS do
  local b = (i - 2) * 3
  local v = redis.call('HGET', KEYS[i], 'v')
  if (not v) or v == ARGV[b + 2] then
    redis.call('ZADD', KEYS[1], ARGV[b + 3], ARGV[b + 1])
  end
end
return 1
",
    )
});

/// Places objects not flushed yet, each only while Redis still holds the version read.
/// KEYS: the sorted set, then the objects; ARGV: member, version, `a` (add) or `r` (remove)
/// and score per object.
static OVERLAY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
for i = 2, #KEYS do
  local b = (i - 2) * 4
  if redis.call('HGET', KEYS[i], 'v') == ARGV[b + 2] then
    if ARGV[b + 3] == 'a' then
      redis.call('ZADD', KEYS[1], ARGV[b + 4], ARGV[b + 1])
    else
      redis.call('ZREM', KEYS[1], ARGV[b + 1])
    end
  end
end
return 1
",
    )
});

/// Objects per backfill script call.
const BACKFILL_STEP: usize = 500;

/// The sorted-set score of a ranking score (minus it: ascending is best first).
pub(super) fn zscore(score: i64) -> f64 {
    -(score as f64)
}

impl RedisStore {
    /// The sorted set of ranking `group` of table `name`.
    pub(super) fn rank_key(&self, name: &str, rank: &RankSchema, group: &Group) -> String {
        let by = rank.by.as_deref().unwrap_or("-");
        format!(
            "{}r:{name}:{}:{by}:{}",
            self.keys,
            rank.field,
            group.key_part()
        )
    }

    /// What a write of a ranked object does to the rankings: (the set to leave, the set to
    /// join and the score in it), for the write script.
    pub(super) fn rank_move(
        &self,
        name: &str,
        t: &TableSchema,
        old: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> (Option<String>, Option<(String, f64)>) {
        let Some(rank) = &t.rank else {
            return (None, None);
        };
        let leave = old
            .and_then(|o| ranks::entry(t, o))
            .map(|(g, _)| self.rank_key(name, rank, &g));
        let join = new
            .and_then(|o| ranks::entry(t, o))
            .map(|(g, s)| (self.rank_key(name, rank, &g), zscore(s)));
        (leave, join)
    }

    pub(super) async fn rank_of_key(
        &self,
        name: &Arc<str>,
        t: &TableSchema,
        rank: &RankSchema,
        key: Key,
    ) -> Result<Rank, DataError> {
        let not_ranked = || DataError::NotFound(format!("`{name}` {key} is not ranked"));
        let (_, object) = self.slot(name, t, &key).await?;
        let Some((group, _)) = object.as_deref().and_then(|o| ranks::entry(t, o)) else {
            return Err(not_ranked());
        };
        let zkey = self.ensure_ranking(name, t, rank, &group).await?;
        let m = ranks::member(&key);
        let (rank, score, total): (Option<u64>, Option<f64>, u64) = redis::pipe()
            .cmd("ZRANK")
            .arg(&zkey)
            .arg(&m)
            .cmd("ZSCORE")
            .arg(&zkey)
            .arg(&m)
            .cmd("ZCARD")
            .arg(&zkey)
            .query_async(&mut self.con())
            .await
            .map_err(|e| unavailable("did not answer", e))?;
        match rank.zip(score) {
            Some((rank, score)) => Ok(Rank {
                rank: rank + 1,
                score: -score as i64,
                total,
            }),
            None => Err(not_ranked()),
        }
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
        let zkey = self.ensure_ranking(name, t, rank, &group).await?;
        if count == 0 {
            let total: u64 = self
                .con()
                .zcard(&zkey)
                .await
                .map_err(|e| unavailable("did not answer", e))?;
            return Ok(RankPage {
                total,
                entries: Vec::new(),
            });
        }
        let stop = start.saturating_add(u64::from(count) - 1);
        let (members, total): (Vec<(Vec<u8>, f64)>, u64) = redis::pipe()
            .cmd("ZRANGE")
            .arg(&zkey)
            .arg(start)
            .arg(stop)
            .arg("WITHSCORES")
            .cmd("ZCARD")
            .arg(&zkey)
            .query_async(&mut self.con())
            .await
            .map_err(|e| unavailable("did not answer", e))?;
        let entries = members
            .into_iter()
            .enumerate()
            .filter_map(|(i, (m, score))| {
                Some(RankEntry {
                    rank: start + i as u64 + 1,
                    key: ranks::parse_member(&m)?,
                    score: -score as i64,
                })
            })
            .collect();
        Ok(RankPage { total, entries })
    }

    /// The sorted set of a ranking, built first if this Redis has not built it yet.
    async fn ensure_ranking(
        &self,
        name: &Arc<str>,
        t: &TableSchema,
        rank: &RankSchema,
        group: &Group,
    ) -> Result<String, DataError> {
        let zkey = self.rank_key(name, rank, group);
        let marker = format!("{}rb{}", self.keys, &zkey[self.keys.len() + 1..]);
        let built: bool = self
            .con()
            .exists(&marker)
            .await
            .map_err(|e| unavailable("did not answer", e))?;
        if !built {
            self.build_ranking(name, t, rank, group, &zkey)
                .await
                .map_err(|e| {
                    DataError::Unavailable(format!("building the ranking of `{name}`: {e:#}"))
                })?;
            let _: () = self
                .con()
                .set(&marker, 1)
                .await
                .map_err(|e| unavailable("did not answer", e))?;
        }
        Ok(zkey)
    }

    /// Fills the sorted set from SQL, then corrects it with the objects not flushed yet. Safe
    /// to run beside writes and other builders: each step only applies what Redis confirms is
    /// still the object's current version.
    async fn build_ranking(
        &self,
        name: &Arc<str>,
        t: &TableSchema,
        rank: &RankSchema,
        group: &Group,
        zkey: &str,
    ) -> anyhow::Result<()> {
        let started = std::time::Instant::now();
        let by_value = group.to_sql();
        let by = rank.by.as_deref().zip(by_value.as_ref());
        let rows = self.sql.rank_rows(&self.prefix, t, &rank.field, by).await?;
        let from_sql = rows.len();
        for chunk in rows.chunks(BACKFILL_STEP) {
            let mut call = BACKFILL.key(zkey);
            for (key, score, version) in chunk {
                call.key(self.obj_key(name, key));
                call.arg(ranks::member(key))
                    .arg(*version)
                    .arg(zscore(*score));
            }
            let _: i64 = call.invoke_async(&mut self.con()).await?;
        }
        let marks: Vec<Vec<u8>> = self.con().hkeys(self.dirty_key(name)).await?;
        for chunk in marks.chunks(BACKFILL_STEP) {
            let keys: Vec<Key> = chunk.iter().filter_map(|m| parse_field(m)).collect();
            let mut pipe = redis::pipe();
            for key in &keys {
                pipe.cmd("HMGET")
                    .arg(self.obj_key(name, key))
                    .arg("v")
                    .arg("d");
            }
            let states: Vec<(Option<u64>, Option<Vec<u8>>)> =
                pipe.query_async(&mut self.con()).await?;
            let mut call = OVERLAY.key(zkey);
            for (key, (version, object)) in keys.iter().zip(states) {
                let Some(version) = version else { continue };
                let placed = object
                    .as_deref()
                    .and_then(|o| ranks::entry(t, o))
                    .filter(|(g, _)| g == group);
                call.key(self.obj_key(name, key))
                    .arg(ranks::member(key))
                    .arg(version);
                match placed {
                    Some((_, score)) => call.arg("a").arg(zscore(score)),
                    None => call.arg("r").arg(0),
                };
            }
            let _: i64 = call.invoke_async(&mut self.con()).await?;
        }
        tracing::debug!(
            table = %name,
            group = %group.key_part(),
            from_sql,
            took_ms = started.elapsed().as_millis() as u64,
            "ranking built in Redis"
        );
        Ok(())
    }
}
