//! Soak: a real cluster (`firefly up`: master, gate, logic node holding the data) under steady
//! load for `--minutes` (default 10), sampling every process's resident memory and open file
//! descriptors after a warm-up and at the end. They must not grow, and no request may fail.
//!
//! Load: `--connections` clients (default 50) through the gate, each alternating an echo
//! (`modules/echo`, command 1) and an increment of its own cached counter (`modules/counters`,
//! 303, a journaled write), paced to `--rate` requests per second in all (default 2,000), so the
//! load is steady rather than saturating. The baseline is each process against itself: its
//! figures after the warm-up.
//!
//! Run: `cargo bench -p firefly --bench soak -- [--minutes 10] [--connections 50]
//! [--rate 2000]`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    reason = "benches fail loudly on purpose"
)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{Up, free_addr, node, workspace};
use firefly::client::Client;
use serde_json::{Value, json};

const TOKEN: &str = "soak-admin-token-0123456789abcdef";

fn flag(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Resident memory (KiB) and open descriptors of `pid`.
fn sample(pid: u64) -> (u64, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
    (rss, fds)
}

fn main() {
    let minutes = flag("--minutes", 10);
    let connections = flag("--connections", 50) as usize;
    let rate = flag("--rate", 2000).max(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(soak(minutes, connections, rate));
}

async fn soak(minutes: u64, connections: usize, rate: u64) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let (admin, g, l, gate) = (free_addr(), free_addr(), free_addr(), free_addr());
    let m = workspace().join("modules");
    let m = m.display();
    let yaml = format!(
        r#"version: 1
cluster: soak
master:
  admin: {admin}
modules:
  echo: {{ crate: {m}/echo }}
  counters: {{ crate: {m}/counters }}
nodes:
  gate:
    rpc: {g}
    listen:
      - tcp: {gate}
    routes:
      - {{ commands: 1, to: logic }}
      - {{ commands: "301-309", to: logic }}
  logic: {{ rpc: {l}, modules: [echo, counters] }}
storage:
  database: sqlite://{d}/data.db
  journal: {d}/journal.db
  owner: logic
"#
    );
    let topology = dir.path().join("topology.yaml");
    std::fs::write(&topology, yaml).unwrap();
    let running = Up::new(&topology)
        .env("FIREFLY_ADMIN_TOKEN", TOKEN)
        .env("FIREFLY_CLUSTER_SECRET", "soak-process-secret-0123456789")
        .ready_on_status(admin, TOKEN, 2)
        .start();
    let status = common::status(admin, TOKEN).await;
    let mut pids = vec![("master".to_owned(), u64::from(running.pid()))];
    for name in ["gate", "logic"] {
        pids.push((
            name.to_owned(),
            node(&status, name)["pid"].as_u64().unwrap(),
        ));
    }

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    // Each client's share of the rate: one request every `gap`.
    let gap = Duration::from_secs_f64(connections as f64 / rate as f64);
    let mut tasks = Vec::new();
    for n in 0..connections {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            let mut c = Client::connect(gate).await.unwrap();
            c.set_timeout(Duration::from_secs(10));
            let id = n as u64 + 1;
            let _ = c
                .call::<_, Value>(301, &json!({"id": id, "name": "soak", "count": 0}))
                .await;
            let mut next = tokio::time::Instant::now();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                next += gap;
                tokio::time::sleep_until(next).await;
                let done = if i.is_multiple_of(2) {
                    c.call::<_, Value>(1, &json!("soak")).await.map(drop)
                } else {
                    c.call::<_, i64>(303, &json!({"id": id, "by": 1}))
                        .await
                        .map(drop)
                };
                match done {
                    Ok(()) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        eprintln!("soak: request failed: {e}");
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
                i += 1;
            }
        }));
    }

    let warmup = Duration::from_secs(30.min(minutes * 60 / 4).max(5));
    tokio::time::sleep(warmup).await;
    let first: Vec<(u64, usize)> = pids.iter().map(|(_, p)| sample(*p)).collect();
    let ok0 = ok.load(Ordering::Relaxed);
    let started = Instant::now();
    let window = Duration::from_secs(minutes * 60).saturating_sub(warmup);
    while started.elapsed() < window {
        tokio::time::sleep(Duration::from_secs(60).min(window - started.elapsed())).await;
        let now: Vec<String> = pids
            .iter()
            .map(|(name, p)| {
                let (rss, fds) = sample(*p);
                format!("{name} {rss} KiB {fds} fds")
            })
            .collect();
        println!(
            "soak: {:>4} s: {} | {} ok, {} failed",
            (started.elapsed() + warmup).as_secs(),
            now.join(", "),
            ok.load(Ordering::Relaxed),
            failed.load(Ordering::Relaxed)
        );
    }
    let last: Vec<(u64, usize)> = pids.iter().map(|(_, p)| sample(*p)).collect();
    let served = ok.load(Ordering::Relaxed) - ok0;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    println!(
        "soak: {minutes} min, {connections} connections, {:.0} req/s served after warm-up, {} failed",
        served as f64 / started.elapsed().as_secs_f64(),
        failed.load(Ordering::Relaxed)
    );
    println!("| process | RSS after warm-up | RSS at end | fds after warm-up | fds at end |");
    println!("|---|---|---|---|---|");
    for ((name, _), (a, b)) in pids.iter().zip(first.iter().zip(&last)) {
        println!("| {name} | {} KiB | {} KiB | {} | {} |", a.0, b.0, a.1, b.1);
    }
    drop(running);
}
