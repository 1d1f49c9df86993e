//! Rooms: 1,000 rooms of 4 players ticking at 20 Hz on one logic node, each tick broadcasting a
//! small state update to the room's members, against a bare Rust loop doing the same work.
//!
//! Firefly: one node hosting `modules/countdown`; 4,000 client connections (one process, over
//! loopback) open and join the rooms by request; every tick the host calls the module's
//! `#[room_tick]` handler with the room's state, which lowers the count and broadcasts a `Tock`
//! to the room (a push to its session group). Baseline, same run: a bare tokio server with the
//! same framing, the same 4,000 connections, and per room a `tokio::time::interval` task that
//! keeps the same state, encodes the same `Tock` and writes it to its 4 sockets. Reported: pushes
//! received per second, tick-interval jitter (p50/p99 of |elapsed - period|, as the first member of
//! each room sees it), and process CPU per tick; ratio = Firefly's pushes/s over the baseline's.
//!
//! Run: `cargo bench --bench rooms -- [--rooms 1000] [--members 4] [--hz 20] [--secs 5]`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests, benches and their kit fail loudly on purpose"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use firefly::client::Client;
use firefly::config::ProtocolSettings;
use firefly::protocol::Codec;
use firefly_testkit::bench::{cpu_micros, flag};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const TOCK: u32 = 4701;

#[derive(Serialize, Deserialize)]
struct Tock {
    room: String,
    tick: u64,
    left: u32,
    elapsed_ms: u64,
}

struct Shape {
    rooms: usize,
    members: usize,
    period: Duration,
    secs: u64,
}

struct Report {
    pushes_per_sec: f64,
    jitter_p50_ms: u64,
    jitter_p99_ms: u64,
    cpu_us_per_tick: f64,
}

/// Counts the pushes `reader` receives; records each tock's jitter when `timed`.
fn count(
    mut next: impl FnMut() -> futures_util::future::BoxFuture<'static, Option<Vec<u8>>> + Send + 'static,
    pushes: Arc<AtomicU64>,
    jitter: Option<Arc<std::sync::Mutex<Vec<u64>>>>,
    period_ms: u64,
) {
    tokio::spawn(async move {
        // `elapsed_ms` is the room's running total (as `countdown` keeps it): a tick's own
        // interval is the difference from the previous tock.
        let mut last: Option<u64> = None;
        while let Some(payload) = next().await {
            pushes.fetch_add(1, Ordering::Relaxed);
            if let Some(j) = &jitter {
                let t: Tock = rmp_serde::from_slice(&payload).unwrap();
                if let Some(prev) = last {
                    j.lock()
                        .unwrap()
                        .push((t.elapsed_ms - prev).abs_diff(period_ms));
                }
                last = Some(t.elapsed_ms);
            }
        }
    });
}

/// Measures `secs` of pushes after a 1 s warm-up.
async fn measure(shape: &Shape, pushes: &AtomicU64, jitter: &std::sync::Mutex<Vec<u64>>) -> Report {
    tokio::time::sleep(Duration::from_secs(1)).await;
    jitter.lock().unwrap().clear();
    let (p0, c0, t0) = (pushes.load(Ordering::Relaxed), cpu_micros(), Instant::now());
    tokio::time::sleep(Duration::from_secs(shape.secs)).await;
    let (p1, c1, elapsed) = (pushes.load(Ordering::Relaxed), cpu_micros(), t0.elapsed());
    let mut j = std::mem::take(&mut *jitter.lock().unwrap());
    j.sort_unstable();
    let at = |q: f64| {
        j.get(((j.len() as f64 * q) as usize).min(j.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    let ticks = (p1 - p0) as f64 / shape.members as f64;
    Report {
        pushes_per_sec: (p1 - p0) as f64 / elapsed.as_secs_f64(),
        jitter_p50_ms: at(0.5),
        jitter_p99_ms: at(0.99),
        cpu_us_per_tick: (c1 - c0) as f64 / ticks.max(1.0),
    }
}

async fn firefly_run(shape: &Shape) -> Report {
    let node = firefly_testkit::start_node(&["countdown"]).await;
    let addr = node.client_addrs()[0];
    let pushes = Arc::new(AtomicU64::new(0));
    let jitter = Arc::new(std::sync::Mutex::new(Vec::new()));
    let period_ms = shape.period.as_millis() as u64;
    for r in 0..shape.rooms {
        let room = format!("room-{r}");
        for m in 0..shape.members {
            let mut c = Client::connect(addr).await.unwrap();
            if m == 0 {
                let req = json!({ "room": room, "from": 1_000_000_000u32, "tick_ms": period_ms, "max_members": shape.members });
                let () = c.call(471, &req).await.unwrap();
            } else {
                let () = c.call(472, &json!({ "room": room })).await.unwrap();
            }
            let c = Arc::new(tokio::sync::Mutex::new(c));
            let next = move || {
                let c = c.clone();
                // Only the ticks' broadcasts count (the joins' membership pushes do not).
                Box::pin(async move {
                    let mut c = c.lock().await;
                    loop {
                        let frame = c.next_push().await.ok()?;
                        if frame.command == TOCK {
                            return Some(frame.payload.to_vec());
                        }
                    }
                }) as futures_util::future::BoxFuture<'static, Option<Vec<u8>>>
            };
            count(
                next,
                pushes.clone(),
                (m == 0).then(|| jitter.clone()),
                period_ms,
            );
        }
    }
    let report = measure(shape, &pushes, &jitter).await;
    node.shutdown(Duration::from_secs(1)).await;
    report
}

async fn baseline_run(shape: &Shape) -> Report {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let pushes = Arc::new(AtomicU64::new(0));
    let jitter = Arc::new(std::sync::Mutex::new(Vec::new()));
    let period_ms = shape.period.as_millis() as u64;
    let codec = Arc::new(Codec::new(&ProtocolSettings::default()));
    for r in 0..shape.rooms {
        let mut members = Vec::new();
        for m in 0..shape.members {
            let client = TcpStream::connect(addr).await.unwrap();
            let (server, _) = listener.accept().await.unwrap();
            members.push(server);
            let codec = codec.clone();
            let client = Arc::new(tokio::sync::Mutex::new((client, BytesMut::new())));
            let next = move || {
                let (client, codec) = (client.clone(), codec.clone());
                Box::pin(async move {
                    let mut guard = client.lock().await;
                    let (stream, buf) = &mut *guard;
                    loop {
                        if let Ok(Some(frame)) = codec.decode(buf) {
                            return Some(frame.payload.to_vec());
                        }
                        if stream.read_buf(buf).await.ok()? == 0 {
                            return None;
                        }
                    }
                }) as futures_util::future::BoxFuture<'static, Option<Vec<u8>>>
            };
            count(
                next,
                pushes.clone(),
                (m == 0).then(|| jitter.clone()),
                period_ms,
            );
        }
        let (codec, period, room) = (codec.clone(), shape.period, format!("room-{r}"));
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(period);
            interval.tick().await;
            let (mut left, mut tick, mut last) = (1_000_000_000u32, 0u64, Instant::now());
            let mut total_ms = 0u64;
            let mut out = BytesMut::new();
            loop {
                interval.tick().await;
                tick += 1;
                left -= 1;
                let now = Instant::now();
                total_ms += now.duration_since(last).as_millis() as u64;
                let tock = Tock {
                    room: room.clone(),
                    tick,
                    left,
                    elapsed_ms: total_ms,
                };
                last = now;
                let payload = rmp_serde::to_vec_named(&tock).unwrap();
                for s in &mut members {
                    out.clear();
                    codec.encode(TOCK, &payload, &mut out);
                    if s.write_all(&out).await.is_err() {
                        return;
                    }
                }
            }
        });
    }
    measure(shape, &pushes, &jitter).await
}

fn print(name: &str, r: &Report) {
    println!(
        "{name:>9}: {:.0} pushes/s, tick jitter p50 {} ms, p99 {} ms, CPU {:.1} µs per tick",
        r.pushes_per_sec, r.jitter_p50_ms, r.jitter_p99_ms, r.cpu_us_per_tick
    );
}

fn main() {
    let shape = Shape {
        rooms: flag("--rooms", 1000) as usize,
        members: flag("--members", 4) as usize,
        period: Duration::from_millis(1000 / flag("--hz", 20)),
        secs: flag("--secs", 5),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        println!(
            "rooms: {} rooms of {} members at {} ms per tick, {} s measured",
            shape.rooms,
            shape.members,
            shape.period.as_millis(),
            shape.secs
        );
        let expected =
            shape.rooms as f64 * shape.members as f64 * 1000.0 / shape.period.as_millis() as f64;
        println!("  expected pushes/s if every tick runs on time: {expected:.0}");
        let firefly = firefly_run(&shape).await;
        let baseline = baseline_run(&shape).await;
        print("firefly", &firefly);
        print("baseline", &baseline);
        println!(
            "  pushes/s, firefly / baseline: {:.2}",
            firefly.pushes_per_sec / baseline.pushes_per_sec
        );
    });
}
