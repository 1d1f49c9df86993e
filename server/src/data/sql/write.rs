//! Writing a flush: one transaction of upserts and deletes per table, then the id counters,
//! under the flush term when one is given.

use firefly_abi::data::{FieldType, TableSchema};
use sqlx::{AssertSqlSafe, Row};

use super::{Dialect, MAX_PARAMS, RowWrite, Sql, SqlValue, Superseded, key_value};

impl Sql {
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
}
