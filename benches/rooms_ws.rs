//! Rooms through real WebSocket clients (issue 21, "Speed"): R rooms × 4 clients; a 20 Hz room
//! tick applies the inputs received and broadcasts the room's state (about 60 bytes) to its 4
//! members; each client sends an input at 10 Hz. Three servers, each its own process, measured
//! in the same run with the same load generator:
//!
//! * **firefly**: `firefly up` with one node (gate and logic: a `ws:` listener) hosting
//!   `modules/roombench`; inputs are requests (`update_room`), answered with a reply frame.
//! * **bare**: a tokio WebSocket server running the same room loop natively (this bench re-run
//!   with `--bare-server`), speaking the same frames, inputs answered too.
//! * **colyseus**: Colyseus 0.18 on Node 22 (`benches/colyseus`, installed with `npm ci` when
//!   needed), one process; inputs are one-way `room.send` messages (no reply frame).
//!
//! Reported per server and R, over `--secs` after the joins and a 2 s warm-up: CPU µs per
//! room-tick (user + system CPU of the server's processes from /proc, over the broadcasts
//! delivered / 4), broadcasts delivered / expected (R × 4 × 20 Hz × secs), p50/p99 of the
//! interval between two broadcasts as each client sees it, inputs applied / sent (the room's
//! `inputs` count as its first member last saw it, after the inputs stop), RSS of the server's
//! processes, the load generator's own CPU (to check it is not the bottleneck) and the CPU
//! that other processes of the machine used meanwhile (in cores: a busy neighbour skews all).
//!
//! With 2 or more CPUs the server is pinned to CPU 1 and the load generator to CPU 0 (`taskset`),
//! so each server gets one core, as single-threaded Node has, and the clients one of their own;
//! `--no-pin` lets both use every core.
//!
//! Run: `cargo bench --bench rooms_ws -- [--rooms 100,500,1000] [--secs 10]
//! [--servers bare,firefly,colyseus]`. The `firefly` binary is `target/release/firefly`
//! (built by the bench when missing). `--hold` keeps each server running 30 s after its
//! window (printing its pids) for `perf record -p`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests, benches and their kit fail loudly on purpose"
)]

#[path = "rooms_ws/bare.rs"]
mod bare;
#[path = "rooms_ws/clients.rs"]
mod clients;
#[path = "rooms_ws/servers.rs"]
mod servers;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use firefly_testkit::bench::cpu_micros;
use servers::Kind;

/// Ticks a second.
const HZ: u64 = 20;
/// Clients per room.
const MEMBERS: usize = 4;

struct Report {
    cpu_us_per_tick: f64,
    server_cpu_pct: f64,
    other_cpu_pct: f64,
    delivered: f64,
    p50_ms: u64,
    p99_ms: u64,
    applied: f64,
    rss_mb: f64,
    load_cpu_pct: f64,
    state_bytes: u64,
    errors: u64,
    acks: u64,
}

fn list(name: &str, default: &str) -> Vec<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map_or(default, String::as_str)
        .split(',')
        .map(str::to_owned)
        .collect()
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--bare-server") {
        return bare::serve();
    }
    let rooms: Vec<usize> = list("--rooms", "100,500,1000")
        .iter()
        .map(|r| r.parse().expect("--rooms takes numbers"))
        .collect();
    let secs = firefly_testkit::bench::flag("--secs", 10);
    let hold = args.iter().any(|a| a == "--hold");
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let pin = cpus >= 2 && !args.iter().any(|a| a == "--no-pin");
    if pin {
        servers::pin_self()?;
    }
    let kinds: Vec<Kind> = list("--servers", "bare,firefly,colyseus")
        .iter()
        .map(|s| match s.as_str() {
            "bare" => Kind::Bare,
            "firefly" => Kind::Firefly,
            "colyseus" => Kind::Colyseus,
            other => panic!("unknown server {other}"),
        })
        .collect();
    // The load generator: one thread, so it stays light and its CPU is easy to read.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    println!(
        "rooms_ws: R rooms x {MEMBERS} WebSocket clients, {HZ} Hz ticks, inputs at 10 Hz per client, {secs} s windows, {}",
        if pin {
            "server on CPU 1, load generator on CPU 0"
        } else {
            "not pinned"
        }
    );
    println!(
        "| rooms | server | CPU µs/room-tick | server CPU | broadcasts delivered | p50/p99 interval ms | inputs applied | RSS MB | load-gen CPU | other CPU | state bytes |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for &r in &rooms {
        let mut results = Vec::new();
        for &kind in &kinds {
            let report = rt.block_on(run(kind, r, secs, hold, pin))?;
            println!(
                "| {r} | {} | {:.1} | {:.0}% | {:.2}% | {}/{} | {:.2}% | {:.0} | {:.0}% | {:.0}% | {} |",
                kind.name(),
                report.cpu_us_per_tick,
                report.server_cpu_pct,
                report.delivered * 100.0,
                report.p50_ms,
                report.p99_ms,
                report.applied * 100.0,
                report.rss_mb,
                report.load_cpu_pct,
                report.other_cpu_pct,
                report.state_bytes,
            );
            if report.errors > 0 {
                println!("  {}: {} client errors", kind.name(), report.errors);
            }
            let _ = report.acks;
            results.push((kind, report));
        }
        let of = |k: Kind| results.iter().find(|(kind, _)| *kind == k).map(|(_, r)| r);
        if let Some(f) = of(Kind::Firefly) {
            for base in [Kind::Bare, Kind::Colyseus] {
                if let Some(b) = of(base) {
                    println!(
                        "  R={r}: firefly/{} CPU per room-tick = {:.2}",
                        base.name(),
                        f.cpu_us_per_tick / b.cpu_us_per_tick
                    );
                }
            }
        }
    }
    Ok(())
}

/// One window of `kind` with `rooms` rooms: start it, join, warm up, measure, stop it.
async fn run(kind: Kind, rooms: usize, secs: u64, hold: bool, pin: bool) -> anyhow::Result<Report> {
    let server = servers::start(kind, pin).await?;
    let stats = clients::Stats::new(rooms);
    let proto = kind.proto();
    let addr = server.addr;
    let limit = Arc::new(tokio::sync::Semaphore::new(32));
    let start = tokio::time::Instant::now() + Duration::from_millis(200);
    let mut joins = Vec::new();
    for r in 0..rooms {
        let (limit, stats) = (limit.clone(), stats.clone());
        joins.push(tokio::spawn(async move {
            let _permit = limit.acquire().await.unwrap();
            let room = format!("room-{r}");
            let mut tasks = Vec::new();
            // One after the other, so the first opens the room the others join.
            for m in 0..MEMBERS {
                let ws = clients::join(proto, addr, &room).await?;
                let first_input =
                    start + Duration::from_millis(((r * MEMBERS + m) * 37 % 100) as u64);
                tasks.push(tokio::spawn(clients::run(
                    proto,
                    ws,
                    room.clone(),
                    r,
                    m == 0,
                    first_input,
                    stats.clone(),
                )));
            }
            anyhow::Ok(tasks)
        }));
    }
    let mut tasks = Vec::new();
    for join in joins {
        tasks.extend(join.await??);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    if hold {
        eprintln!("{} pids: {:?}", kind.name(), server.pids());
    }
    stats.window.store(true, Ordering::Relaxed);
    let (c0, l0, m0, t0) = (
        server.cpu_micros(),
        cpu_micros(),
        servers::machine_busy_micros(),
        Instant::now(),
    );
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stats.window.store(false, Ordering::Relaxed);
    let (c1, l1, m1, elapsed) = (
        server.cpu_micros(),
        cpu_micros(),
        servers::machine_busy_micros(),
        t0.elapsed(),
    );
    let rss = server.rss_bytes();
    if hold {
        eprintln!("holding {} for 30 s", kind.name());
        tokio::time::sleep(Duration::from_secs(30)).await;
    }
    // Inputs stop; a few ticks later every room has applied what it received.
    stats.sending.store(false, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let applied: u64 = stats
        .applied
        .iter()
        .map(|a| a.load(Ordering::Relaxed))
        .sum();
    let sent = stats.inputs_sent.load(Ordering::Relaxed);
    for task in &tasks {
        task.abort();
    }
    drop(server);
    let broadcasts = stats.broadcasts.load(Ordering::Relaxed) as f64;
    let expected = (rooms * MEMBERS) as f64 * HZ as f64 * elapsed.as_secs_f64();
    let window_us = elapsed.as_micros() as f64;
    let other = (m1 - m0).saturating_sub(c1 - c0).saturating_sub(l1 - l0);
    Ok(Report {
        cpu_us_per_tick: (c1 - c0) as f64 / (broadcasts / MEMBERS as f64).max(1.0),
        server_cpu_pct: (c1 - c0) as f64 / window_us * 100.0,
        other_cpu_pct: other as f64 / window_us * 100.0,
        delivered: broadcasts / expected,
        p50_ms: stats.interval_quantile(0.5),
        p99_ms: stats.interval_quantile(0.99),
        applied: applied as f64 / (sent as f64).max(1.0),
        rss_mb: rss as f64 / 1e6,
        load_cpu_pct: (l1 - l0) as f64 / window_us * 100.0,
        state_bytes: stats.state_bytes.load(Ordering::Relaxed),
        errors: stats.errors.load(Ordering::Relaxed),
        acks: stats.acks.load(Ordering::Relaxed),
    })
}
