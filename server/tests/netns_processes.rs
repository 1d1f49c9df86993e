//! Several machines, tested: three hosts, each a network namespace of its own with one address
//! on a private network that exists only for the test ([`common::netns::Lab`]), each running
//! `firefly up --host <its address>` from its own copy of one `topology.yaml`, as the README's
//! "Running on several machines" says:
//!
//! | host | `firefly up` | nodes |
//! |---|---|---|
//! | h1 | `--host h1 --no-admin` | `gate-a` (clients) |
//! | h2 | `--host h2` (the admin API) | `logic-1` (`counters`) |
//! | h3 | `--host h3 --no-admin` | `gate-b` (clients), `logic-2` (`counters`) |
//!
//! They share only what the test runs on the bridge of its own namespace: a private
//! `nats-server` (the cluster fabric), a private `redis-server` (the cache) and a relay to the
//! PostgreSQL of `FIREFLY_TEST_POSTGRES_URL` (the database). Clients run in the test, on both
//! gates; each writes new objects and increments one of its own through the `counters` module,
//! which both logic nodes host (`round_robin`).
//!
//! 1. h3 is cut off (its link down: no reset, packets just vanish): gate-b and logic-2 with
//!    it. gate-a routes around logic-2 and gate-b's clients move to gate-a; every client keeps
//!    having its writes acknowledged.
//! 2. h3 comes back: its nodes rejoin over NATS, gate-b serves again, gate-a sends logic-2
//!    requests again.
//! 3. h2 loses power (`kill -9` of every process in it: `logic-1` and the master with the admin
//!    API): both gates go on through logic-2.
//!
//! Then every write a client saw acknowledged is there, read through both gates, and after a
//! graceful stop of what is left, in PostgreSQL itself. Needs root and iproute2 (namespaces),
//! `nats-server` and `redis-server` (as `.ci/run` installs), and `FIREFLY_TEST_POSTGRES_URL`;
//! named `_on_nats`, so the default nextest profile skips it and `ci` runs it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly on purpose"
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use firefly::client::{Client, ClientError};
use serde_json::{Value, json};
use sqlx::AssertSqlSafe;

mod common;

use common::netns::{Lab, Relay};
use common::services::{private_nats_at, private_redis_at, service_url};
use common::topology::Node;
use common::{Storage, Topology, Up, free_addr_on, rpc_counter, workspace};

const TOKEN: &str = "netns-admin-token-0123456789";
const SECRET: &str = "netns-cluster-secret-0123456789";
/// The gates' `/metrics` listen on their hosts' addresses, so they want a bearer token.
const METRICS_TOKEN: &str = "netns-metrics-token-0123456789";
/// The client port of each gate and the metrics port, on its own host's address.
const GATE_PORT: u16 = 11009;
const METRICS_PORT: u16 = 9100;
/// The error codes a request caught by a lost host may get (its reply never says "done").
const OUTAGE: [&str; 3] = ["node_unavailable", "timeout", "data_unavailable"];

/// A database URL `scheme://[user@]host[:port]/db` split around its `host:port` (the port
/// made explicit): `(scheme://user@, host:port, /db)`.
fn split_url(url: &str) -> (String, String, String) {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (user, host) = match authority.rsplit_once('@') {
        Some((user, host)) => (format!("{user}@"), host),
        None => (String::new(), authority),
    };
    let host = if host.contains(':') {
        host.to_owned()
    } else {
        format!("{host}:5432")
    };
    (format!("{scheme}://{user}"), host, format!("/{path}"))
}

/// What one writing client saw acknowledged, and what it could not be sure of.
#[derive(Debug, Default)]
struct Record {
    /// Ids of the objects whose insert was acknowledged (each with `count: 1`).
    inserted: Vec<u64>,
    /// Increments of its tally object acknowledged, and the last count one returned.
    incr_acked: i64,
    last_count: i64,
    /// Increments that failed: each may or may not have been applied.
    incr_unsure: i64,
    /// Requests that failed with an outage code or a lost connection, by code.
    failures: std::collections::BTreeMap<String, u64>,
    /// Anything else that went wrong (must stay empty).
    wrong: Vec<String>,
}

/// A client of the test: its name (the `name` of its objects), the gates it knows (its own
/// first) and its tally object.
struct Writer {
    name: String,
    gates: Vec<SocketAddr>,
    tally: u64,
    /// Acknowledged writes so far, for the test to watch progress.
    acks: Arc<AtomicU64>,
}

/// A failed request: a lost connection (try the next gate) or an error frame.
fn judge(err: &ClientError, rec: &mut Record, what: &str) -> bool {
    let code = match err.server() {
        Some(reply) => reply.code.clone(),
        None => "connection lost".to_owned(),
    };
    *rec.failures.entry(code).or_default() += 1;
    match err.server() {
        Some(reply) if OUTAGE.contains(&reply.code.as_str()) => false,
        Some(reply) => {
            rec.wrong.push(format!("{what}: {reply:?}"));
            false
        }
        None => true,
    }
}

impl Writer {
    /// Writes until `stop`: a fresh id, an object with it, an increment of the tally; each
    /// step on whichever gate answers, reconnecting to the next one when its connection is lost.
    async fn run(self, stop: Arc<AtomicBool>) -> Record {
        let mut rec = Record::default();
        let mut client: Option<Client> = None;
        let mut gate = 0;
        while !stop.load(Ordering::SeqCst) {
            let Some(c) = client.as_mut() else {
                let addr = self.gates[gate % self.gates.len()];
                match tokio::time::timeout(Duration::from_secs(2), Client::connect(addr)).await {
                    Ok(Ok(mut c)) => {
                        c.set_timeout(Duration::from_secs(5));
                        client = Some(c);
                    }
                    _ => {
                        gate += 1;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
                continue;
            };
            let id = match c.call::<_, u64>(307, &()).await {
                Ok(id) => id,
                Err(e) => {
                    if judge(&e, &mut rec, "alloc") {
                        (client, gate) = (None, gate + 1);
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            };
            let object = json!({"id": id, "name": self.name, "count": 1, "note": null});
            match c.call::<_, u64>(301, &object).await {
                Ok(_) => {
                    rec.inserted.push(id);
                    self.acks.fetch_add(1, Ordering::SeqCst);
                }
                Err(e) => {
                    if judge(&e, &mut rec, "insert") {
                        (client, gate) = (None, gate + 1);
                    }
                    continue;
                }
            }
            match c
                .call::<_, i64>(303, &json!({"id": self.tally, "by": 1}))
                .await
            {
                Ok(count) => {
                    // Only this writer increments it: each acknowledged count is above the
                    // last, by one plus the unsure ones that did land.
                    if count <= rec.last_count {
                        rec.wrong
                            .push(format!("tally went {} -> {count}", rec.last_count));
                    }
                    rec.last_count = count;
                    rec.incr_acked += 1;
                    self.acks.fetch_add(1, Ordering::SeqCst);
                }
                Err(e) => {
                    rec.incr_unsure += 1;
                    if judge(&e, &mut rec, "incr") {
                        (client, gate) = (None, gate + 1);
                    }
                }
            }
        }
        rec
    }
}

/// `command` through `gate` on a fresh connection, retried until it succeeds (60 s at most).
async fn call_until_ok(gate: SocketAddr, command: u32, req: &Value) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let last = match Client::connect(gate).await {
            Ok(mut c) => {
                c.set_timeout(Duration::from_secs(5));
                match c.call::<_, Value>(command, req).await {
                    Ok(v) => return v,
                    Err(e) => e.to_string(),
                }
            }
            Err(e) => e.to_string(),
        };
        assert!(
            Instant::now() < deadline,
            "command {command} through {gate} kept failing: {last}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends reads through `gate` until its `/metrics` at `metrics` counts more than `above` calls
/// to `peer` (`within` at most): that gate routes to that node.
async fn routes_to(
    gate: SocketAddr,
    metrics: SocketAddr,
    peer: &str,
    above: u64,
    within: Duration,
) {
    let deadline = Instant::now() + within;
    while rpc_counter(metrics, METRICS_TOKEN, "calls", peer).await <= above {
        assert!(
            Instant::now() < deadline,
            "{gate} sent no request to {peer} within {within:?}"
        );
        // A read of an object that does not exist: nil, wherever it runs.
        if let Ok(Ok(mut c)) =
            tokio::time::timeout(Duration::from_secs(2), Client::connect(gate)).await
        {
            c.set_timeout(Duration::from_secs(5));
            let _ = c.call::<_, Value>(302, &json!({"id": 0})).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until every writer has had `more` writes acknowledged since `since` (their counts
/// then), `within` at most.
async fn each_acknowledges(
    writers: &[(String, Arc<AtomicU64>)],
    since: &[u64],
    more: u64,
    within: Duration,
    what: &str,
) {
    let deadline = Instant::now() + within;
    let started = Instant::now();
    for ((name, acks), since) in writers.iter().zip(since) {
        while acks.load(Ordering::SeqCst) < since + more {
            assert!(
                Instant::now() < deadline,
                "{what}: {name} had {} writes acknowledged within {within:?}, {more} wanted",
                acks.load(Ordering::SeqCst) - since
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    eprintln!(
        "{what}: every client had {more} more writes acknowledged after {:?}",
        started.elapsed()
    );
}

fn counts(writers: &[(String, Arc<AtomicU64>)]) -> Vec<u64> {
    writers
        .iter()
        .map(|(_, a)| a.load(Ordering::SeqCst))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hosts_serve_through_a_host_cut_off_and_a_host_killed_on_nats() {
    let database = service_url("FIREFLY_TEST_POSTGRES_URL");
    // The hosts have no way out of their network: built here first (which may download crates
    // or the wasm target), the module is already built when each host's `firefly up` asks.
    firefly::builder::build_module(&workspace().join("modules").join("counters")).unwrap();
    // Declared first, dropped last: every process in the namespaces is gone before the
    // network is.
    let lab = Lab::new(3);
    let (h1, h2, h3) = (&lab.hosts[0], &lab.hosts[1], &lab.hosts[2]);
    let on_bridge = &lab.services_ip;
    let nats = private_nats_at(on_bridge, free_addr_on(on_bridge).port(), &[]);
    let redis = private_redis_at(on_bridge, free_addr_on(on_bridge).port());
    // The hosts reach PostgreSQL (on this machine's loopback) through a relay on the bridge.
    let (scheme_user, target, db) = split_url(&database);
    let relay = Relay::start(on_bridge, &target);
    let database_via_relay = format!("{scheme_user}{}{db}", relay.addr);

    let at = |ip: &str, port: u16| -> SocketAddr { format!("{ip}:{port}").parse().unwrap() };
    let (gate_a, gate_b) = (at(&h1.ip, GATE_PORT), at(&h3.ip, GATE_PORT));
    let (metrics_a, metrics_b) = (at(&h1.ip, METRICS_PORT), at(&h3.ip, METRICS_PORT));
    let admin = at(&h2.ip, 9998);
    let pid = std::process::id();
    let prefix = format!("netns{pid}_");
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("metrics-token");
    std::fs::write(&token_file, METRICS_TOKEN).unwrap();
    let gate = |ip: &str, listen: SocketAddr, metrics: SocketAddr| {
        let (ip, token_file) = (ip.to_owned(), token_file.clone());
        move |n: Node| {
            n.host(&ip)
                .tcp(listen)
                .metrics_with_token(metrics, token_file)
                .route_by("301-310", &["logic-1", "logic-2"], "round_robin")
        }
    };
    let topology = Topology::new(&format!("netns-{pid}"))
        .nats(&nats.url)
        .admin(admin)
        .rpc_timeout("2s")
        .module("counters")
        .node("gate-a", gate(&h1.ip, gate_a, metrics_a))
        .node("logic-1", |n| n.host(&h2.ip).modules(&["counters"]))
        .node("gate-b", gate(&h3.ip, gate_b, metrics_b))
        .node("logic-2", |n| n.host(&h3.ip).modules(&["counters"]))
        .storage(Storage {
            database: Some(database_via_relay),
            cache: Some(redis.url.clone()),
            table_prefix: Some(prefix.clone()),
            flush_interval: Some("2s"),
            ..Storage::default()
        });
    // One copy of the file per machine, so each has its own state directory, as apart.
    let topology = |host: usize| topology.write(&dir.path().join(format!("h{host}")));
    // The same cluster secret everywhere; the admin token only where the admin API is.
    let up = |host: usize| {
        Up::new(&topology(host))
            .in_netns(&lab.hosts[host - 1].ns)
            .env("FIREFLY_CLUSTER_SECRET", SECRET)
            .args(["--host", &lab.hosts[host - 1].ip])
            .tag(format!("h{host}"))
    };
    let _h2_up = up(2)
        .env("FIREFLY_ADMIN_TOKEN", TOKEN)
        .ready_on_status(admin, TOKEN, 1)
        .start();
    let mut h1_up = up(1).arg("--no-admin").ready_on_gate(&[gate_a]).start();
    let mut h3_up = up(3).arg("--no-admin").ready_on_gate(&[gate_b]).start();

    // Both gates reach both logic nodes over NATS.
    for (gate, metrics) in [(gate_a, metrics_a), (gate_b, metrics_b)] {
        for logic in ["logic-1", "logic-2"] {
            routes_to(gate, metrics, logic, 0, Duration::from_secs(120)).await;
        }
    }

    // Four clients, two on each gate, each with a tally object of its own.
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    let mut tasks = Vec::new();
    for (name, gates) in [
        ("a1", [gate_a, gate_b]),
        ("a2", [gate_a, gate_b]),
        ("b1", [gate_b, gate_a]),
        ("b2", [gate_b, gate_a]),
    ] {
        let tally = call_until_ok(gates[0], 307, &json!(null))
            .await
            .as_u64()
            .unwrap();
        let object =
            json!({"id": tally, "name": format!("tally-{name}"), "count": 0, "note": null});
        call_until_ok(gates[0], 301, &object).await;
        let acks = Arc::new(AtomicU64::new(0));
        writers.push((name.to_owned(), acks.clone()));
        let writer = Writer {
            name: name.to_owned(),
            gates: gates.to_vec(),
            tally,
            acks,
        };
        tasks.push((name, tally, tokio::spawn(writer.run(stop.clone()))));
    }
    each_acknowledges(
        &writers,
        &[0; 4],
        20,
        Duration::from_secs(60),
        "all hosts up",
    )
    .await;

    // 1. h3 (gate-b, logic-2) cut off.
    let logic_2_calls = rpc_counter(metrics_a, METRICS_TOKEN, "calls", "logic-2").await;
    lab.cut(2);
    each_acknowledges(
        &writers,
        &counts(&writers),
        30,
        Duration::from_secs(60),
        "h3 cut off",
    )
    .await;
    let reached = tokio::time::timeout(Duration::from_secs(2), async {
        let mut c = Client::connect(gate_b).await?;
        c.call::<_, Value>(302, &json!({"id": 0})).await
    })
    .await;
    assert!(
        !matches!(reached, Ok(Ok(_))),
        "gate-b still answers while h3 is cut off: the cut did not cut"
    );

    // 2. h3 back: gate-b serves again, and gate-a sends logic-2 requests again.
    lab.heal(2);
    let healed = Instant::now();
    call_until_ok(gate_b, 302, &json!({"id": 0})).await;
    routes_to(
        gate_a,
        metrics_a,
        "logic-2",
        logic_2_calls,
        Duration::from_secs(60),
    )
    .await;
    eprintln!("h3 back: served again after {:?}", healed.elapsed());
    each_acknowledges(
        &writers,
        &counts(&writers),
        20,
        Duration::from_secs(60),
        "h3 back",
    )
    .await;

    // 3. h2 (logic-1 and the master with the admin API) loses power.
    let killed = lab.kill_all(1);
    assert!(killed >= 2, "h2 ran {killed} processes, 2 wanted");
    each_acknowledges(
        &writers,
        &counts(&writers),
        30,
        Duration::from_secs(60),
        "h2 killed",
    )
    .await;

    stop.store(true, Ordering::SeqCst);
    let mut records = Vec::new();
    for (name, tally, task) in tasks {
        let rec = tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .unwrap_or_else(|_| panic!("client {name} did not stop"))
            .unwrap();
        eprintln!(
            "client {name}: {} objects and {} increments acknowledged; failed: {:?}",
            rec.inserted.len(),
            rec.incr_acked,
            rec.failures
        );
        assert!(rec.wrong.is_empty(), "client {name}: {:?}", rec.wrong);
        records.push((name, tally, rec));
    }

    // Every acknowledged write, read through both gates (both served by logic-2 now).
    let mut tallies = Vec::new();
    for (name, tally, rec) in &records {
        let mut seen = Vec::new();
        for gate in [gate_a, gate_b] {
            let listed = call_until_ok(gate, 306, &json!({"name": name})).await;
            let listed: Vec<u64> = listed
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap())
                .collect();
            for id in &rec.inserted {
                assert!(
                    listed.contains(id),
                    "{name}'s object {id} not listed via {gate}"
                );
                let read = call_until_ok(gate, 302, &json!({"id": id})).await;
                assert_eq!(
                    read["counter"]["count"], 1,
                    "{name}'s object {id} via {gate}"
                );
            }
            let count = call_until_ok(gate, 302, &json!({"id": tally})).await["counter"]["count"]
                .as_i64()
                .unwrap();
            assert!(
                count >= rec.last_count && count <= rec.incr_acked + rec.incr_unsure,
                "{name}'s tally is {count} via {gate}: {} increments acknowledged (the last \
                 returned {}), {} unsure",
                rec.incr_acked,
                rec.last_count,
                rec.incr_unsure
            );
            assert!(rec.last_count >= rec.incr_acked, "{name}: {rec:?}");
            seen.push(count);
        }
        assert_eq!(seen[0], seen[1], "{name}'s tally via gate-a and gate-b");
        tallies.push(seen[0]);
    }

    // A graceful stop flushes what is left to PostgreSQL, which then has it all.
    for (host, running) in [("h1", &mut h1_up), ("h3", &mut h3_up)] {
        let exit = running.terminate(Duration::from_secs(30));
        assert!(
            exit.is_some_and(|s| s.success()),
            "{host}'s firefly up: {exit:?}"
        );
    }
    let pool = sqlx::PgPool::connect(&database).await.unwrap();
    // Identifiers cannot be bound; the prefix is this test's own.
    let select = format!("SELECT \"id\", \"count\" FROM \"{prefix}counters\" WHERE \"name\" = $1");
    for ((name, tally, rec), count) in records.iter().zip(&tallies) {
        let rows: Vec<(i64, i64)> = sqlx::query_as(AssertSqlSafe(select.as_str()))
            .bind(*name)
            .fetch_all(&pool)
            .await
            .unwrap();
        for id in &rec.inserted {
            let id = i64::try_from(*id).unwrap();
            assert!(
                rows.contains(&(id, 1)),
                "{name}'s object {id} is not in PostgreSQL"
            );
        }
        let rows: Vec<(i64, i64)> = sqlx::query_as(AssertSqlSafe(select.as_str()))
            .bind(format!("tally-{name}"))
            .fetch_all(&pool)
            .await
            .unwrap();
        assert_eq!(
            rows,
            [(i64::try_from(*tally).unwrap(), *count)],
            "{name}'s tally in PostgreSQL"
        );
    }
    // This run's tables, gone with it.
    let tables: Vec<(String,)> = sqlx::query_as(
        "SELECT table_name::text FROM information_schema.tables WHERE table_name LIKE $1",
    )
    .bind(format!("{prefix}%"))
    .fetch_all(&pool)
    .await
    .unwrap();
    for (table,) in tables {
        sqlx::query(AssertSqlSafe(format!("DROP TABLE IF EXISTS \"{table}\"")))
            .execute(&pool)
            .await
            .unwrap();
    }
}
