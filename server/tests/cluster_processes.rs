//! A real multi-process cluster started by `firefly up`: supervision, the admin API,
//! `firefly status`, and a logic node killed with SIGKILL under a connected client.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly on purpose"
)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use firefly::client::Client;
use firefly::master::http_request;

mod common;

use common::{free_addr, free_addr_on, stop, workspace};

const TOKEN: &str = "test-admin-token-0123456789";

struct Cluster {
    master: Child,
    gate: SocketAddr,
    admin: SocketAddr,
    topology: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        stop(&mut self.master);
    }
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
    let m = workspace().join("modules");
    let yaml = format!(
        "version: 1\ncluster: proc\nmaster:\n  admin: {admin}\n  rpc_timeout: 2s\nmodules:\n  echo: {{ crate: {m}/echo }}\n  lobby: {{ crate: {m}/lobby }}\nnodes:\n  gate:\n    rpc: {g}\n    listen:\n      - tcp: {client}\n    routes:\n      - {{ commands: 1, to: [logic-1, logic-2], policy: round_robin }}\n      - {{ commands: \"101-106\", to: logic-1 }}\n  logic-1: {{ rpc: {a}, modules: [echo, lobby] }}\n  logic-2: {{ rpc: {b}, modules: [echo, lobby] }}\n",
        m = m.display()
    );
    let topology = dir.path().join("topology.yaml");
    std::fs::write(&topology, yaml).unwrap();
    let master = spawn_up(&topology, &[], 3);
    Cluster {
        master,
        gate: client,
        admin,
        topology,
        _dir: dir,
    }
}

async fn status(admin: SocketAddr) -> serde_json::Value {
    let (code, body) = http_request(admin, "GET", "/status", TOKEN).await.unwrap();
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

fn node<'a>(status: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == name)
        .unwrap()
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
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = cluster.master.try_wait().unwrap() {
            assert!(status.success(), "{status}");
            break;
        }
        assert!(Instant::now() < deadline, "master did not stop");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Starts `firefly up` with extra arguments and waits for `ready` "listening for nodes" lines.
fn spawn_up(topology: &Path, extra: &[&str], ready: usize) -> Child {
    let mut child = common::firefly()
        .args(["up", "-c"])
        .arg(topology)
        .args(extra)
        .env("FIREFLY_ADMIN_TOKEN", TOKEN)
        .env("FIREFLY_CLUSTER_SECRET", "process-test-secret-0123456789")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    let tag = extra.join(" ");
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("[up {tag}] {line}");
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut seen = 0;
    while seen < ready {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx.recv_timeout(left).expect("nodes never came up");
        if line.contains("listening for nodes on") {
            seen += 1;
        }
    }
    std::mem::forget(rx);
    child
}

struct Reaper(Vec<Child>);

impl Drop for Reaper {
    fn drop(&mut self) {
        for child in &mut self.0 {
            stop(child);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hosts_form_one_cluster() {
    // Two "machines": 127.0.0.1 runs the master's admin API and the gate, 127.0.0.2 the logic
    // node; each runs its own `firefly up --host`.
    let dir = tempfile::tempdir().unwrap();
    let (admin, gate_rpc, client) = (free_addr(), free_addr(), free_addr());
    let logic_rpc = free_addr_on("127.0.0.2");
    let m = workspace().join("modules");
    let yaml = format!(
        "version: 1\ncluster: hosts\nmaster:\n  admin: {admin}\nmodules:\n  lobby: {{ crate: {m}/lobby }}\nnodes:\n  gate:\n    host: 127.0.0.1\n    rpc: {gate_rpc}\n    listen:\n      - tcp: {client}\n    routes:\n      - {{ commands: \"101-106\", to: logic }}\n  logic:\n    host: 127.0.0.2\n    rpc: {logic_rpc}\n    modules: [lobby]\n",
        m = m.display()
    );
    let topology = dir.path().join("topology.yaml");
    std::fs::write(&topology, yaml).unwrap();
    let _procs = Reaper(vec![
        spawn_up(&topology, &["--host", "127.0.0.2", "--no-admin"], 1),
        spawn_up(&topology, &["--host", "127.0.0.1"], 1),
    ]);
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
    let _ = cluster.master.kill();
    let _ = cluster.master.wait();
    let alive = |pid: u64| {
        Command::new("kill")
            .args(["-0", &pid.to_string()])
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while pids.iter().any(|&p| alive(p)) {
        assert!(
            Instant::now() < deadline,
            "node processes outlived their master: {pids:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
