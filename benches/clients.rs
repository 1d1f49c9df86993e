//! The client libraries under load against the Rust load generator, on the same node in the
//! same run: the TypeScript client (Node, over TCP and over WebSocket), the Python client
//! (asyncio, over TCP and over WebSocket) and the C# client (Mono, over TCP and over WebSocket)
//! send the echo command (1) with the same connections,
//! depth and payload as `firefly_testkit::loadgen` does over TCP. The ratio to the load
//! generator says how much of the server's throughput a game client written with the library
//! can use: a client library must not be the bottleneck a game team finds first.
//!
//! Each client runs as its own process (`clients/typescript/bench/load.mjs`,
//! `clients/python/bench/load.py`, `mono FireflyClientTests.exe --bench` built from
//! `clients/csharp`) and prints its figures as JSON; the node runs in this
//! process on a 2-worker runtime, as in `benches/e2e.rs`.
//!
//! Needs what the client tests need (`./scripts/test` installs it): Node with
//! `clients/typescript/node_modules`, `clients/python/.venv`, and Mono (`mcs`, `mono`).
//!
//! Run: `cargo bench --bench clients -- [--connections 10] [--depth 1,16] [--duration 5]
//! [--payload 64]` (duration in seconds).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests, benches and their kit fail loudly on purpose"
)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use firefly_testkit::bench::{self, LoadArgs};
use firefly_testkit::loadgen;
use firefly_testkit::{root, start_cluster};

/// One client's figures, as its load script prints them.
struct Figures {
    rps: f64,
    p50: u64,
    p99: u64,
    errors: u64,
}

/// Runs a load script and reads the JSON line it prints last.
fn run_script(mut command: Command) -> Figures {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("could not run {command:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{command:?} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout.lines().last().unwrap_or_default();
    let v: serde_json::Value =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("{command:?} printed {line:?}: {e}"));
    let int = |k: &str| v[k].as_f64().unwrap_or_default() as u64;
    Figures {
        rps: v["rps"].as_f64().unwrap_or_default(),
        p50: int("p50"),
        p99: int("p99"),
        errors: int("errors"),
    }
}

fn require(path: &Path, how: &str) {
    assert!(
        path.exists(),
        "{} is missing: {how} (`./scripts/test` does)",
        path.display()
    );
}

fn main() -> anyhow::Result<()> {
    let args = LoadArgs::from_env(10);
    let ts = root().join("clients/typescript");
    let py = root().join("clients/python");
    require(
        &ts.join("node_modules/.bin/tsc"),
        "npm ci in clients/typescript",
    );
    require(
        &py.join(".venv/bin/python"),
        "the Python client's virtualenv",
    );
    let built = Command::new(ts.join("node_modules/.bin/tsc"))
        .args(["-p", "."])
        .current_dir(&ts)
        .status()?;
    assert!(built.success(), "tsc failed");
    let cs = root().join("target/csharp-bench");
    let built = Command::new("bash")
        .arg(root().join("clients/csharp/Tests~/build.sh"))
        .arg(&cs)
        .status()
        .expect(
            "bash runs clients/csharp/Tests~/build.sh (needs Mono: apt-get install mono-complete)",
        );
    assert!(built.success(), "building the C# client failed");

    let (server_rt, client_rt) = bench::runtimes()?;
    let yaml = "version: 1\ncluster: bench\nmodules:\n  echo: { crate: modules/echo }\nnodes:\n  gate:\n    listen: [{ tcp: 127.0.0.1:0 }, { ws: 127.0.0.1:0 }]\n    modules: [echo]\n";
    let (_, nodes) = server_rt.block_on(start_cluster(yaml, &["gate"]));
    let (tcp, ws) = (nodes[0].client_addrs()[0], nodes[0].client_addrs()[1]);
    let secs = args.duration.as_secs_f64().to_string();

    println!(
        "clients: {} connections, {}-byte payloads, {:?} per run (after 1 s warm-up), echo on one node",
        args.connections, args.payload, args.duration
    );
    println!("| depth | client | transport | req/s | ratio to Rust loadgen | p50/p99 µs |");
    println!("|---|---|---|---|---|---|");
    for &depth in &args.depths {
        let config = args.echo(tcp, depth);
        let base = client_rt.block_on(loadgen::run(&config))?;
        println!(
            "| {depth} | Rust loadgen | tcp | {:.0} | 1.00 | {}/{} |",
            base.rps,
            base.p50.as_micros(),
            base.p99.as_micros()
        );
        let shape = [
            args.connections.to_string(),
            depth.to_string(),
            secs.clone(),
            args.payload.to_string(),
        ];
        for (transport, addr) in [("tcp", tcp), ("ws", ws)] {
            let mut node = Command::new("node");
            node.arg("bench/load.mjs")
                .args([transport, &addr.to_string()])
                .args(&shape)
                .current_dir(&ts);
            let mut python = Command::new(py.join(".venv/bin/python"));
            python
                .arg("bench/load.py")
                .args([transport, &addr.to_string()])
                .args(&shape)
                .env("PYTHONPATH", py.join("src"))
                .current_dir(&py);
            let mut mono = Command::new("mono");
            mono.arg(cs.join("FireflyClientTests.exe"))
                .args(["--bench", transport, &addr.to_string()])
                .args(&shape);
            for (client, command) in [
                ("TypeScript (Node)", node),
                ("Python", python),
                ("C# (Mono)", mono),
            ] {
                let f = run_script(command);
                println!(
                    "| {depth} | {client} | {transport} | {:.0} | {:.2} | {}/{} |",
                    f.rps,
                    f.rps / base.rps,
                    f.p50,
                    f.p99
                );
                if f.errors > 0 {
                    println!("  errors: {}", f.errors);
                }
            }
        }
    }
    for node in nodes {
        server_rt.block_on(node.shutdown(Duration::from_secs(2)));
    }
    Ok(())
}
