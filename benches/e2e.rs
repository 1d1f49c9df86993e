//! End to end: clients → TCP → gate → `echo` module → back, against a bare echo server.
//!
//! What it isolates: everything Firefly adds on the request path of one node hosting a
//! trivial module (framing, session, routing, the wasm call, error handling) relative to
//! the ceiling: a bare tokio echo server speaking the same framing, measured in the same
//! run, on the same machine, with the same load generator. The ratio is the result; the
//! absolute numbers depend on the machine (2 cores here, shared by server and load).
//!
//! With `--two-hop`, the same echo runs on a separate logic node behind a gate (client → gate →
//! node-to-node RPC → logic node → back), both nodes in this process on the same server
//! runtime, against the same bare baseline.
//!
//! Run: `cargo bench --bench e2e -- [--connections 100] [--depth 1,16] [--duration 5]
//! [--payload 64] [--two-hop]` (duration in seconds).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests, benches and their kit fail loudly on purpose"
)]
#![allow(missing_docs, reason = "criterion_group! generates undocumented items")]

use std::time::Duration;

use firefly::config::ProtocolSettings;
use firefly_testkit::bench::{self, LoadArgs};
use firefly_testkit::loadgen::{self, LoadReport};
use firefly_testkit::{bare_echo, free_addr, start_cluster, start_node};

fn main() -> anyhow::Result<()> {
    let args = LoadArgs::from_env(100);
    let two_hop = args.has("--two-hop");
    let (server_rt, client_rt) = bench::runtimes()?;
    let settings = ProtocolSettings::default();
    let bare = server_rt.block_on(bare_echo::spawn(settings.clone()))?;
    let mut nodes = Vec::new();
    if two_hop {
        let (g, l) = (free_addr(), free_addr());
        let yaml = format!(
            "version: 1\ncluster: bench\nmodules:\n  echo: {{ crate: modules/echo }}\nnodes:\n  gate:\n    rpc: {g}\n    listen: [{{ tcp: 127.0.0.1:0 }}]\n    routes: [{{ commands: 1, to: logic }}]\n  logic: {{ rpc: {l}, modules: [echo] }}\n"
        );
        let (_, started) = server_rt.block_on(start_cluster(&yaml, &["gate", "logic"]));
        nodes = started;
    } else {
        nodes.push(server_rt.block_on(start_node(&["echo"])));
    }
    let firefly_addr = nodes[0].client_addrs()[0];

    println!(
        "e2e{}: {} connections, {}-byte payloads, {:?} per run (after 1 s warm-up)",
        if two_hop {
            " two-hop (gate -> logic node)"
        } else {
            ""
        },
        args.connections,
        args.payload,
        args.duration
    );
    println!(
        "| depth | bare echo req/s | firefly req/s | ratio | bare p50/p99/p999 µs | firefly p50/p99/p999 µs |"
    );
    println!("|---|---|---|---|---|---|");
    for &depth in &args.depths {
        let config = |addr| args.echo(addr, depth);
        let base: LoadReport = client_rt.block_on(loadgen::run(&config(bare.addr)))?;
        let ours: LoadReport = client_rt.block_on(loadgen::run(&config(firefly_addr)))?;
        let us = |d: Duration| d.as_micros();
        println!(
            "| {depth} | {:.0} | {:.0} | {:.2} | {}/{}/{} | {}/{}/{} |",
            base.rps,
            ours.rps,
            ours.rps / base.rps,
            us(base.p50),
            us(base.p99),
            us(base.p999),
            us(ours.p50),
            us(ours.p99),
            us(ours.p999),
        );
        if base.errors + ours.errors > 0 {
            println!("  errors: bare {} firefly {}", base.errors, ours.errors);
        }
    }
    for node in nodes {
        server_rt.block_on(node.shutdown(Duration::from_secs(2)));
    }
    drop(bare);
    Ok(())
}
