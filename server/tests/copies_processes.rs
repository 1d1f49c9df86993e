//! A logic node with copies (`copies: any`) on the NATS fabric (`FIREFLY_TEST_NATS_URL`,
//! which `.ci/run` sets): each copy is its own `firefly up --only game`, as on its own
//! machine, and the gate's `to: game` reaches one copy per request through a NATS queue group.
//!
//! * One copy serves; a second is started later and takes a share of the requests, with
//!   nothing edited or restarted on the gate's side.
//! * The master's deploy swaps the module on every copy.
//! * A copy killed with SIGKILL leaves the queue group: every request after it is served by
//!   the copy left.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly on purpose"
)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use firefly::client::Client;

mod common;

use common::{Topology, Up, free_addr, node, status};

const TOKEN: &str = "copies-admin-token-0123456789";
const SECRET: &str = "copies-cluster-secret-0123456789";

/// The requests one `firefly up`'s copy of `game` has served, by its master's status.
async fn served_by(admin: SocketAddr) -> u64 {
    let status = status(admin, TOKEN).await;
    node(&status, "game")["live"]["requests"]
        .as_u64()
        .unwrap_or(0)
}

/// Its copy's process id.
async fn pid_of(admin: SocketAddr) -> u64 {
    let status = status(admin, TOKEN).await;
    node(&status, "game")["pid"].as_u64().unwrap()
}

/// Sends `whoami` (301) until it is answered; the answer.
async fn whoami(client: &mut Client, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        match client.request(301, b"hi").await {
            Ok(reply) => return String::from_utf8_lossy(&reply).into_owned(),
            Err(err) => {
                assert!(Instant::now() < deadline, "never served: {err}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_join_a_queue_group_take_deploys_and_cover_for_a_killed_one_on_nats() {
    let url = common::services::service_url("FIREFLY_TEST_NATS_URL");
    let dir = tempfile::tempdir().unwrap();
    let (gate_admin, b_admin, c_admin, listen) =
        (free_addr(), free_addr(), free_addr(), free_addr());
    let cluster = format!("copiesproc-{}", std::process::id());
    // One topology, as every machine has it; each machine's copy differs only in where its
    // own master's admin API listens (one file per "machine", in one folder: one state).
    let file = |name: &str, admin| {
        Topology::new(&cluster)
            .nats(&url)
            .admin(admin)
            .rpc_timeout("2s")
            .module("echo")
            .module("versioned")
            .node("gate", |n| {
                n.tcp(listen)
                    .route("1", &["game"])
                    .route("301-302", &["game"])
            })
            .node("game", |n| n.modules(&["echo", "versioned"]).copies("any"))
            .write_to(&dir.path().join(name))
    };
    let (gate_file, b_file, c_file) = (
        file("topology.yaml", gate_admin),
        file("machine-b.yaml", b_admin),
        file("machine-c.yaml", c_admin),
    );
    let up = |file: &Path, only: &str| {
        Up::new(file)
            .env("FIREFLY_ADMIN_TOKEN", TOKEN)
            .env("FIREFLY_CLUSTER_SECRET", SECRET)
            .args(["--only", only])
            .tag(format!("up {only} ({})", file.display()))
    };
    let _gate = up(&gate_file, "gate").ready_on_gate(&[listen]).start();
    let mut copy_b = up(&b_file, "game")
        .ready_on_status(b_admin, TOKEN, 1)
        .start();

    let mut client = Client::connect(listen).await.unwrap();
    assert_eq!(whoami(&mut client, Duration::from_secs(240)).await, "v1:hi");
    for i in 0..50u32 {
        let payload = i.to_be_bytes();
        assert_eq!(
            &client.request(1, &payload).await.unwrap()[..],
            &payload[..]
        );
    }
    assert!(served_by(b_admin).await >= 51);

    // A second copy, started on its own: the gate (untouched) sends it a share.
    let _copy_c = up(&c_file, "game")
        .ready_on_status(c_admin, TOKEN, 1)
        .start();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut sent = 0u32;
    while served_by(c_admin).await == 0 {
        assert!(
            Instant::now() < deadline,
            "the second copy was given none of {sent} requests"
        );
        for _ in 0..20 {
            sent += 1;
            let payload = sent.to_be_bytes();
            assert_eq!(
                &client.request(1, &payload).await.unwrap()[..],
                &payload[..]
            );
        }
    }
    let (b_before, c_before) = (served_by(b_admin).await, served_by(c_admin).await);
    for i in 0..200u32 {
        let payload = i.to_be_bytes();
        assert_eq!(
            &client.request(1, &payload).await.unwrap()[..],
            &payload[..]
        );
    }
    let (b_share, c_share) = (
        served_by(b_admin).await - b_before,
        served_by(c_admin).await - c_before,
    );
    assert!(
        b_share >= 20 && c_share >= 20,
        "both copies serve: {b_share} and {c_share} of 200"
    );

    // The master's deploy (from the gate's machine) swaps the module on both copies.
    common::deploy("versioned-v2", "versioned", &gate_file, TOKEN);
    for _ in 0..40 {
        assert_eq!(whoami(&mut client, Duration::from_secs(5)).await, "v2:hi");
    }
    for admin in [b_admin, c_admin] {
        let status = status(admin, TOKEN).await;
        let modules = node(&status, "game")["live"]["modules"].clone();
        let versioned = modules
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == "versioned")
            .unwrap()
            .clone();
        assert_eq!(versioned["version"], 2, "{status}");
    }

    // Copy b's process is killed outright (then its `firefly up`, so nothing restarts it):
    // it leaves the queue group with its NATS connection, and every request is served by c.
    let pid = pid_of(b_admin).await;
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    copy_b.kill();
    let c_before = served_by(c_admin).await;
    let (mut failures, mut served) = (0u32, 0u32);
    let deadline = Instant::now() + Duration::from_secs(30);
    while served < 200 {
        assert!(
            Instant::now() < deadline,
            "only {served} served after the kill"
        );
        match client.request(301, b"after").await {
            Ok(reply) => {
                assert_eq!(&reply[..], b"v2:after");
                served += 1;
            }
            Err(err) => {
                // Only what was in flight to the killed copy may fail, as a timeout or an
                // unavailable node, and the client stays connected.
                let reply = err
                    .server()
                    .unwrap_or_else(|| panic!("disconnected: {err}"));
                assert!(
                    ["node_unavailable", "timeout"].contains(&reply.code.as_str()),
                    "{reply:?}"
                );
                failures += 1;
            }
        }
    }
    assert!(failures <= 2, "{failures} requests failed after the kill");
    assert!(served_by(c_admin).await - c_before >= 200);
}
