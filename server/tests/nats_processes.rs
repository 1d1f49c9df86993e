//! A real multi-process cluster on the NATS fabric (`cluster.transport: nats://...`): no node
//! has an `rpc:` address; two gates and two logic nodes find each other through a real
//! `nats-server` (its URL in `FIREFLY_TEST_NATS_URL`, which `.ci/run` sets).
//!
//! * Clients are served through either gate; a group push made on a logic node for a
//!   session of the other gate reaches it.
//! * A logic node killed with SIGKILL stops being announced; within a bounded time the gates
//!   route every request to the other logic node, and the restarted one rejoins.
//! * A process without the master's certificate for the name it claims cannot join over
//!   NATS, exactly as over TCP.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly on purpose"
)]

use std::time::{Duration, Instant};

use firefly::client::Client;
use firefly::cluster::authority::Credential;
use firefly::cluster::nats::Fabric;
use firefly::cluster::wire::Msg;
use firefly::cluster::{Cluster, Identity, RpcError};
use firefly::config::{NatsAuth, NatsSpec};
use serde_json::{Value, json};

mod common;

use common::{Up, free_addr, node, workspace};

const TOKEN: &str = "nats-admin-token-0123456789";
const SECRET: &str = "nats-cluster-secret-0123456789";

fn text_of(payload: &[u8]) -> String {
    let v: Value = rmp_serde::from_slice(payload).unwrap();
    v["text"].as_str().unwrap_or_default().to_owned()
}

/// A link from "here" over NATS to `target`, proving itself with `credential` as `claimed`.
fn link_as(cluster: &str, url: &str, claimed: &str, credential: Credential) -> Cluster {
    let spec = NatsSpec {
        servers: vec![url.to_owned()],
        auth: NatsAuth::None,
    };
    let fabric = Fabric::new(spec, cluster, claimed);
    Cluster::over_nats(
        Identity {
            cluster: cluster.into(),
            node: claimed.into(),
            credential,
            rpc_timeout: Duration::from_secs(10),
        },
        0,
        fabric,
        vec![("logic-1".into(), 3)],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gates_and_two_logic_nodes_without_addresses_survive_a_kill_on_nats() {
    let url = common::services::service_url("FIREFLY_TEST_NATS_URL");
    let dir = tempfile::tempdir().unwrap();
    let (admin, a, b) = (free_addr(), free_addr(), free_addr());
    // Subjects are per cluster name: one of its own for each run on a shared NATS server.
    let cluster = format!("natsproc-{}", std::process::id());
    let m = workspace().join("modules");
    let routes = "    routes:\n      - { commands: 1, to: [logic-1, logic-2], policy: round_robin }\n      - { commands: \"101-199\", to: [logic-1, logic-2], policy: least_loaded }\n";
    let yaml = format!(
        "version: 1\ncluster: {{ name: {cluster}, transport: \"{url}\" }}\nmaster:\n  admin: {admin}\n  rpc_timeout: 2s\nmodules:\n  echo: {{ crate: {m}/echo }}\n  lobby: {{ crate: {m}/lobby }}\nnodes:\n  gate-a:\n    listen:\n      - tcp: {a}\n{routes}  gate-b:\n    listen:\n      - tcp: {b}\n{routes}  logic-1: {{ modules: [echo, lobby] }}\n  logic-2: {{ modules: [echo, lobby] }}\n",
        m = m.display()
    );
    assert!(!yaml.contains("rpc:"));
    let topology = dir.path().join("topology.yaml");
    std::fs::write(&topology, yaml).unwrap();
    let _up = Up::new(&topology)
        .env("FIREFLY_ADMIN_TOKEN", TOKEN)
        .env("FIREFLY_CLUSTER_SECRET", SECRET)
        .ready_on_status(admin, TOKEN, 4)
        .start();

    // Both gates serve, through both logic nodes.
    let mut on_a = Client::connect(a).await.unwrap();
    let mut on_b = Client::connect(b).await.unwrap();
    for i in 0..6 {
        let ping = format!("ping {i}");
        assert_eq!(
            &on_a.request(1, ping.as_bytes()).await.unwrap()[..],
            ping.as_bytes()
        );
        assert_eq!(
            &on_b.request(1, ping.as_bytes()).await.unwrap()[..],
            ping.as_bytes()
        );
    }

    // A push to a session of gate-b, made on a logic node for a client of gate-a.
    let _: Value = on_b.call(108, &json!({"group": "team"})).await.unwrap();
    let _: Value = on_a.call(108, &json!({"group": "team"})).await.unwrap();
    let say = json!({"group": "team", "topic": 800, "text": "over nats"});
    let _: Value = on_a.call(110, &say).await.unwrap();
    for client in [&mut on_b, &mut on_a] {
        let push = tokio::time::timeout(Duration::from_secs(10), client.next_push())
            .await
            .expect("the group push never came")
            .unwrap();
        assert_eq!(
            (push.command, text_of(&push.payload)),
            (800, "over nats".into())
        );
    }

    // Kill logic-2 the hard way: no goodbye on NATS, it just stops being announced.
    let before = common::status(admin, TOKEN).await;
    for name in ["gate-a", "gate-b", "logic-1", "logic-2"] {
        assert_eq!(node(&before, name)["healthy"], true, "{before}");
    }
    let victim = node(&before, "logic-2")["pid"].as_u64().unwrap();
    let killed = Instant::now();
    assert!(
        std::process::Command::new("kill")
            .args(["-9", &victim.to_string()])
            .status()
            .unwrap()
            .success()
    );
    // Within a bounded time every request is served again (by logic-1 while logic-2 is gone
    // or restarting); each failure before that comes within the rpc timeout.
    let (mut ok_in_a_row, mut failures) = (0, 0);
    while ok_in_a_row < 20 {
        assert!(
            killed.elapsed() < Duration::from_secs(15),
            "requests were not served by the other logic node within 15 s ({failures} failures)"
        );
        let sent = Instant::now();
        match on_a.request(1, b"during").await {
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
                assert!(sent.elapsed() < Duration::from_secs(3), "{reply:?}");
                failures += 1;
                ok_in_a_row = 0;
            }
        }
    }
    let recovered = killed.elapsed();
    eprintln!("served again {recovered:?} after the kill ({failures} failures)");

    // The master restarts logic-2; it announces itself and serves again.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let s = common::status(admin, TOKEN).await;
        let l2 = node(&s, "logic-2");
        if l2["healthy"] == true && l2["restarts"] == 1 {
            assert_ne!(l2["pid"].as_u64().unwrap(), victim);
            break;
        }
        assert!(Instant::now() < deadline, "logic-2 never came back: {s}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for i in 0..10 {
        let ping = format!("after {i}");
        assert_eq!(
            &on_b.request(1, ping.as_bytes()).await.unwrap()[..],
            ping.as_bytes()
        );
    }

    // A node's own credential, or a credential from another secret, does not make a link as
    // another name; a certificate the master gave works (the control).
    let status_of = |cluster: Cluster| async move {
        let peer = cluster.peer("logic-1").unwrap().clone();
        peer.request(|id| Msg::Status { id }).await
    };
    let good = Credential::issue(SECRET.as_bytes(), &cluster, "probe");
    match status_of(link_as(&cluster, &url, "probe", good.clone())).await {
        Ok(Msg::StatusReply { json, .. }) => assert!(json.contains("logic-1"), "{json}"),
        other => panic!("a certified probe must be answered: {other:?}"),
    }
    let forged = Credential::issue(b"another-secret-0123456789", &cluster, "probe");
    for (claimed, credential) in [("probe", forged), ("gate-a", good)] {
        match status_of(link_as(&cluster, &url, claimed, credential)).await {
            Err(RpcError::Unavailable { reason, .. }) => {
                assert!(reason.contains("refused"), "{claimed}: {reason}")
            }
            other => panic!("`{claimed}` without its certificate got in: {other:?}"),
        }
    }
}
