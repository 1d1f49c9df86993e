//! TypeScript against Rust: the same echo written in TypeScript (`modules/echo-ts`) and in
//! Rust (`modules/echo`), end to end through a node, with a bare echo server as the ceiling,
//! measured in the same run; then each module's size and instance start-up time.
//!
//! What it isolates: the cost of running game logic in JavaScript (QuickJS in the module,
//! MessagePack and handler calls through the engine) relative to Rust, on the same host, same
//! sandbox, same load generator. The TS/Rust ratio is the result (target: at least 0.7).
//!
//! Start-up: a pooled, copy-on-write instantiation of each module from a prepared
//! `InstancePre` plus its `_initialize` if it has one (what the host pays for every new
//! instance), median of 2000.
//!
//! Run: `cargo bench --bench typescript -- [--connections 100] [--depth 1,16] [--duration 5]`
//! (building `echo-ts` needs Node).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests, benches and their kit fail loudly on purpose"
)]

use std::time::{Duration, Instant};

use firefly::config::ProtocolSettings;
use firefly_testkit::bench::{self, LoadArgs};
use firefly_testkit::loadgen::{self, LoadReport};
use firefly_testkit::{bare_echo, module_wasm, start_node};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, Linker, Module, PoolingAllocationConfig, Store,
};

fn main() -> anyhow::Result<()> {
    let args = LoadArgs::from_env(100);
    let (server_rt, client_rt) = bench::runtimes()?;
    let bare = server_rt.block_on(bare_echo::spawn(ProtocolSettings::default()))?;
    let rust = server_rt.block_on(start_node(&["echo"]));
    let ts = server_rt.block_on(start_node(&["echo-ts"]));
    println!(
        "typescript: {} connections, {}-byte payloads, {:?} per run (after 1 s warm-up)",
        args.connections, args.payload, args.duration
    );
    println!(
        "| depth | bare req/s | Rust echo req/s | TS echo req/s | TS/Rust | Rust p50/p99 µs | TS p50/p99 µs |"
    );
    println!("|---|---|---|---|---|---|---|");
    for &depth in &args.depths {
        let run = |addr| client_rt.block_on(loadgen::run(&args.echo(addr, depth)));
        let base: LoadReport = run(bare.addr)?;
        let r: LoadReport = run(rust.client_addrs()[0])?;
        let t: LoadReport = run(ts.client_addrs()[0])?;
        let us = |d: Duration| d.as_micros();
        println!(
            "| {depth} | {:.0} | {:.0} | {:.0} | {:.2} | {}/{} | {}/{} |",
            base.rps,
            r.rps,
            t.rps,
            t.rps / r.rps,
            us(r.p50),
            us(r.p99),
            us(t.p50),
            us(t.p99),
        );
        if base.errors + r.errors + t.errors > 0 {
            println!(
                "  errors: bare {} rust {} ts {}",
                base.errors, r.errors, t.errors
            );
        }
    }
    for node in [rust, ts] {
        server_rt.block_on(node.shutdown(Duration::from_secs(2)));
    }
    drop(bare);

    println!();
    println!("| module | size (bytes) | instance start-up, median µs |");
    println!("|---|---|---|");
    for name in ["echo", "echo-ts"] {
        let wasm = std::fs::read(module_wasm(name))?;
        let startup = server_rt.block_on(startup(&wasm))?;
        println!(
            "| {name} | {} | {:.1} |",
            wasm.len(),
            startup.as_secs_f64() * 1e6
        );
    }
    Ok(())
}

/// Median time to instantiate `wasm` from an `InstancePre` on a pooling, copy-on-write engine
/// (imports stubbed: start-up does not call them).
async fn startup(wasm: &[u8]) -> anyhow::Result<Duration> {
    let mut config = Config::new();
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(
        PoolingAllocationConfig::new(),
    ));
    config.memory_init_cow(true);
    let engine = Engine::new(&config)?;
    let module = Module::new(&engine, wasm)?;
    let mut linker: Linker<()> = Linker::new(&engine);
    linker.define_unknown_imports_as_traps(&module)?;
    let pre = linker.instantiate_pre(&module)?;
    let mut times = Vec::new();
    for _ in 0..2000 {
        let mut store = Store::new(&engine, ());
        let start = Instant::now();
        let instance = pre.instantiate_async(&mut store).await?;
        // The host runs a reactor's `_initialize` on every new instance (the TypeScript
        // snapshot has none: it ran at build time).
        if let Ok(init) = instance.get_typed_func::<(), ()>(&mut store, "_initialize") {
            init.call_async(&mut store, ()).await?;
        }
        std::hint::black_box(instance);
        times.push(start.elapsed());
    }
    times.sort();
    Ok(times[times.len() / 2])
}
