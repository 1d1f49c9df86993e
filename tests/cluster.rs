//! A cluster in one test process: a gate and logic nodes linked by node-to-node RPC, from a
//! topology text. Routing policies, pushes across nodes, unreachable nodes, strangers.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly on purpose"
)]

use std::time::Duration;

use firefly::client::Client;
use firefly::cluster::wire::Msg;
use firefly::cluster::{Cluster, Identity, RpcError};
use firefly::node::Node;
use firefly_testkit::{TEST_SECRET, free_addr, start_cluster, start_cluster_node};
use serde_json::{Value, json};

/// gate (no modules of its own) + l1, l2 hosting echo and lobby.
fn topology(policy: &str) -> (String, std::net::SocketAddr) {
    let (g, a, b) = (free_addr(), free_addr(), free_addr());
    let yaml = format!(
        r#"
version: 1
cluster: test
master:
  rpc_timeout: 2s
modules:
  echo: {{ crate: modules/echo }}
  lobby: {{ crate: modules/lobby }}
nodes:
  gate:
    rpc: {g}
    listen:
      - tcp: 127.0.0.1:0
    routes:
      - {{ commands: 1, to: [l1, l2], policy: {policy} }}
      - {{ commands: "101-107", to: l1 }}
  l1: {{ rpc: {a}, modules: [echo, lobby] }}
  l2: {{ rpc: {b}, modules: [echo, lobby] }}
"#
    );
    (yaml, b)
}

fn echo_calls(node: &Node) -> u64 {
    node.modules()
        .iter()
        .find(|m| m.name == "echo")
        .map(|m| m.calls)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_alternates() {
    let (yaml, _) = topology("round_robin");
    let (_, nodes) = start_cluster(&yaml, &["gate", "l1", "l2"]).await;
    let mut client = Client::connect(nodes[0].client_addrs()[0]).await.unwrap();
    for i in 0..10 {
        let msg = format!("m{i}");
        assert_eq!(
            &client.request(1, msg.as_bytes()).await.unwrap()[..],
            msg.as_bytes()
        );
    }
    assert_eq!((echo_calls(&nodes[1]), echo_calls(&nodes[2])), (5, 5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sticky_keeps_each_session_on_one_node() {
    let (yaml, _) = topology("sticky");
    let (_, nodes) = start_cluster(&yaml, &["gate", "l1", "l2"]).await;
    for _ in 0..8 {
        let mut client = Client::connect(nodes[0].client_addrs()[0]).await.unwrap();
        for _ in 0..10 {
            client.request(1, b"x").await.unwrap();
        }
    }
    let (a, b) = (echo_calls(&nodes[1]), echo_calls(&nodes[2]));
    assert_eq!(a + b, 80);
    // Every session's ten requests landed together.
    assert_eq!((a % 10, b % 10), (0, 0), "l1 {a}, l2 {b}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_loaded_uses_every_node() {
    let (yaml, _) = topology("least_loaded");
    let (_, nodes) = start_cluster(&yaml, &["gate", "l1", "l2"]).await;
    let gate = nodes[0].client_addrs()[0];
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            tokio::spawn(async move {
                let mut client = Client::connect(gate).await.unwrap();
                for _ in 0..25 {
                    client.request(1, b"y").await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let (a, b) = (echo_calls(&nodes[1]), echo_calls(&nodes[2]));
    assert_eq!(a + b, 100);
    assert!(a > 0 && b > 0, "l1 {a}, l2 {b}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_from_a_logic_node_reach_clients_on_the_gate() {
    let (yaml, _) = topology("sticky");
    let (_, nodes) = start_cluster(&yaml, &["gate", "l1", "l2"]).await;
    let gate = nodes[0].client_addrs()[0];
    let mut alice = Client::connect(gate).await.unwrap();
    let mut bob = Client::connect(gate).await.unwrap();
    let bob_session: Value = bob.call(105, &()).await.unwrap();
    let bob_session = bob_session["session"].as_u64().unwrap();
    assert_eq!(
        bob_session >> 48,
        1,
        "session ids carry the gate's node index"
    );

    // Alice's request runs on l1, which pushes to Bob's session on the gate.
    let reply: Value = alice
        .call(
            106,
            &json!({"session": bob_session, "topic": 9001, "text": "hi bob"}),
        )
        .await
        .unwrap();
    assert_eq!(reply["pushed"], true);
    let push = bob.next_push().await.unwrap();
    assert_eq!(push.command, 9001);
    let body: Value = rmp_serde::from_slice(&push.payload).unwrap();
    assert_eq!(body["text"], "hi bob");

    // A handler's push to its own session still arrives before its reply.
    alice
        .send(
            104,
            &rmp_serde::to_vec_named(&json!({"topic": 7, "text": "own"})).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(alice.recv_frame().await.unwrap().command, 7);
    assert_eq!(alice.recv_frame().await.unwrap().command, 104);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_node_gives_node_unavailable_then_recovers() {
    let (yaml, _) = topology("round_robin");
    let (topology, nodes) = start_cluster(&yaml, &["gate", "l1"]).await;
    let mut client = Client::connect(nodes[0].client_addrs()[0]).await.unwrap();
    let started = std::time::Instant::now();
    let mut unavailable = 0;
    for _ in 0..6 {
        match client.request(1, b"z").await {
            Ok(reply) => assert_eq!(&reply[..], b"z"),
            Err(err) => {
                let reply = err.server().expect("an error frame, not a hang or a close");
                assert_eq!(reply.code, "node_unavailable", "{}", reply.message);
                assert!(reply.message.contains("l2"), "{}", reply.message);
                unavailable += 1;
            }
        }
    }
    assert_eq!(unavailable, 3);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "failures must be fast"
    );

    // l2 comes up: after the link's backoff, its share succeeds again on the same connection.
    let _l2 = start_cluster_node(&topology, "l2").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut ok_in_a_row = 0;
    while ok_in_a_row < 4 {
        assert!(std::time::Instant::now() < deadline, "l2 never came back");
        match client.request(1, b"back").await {
            Ok(_) => ok_in_a_row += 1,
            Err(_) => {
                ok_in_a_row = 0;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipelined_run_to_a_down_node_fails_each_request_with_its_own_error() {
    let (yaml, _) = topology("round_robin");
    // l1 (where the lobby is routed) never starts.
    let (_, nodes) = start_cluster(&yaml, &["gate", "l2"]).await;
    let mut client = Client::connect(nodes[0].client_addrs()[0]).await.unwrap();
    let codec = firefly::protocol::Codec::new(&firefly::config::ProtocolSettings::default());
    let mut out = bytes::BytesMut::new();
    for i in 0u32..8 {
        let req = rmp_serde::to_vec_named(&json!({"a": i, "b": 1})).unwrap();
        codec.encode(101 + i % 3, &req, &mut out);
    }
    client.send_raw(&out).await.unwrap();
    for i in 0u32..8 {
        let frame = client.recv_frame().await.unwrap();
        assert_eq!(
            frame.command,
            u32::MAX,
            "#{i}: an error frame, got {frame:?}"
        );
        let reply = firefly::protocol::ErrorReply::from_msgpack(&frame.payload).unwrap();
        assert_eq!(
            (reply.command, reply.code.as_str()),
            (101 + i % 3, "node_unavailable"),
            "#{i}: {reply:?}"
        );
    }
    // The connection is still served: echo alternates between l1 (down) and l2 (up).
    let mut answered = 0;
    for _ in 0..2 {
        match client.request(1, b"still here").await {
            Ok(reply) => {
                assert_eq!(&reply[..], b"still here");
                answered += 1;
            }
            Err(err) => assert_eq!(err.server().unwrap().code, "node_unavailable"),
        }
    }
    assert_eq!(answered, 1, "l2 answered its share");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_without_the_secret_are_refused() {
    let (yaml, l2_rpc) = topology("sticky");
    let (_, _nodes) = start_cluster(&yaml, &["l2"]).await;
    let stranger = |secret: &str, cluster: &str| {
        Cluster::new(
            Identity::from_secret(cluster, "gate", secret.as_bytes(), Duration::from_secs(2)),
            9,
            vec![("l2".into(), 3, l2_rpc)],
        )
    };
    for (secret, cluster) in [("wrong-secret-0123456789", "test"), (TEST_SECRET, "other")] {
        let c = stranger(secret, cluster);
        let err = c
            .peer("l2")
            .unwrap()
            .request(|id| Msg::Status { id })
            .await
            .unwrap_err();
        assert!(matches!(err, RpcError::Unavailable { .. }), "{err}");
    }
    // With the secret, the same request is answered.
    let friend = stranger(TEST_SECRET, "test");
    match friend
        .peer("l2")
        .unwrap()
        .request(|id| Msg::Status { id })
        .await
        .unwrap()
    {
        Msg::StatusReply { json, .. } => assert!(json.contains("\"node\":\"l2\""), "{json}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_across_the_hop_are_answered_in_order() {
    for policy in ["sticky", "round_robin"] {
        let (yaml, _) = topology(policy);
        let (_, nodes) = start_cluster(&yaml, &["gate", "l1", "l2"]).await;
        let mut client = Client::connect(nodes[0].client_addrs()[0]).await.unwrap();
        // 300 requests before reading anything: runs of echo (routed by `policy`) and lobby
        // adds (always l1).
        for i in 0u32..300 {
            if i % 7 < 4 {
                client.send(1, format!("e{i}").as_bytes()).await.unwrap();
            } else {
                let req = rmp_serde::to_vec_named(&json!({"a": i, "b": 1})).unwrap();
                client.send(103, &req).await.unwrap();
            }
        }
        for i in 0u32..300 {
            let frame = client.recv_frame().await.unwrap();
            if i % 7 < 4 {
                assert_eq!(
                    (frame.command, &frame.payload[..]),
                    (1, format!("e{i}").as_bytes()),
                    "{policy} #{i}"
                );
            } else {
                assert_eq!(frame.command, 103, "{policy} #{i}");
                let v: Value = rmp_serde::from_slice(&frame.payload).unwrap();
                assert_eq!(v["sum"], i64::from(i) + 1, "{policy} #{i}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipelined_run_across_the_hop_shares_entries_into_the_module() {
    let (yaml, _) = topology("sticky");
    let (_, nodes) = start_cluster(&yaml, &["gate", "l1", "l2"]).await;
    let mut client = Client::connect(nodes[0].client_addrs()[0]).await.unwrap();
    let lobby = |node: &Node| {
        let m = node
            .modules()
            .into_iter()
            .find(|m| m.name == "lobby")
            .unwrap();
        (m.calls, m.batches)
    };
    // The session's connect event also runs lobby code on l1, asynchronously: let it land
    // before counting.
    let _: Value = client.call(103, &json!({"a": 1, "b": 1})).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (calls, batches) = lobby(&nodes[1]);
    // 64 lobby adds in one write: the gate forwards them to l1 together, and l1 serves the
    // session's queued requests as runs with one entry into the module each.
    let codec = firefly::protocol::Codec::new(&firefly::config::ProtocolSettings::default());
    let mut out = bytes::BytesMut::new();
    for i in 0u32..64 {
        let req = rmp_serde::to_vec_named(&json!({"a": i, "b": 1})).unwrap();
        codec.encode(103, &req, &mut out);
    }
    client.send_raw(&out).await.unwrap();
    for i in 0u32..64 {
        let frame = client.recv_frame().await.unwrap();
        assert_eq!(frame.command, 103, "#{i}: {frame:?}");
        let v: Value = rmp_serde::from_slice(&frame.payload).unwrap();
        assert_eq!(v["sum"], i64::from(i) + 1, "#{i}");
    }
    let (calls_after, batches_after) = lobby(&nodes[1]);
    assert_eq!(calls_after - calls, 64, "each request ran exactly once");
    assert!(
        batches_after > batches,
        "l1 served the run one call per request"
    );
}

fn lobby_calls(node: &Node) -> u64 {
    node.modules()
        .iter()
        .find(|m| m.name == "lobby")
        .map(|m| m.calls)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_calls_another_node_gate_to_a_to_b() {
    let (yaml, _) = topology("sticky");
    let (topology, nodes) = start_cluster(&yaml, &["gate", "l1", "l2"]).await;
    let mut client = Client::connect(nodes[0].client_addrs()[0]).await.unwrap();
    let before = lobby_calls(&nodes[2]);
    // gate → l1 (lobby 107) → l2 (lobby 103) → back.
    let reply: Value = client
        .call(107, &json!({"node": "l2", "a": 40, "b": 2}))
        .await
        .unwrap();
    assert_eq!(reply, json!({"sum": 42, "asked": "l2"}));
    assert!(lobby_calls(&nodes[2]) > before, "l2 served the inner call");

    // The callee's own error comes back with its code.
    let err = client
        .call::<_, Value>(107, &json!({"node": "l2", "a": i64::MAX, "b": 1}))
        .await
        .unwrap_err();
    assert_eq!(err.server().unwrap().code, "overflow");
    // A node that does not exist.
    let err = client
        .call::<_, Value>(107, &json!({"node": "nope", "a": 1, "b": 1}))
        .await
        .unwrap_err();
    assert_eq!(err.server().unwrap().code, "unknown_node");
    drop(topology);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_to_a_down_node_fails_fast_with_node_unavailable() {
    let (yaml, _) = topology("sticky");
    let (_, nodes) = start_cluster(&yaml, &["gate", "l1"]).await;
    let mut client = Client::connect(nodes[0].client_addrs()[0]).await.unwrap();
    let started = std::time::Instant::now();
    let err = client
        .call::<_, Value>(107, &json!({"node": "l2", "a": 1, "b": 1}))
        .await
        .unwrap_err();
    let reply = err.server().unwrap();
    assert_eq!(reply.code, "node_unavailable", "{}", reply.message);
    assert!(started.elapsed() < Duration::from_secs(3));
    // The client is still served.
    let ok: Value = client.call(103, &json!({"a": 1, "b": 1})).await.unwrap();
    assert_eq!(ok["sum"], 2);
}
