//! Two hops over NATS against two hops over the direct mesh, and against bare echo: the same
//! `echo` on a logic node behind a gate (client → gate → node link → logic node → back), once
//! with the nodes linked directly (`rpc:` addresses, the default) and once with the links over
//! NATS (`cluster: { transport: nats://… }`, no addresses), all in one run with the same load
//! generator. The ratios NATS / direct and NATS / bare are the result.
//!
//! Run: `FIREFLY_TEST_NATS_URL=nats://127.0.0.1:4222 cargo bench --bench nats --
//! [--connections 100] [--depth 1,16] [--duration 5]` (needs a NATS server).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests, benches and their kit fail loudly on purpose"
)]

use std::time::Duration;

use firefly::config::ProtocolSettings;
use firefly_testkit::bench::{self, LoadArgs};
use firefly_testkit::loadgen::{self, LoadReport};
use firefly_testkit::{bare_echo, free_addr, start_cluster};

fn main() -> anyhow::Result<()> {
    let args = LoadArgs::from_env(100);
    let Ok(url) = std::env::var("FIREFLY_TEST_NATS_URL") else {
        panic!("set FIREFLY_TEST_NATS_URL (e.g. nats://127.0.0.1:4222): this bench needs NATS");
    };
    let (server_rt, client_rt) = bench::runtimes()?;
    let settings = ProtocolSettings::default();
    let bare = server_rt.block_on(bare_echo::spawn(settings.clone()))?;
    let (g, l) = (free_addr(), free_addr());
    let direct = format!(
        "version: 1\ncluster: bench-direct\nmodules:\n  echo: {{ crate: modules/echo }}\nnodes:\n  gate:\n    rpc: {g}\n    listen: [{{ tcp: 127.0.0.1:0 }}]\n    routes: [{{ commands: 1, to: logic }}]\n  logic: {{ rpc: {l}, modules: [echo] }}\n"
    );
    let nats = format!(
        "version: 1\ncluster: {{ name: bench-nats-{}, transport: \"{url}\" }}\nmodules:\n  echo: {{ crate: modules/echo }}\nnodes:\n  gate:\n    listen: [{{ tcp: 127.0.0.1:0 }}]\n    routes: [{{ commands: 1, to: logic }}]\n  logic: {{ modules: [echo] }}\n",
        std::process::id()
    );
    let (_, direct_nodes) = server_rt.block_on(start_cluster(&direct, &["gate", "logic"]));
    let (_, nats_nodes) = server_rt.block_on(start_cluster(&nats, &["logic", "gate"]));
    let direct_addr = direct_nodes[0].client_addrs()[0];
    let nats_addr = nats_nodes[1].client_addrs()[0];
    // The NATS gate routes once it has heard the logic node announce itself.
    server_rt.block_on(async {
        let mut c = firefly::client::Client::connect(nats_addr).await.unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while c.call::<_, serde_json::Value>(1, &"ready?").await.is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "the NATS cluster never routed"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });

    println!(
        "nats: two hops (gate -> logic), {} connections, {}-byte payloads, {:?} per run (after 1 s warm-up), NATS at {url}",
        args.connections, args.payload, args.duration
    );
    println!(
        "| depth | bare echo req/s | direct req/s | NATS req/s | NATS / direct | NATS / bare | direct p50/p99 µs | NATS p50/p99 µs |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for &depth in &args.depths {
        let config = |addr| args.echo(addr, depth);
        let base: LoadReport = client_rt.block_on(loadgen::run(&config(bare.addr)))?;
        let mesh: LoadReport = client_rt.block_on(loadgen::run(&config(direct_addr)))?;
        let over: LoadReport = client_rt.block_on(loadgen::run(&config(nats_addr)))?;
        let us = |d: Duration| d.as_micros();
        println!(
            "| {depth} | {:.0} | {:.0} | {:.0} | {:.2} | {:.2} | {}/{} | {}/{} |",
            base.rps,
            mesh.rps,
            over.rps,
            over.rps / mesh.rps,
            over.rps / base.rps,
            us(mesh.p50),
            us(mesh.p99),
            us(over.p50),
            us(over.p99),
        );
        if mesh.errors + over.errors > 0 {
            println!("  errors: direct {} NATS {}", mesh.errors, over.errors);
        }
    }
    for node in direct_nodes.into_iter().chain(nats_nodes) {
        server_rt.block_on(node.shutdown(Duration::from_secs(2)));
    }
    drop(bare);
    Ok(())
}
