//! The SQL layer against every configured database.

use std::sync::Arc;

use firefly_abi::data::{FieldSchema, FieldType, Key, TableSchema};

use super::{RowWrite, Sql, SqlValue};
use crate::config::DatabaseSpec;

use crate::test_services as services;

fn row(version: u64, gold: i64) -> RowWrite {
    RowWrite {
        key: Key::Int(1),
        version,
        values: Some(vec![SqlValue::Int(1), SqlValue::Int(gold)]),
    }
}

/// Each check runs on SQLite everywhere, and on PostgreSQL and MariaDB as service tests (named
/// `_on_postgres` / `_on_mariadb`: the default nextest profile skips them, and they fail
/// without their URL; `.ci/run` sets it).
macro_rules! on_every_database {
    ($($check:ident => $sqlite:ident, $postgres:ident, $mariadb:ident;)*) => {$(
        #[tokio::test]
        async fn $sqlite() {
            let dir = tempfile::tempdir().unwrap();
            $check(&DatabaseSpec::Sqlite(dir.path().join("t.db"))).await;
        }

        #[tokio::test]
        async fn $postgres() {
            let url = services::service_url("FIREFLY_TEST_POSTGRES_URL");
            $check(&DatabaseSpec::Postgres(url)).await;
        }

        #[tokio::test]
        async fn $mariadb() {
            let url = services::service_url("FIREFLY_TEST_MYSQL_URL");
            $check(&DatabaseSpec::Mysql(url)).await;
        }
    )*};
}

on_every_database! {
    stale_write_is_ignored =>
        a_stale_write_never_replaces_a_newer_version_on_sqlite,
        a_stale_write_never_replaces_a_newer_version_on_postgres,
        a_stale_write_never_replaces_a_newer_version_on_mariadb;
    superseded_term_writes_nothing =>
        a_superseded_flush_term_writes_nothing_on_sqlite,
        a_superseded_flush_term_writes_nothing_on_postgres,
        a_superseded_flush_term_writes_nothing_on_mariadb;
}

/// A flusher that stalled past its lease (another node took over and began a newer term)
/// writes nothing, and the newer term's flush goes through.
async fn superseded_term_writes_nothing(db: &DatabaseSpec) {
    let prefix = fresh_prefix("f");
    let (sql, t) = heroes(db, &prefix).await;
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
        rank: None,
    });
    sql.ensure_meta(prefix).await.unwrap();
    sql.apply_schema(prefix, None, &t).await.unwrap();
    (sql, t)
}

/// Two flushers racing (any node may flush with Redis) can never put an older state of an
/// object over a newer one, nor delete a newer one.
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
