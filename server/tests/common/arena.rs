//! Room clusters for process tests: the example game's (a gate, a `lobby` node with
//! `accounts`, `matchmaking`, `leaderboard` and the embedded store, and two `arena` nodes the
//! gate routes arena rooms to by room), `countdown`'s (a gate routing by room to two logic
//! nodes); and the steps of a player (log in, wait for a push).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use firefly::client::Client;
use serde_json::{Value, json};

use super::{Running, Storage, Topology, Up, free_addr, node};

/// A running room cluster ([`arena_cluster`], [`countdown_cluster`]).
pub struct Arena {
    /// The master's admin API.
    pub admin: SocketAddr,
    /// The gate's client listener.
    pub gate: SocketAddr,
    /// Holds the cluster's files.
    _dir: tempfile::TempDir,
    _cluster: Running,
}

/// The node names of a [`countdown_cluster`].
pub const COUNTDOWN_NODES: [&str; 3] = ["gate", "logic-1", "logic-2"];

/// Starts cluster `name` (admin token `token`, cluster secret `secret`): a gate routing
/// `countdown`'s commands by room to `logic-1` and `logic-2`, with the embedded store on the
/// gate when `stored` (else the default storage); waits until every node is ready and
/// answers the status then.
pub async fn countdown_cluster(
    name: &str,
    token: &str,
    secret: &str,
    stored: bool,
) -> (Arena, Value) {
    let dir = tempfile::tempdir().unwrap();
    let (admin, g, a, b, gate) = (
        free_addr(),
        free_addr(),
        free_addr(),
        free_addr(),
        free_addr(),
    );
    let mut topology = Topology::new(name)
        .admin(admin)
        .rpc_timeout("2s")
        .module("countdown")
        .node("gate", |n| {
            n.rpc(g)
                .tcp(gate)
                .route_by("471-474", &["logic-1", "logic-2"], "room")
        })
        .node("logic-1", |n| n.rpc(a).modules(&["countdown"]))
        .node("logic-2", |n| n.rpc(b).modules(&["countdown"]));
    if stored {
        topology = topology.storage(Storage::embedded_sqlite(
            &dir.path().join("data.db"),
            "gate",
        ));
    }
    let topology = topology.write(dir.path());
    let cluster = Up::new(&topology)
        .env("FIREFLY_ADMIN_TOKEN", token)
        .env("FIREFLY_CLUSTER_SECRET", secret)
        .ready_on_status(admin, token, COUNTDOWN_NODES.len())
        .start();
    let status = healthy(admin, token, &COUNTDOWN_NODES, Duration::from_secs(180)).await;
    let cluster = Arena {
        admin,
        gate,
        _dir: dir,
        _cluster: cluster,
    };
    (cluster, status)
}

/// The node names of an [`Arena`] cluster.
pub const ARENA_NODES: [&str; 4] = ["gate", "lobby", "arena-1", "arena-2"];

/// Starts cluster `name` (admin token `token`, cluster secret `secret`) and waits until every
/// node is ready.
pub async fn arena_cluster(name: &str, token: &str, secret: &str) -> Arena {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let (admin, g, l, a, b, gate) = (
        free_addr(),
        free_addr(),
        free_addr(),
        free_addr(),
        free_addr(),
        free_addr(),
    );
    let topology = Topology::new(name)
        .admin(admin)
        .rpc_timeout("2s")
        .module("accounts")
        .module("matchmaking")
        .module("leaderboard")
        .module("arena")
        .node("gate", |n| {
            n.rpc(g)
                .tcp(gate)
                .route_by("201-207", &["lobby"], "sticky")
                .route_by("481-483", &["lobby"], "sticky")
                .route_by("501-504", &["lobby"], "round_robin")
                .route_by("491-494", &["arena-1", "arena-2"], "room")
        })
        .node("lobby", |n| {
            n.rpc(l)
                .modules(&["accounts", "matchmaking", "leaderboard"])
        })
        .node("arena-1", |n| n.rpc(a).modules(&["arena"]))
        .node("arena-2", |n| n.rpc(b).modules(&["arena"]))
        .storage(Storage {
            database: Some(format!("sqlite://{d}/data.db")),
            journal: Some(format!("{d}/journal.db")),
            owner: Some("lobby".into()),
            flush_interval: Some("100ms"),
            ..Storage::default()
        })
        .write(dir.path());
    let cluster = Up::new(&topology)
        .env("FIREFLY_ADMIN_TOKEN", token)
        .env("FIREFLY_CLUSTER_SECRET", secret)
        .ready_on_status(admin, token, ARENA_NODES.len())
        .start();
    healthy(admin, token, &ARENA_NODES, Duration::from_secs(180)).await;
    Arena {
        admin,
        gate,
        _dir: dir,
        _cluster: cluster,
    }
}

/// Waits until each of `names` is ready (healthy, and linked to every node it needs: a
/// restarted node's gate links again a moment after it answers the master); the status then.
pub async fn healthy(admin: SocketAddr, token: &str, names: &[&str], within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let s = super::status(admin, token).await;
        if names.iter().all(|n| node(&s, n)["ready"] == true) {
            return s;
        }
        assert!(Instant::now() < deadline, "nodes never all healthy: {s}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The next push on `topic`, skipping others; panics on a closed connection or a timeout.
pub async fn push_on(c: &mut Client, topic: u32) -> Value {
    loop {
        let push = c.next_push().await.expect("a push");
        if push.command == topic {
            return rmp_serde::from_slice(&push.payload).unwrap();
        }
    }
}

/// Registers (if new) and logs in `name` through `gate`: the client and its account id.
pub async fn login(gate: SocketAddr, name: &str) -> (Client, String) {
    let mut c = Client::connect(gate).await.unwrap();
    c.set_timeout(Duration::from_secs(20));
    let creds = json!({ "username": name, "password": "correct horse" });
    let _ = c.call::<_, Value>(201, &creds).await;
    let me: Value = c.call(202, &creds).await.unwrap();
    (c, me["account"].as_u64().unwrap().to_string())
}
