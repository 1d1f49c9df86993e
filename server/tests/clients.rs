//! The client libraries where games run, each against a real cluster (`firefly up`) started
//! here: the TypeScript client under Node's test runner, the Python client (with a client
//! speaking the original Firefly's framing byte for byte, and the WebSocket conformance checks
//! of an independent client, Python `websockets`), and the browser demo in real headless
//! Chromium.
//!
//! These need Node (with `clients/typescript/node_modules` from `npm ci`), the Python venv
//! `clients/python/.venv` (with `pip install ./clients/python`) and `/usr/bin/chromium`:
//! `./scripts/test` prepares what it can and `.ci/run` installs all of it. The default
//! nextest profile leaves them out (named `…_with_node`, `…_with_python`, `…_in_chromium`,
//! counted as skipped); run without their dependency they fail, saying what is missing.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly on purpose"
)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

mod common;

use common::topology::Resume;
use common::{Listener, Running, Storage, Topology, Up, free_addr, workspace};

const TOKEN: &str = "clients-admin-token-0123456789";

/// A cluster for the clients: a gate (echo) with six listeners and one logic node (lobby,
/// accounts, the embedded cache over SQLite), described to the client tests as JSON.
struct Cluster {
    _up: Running,
    _dir: tempfile::TempDir,
    json: String,
}

/// Starts the cluster. `page_origin` is allowed on the `origins:` listener besides
/// `http://allowed.example`.
fn cluster(name: &str, page_origin: Option<&str>) -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let (admin, gate_rpc, logic_rpc) = (free_addr(), free_addr(), free_addr());
    let (tcp, ws, plain, custom, origins, idle) = (
        free_addr(),
        free_addr(),
        free_addr(),
        free_addr(),
        free_addr(),
        free_addr(),
    );
    let mut allowed = vec!["http://allowed.example".to_owned()];
    allowed.extend(page_origin.map(str::to_owned));
    let resume = || {
        Some(Resume {
            grace: "60s",
            buffer: 64,
        })
    };
    let db = dir.path().join("data.db");
    let topology = Topology::new(name)
        .admin(admin)
        .module("echo")
        .module("lobby")
        .module("accounts")
        .node("gate", |n| {
            n.rpc(gate_rpc)
                .modules(&["echo"])
                .listen(Listener {
                    resume: resume(),
                    ..Listener::tcp(tcp)
                })
                .listen(Listener {
                    resume: resume(),
                    ..Listener::ws(ws)
                })
                .tcp(plain)
                .listen(Listener {
                    magic: Some(vec![78, 37, 38, 48]),
                    protocol_version: Some(9),
                    server_version: Some(0),
                    error_command: Some(4_000_000_000),
                    ..Listener::tcp(custom)
                })
                .listen(Listener {
                    origins: Some(allowed),
                    max_frame: Some("1KiB"),
                    resume: resume(),
                    ..Listener::ws(origins)
                })
                .listen(Listener {
                    idle_timeout: Some("1s"),
                    ..Listener::tcp(idle)
                })
                .route("101-299", &["logic"])
        })
        .node("logic", |n| {
            n.rpc(logic_rpc).modules(&["lobby", "accounts"])
        })
        .storage(Storage {
            database: Some(format!("sqlite://{}", db.display())),
            cache: Some("embedded".into()),
            owner: Some("logic".into()),
            ..Storage::default()
        })
        .write(dir.path());
    let up = Up::new(&topology)
        .env("FIREFLY_ADMIN_TOKEN", TOKEN)
        .env(
            "FIREFLY_CLUSTER_SECRET",
            "clients-cluster-secret-0123456789",
        )
        .tag(name)
        .ready_on_status(admin, TOKEN, 2)
        .start();
    let json = serde_json::json!({
        "tcp": tcp.to_string(),
        "ws": format!("ws://{ws}/"),
        "ws_addr": ws.to_string(),
        "plain_tcp": plain.to_string(),
        "custom_tcp": custom.to_string(),
        "custom": {
            "magic": [78, 37, 38, 48],
            "protocol_version": 9,
            "server_version": 0,
            "error_command": 4_000_000_000u32,
        },
        "origins_ws": format!("ws://{origins}/"),
        "origins_addr": origins.to_string(),
        "origins_max_frame": 1024,
        "idle_tcp": idle.to_string(),
        "idle_timeout_ms": 1000,
    })
    .to_string();
    Cluster {
        _up: up,
        _dir: dir,
        json,
    }
}

/// Runs `command` to completion with the cluster's description in `FIREFLY_TEST_CLUSTER`,
/// its output going to the test's; panics unless it succeeds.
fn run(what: &str, mut command: Command, cluster: &Cluster) {
    command
        .env("FIREFLY_TEST_CLUSTER", &cluster.json)
        .stdin(Stdio::null());
    eprintln!("[{what}] running {command:?}");
    let status = command
        .status()
        .unwrap_or_else(|e| panic!("{what}: could not run {command:?}: {e}"));
    assert!(
        status.success(),
        "{what} failed ({status}): see its output above"
    );
}

/// `program`, which must exist: the panic says how to get it.
fn require(program: &Path, how: &str) -> PathBuf {
    assert!(
        program.exists(),
        "{} is missing: {how} (`./scripts/test` and `.ci/run` do)",
        program.display()
    );
    program.to_owned()
}

/// Builds the TypeScript client (`tsc`) so the tests run today's source; its `node_modules`
/// must be installed (`npm ci`).
fn build_typescript() -> PathBuf {
    let dir = workspace().join("clients/typescript");
    let tsc = require(
        &dir.join("node_modules/.bin/tsc"),
        "run `npm ci` in clients/typescript",
    );
    let status = Command::new(tsc)
        .args(["-p", "."])
        .current_dir(&dir)
        .status()
        .expect("node must be installed to build the TypeScript client");
    assert!(status.success(), "tsc failed ({status})");
    dir
}

fn node() -> Command {
    Command::new(std::env::var_os("NODE").unwrap_or_else(|| "node".into()))
}

#[test]
fn typescript_client_with_node() {
    let dir = build_typescript();
    let cluster = cluster("clients-ts", None);
    let mut command = node();
    command
        .args(["--test", "test/client.test.mjs", "test/sessions.test.mjs"])
        .current_dir(&dir);
    run("node --test (clients/typescript)", command, &cluster);
}

#[test]
fn python_client_with_python() {
    let dir = workspace().join("clients/python");
    let python = require(
        &dir.join(".venv/bin/python"),
        "create clients/python/.venv and `pip install ./clients/python` into it",
    );
    let cluster = cluster("clients-py", None);
    let mut command = Command::new(python);
    // The tests import the package from its source, so they test today's code; the venv
    // holds its installed dependencies.
    command
        .args(["-m", "unittest", "discover", "-v", "-s", "tests"])
        .env("PYTHONPATH", dir.join("src"))
        .current_dir(&dir);
    run("python -m unittest (clients/python)", command, &cluster);
}

#[test]
fn browser_demo_in_chromium() {
    build_typescript();
    let chromium = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/usr/bin/chromium".into());
    let chromium = require(&chromium, "install Debian's `chromium` package");
    let page: SocketAddr = free_addr();
    let origin = format!("http://{page}");
    let cluster = cluster("clients-browser", Some(&origin));
    let screenshots = workspace().join("target/browser-demo");
    std::fs::create_dir_all(&screenshots).unwrap();
    let mut command = node();
    command
        .args(["--test", "test/demo.test.mjs"])
        .env("CHROMIUM", chromium)
        .env("DEMO_ADDR", page.to_string())
        .env("SCREENSHOT_DIR", &screenshots)
        .current_dir(workspace().join("clients/browser-demo"));
    run("node --test (clients/browser-demo)", command, &cluster);
    assert!(
        screenshots.join("demo.png").exists(),
        "the browser test wrote no screenshot"
    );
}
