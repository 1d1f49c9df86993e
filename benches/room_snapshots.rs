//! Durable rooms: what snapshots cost, and how long a hand-over takes.
//!
//! 1. Snapshot cost. R rooms of `modules/countdown` ticking at 20 Hz on one node with the
//!    embedded store (SQLite journal), one member each, over loopback: without snapshots, then
//!    (a fresh node, same run) with a snapshot every `--every` ticks. Reported: pushes/s and
//!    process CPU per room-tick; ratio = with / without.
//! 2. Hand-over. A gate and two logic nodes (the store on the gate): R durable rooms spread
//!    over both, then one logic node stops gracefully (what `firefly drain` does): the time
//!    until every room it held ticks again on the other node, as its member sees it.
//!
//! Run: `cargo bench --bench room_snapshots -- [--rooms 1000] [--every 20] [--secs 5]`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests, benches and their kit fail loudly on purpose"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use firefly::client::Client;
use firefly::protocol::session::ROOM_MOVED_TOPIC;
use firefly_testkit::bench::{cpu_micros, flag};
use serde_json::json;

const TOCK: u32 = 4701;
const PERIOD_MS: u64 = 50;

/// Clients the rooms' members are spread over (a listener takes 256 connections per address).
const CLIENTS: usize = 50;

/// Opens `rooms` countdown rooms through `addr`, each with one member (the members are
/// [`CLIENTS`] clients, each in many rooms), counting their tocks in `pushes`; `every`:
/// snapshot rule (`None`: not durable). With `moved`, records when each room that got
/// `room_moved` ticked again after it.
async fn open_rooms(
    addr: std::net::SocketAddr,
    prefix: &str,
    rooms: usize,
    every: Option<u64>,
    pushes: Arc<AtomicU64>,
    moved: Option<Arc<std::sync::Mutex<Vec<Instant>>>>,
) {
    for k in 0..CLIENTS.min(rooms) {
        let mut c = Client::connect(addr).await.unwrap();
        c.set_timeout(Duration::from_secs(30));
        for r in (k..rooms).step_by(CLIENTS) {
            let mut req = json!({ "room": format!("{prefix}-{r}"), "from": 1_000_000_000u32, "tick_ms": PERIOD_MS, "max_members": 1 });
            if let Some(n) = every {
                req["snapshot_ticks"] = json!(n);
            }
            let () = c.call(471, &req).await.unwrap();
        }
        let (pushes, moved) = (pushes.clone(), moved.clone());
        tokio::spawn(async move {
            let mut was_moved = std::collections::HashSet::new();
            while let Ok(frame) = c.next_push().await {
                match frame.command {
                    TOCK => {
                        pushes.fetch_add(1, Ordering::Relaxed);
                        if let Some(m) = &moved
                            && !was_moved.is_empty()
                        {
                            let tock: serde_json::Value =
                                rmp_serde::from_slice(&frame.payload).unwrap();
                            if was_moved.remove(tock["room"].as_str().unwrap_or("")) {
                                m.lock().unwrap().push(Instant::now());
                            }
                        }
                    }
                    ROOM_MOVED_TOPIC => {
                        let m: serde_json::Value = rmp_serde::from_slice(&frame.payload).unwrap();
                        was_moved.insert(m["room"].as_str().unwrap_or("").to_owned());
                    }
                    _ => {}
                }
            }
        });
    }
}

/// Pushes/s and CPU µs per room-tick over `secs` after a 1 s warm-up.
async fn measure(pushes: &AtomicU64, secs: u64) -> (f64, f64) {
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (p0, c0, t0) = (pushes.load(Ordering::Relaxed), cpu_micros(), Instant::now());
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let (p1, c1) = (pushes.load(Ordering::Relaxed), cpu_micros());
    let ticks = (p1 - p0) as f64;
    (
        ticks / t0.elapsed().as_secs_f64(),
        (c1 - c0) as f64 / ticks.max(1.0),
    )
}

fn yaml(dir: &std::path::Path, nodes: &str) -> String {
    format!(
        "version: 1\ncluster: snapbench\nstate_dir: {d}/state\nmodules:\n  countdown: {{ crate: modules/countdown }}\n\
         storage:\n  database: sqlite://{d}/data.db\n  cache: embedded\n  owner: {owner}\n  journal: {d}/journal.db\n\
         nodes:\n{nodes}",
        d = dir.display(),
        owner = if nodes.contains("gate:") {
            "gate"
        } else {
            "logic"
        },
    )
}

async fn snapshot_cost(rooms: usize, every: u64, secs: u64) {
    let mut results = Vec::new();
    for rule in [None, Some(every)] {
        let dir = tempfile::tempdir().unwrap();
        let addr = firefly_testkit::free_addr();
        let nodes =
            format!("  logic:\n    listen: [{{ tcp: {addr} }}]\n    modules: [countdown]\n");
        let (_, started) =
            firefly_testkit::start_cluster(&yaml(dir.path(), &nodes), &["logic"]).await;
        let pushes = Arc::new(AtomicU64::new(0));
        open_rooms(addr, "room", rooms, rule, pushes.clone(), None).await;
        let (rate, cpu) = measure(&pushes, secs).await;
        println!(
            "  snapshots {:>14}: {rate:.0} room-ticks/s, CPU {cpu:.1} µs per room-tick",
            rule.map_or("none".to_owned(), |n| format!("every {n} ticks"))
        );
        results.push((rate, cpu));
        for node in started {
            node.shutdown(Duration::from_secs(1)).await;
        }
    }
    println!(
        "  with / without: room-ticks/s {:.2}, CPU per room-tick {:.2}",
        results[1].0 / results[0].0,
        results[1].1 / results[0].1
    );
}

async fn hand_over(rooms: usize, every: u64) {
    let dir = tempfile::tempdir().unwrap();
    let (gate, g, a, b) = (
        firefly_testkit::free_addr(),
        firefly_testkit::free_addr(),
        firefly_testkit::free_addr(),
        firefly_testkit::free_addr(),
    );
    let nodes = format!(
        "  gate:\n    rpc: {g}\n    listen: [{{ tcp: {gate} }}]\n    routes:\n      - {{ commands: \"471-474\", to: [logic-1, logic-2], policy: room }}\n\
         \x20 logic-1:\n    rpc: {a}\n    modules: [countdown]\n\
         \x20 logic-2:\n    rpc: {b}\n    modules: [countdown]\n"
    );
    let (_, mut started) =
        firefly_testkit::start_cluster(&yaml(dir.path(), &nodes), &["gate", "logic-1", "logic-2"])
            .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pushes = Arc::new(AtomicU64::new(0));
    let moved = Arc::new(std::sync::Mutex::new(Vec::new()));
    open_rooms(
        gate,
        "room",
        rooms,
        Some(every),
        pushes,
        Some(moved.clone()),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let logic_1 = started.remove(1);
    let held = logic_1.open_rooms();
    let t0 = Instant::now();
    // What `firefly drain` makes the node do (SIGUSR1).
    let drain = async { firefly::node::StopKind::Drain };
    logic_1
        .serve_until_asked(drain, Duration::from_secs(5))
        .await;
    let stopped = t0.elapsed();
    let deadline = Instant::now() + Duration::from_secs(30);
    while moved.lock().unwrap().len() < held && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut back: Vec<u128> = moved
        .lock()
        .unwrap()
        .iter()
        .map(|t| t.duration_since(t0).as_millis())
        .collect();
    back.sort_unstable();
    let at = |q: f64| {
        back.get(((back.len() as f64 * q) as usize).min(back.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    println!(
        "  hand-over of {held} rooms: node stopped after {} ms; ticking again on the other node: {} of {held}, p50 {} ms, p99 {} ms, last {} ms",
        stopped.as_millis(),
        back.len(),
        at(0.5),
        at(0.99),
        back.last().copied().unwrap_or(0)
    );
    for node in started {
        node.shutdown(Duration::from_secs(1)).await;
    }
}

fn main() {
    let rooms = flag("--rooms", 1000) as usize;
    let every = flag("--every", 20);
    let secs = flag("--secs", 5);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        println!("room snapshots: {rooms} rooms at {PERIOD_MS} ms per tick, one member each, {secs} s measured");
        snapshot_cost(rooms, every, secs).await;
        hand_over(rooms, every).await;
    });
}
