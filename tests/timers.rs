//! Timers owned by the host, through a real module (`modules/ticker`, and `ticker-v2` for the
//! hot update) on nodes in this process: one-shot and repeating firings into the handler of
//! their tag, cancelling, a trapping handler, bad input and the per-module cap, a hot update
//! between firings, and a durable timer firing (late, once) after the node restarts.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly on purpose"
)]

use std::time::Duration;

use firefly::client::Client;
use firefly::node::Node;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const FIRED: u32 = 4501;

#[derive(Serialize)]
struct Start<'a> {
    tag: &'a str,
    delay_ms: u64,
    period_ms: u64,
    durable: bool,
    note: &'a str,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
struct Firing {
    id: u64,
    tag: String,
    timer: u64,
    firing: u64,
    late_ms: u64,
    generation: u32,
    note: String,
}

/// A one-node topology hosting `ticker` on SQLite in `dir`, `/metrics` on port 0.
fn topology(dir: &std::path::Path, limits: &str) -> String {
    format!(
        "version: 1\ncluster: timers\nmodules:\n  ticker: {{ crate: modules/ticker{limits} }}\nnodes:\n  solo:\n    listen:\n      - tcp: 127.0.0.1:0\n    metrics: 127.0.0.1:0\n    modules: [ticker]\nstorage:\n  database: sqlite://{d}/data.db\n  journal: {d}/journal.db\n  flush_interval: 50ms\n",
        d = dir.display()
    )
}

async fn solo(yaml: &str) -> Node {
    let (_topology, mut nodes) = firefly_testkit::start_cluster(yaml, &["solo"]).await;
    nodes.remove(0)
}

async fn start(c: &mut Client, tag: &str, delay_ms: u64, period_ms: u64) -> u64 {
    let req = Start {
        tag,
        delay_ms,
        period_ms,
        durable: false,
        note: tag,
    };
    c.call(451, &req).await.unwrap()
}

/// The next push on `FIRED`, within `within`.
async fn next_firing(c: &mut Client, within: Duration) -> Firing {
    let frame = tokio::time::timeout(within, c.next_push())
        .await
        .expect("no timer firing was pushed in time")
        .unwrap();
    assert_eq!(frame.command, FIRED);
    rmp_serde::from_slice(&frame.payload).unwrap()
}

async fn firings(c: &mut Client, tag: &str) -> Vec<Firing> {
    #[derive(Serialize)]
    struct Tag<'a> {
        tag: &'a str,
    }
    c.call(453, &Tag { tag }).await.unwrap()
}

/// The value of the `/metrics` line starting with `series` (0 when absent).
async fn metric(node: &Node, series: &str) -> u64 {
    let mut http = tokio::net::TcpStream::connect(node.metrics_addr().unwrap())
        .await
        .unwrap();
    http.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut body = String::new();
    http.read_to_string(&mut body).await.unwrap();
    body.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .map_or(0, |v| v.parse().unwrap())
}

#[tokio::test]
async fn timers_fire_once_and_repeatedly_into_the_handler_of_their_tag() {
    let dir = tempfile::tempdir().unwrap();
    let node = solo(&topology(dir.path(), "")).await;
    let mut c = Client::connect(node.client_addrs()[0]).await.unwrap();

    let once = start(&mut c, "once", 100, 0).await;
    let fired = next_firing(&mut c, Duration::from_secs(5)).await;
    assert_eq!(
        (fired.tag.as_str(), fired.timer, fired.firing),
        ("once", once, 1)
    );
    assert_eq!(fired.note, "once");

    let tick = start(&mut c, "tick", 50, 50).await;
    assert_ne!(tick, once);
    for n in 1..=3 {
        let fired = next_firing(&mut c, Duration::from_secs(5)).await;
        assert_eq!(
            (fired.tag.as_str(), fired.timer, fired.firing),
            ("tick", tick, n)
        );
    }
    let cancelled: bool = c
        .call(452, &serde_json::json!({ "id": tick }))
        .await
        .unwrap();
    assert!(cancelled, "a pending repeating timer is cancelled");
    let again: bool = c
        .call(452, &serde_json::json!({ "id": tick }))
        .await
        .unwrap();
    assert!(!again, "a cancelled timer is not pending");
    let done: bool = c
        .call(452, &serde_json::json!({ "id": once }))
        .await
        .unwrap();
    assert!(!done, "a one-shot timer that fired is not pending");
    // A firing already handed to the module may still land; none after it.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let settled = firings(&mut c, "tick").await.len();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        firings(&mut c, "tick").await.len(),
        settled,
        "a cancelled timer fired"
    );
    assert!(
        (3..=5).contains(&settled),
        "{settled} tick firings recorded"
    );
    assert_eq!(metric(&node, "firefly_timers_pending{").await, 0);
    assert!(metric(&node, "firefly_timer_firings_total{").await >= 4);
}

#[tokio::test]
async fn a_trapping_timer_handler_fails_only_its_firings() {
    let dir = tempfile::tempdir().unwrap();
    let node = solo(&topology(dir.path(), "")).await;
    let mut c = Client::connect(node.client_addrs()[0]).await.unwrap();
    start(&mut c, "boom", 20, 20).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while metric(&node, "firefly_timer_failures_total{").await < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the trapping timer did not fire 3 times"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The timer keeps its schedule, and the module keeps serving requests.
    assert_eq!(metric(&node, "firefly_timers_pending{").await, 1);
    let tick = start(&mut c, "once", 10, 0).await;
    assert_eq!(
        next_firing(&mut c, Duration::from_secs(5)).await.timer,
        tick
    );
}

#[tokio::test]
async fn bad_timers_get_clear_errors_and_the_per_module_cap_holds() {
    let dir = tempfile::tempdir().unwrap();
    let node = solo(&topology(dir.path(), ", limits: { timers: 3 }")).await;
    let mut c = Client::connect(node.client_addrs()[0]).await.unwrap();
    let code = |r: Result<u64, firefly::client::ClientError>| {
        r.expect_err("accepted")
            .server()
            .expect("an error frame")
            .code
            .clone()
    };
    for (tag, delay_ms, period_ms) in [
        ("", 10, 0),
        (&*"x".repeat(65), 10, 0),
        ("tick", 10, 1),
        ("tick", 400 * 24 * 3600 * 1000, 0),
    ] {
        let req = Start {
            tag,
            delay_ms,
            period_ms,
            durable: false,
            note: "",
        };
        assert_eq!(
            code(c.call(451, &req).await),
            "invalid_timer",
            "{tag:?} {delay_ms} {period_ms}"
        );
    }
    for _ in 0..3 {
        start(&mut c, "tick", 60_000, 0).await;
    }
    let req = Start {
        tag: "tick",
        delay_ms: 60_000,
        period_ms: 0,
        durable: false,
        note: "",
    };
    assert_eq!(code(c.call(451, &req).await), "timer_limit");
    assert_eq!(metric(&node, "firefly_timers_pending{").await, 3);
}

#[tokio::test]
async fn a_firing_for_a_tag_without_a_handler_fails_and_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let node = solo(&topology(dir.path(), "")).await;
    let mut c = Client::connect(node.client_addrs()[0]).await.unwrap();
    start(&mut c, "nope", 10, 10).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while metric(&node, "firefly_timer_failures_total{").await < 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the firing was not counted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A repeating timer whose tag has no handler is cancelled after its first firing.
    assert_eq!(metric(&node, "firefly_timers_pending{").await, 0);
}

#[tokio::test]
async fn timers_survive_a_hot_update_and_fire_into_the_new_version() {
    let dir = tempfile::tempdir().unwrap();
    let node = solo(&topology(dir.path(), "")).await;
    let mut c = Client::connect(node.client_addrs()[0]).await.unwrap();
    let tick = start(&mut c, "tick", 50, 50).await;
    let before = next_firing(&mut c, Duration::from_secs(5)).await;
    assert_eq!((before.timer, before.generation), (tick, 1));
    let v2 = std::fs::read(firefly_testkit::module_wasm("ticker-v2")).unwrap();
    node.deploy("ticker", 2, Some(&v2)).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let fired = next_firing(&mut c, Duration::from_secs(5)).await;
        assert_eq!(fired.timer, tick, "the same timer keeps firing");
        if fired.generation == 2 {
            assert!(fired.firing > before.firing);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no firing ran on version 2"
        );
    }
}

#[tokio::test]
async fn a_durable_timer_fires_once_and_late_after_the_node_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = topology(dir.path(), "");
    let node = solo(&yaml).await;
    let mut c = Client::connect(node.client_addrs()[0]).await.unwrap();
    let durable = Start {
        tag: "once",
        delay_ms: 800,
        period_ms: 0,
        durable: true,
        note: "kept",
    };
    let id: u64 = c.call(451, &durable).await.unwrap();
    // A timer without the flag lives in memory only: the restart ends it.
    start(&mut c, "tick", 800, 0).await;
    drop(c);
    node.shutdown(Duration::from_secs(5)).await;
    // Down past the due time.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let node = solo(&yaml).await;
    let mut c = Client::connect(node.client_addrs()[0]).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let fired = loop {
        if let Some(f) = firings(&mut c, "once").await.pop() {
            break f;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the durable timer never fired"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        (fired.timer, fired.note.as_str(), fired.firing),
        (id, "kept", 1)
    );
    assert!(
        fired.late_ms >= 500,
        "a firing missed while down is reported late: {fired:?}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        firings(&mut c, "once").await.len(),
        1,
        "fired more than once"
    );
    assert!(
        firings(&mut c, "tick").await.is_empty(),
        "a non-durable timer survived the restart"
    );
    assert_eq!(metric(&node, "firefly_timers_pending{").await, 0);
}
