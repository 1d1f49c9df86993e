//! Timers: 100,000 timers pending on one node, firing at 10,000 per second into a module, against
//! a bare tokio timer per firing calling the same wasm export on the same node.
//!
//! Both runs fire the `ticker` module's `stamp` handler, which measures inside the module how
//! late it runs against the wall-clock time the firing was scheduled for and pushes that to
//! the bench's client connection. Firefly: every timer is started by a client request (command
//! 451) and held by the node's scheduler. Baseline: one `tokio::time::sleep_until` task per
//! firing, calling the module version directly with the same firing. Reported per run: firings,
//! lateness p50 / p99 / max, and process CPU per firing (the node and the client share the
//! process); the ratio is Firefly's CPU per firing over the baseline's.
//!
//! Run: `cargo bench --bench timers -- [--timers 100000] [--rate 10000]`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests, benches and their kit fail loudly on purpose"
)]

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use firefly::client::Client;
use firefly::node::Node;
use firefly_abi::{DispatchKind, TimerFiring};
use firefly_testkit::bench::{cpu_micros, flag};
use serde::Serialize;

const LATENESS: u32 = 4502;
/// Requests in flight while starting timers.
const WINDOW: usize = 1000;

#[derive(Serialize)]
struct Start {
    tag: &'static str,
    delay_ms: u64,
    at_micros: u64,
}

struct Report {
    firings: usize,
    p50: u64,
    p99: u64,
    max: u64,
    cpu_us_per_firing: f64,
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

/// The due time of firing `i` of `n` at `rate` per second, the first `lead` from now.
fn schedule(n: usize, rate: usize, lead: Duration) -> Vec<u64> {
    let t0 = now_micros() + lead.as_micros() as u64;
    (0..n)
        .map(|i| t0 + (i as u64 * 1_000_000) / rate as u64)
        .collect()
}

/// Reads `n` lateness pushes; returns the report for the firing window starting at `cpu0`.
async fn collect(client: &mut Client, n: usize, cpu0: u64) -> Report {
    let mut late = Vec::with_capacity(n);
    while late.len() < n {
        let frame = tokio::time::timeout(Duration::from_secs(60), client.next_push())
            .await
            .expect("firings stopped arriving")
            .unwrap();
        assert_eq!(frame.command, LATENESS);
        late.push(rmp_serde::from_slice::<u64>(&frame.payload).unwrap());
    }
    let cpu = cpu_micros() - cpu0;
    late.sort_unstable();
    let at = |q: f64| late[((late.len() as f64 * q) as usize).min(late.len() - 1)];
    Report {
        firings: n,
        p50: at(0.5),
        p99: at(0.99),
        max: *late.last().unwrap(),
        cpu_us_per_firing: cpu as f64 / n as f64,
    }
}

async fn firefly_run(client: &mut Client, n: usize, rate: usize) -> (Report, Duration, bool) {
    let lead = Duration::from_secs(5);
    let due = schedule(n, rate, lead);
    let started = Instant::now();
    for chunk in due.chunks(WINDOW) {
        for at in chunk {
            let req = Start {
                tag: "stamp",
                delay_ms: 0,
                at_micros: *at,
            };
            client
                .send(451, &rmp_serde::to_vec_named(&req).unwrap())
                .await
                .unwrap();
        }
        for _ in chunk {
            client.reply_to(451).await.unwrap();
        }
    }
    let took = started.elapsed();
    // Every timer was pending at once if the first had not come due when the last started.
    let all_pending = now_micros() < due[0];
    let wait = due[0].saturating_sub(now_micros());
    tokio::time::sleep(Duration::from_micros(wait)).await;
    (collect(client, n, cpu_micros()).await, took, all_pending)
}

async fn baseline_run(
    node: &Node,
    client: &mut Client,
    session: u64,
    n: usize,
    rate: usize,
) -> Report {
    let version = node.module("ticker").unwrap();
    let index = version
        .manifest
        .timers
        .binary_search(&"stamp".to_owned())
        .unwrap() as u32;
    let due = schedule(n, rate, Duration::from_secs(2));
    for (i, at) in due.iter().enumerate() {
        let firing = TimerFiring {
            timer: i as u64,
            tag: "stamp".into(),
            session,
            firing: 1,
            late_ms: 0,
            repeats: false,
            payload: rmp_serde::to_vec(&at.to_string()).unwrap(),
        };
        let input = Bytes::from(rmp_serde::to_vec_named(&firing).unwrap());
        let when = tokio::time::Instant::now() + Duration::from_micros(at - now_micros());
        let version = version.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(when).await;
            let outcome = version
                .call_event(DispatchKind::Timer, index, 0, input)
                .await;
            outcome.result.unwrap();
        });
    }
    let wait = due[0].saturating_sub(now_micros());
    tokio::time::sleep(Duration::from_micros(wait)).await;
    collect(client, n, cpu_micros()).await
}

fn print(name: &str, r: &Report) {
    println!(
        "{name:>9}: {} firings, lateness p50 {} µs, p99 {} µs, max {} µs; CPU {:.2} µs per firing",
        r.firings, r.p50, r.p99, r.max, r.cpu_us_per_firing
    );
}

fn main() {
    let n = flag("--timers", 100_000) as usize;
    let rate = flag("--rate", 10_000) as usize;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let yaml = format!(
            "version: 1\ncluster: timerbench\nmodules:\n  ticker: {{ crate: modules/ticker, limits: {{ timers: {} }} }}\nnodes:\n  solo:\n    listen:\n      - tcp: 127.0.0.1:0\n    modules: [ticker]\nstorage:\n  database: sqlite://{d}/data.db\n  journal: {d}/journal.db\n",
            n + 1000,
            d = dir.path().display()
        );
        let (_topology, mut nodes) = firefly_testkit::start_cluster(&yaml, &["solo"]).await;
        let node = nodes.remove(0);
        let mut client = Client::connect(node.client_addrs()[0]).await.unwrap();
        client.set_timeout(Duration::from_secs(60));
        let session: u64 = client.call(454, &()).await.unwrap();
        println!("timers: {n} pending, firing at {rate}/s into `ticker`'s `stamp` handler");
        let (firefly, took, all_pending) = firefly_run(&mut client, n, rate).await;
        println!(
            "  started {n} timers by request in {:.2} s ({:.0}/s); all pending at once: {all_pending}",
            took.as_secs_f64(),
            n as f64 / took.as_secs_f64()
        );
        // The baseline pushes to the same client's session.
        let baseline = baseline_run(&node, &mut client, session, n, rate).await;
        print("firefly", &firefly);
        print("baseline", &baseline);
        println!(
            "  CPU per firing, firefly / baseline: {:.2}",
            firefly.cpu_us_per_firing / baseline.cpu_us_per_firing
        );
    });
}
