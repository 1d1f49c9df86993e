//! Readiness: a gate whose port is open is not yet ready to serve what it routes. `firefly up`
//! says a node is ready only once it is linked to every node it needs, and from then on its
//! routed requests are served.
//!
//! Found in CI: a gate started before its logic node had dialed it and failed, so its link
//! backed off (up to 2 s); the master then called both nodes `healthy` while the gate still
//! answered `node_unavailable: … not reachable; retrying shortly` to the first requests.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly on purpose"
)]

use std::time::{Duration, Instant};

use firefly::client::{Client, ClientError};

mod common;

use common::{Storage, Topology, Up, free_addr, node};

const TOKEN: &str = "ready-admin-token-0123456789";
const SECRET: &str = "ready-cluster-secret-0123456789";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gate_is_ready_only_once_linked_and_then_serves_every_routed_request() {
    let dir = tempfile::tempdir().unwrap();
    let (admin, gate_rpc, logic_rpc, listen) = (free_addr(), free_addr(), free_addr(), free_addr());
    let db = dir.path().join("data.db");
    let topology = Topology::new("ready")
        .admin(admin)
        .module("echo")
        .module("lobby")
        .node("gate", |n| {
            n.rpc(gate_rpc)
                .modules(&["echo"])
                .tcp(listen)
                .route("101-110", &["logic"])
        })
        .node("logic", |n| n.rpc(logic_rpc).modules(&["lobby"]))
        .storage(Storage {
            database: Some(format!("sqlite://{}", db.display())),
            cache: Some("embedded".into()),
            owner: Some("logic".into()),
            ..Storage::default()
        })
        .write(dir.path());
    let up = |only: &str| {
        Up::new(&topology)
            .env("FIREFLY_ADMIN_TOKEN", TOKEN)
            .env("FIREFLY_CLUSTER_SECRET", SECRET)
            .args(["--only", only])
            .tag(format!("up {only}"))
    };

    // The gate alone: its port answers, its routed commands cannot be served yet.
    let _gate = up("gate").ready_on_gate(&[listen]).start();
    let mut client = Client::connect(listen).await.unwrap();
    let hello = serde_json::json!({ "name": "early" });
    // Long enough for its link's backoff to reach its longest (2 s) and stay there.
    let first = Instant::now();
    while first.elapsed() < Duration::from_secs(4) {
        let err = client
            .call::<_, serde_json::Value>(101, &hello)
            .await
            .unwrap_err();
        let ClientError::Server(reply) = &err else {
            panic!("{err}");
        };
        assert_eq!(reply.code, "node_unavailable", "{err}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = common::status(admin, TOKEN).await;
    let gate = node(&status, "gate");
    assert_eq!(gate["healthy"], true, "{status}");
    assert_eq!(gate["ready"], false, "{status}");
    assert_eq!(status["ready"], false, "{status}");
    assert_eq!(
        gate["live"]["links"],
        serde_json::json!([{ "peer": "logic", "up": false }]),
        "{status}"
    );
    let out = common::firefly()
        .args(["status", "-c"])
        .arg(&topology)
        .env("FIREFLY_ADMIN_TOKEN", TOKEN)
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("not ready") && table.contains("linking"),
        "{table}"
    );

    // Its logic node, started on its own, while players keep knocking (each failed request
    // may dial again and lengthen the gate's backoff, as in the CI run that found this): as
    // soon as the gate's master says ready, every routed request is served.
    let knocking = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let knocker = {
        let knocking = knocking.clone();
        tokio::spawn(async move {
            let mut client = Client::connect(listen).await.unwrap();
            let hello = serde_json::json!({ "name": "knock" });
            while knocking.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = client.call::<_, serde_json::Value>(101, &hello).await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let _logic = up("logic")
        .arg("--no-admin")
        .ready_on_rpc(&[logic_rpc])
        .start();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = common::status(admin, TOKEN).await;
        if status["ready"] == true {
            assert_eq!(
                node(&status, "gate")["live"]["links"],
                serde_json::json!([{ "peer": "logic", "up": true }]),
                "{status}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "never ready: {status}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    knocking.store(false, std::sync::atomic::Ordering::Relaxed);
    knocker.await.unwrap();
    for i in 0..30 {
        let name = format!("player {i}");
        let greeting: serde_json::Value = client
            .call(101, &serde_json::json!({ "name": name }))
            .await
            .unwrap_or_else(|e| panic!("request {i} right after ready: {e}"));
        assert_eq!(greeting["greeting"], format!("Hello, {name}!"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firefly_up_writes_its_ready_file_once_every_node_is_linked() {
    let dir = tempfile::tempdir().unwrap();
    let (gate_rpc, logic_rpc, listen) = (free_addr(), free_addr(), free_addr());
    let topology = Topology::new("ready-file")
        .module("lobby")
        .node("gate", |n| {
            n.rpc(gate_rpc).tcp(listen).route("101-110", &["logic"])
        })
        .node("logic", |n| n.rpc(logic_rpc).modules(&["lobby"]))
        .write(dir.path());
    let ready = dir.path().join("ready");
    let up = Up::new(&topology)
        .env("FIREFLY_CLUSTER_SECRET", SECRET)
        .ready_when_linked(&ready)
        .start();
    let listed = std::fs::read_to_string(&ready).unwrap();
    assert!(
        listed.lines().any(|l| l == "gate") && listed.lines().any(|l| l == "logic"),
        "{listed}"
    );
    let mut client = Client::connect(listen).await.unwrap();
    let greeting: serde_json::Value = client
        .call(101, &serde_json::json!({ "name": "first" }))
        .await
        .unwrap();
    assert_eq!(greeting["greeting"], "Hello, first!");
    drop(up);
    assert!(!ready.exists(), "the ready file outlived `firefly up`");
}
