//! Module behaviour through a real node: typed handlers, errors, pushes, and the sandbox
//! (traps, runaway loops, unbounded memory and recursion, WASI limits, captured output).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests, benches and their kit fail loudly on purpose"
)]

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use firefly::client::Client;
use firefly::config::ProtocolSettings;
use firefly_testkit::{addr, start_node, start_node_with, test_limits};
use serde_json::{Value, json};

/// Log lines written by the node in this test process (for the stdout-capture test).
fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = buf.clone();
        let _ = tracing_subscriber::fmt()
            .with_env_filter("info")
            .with_ansi(false)
            .with_writer(move || LogSink(sink.clone()))
            .try_init();
        buf
    })
    .clone()
}

struct LogSink(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn call(client: &mut Client, command: u32, req: Value) -> Value {
    client
        .call(command, &req)
        .await
        .unwrap_or_else(|e| panic!("command {command}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lobby_typed_commands() {
    let node = start_node(&["lobby"]).await;
    let mut client = Client::connect(addr(&node)).await.unwrap();

    let hello = call(&mut client, 101, json!({"name": "Ada"})).await;
    assert_eq!(hello["greeting"], "Hello, Ada!");
    let session = hello["session"].as_u64().unwrap();
    assert!(session > 0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let server_time = hello["server_time_micros"].as_u64().unwrap();
    assert!(server_time.abs_diff(now.as_micros() as u64) < 60_000_000);

    for _ in 0..50 {
        let v = call(&mut client, 102, json!({"sides": 6})).await["value"]
            .as_u64()
            .unwrap();
        assert!((1..=6).contains(&v));
    }
    assert_eq!(
        call(&mut client, 103, json!({"a": 40, "b": 2})).await["sum"],
        42
    );
    assert_eq!(
        call(&mut client, 105, Value::Null).await["session"],
        session
    );
    // Another connection is another session.
    let mut other = Client::connect(addr(&node)).await.unwrap();
    assert_ne!(call(&mut other, 105, Value::Null).await["session"], session);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_errors_become_error_frames_and_the_connection_stays() {
    let node = start_node(&["lobby", "misbehave"]).await;
    let mut client = Client::connect(addr(&node)).await.unwrap();

    let err = client
        .call::<_, Value>(103, &json!({"a": i64::MAX, "b": 1}))
        .await
        .unwrap_err();
    let reply = err.server().unwrap();
    assert_eq!((reply.command, reply.code.as_str()), (103, "overflow"));
    assert_eq!(reply.module.as_deref(), Some("lobby"));
    assert_eq!(reply.version, Some(1));

    let err = client
        .call::<_, Value>(101, &json!({"name": ""}))
        .await
        .unwrap_err();
    assert_eq!(err.server().unwrap().code, "invalid_name");

    // A payload that is not the handler's request type.
    let err = client.request(103, b"\xc1garbage").await.unwrap_err();
    assert_eq!(err.server().unwrap().code, "bad_request");

    let err = client.request(905, b"").await.unwrap_err();
    let reply = err.server().unwrap();
    assert_eq!(
        (reply.code.as_str(), reply.message.as_str()),
        ("custom_code", "custom message")
    );
    assert_eq!(reply.module.as_deref(), Some("misbehave"));

    assert_eq!(
        call(&mut client, 103, json!({"a": 1, "b": 2})).await["sum"],
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_reach_the_session_before_the_reply() {
    let node = start_node(&["lobby"]).await;
    let mut client = Client::connect(addr(&node)).await.unwrap();
    client
        .send(
            104,
            &rmp_serde::to_vec_named(&json!({"topic": 7001, "text": "gold +5"})).unwrap(),
        )
        .await
        .unwrap();
    let push = client.recv_frame().await.unwrap();
    assert_eq!(push.command, 7001);
    let body: Value = rmp_serde::from_slice(&push.payload).unwrap();
    assert_eq!(body["text"], "gold +5");
    let reply = client.recv_frame().await.unwrap();
    assert_eq!(reply.command, 104);
    let body: Value = rmp_serde::from_slice(&reply.payload).unwrap();
    assert_eq!(body["pushed"], true);
}

/// Sends `command` and checks the error frame's code; then checks the connection still works.
async fn expect_failure(client: &mut Client, command: u32, payload: &[u8], code: &str) -> String {
    let err = client.request(command, payload).await.unwrap_err();
    let reply = err
        .server()
        .unwrap_or_else(|| panic!("command {command}: {err}"));
    assert_eq!(reply.code, code, "command {command}: {}", reply.message);
    assert_eq!(reply.module.as_deref(), Some("misbehave"));
    assert_eq!(&client.request(1, b"after").await.unwrap()[..], b"after");
    reply.message.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_fails_only_that_request() {
    let node = start_node(&["echo", "misbehave"]).await;
    let mut client = Client::connect(addr(&node)).await.unwrap();
    let message = expect_failure(&mut client, 901, b"", "trapped").await;
    assert!(message.contains("boom"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbounded_memory_fails_only_that_request() {
    let node = start_node(&["echo", "misbehave"]).await;
    let mut client = Client::connect(addr(&node)).await.unwrap();
    let message = expect_failure(&mut client, 903, b"", "out_of_memory").await;
    assert!(message.contains("memory limit"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbounded_recursion_fails_only_that_request() {
    let node = start_node(&["echo", "misbehave"]).await;
    let mut client = Client::connect(addr(&node)).await.unwrap();
    // Small frames: wasmtime's stack limit stops it.
    let message = expect_failure(&mut client, 904, b"", "trapped").await;
    assert!(message.contains("stack overflow"), "{message}");
    // Big frames: the guest's own stack in linear memory runs out first.
    let message = expect_failure(&mut client, 910, b"", "trapped").await;
    assert!(message.contains("stack overflow"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_loop_times_out_while_others_are_served() {
    let node = start_node(&["echo", "misbehave"]).await;
    let target = addr(&node);
    // Two loops at once (as many as worker threads) must not starve other connections.
    let loops: Vec<_> = (0..2)
        .map(|_| {
            tokio::spawn(async move {
                let mut c = Client::connect(target).await.unwrap();
                let err = c.request(902, b"").await.unwrap_err();
                let reply = err.server().unwrap().clone();
                assert_eq!(&c.request(1, b"after").await.unwrap()[..], b"after");
                reply
            })
        })
        .collect();
    let mut bystander = Client::connect(target).await.unwrap();
    let mut served_during = 0;
    while !loops.iter().all(|l| l.is_finished()) {
        assert_eq!(&bystander.request(1, b"ok").await.unwrap()[..], b"ok");
        served_during += 1;
        assert!(served_during < 1_000_000);
    }
    for l in loops {
        let reply = l.await.unwrap();
        assert_eq!(reply.code, "timeout", "{}", reply.message);
        assert!(reply.message.contains("CPU budget"), "{}", reply.message);
    }
    // The loops burn 500 ms of CPU each; a fair scheduler serves the bystander many times
    // meanwhile (each guest yields every 10 ms tick).
    assert!(
        served_during >= 5,
        "bystander was starved: served {served_during} times"
    );
    let misbehave = node
        .modules()
        .into_iter()
        .find(|m| m.name == "misbehave")
        .unwrap();
    assert!(misbehave.errors >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wall_clock_timeout_applies() {
    let mut limits = test_limits();
    limits.timeout = Duration::from_millis(300);
    limits.cpu = Duration::from_millis(300);
    let node = start_node_with(&["echo", "misbehave"], limits, ProtocolSettings::default()).await;
    let mut client = Client::connect(addr(&node)).await.unwrap();
    // Spinning 2 s trips the 300 ms budget; spinning 10 ms does not.
    let req = rmp_serde::to_vec_named(&json!({"millis": 2000})).unwrap();
    expect_failure(&mut client, 906, &req, "timeout").await;
    let req = rmp_serde::to_vec_named(&json!({"millis": 10})).unwrap();
    let reply: Value = rmp_serde::from_slice(&client.request(906, &req).await.unwrap()).unwrap();
    assert!(reply["spun_ms"].as_u64().unwrap() >= 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasi_gives_clocks_and_randomness_but_no_files_env_or_network() {
    let node = start_node(&["misbehave"]).await;
    let mut client = Client::connect(addr(&node)).await.unwrap();
    let a = call(&mut client, 908, Value::Null).await;
    let b = call(&mut client, 908, Value::Null).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(a["wasi_time_secs"].as_u64().unwrap().abs_diff(now) < 60);
    assert_ne!(a["wasi_random"], b["wasi_random"]);
    let sandbox = call(&mut client, 909, Value::Null).await;
    assert_eq!(
        sandbox,
        json!({"fs_ok": false, "env_ok": false, "net_ok": false})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_stdout_and_stderr_land_in_the_node_log_tagged_with_the_module() {
    let logs = captured_logs();
    let node = start_node(&["misbehave"]).await;
    let mut client = Client::connect(addr(&node)).await.unwrap();
    client.request(907, b"").await.unwrap();
    let found = firefly_testkit::wait_until(Duration::from_secs(5), || {
        let text = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
        text.lines()
            .any(|l| l.contains("stdout line from guest") && l.contains("misbehave"))
            && text
                .lines()
                .any(|l| l.contains("stderr line from guest") && l.contains("misbehave"))
    })
    .await;
    assert!(found, "{}", String::from_utf8_lossy(&logs.lock().unwrap()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traps_are_counted_and_the_node_keeps_serving() {
    let node = start_node(&["echo", "misbehave"]).await;
    let mut client = Client::connect(addr(&node)).await.unwrap();
    for _ in 0..5 {
        expect_failure(&mut client, 901, b"", "trapped").await;
    }
    let m = node
        .modules()
        .into_iter()
        .find(|m| m.name == "misbehave")
        .unwrap();
    assert_eq!((m.calls, m.errors), (5, 5));
    assert_eq!(node.gate_stats().errors.get(), 5);
}
