//! TLS listener against plain TCP: the same `echo` module on one node behind two listeners,
//! one plain and one TLS (rustls, ring, TLS 1.3, a P-256 certificate), driven by the same load
//! generator (handshakes made before the clock starts), and the bare echo server for the
//! ceiling. The ratio TLS / plain is the result (target: at least 0.7).
//!
//! Run: `cargo bench --bench tls -- [--connections 100] [--depth 1,16] [--duration 5]
//! [--payload 64]` (needs `openssl` to make the certificate).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests, benches and their kit fail loudly on purpose"
)]

use std::time::Duration;

use firefly::config::ProtocolSettings;
use firefly_testkit::bench::{self, LoadArgs};
use firefly_testkit::loadgen::{self, LoadConfig, LoadReport};
use firefly_testkit::{bare_echo, start_cluster};

fn main() -> anyhow::Result<()> {
    let args = LoadArgs::from_env(100);
    let (server_rt, client_rt) = bench::runtimes()?;
    let settings = ProtocolSettings::default();
    let bare = server_rt.block_on(bare_echo::spawn(settings.clone()))?;
    let dir = tempfile::tempdir()?;
    let (cert, key, ca) = firefly_testkit::tls::certificate(dir.path())?;
    let yaml = format!(
        "version: 1\ncluster: bench\nmodules:\n  echo: {{ crate: modules/echo }}\nnodes:\n  solo:\n    listen:\n      - tcp: 127.0.0.1:0\n        max_connections_per_ip: 100000\n      - tcp: 127.0.0.1:0\n        max_connections_per_ip: 100000\n        tls: {{ cert: {}, key: {} }}\n    modules: [echo]\n",
        cert.display(),
        key.display()
    );
    let (_topology, nodes) = server_rt.block_on(start_cluster(&yaml, &["solo"]));
    let (plain_addr, tls_addr) = (nodes[0].client_addrs()[0], nodes[0].client_addrs()[1]);
    let tls = firefly_testkit::tls::client(&ca)?;

    println!(
        "tls: {} connections, {}-byte payloads, {:?} per run (after 1 s warm-up), echo on one node",
        args.connections, args.payload, args.duration
    );
    println!(
        "| depth | bare echo req/s | plain req/s | TLS req/s | TLS / plain | plain p50/p99 µs | TLS p50/p99 µs |"
    );
    println!("|---|---|---|---|---|---|---|");
    for &depth in &args.depths {
        let config = |addr, tls| LoadConfig {
            tls,
            ..args.echo(addr, depth)
        };
        let base: LoadReport = client_rt.block_on(loadgen::run(&config(bare.addr, None)))?;
        let plain: LoadReport = client_rt.block_on(loadgen::run(&config(plain_addr, None)))?;
        let secure: LoadReport =
            client_rt.block_on(loadgen::run(&config(tls_addr, Some(tls.clone()))))?;
        let us = |d: Duration| d.as_micros();
        println!(
            "| {depth} | {:.0} | {:.0} | {:.0} | {:.2} | {}/{} | {}/{} |",
            base.rps,
            plain.rps,
            secure.rps,
            secure.rps / plain.rps,
            us(plain.p50),
            us(plain.p99),
            us(secure.p50),
            us(secure.p99),
        );
        assert_eq!(plain.errors + secure.errors, 0, "errors in the run");
    }
    drop(nodes);
    Ok(())
}
