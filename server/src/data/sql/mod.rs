//! The SQL database: one table per declared table, a real column per field plus `_version`.
//!
//! Identifiers (table and field names, the prefix) are checked against a strict pattern when
//! they are declared or configured, and quoted here; every value is a bound parameter. The three
//! backends share the code through [`on_pool!`], differing only in [`Dialect`].

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context as _;
use firefly_abi::data::{FieldType, Key, TableSchema};
use sha2::{Digest, Sha256};
use sqlx::{AssertSqlSafe, Row};

pub(crate) use super::schema::SqlValue;
use crate::config::DatabaseSpec;

/// A connection pool to one of the supported databases.
#[derive(Clone)]
pub(crate) enum Sql {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
    Mysql(sqlx::MySqlPool),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Dialect {
    Sqlite,
    Postgres,
    Mysql,
}

/// Runs `$body` with `$pool` bound to the concrete pool, whatever the backend.
macro_rules! on_pool {
    ($sql:expr, $pool:ident => $body:expr) => {
        match $sql {
            Sql::Sqlite($pool) => $body,
            Sql::Postgres($pool) => $body,
            Sql::Mysql($pool) => $body,
        }
    };
}

/// Binds every value of `$values` to query `$q`, typing NULLs by their column.
macro_rules! bind_all {
    ($q:expr, $values:expr) => {{
        let mut q = $q;
        for v in $values {
            q = match v {
                SqlValue::Null(FieldType::Int) => q.bind(None::<i64>),
                SqlValue::Null(FieldType::Float) => q.bind(None::<f64>),
                SqlValue::Null(FieldType::Bool) => q.bind(None::<bool>),
                SqlValue::Null(FieldType::Text) => q.bind(None::<String>),
                SqlValue::Null(FieldType::Bytes | FieldType::Value) => q.bind(None::<Vec<u8>>),
                SqlValue::Int(i) => q.bind(*i),
                SqlValue::Float(x) => q.bind(*x),
                SqlValue::Bool(b) => q.bind(*b),
                SqlValue::Text(s) => q.bind(s.clone()),
                SqlValue::Bytes(b) => q.bind(b.clone()),
            };
        }
        q
    }};
}

/// Reads column `$i` of `$row` as field type `$ty`.
macro_rules! get_value {
    ($row:expr, $i:expr, $ty:expr) => {{
        let i: usize = $i;
        match $ty {
            FieldType::Int => $row
                .try_get::<Option<i64>, _>(i)
                .map(|v| v.map_or(SqlValue::Null(FieldType::Int), SqlValue::Int)),
            FieldType::Float => $row
                .try_get::<Option<f64>, _>(i)
                .map(|v| v.map_or(SqlValue::Null(FieldType::Float), SqlValue::Float)),
            FieldType::Bool => $row
                .try_get::<Option<bool>, _>(i)
                .map(|v| v.map_or(SqlValue::Null(FieldType::Bool), SqlValue::Bool)),
            FieldType::Text => $row
                .try_get::<Option<String>, _>(i)
                .map(|v| v.map_or(SqlValue::Null(FieldType::Text), SqlValue::Text)),
            ty @ (FieldType::Bytes | FieldType::Value) => $row
                .try_get::<Option<Vec<u8>>, _>(i)
                .map(|v| v.map_or(SqlValue::Null(ty), SqlValue::Bytes)),
        }
    }};
}

/// Most parameters one statement binds (below every backend's limit).
const MAX_PARAMS: usize = 8000;

/// A flush refused because a newer flush term began after this flusher's (it stalled past its
/// lease and another node took over): nothing was written; the objects stay dirty.
#[derive(Debug, thiserror::Error)]
#[error("flush term {term} was superseded by term {newest}: another node is flushing")]
pub(crate) struct Superseded {
    pub term: i64,
    pub newest: i64,
}

/// One row to write at a flush: its key, version and column values (`None`: delete it).
pub(crate) struct RowWrite {
    pub key: Key,
    pub version: u64,
    pub values: Option<Vec<SqlValue>>,
}

impl Sql {
    /// Connects (an SQLite file is created, with its directory, when missing).
    pub async fn connect(spec: &DatabaseSpec) -> anyhow::Result<Sql> {
        let timeout = Duration::from_secs(5);
        Ok(match spec {
            DatabaseSpec::Sqlite(path) => {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("creating {}", dir.display()))?;
                }
                let options = sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(path)
                    .create_if_missing(true)
                    .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                    .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
                    .busy_timeout(timeout);
                let pool = sqlx::sqlite::SqlitePoolOptions::new()
                    .max_connections(4)
                    .acquire_timeout(timeout)
                    .connect_with(options)
                    .await
                    .with_context(|| format!("opening SQLite database {}", path.display()))?;
                Sql::Sqlite(pool)
            }
            DatabaseSpec::Postgres(url) => Sql::Postgres(
                sqlx::postgres::PgPoolOptions::new()
                    .max_connections(8)
                    .acquire_timeout(timeout)
                    .connect(url)
                    .await
                    .context("connecting to PostgreSQL (storage.database)")?,
            ),
            DatabaseSpec::Mysql(url) => Sql::Mysql(
                sqlx::mysql::MySqlPoolOptions::new()
                    .max_connections(8)
                    .acquire_timeout(timeout)
                    .connect(url)
                    .await
                    .context("connecting to MySQL/MariaDB (storage.database)")?,
            ),
        })
    }

    fn dialect(&self) -> Dialect {
        match self {
            Sql::Sqlite(_) => Dialect::Sqlite,
            Sql::Postgres(_) => Dialect::Postgres,
            Sql::Mysql(_) => Dialect::Mysql,
        }
    }

    /// Quotes an identifier that has already passed `schema::valid_ident` (or the prefix check).
    fn q(&self, ident: &str) -> String {
        match self.dialect() {
            Dialect::Mysql => format!("`{ident}`"),
            _ => format!("\"{ident}\""),
        }
    }

    /// Placeholder number `n` (1-based).
    fn ph(&self, n: usize) -> String {
        match self.dialect() {
            Dialect::Postgres => format!("${n}"),
            _ => "?".to_owned(),
        }
    }

    fn column_type(&self, ty: FieldType, key: bool) -> &'static str {
        match (self.dialect(), ty) {
            (Dialect::Sqlite, FieldType::Int) => "INTEGER",
            (Dialect::Sqlite, FieldType::Float) => "REAL",
            (Dialect::Sqlite, FieldType::Bool) => "BOOLEAN",
            (Dialect::Sqlite, FieldType::Text) => "TEXT",
            (Dialect::Sqlite, _) => "BLOB",
            (Dialect::Postgres, FieldType::Int) => "BIGINT",
            (Dialect::Postgres, FieldType::Float) => "DOUBLE PRECISION",
            (Dialect::Postgres, FieldType::Bool) => "BOOLEAN",
            (Dialect::Postgres, FieldType::Text) => "TEXT",
            (Dialect::Postgres, _) => "BYTEA",
            (Dialect::Mysql, FieldType::Int) => "BIGINT",
            (Dialect::Mysql, FieldType::Float) => "DOUBLE",
            (Dialect::Mysql, FieldType::Bool) => "BOOLEAN",
            (Dialect::Mysql, FieldType::Text) if key => "VARCHAR(255)",
            (Dialect::Mysql, FieldType::Text) => "LONGTEXT",
            (Dialect::Mysql, _) => "LONGBLOB",
        }
    }

    fn meta_schema(&self, prefix: &str) -> String {
        self.q(&format!("{prefix}_firefly_schema"))
    }

    fn meta_ids(&self, prefix: &str) -> String {
        self.q(&format!("{prefix}_firefly_ids"))
    }

    fn meta_flush(&self, prefix: &str) -> String {
        self.q(&format!("{prefix}_firefly_flush"))
    }

    async fn exec(&self, sql: String) -> Result<(), sqlx::Error> {
        on_pool!(self, pool => sqlx::query(AssertSqlSafe(sql)).execute(pool).await.map(|_| ()))
    }

    /// Creates the bookkeeping tables (declared schemas, id counters) if missing.
    pub async fn ensure_meta(&self, prefix: &str) -> anyhow::Result<()> {
        let text = if self.dialect() == Dialect::Mysql {
            "LONGTEXT"
        } else {
            "TEXT"
        };
        self.exec(format!(
            "CREATE TABLE IF NOT EXISTS {} (tbl VARCHAR(255) PRIMARY KEY, def {text} NOT NULL)",
            self.meta_schema(prefix)
        ))
        .await
        .context("creating the schema table")?;
        self.exec(format!(
            "CREATE TABLE IF NOT EXISTS {} (tbl VARCHAR(255) PRIMARY KEY, last BIGINT NOT NULL)",
            self.meta_ids(prefix)
        ))
        .await
        .context("creating the id table")?;
        let flush = self.meta_flush(prefix);
        self.exec(format!(
            "CREATE TABLE IF NOT EXISTS {flush} (id INT PRIMARY KEY, term BIGINT NOT NULL)"
        ))
        .await
        .context("creating the flush term table")?;
        self.exec(match self.dialect() {
            Dialect::Mysql => format!("INSERT IGNORE INTO {flush} (id, term) VALUES (1, 0)"),
            Dialect::Postgres => {
                format!("INSERT INTO {flush} (id, term) VALUES (1, 0) ON CONFLICT (id) DO NOTHING")
            }
            Dialect::Sqlite => format!("INSERT OR IGNORE INTO {flush} (id, term) VALUES (1, 0)"),
        })
        .await
        .context("creating the flush term")?;
        Ok(())
    }

    /// Starts a flusher's term: a number larger than every earlier term (a fencing token,
    /// kept in SQL so it survives a lost cache). A flush written under an older term than the
    /// newest is refused ([`Superseded`]), so a flusher that stalled past its lease can write
    /// nothing once another has taken over.
    pub async fn begin_flush_term(&self, prefix: &str) -> anyhow::Result<i64> {
        let flush = self.meta_flush(prefix);
        let bump = format!("UPDATE {flush} SET term = term + 1 WHERE id = 1");
        let read = format!("SELECT term FROM {flush} WHERE id = 1");
        Ok(on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query(AssertSqlSafe(bump)).execute(&mut *tx).await?;
            let row = sqlx::query(AssertSqlSafe(read)).fetch_one(&mut *tx).await?;
            let term = row.try_get::<i64, _>(0)?;
            tx.commit().await?;
            term
        }))
    }

    /// Every table schema stored so far.
    pub async fn load_schemas(&self, prefix: &str) -> anyhow::Result<Vec<TableSchema>> {
        let sql = format!("SELECT def FROM {}", self.meta_schema(prefix));
        let defs: Vec<String> = on_pool!(self, pool => {
            let rows = sqlx::query(AssertSqlSafe(sql)).fetch_all(pool).await?;
            rows.iter().map(|r| r.try_get::<String, _>(0)).collect::<Result<Vec<_>, _>>()?
        });
        defs.iter()
            .map(|d| serde_json::from_str(d).context("a stored table schema is unreadable"))
            .collect()
    }

    /// Every stored id counter (table → last id handed out).
    pub async fn load_ids(&self, prefix: &str) -> anyhow::Result<HashMap<String, i64>> {
        let sql = format!("SELECT tbl, last FROM {}", self.meta_ids(prefix));
        Ok(on_pool!(self, pool => {
            let rows = sqlx::query(AssertSqlSafe(sql)).fetch_all(pool).await?;
            let mut out = HashMap::new();
            for r in &rows {
                out.insert(r.try_get::<String, _>(0)?, r.try_get::<i64, _>(1)?);
            }
            out
        }))
    }

    /// The largest integer key of a table (so ids never collide with explicit keys).
    pub async fn max_int_key(&self, prefix: &str, t: &TableSchema) -> anyhow::Result<i64> {
        let sql = format!(
            "SELECT MAX({}) FROM {}",
            self.q(&t.key),
            self.q(&format!("{prefix}{}", t.name))
        );
        Ok(on_pool!(self, pool => {
            let row = sqlx::query(AssertSqlSafe(sql)).fetch_one(pool).await?;
            row.try_get::<Option<i64>, _>(0)?.unwrap_or(0)
        }))
    }

    fn index_name(prefix: &str, table: &str, field: &str) -> String {
        let hash = Sha256::digest(format!("{prefix}\0{table}\0{field}"));
        format!("{prefix}ix_{}", hex::encode(&hash[..8]))
    }

    /// Creates table `new` or extends it from `old` (already checked by `check_upgrade`),
    /// then records `new` as its stored schema.
    pub async fn apply_schema(
        &self,
        prefix: &str,
        old: Option<&TableSchema>,
        new: &TableSchema,
    ) -> anyhow::Result<()> {
        let table = self.q(&format!("{prefix}{}", new.name));
        match old {
            None => {
                let mut cols = Vec::new();
                for f in &new.fields {
                    let key = f.name == new.key;
                    let ty = self.column_type(f.ty, key);
                    if key {
                        cols.push(format!("{} {ty} NOT NULL PRIMARY KEY", self.q(&f.name)));
                        cols.push(format!("{} BIGINT NOT NULL", self.q("_version")));
                    } else {
                        cols.push(format!("{} {ty}", self.q(&f.name)));
                    }
                }
                self.exec(format!(
                    "CREATE TABLE IF NOT EXISTS {table} ({})",
                    cols.join(", ")
                ))
                .await
                .with_context(|| format!("creating table `{}`", new.name))?;
            }
            Some(old) => {
                for f in new.fields.iter().filter(|f| old.field(&f.name).is_none()) {
                    let ty = self.column_type(f.ty, false);
                    self.exec(format!(
                        "ALTER TABLE {table} ADD COLUMN {} {ty}",
                        self.q(&f.name)
                    ))
                    .await
                    .with_context(|| format!("adding field `{}` to `{}`", f.name, new.name))?;
                }
            }
        }
        for f in new.fields.iter().filter(|f| f.indexed) {
            let name = self.q(&Self::index_name(prefix, &new.name, &f.name));
            let col = match (self.dialect(), f.ty) {
                (Dialect::Mysql, FieldType::Text) => format!("{}(191)", self.q(&f.name)),
                _ => self.q(&f.name),
            };
            let sql = match self.dialect() {
                Dialect::Mysql => format!("CREATE INDEX {name} ON {table} ({col})"),
                _ => format!("CREATE INDEX IF NOT EXISTS {name} ON {table} ({col})"),
            };
            if let Err(e) = self.exec(sql).await {
                // MySQL has no IF NOT EXISTS for indexes: an existing one is error 1061.
                let dup = e.to_string().contains("Duplicate key name");
                if !dup {
                    return Err(anyhow::Error::new(e)
                        .context(format!("indexing field `{}` of `{}`", f.name, new.name)));
                }
            }
        }
        let def = serde_json::to_string(new)?;
        let meta = self.meta_schema(prefix);
        let sql = match self.dialect() {
            Dialect::Mysql => format!(
                "INSERT INTO {meta} (tbl, def) VALUES (?, ?) ON DUPLICATE KEY UPDATE def = VALUES(def)"
            ),
            _ => format!(
                "INSERT INTO {meta} (tbl, def) VALUES ({}, {}) ON CONFLICT (tbl) DO UPDATE SET def = excluded.def",
                self.ph(1),
                self.ph(2)
            ),
        };
        on_pool!(self, pool => sqlx::query(AssertSqlSafe(sql))
            .bind(new.name.clone())
            .bind(def)
            .execute(pool)
            .await
            .map(|_| ()))?;
        Ok(())
    }

    /// One object by key: its version and column values (schema order), `None` when absent.
    pub async fn load(
        &self,
        prefix: &str,
        t: &TableSchema,
        key: &Key,
    ) -> anyhow::Result<Option<(u64, Vec<SqlValue>)>> {
        let cols: Vec<String> = t.fields.iter().map(|f| self.q(&f.name)).collect();
        let sql = format!(
            "SELECT {}, {} FROM {} WHERE {} = {}",
            self.q("_version"),
            cols.join(", "),
            self.q(&format!("{prefix}{}", t.name)),
            self.q(&t.key),
            self.ph(1)
        );
        let key_value = key_value(key);
        Ok(on_pool!(self, pool => {
            let row = bind_all!(sqlx::query(AssertSqlSafe(sql)), [&key_value])
                .fetch_optional(pool)
                .await?;
            match row {
                None => None,
                Some(row) => {
                    let version = row.try_get::<i64, _>(0)?;
                    let mut values = Vec::with_capacity(t.fields.len());
                    for (i, f) in t.fields.iter().enumerate() {
                        values.push(get_value!(row, i + 1, f.ty)?);
                    }
                    Some((u64::try_from(version).unwrap_or(0), values))
                }
            }
        }))
    }

    /// Keys of the rows whose `field` equals `value`.
    pub async fn list_by(
        &self,
        prefix: &str,
        t: &TableSchema,
        field: &str,
        value: &SqlValue,
    ) -> anyhow::Result<Vec<Key>> {
        let sql = format!(
            "SELECT {} FROM {} WHERE {} = {}",
            self.q(&t.key),
            self.q(&format!("{prefix}{}", t.name)),
            self.q(field),
            self.ph(1)
        );
        let key_ty = t.key_field().map_or(FieldType::Int, |f| f.ty);
        Ok(on_pool!(self, pool => {
            let rows = bind_all!(sqlx::query(AssertSqlSafe(sql)), [value])
                .fetch_all(pool)
                .await?;
            let mut keys = Vec::with_capacity(rows.len());
            for row in &rows {
                match get_value!(row, 0, key_ty)? {
                    SqlValue::Int(i) => keys.push(Key::Int(i)),
                    SqlValue::Text(s) => keys.push(Key::Text(s)),
                    _ => {}
                }
            }
            keys
        }))
    }

    /// Closes the pool (after the last flush).
    pub async fn close(&self) {
        on_pool!(self, pool => pool.close().await)
    }
}

fn key_value(key: &Key) -> SqlValue {
    match key {
        Key::Int(i) => SqlValue::Int(*i),
        Key::Text(s) => SqlValue::Text(s.clone()),
    }
}

mod ranks;
mod write;

#[cfg(test)]
mod tests;
