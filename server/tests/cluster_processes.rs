//! A real multi-process cluster started by `firefly up`: supervision, the admin API,
//! `firefly status`, and a logic node killed with SIGKILL under a connected client.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly on purpose"
)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use firefly::client::Client;
use firefly::master::http_request;

mod common;

use common::{Running, Topology, Up, alive, free_addr, free_addr_on, node};

const TOKEN: &str = "test-admin-token-0123456789";

/// A `firefly up` of this file's cluster (dropping it stops it).
struct Cluster {
    master: Running,
    gate: SocketAddr,
    admin: SocketAddr,
    topology: PathBuf,
    _dir: tempfile::TempDir,
}

fn up() -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let (admin, g, a, b, client) = (
        free_addr(),
        free_addr(),
        free_addr(),
        free_addr(),
        free_addr(),
    );
    let topology = Topology::new("proc")
        .admin(admin)
        .rpc_timeout("2s")
        .module("echo")
        .module("lobby")
        .node("gate", |n| {
            n.rpc(g)
                .tcp(client)
                .route_by("1", &["logic-1", "logic-2"], "round_robin")
                .route("101-106", &["logic-1"])
        })
        .node("logic-1", |n| n.rpc(a).modules(&["echo", "lobby"]))
        .node("logic-2", |n| n.rpc(b).modules(&["echo", "lobby"]))
        .write(dir.path());
    let master = up_with_secrets(&topology)
        .ready_on_status(admin, TOKEN, 3)
        .start();
    Cluster {
        master,
        gate: client,
        admin,
        topology,
        _dir: dir,
    }
}

/// `firefly up` of `topology` with this file's admin token and cluster secret.
fn up_with_secrets(topology: &Path) -> Up {
    Up::new(topology)
        .env("FIREFLY_ADMIN_TOKEN", TOKEN)
        .env("FIREFLY_CLUSTER_SECRET", "process-test-secret-0123456789")
}

async fn status(admin: SocketAddr) -> serde_json::Value {
    common::status(admin, TOKEN).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_logic_node_is_restarted_and_clients_stay_connected() {
    let cluster = up();

    // The admin API wants the token.
    for bad in ["", "wrong-token"] {
        let (code, _) = http_request(cluster.admin, "GET", "/status", bad)
            .await
            .unwrap();
        assert_eq!(code, 401);
    }
    let (code, _) = http_request(cluster.admin, "POST", "/stop", "nope")
        .await
        .unwrap();
    assert_eq!(code, 401);

    let mut client = Client::connect(cluster.gate).await.unwrap();
    for _ in 0..4 {
        assert_eq!(&client.request(1, b"ping").await.unwrap()[..], b"ping");
    }
    // Every node answers the master once it has loaded its modules (slow on a busy machine).
    let deadline = Instant::now() + Duration::from_secs(180);
    let before = loop {
        let s = status(cluster.admin).await;
        let all = ["gate", "logic-1", "logic-2"]
            .iter()
            .all(|name| node(&s, name)["healthy"] == true);
        if all || Instant::now() > deadline {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for name in ["gate", "logic-1", "logic-2"] {
        assert_eq!(node(&before, name)["healthy"], true, "{before}");
    }
    let victim = node(&before, "logic-2")["pid"].as_u64().unwrap();

    // `firefly status` prints the same as a table.
    let out = common::firefly()
        .args(["status", "-c"])
        .arg(&cluster.topology)
        .env("FIREFLY_ADMIN_TOKEN", TOKEN)
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        table.contains("logic-2") && table.contains("healthy") && table.contains("echo@v1"),
        "{table}"
    );

    assert!(
        Command::new("kill")
            .args(["-9", &victim.to_string()])
            .status()
            .unwrap()
            .success()
    );

    // Requests routed to the dead node fail fast with node_unavailable; the client stays
    // connected; once the master has restarted it, every request succeeds again.
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut failures, mut ok_in_a_row) = (0, 0);
    while ok_in_a_row < 10 {
        assert!(Instant::now() < deadline, "never recovered");
        let sent = Instant::now();
        match client.request(1, b"during").await {
            Ok(reply) => {
                assert_eq!(&reply[..], b"during");
                ok_in_a_row += 1;
            }
            Err(err) => {
                let reply = err
                    .server()
                    .unwrap_or_else(|| panic!("the client must stay connected: {err}"));
                assert!(
                    ["node_unavailable", "timeout"].contains(&reply.code.as_str()),
                    "{reply:?}"
                );
                assert!(
                    sent.elapsed() < Duration::from_secs(3),
                    "a failure must come within the rpc timeout"
                );
                failures += 1;
                ok_in_a_row = 0;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    assert!(failures > 0, "the kill went unnoticed");
    let after = status(cluster.admin).await;
    let restarted = node(&after, "logic-2");
    assert_eq!(restarted["restarts"], 1, "{after}");
    assert_ne!(restarted["pid"].as_u64().unwrap(), victim);

    // A graceful stop through the API ends the master.
    let (code, _) = http_request(cluster.admin, "POST", "/stop", TOKEN)
        .await
        .unwrap();
    assert_eq!(code, 202);
    let mut cluster = cluster;
    let status = cluster
        .master
        .wait_exit(Duration::from_secs(30))
        .expect("master did not stop");
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hosts_form_one_cluster() {
    // Two "machines": 127.0.0.1 runs the master's admin API and the gate, 127.0.0.2 the logic
    // node; each runs its own `firefly up --host`.
    let dir = tempfile::tempdir().unwrap();
    let (admin, gate_rpc, client) = (free_addr(), free_addr(), free_addr());
    let logic_rpc = free_addr_on("127.0.0.2");
    let topology = Topology::new("hosts")
        .admin(admin)
        .module("lobby")
        .node("gate", |n| {
            n.host("127.0.0.1")
                .rpc(gate_rpc)
                .tcp(client)
                .route("101-106", &["logic"])
        })
        .node("logic", |n| {
            n.host("127.0.0.2").rpc(logic_rpc).modules(&["lobby"])
        })
        .write(dir.path());
    // No admin API on 127.0.0.2: its node is up once its node-to-node port serves.
    let _procs = [
        up_with_secrets(&topology)
            .args(["--host", "127.0.0.2", "--no-admin"])
            .ready_on_rpc(&[logic_rpc])
            .start(),
        up_with_secrets(&topology)
            .args(["--host", "127.0.0.1"])
            .ready_on_status(admin, TOKEN, 1)
            .start(),
    ];
    let mut client = Client::connect(client).await.unwrap();
    let hello: serde_json::Value = client
        .call(101, &serde_json::json!({"name": "across hosts"}))
        .await
        .unwrap();
    assert_eq!(hello["greeting"], "Hello, across hosts!");
    // The master on 127.0.0.1 reports the node it supervises and sees the other one live.
    let status = status(admin).await;
    assert_eq!(node(&status, "gate")["healthy"], true, "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_do_not_outlive_a_killed_master() {
    let mut cluster = up();
    let before = status(cluster.admin).await;
    let pids: Vec<u64> = ["gate", "logic-1", "logic-2"]
        .iter()
        .map(|n| node(&before, n)["pid"].as_u64().unwrap())
        .collect();
    cluster.master.kill();
    let deadline = Instant::now() + Duration::from_secs(20);
    while pids.iter().any(|&p| alive(p)) {
        assert!(
            Instant::now() < deadline,
            "node processes outlived their master: {pids:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
