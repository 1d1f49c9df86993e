//! Reading a ranking's members from SQL (to build its index the first time it is asked for).

use firefly_abi::data::{FieldType, Key, TableSchema};
use sqlx::{AssertSqlSafe, Row};

use super::{Sql, SqlValue};

impl Sql {
    /// `(key, score, version)` of every row of `t` with a non-null `score` field whose `by` field
    /// equals `group` (every row when `group` is `None`).
    pub async fn rank_rows(
        &self,
        prefix: &str,
        t: &TableSchema,
        score: &str,
        group: Option<(&str, &SqlValue)>,
    ) -> anyhow::Result<Vec<(Key, i64, u64)>> {
        let mut sql = format!(
            "SELECT {}, {}, {} FROM {} WHERE {} IS NOT NULL",
            self.q(&t.key),
            self.q("_version"),
            self.q(score),
            self.q(&format!("{prefix}{}", t.name)),
            self.q(score),
        );
        let mut values = Vec::new();
        if let Some((by, value)) = group {
            sql.push_str(&format!(" AND {} = {}", self.q(by), self.ph(1)));
            values.push(value.clone());
        }
        let key_ty = t.key_field().map_or(FieldType::Int, |f| f.ty);
        Ok(on_pool!(self, pool => {
            let rows = bind_all!(sqlx::query(AssertSqlSafe(sql)), &values)
                .fetch_all(pool)
                .await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                let key = match get_value!(row, 0, key_ty)? {
                    SqlValue::Int(i) => Key::Int(i),
                    SqlValue::Text(s) => Key::Text(s),
                    _ => continue,
                };
                let version = row.try_get::<i64, _>(1)?;
                if let SqlValue::Int(s) = get_value!(row, 2, FieldType::Int)? {
                    out.push((key, s, u64::try_from(version).unwrap_or(0)));
                }
            }
            out
        }))
    }
}
