//! Latency under hot update: the same load with and without a stream of deploys.
//!
//! What it isolates: what swapping a module's code costs the requests running meanwhile. One
//! node hosts `versioned`; closed-loop clients call it. The baseline is steady state, measured
//! in the same run with the same load; then the same load runs while a new version is deployed
//! every `--interval` (alternating the code of `versioned` and `versioned-v2`, each deploy a new
//! version number, so every one goes through load, validation and swap; the compile cache makes
//! it what a cluster node does for a version the master already compiled). Reported: p99 under
//! deploys over steady p99 (target ≤ 2), errors (must be 0), and how long a deploy takes from
//! the call to the new version serving.
//!
//! With `--two-hop` the module runs on a logic node behind a gate (both in this process), and
//! the deploys go to the logic node.
//!
//! Run: `cargo bench --bench hot_update -- [--connections 50] [--depth 1] [--duration 5]
//! [--interval 100] [--two-hop]` (duration in seconds, interval in milliseconds).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests, benches and their kit fail loudly on purpose"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use firefly::config::ProtocolSettings;
use firefly_testkit::bench;
use firefly_testkit::loadgen::{self, LoadConfig};
use firefly_testkit::{free_addr, module_wasm, start_cluster, start_node};

struct Args {
    connections: usize,
    depth: usize,
    duration: Duration,
    interval: Duration,
    two_hop: bool,
}

fn parse_args() -> Args {
    let mut args = Args {
        connections: 50,
        depth: 1,
        duration: Duration::from_secs(5),
        interval: Duration::from_millis(100),
        two_hop: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_default();
        match flag.as_str() {
            "--connections" => args.connections = value().parse().unwrap_or(args.connections),
            "--depth" => args.depth = value().parse().unwrap_or(args.depth),
            "--duration" => {
                args.duration = Duration::from_secs_f64(value().parse().unwrap_or(5.0));
            }
            "--interval" => {
                args.interval = Duration::from_millis(value().parse().unwrap_or(100));
            }
            "--two-hop" => args.two_hop = true,
            _ => {} // `cargo bench` passes `--bench`; ignore what we do not know.
        }
    }
    args
}

fn main() -> anyhow::Result<()> {
    let args = parse_args();
    let (server_rt, client_rt) = bench::runtimes()?;
    let (v1, v2) = (
        std::fs::read(module_wasm("versioned"))?,
        std::fs::read(module_wasm("versioned-v2"))?,
    );
    let nodes = if args.two_hop {
        let (g, l) = (free_addr(), free_addr());
        let m = firefly_testkit::root().join("modules");
        let yaml = format!(
            "version: 1\ncluster: bench\nmodules:\n  versioned: {{ crate: {m}/versioned }}\nnodes:\n  gate:\n    rpc: {g}\n    listen: [{{ tcp: 127.0.0.1:0 }}]\n    routes: [{{ commands: 301, to: logic }}]\n  logic: {{ rpc: {l}, modules: [versioned] }}\n",
            m = m.display()
        );
        server_rt
            .block_on(start_cluster(&yaml, &["gate", "logic"]))
            .1
    } else {
        vec![server_rt.block_on(start_node(&["versioned"]))]
    };
    let addr = nodes[0].client_addrs()[0];
    let nodes: Vec<Arc<firefly::Node>> = nodes.into_iter().map(Arc::new).collect();
    let target = nodes.last().cloned().unwrap();
    let config = LoadConfig {
        addr,
        connections: args.connections,
        depth: args.depth,
        duration: args.duration,
        warmup: Duration::from_secs(1),
        command: 301,
        payload: vec![0x5a; 64],
        settings: ProtocolSettings::default(),
        tls: None,
    };
    println!(
        "hot_update{}: {} connections, depth {}, {:?} per run (after 1 s warm-up), a deploy every {:?}",
        if args.two_hop { " two-hop" } else { "" },
        args.connections,
        args.depth,
        args.duration,
        args.interval
    );

    // Deploy once before measuring, so both runs see a node that has swapped before.
    server_rt.block_on(target.deploy("versioned", 2, Some(&v2)))?;
    let steady = client_rt.block_on(loadgen::run(&config))?;

    let stop = Arc::new(AtomicBool::new(false));
    let deployer = {
        let (stop, target, interval) = (stop.clone(), target.clone(), args.interval);
        server_rt.spawn(async move {
            let mut took = Vec::new();
            let mut version = 2u32;
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(interval).await;
                version += 1;
                let code = if version.is_multiple_of(2) { &v2 } else { &v1 };
                let started = Instant::now();
                target
                    .deploy("versioned", version, Some(code))
                    .await
                    .expect("deploy");
                took.push(started.elapsed());
            }
            took
        })
    };
    let during = client_rt.block_on(loadgen::run(&config))?;
    stop.store(true, Ordering::Relaxed);
    let mut took = server_rt.block_on(deployer)?;
    took.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let us = |d: Duration| d.as_micros();
    println!("| run | req/s | p50/p99/p999 µs | errors |");
    println!("|---|---|---|---|");
    for (name, r) in [("steady", &steady), ("during deploys", &during)] {
        println!(
            "| {name} | {:.0} | {}/{}/{} | {} |",
            r.rps,
            us(r.p50),
            us(r.p99),
            us(r.p999),
            r.errors
        );
    }
    println!(
        "p99 during deploys / steady p99 = {:.2} (target <= 2); throughput ratio {:.2}",
        during.p99.as_secs_f64() / steady.p99.as_secs_f64(),
        during.rps / steady.rps
    );
    if let (Some(first), Some(last)) = (took.first(), took.last()) {
        println!(
            "{} deploys; call -> new version serving: median {:.2} ms, min {:.2} ms, max {:.2} ms",
            took.len(),
            ms(took[took.len() / 2]),
            ms(*first),
            ms(*last)
        );
    }
    drop(target);
    for node in nodes {
        if let Ok(node) = Arc::try_unwrap(node) {
            server_rt.block_on(node.shutdown(Duration::from_secs(2)));
        }
    }
    Ok(())
}
