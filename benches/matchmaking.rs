//! Matchmaking with 10,000 players queued: how fast `modules/matchmaking` turns a full queue
//! into matches (each one a room and a push to its players).
//!
//! The node runs in a child process (this binary with `--serve`), so neither process holds
//! more than ~10,000 sockets. The parent connects N clients and queues them all for one mode,
//! in 10 regions, ratings 2,000 apart: no pair fits the rating window until it has widened to
//! ±2,000 (9.5 s after the first player queued), so the whole queue is waiting when matching
//! begins. Measured from the first match push to the last: players matched per second, and
//! the node's CPU per match (from `/proc/<child>/stat`).
//!
//! Baseline, same run: the same forming rule run natively over the same 10,000 entries in
//! memory (sort by region and rating, greedy scan), players matched per second and CPU per
//! match. The module forms at most 200 matches per 200 ms firing by design (a firing stays
//! within the module's CPU budget however long the queue), so its rate is capped at 2,000
//! players/s; the CPU-per-match ratio is the cost of doing it in a sandboxed module over
//! cached objects.
//!
//! Run: `cargo bench --bench matchmaking -- [--players 10000]`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests, benches and their kit fail loudly on purpose"
)]

use std::io::{BufRead, Write};
use std::time::{Duration, Instant};

use firefly::client::Client;
use firefly_testkit::bench::flag;
use serde_json::json;

const REGIONS: u64 = 10;
const SPACING: i64 = 2000;

fn serve() {
    // The node's warnings, on stderr (the parent passes it through): a firing that failed or
    // was stopped says so there.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let yaml = format!(
            "version: 1\ncluster: mmbench\nmodules:\n  matchmaking: {{ crate: modules/matchmaking }}\nnodes:\n  solo:\n    listen:\n      - tcp: 127.0.0.1:0\n        idle_timeout: 3600s\n        max_connections: 100000\n        max_connections_per_ip: 100000\n    modules: [matchmaking]\nstorage:\n  database: sqlite://{d}/data.db\n  journal: {d}/journal.db\n",
            d = dir.path().display()
        );
        let (_t, nodes) = firefly_testkit::start_cluster(&yaml, &["solo"]).await;
        println!("ADDR {}", nodes[0].client_addrs()[0]);
        std::io::stdout().flush().unwrap();
        // Serve until the parent closes our stdin.
        tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            while std::io::stdin().read_line(&mut line).unwrap_or(0) > 0 {}
        })
        .await
        .unwrap();
        drop(nodes);
    });
}

/// utime + stime of process `pid`, in seconds.
fn cpu_of(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split(' ').collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0
}

struct Entry {
    region: u64,
    rating: i64,
    since: Instant,
}

/// The module's rule, natively: sort by (region, rating), then greedily take groups of two
/// whose spread fits the window of the earliest member. Returns the matches formed.
fn native_form(queue: &mut Vec<Entry>, now: Instant) -> usize {
    let window = |waited: Duration| (100 + (waited.as_millis() as i64) / 5).min(2000);
    queue.sort_by_key(|e| (e.region, e.rating));
    let (mut i, mut formed) = (0, 0);
    let mut keep = vec![true; queue.len()];
    while i + 1 < queue.len() {
        let (a, b) = (&queue[i], &queue[i + 1]);
        let earliest = a.since.min(b.since);
        if a.region == b.region && b.rating - a.rating <= window(now - earliest) {
            keep[i] = false;
            keep[i + 1] = false;
            formed += 1;
            i += 2;
        } else {
            i += 1;
        }
    }
    let mut k = keep.into_iter();
    queue.retain(|_| k.next().unwrap_or(false));
    formed
}

fn baseline(players: u64) -> (f64, f64) {
    let long_ago = Instant::now() - Duration::from_secs(10);
    let mut queue: Vec<Entry> = (0..players)
        .map(|i| Entry {
            region: i % REGIONS,
            rating: (i / REGIONS) as i64 * SPACING - 1_000_000,
            since: long_ago,
        })
        .collect();
    let started = Instant::now();
    let cpu0 = firefly_testkit::bench::cpu_micros();
    let formed = native_form(&mut queue, Instant::now());
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = (firefly_testkit::bench::cpu_micros() - cpu0) as f64 / 1e6;
    assert_eq!(formed as u64, players / 2);
    let rate = players as f64 / elapsed;
    let per_match = elapsed.max(cpu) * 1e6 / formed as f64;
    println!(
        "native rule over {players} entries (baseline): {rate:.0} players matched/s, {per_match:.2} µs per match"
    );
    (rate, per_match)
}

fn main() {
    if std::env::args().any(|a| a == "--serve") {
        serve();
        return;
    }
    let players = flag("--players", 10_000);
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .arg("--serve")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let addr: std::net::SocketAddr = loop {
        let mut line = String::new();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "the node process ended"
        );
        if let Some(a) = line.trim().strip_prefix("ADDR ") {
            break a.parse().unwrap();
        }
    };
    // Keep reading what the node prints, so it never blocks on a full pipe.
    std::thread::spawn(move || {
        let mut line = String::new();
        while out.read_line(&mut line).unwrap_or(0) > 0 {
            if std::env::var_os("BENCH_NODE_LOG").is_some() {
                eprint!("node: {line}");
            }
            line.clear();
        }
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (rate, per_match) = rt.block_on(async move {
        let started = Instant::now();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
        let mut tasks = Vec::new();
        let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(200));
        for i in 0..players {
            let tx = tx.clone();
            let sem = sem.clone();
            tasks.push(tokio::spawn(async move {
                let permit = sem.acquire_owned().await.unwrap();
                let mut c = Client::connect(addr).await.unwrap();
                c.set_timeout(Duration::from_secs(120));
                let req = json!({
                    "mode": "bench",
                    "region": format!("r{}", i % REGIONS),
                    "rating": (i / REGIONS) as i64 * SPACING - 1_000_000,
                });
                let _: usize = c.call(481, &req).await.unwrap();
                drop(permit);
                // A player never told within the client's timeout is reported, not fatal.
                if let Ok(push) = c.next_push().await {
                    assert_eq!(push.command, 4801);
                    tx.send(Instant::now()).unwrap();
                }
                c
            }));
        }
        drop(tx);
        // Everyone queued (before the window reaches any pair).
        let mut probe = Client::connect(addr).await.unwrap();
        let queued: usize = loop {
            let n: usize = probe.call(483, &json!({"mode": "bench"})).await.unwrap();
            if n as u64 >= players || started.elapsed() > Duration::from_secs(9) {
                break n;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        println!(
            "{queued} players queued in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        assert_eq!(queued as u64, players, "queueing took too long: matching began first");
        let first = rx.recv().await.unwrap();
        let cpu0 = cpu_of(pid);
        let mut last = first;
        let mut n = 1u64;
        while let Some(t) = rx.recv().await {
            last = last.max(t);
            n += 1;
        }
        let cpu = cpu_of(pid) - cpu0;
        let left: usize = probe.call(483, &json!({"mode": "bench"})).await.unwrap();
        if n < players {
            println!(
                "{} players were never told of a match within 120 s; {left} still queued",
                players - n
            );
        }
        let secs = (last - first).as_secs_f64();
        let matches = n / 2;
        let rate = n as f64 / secs;
        let per_match = cpu * 1e6 / matches as f64;
        println!(
            "firefly matchmaking: {n} players in {matches} matches (rooms + pushes) over {secs:.2} s: {rate:.0} players matched/s, node CPU {per_match:.0} µs per match"
        );
        for t in tasks {
            drop(t.await.unwrap());
        }
        (rate, per_match)
    });
    let (native_rate, native_per_match) = baseline(players);
    println!(
        "ratio: players matched/s {:.4} of native (capped by design at 2000/s); CPU per match {:.0}x native",
        rate / native_rate,
        per_match / native_per_match
    );
    drop(child.stdin.take());
    let _ = child.wait();
}
