//! Cached database objects in a real multi-process cluster (`firefly up`): acknowledged writes
//! survive `kill -9` of a logic node, of the node holding the data, of the gate and of the
//! master, a restart of the whole cluster, and a graceful stop; the accounts example works
//! through a default-style cluster with no external service. The durability test runs on every
//! backend: the embedded cache over SQLite, PostgreSQL and MariaDB, and the Redis cache over
//! the last two. The service tests (named `..._on_postgres`, `..._on_mariadb`,
//! `..._on_redis_and_<database>`) are skipped by the default nextest profile and run by
//! `.ci/run`; they fail without `FIREFLY_TEST_POSTGRES_URL` / `FIREFLY_TEST_MYSQL_URL` /
//! `FIREFLY_TEST_REDIS_URL`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly on purpose"
)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use firefly::client::Client;
use firefly::master::http_request;
use serde_json::{Value, json};

mod common;

use common::services::{drop_redis_keys, service_url};
use common::{Running, Storage, Topology, Up, alive, free_addr, node};

const TOKEN: &str = "data-test-admin-token-0123456789";

/// A `firefly up` of this file's cluster (dropping it stops it), and where its data lives.
struct Cluster {
    master: Running,
    gate: SocketAddr,
    admin: SocketAddr,
    topology: PathBuf,
    dir: tempfile::TempDir,
    backend: Backend,
    prefix: String,
}

/// Where a test cluster keeps its objects.
#[derive(Clone)]
enum Backend {
    /// The embedded cache (held by logic-1, journaled) over this database (`{d}`: the
    /// cluster's directory).
    Embedded(String),
    /// The Redis cache at this URL over this database.
    Redis { redis: String, database: String },
}

/// A table (and Redis key) prefix no other run or test uses.
fn unique_prefix() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    format!("p{}_{}_", std::process::id(), now.subsec_nanos())
}

/// gate + logic-1 + logic-2, both hosting `accounts` and `counters`. `flush_interval` is an
/// hour: unless a test stops the cluster gracefully, nothing reaches the SQL tables, so what
/// survives a kill survives through the journal (embedded) or Redis.
fn up(backend: &Backend) -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let (admin, g, a, b, client) = (
        free_addr(),
        free_addr(),
        free_addr(),
        free_addr(),
        free_addr(),
    );
    let d = dir.path().display().to_string();
    let prefix = unique_prefix();
    let storage = match backend {
        Backend::Embedded(database) => Storage {
            database: Some(database.replace("{d}", &d)),
            journal: Some(format!("{d}/journal.db")),
            owner: Some("logic-1".into()),
            ..Storage::default()
        },
        Backend::Redis { redis, database } => Storage {
            database: Some(database.replace("{d}", &d)),
            cache: Some(redis.clone()),
            ..Storage::default()
        },
    };
    let both = ["logic-1", "logic-2"];
    let topology = Topology::new("data")
        .admin(admin)
        .rpc_timeout("2s")
        .module("accounts")
        .module("counters")
        .node("gate", |n| {
            n.rpc(g)
                .tcp(client)
                .route_by("201-207", &both, "sticky")
                .route_by("301-310", &both, "round_robin")
        })
        .node("logic-1", |n| n.rpc(a).modules(&["accounts", "counters"]))
        .node("logic-2", |n| n.rpc(b).modules(&["accounts", "counters"]))
        .storage(Storage {
            table_prefix: Some(prefix.clone()),
            flush_interval: Some("1h"),
            ..storage
        })
        .write(dir.path());
    let master = spawn_up(&topology, admin);
    Cluster {
        master,
        gate: client,
        admin,
        topology,
        dir,
        backend: backend.clone(),
        prefix,
    }
}

/// Starts `firefly up` and waits until the master at `admin` reports its three nodes healthy.
fn spawn_up(topology: &std::path::Path, admin: SocketAddr) -> Running {
    Up::new(topology)
        .env("FIREFLY_ADMIN_TOKEN", TOKEN)
        .env("FIREFLY_CLUSTER_SECRET", "data-test-secret-0123456789")
        .ready_on_status(admin, TOKEN, 3)
        .start()
}

/// Forgets the hot copy of every object: the journal (embedded) or this cluster's Redis keys,
/// so only what reached SQL remains.
async fn drop_cache(cluster: &Cluster) {
    match &cluster.backend {
        Backend::Embedded(_) => {
            for f in ["journal.db", "journal.db-wal", "journal.db-shm"] {
                let _ = std::fs::remove_file(cluster.dir.path().join(f));
            }
        }
        Backend::Redis { redis, .. } => {
            let n = drop_redis_keys(redis, &cluster.prefix).await;
            assert!(n > 0, "no Redis keys for prefix {}", cluster.prefix);
        }
    }
}

async fn status(admin: SocketAddr) -> Value {
    common::status(admin, TOKEN).await
}

/// Kills node `name` with SIGKILL and waits until the master has restarted it.
async fn kill9(cluster: &Cluster, name: &str) {
    let before = status(cluster.admin).await;
    let pid = node(&before, name)["pid"].as_u64().unwrap();
    let restarts = node(&before, name)["restarts"].as_u64().unwrap_or(0);
    Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = status(cluster.admin).await;
        let n = node(&now, name);
        if n["restarts"].as_u64().unwrap_or(0) > restarts && n["ready"] == true {
            return;
        }
        assert!(Instant::now() < deadline, "{name} was not restarted: {now}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `command` through the gate, retried (on a fresh connection) until it succeeds: nodes may
/// still be relinking after a restart. Panics after a deadline.
async fn call_until_ok(gate: SocketAddr, command: u32, req: &Value) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let last = match Client::connect(gate).await {
            Ok(mut c) => match c.call::<_, Value>(command, req).await {
                Ok(v) => return v,
                Err(e) => e.to_string(),
            },
            Err(e) => e.to_string(),
        };
        assert!(
            Instant::now() < deadline,
            "command {command} kept failing: {last}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn count(gate: SocketAddr, id: u64) -> i64 {
    let read = call_until_ok(gate, 302, &json!({"id": id})).await;
    read["counter"]["count"].as_i64().unwrap()
}

/// Increments `id` once and returns the acknowledged count.
async fn incr(gate: SocketAddr, id: u64) -> i64 {
    call_until_ok(gate, 303, &json!({"id": id, "by": 1}))
        .await
        .as_i64()
        .unwrap()
}

async fn acknowledged_writes_survive_every_kill_and_restart(backend: Backend) {
    let mut cluster = up(&backend);
    let gate = cluster.gate;
    let id = call_until_ok(gate, 307, &json!(null))
        .await
        .as_u64()
        .unwrap();
    call_until_ok(
        gate,
        301,
        &json!({"id": id, "name": "durable", "count": 0, "note": null}),
    )
    .await;
    let mut expected = 0;
    for victim in ["logic-2", "logic-1", "gate"] {
        for _ in 0..5 {
            expected += 1;
            assert_eq!(incr(gate, id).await, expected);
        }
        kill9(&cluster, victim).await;
        assert_eq!(count(gate, id).await, expected, "after kill -9 of {victim}");
    }
    let last_id = call_until_ok(gate, 307, &json!(null))
        .await
        .as_u64()
        .unwrap();

    // kill -9 of the master takes its nodes down; a new `firefly up` replays the journal.
    expected += 1;
    assert_eq!(incr(gate, id).await, expected);
    let before = status(cluster.admin).await;
    let pids: Vec<u64> = ["gate", "logic-1", "logic-2"]
        .iter()
        .map(|n| node(&before, n)["pid"].as_u64().unwrap())
        .collect();
    cluster.master.kill();
    let s = status_gone(cluster.admin).await;
    assert!(s, "the admin API outlived the master");
    // Its nodes exit with it; the new ones need their ports.
    let deadline = Instant::now() + Duration::from_secs(20);
    while pids.iter().any(|&p| alive(p)) {
        assert!(
            Instant::now() < deadline,
            "nodes outlived their master: {pids:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster.master = spawn_up(&cluster.topology, cluster.admin);
    assert_eq!(
        count(gate, id).await,
        expected,
        "after kill -9 of the master"
    );
    let next = call_until_ok(gate, 307, &json!(null))
        .await
        .as_u64()
        .unwrap();
    assert!(
        next > last_id,
        "id {next} after {last_id}: the id counter was reset"
    );

    // A graceful stop flushes to SQL: with the journal or Redis keys gone, the database
    // alone has it all (ids included).
    cluster.master.stop();
    drop_cache(&cluster).await;
    cluster.master = spawn_up(&cluster.topology, cluster.admin);
    assert_eq!(count(gate, id).await, expected, "after a graceful stop");
    let after = call_until_ok(gate, 307, &json!(null))
        .await
        .as_u64()
        .unwrap();
    assert!(
        after > next,
        "id {after} after {next}: the id counter was reset"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_every_kill_and_restart_on_sqlite() {
    acknowledged_writes_survive_every_kill_and_restart(Backend::Embedded(
        "sqlite://{d}/data.db".into(),
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_every_kill_and_restart_on_postgres() {
    let url = service_url("FIREFLY_TEST_POSTGRES_URL");
    acknowledged_writes_survive_every_kill_and_restart(Backend::Embedded(url)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_every_kill_and_restart_on_mariadb() {
    let url = service_url("FIREFLY_TEST_MYSQL_URL");
    acknowledged_writes_survive_every_kill_and_restart(Backend::Embedded(url)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_every_kill_and_restart_on_redis_and_postgres() {
    let (redis, database) = (
        service_url("FIREFLY_TEST_REDIS_URL"),
        service_url("FIREFLY_TEST_POSTGRES_URL"),
    );
    acknowledged_writes_survive_every_kill_and_restart(Backend::Redis { redis, database }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_every_kill_and_restart_on_redis_and_mariadb() {
    let (redis, database) = (
        service_url("FIREFLY_TEST_REDIS_URL"),
        service_url("FIREFLY_TEST_MYSQL_URL"),
    );
    acknowledged_writes_survive_every_kill_and_restart(Backend::Redis { redis, database }).await;
}

/// Whether the admin API stops answering soon (the master is gone).
async fn status_gone(admin: SocketAddr) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if http_request(admin, "GET", "/status", TOKEN).await.is_err() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_register_login_and_inventory_through_the_cluster() {
    accounts_through_the_cluster(Backend::Embedded("sqlite://{d}/data.db".into())).await;
}

/// The same module, unchanged, on PostgreSQL behind Redis: only `storage:` differs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_register_login_and_inventory_on_redis_and_postgres() {
    let (redis, database) = (
        service_url("FIREFLY_TEST_REDIS_URL"),
        service_url("FIREFLY_TEST_POSTGRES_URL"),
    );
    accounts_through_the_cluster(Backend::Redis { redis, database }).await;
}

async fn accounts_through_the_cluster(backend: Backend) {
    let cluster = up(&backend);
    let gate = cluster.gate;
    let mut ann = Client::connect(gate).await.unwrap();
    let creds = json!({"username": "ann", "password": "correct horse"});
    let me: Value = ann.call(201, &creds).await.unwrap();
    let account = me["account"].as_u64().unwrap();
    let taken = ann.call::<_, Value>(201, &creds).await.unwrap_err();
    assert_eq!(taken.server().unwrap().code, "username_taken");
    let not_yet = ann.call::<_, Value>(203, &json!(null)).await.unwrap_err();
    assert_eq!(not_yet.server().unwrap().code, "not_logged_in");
    let wrong = ann
        .call::<_, Value>(
            202,
            &json!({"username": "ann", "password": "wrong password"}),
        )
        .await
        .unwrap_err();
    assert_eq!(wrong.server().unwrap().code, "bad_credentials");
    let me: Value = ann.call(202, &creds).await.unwrap();
    assert_eq!(me["account"], account);
    let who: Value = ann.call(203, &json!(null)).await.unwrap();
    assert_eq!(who["username"], "ann");
    let sword: Value = ann
        .call(204, &json!({"kind": "sword", "qty": 1}))
        .await
        .unwrap();
    let _: Value = ann
        .call(204, &json!({"kind": "potion", "qty": 3}))
        .await
        .unwrap();

    // The same user logging in on another session (sticky routing may put it on the other
    // node) sees the same objects, and login binds the user, so the earlier session is kicked.
    let mut other = Client::connect(gate).await.unwrap();
    let _: Value = other.call(202, &creds).await.unwrap();
    let kicked = ann.call::<_, Value>(205, &json!(null)).await.unwrap_err();
    if let Some(reply) = kicked.server() {
        assert_eq!(reply.code, "kicked", "{reply:?}");
    }
    let items: Vec<Value> = other.call(205, &json!(null)).await.unwrap();
    let kinds: Vec<&str> = items.iter().map(|i| i["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["sword", "potion"]);
    let _: Value = other.call(206, &json!({"id": sword["id"]})).await.unwrap();
    let mut ann = Client::connect(gate).await.unwrap();
    let _: Value = ann.call(202, &creds).await.unwrap();
    let items: Vec<Value> = ann.call(205, &json!(null)).await.unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["kind"], "potion");
    // Someone else's inventory is separate.
    let mut bob = Client::connect(gate).await.unwrap();
    let bob_creds = json!({"username": "bob", "password": "hunter2hunter2"});
    let _: Value = bob.call(201, &bob_creds).await.unwrap();
    let _: Value = bob.call(202, &bob_creds).await.unwrap();
    let items: Vec<Value> = bob.call(205, &json!(null)).await.unwrap();
    assert!(items.is_empty());
    let potion = items_id(&mut ann).await;
    let theft = bob
        .call::<_, Value>(206, &json!({"id": potion}))
        .await
        .unwrap_err();
    assert_eq!(theft.server().unwrap().code, "not_yours");
}

async fn items_id(c: &mut Client) -> u64 {
    let items: Vec<Value> = c.call(205, &json!(null)).await.unwrap();
    items[0]["id"].as_u64().unwrap()
}
