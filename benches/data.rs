//! Cached database objects: what a module's get and update cost, and how fast write-behind
//! flushes reach SQL.
//!
//! 1. **Cached get / update through the host functions**, one client, one request at a time,
//!    on a node hosting `modules/counters` with the embedded store (SQLite): command 302 (one
//!    `get`) and command 310 (one `get` + one `update`, journaled before the reply). Beside
//!    them, in the same run: the echo module (command 1, the request path with no data call)
//!    and, when `FIREFLY_TEST_REDIS_URL` is set, a raw Redis GET and SET round trip from the
//!    same process. With that variable set the same two commands run again on a node whose
//!    cache is that Redis (`cache: redis://…`, objects compared-and-set by Lua scripts).
//!    Reported: requests/s, mean latency, and the ratio to the raw Redis round trip.
//! 2. **Flush throughput**: N dirty objects written to SQL by one `flush_now`, in rows/s, beside
//!    the naive baseline (one INSERT statement per row, in one transaction) on the same
//!    database: SQLite always, PostgreSQL / MariaDB when `FIREFLY_TEST_POSTGRES_URL` /
//!    `FIREFLY_TEST_MYSQL_URL` are set; from the embedded cache, and from the Redis cache
//!    (dirty marks scanned, objects read in pipelines, marks cleared by script) when
//!    `FIREFLY_TEST_REDIS_URL` is set.
//!
//! Run: `cargo bench --bench data -- [--requests 3000] [--rows 20000]`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests, benches and their kit fail loudly on purpose"
)]

use std::time::{Duration, Instant};

use firefly::client::Client;
use firefly::config::{CacheSpec, DatabaseSpec, RedisSpec, StorageSpec};
use firefly::data::Data;
use firefly_abi::data::{DataOp, FieldSchema, FieldType, Key, TableSchema};
use firefly_testkit::start_cluster;
use serde_json::json;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn line(what: &str, n: usize, elapsed: Duration, baseline: Option<f64>) -> f64 {
    let per_s = n as f64 / elapsed.as_secs_f64();
    let mean_us = elapsed.as_secs_f64() * 1e6 / n as f64;
    match baseline {
        Some(b) => println!(
            "{what:<44} {per_s:>10.0}/s  mean {mean_us:>8.1} µs  ratio to raw Redis {:.2}",
            per_s / b
        ),
        None => println!("{what:<44} {per_s:>10.0}/s  mean {mean_us:>8.1} µs"),
    }
    per_s
}

async fn raw_redis(url: &str, n: usize) -> (f64, f64) {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let key = format!("firefly-bench-{}", std::process::id());
    let value = vec![7u8; 60];
    let start = Instant::now();
    for _ in 0..n {
        let _: () = redis::cmd("SET")
            .arg(&key)
            .arg(&value)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    let set = line(
        "raw Redis SET round trip (baseline)",
        n,
        start.elapsed(),
        None,
    );
    let start = Instant::now();
    for _ in 0..n {
        let _: Vec<u8> = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    let get = line(
        "raw Redis GET round trip (baseline)",
        n,
        start.elapsed(),
        None,
    );
    let _: () = redis::cmd("DEL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    (get, set)
}

async fn cached_ops(n: usize) {
    let baseline = match std::env::var("FIREFLY_TEST_REDIS_URL") {
        Ok(url) if !url.is_empty() => Some((url.clone(), raw_redis(&url, n).await)),
        _ => {
            println!("(FIREFLY_TEST_REDIS_URL unset: no raw Redis baseline, no Redis cache)");
            None
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let ratios = baseline.as_ref().map(|(_, b)| *b);
    through(
        "embedded",
        &format!("  database: sqlite://{d}/data.db\n  journal: {d}/journal.db\n"),
        n,
        ratios,
        true,
    )
    .await;
    if let Some((url, _)) = &baseline {
        let prefix = format!("b{}_", std::process::id());
        through(
            "Redis",
            &format!(
                "  database: sqlite://{d}/data-redis.db\n  cache: {url}\n  table_prefix: {prefix}\n"
            ),
            n,
            ratios,
            false,
        )
        .await;
    }
}

/// get and get + update through a node whose `storage:` section is `storage`.
async fn through(label: &str, storage: &str, n: usize, baseline: Option<(f64, f64)>, echo: bool) {
    let yaml = format!(
        "version: 1\ncluster: bench\nmodules:\n  echo: {{ crate: modules/echo }}\n  counters: {{ crate: modules/counters }}\nnodes:\n  solo:\n    listen:\n      - tcp: 127.0.0.1:0\n    modules: [echo, counters]\nstorage:\n{storage}"
    );
    let (_, mut nodes) = start_cluster(&yaml, &["solo"]).await;
    let mut c = Client::connect(nodes[0].client_addrs()[0]).await.unwrap();
    let id: u64 = c.call(307, &()).await.unwrap();
    let _: u64 = c
        .call(
            301,
            &json!({"id": id, "name": "bench", "count": 0, "note": null}),
        )
        .await
        .unwrap();
    let get_req = rmp_serde::to_vec_named(&json!({"id": id})).unwrap();
    let incr_req = rmp_serde::to_vec_named(&json!({"id": id, "by": 1})).unwrap();
    for _ in 0..200 {
        c.request(302, &get_req).await.unwrap();
    }
    if echo {
        let start = Instant::now();
        for _ in 0..n {
            c.request(1, b"0123456789").await.unwrap();
        }
        line("echo request (no data call)", n, start.elapsed(), None);
    }
    let start = Instant::now();
    for _ in 0..n {
        c.request(302, &get_req).await.unwrap();
    }
    line(
        &format!("get via host functions ({label})"),
        n,
        start.elapsed(),
        baseline.map(|b| b.0),
    );
    let start = Instant::now();
    for _ in 0..n {
        c.request(310, &incr_req).await.unwrap();
    }
    line(
        &format!("get + update via host functions ({label})"),
        n,
        start.elapsed(),
        baseline.map(|b| b.1),
    );
    // The store alone: the same get straight into the node's data handle, no client or module.
    let data = nodes[0].data().unwrap();
    let op = rmp_serde::to_vec_named(&DataOp::Get {
        table: "counters".into(),
        key: Key::Int(i64::try_from(id).unwrap()),
    })
    .unwrap();
    let start = Instant::now();
    for _ in 0..n {
        data.call(&op).await.unwrap();
    }
    line(
        &format!("get via Data::call, no module ({label})"),
        n,
        start.elapsed(),
        baseline.map(|b| b.0),
    );
    drop(c);
    nodes.pop().unwrap().shutdown(Duration::from_secs(5)).await;
}

fn bench_table() -> TableSchema {
    let f = |name: &str, ty| FieldSchema {
        name: name.into(),
        ty,
        nullable: false,
        defaulted: false,
        indexed: false,
    };
    TableSchema {
        name: "bench_rows".into(),
        key: "id".into(),
        fields: vec![
            f("id", FieldType::Int),
            f("name", FieldType::Text),
            f("gold", FieldType::Int),
        ],
        rank: None,
    }
}

async fn flush(label: &str, via: &str, database: DatabaseSpec, cache: CacheSpec, rows: usize) {
    let prefix = format!(
        "b{}{label}{}_",
        std::process::id(),
        via.to_ascii_lowercase()
    );
    let spec = StorageSpec {
        database: database.clone(),
        cache,
        flush_interval: Duration::from_secs(3600),
        table_prefix: prefix.clone(),
        max_object: 1 << 16,
    };
    let data = Data::open(&spec, "solo", None).await.unwrap();
    data.register(&[bench_table()]).await.unwrap();
    let mut tasks = Vec::new();
    let data = std::sync::Arc::new(data);
    for w in 0..16 {
        let data = data.clone();
        tasks.push(tokio::spawn(async move {
            for i in (w..rows).step_by(16) {
                let object = rmp_serde::to_vec_named(
                    &json!({"id": i + 1, "name": format!("player-{i}"), "gold": i}),
                )
                .unwrap();
                let op = rmp_serde::to_vec_named(&DataOp::Insert {
                    table: "bench_rows".into(),
                    object,
                })
                .unwrap();
                data.call(&op).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let start = Instant::now();
    let written = data.flush_now().await.unwrap();
    let elapsed = start.elapsed();
    assert_eq!(written, rows);
    let flush_rate = rows as f64 / elapsed.as_secs_f64();

    // Baseline: the same rows, one INSERT per row, in one transaction.
    let naive = naive_inserts(&database, &prefix, rows).await;
    println!(
        "flush {label:<10} ({via:<8}) {rows} rows: {flush_rate:>9.0} rows/s; one INSERT per row: {naive:>9.0} rows/s; ratio {:.2}",
        flush_rate / naive
    );
    data.shutdown().await;
}

macro_rules! naive {
    ($pool:expr, $sql:expr, $rows:expr) => {{
        let start = Instant::now();
        let mut tx = $pool.begin().await.unwrap();
        for i in 0..$rows {
            sqlx::query(sqlx::AssertSqlSafe($sql.clone()))
                .bind(i as i64 + 1)
                .bind(1i64)
                .bind(format!("player-{i}"))
                .bind(i as i64)
                .execute(&mut *tx)
                .await
                .unwrap();
        }
        tx.commit().await.unwrap();
        $rows as f64 / start.elapsed().as_secs_f64()
    }};
}

async fn naive_inserts(database: &DatabaseSpec, prefix: &str, rows: usize) -> f64 {
    let table = format!("{prefix}naive_rows");
    let create = format!(
        "CREATE TABLE {table} (id BIGINT PRIMARY KEY, _version BIGINT NOT NULL, name TEXT, gold BIGINT)"
    );
    match database {
        DatabaseSpec::Sqlite(path) => {
            let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
                .await
                .unwrap();
            sqlx::query(sqlx::AssertSqlSafe(create))
                .execute(&pool)
                .await
                .unwrap();
            let sql = format!("INSERT INTO {table} (id, _version, name, gold) VALUES (?, ?, ?, ?)");
            naive!(pool, sql, rows)
        }
        DatabaseSpec::Postgres(url) => {
            let pool = sqlx::PgPool::connect(url).await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(create))
                .execute(&pool)
                .await
                .unwrap();
            let sql =
                format!("INSERT INTO {table} (id, _version, name, gold) VALUES ($1, $2, $3, $4)");
            naive!(pool, sql, rows)
        }
        DatabaseSpec::Mysql(url) => {
            let pool = sqlx::MySqlPool::connect(url).await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(create))
                .execute(&pool)
                .await
                .unwrap();
            let sql = format!("INSERT INTO {table} (id, _version, name, gold) VALUES (?, ?, ?, ?)");
            naive!(pool, sql, rows)
        }
    }
}

fn main() {
    let requests = arg("--requests", 3000);
    let rows = arg("--rows", 20_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        println!("== cached objects through the host functions ({requests} sequential requests)");
        cached_ops(requests).await;
        println!("== write-behind flush throughput ({rows} rows)");
        let dir = tempfile::tempdir().unwrap();
        let mut databases = vec![("sqlite", DatabaseSpec::Sqlite(dir.path().join("flush.db")))];
        for (label, var) in [
            ("postgres", "FIREFLY_TEST_POSTGRES_URL"),
            ("mariadb", "FIREFLY_TEST_MYSQL_URL"),
        ] {
            match std::env::var(var) {
                Ok(url) if !url.is_empty() && label == "postgres" => {
                    databases.push((label, DatabaseSpec::Postgres(url)));
                }
                Ok(url) if !url.is_empty() => databases.push((label, DatabaseSpec::Mysql(url))),
                _ => println!("flush {label:<10} skipped: {var} is not set"),
            }
        }
        let redis = std::env::var("FIREFLY_TEST_REDIS_URL")
            .ok()
            .filter(|u| !u.is_empty());
        for (label, db) in databases {
            let journal = dir.path().join(format!("journal-{label}.db"));
            let embedded = CacheSpec::Embedded {
                owner: "solo".into(),
                journal,
            };
            flush(label, "embedded", db.clone(), embedded, rows).await;
            if let Some(url) = &redis {
                let cache = CacheSpec::Redis(RedisSpec {
                    url: url.clone(),
                    connect_timeout: Duration::from_secs(2),
                    command_timeout: Duration::from_secs(5),
                });
                flush(label, "Redis", db, cache, rows).await;
            }
        }
    });
}
