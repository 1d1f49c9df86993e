//! The `firefly` binary as a user runs it: `up`, `call`, `new`, `build`, as real processes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests, benches and their kit fail loudly on purpose"
)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

mod common;

use common::topology::Module;
use common::{Running, Topology, Up, free_addr, workspace};

/// A running `firefly up` of one node (stopped on drop), and its client listener.
struct Node {
    up: Running,
    addr: String,
}

/// A topology of one node, `game`, hosting `echo` and `lobby`, and its client listener (a
/// fixed free port: the test must know it to see the node serve, with no admin API to ask).
fn topology(dir: &Path) -> (PathBuf, SocketAddr) {
    let listen = free_addr();
    let path = Topology::new("clitest")
        .module("echo")
        .module("lobby")
        .node("game", |n| n.tcp(listen).modules(&["echo", "lobby"]))
        .write(dir);
    (path, listen)
}

/// Starts `firefly up -c <topology>` and waits until its node at `listen` answers.
fn up(topology: &Path, listen: SocketAddr) -> Node {
    Node {
        up: Up::new(topology)
            .tag("firefly up")
            .ready_on_gate(&[listen])
            .start(),
        addr: listen.to_string(),
    }
}

/// `firefly up` of a one-node cluster `cluster` in `dir` serving module `name` from `source`
/// (a built `.wasm` or a crate) on a TCP listener.
fn up_one_module(dir: &Path, cluster: &str, name: &str, source: Module) -> Node {
    let listen = free_addr();
    let topo = Topology::new(cluster)
        .module_from(name, source)
        .node("game", |n| n.tcp(listen).modules(&[name]))
        .write(dir);
    up(&topo, listen)
}

fn call(addr: &str, args: &[&str]) -> (bool, String) {
    let out = common::firefly()
        .arg("call")
        .arg(addr)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn up_then_call_prints_replies_and_error_frames_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let (topology, listen) = topology(dir.path());
    let mut node = up(&topology, listen);

    let (ok, out) = call(&node.addr, &["1", r#""asdfe""#]);
    assert!(ok, "{out}");
    assert_eq!(out.trim(), r#""asdfe""#);

    let (ok, out) = call(&node.addr, &["103", r#"{"a": 40, "b": 2}"#]);
    assert!(ok, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["sum"], 42);

    let (ok, out) = call(&node.addr, &["1", "raw bytes", "--raw"]);
    assert!(ok);
    assert_eq!(out.trim(), "raw bytes");

    let (ok, out) = call(&node.addr, &["4242"]);
    assert!(!ok, "an error frame must fail the command");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["error"]["code"], "unknown_command");
    assert_eq!(v["error"]["command"], 4242);

    let (ok, _) = call(&node.addr, &["1", "{not json"]);
    assert!(!ok);

    // SIGTERM: a graceful stop, exit status 0.
    let pid = node.up.pid().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = node
        .up
        .wait_exit(Duration::from_secs(30))
        .expect("firefly up did not stop on SIGTERM");
    assert!(status.success(), "{status}");
}

#[test]
fn up_refuses_an_invalid_topology_with_its_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("topology.yaml");
    std::fs::write(
        &path,
        "version: 1\ncluster: x\nmodules: {}\nnodes: {}\nbogus: 1\n",
    )
    .unwrap();
    let out = common::firefly()
        .args(["up", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bogus"), "{err}");
}

#[test]
fn new_scaffolds_a_module_that_builds_and_answers() {
    let dir = tempfile::tempdir().unwrap();
    let out = common::firefly()
        .args(["new", "hello_mod", "--command", "1234", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let crate_dir = dir.path().join("hello_mod");
    // A shared target dir so the SDK's dependencies compile once per machine, not per run.
    let out = common::firefly()
        .arg("build")
        .arg(&crate_dir)
        .env(
            "CARGO_TARGET_DIR",
            workspace().join("target").join("scaffold-test"),
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let wasm = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert!(wasm.exists(), "{}", wasm.display());

    let node = up_one_module(dir.path(), "scaffold", "hello_mod", Module::Wasm { wasm });
    let (ok, out) = call(&node.addr, &["1234", r#"{"text": "hi"}"#]);
    assert!(ok, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["text"], "hi");
    assert!(v["session"].as_u64().unwrap() > 0);

    // Inside a module workspace, `new` adds the crate to its members.
    std::fs::write(
        dir.path().join("Cargo.toml"),
        "[workspace]\nmembers = [\"a\"]\n",
    )
    .unwrap();
    let out = common::firefly()
        .args(["new", "second", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let manifest = std::fs::read_to_string(dir.path().join("Cargo.toml")).unwrap();
    assert!(
        manifest.contains(r#"members = ["a", "second"]"#),
        "{manifest}"
    );

    // Names that are not valid crate/module names are refused.
    let out = common::firefly()
        .args(["new", "Bad-Name", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
}

/// The harness (`common::Up`) fails at once, saying so, when `firefly up` exits before it is
/// ready, instead of waiting out its deadline.
#[test]
fn the_harness_reports_an_up_that_exits_before_it_is_ready() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("topology.yaml");
    std::fs::write(
        &path,
        "version: 1\ncluster: x\nmodules: {}\nnodes: {}\nbogus: 1\n",
    )
    .unwrap();
    let started = std::time::Instant::now();
    let failed = std::panic::catch_unwind(|| {
        drop(Up::new(&path).ready_on_gate(&[free_addr()]).start());
    })
    .unwrap_err();
    let message = failed.downcast_ref::<String>().unwrap();
    assert!(
        message.contains("never became ready: it exited"),
        "{message}"
    );
    assert!(started.elapsed() < Duration::from_secs(60));
}

#[test]
fn new_lang_ts_scaffolds_a_typescript_module_that_up_builds_and_serves_with_node() {
    let dir = tempfile::tempdir().unwrap();
    let out = common::firefly()
        .args(["new", "shop", "--lang", "ts", "--command", "2000", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let module = dir.path().join("shop");
    for file in ["package.json", "tsconfig.json", "index.ts"] {
        assert!(module.join(file).exists(), "{file}");
    }
    // Edited before the first build: `firefly up` builds it from `crate:` like a Rust crate.
    let index = std::fs::read_to_string(module.join("index.ts")).unwrap();
    std::fs::write(
        module.join("index.ts"),
        index.replace("text: req.text,", "text: req.text.toUpperCase(),"),
    )
    .unwrap();
    let node = up_one_module(
        dir.path(),
        "scaffold-ts",
        "shop",
        Module::Crate { dir: module },
    );
    let (ok, out) = call(&node.addr, &["2000", r#"{"text": "hi"}"#]);
    assert!(ok, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["text"], "HI");
    assert!(v["session"].as_u64().unwrap() > 0);
    // The scaffold's own check: a bad request is an error frame with the module's code.
    let (ok, out) = call(&node.addr, &["2000", r#"{"nope": 1}"#]);
    assert!(!ok);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["error"]["code"], "bad_request");
}
