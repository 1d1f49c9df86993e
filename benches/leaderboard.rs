//! Leaderboard ranks at a million entries: what a submit (read + versioned write of a score)
//! and a "my rank" cost on a ranked table (`#[rank(by = "board")]`), through the data layer
//! a module's `data_call` reaches, with 1,000,000 scores on one board.
//!
//! * **Embedded** (the default storage): SQLite seeded with the rows, the ranking built in the
//!   owner's memory on the first query (its build time is reported), then random players'
//!   scores changed and their ranks asked.
//! * **Redis** (when `FIREFLY_TEST_REDIS_URL` is set): the same on the Redis cache, where the
//!   ranking is a sorted set changed in the write script.
//! * **Baselines, same run**: a raw Redis sorted set of the same million members, ZADD then
//!   ZRANK per submit (when Redis is there), and plain SQL without the index:
//!   `SELECT COUNT(*) … WHERE board = ? AND score > ?` over an SQL index on (board, score),
//!   what a module would do without ranked tables.
//!
//! Reported: p50 / p99 of submit and of my-rank, and the ratio of the p99s to the baseline.
//! Run: `cargo bench --bench leaderboard -- [--entries 1000000] [--ops 5000]`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests, benches and their kit fail loudly on purpose"
)]

use std::time::{Duration, Instant};

use firefly::config::{CacheSpec, DatabaseSpec, RedisSpec, StorageSpec};
use firefly::data::Data;
use firefly_abi::data::{
    DataOp, FieldSchema, FieldType, Key, Rank, RankSchema, Stored, TableSchema,
};
use firefly_testkit::bench::flag;
use serde_json::json;

const TABLE: &str = "lb_bench";
const BOARD: &str = "global";

fn table() -> TableSchema {
    let f = |name: &str, ty| FieldSchema {
        name: name.into(),
        ty,
        nullable: false,
        defaulted: false,
        indexed: false,
    };
    TableSchema {
        name: TABLE.into(),
        key: "id".into(),
        fields: vec![
            f("id", FieldType::Int),
            f("board", FieldType::Text),
            f("score", FieldType::Int),
        ],
        rank: Some(RankSchema {
            field: "score".into(),
            by: Some("board".into()),
        }),
    }
}

/// A deterministic spread of scores (many ties at the low end, like real boards).
fn score_of(i: u64) -> i64 {
    ((i.wrapping_mul(2_654_435_761) % 1_000_003) as i64) / 3
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn pct(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    let i = ((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1;
    v[i].as_secs_f64() * 1e6
}

/// Writes the million rows straight into the SQL table the data layer created.
async fn seed(path: &std::path::Path, prefix: &str, entries: u64) {
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let started = Instant::now();
    let mut tx = pool.begin().await.unwrap();
    for chunk in (1..=entries).collect::<Vec<_>>().chunks(200) {
        let values = vec!["(?, 1, ?, ?)"; chunk.len()].join(", ");
        let sql =
            format!("INSERT INTO {prefix}{TABLE} (id, _version, board, score) VALUES {values}");
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for i in chunk {
            q = q.bind(*i as i64).bind(BOARD).bind(score_of(*i));
        }
        q.execute(&mut *tx).await.unwrap();
    }
    tx.commit().await.unwrap();
    println!(
        "seeded {entries} rows into SQLite in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

async fn op<T: serde::de::DeserializeOwned>(data: &Data, op: &DataOp) -> T {
    let bytes = rmp_serde::to_vec_named(op).unwrap();
    rmp_serde::from_slice(&data.call(&bytes).await.unwrap()).unwrap()
}

/// Submits (get + versioned update) and my-rank for random players: their p50 / p99 in µs.
async fn through(label: &str, data: &Data, entries: u64, ops: usize) -> (f64, f64) {
    let started = Instant::now();
    let first: Rank = op(
        data,
        &DataOp::RankOf {
            table: TABLE.into(),
            key: Key::Int(1),
        },
    )
    .await;
    assert_eq!(first.total, entries);
    println!(
        "{label}: ranking of {} built on the first query in {:.1} s",
        first.total,
        started.elapsed().as_secs_f64()
    );
    let mut rng = Rng(0x5eed);
    let (mut submits, mut ranks) = (Vec::with_capacity(ops), Vec::with_capacity(ops));
    for _ in 0..ops {
        let id = (rng.next() % entries) as i64 + 1;
        let score = (rng.next() % 1_000_000) as i64;
        let t = Instant::now();
        let stored: Stored = op(
            data,
            &DataOp::Get {
                table: TABLE.into(),
                key: Key::Int(id),
            },
        )
        .await;
        let object =
            rmp_serde::to_vec_named(&json!({"id": id, "board": BOARD, "score": score})).unwrap();
        let _: u64 = op(
            data,
            &DataOp::Update {
                table: TABLE.into(),
                version: stored.version,
                object,
            },
        )
        .await;
        submits.push(t.elapsed());
        let t = Instant::now();
        let rank: Rank = op(
            data,
            &DataOp::RankOf {
                table: TABLE.into(),
                key: Key::Int(id),
            },
        )
        .await;
        ranks.push(t.elapsed());
        assert_eq!(rank.score, score);
    }
    let (s50, s99) = (pct(&mut submits, 0.5), pct(&mut submits, 0.99));
    let (r50, r99) = (pct(&mut ranks, 0.5), pct(&mut ranks, 0.99));
    println!(
        "{label}: submit p50 {s50:.0} µs p99 {s99:.0} µs; my-rank p50 {r50:.0} µs p99 {r99:.0} µs"
    );
    (s99, r99)
}

/// Raw Redis: a sorted set of the same members, ZADD + ZRANK per submit.
async fn raw_redis(url: &str, entries: u64, ops: usize) -> (f64, f64) {
    let client = redis::Client::open(url).unwrap();
    // Seeding a million members takes a while on a busy machine: no short response timeout.
    let config =
        redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(60)));
    let mut con = client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .unwrap();
    let key = format!("firefly-bench-lb-{}", std::process::id());
    for chunk in (1..=entries).collect::<Vec<_>>().chunks(200) {
        let mut cmd = redis::cmd("ZADD");
        cmd.arg(&key);
        for i in chunk {
            cmd.arg(-(score_of(*i) as f64)).arg(*i);
        }
        let _: i64 = cmd.query_async(&mut con).await.unwrap();
    }
    let mut rng = Rng(0x5eed);
    let (mut adds, mut ranks) = (Vec::with_capacity(ops), Vec::with_capacity(ops));
    for _ in 0..ops {
        let id = rng.next() % entries + 1;
        let score = (rng.next() % 1_000_000) as f64;
        let t = Instant::now();
        let _: i64 = redis::cmd("ZADD")
            .arg(&key)
            .arg(-score)
            .arg(id)
            .query_async(&mut con)
            .await
            .unwrap();
        adds.push(t.elapsed());
        let t = Instant::now();
        let _: Option<u64> = redis::cmd("ZRANK")
            .arg(&key)
            .arg(id)
            .query_async(&mut con)
            .await
            .unwrap();
        ranks.push(t.elapsed());
    }
    let _: i64 = redis::cmd("DEL")
        .arg(&key)
        .query_async(&mut con)
        .await
        .unwrap();
    let (a99, r99) = (pct(&mut adds, 0.99), pct(&mut ranks, 0.99));
    println!(
        "raw Redis sorted set (baseline): ZADD p50 {:.0} µs p99 {a99:.0} µs; ZRANK p50 {:.0} µs p99 {r99:.0} µs",
        pct(&mut adds, 0.5),
        pct(&mut ranks, 0.5)
    );
    (a99, r99)
}

/// Plain SQL without ranked tables: a rank is a COUNT over an index on (board, score).
async fn sql_count(path: &std::path::Path, prefix: &str, entries: u64, ops: usize) -> f64 {
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let t = format!("{prefix}{TABLE}");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE INDEX IF NOT EXISTS {prefix}bench_rank ON {t} (board, score)"
    )))
    .execute(&pool)
    .await
    .unwrap();
    let sql = format!("SELECT COUNT(*) FROM {t} WHERE board = ? AND score > ?");
    let mut rng = Rng(0x5eed);
    let mut ranks = Vec::with_capacity(ops);
    for _ in 0..ops {
        let id = rng.next() % entries + 1;
        let t0 = Instant::now();
        let _: (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
            .bind(BOARD)
            .bind(score_of(id))
            .fetch_one(&pool)
            .await
            .unwrap();
        ranks.push(t0.elapsed());
    }
    let r99 = pct(&mut ranks, 0.99);
    println!(
        "SQL COUNT(*) over an index (baseline, {ops} ranks): p50 {:.0} µs p99 {r99:.0} µs",
        pct(&mut ranks, 0.5)
    );
    r99
}

fn main() {
    let entries = flag("--entries", 1_000_000);
    let ops = flag("--ops", 5000) as usize;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("lb.db");
        let prefix = format!("b{}_", std::process::id());
        let spec = |cache| StorageSpec {
            database: DatabaseSpec::Sqlite(db.clone()),
            cache,
            flush_interval: Duration::from_secs(1),
            table_prefix: prefix.clone(),
            max_object: 1 << 16,
        };
        let embedded = spec(CacheSpec::Embedded {
            owner: "solo".into(),
            journal: dir.path().join("journal.db"),
        });
        let data = Data::open(&embedded, "solo", None).await.unwrap();
        data.register(&[table()]).await.unwrap();
        seed(&db, &prefix, entries).await;
        let sql99 = sql_count(&db, &prefix, entries, (ops / 10).max(50)).await;
        let (s99, r99) = through("embedded", &data, entries, ops).await;
        println!(
            "embedded: my-rank p99 ratio to the SQL COUNT baseline {:.4} ({:.0}x faster)",
            r99 / sql99,
            sql99 / r99
        );
        data.shutdown().await;
        drop(data);
        let Some(url) = std::env::var("FIREFLY_TEST_REDIS_URL")
            .ok()
            .filter(|u| !u.is_empty())
        else {
            println!("Redis skipped: FIREFLY_TEST_REDIS_URL is not set");
            return;
        };
        let (za99, zr99) = raw_redis(&url, entries, ops).await;
        println!(
            "embedded: p99 ratio to raw Redis: submit {:.2}, my-rank {:.2}",
            s99 / za99,
            r99 / zr99
        );
        let cache = CacheSpec::Redis(RedisSpec {
            url,
            connect_timeout: Duration::from_secs(2),
            command_timeout: Duration::from_secs(30),
        });
        let data = Data::open(&spec(cache), "solo", None).await.unwrap();
        data.register(&[table()]).await.unwrap();
        let (s99, r99) = through("Redis", &data, entries, ops).await;
        println!(
            "Redis: p99 ratio to raw Redis: submit {:.2}, my-rank {:.2}",
            s99 / za99,
            r99 / zr99
        );
        data.shutdown().await;
    });
}
