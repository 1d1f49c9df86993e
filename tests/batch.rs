//! Batched dispatch: pipelined requests of one connection served by one entry into a module,
//! with every request keeping its own reply, error, pushes, limits and order. Real sockets on
//! port 0 and real modules built from `modules/`; `legacy-echo` is shaped like a module from an
//! SDK without batched dispatch.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests, benches and their kit fail loudly on purpose"
)]

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use firefly::client::Client;
use firefly::config::ProtocolSettings;
use firefly::engine::{Batch, Lease, Runtime};
use firefly::protocol::{Codec, ErrorReply, Frame};
use firefly::sessions::Sessions;
use firefly_testkit::{addr, module_wasm, start_node, test_limits};
use serde_json::{Value, json};

const ERROR: u32 = u32::MAX;

/// All `frames` in one write, so the gate reads them together.
async fn send_together(client: &mut Client, frames: &[(u32, Vec<u8>)]) {
    let codec = Codec::new(&ProtocolSettings::default());
    let mut out = BytesMut::new();
    for (command, payload) in frames {
        codec.encode(*command, payload, &mut out);
    }
    client.send_raw(&out).await.unwrap();
}

async fn recv(client: &mut Client) -> Frame {
    client.recv_frame().await.unwrap()
}

fn error_of(frame: &Frame) -> ErrorReply {
    assert_eq!(
        frame.command, ERROR,
        "expected an error frame, got {frame:?}"
    );
    ErrorReply::from_msgpack(&frame.payload).expect("error frame payload")
}

async fn expect_reply(client: &mut Client, command: u32, payload: &[u8]) {
    let frame = recv(client).await;
    assert_eq!(frame.command, command, "{frame:?}");
    assert_eq!(&frame.payload[..], payload);
}

async fn expect_error(client: &mut Client, command: u32, code: &str) -> ErrorReply {
    let frame = recv(client).await;
    let reply = error_of(&frame);
    assert_eq!(reply.command, command, "{reply:?}");
    assert_eq!(reply.code, code, "{reply:?}");
    reply
}

async fn expect_sum(client: &mut Client, sum: i64) {
    let frame = recv(client).await;
    assert_eq!(frame.command, 103, "{frame:?}");
    let body: Value = rmp_serde::from_slice(&frame.payload).unwrap();
    assert_eq!(body["sum"], sum);
}

fn module(node: &firefly::node::Node, name: &str) -> firefly::node::ModuleStatus {
    node.modules().into_iter().find(|m| m.name == name).unwrap()
}

/// The next frame answers a fresh request: nothing extra (a duplicate reply from a request
/// run twice) is queued before it.
async fn nothing_else_queued(client: &mut Client) {
    client.send(911, b"marker").await.unwrap();
    expect_reply(client, 911, b"marker").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_in_one_read_share_one_guest_entry_and_keep_their_order() {
    let node = start_node(&["echo"]).await;
    let mut client = Client::connect(addr(&node)).await.unwrap();
    let frames: Vec<_> = (0..20).map(|i| (1, format!("m{i}").into_bytes())).collect();
    send_together(&mut client, &frames).await;
    for i in 0..20 {
        expect_reply(&mut client, 1, format!("m{i}").as_bytes()).await;
    }
    let echo = module(&node, "echo");
    assert_eq!((echo.calls, echo.errors), (20, 0));
    assert!(echo.batches >= 1, "served without batching: {echo:?}");
    assert!(echo.batches < 20, "one entry per request: {echo:?}");
}

/// Each answer of `batch`: the reply, or the error code.
fn answers_of(batch: &Batch) -> Vec<Result<Vec<u8>, String>> {
    batch
        .answers()
        .map(|a| a.result.map(<[u8]>::to_vec).map_err(|e| e.code.clone()))
        .collect()
}

/// A node hosting `misbehave`, and a client connected to it.
async fn misbehave() -> (firefly::node::Node, Client) {
    let node = start_node(&["misbehave"]).await;
    let client = Client::connect(addr(&node)).await.unwrap();
    (node, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trap_mid_batch_fails_only_that_request_and_the_rest_are_served_once() {
    let (node, mut client) = misbehave().await;
    let frames = vec![
        (911, b"a".to_vec()),
        (911, b"b".to_vec()),
        (901, Vec::new()),
        (911, b"c".to_vec()),
        (905, Vec::new()),
        (911, b"d".to_vec()),
    ];
    send_together(&mut client, &frames).await;
    expect_reply(&mut client, 911, b"a").await;
    expect_reply(&mut client, 911, b"b").await;
    let trap = expect_error(&mut client, 901, "trapped").await;
    assert!(trap.message.contains("boom"), "{trap:?}");
    assert_eq!(trap.module.as_deref(), Some("misbehave"));
    expect_reply(&mut client, 911, b"c").await;
    let refused = expect_error(&mut client, 905, "custom_code").await;
    assert_eq!(refused.message, "custom message");
    expect_reply(&mut client, 911, b"d").await;
    nothing_else_queued(&mut client).await;
    let m = module(&node, "misbehave");
    // Seven requests, each run exactly once: none lost, none re-run after the trap.
    assert_eq!((m.calls, m.errors), (7, 2), "{m:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_mid_batch_fails_only_that_request() {
    let (_node, mut client) = misbehave().await;
    let frames = vec![
        (911, b"before".to_vec()),
        (902, Vec::new()),
        (911, b"after".to_vec()),
    ];
    send_together(&mut client, &frames).await;
    expect_reply(&mut client, 911, b"before").await;
    let timeout = expect_error(&mut client, 902, "timeout").await;
    assert!(timeout.message.contains("CPU budget"), "{timeout:?}");
    expect_reply(&mut client, 911, b"after").await;
    nothing_else_queued(&mut client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_request_of_a_batch_gets_its_own_cpu_budget() {
    // Three requests of 300 ms each in one batch: within the 500 ms budget one by one, over it
    // together. Each must pass.
    let (_node, mut client) = misbehave().await;
    let spin = rmp_serde::to_vec_named(&json!({"millis": 300})).unwrap();
    let frames = vec![(906, spin.clone()), (906, spin.clone()), (906, spin)];
    send_together(&mut client, &frames).await;
    for _ in 0..3 {
        let frame = recv(&mut client).await;
        assert_eq!(frame.command, 906, "{frame:?}");
        let body: Value = rmp_serde::from_slice(&frame.payload).unwrap();
        assert!(body["spun_ms"].as_u64().unwrap() >= 300, "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_of_a_batched_request_come_just_before_its_reply() {
    let (_node, mut client) = misbehave().await;
    let frames = vec![
        (912, b"x".to_vec()),
        (911, b"plain".to_vec()),
        (912, b"y".to_vec()),
    ];
    send_together(&mut client, &frames).await;
    expect_reply(&mut client, 9120, b"x").await;
    expect_reply(&mut client, 912, b"x").await;
    expect_reply(&mut client, 911, b"plain").await;
    expect_reply(&mut client, 9120, b"y").await;
    expect_reply(&mut client, 912, b"y").await;
    nothing_else_queued(&mut client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_modules_in_one_read_are_answered_in_request_order() {
    let node = start_node(&["echo", "lobby", "misbehave", "legacy-echo"]).await;
    let mut client = Client::connect(addr(&node)).await.unwrap();
    let add = rmp_serde::to_vec_named(&json!({"a": 40, "b": 2})).unwrap();
    let frames = vec![
        (1, b"e1".to_vec()),
        (1, b"e2".to_vec()),
        (911, b"m1".to_vec()),
        (103, add.clone()),
        (21, b"l1".to_vec()),
        (21, b"l2".to_vec()),
        (901, Vec::new()),
        (1, b"e3".to_vec()),
        (4242, Vec::new()),
        (103, add),
        (911, b"m2".to_vec()),
    ];
    send_together(&mut client, &frames).await;
    expect_reply(&mut client, 1, b"e1").await;
    expect_reply(&mut client, 1, b"e2").await;
    expect_reply(&mut client, 911, b"m1").await;
    expect_sum(&mut client, 42).await;
    expect_reply(&mut client, 21, b"l1").await;
    expect_reply(&mut client, 21, b"l2").await;
    expect_error(&mut client, 901, "trapped").await;
    expect_reply(&mut client, 1, b"e3").await;
    expect_error(&mut client, 4242, "unknown_command").await;
    expect_sum(&mut client, 42).await;
    expect_reply(&mut client, 911, b"m2").await;
    nothing_else_queued(&mut client).await;
    assert_eq!(node.gate_stats().requests.get(), 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modules_without_the_batch_export_are_served_one_call_per_request() {
    let node = start_node(&["legacy-echo"]).await;
    let mut client = Client::connect(addr(&node)).await.unwrap();
    let frames: Vec<_> = (0..20)
        .map(|i| (21, format!("l{i}").into_bytes()))
        .collect();
    send_together(&mut client, &frames).await;
    for i in 0..20 {
        expect_reply(&mut client, 21, format!("l{i}").as_bytes()).await;
    }
    let legacy = module(&node, "legacy-echo");
    assert_eq!((legacy.calls, legacy.errors, legacy.batches), (20, 0, 0));
}

/// The engine on its own: one lease, one batch, the exact entry and instance counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_takes_one_entry_and_a_trap_moves_the_rest_to_a_fresh_instance() {
    let runtime = Runtime::new(Arc::new(Sessions::new()), None);
    let wasm = std::fs::read(module_wasm("misbehave")).unwrap();
    let misbehave = runtime
        .load("misbehave", 1, &wasm, &test_limits())
        .await
        .unwrap();
    assert!(misbehave.batched());
    let instances = misbehave.stats.instances.get();
    let mut lease = Lease::new(misbehave.clone());
    let mut batch = Batch::default();
    for payload in ["a", "b", "c"] {
        batch.push(911, Bytes::from(payload));
    }
    lease.call_batch(7, &mut batch).await;
    let replies = answers_of(&batch);
    assert_eq!(
        replies,
        vec![Ok(b"a".to_vec()), Ok(b"b".to_vec()), Ok(b"c".to_vec())]
    );
    assert_eq!(misbehave.stats.batches.get(), 1);
    batch.clear();

    for (command, payload) in [(911, "d"), (901, ""), (911, "e"), (911, "f")] {
        batch.push(command, Bytes::from(payload));
    }
    lease.call_batch(7, &mut batch).await;
    let replies = answers_of(&batch);
    assert_eq!(
        replies,
        vec![
            Ok(b"d".to_vec()),
            Err("trapped".to_owned()),
            Ok(b"e".to_vec()),
            Ok(b"f".to_vec())
        ]
    );
    // The trap ended the second entry; the last two requests took a third, on a new instance.
    assert_eq!(misbehave.stats.batches.get(), 3);
    assert_eq!(misbehave.stats.traps.get(), 1);
    assert_eq!(misbehave.stats.calls.get(), 7);
    assert!(misbehave.stats.instances.get() > instances);

    let legacy_wasm = std::fs::read(module_wasm("legacy-echo")).unwrap();
    let legacy = runtime
        .load("legacy-echo", 1, &legacy_wasm, &test_limits())
        .await
        .unwrap();
    assert!(!legacy.batched());
}
