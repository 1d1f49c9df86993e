//! Cached database objects through real modules (`modules/counters`, `modules/accounts`) on
//! nodes in this process: CRUD, conflicts, index listing, ids, bad input, schema evolution,
//! concurrent writers on two nodes. On SQLite with the embedded cache always; on PostgreSQL,
//! MariaDB and the Redis cache (tests named `..._on_postgres`, `..._on_mariadb`,
//! `..._on_redis_and_<database>`: skipped by the default nextest profile, run by `.ci/run`; they
//! fail without `FIREFLY_TEST_POSTGRES_URL` / `FIREFLY_TEST_MYSQL_URL` / `FIREFLY_TEST_REDIS_URL`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly on purpose"
)]

use std::time::Duration;

use firefly::client::{Client, ClientError};
use firefly::config::{CacheSpec, DatabaseSpec, StorageSpec};
use firefly::data::Data;
use firefly_abi::data::{DataOp, FieldSchema, FieldType, Key, TableSchema};
use firefly_testkit::{drop_redis_keys, free_addr, service_url, start_cluster, start_cluster_node};
use rmpv::Value;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Counter {
    id: u64,
    name: String,
    count: i64,
    #[serde(default)]
    blob: Vec<u8>,
    note: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Read {
    version: u64,
    counter: Counter,
}

/// A unique name, so runs and parallel tests never share tables.
fn unique(prefix: &str) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    h.write_u128(now.map(|d| d.as_nanos()).unwrap_or(0));
    format!("{prefix}{:08x}_", h.finish() as u32)
}

/// The `table_prefix` a test topology uses.
fn prefix_of(yaml: &str) -> String {
    yaml.split("table_prefix: ")
        .nth(1)
        .and_then(|r| r.lines().next())
        .unwrap()
        .to_owned()
}

/// Why a node of this one-node topology refuses to start.
async fn start_error(yaml: &str) -> String {
    let topology = firefly::config::Topology::parse(yaml, firefly_testkit::root()).unwrap();
    let mut config = firefly::NodeConfig::from_topology(
        &topology,
        "solo",
        |m| Ok(firefly_testkit::module_wasm(m)),
        None,
    )
    .unwrap();
    config.cache_dir = Some(firefly_testkit::cache_dir());
    match firefly::Node::start(config).await {
        Ok(_) => panic!("the node started:\n{yaml}"),
        Err(err) => format!("{err:#}"),
    }
}

/// The cache of a test's `storage:` section.
#[derive(Clone, Copy)]
enum Cache<'a> {
    /// Held by this node, journaled in the test's directory.
    Embedded(&'a str),
    /// This Redis URL.
    Redis(&'a str),
}

/// The `storage:` section for a backend, with a fresh table prefix (SQL tables and Redis
/// keys alike).
fn storage(database: &str, cache: Cache<'_>, dir: &std::path::Path) -> String {
    let cache = match cache {
        Cache::Embedded(owner) => format!("  owner: {owner}\n  journal: {{dir}}/journal.db\n"),
        Cache::Redis(url) => format!("  cache: {url}\n  command_timeout: 5s\n"),
    };
    format!(
        "storage:\n  database: {database}\n  table_prefix: {}\n  flush_interval: 50ms\n{cache}",
        unique("t")
    )
    .replace("{dir}", &dir.display().to_string())
}

fn solo(storage: &str) -> String {
    format!(
        "version: 1\ncluster: data\nmodules:\n  counters: {{ crate: modules/counters }}\n  accounts: {{ crate: modules/accounts }}\nnodes:\n  solo:\n    listen:\n      - tcp: 127.0.0.1:0\n    modules: [counters, accounts]\n{storage}"
    )
}

fn code(err: ClientError) -> (String, String) {
    let reply = err.server().cloned().unwrap_or_else(|| panic!("{err}"));
    (reply.code, reply.message)
}

fn object(fields: Vec<(&str, Value)>) -> Vec<u8> {
    let map = Value::Map(
        fields
            .into_iter()
            .map(|(k, v)| (Value::from(k), v))
            .collect(),
    );
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, &map).unwrap();
    out
}

async fn raw(c: &mut Client, op: &DataOp) -> Result<Vec<u8>, (String, String)> {
    let bytes = rmp_serde::to_vec_named(op).unwrap();
    c.request(308, &bytes)
        .await
        .map(|b| b.to_vec())
        .map_err(code)
}

fn counter(id: u64, name: &str, count: i64) -> Counter {
    Counter {
        id,
        name: name.into(),
        count,
        blob: Vec::new(),
        note: None,
    }
}

/// Everything a module can do with its tables, and every bad input, on one backend.
async fn crud_suite(database: &str, cache: Cache<'_>) {
    let dir = tempfile::tempdir().unwrap();
    let yaml = solo(&storage(database, cache, dir.path()));
    let (topology, mut nodes) = start_cluster(&yaml, &["solo"]).await;
    let mut c = Client::connect(nodes[0].client_addrs()[0]).await.unwrap();

    let a: u64 = c.call(307, &()).await.unwrap();
    let b: u64 = c.call(307, &()).await.unwrap();
    assert!(b > a && a >= 1, "ids {a} {b}");
    let v: u64 = c.call(301, &counter(a, "red", 1)).await.unwrap();
    assert_eq!(v, 1);
    let again = c.call::<_, u64>(301, &counter(a, "red", 1)).await;
    assert_eq!(code(again.unwrap_err()).0, "already_exists");
    let read: Option<Read> = c.call(302, &serde_json::json!({"id": a})).await.unwrap();
    let read = read.unwrap();
    assert_eq!(
        (read.version, read.counter.clone()),
        (1, counter(a, "red", 1))
    );

    let n: i64 = c
        .call(303, &serde_json::json!({"id": a, "by": 5}))
        .await
        .unwrap();
    assert_eq!(n, 6);
    // A write at a stale version is refused, and changes nothing.
    let stale = c
        .call::<_, u64>(
            304,
            &serde_json::json!({"id": a, "version": 1, "count": 100}),
        )
        .await;
    let (code_, message) = code(stale.unwrap_err());
    assert_eq!(code_, "conflict");
    assert!(
        message.contains("read at version 1 but is now at version 2"),
        "{message}"
    );
    let v: u64 = c
        .call(304, &serde_json::json!({"id": a, "version": 2, "count": 7}))
        .await
        .unwrap();
    assert_eq!(v, 3);

    // Listing by the index, before and after a flush.
    c.call::<_, u64>(301, &counter(b, "red", 0)).await.unwrap();
    let reds: Vec<u64> = c
        .call(306, &serde_json::json!({"name": "red"}))
        .await
        .unwrap();
    assert_eq!(reds, vec![a, b]);
    nodes[0].data().unwrap().flush_now().await.unwrap();
    let reds: Vec<u64> = c
        .call(306, &serde_json::json!({"name": "red"}))
        .await
        .unwrap();
    assert_eq!(reds, vec![a, b]);
    c.call::<_, ()>(305, &serde_json::json!({"id": a}))
        .await
        .unwrap();
    let reds: Vec<u64> = c
        .call(306, &serde_json::json!({"name": "red"}))
        .await
        .unwrap();
    assert_eq!(reds, vec![b]);
    let gone: Option<Read> = c.call(302, &serde_json::json!({"id": a})).await.unwrap();
    assert!(gone.is_none());
    let twice = c.call::<_, ()>(305, &serde_json::json!({"id": a})).await;
    assert_eq!(code(twice.unwrap_err()).0, "not_found");
    let blues: Vec<u64> = c
        .call(306, &serde_json::json!({"name": "blue"}))
        .await
        .unwrap();
    assert!(blues.is_empty());

    // Bad input: clear errors, nothing stored.
    let wrong_type = DataOp::Insert {
        table: "counters".into(),
        object: object(vec![
            ("id", Value::from(999)),
            ("name", Value::from("x")),
            ("count", Value::from("lots")),
        ]),
    };
    assert_eq!(
        raw(&mut c, &wrong_type).await.unwrap_err(),
        (
            "invalid_argument".into(),
            "field `count` of table `counters` is an int, got a string".into()
        )
    );
    let unknown_field = DataOp::Insert {
        table: "counters".into(),
        object: object(vec![
            ("id", Value::from(999)),
            ("name", Value::from("x")),
            ("count", Value::from(1)),
            ("hp", Value::from(1)),
        ]),
    };
    assert_eq!(
        raw(&mut c, &unknown_field).await.unwrap_err(),
        (
            "invalid_argument".into(),
            "table `counters` has no field `hp`".into()
        )
    );
    let missing_field = DataOp::Insert {
        table: "counters".into(),
        object: object(vec![("id", Value::from(999)), ("name", Value::from("x"))]),
    };
    assert_eq!(
        raw(&mut c, &missing_field).await.unwrap_err(),
        (
            "invalid_argument".into(),
            "a `counters` object lacks the field `count`".into()
        )
    );
    let unknown_table = DataOp::Get {
        table: "nope".into(),
        key: Key::Int(1),
    };
    let (code_, message) = raw(&mut c, &unknown_table).await.unwrap_err();
    assert_eq!(code_, "unknown_table");
    assert!(message.contains("no table `nope`"), "{message}");
    let wrong_key = DataOp::Get {
        table: "counters".into(),
        key: Key::Text("x".into()),
    };
    assert_eq!(
        raw(&mut c, &wrong_key).await.unwrap_err().0,
        "invalid_argument"
    );
    let missing = DataOp::Update {
        table: "counters".into(),
        version: 1,
        object: object(vec![
            ("id", Value::from(424242)),
            ("name", Value::from("x")),
            ("count", Value::from(1)),
        ]),
    };
    let (code_, message) = raw(&mut c, &missing).await.unwrap_err();
    assert_eq!(code_, "not_found");
    assert!(message.contains("424242"), "{message}");
    let mut big = counter(998, "big", 0);
    big.blob = vec![7; 70_000];
    let (code_, message) = code(c.call::<_, u64>(301, &big).await.unwrap_err());
    assert_eq!(code_, "too_large");
    assert!(message.contains("max_object (65536 bytes)"), "{message}");
    let not_indexed = DataOp::ListBy {
        table: "counters".into(),
        field: "count".into(),
        value: rmp_serde::to_vec(&1).unwrap(),
    };
    assert!(
        raw(&mut c, &not_indexed)
            .await
            .unwrap_err()
            .1
            .contains("is not an #[index]")
    );
    for id in [999, 998, 424242] {
        let none: Option<Read> = c.call(302, &serde_json::json!({"id": id})).await.unwrap();
        assert!(none.is_none(), "bad input stored object {id}");
    }

    // A graceful stop flushes; a restart serves the same objects and never reuses an id.
    drop(c);
    nodes.pop().unwrap().shutdown(Duration::from_secs(5)).await;
    let node = start_cluster_node(&topology, "solo").await;
    let mut c = Client::connect(node.client_addrs()[0]).await.unwrap();
    let read: Option<Read> = c.call(302, &serde_json::json!({"id": b})).await.unwrap();
    assert_eq!(read.unwrap().counter, counter(b, "red", 0));
    let reds: Vec<u64> = c
        .call(306, &serde_json::json!({"name": "red"}))
        .await
        .unwrap();
    assert_eq!(reds, vec![b]);
    let next: u64 = c.call(307, &()).await.unwrap();
    assert!(next > b, "id {next} after {b}: the counter went back");
    drop(c);
    node.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crud_conflicts_index_ids_and_bad_input_on_sqlite() {
    crud_suite("sqlite://{dir}/data.db", Cache::Embedded("solo")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crud_conflicts_index_ids_and_bad_input_on_postgres() {
    let url = service_url("FIREFLY_TEST_POSTGRES_URL");
    crud_suite(&url, Cache::Embedded("solo")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crud_conflicts_index_ids_and_bad_input_on_mariadb() {
    let url = service_url("FIREFLY_TEST_MYSQL_URL");
    crud_suite(&url, Cache::Embedded("solo")).await;
}

/// gate + l1 + l2, both hosting `counters`; requests alternate between them. With the
/// embedded cache l1 holds the data; with Redis both nodes use it directly.
async fn two_nodes_updating_one_object(database: &str, cache: Cache<'_>) {
    let dir = tempfile::tempdir().unwrap();
    let (g, a, b) = (free_addr(), free_addr(), free_addr());
    let yaml = format!(
        "version: 1\ncluster: data\nmaster:\n  rpc_timeout: 5s\nmodules:\n  counters: {{ crate: modules/counters }}\nnodes:\n  gate:\n    rpc: {g}\n    listen:\n      - tcp: 127.0.0.1:0\n    routes:\n      - {{ commands: \"301-310\", to: [l1, l2], policy: round_robin }}\n  l1: {{ rpc: {a}, modules: [counters] }}\n  l2: {{ rpc: {b}, modules: [counters] }}\n{}",
        storage(database, cache, dir.path())
    );
    let prefix = prefix_of(&yaml);
    let (_, nodes) = start_cluster(&yaml, &["l1", "l2", "gate"]).await;
    let gate = nodes[2].client_addrs()[0];
    let mut c = Client::connect(gate).await.unwrap();
    let id: u64 = c.call(307, &()).await.unwrap();
    c.call::<_, u64>(301, &counter(id, "shared", 0))
        .await
        .unwrap();

    // Retrying increments from 4 clients, spread over both nodes: every one counts.
    let mut tasks = Vec::new();
    for _ in 0..4 {
        tasks.push(tokio::spawn(async move {
            let mut c = Client::connect(gate).await.unwrap();
            for _ in 0..20 {
                let _: i64 = c
                    .call(303, &serde_json::json!({"id": id, "by": 1}))
                    .await
                    .unwrap();
            }
        }));
    }
    // Single-attempt increments: some conflict, and exactly the successful ones count.
    let mut once = Vec::new();
    for _ in 0..2 {
        once.push(tokio::spawn(async move {
            let mut c = Client::connect(gate).await.unwrap();
            let (mut ok, mut conflicts) = (0i64, 0);
            for _ in 0..20 {
                match c
                    .call::<_, i64>(310, &serde_json::json!({"id": id, "by": 1000}))
                    .await
                {
                    Ok(_) => ok += 1,
                    Err(e) => {
                        assert_eq!(code(e).0, "conflict");
                        conflicts += 1;
                    }
                }
            }
            (ok, conflicts)
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut ok_total = 0;
    for t in once {
        ok_total += t.await.unwrap().0;
    }
    let read: Option<Read> = c.call(302, &serde_json::json!({"id": id})).await.unwrap();
    let read = read.unwrap();
    assert_eq!(read.counter.count, 80 + 1000 * ok_total);
    // Both nodes served some of it.
    for node in &nodes[..2] {
        let calls: u64 = node.modules().iter().map(|m| m.calls).sum();
        assert!(calls > 0, "{} served nothing", node.name());
    }
    // The same count reached SQL.
    // Redis: another node may be flushing at this moment; flush until nothing is dirty.
    for node in &nodes[..2] {
        node.data().unwrap().flush_now().await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for node in &nodes[..2] {
        node.data().unwrap().flush_now().await.unwrap();
    }
    let database = database.replace("{dir}", &dir.path().display().to_string());
    let (count, version) = sql_count(&database, &prefix, id).await;
    assert_eq!(count, read.counter.count);
    assert_eq!(version as u64, read.version);
}

/// `count` and `_version` of counter `id`, read straight from the SQL database.
async fn sql_count(database: &str, prefix: &str, id: u64) -> (i64, i64) {
    let pg = |sql: &str| sql.replace('?', "$1");
    let sql = format!("SELECT count, _version FROM {prefix}counters WHERE id = ?");
    let id = i64::try_from(id).unwrap();
    if database.starts_with("sqlite://") {
        let pool = sqlx::SqlitePool::connect(database).await.unwrap();
        sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap()
    } else if database.starts_with("postgres") {
        let pool = sqlx::PgPool::connect(database).await.unwrap();
        sqlx::query_as(sqlx::AssertSqlSafe(pg(&sql)))
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap()
    } else {
        let pool = sqlx::MySqlPool::connect(database).await.unwrap();
        sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_updating_one_object_lose_no_update() {
    two_nodes_updating_one_object("sqlite://{dir}/data.db", Cache::Embedded("l1")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_updating_one_object_lose_no_update_on_postgres() {
    let pg = service_url("FIREFLY_TEST_POSTGRES_URL");
    two_nodes_updating_one_object(&pg, Cache::Embedded("l1")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_updating_one_object_lose_no_update_on_mariadb() {
    let my = service_url("FIREFLY_TEST_MYSQL_URL");
    two_nodes_updating_one_object(&my, Cache::Embedded("l1")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_updating_one_object_lose_no_update_on_redis_and_sqlite() {
    let url = service_url("FIREFLY_TEST_REDIS_URL");
    two_nodes_updating_one_object("sqlite://{dir}/data.db", Cache::Redis(&url)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_updating_one_object_lose_no_update_on_redis_and_postgres() {
    let (redis, pg) = (
        service_url("FIREFLY_TEST_REDIS_URL"),
        service_url("FIREFLY_TEST_POSTGRES_URL"),
    );
    two_nodes_updating_one_object(&pg, Cache::Redis(&redis)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_updating_one_object_lose_no_update_on_redis_and_mariadb() {
    let (redis, my) = (
        service_url("FIREFLY_TEST_REDIS_URL"),
        service_url("FIREFLY_TEST_MYSQL_URL"),
    );
    two_nodes_updating_one_object(&my, Cache::Redis(&redis)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crud_conflicts_index_ids_and_bad_input_on_redis_and_sqlite() {
    let url = service_url("FIREFLY_TEST_REDIS_URL");
    crud_suite("sqlite://{dir}/data.db", Cache::Redis(&url)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crud_conflicts_index_ids_and_bad_input_on_redis_and_postgres() {
    let (redis, pg) = (
        service_url("FIREFLY_TEST_REDIS_URL"),
        service_url("FIREFLY_TEST_POSTGRES_URL"),
    );
    crud_suite(&pg, Cache::Redis(&redis)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crud_conflicts_index_ids_and_bad_input_on_redis_and_mariadb() {
    let (redis, my) = (
        service_url("FIREFLY_TEST_REDIS_URL"),
        service_url("FIREFLY_TEST_MYSQL_URL"),
    );
    crud_suite(&my, Cache::Redis(&redis)).await;
}

fn field(name: &str, ty: FieldType) -> FieldSchema {
    FieldSchema {
        name: name.into(),
        ty,
        nullable: false,
        defaulted: false,
        indexed: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_changes_are_allowed_or_refused_with_the_table_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let spec = StorageSpec {
        database: DatabaseSpec::Sqlite(dir.path().join("data.db")),
        cache: CacheSpec::Embedded {
            owner: "solo".into(),
            journal: dir.path().join("journal.db"),
        },
        flush_interval: Duration::from_millis(50),
        table_prefix: String::new(),
        max_object: 1 << 16,
    };
    let data = Data::open(&spec, "solo", None).await.unwrap();
    let v1 = TableSchema {
        name: "heroes".into(),
        key: "id".into(),
        fields: vec![field("id", FieldType::Int), field("name", FieldType::Text)],
        rank: None,
    };
    data.register(std::slice::from_ref(&v1)).await.unwrap();
    let mut v2 = v1.clone();
    v2.fields.push(FieldSchema {
        nullable: true,
        indexed: true,
        ..field("guild", FieldType::Text)
    });
    data.register(std::slice::from_ref(&v2)).await.unwrap();
    let mut dropped = v2.clone();
    dropped.fields.remove(1);
    assert_eq!(
        data.register(&[dropped]).await.unwrap_err().to_string(),
        "table `heroes`: field `name` was removed; dropping a column is a destructive change (keep the field, e.g. as an Option)"
    );
    let mut retyped = v2.clone();
    retyped.fields[1].ty = FieldType::Int;
    assert_eq!(
        data.register(&[retyped]).await.unwrap_err().to_string(),
        "table `heroes`: field `name` changed type from text to int; retyping a column is a destructive change"
    );
    // A module whose table would be changed destructively is not loaded.
    let counters = TableSchema {
        name: "counters".into(),
        key: "id".into(),
        fields: vec![
            field("id", FieldType::Int),
            field("name", FieldType::Text),
            field("count", FieldType::Text),
        ],
        rank: None,
    };
    data.register(&[counters]).await.unwrap();
    data.shutdown().await;
    drop(data);
    let yaml = format!(
        "version: 1\ncluster: data\nmodules:\n  counters: {{ crate: modules/counters }}\nnodes:\n  solo:\n    listen:\n      - tcp: 127.0.0.1:0\n    modules: [counters]\nstorage:\n  database: sqlite://{d}/data.db\n  journal: {d}/journal.db\n",
        d = dir.path().display()
    );
    // A module whose table would be changed destructively is not loaded.
    let err = start_error(&yaml).await;
    assert!(
        err.contains(
            "tables refused: table `counters`: field `count` changed type from text to int"
        ),
        "{err}"
    );
}

/// The Redis cache is only a cache: with every key of the cluster gone (a Redis restarted
/// without persistence, after a flush), objects come back from SQL and ids never repeat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_redis_cache_is_rebuilt_from_sql_on_redis_and_sqlite() {
    let url = service_url("FIREFLY_TEST_REDIS_URL");
    let dir = tempfile::tempdir().unwrap();
    let yaml = solo(&storage(
        "sqlite://{dir}/data.db",
        Cache::Redis(&url),
        dir.path(),
    ));
    let prefix = prefix_of(&yaml);
    let (_topology, nodes) = start_cluster(&yaml, &["solo"]).await;
    let mut c = Client::connect(nodes[0].client_addrs()[0]).await.unwrap();
    let mut ids = Vec::new();
    for i in 0..5 {
        let id: u64 = c.call(307, &()).await.unwrap();
        c.call::<_, u64>(301, &counter(id, "kept", i))
            .await
            .unwrap();
        ids.push(id);
    }
    c.call::<_, i64>(303, &serde_json::json!({"id": ids[0], "by": 10}))
        .await
        .unwrap();
    // Flush until this node has written everything (the flusher may hold the lease).
    let data = nodes[0].data().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        data.flush_now().await.unwrap();
        if data.flush_stats().unwrap().flushed_rows >= 5 && data.flush_stats().unwrap().dirty == 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never flushed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    assert!(
        drop_redis_keys(&url, &prefix).await >= 7,
        "the cache had fewer keys"
    );

    let read: Option<Read> = c
        .call(302, &serde_json::json!({"id": ids[0]}))
        .await
        .unwrap();
    let read = read.unwrap();
    assert_eq!(read.counter.count, 10);
    assert_eq!(read.version, 2);
    let reds: Vec<u64> = c
        .call(306, &serde_json::json!({"name": "kept"}))
        .await
        .unwrap();
    assert_eq!(reds, ids);
    let next: u64 = c.call(307, &()).await.unwrap();
    assert!(
        next > ids[4],
        "id {next} after {}: an id was reused",
        ids[4]
    );
    // Writes go on at the right version.
    let v: u64 = c
        .call(
            304,
            &serde_json::json!({"id": ids[0], "version": 2, "count": 1}),
        )
        .await
        .unwrap();
    assert_eq!(v, 3);
}

/// A Redis that does not answer is a clear error for the module, never a hang or a trap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_redis_cache_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let closed = free_addr();
    let yaml = solo(&format!(
        "storage:\n  database: sqlite://{}/data.db\n  cache: redis://{closed}\n  connect_timeout: 200ms\n  command_timeout: 200ms\n",
        dir.path().display()
    ));
    let err = start_error(&yaml).await;
    assert!(
        err.contains("connecting to the Redis cache (storage.cache)"),
        "{err}"
    );
}
