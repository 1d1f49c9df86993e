//! The owner's write-ahead journal: a local SQLite file (WAL, `synchronous = FULL`) where every
//! write is recorded before it is acknowledged, in group commits (one transaction, one fsync,
//! for every write that arrived meanwhile). A record is deleted once the object's version it
//! carries has reached the SQL database; at start the owner replays what is left.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use firefly_abi::data::Key;
use sqlx::Row;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqliteSynchronous};

/// One journaled write.
#[derive(Debug, Clone)]
pub(crate) enum Record {
    /// Object `key` of `table` is now `version` with these bytes (`None`: deleted).
    Object {
        seq: u64,
        table: Arc<str>,
        key: Key,
        version: u64,
        object: Option<Arc<Vec<u8>>>,
    },
    /// The last id handed out for `table` is now `last`.
    Id {
        seq: u64,
        table: Arc<str>,
        last: i64,
    },
}

impl Record {
    pub fn seq(&self) -> u64 {
        match self {
            Record::Object { seq, .. } | Record::Id { seq, .. } => *seq,
        }
    }
}

/// A replayed object record.
pub(crate) struct Replayed {
    pub seq: u64,
    pub table: String,
    pub key: Key,
    pub version: u64,
    pub object: Option<Vec<u8>>,
}

/// The journal file.
pub(crate) struct Journal {
    pool: SqlitePool,
}

fn key_bytes(key: &Key) -> Vec<u8> {
    rmp_serde::to_vec(key).unwrap_or_default()
}

impl Journal {
    /// Opens (or creates) the journal at `path`.
    pub async fn open(path: &Path) -> anyhow::Result<Journal> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // An acknowledged write must survive the process (and the machine) dying.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(5));
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(2)
            .connect_with(options)
            .await
            .with_context(|| format!("opening the data journal {}", path.display()))?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS journal (seq INTEGER PRIMARY KEY, tbl TEXT NOT NULL, \
             key BLOB NOT NULL, version INTEGER NOT NULL, object BLOB, deleted INTEGER NOT NULL)",
        )
        .execute(&pool)
        .await?;
        sqlx::query("CREATE INDEX IF NOT EXISTS journal_obj ON journal (tbl, key)")
            .execute(&pool)
            .await?;
        sqlx::query("CREATE TABLE IF NOT EXISTS ids (tbl TEXT PRIMARY KEY, last INTEGER NOT NULL)")
            .execute(&pool)
            .await?;
        Ok(Journal { pool })
    }

    /// Makes `records` durable, all or none, in one transaction.
    pub async fn append(&self, records: &[Record]) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        for r in records {
            match r {
                Record::Object {
                    seq,
                    table,
                    key,
                    version,
                    object,
                } => {
                    sqlx::query(
                        "INSERT INTO journal (seq, tbl, key, version, object, deleted) VALUES (?, ?, ?, ?, ?, ?)",
                    )
                    .bind(i64::try_from(*seq).unwrap_or(i64::MAX))
                    .bind(table.to_string())
                    .bind(key_bytes(key))
                    .bind(i64::try_from(*version).unwrap_or(i64::MAX))
                    .bind(object.as_ref().map(|o| o.to_vec()))
                    .bind(object.is_none())
                    .execute(&mut *tx)
                    .await?;
                }
                Record::Id { table, last, .. } => {
                    sqlx::query(
                        "INSERT INTO ids (tbl, last) VALUES (?, ?) ON CONFLICT (tbl) DO UPDATE SET last = max(last, excluded.last)",
                    )
                    .bind(table.to_string())
                    .bind(*last)
                    .execute(&mut *tx)
                    .await?;
                }
            }
        }
        tx.commit().await
    }

    /// Forgets the records of objects that reached SQL: for each `(table, key, seq)`, every
    /// record of that object up to `seq`.
    pub async fn trim(&self, flushed: &[(Arc<str>, Key, u64)]) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        for (table, key, seq) in flushed {
            sqlx::query("DELETE FROM journal WHERE tbl = ? AND key = ? AND seq <= ?")
                .bind(table.to_string())
                .bind(key_bytes(key))
                .bind(i64::try_from(*seq).unwrap_or(i64::MAX))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await
    }

    /// Every record not yet flushed, oldest first, and the highest sequence number used.
    pub async fn replay(&self) -> anyhow::Result<(Vec<Replayed>, u64)> {
        let rows =
            sqlx::query("SELECT seq, tbl, key, version, object, deleted FROM journal ORDER BY seq")
                .fetch_all(&self.pool)
                .await?;
        let mut out = Vec::with_capacity(rows.len());
        let mut max_seq = 0;
        for row in &rows {
            let seq = u64::try_from(row.try_get::<i64, _>(0)?).unwrap_or(0);
            max_seq = max_seq.max(seq);
            let key: Vec<u8> = row.try_get(2)?;
            let key: Key = rmp_serde::from_slice(&key).context("unreadable journal key")?;
            let deleted: bool = row.try_get(5)?;
            let object: Option<Vec<u8>> = row.try_get(4)?;
            out.push(Replayed {
                seq,
                table: row.try_get(1)?,
                key,
                version: u64::try_from(row.try_get::<i64, _>(3)?).unwrap_or(0),
                object: if deleted { None } else { object },
            });
        }
        Ok((out, max_seq))
    }

    /// The id counters (table → last id handed out).
    pub async fn ids(&self) -> anyhow::Result<Vec<(String, i64)>> {
        let rows = sqlx::query("SELECT tbl, last FROM ids")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    /// Closes the file.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}
