//! The example game's cluster for process tests: a gate, a `lobby` node (`accounts`,
//! `matchmaking`, `leaderboard`, and the embedded store) and two `arena` nodes that the gate
//! routes arena rooms to by room; and the steps of a player (log in, wait for a push).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use firefly::client::Client;
use serde_json::{Value, json};

use super::{Running, Storage, Topology, Up, free_addr, node};

/// A running arena cluster.
pub struct Arena {
    /// The master's admin API.
    pub admin: SocketAddr,
    /// The gate's client listener.
    pub gate: SocketAddr,
    /// Holds the cluster's files.
    _dir: tempfile::TempDir,
    _cluster: Running,
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
