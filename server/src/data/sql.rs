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

    /// Writes one flush in a single transaction: upserts and deletes per table, then the id
    /// counters (which never go down). With `term` (from [`Sql::begin_flush_term`]) the
    /// transaction first locks the term row and is refused with [`Superseded`] if a newer
    /// term has begun.
    pub async fn write_batch(
        &self,
        prefix: &str,
        tables: &[(std::sync::Arc<TableSchema>, Vec<RowWrite>)],
        ids: &[(String, i64)],
        term: Option<i64>,
    ) -> anyhow::Result<()> {
        let mut statements: Vec<(String, Vec<SqlValue>)> = Vec::new();
        for (t, rows) in tables {
            let table = self.q(&format!("{prefix}{}", t.name));
            let upserts: Vec<&RowWrite> = rows.iter().filter(|r| r.values.is_some()).collect();
            let per_row = t.fields.len() + 1;
            for chunk in upserts.chunks((MAX_PARAMS / per_row).max(1)) {
                statements.push(self.upsert(&table, t, chunk));
            }
            // A delete removes the row only while it holds an older version than the delete
            // itself, so a stale flusher can never delete an object re-inserted since (a
            // re-insert gets a higher version than the delete it follows).
            let deletes: Vec<&RowWrite> = rows.iter().filter(|r| r.values.is_none()).collect();
            let (key, version) = (self.q(&t.key), self.q("_version"));
            for chunk in deletes.chunks(MAX_PARAMS / 2) {
                let mut values = Vec::with_capacity(chunk.len() * 2);
                let conditions: Vec<String> = chunk
                    .iter()
                    .map(|r| {
                        values.push(key_value(&r.key));
                        values.push(SqlValue::Int(i64::try_from(r.version).unwrap_or(i64::MAX)));
                        let n = values.len();
                        format!(
                            "({key} = {} AND {version} < {})",
                            self.ph(n - 1),
                            self.ph(n)
                        )
                    })
                    .collect();
                statements.push((
                    format!("DELETE FROM {table} WHERE {}", conditions.join(" OR ")),
                    values,
                ));
            }
        }
        let meta = self.meta_ids(prefix);
        for (table, last) in ids {
            let sql = match self.dialect() {
                Dialect::Mysql => format!(
                    "INSERT INTO {meta} (tbl, last) VALUES (?, ?) ON DUPLICATE KEY UPDATE last = GREATEST(last, VALUES(last))"
                ),
                Dialect::Postgres => format!(
                    "INSERT INTO {meta} AS m (tbl, last) VALUES ($1, $2) ON CONFLICT (tbl) DO UPDATE SET last = GREATEST(m.last, excluded.last)"
                ),
                Dialect::Sqlite => format!(
                    "INSERT INTO {meta} (tbl, last) VALUES (?, ?) ON CONFLICT (tbl) DO UPDATE SET last = max(last, excluded.last)"
                ),
            };
            statements.push((
                sql,
                vec![SqlValue::Text(table.clone()), SqlValue::Int(*last)],
            ));
        }
        if statements.is_empty() {
            return Ok(());
        }
        // The lock on the term row orders this transaction against a newer term's start
        // (SQLite has no FOR UPDATE: a no-op write takes its write lock instead).
        let fence = term.map(|term| {
            let flush = self.meta_flush(prefix);
            let (lock, read) = match self.dialect() {
                Dialect::Sqlite => (
                    Some(format!("UPDATE {flush} SET term = term WHERE id = 1")),
                    format!("SELECT term FROM {flush} WHERE id = 1"),
                ),
                _ => (
                    None,
                    format!("SELECT term FROM {flush} WHERE id = 1 FOR UPDATE"),
                ),
            };
            (term, lock, read)
        });
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            if let Some((term, lock, read)) = fence {
                if let Some(lock) = lock {
                    sqlx::query(AssertSqlSafe(lock)).execute(&mut *tx).await?;
                }
                let row = sqlx::query(AssertSqlSafe(read)).fetch_one(&mut *tx).await?;
                let newest = row.try_get::<i64, _>(0)?;
                if newest != term {
                    tx.rollback().await?;
                    return Err(Superseded { term, newest }.into());
                }
            }
            for (sql, values) in statements {
                bind_all!(sqlx::query(AssertSqlSafe(sql)), &values)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    fn upsert(&self, table: &str, t: &TableSchema, rows: &[&RowWrite]) -> (String, Vec<SqlValue>) {
        let mut cols = vec![self.q("_version")];
        cols.extend(t.fields.iter().map(|f| self.q(&f.name)));
        let mut values = Vec::with_capacity(rows.len() * cols.len());
        let mut groups = Vec::with_capacity(rows.len());
        for row in rows {
            let mut phs = Vec::with_capacity(cols.len());
            values.push(SqlValue::Int(
                i64::try_from(row.version).unwrap_or(i64::MAX),
            ));
            phs.push(self.ph(values.len()));
            for v in row.values.iter().flatten() {
                values.push(v.clone());
                phs.push(self.ph(values.len()));
            }
            groups.push(format!("({})", phs.join(", ")));
        }
        // A row is only ever replaced by a newer version of itself: two flushers (Redis
        // mode: any node may flush) can never put an older state over a newer one.
        let key = self.q(&t.key);
        let version = self.q("_version");
        let conflict = match self.dialect() {
            Dialect::Mysql => {
                // Assignments run left to right: `_version` goes last, so every column
                // compares against the stored version.
                let mut updates: Vec<String> = cols
                    .iter()
                    .filter(|c| **c != key && **c != version)
                    .map(|c| format!("{c} = IF(VALUES({version}) > {version}, VALUES({c}), {c})"))
                    .collect();
                updates.push(format!(
                    "{version} = GREATEST({version}, VALUES({version}))"
                ));
                format!("ON DUPLICATE KEY UPDATE {}", updates.join(", "))
            }
            _ => {
                let updates: Vec<String> = cols
                    .iter()
                    .filter(|c| **c != key)
                    .map(|c| format!("{c} = excluded.{c}"))
                    .collect();
                format!(
                    "ON CONFLICT ({key}) DO UPDATE SET {} WHERE {table}.{version} < excluded.{version}",
                    updates.join(", ")
                )
            }
        };
        (
            format!(
                "INSERT INTO {table} ({}) VALUES {} {conflict}",
                cols.join(", "),
                groups.join(", ")
            ),
            values,
        )
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use firefly_abi::data::{FieldSchema, FieldType, Key, TableSchema};

    use super::{RowWrite, Sql, SqlValue};
    use crate::config::DatabaseSpec;

    fn row(version: u64, gold: i64) -> RowWrite {
        RowWrite {
            key: Key::Int(1),
            version,
            values: Some(vec![SqlValue::Int(1), SqlValue::Int(gold)]),
        }
    }

    /// Two flushers racing (any node may flush with Redis) can never put an older state of
    /// an object over a newer one, nor delete a newer one: on SQLite, and on PostgreSQL and MariaDB when their test
    /// URLs are set (as in CI).
    #[tokio::test]
    async fn a_stale_write_never_replaces_a_newer_version() {
        let dir = tempfile::tempdir().unwrap();
        let databases = databases(dir.path());
        for db in databases {
            stale_write_is_ignored(&db).await;
        }
    }

    /// A flusher that stalled past its lease (another node took over and began a newer term)
    /// writes nothing, and the newer term's flush goes through.
    #[tokio::test]
    async fn a_superseded_flush_term_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let databases = databases(dir.path());
        for db in databases {
            let prefix = fresh_prefix("f");
            let (sql, t) = heroes(&db, &prefix).await;
            let stale = sql.begin_flush_term(&prefix).await.unwrap();
            let newer = sql.begin_flush_term(&prefix).await.unwrap();
            assert!(newer > stale, "{db:?}");
            let err = sql
                .write_batch(&prefix, &[(t.clone(), vec![row(1, 10)])], &[], Some(stale))
                .await
                .unwrap_err();
            let superseded = err.downcast_ref::<super::Superseded>();
            assert!(
                superseded.is_some_and(|s| s.newest == newer),
                "{db:?}: {err:#}"
            );
            assert!(
                sql.load(&prefix, &t, &Key::Int(1)).await.unwrap().is_none(),
                "{db:?}: the stale flush wrote"
            );
            sql.write_batch(&prefix, &[(t.clone(), vec![row(2, 20)])], &[], Some(newer))
                .await
                .unwrap();
            let (version, _) = sql.load(&prefix, &t, &Key::Int(1)).await.unwrap().unwrap();
            assert_eq!(version, 2, "{db:?}");
        }
    }

    /// SQLite in `dir`, and PostgreSQL and MariaDB when their test URLs are set; under `CI`
    /// a missing URL fails the test (CI must exercise every database).
    fn databases(dir: &std::path::Path) -> Vec<DatabaseSpec> {
        let url = |var: &str| match std::env::var(var) {
            Ok(url) if !url.is_empty() => Some(url),
            _ => {
                assert!(
                    std::env::var_os("CI").is_none(),
                    "{var} must be set when CI is set"
                );
                None
            }
        };
        let mut databases = vec![DatabaseSpec::Sqlite(dir.join("t.db"))];
        databases.extend(url("FIREFLY_TEST_POSTGRES_URL").map(DatabaseSpec::Postgres));
        databases.extend(url("FIREFLY_TEST_MYSQL_URL").map(DatabaseSpec::Mysql));
        databases
    }

    /// A table prefix no earlier run used.
    fn fresh_prefix(tag: &str) -> String {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        format!("{tag}{}_{}_", std::process::id(), nanos % 1_000_000_000)
    }

    /// A fresh `heroes (id, gold)` table under `prefix`.
    async fn heroes(db: &DatabaseSpec, prefix: &str) -> (Sql, Arc<TableSchema>) {
        let sql = Sql::connect(db).await.unwrap();
        let field = |name: &str| FieldSchema {
            name: name.into(),
            ty: FieldType::Int,
            nullable: false,
            defaulted: false,
            indexed: false,
        };
        let t = Arc::new(TableSchema {
            name: "heroes".into(),
            key: "id".into(),
            fields: vec![field("id"), field("gold")],
        });
        sql.ensure_meta(prefix).await.unwrap();
        sql.apply_schema(prefix, None, &t).await.unwrap();
        (sql, t)
    }

    async fn stale_write_is_ignored(db: &DatabaseSpec) {
        let prefix = fresh_prefix("u");
        let (sql, t) = heroes(db, &prefix).await;
        for (version, gold) in [(2, 20), (1, 10), (3, 30), (3, 99)] {
            sql.write_batch(&prefix, &[(t.clone(), vec![row(version, gold)])], &[], None)
                .await
                .unwrap();
        }
        let (version, values) = sql.load(&prefix, &t, &Key::Int(1)).await.unwrap().unwrap();
        assert_eq!((version, &values[1]), (3, &SqlValue::Int(30)), "{db:?}");
        // A stale delete (version 2, from before the row reached version 3) leaves it alone.
        let delete = |version| RowWrite {
            key: Key::Int(1),
            version,
            values: None,
        };
        sql.write_batch(&prefix, &[(t.clone(), vec![delete(2)])], &[], None)
            .await
            .unwrap();
        assert!(
            sql.load(&prefix, &t, &Key::Int(1)).await.unwrap().is_some(),
            "{db:?}"
        );
        // A delete newer than the row removes it.
        sql.write_batch(&prefix, &[(t.clone(), vec![delete(4)])], &[], None)
            .await
            .unwrap();
        assert!(
            sql.load(&prefix, &t, &Key::Int(1)).await.unwrap().is_none(),
            "{db:?}"
        );
    }
}
